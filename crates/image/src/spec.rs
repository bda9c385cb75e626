//! Image config -> OCI runtime spec (config.json for berth-runtime), with
//! podman's defaults: namespaces, capabilities, mounts, masked and
//! read-only paths. The user is resolved through the image's own
//! /etc/passwd and /etc/group, read inside the rootfs (RESOLVE_IN_ROOT, so
//! a symlinked /etc/passwd cannot point at the host's) and only if they are
//! regular files (a device node there must not be opened by us, as root).

use std::io::Read;
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde_json::{Value, json};

use crate::error::{Context, Error, Result};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the caller (e.g. `berth run`) overrides in the image's config.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd.
    pub args: Option<Vec<String>>,
    /// `KEY=VALUE`, after the image's.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub terminal: bool,
    pub readonly_rootfs: bool,
}

pub const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
];

pub const READONLY: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The runtime spec for a container of `config` whose root is `rootfs`
/// (written as the relative "rootfs" in the bundle).
pub fn generate(
    config: &ImageConfiguration,
    rootfs: &Path,
    id: &str,
    o: &SpecOptions,
) -> Result<oci_spec::runtime::Spec> {
    let v = generate_json(config, rootfs, id, o)?;
    Ok(serde_json::from_value(v).expect("the generated spec is a spec"))
}

fn generate_json(
    config: &ImageConfiguration,
    rootfs: &Path,
    id: &str,
    o: &SpecOptions,
) -> Result<Value> {
    let c = config.config().clone().unwrap_or_default();
    let entrypoint = o
        .entrypoint
        .clone()
        .or_else(|| c.entrypoint().clone())
        .unwrap_or_default();
    let cmd = match (&o.args, &o.entrypoint) {
        (Some(a), _) => a.clone(),
        // A new entrypoint drops the image's Cmd, as docker does.
        (None, Some(_)) => Vec::new(),
        (None, None) => c.cmd().clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::invalid(
            format!("container {id}"),
            "the image has no Entrypoint or Cmd and no command was given",
        ));
    }
    let mut env: Vec<String> = vec![DEFAULT_PATH.into(), "container=berth".into()];
    if o.terminal {
        env.push("TERM=xterm".into());
    }
    let hostname = o
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());
    env.push(format!("HOSTNAME={hostname}"));
    // An image's entry without '=' (or with an empty name) has no value to
    // give: it is left out, where it would make the runtime refuse the
    // whole config. (podman's env parsing takes the value of such a name
    // from its own environment; passing the host's environment into a
    // container on an image's say-so is not something to copy.)
    let image_env = c.env().iter().flatten().filter(|e| valid_env(e));
    check_env(&o.env)?;
    let env = merge_env(env, image_env.chain(o.env.iter()));
    check_env(&env)?;
    let user_spec = o
        .user
        .clone()
        .or_else(|| c.user().clone())
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec)?;
    let cwd = o
        .workdir
        .clone()
        .or_else(|| c.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::invalid(
            format!("working directory {cwd:?}"),
            "must be absolute",
        ));
    }
    let mut annotations = serde_json::Map::new();
    for (k, v) in c.labels().iter().flatten() {
        annotations.insert(k.clone(), json!(v));
    }
    if let Some(s) = c.stop_signal() {
        annotations.insert("org.opencontainers.image.stopSignal".into(), json!(s));
    }
    if let Some(p) = c.exposed_ports().as_ref().filter(|p| !p.is_empty()) {
        let mut p = p.clone();
        p.sort();
        annotations.insert(
            "org.opencontainers.image.exposedPorts".into(),
            json!(p.join(",")),
        );
    }
    if let Some(v) = c.volumes().as_ref().filter(|v| !v.is_empty()) {
        let mut v = v.clone();
        v.sort();
        annotations.insert(
            "org.opencontainers.image.volumes".into(),
            json!(v.join(",")),
        );
    }
    if let Some(created) = config.created() {
        annotations.insert("org.opencontainers.image.created".into(), json!(created));
    }
    let caps = json!(CAPS);
    // podman's limits, capped at what this process may grant.
    let cap = |r: rustix::process::Resource, want: u64| {
        rustix::process::getrlimit(r)
            .maximum
            .map_or(want, |m| m.min(want))
    };
    let nofile = cap(rustix::process::Resource::Nofile, 1_048_576);
    let nproc = cap(rustix::process::Resource::Nproc, 4_194_304);
    Ok(json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": o.terminal,
            "user": { "uid": user.uid, "gid": user.gid, "additionalGids": user.additional },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": [
                { "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile },
                { "type": "RLIMIT_NPROC", "hard": nproc, "soft": nproc }
            ],
            "noNewPrivileges": false
        },
        "root": { "path": "rootfs", "readonly": o.readonly_rootfs },
        "hostname": hostname,
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "annotations": annotations,
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY
        }
    }))
}

fn valid_env(kv: &str) -> bool {
    kv.split_once('=').is_some_and(|(k, _)| !k.is_empty())
}

