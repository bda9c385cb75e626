//! Mounting snapshots (snapshots.rs): overlayfs by default, layer
//! directories as read-only lowers under an upper and work dir (or
//! read-only without, for views). Lowers are passed one by one with fsconfig
//! `lowerdir+` (no length limit); on kernels without it (before 6.8), a
//! mount(2) from a thread whose cwd is the store's l/, where every layer
//! has a short link (see `Store::layer_link`), so each lower is 16
//! characters and some 200 layers fit in the one page of options mount(2)
//! takes. `BERTH_OVERLAY_MOUNT=legacy` forces that path (for tests, and
//! for kernels whose lowerdir+ misbehaves). Where overlay is unavailable,
//! the copy snapshotter merges the layers into a plain directory.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::store::Store;
use crate::unpack::{Kind, LayerWriter, Meta};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    Overlay,
    Copy,
}

impl Snapshotter {
    pub fn name(self) -> &'static str {
        match self {
            Snapshotter::Overlay => "overlay",
            Snapshotter::Copy => "copy",
        }
    }

    pub fn parse(s: &str) -> Result<Snapshotter> {
        match s {
            "overlay" | "overlayfs" => Ok(Snapshotter::Overlay),
            "copy" | "vfs" => Ok(Snapshotter::Copy),
            _ => Err(Error::invalid(
                format!("snapshotter {s:?}"),
                "expected overlay or copy",
            )),
        }
    }
}

pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("container id {id:?}"),
            "use 1-128 of [A-Za-z0-9_.-], starting alphanumeric",
        ))
    }
}

pub fn container_dir(store: &Store, id: &str) -> PathBuf {
    store.root.join("containers").join(id)
}

/// Unmounts whatever is mounted on `target`, however many times.
pub fn unmount_all(target: &Path) -> Result<()> {
    loop {
        match rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) => continue,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e).ctx(|| format!("unmount {}", target.display())),
        }
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// Set to `legacy` to mount overlay with mount(2) even where fsconfig
/// `lowerdir+` works; to `fuse-overlayfs` to mount with that program (the
/// fallback of a user's namespace whose kernel will not mount overlayfs
/// there), as storage.conf's `mount_program` asks podman.
pub const FORCE_LEGACY_ENV: &str = "BERTH_OVERLAY_MOUNT";

fn fuse_forced() -> bool {
    std::env::var(FORCE_LEGACY_ENV).is_ok_and(|v| v == "fuse-overlayfs")
}

/// How long fuse-overlayfs may take to mount (it daemonizes once the
/// mount is there).
const FUSE_MOUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The overlay through fuse-overlayfs: it reads the store's layout as the
/// kernel does (0/0 character devices as whiteouts, `user.overlay.opaque`)
/// and writes the same into the upper dir, so the snapshot's changes are
/// read as a kernel overlay's are. It stays mounted after this returns
/// (its daemon serves it) until unmounted.
fn mount_fuse(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> Result<()> {
    let joined: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    if joined.iter().any(|l| l.contains([':', ','])) {
        return Err(no_overlay(
            "fuse-overlayfs cannot take a layer path with ':' or ','",
        ));
    }
    let mut opts = format!("lowerdir={}", joined.join(":"));
    if let Some((u, w)) = upper {
        opts.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        ));
    }
    let mut child = std::process::Command::new("fuse-overlayfs")
        .arg("-o")
        .arg(&opts)
        .arg(target)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            no_overlay(&format!(
                "fuse-overlayfs (Debian's fuse-overlayfs package) cannot run: {e}"
            ))
        })?;
    let status =
        berth_base::process::wait_until(&mut child, std::time::Instant::now() + FUSE_MOUNT_TIMEOUT);
    let mut said = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = (&mut err).take(4096).read_to_string(&mut said);
    }
    match status {
        Some(s) if s.success() && is_mounted(target) => Ok(()),
        Some(s) => Err(no_overlay(&format!("fuse-overlayfs: {s}: {}", said.trim()))),
        None => Err(no_overlay("fuse-overlayfs did not mount in time")),
    }
}

/// One page: what mount(2) copies of the options.
const MOUNT_DATA_MAX: usize = 4096;

fn legacy_forced() -> bool {
    std::env::var(FORCE_LEGACY_ENV).is_ok_and(|v| v == "legacy")
}

/// overlayfs refuses more lower layers than this (OVL_MAX_STACK).
const MAX_LOWERS: usize = crate::limits::MAX_LAYERS;

