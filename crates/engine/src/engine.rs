//! The engine: where the records, the image store, the runtime handlers,
//! the monitors and the networks meet. One `Engine` per `berth` process;
//! every operation on a container holds that container's lock, so any
//! number of berth processes can work side by side.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_image::store::Store;

use crate::db::{Db, Found};
use crate::error::{Context, Error, Result};
use crate::handler::Handler;
use crate::lock::Lock;
use crate::model::Container;

pub struct Options {
    /// Where state lives on this host (roots, pins, host-wide locks).
    pub paths: berth_base::paths::HostPaths,
    /// The berth-monitor binary.
    pub monitor: PathBuf,
    /// The berth binary, for the monitor's exit command and pod infra
    /// processes.
    pub berth: PathBuf,
    /// Whether each monitor runs `berth container cleanup` when its
    /// container exits. Without a daemon something must; a daemon that
    /// follows the `die` events and calls [`Engine::cleanup`] itself
    /// spares a process per exit.
    pub exit_command: bool,
}

pub struct Engine {
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub paths: berth_base::paths::HostPaths,
    pub images: Store,
    pub db: Db,
    pub monitor: PathBuf,
    pub berth: PathBuf,
    pub exit_command: bool,
    /// The CNI runner, one for the engine's life: its memo of what
    /// iptables said lasts that long (a burst of pods in berthd looks
    /// once).
    cni: berth_network::Cni,
    /// User-mode network helpers still configuring a namespace, by owner:
    /// a start waits for its own just before the container's process
    /// runs, so the helper's work overlaps the container's creation.
    pub(crate) user_nets: std::sync::Mutex<Vec<(String, berth_network::usernet::Starting)>>,
}

impl Engine {
    pub fn open(o: Options) -> Result<Engine> {
        let (root, run_root) = (o.paths.root.clone(), o.paths.run_root.clone());
        let images = Store::open(&root)?;
        for d in [&run_root, &run_root.join("locks")] {
            std::fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
        }
        // Only root looks into the run root: it holds sockets to containers.
        let _ = std::fs::set_permissions(
            &run_root,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
        let (db, found) = Db::open(&Self::db_path(&root))?;
        let cni = berth_network::Cni::new(root.join("network"));
        let e = Engine {
            cni,
            user_nets: Default::default(),
            root,
            run_root,
            paths: o.paths,
            images,
            db,
            monitor: o.monitor,
            berth: o.berth,
            exit_command: o.exit_command,
        };
        if found == Found::New {
            crate::recover::rebuild(&e)?;
        }
        crate::recover::after_boot(&e)?;
        Ok(e)
    }

    fn db_path(root: &Path) -> PathBuf {
        root.join("engine.db")
    }

    /// `system repair`: moves a damaged database aside (with its log) and
    /// opens a new one, rebuilt from the records' copies on disk.
    pub fn repair(o: Options) -> Result<(Engine, Option<PathBuf>)> {
        let path = Self::db_path(&o.paths.root);
        let moved = if path.exists() {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = path.with_file_name(format!("engine.db.replaced-{stamp}"));
            std::fs::rename(&path, &aside).ctx(|| format!("move {} aside", path.display()))?;
            for ext in ["-wal", "-shm"] {
                let f = path.with_file_name(format!("engine.db{ext}"));
                if f.exists() {
                    let _ = std::fs::rename(
                        &f,
                        aside.with_file_name(format!("engine.db.replaced-{stamp}{ext}")),
                    );
                }
            }
            Some(aside)
        } else {
            None
        };
        Ok((Engine::open(o)?, moved))
    }

    /// Removes what crashes left that no record owns, releases what exited
    /// containers still hold (see `recover`).
    pub fn recover(&self) -> Result<crate::recover::Swept> {
        crate::recover::sweep(self)
    }

    /// Appends a lifecycle event to the log `berth events` and
    /// `subscribe` read; a log that cannot be written costs the event only.
    pub(crate) fn emit(&self, e: berth_base::events::Event) {
        if let Err(err) = berth_base::events::append(&self.run_root, &e) {
            tracing::warn!("event log in {}: {err}", self.run_root.display());
        }
    }

    /// A container's event, with its name and image.
    pub(crate) fn container_event(&self, c: &Container, action: &str) -> berth_base::events::Event {
        let e = berth_base::events::Event::new("container", action, &c.id)
            .attr("name", c.name.as_str())
            .attr("image", c.config.image.as_str());
        match (&c.config.owner, &c.config.pod) {
            (Some(o), Some(p)) => e.attr("owner", o.as_str()).attr("pod", p.as_str()),
            (Some(o), None) => e.attr("owner", o.as_str()),
            _ => e,
        }
    }

    /// The lifecycle events from now on, as they happen (any berth
    /// process's, and the monitors' `die`).
    pub fn subscribe(&self) -> berth_base::events::Follow {
        berth_base::events::Follow::from_now(&self.run_root)
    }

    /// The events logged since `since` (the log keeps about the last
    /// megabyte or two).
    pub fn events_since(
        &self,
        since: Option<std::time::SystemTime>,
    ) -> Vec<berth_base::events::Event> {
        berth_base::events::read(&self.run_root, since)
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.run_root.join("locks")
    }

    /// The bundle directory (config.json, rootfs) of a container.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        berth_image::snapshot::container_dir(&self.images, id)
    }

