//! The rootfs mode's workspaces: `RootfsWorkspace`, a step in the
//! process's own root, and `TreeWorkspace`, another stage's files laid
//! down in a directory of the store for a `--from` to read while `/`
//! holds this stage.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use berth_engine::model::ContainerConfig;
use berth_image::digest::Digest;
use berth_image::export::Compression;
use berth_image::leases::Resource;
use berth_image::protect::Protected;
use berth_image::store::{LayerInfo, Store};
use berth_image::upper::UpperDir;
use serde_json::Value;

use super::snapshot::{Snapshot, walk};
use crate::build::Builder;
use crate::dockerfile::Run;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::working::{Ran, Workspace};

/// What the root holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holds {
    /// Not known: the builder's own image at first, or a step that
    /// failed half way. Emptied before use.
    Unknown,
    /// Exactly the layers up to this chain ID (None: nothing, scratch).
    Chain(Option<Digest>),
}

struct RootState {
    /// A workspace is using the root (one at a time: there is one `/`).
    busy: bool,
    holds: Holds,
    /// The walk of what it holds, when the last step left one: the next
    /// step's "before".
    snapshot: Option<Snapshot>,
}

/// The one root a rootfs build runs its steps in, and what it holds.
pub struct RootLock {
    root: PathBuf,
    keep: Protected,
    state: Mutex<RootState>,
    free: Condvar,
}

impl RootLock {
    /// `root` (`/`, or a directory standing for it in tests) with the
    /// paths it keeps.
    pub fn new(root: PathBuf, keep: Protected) -> RootLock {
        RootLock {
            root,
            keep,
            state: Mutex::new(RootState {
                busy: false,
                holds: Holds::Unknown,
                snapshot: None,
            }),
            free: Condvar::new(),
        }
    }

    /// This process's `/` for a build, once the guard allows it: kept
    /// are the fixed list, the mount points and the build's own paths.
    pub fn for_process(
        store_root: &Path,
        run_root: &Path,
        context: Option<&Path>,
    ) -> Result<RootLock> {
        super::guard::Evidence::gather().check()?;
        let own = super::keep::Own::of_process(store_root, run_root, context)?;
        let keep = super::keep::keep_list(&own, &super::keep::process_mounts()?)?;
        Ok(RootLock::new(PathBuf::from("/"), keep))
    }

    pub fn keep(&self) -> &Protected {
        &self.keep
    }

    fn lock(&self) -> MutexGuard<'_, RootState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no workspace uses the root, and takes it.
    fn acquire(&self) {
        let mut s = self.lock();
        while s.busy {
            s = self.free.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.busy = true;
    }

    fn release(&self) {
        self.lock().busy = false;
        self.free.notify_one();
    }
}

/// A step in the process's own root.
pub struct RootfsWorkspace<'s> {
    lock: Arc<RootLock>,
    store: &'s Store,
    root_fd: OwnedFd,
    root_dev: u64,
    before: Snapshot,
    /// The step's command, user, Env, working directory.
    argv: Vec<String>,
    env: Vec<String>,
    user: String,
    cwd: String,
}