/// An overlay of `chains` (layer chain IDs, top first) on `target`, with
/// `upper` (upper and work dir) writable, or read-only without. `empty`
/// stands in for a missing lower (an image without layers).
pub(crate) fn mount_overlay(
    store: &Store,
    chains: &[Digest],
    upper: Option<(&Path, &Path)>,
    empty: &Path,
    target: &Path,
    idmap: Option<&crate::snapshots::IdMap>,
    legacy: bool,
) -> Result<()> {
    if is_mounted(target) {
        return Ok(());
    }
    if chains.is_empty() {
        std::fs::create_dir_all(empty).ctx(|| format!("create {}", empty.display()))?;
    }
    if chains.len() > MAX_LOWERS {
        return Err(Error::invalid(
            format!("overlay mount on {}", target.display()),
            format!(
                "the image has {} layers; overlayfs stacks at most {MAX_LOWERS}",
                chains.len()
            ),
        ));
    }
    if fuse_forced() && idmap.is_none() {
        return mount_fuse(&lower_diffs(store, chains, empty), upper, target);
    }
    // In a user's namespace on a kernel that will not mount overlayfs
    // there, fuse-overlayfs serves the same layout.
    let native = mount_native(store, chains, upper, empty, target, idmap, legacy);
    match native {
        Err(e) if berth_base::rootless::in_user_namespace() && idmap.is_none() => {
            mount_fuse(&lower_diffs(store, chains, empty), upper, target).map_err(|f| {
                Error::Unsupported {
                    what: "overlay mount".into(),
                    why: format!("{e}; and {f}"),
                }
            })
        }
        other => other,
    }
}

/// The layers' diff directories, top first; `empty` for an image without
/// layers.
fn lower_diffs(store: &Store, chains: &[Digest], empty: &Path) -> Vec<PathBuf> {
    let mut l: Vec<PathBuf> = chains.iter().map(|c| store.layer_diff(c)).collect();
    if l.is_empty() {
        l.push(empty.to_path_buf());
    }
    l
}

/// The kernel's overlayfs: fsconfig with `lowerdir+`, else mount(2).
fn mount_native(
    store: &Store,
    chains: &[Digest],
    upper: Option<(&Path, &Path)>,
    empty: &Path,
    target: &Path,
    idmap: Option<&crate::snapshots::IdMap>,
    legacy: bool,
) -> Result<()> {
    if !(legacy || legacy_forced()) || idmap.is_some() {
        let mut lowers = lower_diffs(store, chains, empty);
        // Held until the overlay is made: it keeps what it needs of them.
        let mut mapped = Vec::new();
        if let Some(m) = idmap {
            let ns = berth_base::userns::create(&m.uids, &m.gids)
                .ctx(|| "make a user namespace for the rootfs's id mapping".into())?;
            for l in &mut lowers {
                let tree = berth_base::userns::idmapped_clone(l, &ns)
                    .ctx(|| format!("id-mapped mount of {}", l.display()))?;
                *l = PathBuf::from(format!("/proc/self/fd/{}", tree.as_raw_fd()));
                mapped.push(tree);
            }
        }
        match mount_fsconfig(&lowers, upper, target) {
            Err(FsErr::Unsupported) if idmap.is_some() => {
                return Err(no_overlay(
                    "a user namespace's rootfs needs overlay's lowerdir+ (Linux 6.8)",
                ));
            }
            Err(FsErr::Unsupported) => {}
            Ok(()) => return Ok(()),
            Err(FsErr::Failed(e)) => return Err(e),
        }
    }
    let mut lowers = Vec::with_capacity(chains.len());
    for c in chains {
        lowers.push(store.layer_link(c)?);
    }
    if lowers.is_empty() {
        lowers.push(empty.to_string_lossy().into_owned());
    }
    mount_legacy(store, &lowers, upper, target)
}

/// A bind mount of `source` on `target`, read-only if asked; nothing when
/// they are the same directory (a copy snapshot's own rootfs).
pub(crate) fn mount_bind(source: &Path, target: &Path, readonly: bool) -> Result<()> {
    if source == target || is_mounted(target) {
        return Ok(());
    }
    use rustix::mount::MountFlags;
    rustix::mount::mount_bind(source, target)
        .ctx(|| format!("bind {} on {}", source.display(), target.display()))?;
    if readonly {
        let res = rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
            .ctx(|| format!("make {} read-only", target.display()));
        if res.is_err() {
            let _ = unmount_all(target);
        }
        res?;
    }
    Ok(())
}

enum FsErr {
    Unsupported,
    Failed(Error),
}

