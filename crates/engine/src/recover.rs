//! What crashes, reboots and a lost database leave behind, found again or
//! removed.
//!
//! - Each record has a copy on disk beside what it describes (a
//!   container's in its userdata, a pod's, volume's and network's under
//!   the root), written when it is made: a lost or empty database is
//!   rebuilt from them.
//! - `purge` removes everything of a container keyed by its id alone, for
//!   a record that cannot be read or does not exist.
//! - `sweep` looks through what is on disk (bundles, runtime state, CNI
//!   attachments, netns pins, run dirs) for what no record owns and removes
//!   it, and releases what exited containers still hold. It runs on the
//!   first use after a boot and with `system prune`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::handler::{Handler, RtStatus};
use crate::model::{Container, ContainerRun, ContainerSpec, Pod, Status, Volume};

/// A container's record as kept in its userdata.
#[derive(Serialize, Deserialize)]
struct ContainerFile {
    id: String,
    name: String,
    spec: ContainerSpec,
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    }
    let raw = serde_json::to_vec_pretty(v).expect("records serialize");
    berth_base::fs::atomic_write(path, &raw, 0o600).ctx(|| format!("write {}", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let raw = std::fs::read(path).ok()?;
    match serde_json::from_slice(&raw) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("{}: unreadable, skipped: {e}", path.display());
            None
        }
    }
}

impl Engine {
    fn container_file(&self, id: &str) -> PathBuf {
        self.userdata(id).join("container.json")
    }

    fn pod_file(&self, id: &str) -> PathBuf {
        self.root.join("pods").join(format!("{id}.json"))
    }

    pub(crate) fn volume_file(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("volume.json")
    }

    pub(crate) fn network_file(&self, name: &str) -> PathBuf {
        self.network_state_dir()
            .join("records")
            .join(format!("{name}.json"))
    }
}

pub(crate) fn save_container_file(e: &Engine, c: &Container) -> Result<()> {
    let f = ContainerFile {
        id: c.id.clone(),
        name: c.name.clone(),
        spec: c.spec(),
    };
    write_json(&e.container_file(&c.id), &f)
}

pub(crate) fn save_pod_file(e: &Engine, p: &Pod) -> Result<()> {
    write_json(&e.pod_file(&p.id), p)
}

pub(crate) fn remove_pod_file(e: &Engine, id: &str) {
    let _ = std::fs::remove_file(e.pod_file(id));
}

pub(crate) fn save_volume_file(e: &Engine, v: &Volume) -> Result<()> {
    write_json(&e.volume_file(&v.name), v)
}

pub(crate) fn save_network_file<T: Serialize>(e: &Engine, name: &str, n: &T) -> Result<()> {
    write_json(&e.network_file(name), n)
}

pub(crate) fn remove_network_file(e: &Engine, name: &str) {
    let _ = std::fs::remove_file(e.network_file(name));
}

/// The runtime roots under the run root: the builtin one and one per
/// external runtime used (`runtime-<name>`), each with the handler that
/// owns it where it can still be found.
fn runtime_roots(e: &Engine) -> Vec<(PathBuf, Option<Handler>)> {
    let Ok(rd) = std::fs::read_dir(&e.run_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in rd.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        let handler = if name == "runtime" {
            Handler::resolve("berth", &e.run_root).ok()
        } else if let Some(rt) = name.strip_prefix("runtime-") {
            Handler::resolve(rt, &e.run_root)
                .ok()
                .filter(|h| h.root() == d.path())
        } else {
            continue;
        };
        out.push((d.path(), handler));
    }
    out
}

/// Ids of the containers a runtime root holds state for.
fn runtime_ids(root: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|d| d.path().join("state.json").exists())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|id| berth_runtime::id::validate(id).is_ok())
        .collect()
}

/// Releases the networks of an owner (container or pod) known only by its
/// id: every CNI attachment cached for it, and its netns pin.
fn release_network(e: &Engine, owner: &str) -> Result<()> {
    let cni = e.cni();
    for (net, id, ifname) in cni.cached() {
        if id != owner {
            continue;
        }
        let record = e.db.network::<berth_network::Network>(&net)?;
        let fallback = record.as_ref().map(|n| (n, &[][..]));
        let pin = e.netns_dir().join(Engine::netns_name(owner));
        let detached = crate::net::in_bridge_home(e, || {
            cni.detach(&net, owner, &pin, &ifname, fallback)
                .map_err(|err| Error::Network(err.to_string()))
        })?;
        if let Some(w) = detached {
            tracing::warn!("{}: {w}", crate::ids::short(owner));
        }
    }
    let pin = e.netns_dir().join(Engine::netns_name(owner));
    if berth_network::netns::exists(&pin) {
        berth_network::netns::remove(&pin).map_err(|e| Error::Network(e.to_string()))?;
    }
    Ok(())
}