impl<'s> RootfsWorkspace<'s> {
    /// Takes the root and makes it hold exactly `layers`: nothing to do
    /// when it holds them already, the missing ones laid on top when it
    /// holds a lower part of them, else emptied (but the kept paths) and
    /// all of them laid down. `config` is the stage's image config,
    /// `container` what the step adds.
    pub fn create(
        lock: Arc<RootLock>,
        store: &'s Store,
        layers: &[LayerInfo],
        config: &Value,
        container: ContainerConfig,
    ) -> Result<RootfsWorkspace<'s>> {
        lock.acquire();
        // From here, Drop releases it (and forgets what it holds, unless
        // the step was committed).
        let root_fd = match open_dir(&lock.root) {
            Ok(fd) => fd,
            Err(e) => {
                lock.release();
                return Err(e);
            }
        };
        let mut ws = RootfsWorkspace {
            lock,
            store,
            root_fd,
            root_dev: 0,
            before: Snapshot::default(),
            argv: container.cmd.clone().unwrap_or_default(),
            env: env_of(config, &container.env),
            user: container
                .user
                .clone()
                .or_else(|| config["config"]["User"].as_str().map(String::from))
                .unwrap_or_default(),
            cwd: config["config"]["WorkingDir"]
                .as_str()
                .filter(|w| !w.is_empty())
                .unwrap_or("/")
                .to_string(),
        };
        ws.root_dev = rustix::fs::fstat(&ws.root_fd)?.st_dev;
        ws.prepare(layers)?;
        Ok(ws)
    }

    /// Until `layer` says otherwise, what the root holds is not known: a
    /// step that fails half way leaves it changed.
    fn prepare(&mut self, layers: &[LayerInfo]) -> Result<()> {
        let target = layers.last().map(|l| l.chain_id.clone());
        let (holds, snapshot) = {
            let mut s = self.lock.lock();
            (
                std::mem::replace(&mut s.holds, Holds::Unknown),
                s.snapshot.take(),
            )
        };
        let (from, snapshot) = match holds {
            Holds::Chain(c) if c == target => (layers.len(), snapshot),
            Holds::Chain(None) => (0, None),
            Holds::Chain(Some(c)) => match layers.iter().position(|l| l.chain_id == c) {
                Some(i) => (i + 1, None),
                None => {
                    self.empty()?;
                    (0, None)
                }
            },
            Holds::Unknown => {
                self.empty()?;
                (0, None)
            }
        };
        if from < layers.len() {
            let chains: Vec<Digest> = layers[from..].iter().map(|l| l.chain_id.clone()).collect();
            lay_down(self.store, &chains, &self.lock.root, self.lock.keep.clone())?;
        }
        self.before = match snapshot {
            Some(s) => s,
            None => Snapshot::of(&self.walk(false)?),
        };
        Ok(())
    }

    /// Removes everything in the root but the kept paths.
    fn empty(&self) -> Result<()> {
        let dir = rustix::fs::openat(
            &self.root_fd,
            ".",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        self.lock
            .keep
            .empty(dir.as_fd(), b"")
            .map_err(Error::io(format!("empty {}", self.lock.root.display())))
    }

    fn walk(&self, xattrs: bool) -> Result<Vec<berth_image::upper::Node>> {
        let u = UpperDir::open(&self.lock.root)?;
        walk(&u, self.root_dev, &self.lock.keep, xattrs)
    }

    /// `path` (absolute in the root) resolved there, refused when it is
    /// one of the kept paths: COPY and WORKDIR must not write into the
    /// store, the context or a mount.
    fn check_dest(&self, path: &str) -> Result<()> {
        let rel = berth_image::upper::rel_path(path);
        let mut real = rel.clone();
        // Symlinks in the root resolve inside it: where it really is.
        if let Ok(fd) = rustix::fs::openat2(
            &self.root_fd,
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
            berth_engine::rootfd::IN_ROOT,
        ) {
            let abs = std::fs::read_link(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ))
            .map_err(Error::io(format!("resolve {path}")))?;
            if let Ok(r) = abs.strip_prefix(&self.lock.root) {
                real = r.as_os_str().as_encoded_bytes().to_vec();
            }
        }
        if self.lock.keep.is_kept(&rel) || self.lock.keep.is_kept(&real) {
            return Err(Error::invalid(
                path,
                "in rootfs isolation this path is the builder's own (a mount, berth's store or binary, the build context): nothing is written there",
            ));
        }
        Ok(())
    }
}