fn mount_fsconfig(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<(), FsErr> {
    use rustix::mount::*;
    let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOSYS) => return Err(FsErr::Unsupported),
        Err(rustix::io::Errno::NODEV) => {
            return Err(FsErr::Failed(no_overlay("this kernel has no overlayfs")));
        }
        Err(e) => {
            return Err(FsErr::Failed(Error::invalid(
                "overlay",
                format!("fsopen: {e}"),
            )));
        }
    };
    for (i, l) in lowers.iter().enumerate() {
        if let Err(e) = fsconfig_set_string(&fs, "lowerdir+", l) {
            if i == 0 && e == rustix::io::Errno::INVAL {
                return Err(FsErr::Unsupported);
            }
            return Err(FsErr::Failed(Error::invalid(
                format!("overlay lower {}", l.display()),
                e,
            )));
        }
    }
    let fail = |what: &str, e: rustix::io::Errno| {
        FsErr::Failed(Error::invalid(
            format!("overlay mount on {}", target.display()),
            format!("{what}: {e}"),
        ))
    };
    // A user's namespace keeps overlay's xattrs in user.overlay.*
    // (`berth_base::rootless::overlay_xattr`).
    if berth_base::rootless::in_user_namespace() {
        fsconfig_set_flag(&fs, "userxattr").map_err(|e| fail("userxattr", e))?;
    }
    if let Some((upper, work)) = upper {
        fsconfig_set_string(&fs, "upperdir", upper).map_err(|e| fail("upperdir", e))?;
        fsconfig_set_string(&fs, "workdir", work).map_err(|e| fail("workdir", e))?;
    }
    fsconfig_create(&fs).map_err(|e| match (e, upper) {
        // The store's file system cannot hold an upper dir (overlay on
        // overlay, or no xattrs): overlay cannot work here.
        (rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP, Some((upper, _))) => {
            FsErr::Failed(no_overlay(&format!(
                "creating the mount with upper dir {}: {e}",
                upper.display()
            )))
        }
        (e, _) => fail("create", e),
    })?;
    let attrs = if upper.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(|e| fail("fsmount", e))?;
    move_mount(
        &m,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail("move_mount", e))
}

fn no_overlay(why: &str) -> Error {
    Error::Unsupported {
        what: "overlay mount".into(),
        why: why.to_string(),
    }
}

/// mount(2) with lowers named by their links in l/, from a thread whose
/// cwd is l/ (unshare(CLONE_FS)), so the process's cwd never changes.
/// `lowers` are link names, or an absolute path for the empty lower.
fn mount_legacy(
    store: &Store,
    lowers: &[String],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<()> {
    let links = store.root.join("l");
    let mut data = format!("lowerdir={}", lowers.join(":"));
    if berth_base::rootless::in_user_namespace() {
        data.push_str(",userxattr");
    }
    if let Some((upper, work)) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    let flags = if upper.is_some() {
        rustix::mount::MountFlags::empty()
    } else {
        rustix::mount::MountFlags::RDONLY
    };
    if data.len() >= MOUNT_DATA_MAX {
        return Err(Error::invalid(
            format!("overlay mount on {}", target.display()),
            format!(
                "{} layers do not fit in the {MOUNT_DATA_MAX} bytes of options mount(2) takes ({} needed); Linux 6.8 lifts this limit (fsconfig lowerdir+)",
                lowers.len(),
                data.len() + 1
            ),
        ));
    }
    let target = target.to_path_buf();
    let upper = upper
        .map(|(u, _)| u.display().to_string())
        .unwrap_or_default();
    std::thread::spawn(move || -> Result<()> {
        // SAFETY: integer flags; CLONE_FS gives this thread, which ends
        // after the mount, its own cwd for the chdir below.
        if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "unshare(CLONE_FS)".into());
        }
        rustix::process::chdir(&links).ctx(|| format!("chdir {}", links.display()))?;
        let data = std::ffi::CString::new(data)
            .map_err(|_| Error::invalid("overlay options", "NUL byte"))?;
        match rustix::mount::mount("overlay", &target, "overlay", flags, data.as_c_str()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NODEV) => Err(no_overlay("this kernel has no overlayfs")),
            // Every lower fits (checked above) and exists (a missing one is
            // ENOENT): the upper dir's file system is what overlay refuses.
            Err(rustix::io::Errno::INVAL) => {
                Err(no_overlay(&format!("mount(2) refused upper dir {upper}")))
            }
            Err(e) => Err(e).ctx(|| format!("mount overlay on {}", target.display())),
        }
    })
    .join()
    .expect("mount thread")
}

