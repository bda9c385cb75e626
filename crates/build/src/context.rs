//! Where COPY and ADD read: the build context (a directory of the host,
//! `.dockerignore` applied) or another stage's or image's root. Every
//! path is resolved from a directory fd with openat2: in the context a
//! source may go through symlinks that stay inside it (one that leads out
//! is an error), in an image's root symlinks resolve inside that root;
//! below a source no symlink is followed at all, links are copied as
//! links.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use berth_image::digest::{Digest, Hasher};
use rustix::fs::{Dir, FileType, Mode, OFlags, ResolveFlags};

use crate::dockerfile::ignore::Ignore;
use crate::error::{Error, Result};

/// Trees deeper than this are not copied (a loop through bind mounts, or a
/// hostile tree).
const MAX_DEPTH: usize = 256;

const NO_LINKS: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// A tree COPY reads from.
pub struct Tree {
    root: OwnedFd,
    /// How a source's own path resolves: BENEATH (the context: leaving it
    /// is an error) or IN_ROOT (an image: absolute links stay inside).
    resolve: ResolveFlags,
    ignore: Option<Ignore>,
    /// "the build context", "stage build", ...
    pub name: String,
}

/// What one COPY source matched: a file, link or directory of the tree.
pub struct Source {
    /// Its path in the tree, as matched (for messages and names).
    pub path: String,
    fd: OwnedFd,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
}

/// One entry to write at the destination.
#[derive(Debug, Clone)]
pub struct Item {
    /// Which source it is in, and its path below that source ("" for the
    /// source itself).
    source: usize,
    below: String,
    /// Its path below the destination directory.
    pub dest: String,
    pub kind: Kind,
    pub mode: u32,
    pub mtime: i64,
    pub size: u64,
    /// A file's content digest (the cache key's part), once hashed.
    pub digest: Option<Digest>,
}