/// The image's Env with the step's on top (by name), PATH defaulted as a
/// container's is.
fn env_of(config: &Value, step: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![berth_image::spec::DEFAULT_PATH.to_string()];
    let image = config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for e in image.iter().chain(step) {
        let Some((k, _)) = e.split_once('=') else {
            continue;
        };
        if k.is_empty() {
            continue;
        }
        let prefix = format!("{k}=");
        match out.iter().position(|o| o.starts_with(&prefix)) {
            Some(i) => out[i] = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::CLOEXEC
            | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io(format!("open {}", path.display()))(e.into()))
}

/// Lays `chains` (bottom first) down on `root`, `keep` untouched.
fn lay_down(store: &Store, chains: &[Digest], root: &Path, keep: Protected) -> Result<()> {
    let _l = store.lock_shared()?;
    for c in chains {
        if !store.has_layer(c) {
            return Err(Error::invalid(
                format!("layer {c}"),
                "not in the store (removed while the build ran?)",
            ));
        }
    }
    Ok(berth_image::snapshot::copy_layers_except(
        store, chains, root, keep,
    )?)
}

impl Workspace for RootfsWorkspace<'_> {
    fn root(&self) -> PathBuf {
        self.lock.root.clone()
    }

    fn mkdir(&self, path: &str, owner: (u32, u32)) -> Result<()> {
        self.check_dest(path)?;
        Ok(berth_engine::rootfd::mkdir_all(
            &self.root_fd,
            path,
            owner,
            &format!("mkdir {path}"),
        )?)
    }

    fn is_dir(&self, path: &str) -> Result<bool> {
        Ok(berth_engine::rootfd::is_dir(
            &self.root_fd,
            path,
            &format!("stat {path}"),
        )?)
    }

    /// The tar's entries below `dest`, but those a kept path holds.
    fn copy_in(&self, tar: &mut dyn std::io::Read, dest: &str) -> Result<()> {
        self.check_dest(dest)?;
        let base = berth_image::upper::rel_path(dest);
        let keep = &self.lock.keep;
        berth_engine::rootfd::unpack_tar_except(
            &self.root_fd,
            tar,
            dest,
            &format!("copy to {dest}"),
            |p| keep.is_kept(&berth_image::protect::join(&base, p)),
        )?;
        Ok(())
    }

    fn run(
        &self,
        stdin: Option<&[u8]>,
        progress: &dyn Progress,
        n: usize,
        cancel: &AtomicBool,
    ) -> Result<Ran> {
        if self.lock.root != Path::new("/") {
            return Err(Error::invalid(
                "RUN",
                format!(
                    "rootfs isolation runs processes in / only, not {}",
                    self.lock.root.display()
                ),
            ));
        }
        let user = berth_image::spec::resolve_user(&self.lock.root, &self.user)
            .map_err(|e| Error::invalid(format!("USER {}", self.user), e.to_string()))?;
        if !self.is_dir(&self.cwd)? {
            self.mkdir(&self.cwd, (0, 0))?;
        }
        let spec = super::process::Spec {
            argv: self.argv.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            uid: user.uid,
            gid: user.gid,
            groups: std::iter::once(user.gid)
                .chain(user.additional.iter().copied())
                .collect(),
        };
        super::process::run(&spec, stdin, progress, n, cancel)
    }

    /// The root walked again: what changed since `create`'s walk, as a
    /// layer. The root then holds the new chain, and this walk is the
    /// next step's "before".
    fn layer(&self, parent: Option<&Digest>, lease: &str) -> Result<LayerInfo> {
        let after = self.walk(true)?;
        let changes = self.before.changes(&after);
        let u = UpperDir::open(&self.lock.root)?;
        let layer = {
            let _l = self.store.lock_shared()?;
            let layer = berth_image::export::export_changes(
                self.store,
                &u,
                &changes,
                parent,
                Compression::Gzip,
            )?;
            self.store
                .lease_add(lease, &Resource::Layer(layer.chain_id.clone()))?;
            self.store
                .lease_add(lease, &Resource::Blob(layer.digest.clone()))?;
            layer
        };
        let mut s = self.lock.lock();
        s.holds = Holds::Chain(Some(layer.chain_id.clone()));
        s.snapshot = Some(Snapshot::of(&after));
        Ok(layer)
    }
}

/// The root is released; unless `layer` said what it holds now, it is
/// not known (`prepare` forgot it), and the next step empties it first.
impl Drop for RootfsWorkspace<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

/// Another stage's (or image's) files for a `--from` to read, laid down
/// in a directory of the store while `/` holds this stage; removed when
/// dropped.
pub struct TreeWorkspace {
    dir: PathBuf,
}

impl TreeWorkspace {
    pub fn create(store: &Store, layers: &[LayerInfo]) -> Result<TreeWorkspace> {
        let dir = store.temp_path("build-from");
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("create {}", dir.display())))?;
        let t = TreeWorkspace { dir };
        let chains: Vec<Digest> = layers.iter().map(|l| l.chain_id.clone()).collect();
        lay_down(store, &chains, &t.dir, Protected::default())?;
        Ok(t)
    }

    fn only_read(&self, what: &str) -> Error {
        Error::invalid(
            what,
            "a --from tree is only read (rootfs isolation lays it down apart)",
        )
    }
}

impl Workspace for TreeWorkspace {
    fn root(&self) -> PathBuf {
        self.dir.clone()
    }

    fn mkdir(&self, path: &str, _: (u32, u32)) -> Result<()> {
        Err(self.only_read(&format!("mkdir {path}")))
    }

    fn is_dir(&self, path: &str) -> Result<bool> {
        let root = berth_engine::rootfd::open_root(&self.dir)?;
        Ok(berth_engine::rootfd::is_dir(
            &root,
            path,
            &format!("stat {path}"),
        )?)
    }

    fn copy_in(&self, _: &mut dyn std::io::Read, dest: &str) -> Result<()> {
        Err(self.only_read(&format!("copy to {dest}")))
    }

    fn run(&self, _: Option<&[u8]>, _: &dyn Progress, _: usize, _: &AtomicBool) -> Result<Ran> {
        Err(self.only_read("RUN"))
    }

    fn layer(&self, _: Option<&Digest>, _: &str) -> Result<LayerInfo> {
        Err(self.only_read("a layer"))
    }
}