/// The copy snapshotter: each layer (`chains`, bottom first), merged into `rootfs` with
/// the same safe writer as unpacking (whiteouts delete, opaque dirs empty).
pub(crate) fn copy_layers(store: &Store, chains: &[Digest], rootfs: &Path) -> Result<()> {
    lay_down(store, chains, LayerWriter::merging(rootfs, "rootfs")?)
}

/// `copy_layers` onto a live root (the process's own `/` in a build's
/// rootfs isolation, or a directory standing for it): `protect`'s paths
/// are neither written nor removed.
pub fn copy_layers_except(
    store: &Store,
    chains: &[Digest],
    rootfs: &Path,
    protect: crate::protect::Protected,
) -> Result<()> {
    lay_down(
        store,
        chains,
        LayerWriter::merging_except(rootfs, &rootfs.display().to_string(), protect)?,
    )
}

fn lay_down(store: &Store, chains: &[Digest], mut w: LayerWriter) -> Result<()> {
    for c in chains {
        let src = store.layer_diff(c);
        let mut links = HashMap::new();
        walk(&src, &src, &mut w, &mut links)?;
    }
    w.finish()
}

fn walk(
    base: &Path,
    dir: &Path,
    w: &mut LayerWriter,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<()> {
    // Names only: a DirEntry keeps its directory open, and the walk goes
    // as deep as the layers do.
    let mut entries: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .ctx(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    // Opaque first: it empties what lower layers put there, not ours.
    let opaque = berth_base::rootless::overlay_xattr("opaque");
    if rustix::fs::lgetxattr(dir, opaque.as_str(), &mut [0u8; 4][..]).is_ok_and(|n| n == 1) {
        let rel = dir.strip_prefix(base).unwrap_or(Path::new(""));
        let mut p = rel.as_os_str().as_bytes().to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(b".wh..wh..opq");
        w.entry(&p, &dir_meta(), &mut std::io::empty())?;
    }
    for e in entries {
        let path = dir.join(e);
        let md = std::fs::symlink_metadata(&path).ctx(|| format!("stat {}", path.display()))?;
        let rel = path
            .strip_prefix(base)
            .expect("under base")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let ft = md.file_type();
        let xattrs = read_xattrs(&path);
        let mut meta = Meta {
            kind: Kind::File,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            xattrs,
            size: 0,
        };
        if ft.is_char_device() && md.rdev() == 0 {
            // An overlay whiteout: delete the name in the merged tree.
            let mut p = rel.clone();
            let name_at = p.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            p.splice(name_at..name_at, b".wh.".iter().copied());
            w.entry(&p, &meta, &mut std::io::empty())?;
            continue;
        }
        if ft.is_dir() {
            meta.kind = Kind::Dir;
            w.entry(&rel, &meta, &mut std::io::empty())?;
            walk(base, &path, w, links)?;
            continue;
        }
        if ft.is_file() && md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                meta.kind = Kind::Hardlink(first.clone());
                w.entry(&rel, &meta, &mut std::io::empty())?;
                continue;
            }
            links.insert((md.dev(), md.ino()), rel.clone());
        }
        if ft.is_file() {
            meta.size = md.len();
            let mut f = std::fs::File::open(&path).ctx(|| format!("open {}", path.display()))?;
            w.entry(&rel, &meta, &mut f as &mut dyn Read)?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&path).ctx(|| format!("readlink {}", path.display()))?;
            meta.kind = Kind::Symlink(t.as_os_str().as_bytes().to_vec());
            w.entry(&rel, &meta, &mut std::io::empty())?;
        } else {
            let (ma, mi) = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
            meta.kind = if ft.is_char_device() {
                Kind::Char(ma, mi)
            } else if ft.is_block_device() {
                Kind::Block(ma, mi)
            } else if ft.is_fifo() {
                Kind::Fifo
            } else {
                continue; // sockets are not layer content
            };
            w.entry(&rel, &meta, &mut std::io::empty())?;
        }
    }
    Ok(())
}

