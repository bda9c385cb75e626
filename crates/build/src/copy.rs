//! COPY and ADD: files from the context, another stage or an image (or
//! given inline by a heredoc) written into a working container on the
//! stage's layers as one tar stream, with docker's naming rules, owners
//! (`--chown`, root by default) and modes (`--chmod`); ADD also unpacks
//! local tar archives. No process runs.

use std::io::{Read, Seek, Write};

use serde_json::json;

use crate::build::{Builder, step_error};
use crate::context::{Item, Kind, Source, Tree};
use crate::dockerfile::{Copy, Instruction};
use crate::error::{Error, Result};
use crate::stage::StageState;
use crate::working::Workspace;

/// A file given inline (a heredoc) or fetched (ADD of a URL).
struct Inline {
    name: String,
    content: Content,
    mode: u32,
    mtime: u64,
    digest: berth_image::digest::Digest,
}

enum Content {
    Bytes(Vec<u8>),
    /// A temporary file of the store, removed with the step.
    File(TempFile),
}

/// Removed when dropped.
struct TempFile {
    path: std::path::PathBuf,
    size: u64,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<'a> Builder<'a> {
    pub(crate) fn copy_step(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        cp: &Copy,
        n: usize,
    ) -> Result<bool> {
        let word = if cp.add { "ADD" } else { "COPY" };
        let fail = |why: String| step_error(ins.pos, &ins.original, why);
        let esc = self.df.escape;
        if cp.parents {
            return Err(fail(format!("{word} --parents is not supported")));
        }
        if cp.keep_git_dir {
            return Err(fail(format!(
                "{word} --keep-git-dir goes with git sources, which berth build does not fetch"
            )));
        }
        if cp.checksum.is_some() && !cp.add {
            return Err(fail(
                "COPY --checksum: only ADD fetches what it checks".into(),
            ));
        }
        let dest_raw = st.expand(&cp.dest, esc).map_err(fail)?;
        let dir_hint = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", st.workdir())
        };
        let dest = format!("/{}", crate::context::clean_path(&dest));
        let chown = cp
            .chown
            .as_ref()
            .map(|c| st.expand(c, esc))
            .transpose()
            .map_err(fail)?;
        let chmod = cp
            .chmod
            .as_ref()
            .map(|m| {
                let m = st.expand(m, esc)?;
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("--chmod={m}: an octal mode is needed"))
            })
            .transpose()
            .map_err(fail)?;
        // Where the files come from.
        let mut holder: Option<Box<dyn Workspace + 'a>> = None;
        let mut from_key = json!(null);
        let own_tree;
        let tree: &Tree = match &cp.from {
            None => self.context.as_ref().ok_or_else(|| {
                fail("there is no build context (the Dockerfile came from stdin)".into())
            })?,
            Some(f) => {
                let f = st.expand(f, esc).map_err(fail)?;
                let (w, top) = self.root_of(st, &f, ins)?;
                own_tree = Tree::image_root(&w.root(), format!("--from={f}"))?;
                holder = Some(w);
                from_key = top;
                &own_tree
            }
        };
        let mut sources: Vec<Source> = Vec::new();
        let mut inline = Vec::new();
        for s in &cp.sources {
            let s = st.expand(s, esc).map_err(fail)?;
            if s.starts_with("git@") || s.ends_with(".git") && s.contains("://") {
                return Err(fail(format!(
                    "{word} {s}: berth build does not fetch git sources"
                )));
            }
            if s.contains("://") {
                if !cp.add {
                    return Err(fail(format!(
                        "COPY {s}: COPY does not fetch URLs; ADD does"
                    )));
                }
                let checksum = cp
                    .checksum
                    .as_ref()
                    .map(|c| st.expand(c, esc))
                    .transpose()
                    .map_err(fail)?;
                inline.push(
                    self.fetch(&s, checksum.as_deref())
                        .map_err(|e| fail(e.to_string()))?,
                );
                continue;
            }
            if cp.checksum.is_some() {
                return Err(fail("ADD --checksum goes with a URL".into()));
            }
            sources.extend(tree.select(&s).map_err(|e| fail(e.to_string()))?);
        }
        for h in &cp.heredocs {
            let content = if h.expand {
                let lookup = |n: &str| st.lookup(n);
                crate::dockerfile::words::expand_text(&h.content, &lookup, esc)
                    .map_err(|e| fail(e.to_string()))?
            } else {
                h.content.clone()
            };
            let content = content.into_bytes();
            inline.push(Inline {
                name: h.name.clone(),
                digest: berth_image::digest::Digest::of(&content),
                content: Content::Bytes(content),
                mode: 0o644,
                mtime: unix_now(),
            });
        }
        let many = sources.len() + inline.len() > 1;
        if many && !dir_hint {
            return Err(fail(format!(
                "with more than one source the destination must be a directory ending in /, not {dest_raw:?}"
            )));
        }
        let mut items = tree
            .items(&sources, None)
            .map_err(|e| fail(e.to_string()))?;
        if !cp.excludes.is_empty() {
            let patterns = cp
                .excludes
                .iter()
                .map(|p| st.expand(p, esc))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(fail)?;
            let ex = crate::dockerfile::ignore::Ignore::parse(&patterns.join("\n"))
                .map_err(|e| fail(e.to_string()))?;
            items.retain(|i| !ex.excluded(&i.dest));
        }
        // ADD unpacks local archives rather than copying them.
        let mut archives = Vec::new();
        if cp.add {
            let mut keep = Vec::new();
            for i in items {
                if i.kind == Kind::File && is_archive(&mut tree.open_item(&sources, &i)?) {
                    archives.push(i);
                } else {
                    keep.push(i);
                }
            }
            items = keep;
        }
        let parent = st.top().cloned();
        let key = crate::cache::key(&json!({
            "op": word,
            "parent": parent,
            "from": from_key,
            "dest": dest,
            "dir": dir_hint,
            "chown": chown,
            "chmod": chmod,
            "items": items.iter().map(item_key).collect::<Vec<_>>(),
            "archives": archives.iter().map(item_key).collect::<Vec<_>>(),
            "inline": inline.iter().map(|i| json!([i.name, i.digest, i.mode])).collect::<Vec<_>>(),
            "dirs": st.pending_dirs,
        }));
        let created_by = format!("{} # buildkit", ins.original);
        if let Some(e) = self.cached(&key)? {
            self.progress.cached(n);
            st.pending_dirs.clear();
            st.push_layer(e.layer, &e.created, &created_by, &key);
            return Ok(true);
        }
        let w = self.files_workspace(st)?;
        let owner = match &chown {
            Some(c) => {
                let u = berth_image::spec::resolve_user(&w.root(), c)
                    .map_err(|e| fail(format!("--chown={c}: {e}")))?;
                (u.uid, u.gid)
            }
            None => (0, 0),
        };
        // A single file (not a directory, nor with a destination ending
        // in /) is named by the destination, unless that is a directory.
        let single_file = !many
            && !dir_hint
            && (items.len() == 1
                && items[0].kind != Kind::Dir
                && sources.len() == 1
                && sources[0].kind != Kind::Dir
                || (sources.is_empty() && inline.len() == 1));
        let into = if single_file && !w.is_dir(&dest)? {
            let (dir, name) = dest.rsplit_once('/').expect("absolute");
            let name = name.to_string();
            if let Some(i) = items.first_mut() {
                i.dest = name.clone();
            }
            if let Some(i) = inline.first_mut() {
                i.name = name;
            }
            if dir.is_empty() {
                "/".to_string()
            } else {
                dir.to_string()
            }
        } else {
            dest.clone()
        };
        w.mkdir(&into, owner)?;
        let mut tar = self.tar_of(tree, &sources, &items, &inline, owner, chmod)?;
        w.copy_in(&mut tar, &into)?;
        for a in &archives {
            let f = tree.open_item(&sources, a)?;
            let mut r = berth_image::archive::decoder(std::io::BufReader::new(f))
                .map_err(Error::io(format!("read archive {}", a.dest)))?;
            w.copy_in(&mut r, &into)?;
        }
        let layer = w.layer(parent.as_ref(), &self.lease)?;
        drop(w);
        drop(holder);
        let created = crate::stage::now();
        self.remember(&key, &layer, &created)?;
        st.push_layer(layer, &created, &created_by, &key);
        Ok(false)
    }

    /// The items as one tar stream (in a temporary file of the store: a
    /// context may be larger than memory).
    fn tar_of(
        &self,
        tree: &Tree,
        sources: &[Source],
        items: &[Item],
        inline: &[Inline],
        owner: (u32, u32),
        chmod: Option<u32>,
    ) -> Result<std::fs::File> {
        let file = self.engine.images.temp_file()?;
        let mut b = tar::Builder::new(file);
        let io = |e: std::io::Error| Error::io("write the copy's tar stream")(e);
        for i in items {
            let mut h = tar::Header::new_gnu();
            h.set_uid(owner.0 as u64);
            h.set_gid(owner.1 as u64);
            h.set_mtime(i.mtime.max(0) as u64);
            match &i.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(chmod.unwrap_or(i.mode));
                    h.set_size(0);
                    b.append_data(&mut h, format!("{}/", i.dest), std::io::empty())
                        .map_err(io)?;
                }
                Kind::File => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(chmod.unwrap_or(i.mode));
                    h.set_size(i.size);
                    let f = tree.open_item(sources, i)?;
                    b.append_data(&mut h, &i.dest, f.take(i.size)).map_err(io)?;
                }
                Kind::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, &i.dest, target).map_err(io)?;
                }
            }
        }
        for f in inline {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_uid(owner.0 as u64);
            h.set_gid(owner.1 as u64);
            h.set_mode(chmod.unwrap_or(f.mode));
            h.set_mtime(f.mtime);
            match &f.content {
                Content::Bytes(data) => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, &f.name, &data[..]).map_err(io)?;
                }
                Content::File(t) => {
                    h.set_size(t.size);
                    let file = std::fs::File::open(&t.path)
                        .map_err(Error::io(format!("open {}", t.path.display())))?;
                    b.append_data(&mut h, &f.name, file.take(t.size))
                        .map_err(io)?;
                }
            }
        }
        let mut file = b.into_inner().map_err(io)?;
        file.flush().map_err(io)?;
        file.rewind().map_err(io)?;
        Ok(file)
    }
}