impl Drop for TreeWorkspace {
    fn drop(&mut self) {
        if let Err(e) = berth_image::remove::remove_tree(&self.dir) {
            tracing::warn!("removing {}: {e}", self.dir.display());
        }
    }
}

impl<'a> Builder<'a> {
    /// A workspace whose root a `--from` reads: in rootfs isolation its
    /// layers laid down apart (the root holds this stage), else a
    /// working container as for any step.
    pub(crate) fn tree_workspace(
        &self,
        layers: &[LayerInfo],
        config: &Value,
        container: ContainerConfig,
    ) -> Result<Box<dyn Workspace + 'a>> {
        if self.rootfs.is_some() {
            return Ok(Box::new(TreeWorkspace::create(
                &self.engine.images,
                layers,
            )?));
        }
        self.workspace(layers, config, container)
    }

    /// In rootfs isolation the step's process is the builder's child: no
    /// mount, no network or confinement of its own can be made.
    pub(crate) fn rootfs_refuses(&self, run: &Run, network: &str) -> Result<(), String> {
        if self.rootfs.is_none() {
            return Ok(());
        }
        let why = "in rootfs isolation (berth build inside an unprivileged container) a RUN is a process of the builder, which can make no mount or namespace";
        if !run.mounts.is_empty() {
            return Err(format!(
                "--mount: {why}; copy what it needs in with COPY, or build with --isolation container where mounts are allowed"
            ));
        }
        if !matches!(network, "default" | "") {
            return Err(format!(
                "--network={network}: {why}; RUN steps share the builder's own network"
            ));
        }
        // `sandbox` is the default; `insecure` is refused in any mode.
        if let Some(s) = run.security.as_ref().filter(|s| *s != "sandbox") {
            return Err(format!(
                "--security={s}: {why}; RUN steps have the builder's own confinement"
            ));
        }
        Ok(())
    }
}