fn dir_meta() -> Meta {
    Meta {
        kind: Kind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: Vec::new(),
        size: 0,
    }
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if berth_base::rootless::is_overlay_xattr(name) {
            continue;
        }
        let mut val = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut val[..]) {
            val.truncate(len);
            out.push((name.to_vec(), val));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ImageRecord, LayerInfo};

    fn mount_image(store: &Store, image: &ImageRecord, dir: &Path) -> Result<()> {
        let chains: Vec<Digest> = image
            .layers
            .iter()
            .rev()
            .map(|l| l.chain_id.clone())
            .collect();
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        mount_overlay(
            store,
            &chains,
            Some((&upper, &work)),
            &dir.join("empty"),
            &dir.join("rootfs"),
            None,
            true,
        )
    }

    /// A store with an image of `n` one-file layers (file `lI` holds `I`),
    /// committed as a pull commits them.
    fn image_of(n: usize) -> (tempfile::TempDir, Store, ImageRecord) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let diff_ids: Vec<Digest> = (0..n)
            .map(|i| Digest::of(format!("layer {i}").as_bytes()))
            .collect();
        let chains = crate::digest::chain_ids(&diff_ids);
        let mut layers = Vec::new();
        for (i, (diff_id, chain)) in diff_ids.into_iter().zip(chains).enumerate() {
            let tmp = store.layer_temp(&chain, &diff_id);
            std::fs::create_dir_all(tmp.join("diff")).unwrap();
            std::fs::write(tmp.join("diff").join(format!("l{i}")), i.to_string()).unwrap();
            store.commit_layer(&tmp, &chain, 1).unwrap();
            layers.push(LayerInfo {
                digest: diff_id.clone(),
                size: 1,
                media_type: crate::manifest::OCI_LAYER.into(),
                diff_id,
                chain_id: chain,
                unpacked: 1,
            });
        }
        let rec = ImageRecord {
            id: Digest::of(format!("config of {n}").as_bytes()),
            manifest_digest: Digest::of(format!("manifest of {n}").as_bytes()),
            manifest_media_type: crate::manifest::OCI_MANIFEST.into(),
            config_size: 0,
            layers,
            created: None,
            added: 0,
            extra_blobs: Vec::new(),
            names: Vec::new(),
            repo_digests: Vec::new(),
            digest_names: Vec::new(),
        };
        (d, store, rec)
    }

    /// Unmounts whatever is left under `dir` (a failed assertion must not
    /// leave a mount behind).
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            while rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH).is_ok() {}
        }
    }

    #[test]
    fn legacy_mount_fits_many_layers_through_short_links() {
        let n = 160;
        let (_d, store, image) = image_of(n);
        let dir = container_dir(&store, "legacy");
        for sub in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let rootfs = dir.join("rootfs");
        let _guard = Unmount(rootfs.clone());
        // With absolute lower paths these layers need far more than a page.
        let absolute: usize = image
            .layers
            .iter()
            .map(|l| store.layer_diff(&l.chain_id).as_os_str().len() + 1)
            .sum();
        assert!(absolute > MOUNT_DATA_MAX, "{absolute}");
        mount_image(&store, &image, &dir).unwrap();
        assert!(is_mounted(&rootfs));
        for i in [0, n / 2, n - 1] {
            assert_eq!(
                std::fs::read_to_string(rootfs.join(format!("l{i}"))).unwrap(),
                i.to_string()
            );
        }
        // The options name the short links, top layer first.
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(&*rootfs.to_string_lossy()))
            .unwrap();
        let top = store.layer_link(&image.layers[n - 1].chain_id).unwrap();
        assert_eq!(top.len(), 16);
        assert!(line.contains(&format!("lowerdir={top}:")), "{line}");
        unmount_all(&rootfs).unwrap();
        crate::remove::remove_tree(&dir).unwrap();
        assert!(!is_mounted(&rootfs) && !dir.exists());
    }

    #[test]
    fn an_overlay_that_cannot_take_the_layers_is_an_error_not_a_copy() {
        // More short links than one page of options holds.
        let (_d, store, image) = image_of(260);
        let dir = container_dir(&store, "toomany");
        for sub in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let _guard = Unmount(dir.join("rootfs"));
        let err = mount_image(&store, &image, &dir).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { .. }) && err.to_string().contains("do not fit"),
            "{err}"
        );
        // Through a bundle with no snapshotter asked for: still the error,
        // and nothing left behind.
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["true"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let mut image = image;
        image.id = Digest::of(config);
        store.put_blob(config, &image.id).unwrap();
        // SAFETY: each test runs in its own process under nextest, and
        // nothing else in this one reads the environment meanwhile.
        unsafe { std::env::set_var(FORCE_LEGACY_ENV, "legacy") };
        let res = crate::bundle::create_bundle(
            &store,
            &image,
            "viabundle",
            &crate::bundle::BundleOptions::default(),
        );
        // SAFETY: as for set_var above.
        unsafe { std::env::remove_var(FORCE_LEGACY_ENV) };
        let err = res.unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
        assert!(!container_dir(&store, "viabundle").exists());
        assert!(store.container("viabundle").unwrap().is_none());
    }
}