impl Builder<'_> {
    /// ADD's URL, fetched into the store's temporary space: named by the
    /// URL's last path part, mode 0600 as docker gives it, the server's
    /// Last-Modified as its time; `--checksum` checked.
    fn fetch(&self, url: &str, checksum: Option<&str>) -> Result<Inline> {
        let path = self.engine.images.temp_path("build-add");
        let mut tmp = TempFile { path, size: 0 };
        let got = berth_image::fetch::fetch(
            url,
            &tmp.path,
            &self.opts.pull_options.transport,
            self.opts.pull_options.limits.layer,
        )?;
        if let Some(want) = checksum
            && want != got.digest.as_str()
        {
            return Err(Error::invalid(
                format!("ADD --checksum={want}"),
                format!("{url} has {}", got.digest),
            ));
        }
        tmp.size = got.size;
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
            .filter(|n| !n.is_empty() && !n.contains(':'))
            .unwrap_or("__unnamed__")
            .to_string();
        let mtime = got
            .modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or_else(unix_now);
        Ok(Inline {
            name,
            content: Content::File(tmp),
            mode: 0o600,
            mtime,
            digest: got.digest,
        })
    }
}

fn item_key(i: &Item) -> serde_json::Value {
    let kind = match &i.kind {
        Kind::File => "f".to_string(),
        Kind::Dir => "d".to_string(),
        Kind::Symlink(t) => format!("l:{t}"),
    };
    json!([i.dest, kind, i.mode, i.digest])
}

/// Whether a file is a tar archive (plain, gzip or zstd), which ADD
/// unpacks.
fn is_archive(f: &mut std::fs::File) -> bool {
    let mut head = Vec::new();
    let Ok(dup) = f.try_clone() else {
        return false;
    };
    let Ok(mut r) = berth_image::archive::decoder(std::io::BufReader::new(dup)) else {
        return false;
    };
    if r.by_ref().take(512).read_to_end(&mut head).is_err() || head.len() < 512 {
        return false;
    }
    &head[257..262] == b"ustar"
}