/// The most variables a container's environment may hold...
pub const MAX_ENV_VARS: usize = 32 * 1024;
/// ...their total size (execve(2) takes about 2 MiB of arguments and
/// environment together with the default stack limit)...
pub const MAX_ENV_BYTES: usize = 1 << 20;
/// ...and one variable's (the kernel's MAX_ARG_STRLEN, with its NUL).
pub const MAX_ENV_VAR: usize = 128 * 1024 - 1;

/// Refuses an environment the kernel would not take, or that is not
/// NAME=VALUE, naming the variable and the limit.
pub fn check_env(env: &[String]) -> Result<()> {
    if env.len() > MAX_ENV_VARS {
        return Err(Error::invalid(
            "environment",
            format!("{} variables; at most {MAX_ENV_VARS}", env.len()),
        ));
    }
    let mut total = 0;
    for e in env {
        let shown = || e.chars().take(40).collect::<String>();
        if !valid_env(e) || e.contains('\0') {
            return Err(Error::invalid(
                format!("environment variable {:?}", shown()),
                "expected NAME=VALUE",
            ));
        }
        if e.len() > MAX_ENV_VAR {
            return Err(Error::invalid(
                format!("environment variable {:?}...", shown()),
                format!("{} bytes; at most {MAX_ENV_VAR}", e.len()),
            ));
        }
        total += e.len() + 1;
    }
    if total > MAX_ENV_BYTES {
        return Err(Error::invalid(
            "environment",
            format!("{total} bytes; at most {MAX_ENV_BYTES}"),
        ));
    }
    Ok(())
}

/// `base` with each of `more` set in turn: a name already there gets the
/// new value in its place, a new name goes last (docker's rule). Linear:
/// names are looked up in a map, not by scanning the list.
fn merge_env<'a>(mut base: Vec<String>, more: impl Iterator<Item = &'a String>) -> Vec<String> {
    let key = |kv: &str| kv.split('=').next().unwrap_or(kv).to_string();
    let mut at: std::collections::HashMap<String, usize> =
        base.iter().enumerate().map(|(i, e)| (key(e), i)).collect();
    for kv in more {
        match at.entry(key(kv)) {
            std::collections::hash_map::Entry::Occupied(o) => base[*o.get()] = kv.clone(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(base.len());
                base.push(kv.clone());
            }
        }
    }
    base
}

#[derive(Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional: Vec<u32>,
}

/// `""`, `name`, `uid`, `name:group`, `uid:gid` -> ids, through the image's
/// /etc/passwd and /etc/group. Numeric ids need no entry.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<User> {
    if spec.is_empty() {
        return Ok(User {
            uid: 0,
            gid: 0,
            additional: vec![],
        });
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let group = read_in_root(rootfs, "etc/group")?;
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    let (uid, mut gid, name) = match u.parse::<u32>() {
        Ok(uid) => {
            let entry = pw.iter().find(|f| f[2].parse() == Ok(uid));
            (
                uid,
                entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
                entry.map(|f| f[0].to_string()),
            )
        }
        Err(_) => {
            let f = pw.iter().find(|f| f[0] == u).ok_or_else(|| {
                Error::invalid(
                    format!("user {u:?}"),
                    "not found in the image's /etc/passwd",
                )
            })?;
            let uid = f[2]
                .parse()
                .map_err(|_| Error::invalid(format!("user {u:?}"), "bad uid in /etc/passwd"))?;
            (uid, f[3].parse().unwrap_or(0), Some(u.to_string()))
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::invalid(
                        format!("group {g:?}"),
                        "not found in the image's /etc/group",
                    )
                })?,
        };
    }
    let mut additional = Vec::new();
    if let (Some(name), None) = (&name, g) {
        for f in &gr {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(id) = f[2].parse::<u32>()
                && id != gid
                && !additional.contains(&id)
            {
                additional.push(id);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional,
    })
}

/// A group's id: a number, or a name in the image's /etc/group.
pub fn resolve_group(rootfs: &Path, group: &str) -> Result<u32> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    read_in_root(rootfs, "etc/group")?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == group)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| {
            Error::invalid(
                format!("group {group:?}"),
                "not found in the image's /etc/group",
            )
        })
}