    /// Persistent files of a container: logs, exit status, /etc files.
    pub fn userdata(&self, id: &str) -> PathBuf {
        self.bundle_dir(id).join("userdata")
    }

    /// Volatile files of a container: the attach socket. Short, for the
    /// 108-byte limit of socket paths.
    pub fn rundir(&self, id: &str) -> PathBuf {
        self.run_root.join("c").join(crate::ids::short(id))
    }

    /// Where network namespaces are pinned: /run/netns (where `ip netns`
    /// looks) for the default run root, else inside the run root.
    pub fn netns_dir(&self) -> PathBuf {
        self.paths.netns_dir.clone()
    }

    /// A pin's name: berth's, apart from other tools' pins in /run/netns.
    pub fn netns_name(id: &str) -> String {
        format!("berth-{}", crate::ids::short(id))
    }

    /// Persistent network state: CNI's address reservations and the
    /// results each detach needs, also after a reboot.
    pub fn network_state_dir(&self) -> PathBuf {
        self.root.join("network")
    }

    /// The engine's CNI runner (state in `network_state_dir`).
    pub fn cni(&self) -> &berth_network::Cni {
        &self.cni
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub fn lock(&self, id: &str) -> Result<Lock> {
        crate::lock::acquire(&self.locks_dir(), id)
    }

    /// The container's runtime with its flags: those it was created with,
    /// and those a runtime needs of berth for it (`gvisor::flags`).
    pub fn handler(&self, c: &Container) -> Result<Handler> {
        let h = Handler::resolve(&c.config.runtime, &self.run_root)?;
        if matches!(h, Handler::Builtin { .. }) {
            // Never with flags (refused at create): a record must stay
            // removable whatever it says.
            return Ok(h);
        }
        let mut flags = c.config.runtime_flags.clone();
        if h.binary_name().as_deref() == Some("runsc") {
            flags.extend(crate::gvisor::flags(&c.config.network, &flags));
        }
        h.with_flags(&flags)
    }

    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.userdata(id).join("exit.json")
    }

    /// Where a container's log is: where its request put it (CRI's log
    /// path), else in its userdata.
    pub fn log_path(&self, c: &Container) -> PathBuf {
        c.config
            .log_path
            .clone()
            .unwrap_or_else(|| self.userdata(&c.id).join("ctr.log"))
    }

    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.rundir(id).join("attach")
    }

    /// A container by name, id or id prefix, with its state brought up to
    /// date.
    pub fn container(&self, key: &str) -> Result<Container> {
        let c = self.db.find_container(key)?;
        self.refresh(c)
    }

    /// Every container, brought up to date; one removed meanwhile is left
    /// out.
    pub fn containers(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for c in self.db.containers()? {
            match self.refresh(c) {
                Ok(c) => out.push(c),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Waits up to `limit` for `done`, polling with a growing interval.
pub fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    // Most waits end within a few milliseconds (a monitor leaving, an exit
    // file appearing): fine steps first, so the wait does not overshoot
    // by more than it lasted.
    let mut pause = Duration::from_micros(250);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(Duration::from_millis(20));
    }
}

/// RFC 3339 with nanoseconds, UTC: the time format of records and logs.
pub fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub(crate) fn not_running(c: &Container, what: &str) -> Error {
    Error::Conflict(format!(
        "container {} is {}: cannot {what}",
        c.name,
        c.state.status.name()
    ))
}