/// Removes everything of the container `id` that is on disk, without its
/// record (unreadable, or gone): its processes and runtime state in every
/// runtime root, its networks, run dir, bundle and snapshot, and last the
/// record itself. The caller holds the container's lock.
pub(crate) fn purge(e: &Engine, id: &str) -> Result<()> {
    for (root, handler) in runtime_roots(e) {
        if !root.join(id).exists() {
            continue;
        }
        match handler {
            Some(h) => h.delete(id)?,
            None => tracing::warn!(
                "{}: state in {} is of a runtime that cannot be found: left",
                crate::ids::short(id),
                root.display()
            ),
        }
    }
    release_network(e, id)?;
    let _ = std::fs::remove_dir_all(e.rundir(id));
    berth_image::bundle::remove_bundle(&e.images, id)?;
    e.db.remove_container(id)?;
    let _ = std::fs::remove_file(e.locks_dir().join(format!("{id}.lock")));
    Ok(())
}

/// What a sweep removed or released.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Containers (by id) of which only leftovers were found.
    pub orphans: Vec<String>,
    /// Containers whose record was made but whose bundle never was.
    pub half_made: Vec<String>,
    /// Exited containers whose network and runtime state were released.
    pub released: Vec<String>,
    /// Network attachments, pins and run dirs of owners that no longer
    /// exist.
    pub leftovers: usize,
}

/// Looks through everything on disk for what no record owns and removes
/// it; releases what exited containers still hold. Containers whose lock
/// is held are being worked on and are left alone.
pub fn sweep(e: &Engine) -> Result<Swept> {
    let mut out = Swept::default();
    let records: HashSet<String> = e.db.container_ids()?.into_iter().collect();
    let pods: HashSet<String> = e.db.pods()?.into_iter().map(|p| p.id).collect();

    // Ids something of a container is left for: bundles, snapshot
    // references, runtime state.
    let mut found: HashSet<String> = HashSet::new();
    if let Ok(rd) = std::fs::read_dir(e.root.join("containers")) {
        for d in rd.flatten() {
            found.insert(d.file_name().to_string_lossy().into_owned());
        }
    }
    found.extend(e.images.container_ids()?);
    for (root, _) in runtime_roots(e) {
        found.extend(runtime_ids(&root));
    }
    for id in found {
        if records.contains(&id) || berth_image::snapshot::validate_id(&id).is_err() {
            continue;
        }
        let Some(_lock) = crate::lock::try_acquire(&e.locks_dir(), &id)? else {
            continue;
        };
        // Made between the listing and the lock: not an orphan.
        if e.db.container_ids()?.contains(&id) {
            continue;
        }
        purge(e, &id)?;
        out.orphans.push(id);
    }

    // Records whose create never finished, and exited containers still
    // holding their run's resources.
    for c in e.db.containers()? {
        let Some(_lock) = crate::lock::try_acquire(&e.locks_dir(), &c.id)? else {
            continue;
        };
        let Ok(c) = e.db.find_container(&c.id) else {
            continue;
        };
        if !e.container_file(&c.id).exists() && c.state.pid == 0 {
            purge(e, &c.id)?;
            out.half_made.push(c.id);
            continue;
        }
        let mut c = e.refresh(c)?;
        if c.state.status == Status::Exited && c.state.needs_cleanup {
            e.release(&mut c)?;
            out.released.push(c.id);
        }
    }

    // Attachments, pins and run dirs whose owner is gone.
    let owners: HashSet<String> = e.db.container_ids()?.into_iter().chain(pods).collect();
    let cni = e.cni();
    let mut gone: HashSet<String> = cni
        .cached()
        .into_iter()
        .map(|(_, id, _)| id)
        .filter(|id| !owners.contains(id))
        .collect();
    let shorts: HashSet<&str> = owners.iter().map(|o| crate::ids::short(o)).collect();
    if let Ok(rd) = std::fs::read_dir(e.netns_dir()) {
        for d in rd.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if let Some(short) = name.strip_prefix("berth-")
                && !shorts.contains(short)
                && !gone.iter().any(|g| g.starts_with(short))
            {
                berth_network::netns::remove(&d.path())
                    .map_err(|err| Error::Network(err.to_string()))?;
                out.leftovers += 1;
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(e.run_root.join("pins")) {
        for d in rd.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            let owner = name.rsplit_once('-').map_or(name.as_str(), |(o, _)| o);
            if !shorts.contains(owner) {
                berth_network::netns::remove(&d.path())
                    .map_err(|err| Error::Network(err.to_string()))?;
                out.leftovers += 1;
            }
        }
    }
    for owner in gone.drain() {
        release_network(e, &owner)?;
        out.leftovers += 1;
    }
    if let Ok(rd) = std::fs::read_dir(e.run_root.join("c")) {
        for d in rd.flatten() {
            let short = d.file_name().to_string_lossy().into_owned();
            if !shorts.contains(short.as_str()) {
                let _ = std::fs::remove_dir_all(d.path());
                out.leftovers += 1;
            }
        }
    }
    Ok(out)
}

/// The first use of the engine after a boot sweeps: what the reboot ended
/// (runtime state, mounts, pins) is released for every container at once.
pub(crate) fn after_boot(e: &Engine) -> Result<()> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let marker = e.run_root.join("booted");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == boot) {
        return Ok(());
    }
    let _lock = crate::lock::acquire(&e.locks_dir(), "boot-sweep")?;
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == boot) {
        return Ok(());
    }
    sweep(e)?;
    berth_base::fs::atomic_write(&marker, boot.as_bytes(), 0o600)
        .ctx(|| format!("write {}", marker.display()))?;
    restart_after_boot(e);
    Ok(())
}