/// A small file of the image, resolved inside its root; missing is empty.
/// Opened as O_PATH first: opening a device or a fifo for reading, as
/// root, could do anything from blocking to rewinding a tape. Only a
/// regular file is then opened for reading, through /proc/self/fd (the
/// same inode, no second path lookup).
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", rootfs.display()))?;
    let fd = match rustix::fs::openat2(
        &root,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(e).ctx(|| format!("open the image's /{rel}")),
    };
    let st = rustix::fs::fstat(&fd).ctx(|| format!("stat the image's /{rel}"))?;
    let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if ft != rustix::fs::FileType::RegularFile {
        return Err(Error::invalid(
            format!("the image's /{rel}"),
            format!("not a regular file ({ft:?})"),
        ));
    }
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let file = rustix::fs::open(
        proc.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .ctx(|| format!("open the image's /{rel}"))?;
    let mut s = String::new();
    std::fs::File::from(file)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ctx(|| format!("read the image's /{rel}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merges_in_place_in_linear_time() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let more = ["A=2".to_string(), "B=3".to_string(), "PATH=/x".to_string()];
        assert_eq!(merge_env(base, more.iter()), ["PATH=/x", "A=2", "B=3"]);
        // 30 000 distinct names, each set twice: quadratic merging took
        // seconds at this size.
        let many: Vec<String> = (0..30_000).map(|i| format!("V{i}=x")).collect();
        let t = std::time::Instant::now();
        let merged = merge_env(many.clone(), many.iter().chain(many.iter()));
        assert_eq!(merged.len(), 30_000);
        assert!(
            t.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        check_env(&merged).unwrap();
    }

    #[test]
    fn env_limits_are_named() {
        let e = |env: Vec<String>| check_env(&env).unwrap_err().to_string();
        let too_many: Vec<String> = (0..MAX_ENV_VARS + 1).map(|i| format!("V{i}=")).collect();
        assert!(e(too_many).contains("at most 32768"));
        let big = vec![format!("A={}", "x".repeat(MAX_ENV_VAR))];
        assert!(e(big).contains("at most 131071"));
        let total: Vec<String> = (0..20)
            .map(|i| format!("V{i}={}", "x".repeat(100_000)))
            .collect();
        assert!(e(total).contains("at most 1048576"));
        assert!(e(vec!["NOVALUE".into()]).contains("expected NAME=VALUE"));
        assert!(e(vec!["=x".into()]).contains("expected NAME=VALUE"));
    }

    #[test]
    fn users_resolve_through_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nlog:x:4:web\nstaff:x:50:web,other\n",
        )
        .unwrap();
        let r = |s| resolve_user(d.path(), s).unwrap();
        assert_eq!(
            r(""),
            User {
                uid: 0,
                gid: 0,
                additional: vec![]
            }
        );
        assert_eq!(
            r("web"),
            User {
                uid: 33,
                gid: 33,
                additional: vec![4, 50]
            }
        );
        assert_eq!(
            r("web:log"),
            User {
                uid: 33,
                gid: 4,
                additional: vec![]
            }
        );
        assert_eq!(
            r("1000:1000"),
            User {
                uid: 1000,
                gid: 1000,
                additional: vec![]
            }
        );
        assert_eq!(
            r("33"),
            User {
                uid: 33,
                gid: 33,
                additional: vec![4, 50]
            }
        );
        assert!(resolve_user(d.path(), "nobody").is_err());
        assert!(resolve_user(d.path(), "web:nogroup").is_err());
    }

    #[test]
    fn passwd_must_be_a_regular_file() {
        for (what, make) in [
            (
                "fifo",
                (|p: &Path| {
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        p,
                        rustix::fs::FileType::Fifo,
                        Mode::from_raw_mode(0o644),
                        0,
                    )
                }) as fn(&Path) -> rustix::io::Result<()>,
            ),
            ("char device", |p: &Path| {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    p,
                    rustix::fs::FileType::CharacterDevice,
                    Mode::from_raw_mode(0o644),
                    rustix::fs::makedev(1, 3),
                )
            }),
        ] {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir(d.path().join("etc")).unwrap();
            make(&d.path().join("etc/passwd")).unwrap();
            // A fifo without a writer would block a reading open forever.
            let (tx, rx) = std::sync::mpsc::channel();
            let root = d.path().to_path_buf();
            std::thread::spawn(move || {
                let _ = tx.send(resolve_user(&root, "app").map_err(|e| e.to_string()));
            });
            let err = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("{what}: resolving the user hangs"))
                .unwrap_err();
            assert!(
                err.contains("/etc/passwd") && err.contains("not a regular file"),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn env_entries_without_a_value_are_left_out() {
        let config: ImageConfiguration = serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "config": { "Env": ["A=1", "LONELY", "=nameless", "B=x=y"], "Cmd": ["sh"] },
            "rootfs": { "type": "layers", "diff_ids": [] }
        }))
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let spec = generate(&config, d.path(), "c", &SpecOptions::default()).unwrap();
        let env: Vec<String> = spec.process().as_ref().unwrap().env().clone().unwrap();
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        assert!(env.contains(&"A=1") && env.contains(&"B=x=y"), "{env:?}");
        assert!(
            env.iter().all(|e| e.contains('=') && !e.starts_with('=')),
            "{env:?}"
        );
        let bad = SpecOptions {
            env: vec!["NOVALUE".into()],
            ..SpecOptions::default()
        };
        assert!(generate(&config, d.path(), "c", &bad).is_err());
    }

    #[test]
    fn passwd_symlink_stays_in_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/passwd")).unwrap();
        // The host's passwd has root; inside this root the link dangles.
        assert!(resolve_user(d.path(), "root").is_err());
    }
}
