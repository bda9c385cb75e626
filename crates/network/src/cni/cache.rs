//! The record of each ADD (config, arguments, result), kept so DEL and CHECK
//! can replay exactly what was set up, even after a crash and with the
//! network's record gone (CNI spec: "the runtime must cache the result").

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CniError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    /// Runtime values of capabilities, e.g. portMappings.
    pub runtime_config: serde_json::Map<String, Value>,
    pub config: Value,
    /// None while ADD is under way: the entry is written before the first
    /// plugin runs, so a crash mid-ADD still leaves enough to DEL.
    pub result: Option<Value>,
}

/// The lock of one attachment, held by whoever runs its plugins (and by
/// the plugins: see exec::Env::hold). Waited for at most this long: a
/// plugin's own timeout, and then some.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(150);

pub fn lock(
    state_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<berth_base::lock::Flock, CniError> {
    use berth_base::lock::{Flock, Kind, Wait};
    let dir = state_dir.join("locks");
    fs::create_dir_all(&dir).map_err(io_err("creating CNI lock directory", &dir))?;
    let path = dir.join(format!("{network}-{container_id}-{ifname}.lock"));
    Flock::acquire(&path, Kind::Exclusive, Wait::For(LOCK_WAIT))
        .map(|l| l.expect("a waiting lock"))
        .map_err(io_err("locking CNI attachment", &path))
}

/// Removes the attachment's lock file (its holder calls this last: a
/// waiter that opened it meanwhile finds the attachment gone).
pub fn unlock_path(state_dir: &Path, network: &str, container_id: &str, ifname: &str) {
    let path = state_dir
        .join("locks")
        .join(format!("{network}-{container_id}-{ifname}.lock"));
    let _ = fs::remove_file(path);
}

/// Removes what writes of the entry cut short by a crash left beside it.
pub fn remove_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let temp = f
            .strip_prefix('.')
            .unwrap_or(&f)
            .strip_prefix(&*name)
            .is_some_and(|rest| rest.starts_with('.'));
        if temp {
            let _ = fs::remove_file(e.path());
        }
    }
}

pub fn path(state_dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    state_dir
        .join("cache")
        .join(network)
        .join(format!("{container_id}-{ifname}.json"))
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CniError + 'a {
    move |source| CniError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a new entry; fails with AlreadyAttached if one exists, so two ADDs
/// of one attachment cannot both proceed. The entry is written whole to a
/// temp file and synced before it is linked into place: a crash leaves no
/// empty or torn entry that would make the attachment unremovable.
pub fn create(path: &Path, entry: &Entry) -> Result<(), CniError> {
    let dir = path.parent().expect("cache paths have a parent");
    fs::create_dir_all(dir).map_err(io_err("creating CNI cache directory", dir))?;
    let tmp = path.with_extension(format!("json.{}.new", std::process::id()));
    let body = serde_json::to_vec(entry).expect("cache entries serialize");
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("writing CNI cache entry", &tmp)(e)
    })?;
    // link(2) fails if the name exists: the exclusive create, of a whole file.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => berth_base::fs::sync_dir(dir).map_err(io_err("syncing CNI cache directory", dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(CniError::AlreadyAttached {
            network: entry.network.clone(),
            container_id: entry.container_id.clone(),
            ifname: entry.ifname.clone(),
        }),
        Err(e) => Err(io_err("creating CNI cache entry", path)(e)),
    }
}

/// Replaces an entry atomically and durably.
pub fn update(path: &Path, entry: &Entry) -> Result<(), CniError> {
    let body = serde_json::to_vec(entry).expect("cache entries serialize");
    berth_base::fs::atomic_write(path, &body, 0o600)
        .map_err(io_err("writing CNI cache entry", path))
}

/// Reads an entry, None if there is none; checks it is the one asked for
/// (file names could in principle collide: `a-b`+`c` vs `a`+`b-c`).
pub fn load(
    path: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<Option<Entry>, CniError> {
    let body = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading CNI cache entry", path)(e)),
    };
    let entry: Entry = serde_json::from_slice(&body).map_err(|e| CniError::BadCache {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if entry.network != network || entry.container_id != container_id || entry.ifname != ifname {
        return Err(CniError::BadCache {
            path: path.to_path_buf(),
            reason: format!(
                "it records {}/{}/{}, not {network}/{container_id}/{ifname}",
                entry.network, entry.container_id, entry.ifname
            ),
        });
    }
    Ok(Some(entry))
}

/// (network, file stem) of every entry: the stem is `<container id>-<ifname>`.
pub fn list(state_dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(nets) = fs::read_dir(state_dir.join("cache")) else {
        return out;
    };
    for net in nets.flatten() {
        let Ok(entries) = fs::read_dir(net.path()) else {
            continue;
        };
        let network = net.file_name().to_string_lossy().into_owned();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Temp files of a write cut short count too: their entry needs
            // a detach (which removes them).
            let name = name.strip_prefix('.').unwrap_or(&name);
            if let Some((stem, _)) = name.split_once(".json") {
                let pair = (network.clone(), stem.to_string());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
    }
    out
}

pub fn remove(path: &Path) -> Result<(), CniError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing CNI cache entry", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            network: "n".into(),
            container_id: "a-b".into(),
            ifname: "c".into(),
            args: vec![],
            runtime_config: Default::default(),
            config: serde_json::json!({}),
            result: None,
        }
    }

    #[test]
    fn entries_are_exclusive_checked_and_tolerant_of_absence() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path(), "n", "a-b", "c");
        assert!(load(&p, "n", "a-b", "c").unwrap().is_none());
        create(&p, &entry()).unwrap();
        assert!(matches!(
            create(&p, &entry()),
            Err(CniError::AlreadyAttached { .. })
        ));
        assert!(load(&p, "n", "a-b", "c").unwrap().is_some());
        // Same file name, different attachment: refused, not misused.
        let same_file = path(d.path(), "n", "a", "b-c");
        assert_eq!(same_file, p);
        let e = load(&p, "n", "a", "b-c").unwrap_err();
        assert!(e.to_string().contains("records n/a-b/c"), "{e}");
        std::fs::write(&p, b"{garbage").unwrap();
        let e = load(&p, "n", "a-b", "c").unwrap_err();
        assert!(matches!(e, CniError::BadCache { .. }), "{e}");
        remove(&p).unwrap();
        remove(&p).unwrap();
    }
}