/// The rootfs state of a build: none in container isolation; in rootfs
/// isolation the process's `/`, once the guard allows it and the build
/// asks nothing it cannot give.
pub fn for_build(
    store_root: &Path,
    run_root: &Path,
    opts: &crate::build::BuildOptions,
) -> Result<Option<Arc<RootLock>>> {
    if opts.isolation != super::Isolation::Rootfs {
        return Ok(None);
    }
    if let Some(n) = &opts.network
        && !matches!(n.as_str(), "default" | "")
    {
        return Err(Error::invalid(
            format!("--network {n}"),
            "in rootfs isolation RUN steps share the builder's own network",
        ));
    }
    Ok(Some(Arc::new(RootLock::for_process(
        store_root,
        run_root,
        opts.context.as_deref(),
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A layer of the files `make` writes into an upper dir.
    fn layer_of(
        store: &Store,
        scratch: &Path,
        parent: Option<&Digest>,
        make: impl FnOnce(&Path),
    ) -> LayerInfo {
        let upper = scratch.join(format!("upper-{}", rand_name()));
        std::fs::create_dir_all(&upper).unwrap();
        make(&upper);
        let _l = store.lock_shared().unwrap();
        berth_image::export::export_layer(store, &upper, parent, &Default::default()).unwrap()
    }

    fn rand_name() -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        N.fetch_add(1, Ordering::Relaxed).to_string()
    }

    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    fn ws<'s>(lock: &Arc<RootLock>, store: &'s Store, layers: &[LayerInfo]) -> RootfsWorkspace<'s> {
        RootfsWorkspace::create(
            lock.clone(),
            store,
            layers,
            &serde_json::json!({"config": {}}),
            ContainerConfig::default(),
        )
        .unwrap()
    }

    /// A directory standing for `/`: the builder's own files, a store
    /// and a context inside it, as in a builder container.
    #[test]
    fn a_reset_leaves_only_kept_paths_and_the_stages_layers() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let scratch = d.path().join("scratch");
        for dir in [
            "bin",
            "etc",
            "berth",
            "workspace/src",
            "proc/1",
            "var/lib",
            "usr/share",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("bin/builder-tool"), b"the builder image's").unwrap();
        std::fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::write(root.join("etc/builder.conf"), b"x").unwrap();
        std::fs::write(root.join("berth/berth"), b"binary").unwrap();
        std::fs::write(root.join("workspace/src/main.c"), b"context").unwrap();
        std::fs::write(root.join("proc/1/status"), b"proc").unwrap();
        std::fs::write(root.join("usr/share/doc"), b"gone").unwrap();
        let store = Store::open(&root.join("var/lib/berth")).unwrap();
        let keep = Protected::new([
            "/proc",
            "/etc/hosts",
            "/berth",
            "/workspace",
            "/var/lib/berth",
        ]);
        let lock = Arc::new(RootLock::new(root.clone(), keep));

        let base = layer_of(&store, &scratch, None, |u| {
            std::fs::create_dir_all(u.join("bin")).unwrap();
            std::fs::create_dir_all(u.join("etc")).unwrap();
            std::fs::write(u.join("bin/sh"), b"shell").unwrap();
            std::fs::write(u.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
            // The image's own /etc/hosts and /workspace: a kept path wins.
            std::fs::write(u.join("etc/hosts"), b"image's hosts").unwrap();
            std::fs::create_dir_all(u.join("workspace")).unwrap();
            std::fs::write(u.join("workspace/from-image"), b"no").unwrap();
            std::fs::write(u.join("old"), b"deleted by the next layer").unwrap();
        });
        let second = layer_of(&store, &scratch, Some(&base.chain_id), |u| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                u.join("old"),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .unwrap();
            std::fs::create_dir_all(u.join("app")).unwrap();
            std::fs::write(u.join("app/run"), b"app").unwrap();
        });
        let store_before = tree(&root.join("var/lib/berth"));

        let w = ws(&lock, &store, &[base.clone(), second.clone()]);
        let got = tree(&root);
        let got: Vec<&str> = got
            .iter()
            .map(|s| s.as_str())
            .filter(|p| !p.starts_with("var/lib/berth/"))
            .collect();
        assert_eq!(
            got,
            [
                "app",
                "app/run",
                "berth",
                "berth/berth",
                "bin",
                "bin/sh",
                "etc",
                "etc/hosts",
                "etc/passwd",
                "proc",
                "proc/1",
                "proc/1/status",
                "var",
                "var/lib",
                "var/lib/berth",
                "workspace",
                "workspace/src",
                "workspace/src/main.c",
            ]
        );
        assert_eq!(
            std::fs::read(root.join("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(
            std::fs::read(root.join("workspace/src/main.c")).unwrap(),
            b"context"
        );
        assert_eq!(std::fs::read(root.join("berth/berth")).unwrap(), b"binary");
        // The store lost nothing (it gained the test's layers only).
        let store_after = tree(&root.join("var/lib/berth"));
        for p in &store_before {
            assert!(store_after.contains(p), "{p} left the store");
        }

        // A step: COPY and WORKDIR write, but never into kept paths.
        w.mkdir("/srv/www", (0, 0)).unwrap();
        let e = w.mkdir("/var/lib/berth/x", (0, 0)).unwrap_err().to_string();
        assert!(e.contains("the builder's own"), "{e}");
        std::os::unix::fs::symlink("/workspace", root.join("to-context")).unwrap();
        let e = w
            .copy_in(&mut std::io::empty(), "/to-context")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the builder's own"), "through a symlink: {e}");
        std::fs::remove_file(root.join("to-context")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in [
            ("srv/www/index.html", &b"hello"[..]),
            ("var/lib/berth/planted", &b"no"[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            b.append_data(&mut h, p, data).unwrap();
        }
        let data = b.into_inner().unwrap();
        w.copy_in(&mut &data[..], "/").unwrap();
        assert!(!root.join("var/lib/berth/planted").exists());
        std::fs::remove_file(root.join("app/run")).unwrap();
        std::fs::set_permissions(root.join("bin/sh"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let lease = store.lease_create(Default::default(), None).unwrap().id;
        let step = w.layer(Some(&second.chain_id), &lease).unwrap();
        drop(w);
        let diff = store.layer_diff(&step.chain_id);
        let mut names = tree(&diff);
        names.retain(|n| !n.is_empty());
        assert_eq!(
            names,
            [
                "app",
                "app/run",
                "bin",
                "bin/sh",
                "srv",
                "srv/www",
                "srv/www/index.html"
            ]
        );
        let md = std::fs::symlink_metadata(diff.join("app/run")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(md.file_type().is_char_device(), "app/run is a whiteout");

        // Another chain: emptied again, the new layers only.
        let other = layer_of(&store, &scratch, None, |u| {
            std::fs::write(u.join("only-this"), b"x").unwrap();
        });
        let w = ws(&lock, &store, &[other]);
        let got = tree(&root);
        assert!(got.contains(&"only-this".to_string()));
        for gone in ["bin/sh", "srv", "app", "etc/passwd"] {
            assert!(!got.contains(&gone.to_string()), "{gone} survived: {got:?}");
        }
        assert!(root.join("workspace/src/main.c").exists());
        drop(w);
    }
}
