//! The systemd cgroup driver: the container's cgroup is a transient scope
//! that systemd creates and owns ("slice:prefix:name" in cgroupsPath, as
//! runc reads it); limits are then written through cgroupfs like the
//! cgroupfs driver does.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::dbus::{Conn, Value};
use super::{Cgroup, CgroupDir, CgroupRecord, Layout};
use crate::error::{Error, Result};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// "machine-ctr.slice" -> "/machine.slice/machine-ctr.slice".
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    let bad = || {
        Error::config(
            "linux.cgroupsPath",
            format!("{slice:?} is not a valid slice name"),
        )
    };
    let name = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if name == "-" {
        return Ok(PathBuf::from("/"));
    }
    if name.is_empty()
        || name.contains('/')
        || name.starts_with('-')
        || name.ends_with('-')
        || name.contains("--")
    {
        return Err(bad());
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// Splits "slice:prefix:name" into the slice and the scope's unit name.
pub fn parse_path(cgroups_path: Option<&Path>, id: &str) -> Result<(String, String)> {
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if raw.is_empty() {
        return Ok(("system.slice".into(), format!("berth-{id}.scope")));
    }
    let parts: Vec<&str> = raw.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(Error::config(
            "linux.cgroupsPath",
            format!(
                "{raw:?} is not of the form \"slice:prefix:name\" that the systemd driver needs"
            ),
        ));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    if name.ends_with(".slice") {
        return Err(Error::config(
            "linux.cgroupsPath",
            "the container's unit must be a scope, not a slice",
        ));
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if name.is_empty() || !is_unit_name(&unit) {
        return Err(Error::config(
            "linux.cgroupsPath",
            format!("{unit:?} is not a valid systemd unit name"),
        ));
    }
    // expand_slice checks the slice's own name.
    expand_slice(slice)?;
    Ok((slice.to_string(), unit))
}

/// A unit name as systemd accepts it: ASCII letters, digits and `:-_.\@`,
/// at most 255 bytes. (Slashes would reach outside the slice's directory.)
fn is_unit_name(unit: &str) -> bool {
    unit.len() <= 255
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b))
}

/// systemd as PID 1 leaves this directory.
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Where the scope will be: in every hierarchy, under the expanded slice.
pub fn plan(layout: &Layout, cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
    let (slice, unit) = parse_path(cgroups_path, id)?;
    if !systemd_running() {
        return Err(Error::Systemd(
            "--systemd-cgroup needs systemd as the init system, and it is not running here".into(),
        ));
    }
    let rel = expand_slice(&slice)?.join(&unit);
    let dirs = layout
        .hierarchies
        .iter()
        .map(|h| CgroupDir {
            path: h.mountpoint.join(rel.strip_prefix("/").unwrap_or(&rel)),
            mountpoint: h.mountpoint.clone(),
            v2: h.v2,
            controllers: h.controllers.clone(),
        })
        .collect();
    Ok(Cgroup {
        record: CgroupRecord {
            dirs,
            created_parents: Vec::new(),
            systemd_unit: Some(format!("{slice}:{unit}")),
        },
    })
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Systemd(format!("{what}: {e}"))
}

/// Asks systemd for the transient scope holding `pid`, then waits until
/// the process is in it.
pub fn start_scope(cg: &Cgroup, pid: i32, id: &str) -> Result<()> {
    let Some(record) = &cg.record.systemd_unit else {
        return Ok(());
    };
    let (slice, unit) = record.split_once(':').unwrap_or(("system.slice", record));
    let mut conn =
        Conn::systemd(Duration::from_secs(30)).map_err(|e| err("connect to systemd", e))?;
    let props = Value::Props(vec![
        (
            "Description".into(),
            Value::Str(format!("berth container {id}")),
        ),
        ("Slice".into(), Value::Str(slice.into())),
        ("PIDs".into(), Value::ArrayU32(vec![pid as u32])),
        ("Delegate".into(), Value::Bool(true)),
        ("MemoryAccounting".into(), Value::Bool(true)),
        ("CPUAccounting".into(), Value::Bool(true)),
        ("TasksAccounting".into(), Value::Bool(true)),
        ("IOAccounting".into(), Value::Bool(true)),
        ("DefaultDependencies".into(), Value::Bool(false)),
    ]);
    let args = [
        Value::Str(unit.into()),
        Value::Str("replace".into()),
        props,
        Value::EmptyAux,
    ];
    let mut r = conn.call(DEST, PATH, MANAGER, "StartTransientUnit", &args);
    if let Err(e) = &r
        && e.name.ends_with("UnitExists")
    {
        // A failed unit of the same name lingers: clear it, try again.
        let _ = conn.call(
            DEST,
            PATH,
            MANAGER,
            "ResetFailedUnit",
            &[Value::Str(unit.into())],
        );
        r = conn.call(DEST, PATH, MANAGER, "StartTransientUnit", &args);
    }
    r.map_err(|e| err(&format!("start scope {unit}"), e))?;
    // The job runs asynchronously; the scope exists once our pid is in it.
    let v2 = cg.v2_dir().or_else(|| {
        cg.record
            .dirs
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == "name=systemd"))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    if let Some(d) = v2 {
        loop {
            let procs = std::fs::read_to_string(d.path.join("cgroup.procs")).unwrap_or_default();
            if procs.lines().any(|l| l.trim() == pid.to_string()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Systemd(format!(
                    "scope {unit} did not appear in {}",
                    d.path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Stops the scope on delete; a unit that is already gone is fine.
///
/// A scope whose processes are all dead is stopped by systemd on its own,
/// so its cgroup vanishing is as good as an answer to StopUnit. Calls go on
/// fresh connections with a short timeout, because systemd under load was
/// seen to leave one unanswered.
pub fn stop_unit(record: &str, scope_dir: Option<&Path>) -> Result<()> {
    let unit = record.split_once(':').map_or(record, |(_, u)| u);
    let gone = || scope_dir.is_some_and(|d| !d.exists());
    let mut last = None;
    for _ in 0..3 {
        if gone() {
            return Ok(());
        }
        let mut conn =
            Conn::systemd(Duration::from_secs(5)).map_err(|e| err("connect to systemd", e))?;
        let args = [Value::Str(unit.into()), Value::Str("replace".into())];
        match conn.call(DEST, PATH, MANAGER, "StopUnit", &args) {
            Ok(_) => return Ok(()),
            Err(e) if e.name.ends_with("NoSuchUnit") => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    if gone() {
        return Ok(());
    }
    Err(err(&format!("stop {unit}"), last.expect("tried")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_slices() {
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            Path::new("/system.slice")
        );
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            Path::new("/a.slice/a-b.slice/a-b-c.slice")
        );
        assert_eq!(expand_slice("-.slice").unwrap(), Path::new("/"));
        for bad in ["a", "a--b.slice", "-a.slice", "a/b.slice", ".slice"] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_cgroups_path() {
        assert_eq!(
            parse_path(Some(Path::new("machine.slice:libpod:abc")), "x").unwrap(),
            ("machine.slice".into(), "libpod-abc.scope".into())
        );
        assert_eq!(
            parse_path(None, "x").unwrap(),
            ("system.slice".into(), "berth-x.scope".into())
        );
        assert!(parse_path(Some(Path::new("/a/b")), "x").is_err());
        for bad in [
            "machine.slice:pre:../../etc",
            "machine.slice:a/b:c",
            "machine.slice:pre:",
            "../x.slice:pre:c",
            "machine.slice:pre:na me",
        ] {
            assert!(parse_path(Some(Path::new(bad)), "x").is_err(), "{bad}");
        }
    }
}
