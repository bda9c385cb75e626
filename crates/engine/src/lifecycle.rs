//! Creating, starting, stopping and removing containers, and keeping their
//! records true to what the kernel says.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use berth_image::bundle;
use berth_image::spec::SpecOptions;
use berth_image::store::ImageRecord;
use oci_spec::runtime::Spec;

use crate::engine::{Engine, not_running, now, path_str, poll_until};
use crate::error::{Context, Error, Result};
use crate::handler::RtStatus;
use crate::model::{Container, ContainerConfig, NetworkMode, State, Status};
use crate::{etcfiles, ids, net, spec};

impl Engine {
    /// Makes the container: its record, its bundle (a snapshot of the image
    /// and the runtime spec). Nothing runs yet.
    pub fn create(
        &self,
        image: &ImageRecord,
        name: Option<&str>,
        mut config: ContainerConfig,
    ) -> Result<Container> {
        if let Some(n) = name {
            ids::check_name("container", n)?;
        }
        if let Some(p) = &config.pod {
            let pod = self.db.find_pod(p)?;
            config.pod = Some(pod.id);
            match config.network {
                NetworkMode::Default | NetworkMode::Pod => config.network = NetworkMode::Pod,
                _ => {
                    return Err(Error::invalid(
                        "--network",
                        "a container in a pod uses the pod's network",
                    ));
                }
            }
            if !config.ports.is_empty() {
                return Err(Error::invalid(
                    "-p",
                    "publish ports on the pod (pod create -p)",
                ));
            }
        }
        // Flags a runtime cannot take are refused before anything is made.
        self.handler_for(&config.runtime)?
            .with_flags(&config.runtime_flags)?;
        config.network = crate::net::for_this_user(config.network)?;
        self.check_network_mode(&config)?;
        if let Some(t) = &config.extra.pid_target {
            // By id from here on: a name may pass to another container.
            config.extra.pid_target = Some(self.pid_target(&config.pod, t)?.id);
        }
        check_config(&config)?;
        let id = ids::new_id();
        let name = match name {
            Some(n) => {
                if self.db.container_name_taken(n)? {
                    return Err(Error::Conflict(format!(
                        "the container name {n:?} is already in use"
                    )));
                }
                n.to_string()
            }
            None => ids::make_name(|n| self.db.container_name_taken(n))?,
        };
        let mut c = Container {
            id: id.clone(),
            name,
            image_id: image.id.to_string(),
            created: now(),
            config,
            command: Vec::new(),
            state: State::default(),
            netns: None,
            networks: Vec::new(),
            monitor_pid: 0,
            monitor_start: 0,
            version: 0,
        };
        // Held until the record exists: the recovery sweep takes a bundle
        // without a record for a crash's leftover only when its lock is
        // free.
        let _lock = self.lock(&id)?;
        // The bundle first, then the record that claims the name: the
        // record's spec (command, stop signal) comes from the image. A
        // crash in between leaves a bundle the sweep removes.
        let made = self.make_rootfs(image, &mut c).and_then(|()| {
            crate::recover::save_container_file(self, &c)?;
            self.db.insert_container(&mut c)
        });
        if let Err(e) = made {
            let _ = self.remove_image_volumes(&id);
            let _ = bundle::remove_bundle(&self.images, &id);
            self.remove_volumes_of(&c, |v| v.made);
            return Err(e);
        }
        self.emit(self.container_event(&c, "create"));
        Ok(c)
    }

    fn handler_for(&self, runtime: &str) -> Result<crate::handler::Handler> {
        crate::handler::Handler::resolve(runtime, &self.run_root)
    }

    /// The container's root filesystem (a snapshot of the image), and what
    /// the record takes from the image: its command and stop signal. The
    /// spec itself is written when the container starts (`runtime_spec`).
    fn make_rootfs(&self, image: &ImageRecord, c: &mut Container) -> Result<()> {
        let idmap = id_map(&c.config.extra);
        bundle::create_rootfs(&self.images, image, &c.id, None, idmap.as_ref())?;
        // Named volumes are made with the container, as docker makes them,
        // before the spec (which binds them) asks for them; those made now
        // are marked, to go with it if its run fails.
        for v in c.config.volumes.iter_mut().filter(|v| v.kind == "volume") {
            v.made = self.volume_create(Some(&v.source), Vec::new())?.1;
        }
        self.make_image_volumes(c)?;
        let raw = self.images.read_blob(&image.id)?;
        let image_config: Option<serde_json::Value> = serde_json::from_slice(&raw).ok();
        if c.config.extra.publish_all {
            publish_exposed(c, image_config.as_ref())?;
        }
        let image_check = image_config.as_ref().and_then(crate::health::from_image);
        c.config.healthcheck = crate::health::merge(c.config.healthcheck.take(), image_check);
        if let Some(h) = &c.config.healthcheck {
            crate::health::args(&h.test)?;
        }
        // Made now, so a bad request fails here and not at start (the user,
        // the command, capabilities, devices, a seccomp profile), and kept
        // only in part.
        let mut s = self.image_spec(&image.id, c)?;
        self.apply_policy(&mut s, c)?;
        if limits_ignored() && spec::drop_limits(&mut spec::resources_of(&c.config)) {
            tracing::warn!(
                "resource limits are ignored: this user has no cgroup delegated (a cgroup v1 or hybrid host, or no systemd user instance)"
            );
        }
        c.command = s
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        if c.config.stop_signal.is_none() {
            c.config.stop_signal = s
                .annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.stopSignal").cloned());
        }
        let ud = self.userdata(&c.id);
        std::fs::create_dir_all(&ud).ctx(|| format!("create {}", ud.display()))?;
        if let Some(m) = &idmap {
            self.open_to_mapped_root(&c.id, m)?;
        }
        Ok(())
    }