/// What docker's daemon does when it starts: containers whose policy is
/// `always` come back (even ones the user stopped), and `unless-stopped`
/// ones the user did not stop. A start that fails leaves its container
/// exited, as any failed start does; the
/// others still come back.
fn restart_after_boot(e: &Engine) {
    use crate::model::RestartPolicy as P;
    let Ok(all) = e.containers() else { return };
    for c in all {
        let wanted = match c.config.restart {
            P::Always => true,
            P::UnlessStopped => !c.state.stopped_by_user,
            P::No | P::OnFailure { .. } => false,
        };
        if wanted && c.config.owner.is_none() && c.state.status == crate::model::Status::Exited {
            let _ = e.start(&c.id);
        }
    }
}

/// Makes the records again from their copies on disk, into a database that
/// was just made (lost, or emptied): networks and volumes first, then pods,
/// then containers, each with the state the runtime and its files show.
pub(crate) fn rebuild(e: &Engine) -> Result<usize> {
    let _lock = crate::lock::acquire(&e.locks_dir(), "rebuild")?;
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(e.network_state_dir().join("records")) {
        for f in rd.flatten() {
            if let Some(net) = read_json::<berth_network::Network>(&f.path())
                && e.db.insert_network(&net.name, &net)?
            {
                n += 1;
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(e.volumes_dir()) {
        for d in rd.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !d.path().join("_data").is_dir() {
                continue;
            }
            let v = read_json::<Volume>(&d.path().join("volume.json")).unwrap_or_else(|| Volume {
                name: name.clone(),
                created: crate::engine::now(),
                mountpoint: d.path().join("_data").to_string_lossy().into_owned(),
                labels: Vec::new(),
            });
            if v.name == name && e.db.insert_volume(&v)? {
                n += 1;
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(e.root.join("pods")) {
        for f in rd.flatten() {
            if let Some(mut p) = read_json::<Pod>(&f.path()) {
                p.infra_pid = 0;
                p.infra_start = 0;
                p.netns = None;
                p.uts_ns = None;
                p.ipc_ns = None;
                p.networks.clear();
                match e.db.insert_pod(&mut p) {
                    Ok(()) => n += 1,
                    Err(Error::Conflict(why)) => tracing::warn!("{why}"),
                    Err(err) => return Err(err),
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(e.root.join("containers")) {
        for d in rd.flatten() {
            let id = d.file_name().to_string_lossy().into_owned();
            let Some(f) = read_json::<ContainerFile>(&e.container_file(&id)) else {
                continue;
            };
            if f.id != id {
                continue;
            }
            let run = rebuilt_state(e, &f)?;
            let mut c = Container::assemble(f.id, f.name, f.spec, run, 0);
            match e.db.insert_container(&mut c) {
                Ok(()) => n += 1,
                Err(Error::Conflict(why)) => tracing::warn!("{}: {why}", crate::ids::short(&id)),
                Err(err) => return Err(err),
            }
        }
    }
    if n > 0 {
        tracing::warn!("the state database was new: {n} records were rebuilt from disk");
    }
    Ok(n)
}

/// A container's state as the runtime, its network pin and its exit file
/// show it.
fn rebuilt_state(e: &Engine, f: &ContainerFile) -> Result<ContainerRun> {
    let mut run = ContainerRun::default();
    let handler = Handler::resolve(&f.spec.config.runtime, &e.run_root)?;
    let (status, pid) = handler.state(&f.id)?;
    run.state.pid = pid;
    run.state.status = match status {
        RtStatus::Running => Status::Running,
        RtStatus::Paused => Status::Paused,
        RtStatus::Created => Status::Created,
        RtStatus::Stopped | RtStatus::Missing => {
            run.state.pid = 0;
            match berth_monitor::ExitRecord::read(&e.exit_file(&f.id))
                .ok()
                .flatten()
            {
                Some(x) => {
                    run.state.exit_code = Some(x.exit_code);
                    run.state.oom_killed = x.oom_killed;
                    run.state.finished_at = Some(x.finished_at);
                    Status::Exited
                }
                None => Status::Created,
            }
        }
    };
    // The init's parent is its monitor (a subreaper).
    if let Some(m) = berth_base::process::stat(pid)
        .filter(|_| pid > 0)
        .and_then(|s| berth_base::process::ProcessId::of(s.ppid))
    {
        run.monitor_pid = m.pid;
        run.monitor_start = m.start_time;
    }
    let pin = e.netns_dir().join(Engine::netns_name(&f.id));
    let own_network = f.spec.config.network.has_own_namespace();
    if own_network && berth_network::netns::exists(&pin) {
        run.netns = Some(pin.to_string_lossy().into_owned());
    }
    let cached = e.cni().cached();
    run.state.needs_cleanup = run.netns.is_some()
        || status != RtStatus::Missing
        || cached.iter().any(|(_, id, _)| *id == f.id);
    Ok(run)
}