impl Tree {
    /// The build context at `dir`, with its `.dockerignore` if any.
    pub fn context(dir: &std::path::Path, ignore: Option<Ignore>) -> Result<Tree> {
        let root = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::invalid(format!("context {}", dir.display()), e.to_string()))?;
        Ok(Tree {
            root,
            resolve: ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ignore,
            name: "the build context".into(),
        })
    }

    /// The root filesystem of a stage or image, mounted at `dir`.
    pub fn image_root(dir: &std::path::Path, name: String) -> Result<Tree> {
        let root = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::invalid(format!("{name} at {}", dir.display()), e.to_string()))?;
        Ok(Tree {
            root,
            resolve: ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ignore: None,
            name,
        })
    }

    fn excluded(&self, path: &str) -> bool {
        self.ignore.as_ref().is_some_and(|i| i.excluded(path))
    }

    /// What `pattern` names: one path, or what its wildcards match (at
    /// least one, else an error naming it).
    pub fn select(&self, pattern: &str) -> Result<Vec<Source>> {
        let clean = clean_path(pattern);
        let mut paths = Vec::new();
        if clean.is_empty() {
            paths.push(String::new());
        } else if has_wildcards(&clean) {
            let parts: Vec<&str> = clean.split('/').collect();
            self.glob(String::new(), &parts, &mut paths)?;
        } else if self.excluded(&clean) {
            return Err(Error::invalid(
                format!("COPY source {pattern:?}"),
                format!("not found in {} (.dockerignore excludes it)", self.name),
            ));
        } else {
            paths.push(clean.clone());
        }
        let mut out = Vec::new();
        for p in paths {
            match self.open_source(&p) {
                Ok(s) => out.push(s),
                Err(OpenError::Missing) if has_wildcards(&clean) => {}
                Err(OpenError::Missing) => {
                    return Err(Error::invalid(
                        format!("COPY source {pattern:?}"),
                        format!("not found in {}", self.name),
                    ));
                }
                Err(OpenError::Outside) => {
                    return Err(Error::invalid(
                        format!("COPY source {pattern:?}"),
                        format!("it leads outside {} (through a symlink)", self.name),
                    ));
                }
                Err(OpenError::Unsupported(why)) => {
                    return Err(Error::invalid(format!("COPY source {pattern:?}"), why));
                }
                Err(OpenError::Os(e)) => {
                    return Err(Error::Io {
                        what: format!("open {pattern:?} in {}", self.name),
                        source: e.into(),
                    });
                }
            }
        }
        if out.is_empty() {
            return Err(Error::invalid(
                format!("COPY source {pattern:?}"),
                format!("no file in {} matches it", self.name),
            ));
        }
        Ok(out)
    }

    /// Paths below `dir` matching `parts`, one component each.
    fn glob(&self, dir: String, parts: &[&str], out: &mut Vec<String>) -> Result<()> {
        let Some((first, rest)) = parts.split_first() else {
            out.push(dir);
            return Ok(());
        };
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        if !has_wildcards(first) {
            let p = join(first);
            if !self.excluded(&p) {
                self.glob(p, rest, out)?;
            }
            return Ok(());
        }
        let fd = match self.open_dir(&dir) {
            Ok(fd) => fd,
            Err(_) => return Ok(()),
        };
        let mut names = list(&fd, &format!("list {dir:?} in {}", self.name))?;
        names.sort();
        for name in names {
            if glob_match(first, &name)? {
                let p = join(&name);
                if !self.excluded(&p) {
                    self.glob(p, rest, out)?;
                }
            }
        }
        Ok(())
    }

    fn open_dir(&self, path: &str) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat2(
            &self.root,
            if path.is_empty() { "." } else { path },
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            self.resolve,
        )
    }

    fn open_source(&self, path: &str) -> std::result::Result<Source, OpenError> {
        let at = if path.is_empty() { "." } else { path };
        // The source itself: a symlink is followed (as docker does for a
        // named source), within the tree.
        let fd = rustix::fs::openat2(
            &self.root,
            at,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            self.resolve,
        )
        .map_err(OpenError::from)?;
        let st = rustix::fs::fstat(&fd).map_err(OpenError::Os)?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            other => {
                return Err(OpenError::Unsupported(format!(
                    "it is a {other:?}, not a file or directory"
                )));
            }
        };
        // O_PATH resolved it; reading needs the file itself, opened again
        // through the fd (never through the path a second time).
        let fd = reopen(&fd).map_err(OpenError::Os)?;
        Ok(Source {
            path: path.to_string(),
            fd,
            kind,
        })
    }

    /// The host path `rel` resolves to, inside the tree (a bind mount's
    /// source): resolved from the tree's fd as a source is, then named by
    /// what the kernel says it opened.
    pub fn real_path(&self, rel: &str) -> Result<std::path::PathBuf> {
        use std::os::fd::AsRawFd;
        let clean = clean_path(rel);
        let fd = match self.open_source(&clean) {
            Ok(s) => s.fd,
            Err(OpenError::Missing) => {
                return Err(Error::invalid(
                    format!("{rel:?}"),
                    format!("not found in {}", self.name),
                ));
            }
            Err(OpenError::Outside) => {
                return Err(Error::invalid(
                    format!("{rel:?}"),
                    format!("it leads outside {} (through a symlink)", self.name),
                ));
            }
            Err(OpenError::Unsupported(why)) => {
                return Err(Error::invalid(format!("{rel:?}"), why));
            }
            Err(OpenError::Os(e)) => {
                return Err(Error::Io {
                    what: format!("open {rel:?} in {}", self.name),
                    source: e.into(),
                });
            }
        };
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        std::fs::read_link(&link).map_err(Error::io(format!("resolve {rel:?} in {}", self.name)))
    }

    /// Every entry of `sources`, named below the destination directory:
    /// a directory's contents go straight into it (its own name is not
    /// kept, as docker copies directories), a file goes by `name_as` when
    /// given, else by its own name. Files are hashed for the cache key.
    pub fn items(&self, sources: &[Source], name_as: Option<&str>) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            let st = rustix::fs::fstat(&s.fd)?;
            match &s.kind {
                Kind::Dir => {
                    self.walk(i, &s.fd, &s.path, "", 0, &mut out)?;
                }
                kind => {
                    let name = name_as.map(str::to_string).unwrap_or_else(|| {
                        s.path.rsplit('/').next().unwrap_or(&s.path).to_string()
                    });
                    out.push(Item {
                        source: i,
                        below: String::new(),
                        dest: name,
                        kind: kind.clone(),
                        mode: st.st_mode & 0o7777,
                        mtime: st.st_mtime,
                        size: st.st_size as u64,
                        digest: None,
                    });
                }
            }
        }
        for item in out.iter_mut().filter(|i| i.kind == Kind::File) {
            let mut f = self.open_item(sources, item)?;
            let mut h = Hasher::default();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(Error::io(format!("read {:?} in {}", item.dest, self.name)))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            item.digest = Some(h.finish());
        }
        Ok(out)
    }

    fn walk(
        &self,
        source: usize,
        dir: &OwnedFd,
        tree_path: &str,
        below: &str,
        depth: usize,
        out: &mut Vec<Item>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                format!("{tree_path:?} in {}", self.name),
                format!("deeper than {MAX_DEPTH} directories"),
            ));
        }
        let mut names = list(dir, &format!("list {tree_path:?} in {}", self.name))?;
        names.sort();
        for name in names {
            let path = join(tree_path, &name);
            if self.excluded(&path)
                && !self
                    .ignore
                    .as_ref()
                    .is_some_and(|i| i.may_reinclude_under(&path))
            {
                continue;
            }
            let st = rustix::fs::statat(dir, name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
            let rel = join(below, &name);
            let kind = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => Kind::Dir,
                FileType::RegularFile => Kind::File,
                FileType::Symlink => {
                    let t = rustix::fs::readlinkat(dir, name.as_str(), Vec::new())?;
                    Kind::Symlink(t.to_string_lossy().into_owned())
                }
                // Devices, FIFOs and sockets of a context are not copied,
                // as docker leaves them out.
                _ => continue,
            };
            let excluded = self.excluded(&path);
            if !excluded {
                out.push(Item {
                    source,
                    below: rel.clone(),
                    dest: rel.clone(),
                    kind: kind.clone(),
                    mode: st.st_mode & 0o7777,
                    mtime: st.st_mtime,
                    size: st.st_size as u64,
                    digest: None,
                });
            }
            if kind == Kind::Dir {
                let sub = rustix::fs::openat2(
                    dir,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    NO_LINKS,
                )?;
                self.walk(source, &sub, &path, &rel, depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// A file item, opened for reading (no symlink followed below its
    /// source).
    pub fn open_item(&self, sources: &[Source], item: &Item) -> Result<std::fs::File> {
        let s = &sources[item.source];
        let fd = if item.below.is_empty() {
            reopen(&s.fd)?
        } else {
            rustix::fs::openat2(
                &s.fd,
                item.below.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                NO_LINKS,
            )?
        };
        Ok(std::fs::File::from(fd))
    }
}

enum OpenError {
    Missing,
    Outside,
    Unsupported(String),
    Os(rustix::io::Errno),
}

impl From<rustix::io::Errno> for OpenError {
    fn from(e: rustix::io::Errno) -> Self {
        match e {
            rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => OpenError::Missing,
            rustix::io::Errno::XDEV => OpenError::Outside,
            e => OpenError::Os(e),
        }
    }
}

fn reopen(fd: &OwnedFd) -> rustix::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn list(dir: &OwnedFd, what: &str) -> Result<Vec<String>> {
    let d = Dir::read_from(dir).map_err(|e| Error::Io {
        what: what.to_string(),
        source: e.into(),
    })?;
    let mut names = Vec::new();
    for e in d {
        let e = e.map_err(|e| Error::Io {
            what: what.to_string(),
            source: e.into(),
        })?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    Ok(names)
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// A source path as docker cleans it: relative to the tree's root, no
/// `.` or empty components, `..` never above the root.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn has_wildcards(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Go's filepath.Match for one path component: `*`, `?`, `[...]` with
/// ranges and `^`/`!` negation, `\` escaping.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n).ok_or_else(|| Error::invalid(format!("pattern {pattern:?}"), "bad pattern"))
}

fn match_from(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => {
                    let (ok, next) = class(p, pi, n[ni])?;
                    if ok {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && ni < n.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                '\\' if pi + 1 == p.len() => return None,
                c if c != '*'
                    && c != '?'
                    && c != '['
                    && c != '\\'
                    && ni < n.len()
                    && c == n[ni] =>
                {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Some(true);
        }
        // Backtrack: the last star takes one more character.
        match star {
            Some((sp, sn)) if sn < n.len() => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                // A malformed class later in the pattern is still an error.
                if p[pi.min(p.len())..].contains(&'[') {
                    let mut i = pi;
                    while i < p.len() {
                        if p[i] == '[' {
                            class(p, i, 'a')?;
                        }
                        i += 1;
                    }
                }
                return Some(false);
            }
        }
    }
}

/// The class starting at `p[at]` (`[`): whether `c` is in it, and where
/// the pattern goes on after it; None when it is malformed.
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = i < p.len() && (p[i] == '^' || p[i] == '!');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        if i >= p.len() {
            return None;
        }
        if p[i] == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if i + 1 < p.len() && p[i] == '-' && p[i + 1] != ']' {
            hi = p[i + 1];
            if hi == '\\' {
                hi = *p.get(i + 2)?;
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_component_as_go_does() {
        for (p, n, want) in [
            ("*.c", "main.c", true),
            ("*.c", "main.h", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[!a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_match(p, n).unwrap(), want, "{p} {n}");
        }
        assert!(glob_match("[a-", "a").is_err());
    }

    #[test]
    fn paths_are_cleaned_below_the_root() {
        assert_eq!(clean_path("./a//b/./c"), "a/b/c");
        assert_eq!(clean_path("../../etc/passwd"), "etc/passwd");
        assert_eq!(clean_path("/abs/x/../y"), "abs/y");
        assert_eq!(clean_path("."), "");
    }

    fn tree(dir: &std::path::Path, ignore: &str) -> Tree {
        let ig = Ignore::parse(ignore).unwrap();
        Tree::context(dir, Some(ig)).unwrap()
    }

    #[test]
    fn sources_stay_in_the_context_and_honour_dockerignore() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("src/sub")).unwrap();
        std::fs::write(root.join("src/a.c"), "a").unwrap();
        std::fs::write(root.join("src/b.c"), "b").unwrap();
        std::fs::write(root.join("src/sub/c.txt"), "c").unwrap();
        std::fs::write(root.join("secret.key"), "k").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("src/a.c", root.join("inside")).unwrap();
        let t = tree(root, "*.key\nsrc/sub\n");
        let got: Vec<String> = t
            .select("src/*.c")
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect();
        assert_eq!(got, ["src/a.c", "src/b.c"]);
        let err = t.select("secret.key").err().unwrap().to_string();
        assert!(err.contains(".dockerignore excludes it"), "{err}");
        let err = t.select("escape").err().unwrap().to_string();
        assert!(err.contains("outside the build context"), "{err}");
        let inside = t.select("inside").unwrap();
        let items = t.items(&inside, None).unwrap();
        assert_eq!(items[0].dest, "inside");
        assert_eq!(items[0].digest, Some(Digest::of(b"a")));
        let src = t.select("src").unwrap();
        let names: Vec<String> = t
            .items(&src, None)
            .unwrap()
            .into_iter()
            .map(|i| i.dest)
            .collect();
        assert_eq!(names, ["a.c", "b.c"], "src/sub is ignored");
    }
}