    /// The runtime sets up the container's root as the namespace's root,
    /// a host id that the store's 0700 directories keep out: the two above
    /// the container's own may be passed through (0711: no listing), and
    /// the container's directory becomes that root's. The /etc files it
    /// binds are in userdata, passed through likewise.
    fn open_to_mapped_root(&self, id: &str, m: &berth_image::snapshots::IdMap) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let root = |r: &[berth_base::userns::IdRange], what| {
            berth_base::userns::to_host(r, 0)
                .ok_or_else(|| Error::invalid(what, "the map must map the container's root (id 0)"))
        };
        let (uid, gid) = (root(&m.uids, "--uidmap")?, root(&m.gids, "--gidmap")?);
        let dir = self.bundle_dir(id);
        let pass = std::fs::Permissions::from_mode(0o711);
        let parent = dir.parent().expect("a container's directory has a parent");
        for d in [self.images.root.as_path(), parent, &self.userdata(id)] {
            std::fs::set_permissions(d, pass.clone()).ctx(|| format!("chmod {}", d.display()))?;
        }
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .ctx(|| format!("chown {}", dir.display()))
    }

    /// The first stage of a container's spec: the image's defaults with the
    /// request's overrides (berth_image::spec).
    fn image_spec(&self, image: &berth_image::Digest, c: &Container) -> Result<Spec> {
        let cfg = &c.config;
        let hostname = cfg
            .hostname
            .clone()
            .unwrap_or_else(|| ids::short(&c.id).to_string());
        let opts = SpecOptions {
            entrypoint: cfg.entrypoint.clone(),
            args: cfg.cmd.clone(),
            env: cfg.env.clone(),
            workdir: cfg.workdir.clone(),
            user: cfg.user.clone(),
            hostname: Some(hostname),
            terminal: cfg.tty,
            readonly_rootfs: cfg.read_only,
        };
        let raw = self.images.read_blob(image)?;
        let config = berth_image::manifest::parse_config(&raw, &format!("config {image}"))?;
        let rootfs = self.bundle_dir(&c.id).join("rootfs");
        Ok(berth_image::spec::generate(&config, &rootfs, &c.id, &opts)?)
    }

    /// The container's spec but for what one run adds: image defaults,
    /// then the engine's policy for the request.
    fn runtime_spec(&self, c: &Container) -> Result<Spec> {
        let digest: berth_image::Digest = c
            .image_id
            .parse()
            .map_err(|e| Error::invalid(format!("container {}", c.name), format!("{e}")))?;
        // The config is all the spec needs of the image: a builder's
        // working container has no image record, only the config blob.
        if !self.images.has_blob(&digest) {
            return Err(Error::NotFound(format!(
                "the image of container {} is gone",
                c.name
            )));
        }
        let mut s = self.image_spec(&digest, c)?;
        self.apply_policy(&mut s, c)?;
        Ok(s)
    }

    /// A working directory the image does not have is made, owned by the
    /// process's user, as docker makes it (podman and runc refuse to
    /// start). In a user namespace the ids would need mapping: left to the
    /// runtime's error there.
    fn make_workdir(&self, c: &Container, s: &Spec) -> Result<()> {
        let Some(p) = s.process() else {
            return Ok(());
        };
        let cwd = p.cwd().display().to_string();
        if cwd == "/" || !c.config.extra.uid_map.is_empty() || self.is_dir_in(&c.id, &cwd)? {
            return Ok(());
        }
        self.mkdir_in(&c.id, &cwd, (p.user().uid(), p.user().gid()))
    }

    /// The second stage: the engine's policy for the request.
    fn apply_policy(&self, s: &mut Spec, c: &Container) -> Result<()> {
        if c.config.init {
            spec::add_init(s)?;
        }
        spec::set_resources(s, &c.config);
        if limits_ignored() {
            spec::drop_limits(spec::resources(s));
        }
        spec::set_security(s, &c.config)?;
        spec::set_annotations(s, &c.config.labels);
        if let Some(pod) = &c.config.pod {
            spec::set_annotations(s, &[(spec::POD_ID.to_string(), pod.clone())]);
        }
        spec::set_extra(s, &c.config.extra, &self.bundle_dir(&c.id).join("rootfs"))?;
        if let Some(e) = &c.config.extra.cdi {
            crate::cdi::apply(s, e)?;
        }
        for (i, v) in c.config.volumes.iter().enumerate() {
            let source = match v.kind.as_str() {
                "volume" => path_str(&self.volume_for_mount(&v.source)?),
                crate::imagevol::KIND => path_str(&self.image_volume_path(&c.id, i)?),
                _ => v.source.clone(),
            };
            spec::add_volume(s, v, &source)?;
        }
        for t in &c.config.tmpfs {
            let (dest, opts) = t.split_once(':').unwrap_or((t, ""));
            let mut o = vec!["nosuid", "nodev"];
            o.extend(opts.split(',').filter(|x| !x.is_empty()));
            spec::add_mount(s, dest, "tmpfs", "tmpfs", &o);
        }
        let pod_parent = match &c.config.pod {
            Some(p) => self.db.find_pod(p)?.options.cgroup_parent,
            None => None,
        };
        let parent = c.config.extra.cgroup_parent.clone().or(pod_parent);
        spec::set_cgroup(s, &c.id, parent.as_deref());
        Ok(())
    }

    fn check_network_mode(&self, cfg: &ContainerConfig) -> Result<()> {
        match &cfg.network {
            NetworkMode::Host | NetworkMode::None if !cfg.ports.is_empty() => Err(Error::invalid(
                "-p",
                "ports cannot be published without a network of the container's own",
            )),
            NetworkMode::Container(other) => {
                self.db.find_container(other)?;
                if !cfg.ports.is_empty() {
                    return Err(Error::invalid(
                        "-p",
                        "publish ports on the container that owns the network",
                    ));
                }
                Ok(())
            }
            NetworkMode::Bridge(names) => {
                for n in names {
                    net::network(self, n)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Starts a created or exited container: its network, its /etc files,
    /// its monitor (which creates it through the runtime), then `start`.
    pub fn start(&self, key: &str) -> Result<Container> {
        self.start_with(key, &mut |_| Ok(()))
    }

    /// `start`, calling `before_start` once the monitor holds the created
    /// container and before its process runs: where `run` attaches, so no
    /// output is missed.
    pub fn start_with(
        &self,
        key: &str,
        before_start: &mut dyn FnMut(&Container) -> Result<()>,
    ) -> Result<Container> {
        let c = self.db.find_container(key)?;
        let _lock = self.lock(&c.id)?;
        let mut c = self.refresh(self.db.find_container(&c.id)?)?;
        if c.state.stopped_by_user || !matches!(c.state.status, Status::Running | Status::Paused) {
            // The user's start: the policy counts from here.
            c.state.stopped_by_user = false;
            c.state.restart_count = 0;
            c.state.restart_backoff_ms = 0;
        }
        self.start_locked(c, before_start)
    }

    /// `start` of a container whose lock the caller holds.
    fn start_locked(
        &self,
        mut c: Container,
        before_start: &mut dyn FnMut(&Container) -> Result<()>,
    ) -> Result<Container> {
        match c.state.status {
            Status::Running | Status::Paused => return Ok(c),
            Status::Created if c.state.pid > 0 => {
                // Created by the runtime already (an earlier start failed
                // between create and start): start it now.
                self.handler(&c)?.start(&c.id)?;
                return self.mark_started(c);
            }
            _ => {}
        }
        if c.state.needs_cleanup {
            self.release(&mut c)?;
        }
        match self.launch(&mut c, before_start) {
            Ok(()) => self.mark_started(c),
            Err(e) => {
                let _ = self.release(&mut c);
                c.state.status = Status::Exited;
                let _ = self.db.update_container(&mut c);
                Err(e)
            }
        }
    }

    fn mark_started(&self, mut c: Container) -> Result<Container> {
        c.state.status = Status::Running;
        c.state.started_at = Some(now());
        c.state.finished_at = None;
        c.state.exit_code = None;
        c.state.oom_killed = false;
        self.db.update_container(&mut c)?;
        self.emit(self.container_event(&c, "start"));
        Ok(c)
    }

    fn launch(
        &self,
        c: &mut Container,
        before_start: &mut dyn FnMut(&Container) -> Result<()>,
    ) -> Result<()> {
        let handler = self.handler(c)?;
        let dir = self.bundle_dir(&c.id);
        let rootfs = dir.join("rootfs");
        if !berth_image::snapshot::is_mounted(&rootfs) {
            // After a reboot: the overlay is gone, the layers are not.
            bundle::remount_bundle(&self.images, &c.id)?;
        }
        let ud = self.userdata(&c.id);
        let _ = std::fs::remove_file(self.exit_file(&c.id));
        c.state.needs_cleanup = true;
        self.db.update_container(c)?;

        let mut s = self.runtime_spec(c)?;
        self.make_workdir(c, &s)?;
        if let Some(p) = &c.config.pod {
            self.ensure_pod_running(p)?;
        }
        // The published ports are taken before anything is made for this
        // run: one in use refuses the start with nothing to undo.
        let reserved = net::reserve_ports(c)?;
        let own_netns = net::setup(self, c, &mut s)?;
        // Held until the monitor says the container is created: the
        // runtime opens the namespace through this process's fd.
        let _pid_ns = self.join_pid_target(c, &mut s)?;
        let pod = match &c.config.pod {
            Some(p) => Some(self.db.find_pod(p)?),
            None => None,
        };
        // A pod's containers go by the pod's hostname (their spec sets
        // none: the uts namespace is the pod's).
        let hostname = match &pod {
            Some(p) => p.hostname.clone(),
            None => s.hostname().clone().unwrap_or_else(|| c.name.clone()),
        };
        let ips: Vec<String> = c.networks.iter().flat_map(|n| n.ips.clone()).collect();
        // A file the request mounts itself (kubelet's /etc/hosts) is left
        // as the request has it.
        let requested = |dest: &str| {
            c.config
                .volumes
                .iter()
                .any(|v| v.destination.trim_end_matches('/') == dest)
        };
        if c.config.network != NetworkMode::Host {
            let mut hosts = etcfiles::hosts(&hostname, &c.name, &ips);
            let gateway = c.networks.iter().find_map(|n| n.gateway.clone());
            for (name, ip) in &c.config.extra.extra_hosts {
                let ip = match (ip.as_str(), &gateway) {
                    ("host-gateway", Some(g)) => g.as_str(),
                    ("host-gateway", None) => {
                        return Err(Error::invalid(
                            "--add-host",
                            format!("{name}: host-gateway needs a bridge network"),
                        ));
                    }
                    (ip, _) => ip,
                };
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
            self.publish_names(c, &hosts)?;
            etcfiles::write(&ud, "hostname", &format!("{hostname}\n"))?;
            if !requested("/etc/hosts") {
                spec::bind_file(&mut s, "/etc/hosts", &path_str(&ud.join("hosts")), false);
            }
            if !requested("/etc/hostname") {
                spec::bind_file(
                    &mut s,
                    "/etc/hostname",
                    &path_str(&ud.join("hostname")),
                    false,
                );
            }
        }
        let resolv = match (pod.and_then(|p| p.options.dns), &c.config.extra.dns) {
            (Some(d), _) => d.resolv_conf(),
            (None, Some(d)) => etcfiles::resolv_with(&etcfiles::resolv_conf(own_netns), d),
            (None, None) => etcfiles::resolv_conf(own_netns),
        };
        etcfiles::write(&ud, "resolv.conf", &resolv)?;
        if !requested("/etc/resolv.conf") {
            spec::bind_file(
                &mut s,
                "/etc/resolv.conf",
                &path_str(&ud.join("resolv.conf")),
                false,
            );
        }
        write_spec(&dir, &s)?;

        let rundir = self.rundir(&c.id);
        std::fs::create_dir_all(&rundir).ctx(|| format!("create {}", rundir.display()))?;
        let monitor_cfg = berth_monitor::Config {
            id: c.id.clone(),
            bundle: dir.clone(),
            runtime: handler.for_monitor(),
            tty: c.config.tty,
            stdin: c.config.stdin,
            log_path: self.log_path(c),
            log_max_size: c.config.extra.log_max_size.unwrap_or(10 * 1024 * 1024),
            log_max_files: c.config.extra.log_max_files.unwrap_or(1),
            exit_file: self.exit_file(&c.id),
            attach_socket: self.attach_socket(&c.id),
            pid_file: ud.join("pid"),
            // Without a daemon, the exit is acted on (network released,
            // --rm honoured) by a berth the monitor starts.
            exit_command: self.exit_command.then(|| {
                vec![
                    path_str(&self.berth),
                    "--root".into(),
                    path_str(&self.root),
                    "--runroot".into(),
                    path_str(&self.run_root),
                    "container".into(),
                    "cleanup".into(),
                    c.id.clone(),
                ]
            }),
            events_dir: Some(self.run_root.clone()),
            name: c.name.clone(),
            image: c.config.image.clone(),
            // Owner and pod, so that a die read after the removal still
            // says whose container it was.
            event_attributes: self.container_event(c, "die").actor.attributes,
            health: self.health_config(c)?,
        };
        let cfg_path = ud.join("monitor.json");
        monitor_cfg
            .save(&cfg_path)
            .map_err(|e| Error::Monitor(e.to_string()))?;
        let hold: Vec<_> = reserved.iter().map(|fd| fd.as_fd()).collect();
        let started = berth_monitor::start_monitor_holding(&self.monitor, &cfg_path, &hold)
            .map_err(|e| Error::Monitor(e.to_string()))?;
        c.monitor_pid = started.process.pid;
        c.monitor_start = started.process.start_time;
        c.state.pid = started.pid;
        c.state.status = Status::Created;
        let mode = c.config.network.clone();
        net::user_net_ready(self, &c.id, &mode, &mut c.networks)?;
        self.db.update_container(c)?;
        before_start(c)?;
        handler.start(&c.id)
    }

    /// Releases what a run of the container holds: its runtime state, its
    /// networks and network namespace. Idempotent.
    pub(crate) fn release(&self, c: &mut Container) -> Result<()> {
        let handler = self.handler(c)?;
        handler.delete(&c.id)?;
        // Out of its peers' /etc/hosts before its addresses go back.
        let _ = self.withdraw_names(c);
        net::teardown(self, c)?;
        let _ = std::fs::remove_dir_all(self.rundir(&c.id));
        c.state.needs_cleanup = false;
        c.state.pid = 0;
        self.db.update_container(c)?;
        Ok(())
    }

    /// After the container's process exited (the monitor's exit command):
    /// records the exit, releases the run's resources, and removes the
    /// container if it was run with --rm.
    pub fn cleanup(&self, key: &str) -> Result<()> {
        // Whoever holds the lock may be removing the container and waiting
        // for this very monitor to leave: so poll, and give up as soon as
        // the record is gone, rather than wait for the lock.
        let (c, _lock) = loop {
            let c = match self.db.find_container(key) {
                Ok(c) => c,
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if let Some(l) = crate::lock::try_acquire(&self.locks_dir(), &c.id)? {
                match self.db.find_container(&c.id) {
                    Ok(c) => break (c, l),
                    Err(Error::NotFound(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            // rm holds the lock and waits for this monitor to leave, which
            // waits for this process: see the record go quickly.
            std::thread::sleep(Duration::from_millis(1));
        };
        let mut c = self.refresh(c)?;
        if c.state.status != Status::Exited {
            return Ok(());
        }
        if c.state.needs_cleanup {
            self.release(&mut c)?;
        }
        if c.config.auto_remove {
            self.remove_locked(&mut c)?;
        } else if let Some(wait) = restart_due(&c) {
            c.state.restart_count += 1;
            c.state.restart_backoff_ms = wait.as_millis() as u64;
            self.db.update_container(&mut c)?;
            let count = c.state.restart_count;
            drop(_lock);
            // Without the lock: a stop or rm meanwhile wins.
            std::thread::sleep(wait);
            self.restart_by_policy(&c.id, count)?;
        }
        Ok(())
    }

    /// The policy's start, unless the container changed while it waited
    /// (stopped, started or removed by someone else).
    fn restart_by_policy(&self, id: &str, count: u32) -> Result<()> {
        let _lock = self.lock(id)?;
        let c = match self.db.find_container(id) {
            Ok(c) => self.refresh(c)?,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if c.state.status != Status::Exited
            || c.state.stopped_by_user
            || c.state.restart_count != count
        {
            return Ok(());
        }
        self.emit(self.container_event(&c, "restart"));
        self.start_locked(c, &mut |_| Ok(())).map(|_| ())
    }

    /// Brings the record in line with the runtime and the exit file. The
    /// change is written only when the container's lock is free now (its
    /// holder will write what it finds): a listing never blocks on a
    /// container being stopped, and never writes over its holder.
    pub(crate) fn refresh(&self, mut c: Container) -> Result<Container> {
        let live = matches!(c.state.status, Status::Running | Status::Paused)
            || (c.state.status == Status::Created && c.state.pid > 0);
        if !live {
            return Ok(c);
        }
        let handler = self.handler(&c)?;
        let rt = handler.status(&c.id)?;
        let before = c.state.status;
        match rt {
            RtStatus::Running => c.state.status = Status::Running,
            RtStatus::Paused => c.state.status = Status::Paused,
            RtStatus::Created => c.state.status = Status::Created,
            RtStatus::Stopped | RtStatus::Missing => {
                // The monitor writes the exit file right after reaping: give
                // it a moment while it lives.
                let exit = self.exit_file(&c.id);
                let monitor_alive = c.monitor().is_some_and(|m| m.is_alive());
                if monitor_alive && rt == RtStatus::Stopped {
                    poll_until(Duration::from_secs(2), || exit.exists());
                }
                c.state.status = Status::Exited;
                match read_exit(&exit) {
                    Some(e) => {
                        c.state.exit_code = Some(e.exit_code);
                        c.state.finished_at = Some(e.finished_at);
                        c.state.oom_killed = e.oom_killed;
                    }
                    None => {
                        c.state.exit_code = None;
                        c.state.finished_at = Some(now());
                    }
                }
            }
        }
        let changed =
            c.state.status != before || rt == RtStatus::Stopped || rt == RtStatus::Missing;
        if changed && let Some(_lock) = crate::lock::try_acquire(&self.locks_dir(), &c.id)? {
            match self.db.update_container(&mut c) {
                Ok(()) => {}
                // Changed or removed meanwhile: what is stored now is the
                // truth to show.
                Err(Error::Conflict(_)) => return self.db.find_container(&c.id),
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    /// Sends a signal to the container's process (all of them with `all`).
    pub fn kill(&self, key: &str, signal: i32) -> Result<Container> {
        let c = self.container(key)?;
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            return Err(not_running(&c, "signal it"));
        }
        self.handler(&c)?.kill(&c.id, signal, false)?;
        self.emit(
            self.container_event(&c, "kill")
                .attr("signal", signal.to_string()),
        );
        Ok(c)
    }

    /// Stops the container: its stop signal, then SIGKILL after `timeout`.
    pub fn stop(&self, key: &str, timeout: Option<Duration>) -> Result<Container> {
        let c = self.container(key)?;
        // Marked before the signal: the exit it causes must not look like
        // one the restart policy answers.
        let c = {
            let _lock = self.lock(&c.id)?;
            let mut c = self.db.find_container(&c.id)?;
            if !c.state.stopped_by_user {
                c.state.stopped_by_user = true;
                self.db.update_container(&mut c)?;
            }
            c
        };
        let timeout = timeout
            .or(c.config.stop_timeout.map(Duration::from_secs))
            .unwrap_or(Duration::from_secs(10));
        if matches!(c.state.status, Status::Running | Status::Paused) {
            self.emit(self.container_event(&c, "stop"));
            let handler = self.handler(&c)?;
            if c.state.status == Status::Paused {
                handler.resume(&c.id)?;
            }
            let sig = crate::signals::parse(c.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
            let _ = handler.kill(&c.id, sig, false);
            let gone = |h: &crate::handler::Handler| {
                matches!(h.status(&c.id), Ok(RtStatus::Stopped | RtStatus::Missing))
            };
            if !poll_until(timeout, || gone(&handler)) {
                let _ = handler.kill(&c.id, libc::SIGKILL, true);
                poll_until(Duration::from_secs(10), || gone(&handler));
            }
        }
        self.cleanup(&c.id)?;
        match self.db.find_container(&c.id) {
            Ok(c) => self.refresh(c),
            // --rm took it.
            Err(Error::NotFound(_)) => Ok(Container {
                state: State {
                    status: Status::Exited,
                    ..c.state
                },
                ..c
            }),
            Err(e) => Err(e),
        }
    }

    /// `stop`, then `start`: the user's own restart (the policy counts
    /// from here).
    pub fn restart(&self, key: &str, timeout: Option<Duration>) -> Result<Container> {
        let c = self.stop(key, timeout)?;
        self.start(&c.id)
    }

    /// Removes the container; a running one only with `force` (killed).
    /// With `force`, a container whose record cannot be read goes too,
    /// with everything of it on disk.
    pub fn remove(&self, key: &str, force: bool) -> Result<()> {
        let (id, _) = self.db.resolve_container(key)?;
        let _lock = self.lock(&id)?;
        let c = match self.db.find_container(&id) {
            Ok(c) => c,
            Err(Error::Unreadable { id, .. }) if force => {
                return crate::recover::purge(self, &id);
            }
            Err(e) => return Err(e),
        };
        let mut c = self.refresh(c)?;
        if let Some(owner) = &c.config.owner
            && !force
        {
            return Err(Error::Conflict(format!(
                "container {} is managed by {owner}: remove it there, or with --force",
                c.name
            )));
        }
        if matches!(c.state.status, Status::Running | Status::Paused)
            || (c.state.status == Status::Created && c.state.pid > 0)
        {
            if !force {
                return Err(Error::Conflict(format!(
                    "container {} is {}: stop it first, or remove it with --force",
                    c.name,
                    c.state.status.name()
                )));
            }
            let handler = self.handler(&c)?;
            let _ = handler.kill(&c.id, libc::SIGKILL, true);
        }
        self.remove_locked(&mut c)
    }

    /// Everything of the container, in an order that a crash at any point
    /// leaves something `rm` finds again: its run's resources, its files,
    /// then the record.
    fn remove_locked(&self, c: &mut Container) -> Result<()> {
        self.release(c)?;
        bundle::remove_bundle(&self.images, &c.id)?;
        self.remove_image_volumes(&c.id)?;
        // The record goes once nothing of it is left: the monitor's exit
        // command sees it gone and ends at once.
        self.db.remove_container(&c.id)?;
        let _ = std::fs::remove_dir_all(self.rundir(&c.id));
        if let Some(m) = c.monitor() {
            // Nothing of the container outlives `rm`.
            poll_until(Duration::from_secs(5), || !m.is_alive());
        }
        let _ = std::fs::remove_file(self.locks_dir().join(format!("{}.lock", c.id)));
        self.emit(self.container_event(c, "destroy"));
        if c.config.auto_remove {
            // --rm takes the anonymous volumes along, as docker's does.
            self.remove_volumes_of(c, |v| v.anonymous);
        }
        Ok(())
    }

    /// Removes a container whose run failed (as `run` does when the start
    /// fails), with every volume its creation made: a failed `run` leaves
    /// nothing of its own behind.
    pub fn discard(&self, key: &str) -> Result<()> {
        let c = self.db.find_container(key)?;
        self.remove(&c.id, true)?;
        self.remove_volumes_of(&c, |v| v.made || v.anonymous);
        Ok(())
    }

    /// Blocks until the container has exited (at most `timeout`); returns
    /// its exit code.
    pub fn wait(&self, key: &str, timeout: Option<Duration>) -> Result<i32> {
        let c = self.db.find_container(key)?;
        let id = c.id.clone();
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let c = match self.db.find_container(&id) {
                Ok(c) => self.refresh(c)?,
                Err(Error::NotFound(_)) => {
                    return Err(Error::NotFound(format!("container {} was removed", c.name)));
                }
                Err(e) => return Err(e),
            };
            if c.state.status == Status::Exited
                || (c.state.status == Status::Created && c.state.pid == 0)
            {
                return Ok(c.state.exit_code.unwrap_or(-1));
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(Error::Conflict(format!(
                    "container {} did not exit within {:?}",
                    c.name,
                    timeout.unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pause(&self, key: &str) -> Result<Container> {
        let c = self.container(key)?;
        if c.state.status != Status::Running {
            return Err(not_running(&c, "pause it"));
        }
        self.handler(&c)?.pause(&c.id)?;
        self.emit(self.container_event(&c, "pause"));
        self.container(&c.id)
    }

    pub fn unpause(&self, key: &str) -> Result<Container> {
        let c = self.container(key)?;
        if c.state.status != Status::Paused {
            return Err(not_running(&c, "unpause it"));
        }
        self.handler(&c)?.resume(&c.id)?;
        self.emit(self.container_event(&c, "unpause"));
        self.container(&c.id)
    }

    pub fn rename(&self, key: &str, new: &str) -> Result<Container> {
        ids::check_name("container", new)?;
        let c = self.db.find_container(key)?;
        let _lock = self.lock(&c.id)?;
        let mut c = self.db.find_container(&c.id)?;
        let old = c.name.clone();
        self.db.rename_container(&mut c, new)?;
        crate::recover::save_container_file(self, &c)?;
        self.emit(self.container_event(&c, "rename").attr("oldName", old));
        Ok(c)
    }
}

/// What a request must satisfy however it came (CLI, CRI): limits that
/// keep one container from tying up the host, values the kernel takes.
pub(crate) fn check_config(c: &ContainerConfig) -> Result<()> {
    berth_network::ports::check_count(&c.ports).map_err(|e| Error::invalid("-p", e.to_string()))?;
    if let Some(s) = &c.stop_signal {
        crate::signals::parse(s)?;
    }
    if let Some(cpus) = c.cpus
        && !(cpus.is_finite() && cpus > 0.0)
    {
        return Err(Error::invalid(
            "--cpus",
            format!("{cpus} is not a positive number"),
        ));
    }
    berth_image::spec::check_env(&c.env)?;
    if c.auto_remove && c.restart != crate::model::RestartPolicy::No {
        return Err(Error::invalid(
            "--restart",
            "a container removed when it exits (--rm) cannot be restarted",
        ));
    }
    if c.extra.uid_map.is_empty() != c.extra.gid_map.is_empty() {
        return Err(Error::invalid(
            "--uidmap/--gidmap",
            "a user namespace needs both a uid map and a gid map",
        ));
    }
    for (flag, map) in [
        ("--uidmap", &c.extra.uid_map),
        ("--gidmap", &c.extra.gid_map),
    ] {
        check_id_map(flag, map)?;
    }
    Ok(())
}

/// -P: each port the image exposes and no -p publishes, on a free host
/// port (docker's rule; the ports are then the container's as if given).
fn publish_exposed(c: &mut Container, image_config: Option<&serde_json::Value>) -> Result<()> {
    let exposed = image_config
        .and_then(|v| v.get("config")?.get("ExposedPorts")?.as_object().cloned())
        .unwrap_or_default();
    for port in exposed.keys() {
        let mapped = berth_network::PortMapping::parse(port)
            .map_err(|e| Error::invalid("-P", format!("the image exposes {port}: {e}")))?;
        for m in mapped {
            let taken = c
                .config
                .ports
                .iter()
                .any(|p| p.container_port == m.container_port && p.protocol == m.protocol);
            if !taken {
                c.config.ports.push(m);
            }
        }
    }
    Ok(())
}

/// When the restart policy starts an exited container again: after this
/// wait (docker's backoff), or never.
fn restart_due(c: &Container) -> Option<Duration> {
    use crate::model::RestartPolicy as P;
    if c.config.owner.is_some() || c.state.stopped_by_user || c.state.status != Status::Exited {
        return None;
    }
    let wanted = match c.config.restart {
        P::No => false,
        P::Always | P::UnlessStopped => true,
        P::OnFailure { max_retries } => {
            c.state.exit_code != Some(0)
                && (max_retries == 0 || c.state.restart_count < max_retries)
        }
    };
    if !wanted {
        return None;
    }
    let ran = match (&c.state.started_at, &c.state.finished_at) {
        (Some(a), Some(b)) => berth_base::time::parse_rfc3339(b)
            .zip(berth_base::time::parse_rfc3339(a))
            .and_then(|(b, a)| b.duration_since(a).ok()),
        _ => None,
    };
    let ms = match (ran, c.state.restart_backoff_ms) {
        // A run of ten seconds counts as a success: the backoff starts over.
        (Some(r), _) if r >= Duration::from_secs(10) => 100,
        (_, 0) => 100,
        (_, prev) => (prev * 2).min(60_000),
    };
    Some(Duration::from_millis(ms))
}

/// The maps of the container's user namespace, for its rootfs's
/// id-mapped lowers; None without one.
fn id_map(x: &crate::model::Extra) -> Option<berth_image::snapshots::IdMap> {
    let ranges = |m: &[(u32, u32, u32)]| {
        m.iter()
            .map(|&(inside, outside, size)| berth_base::userns::IdRange {
                inside,
                outside,
                size,
            })
            .collect()
    };
    (!x.uid_map.is_empty()).then(|| berth_image::snapshots::IdMap {
        uids: ranges(&x.uid_map),
        gids: ranges(&x.gid_map),
    })
}

/// A map is ranges of ids the kernel takes (none empty, none past the
/// 32-bit id space, none overlapping another inside or on the host), one
/// of them for the container's root.
fn check_id_map(flag: &str, map: &[(u32, u32, u32)]) -> Result<()> {
    const LIMIT: u64 = u32::MAX as u64;
    for (i, &(inside, outside, size)) in map.iter().enumerate() {
        if size == 0 || inside as u64 + size as u64 > LIMIT || outside as u64 + size as u64 > LIMIT
        {
            return Err(Error::invalid(
                flag,
                format!("{inside}:{outside}:{size} is not a range of ids"),
            ));
        }
        for &(i2, o2, s2) in &map[..i] {
            let overlap = |a: u32, b: u32, n: u32, m: u32| {
                (a as u64) < b as u64 + m as u64 && (b as u64) < a as u64 + n as u64
            };
            if overlap(inside, i2, size, s2) || overlap(outside, o2, size, s2) {
                return Err(Error::invalid(
                    flag,
                    format!("{inside}:{outside}:{size} overlaps {i2}:{o2}:{s2}"),
                ));
            }
        }
    }
    if map.len() > 340 {
        return Err(Error::invalid(flag, "the kernel takes at most 340 ranges"));
    }
    if !map.is_empty() && !map.iter().any(|&(inside, _, _)| inside == 0) {
        return Err(Error::invalid(
            flag,
            "the map must map the container's root (id 0)",
        ));
    }
    Ok(())
}

/// The monitor's exit record; None while there is none (or it cannot be
/// read: the exit is then unknown, as after a crash of the monitor).
fn read_exit(path: &Path) -> Option<berth_monitor::ExitRecord> {
    berth_monitor::ExitRecord::read(path).ok().flatten()
}

/// The one write of a run's spec, where the runtime reads it.
fn write_spec(dir: &Path, s: &Spec) -> Result<()> {
    let path = dir.join("config.json");
    let raw = serde_json::to_vec(s).expect("a spec serializes");
    berth_base::fs::atomic_write(&path, &raw, 0o600).ctx(|| format!("write {}", path.display()))
}

/// podman's rule for an ordinary user on a host that delegated it no
/// cgroup (v1, hybrid): limits are dropped with a warning at create, and
/// the container runs.
fn limits_ignored() -> bool {
    berth_base::rootless::host_user().is_some()
        && !berth_runtime::cgroups::Layout::detect().is_ok_and(|l| l.allows_limits())
}
