//! Crashes and damage leave nothing unremovable: damaged state files and
//! records, a lost or damaged database, and the CLI killed at random
//! points of `run -d` and `rm -f`. Afterwards `rm -f` and the recovery
//! sweep (`system prune`) leave no record, mount, netns pin, cgroup,
//! iptables rule, monitor or directory behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::env::*;

fn db_path(env: &Env) -> PathBuf {
    env.sb.root().join("engine.db")
}

/// The database as SQLite sees it, for tests that damage it.
fn db(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(db_path(env)).unwrap()
}

fn dir_entries(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of any container is left on the host or in the env's roots.
fn assert_nothing_left(env: &Env) {
    assert!(env.ids().is_empty(), "records remain: {:?}", env.ids());
    let root = env.sb.root();
    assert!(
        dir_entries(&root.join("containers")).is_empty(),
        "container directories remain: {:?}",
        dir_entries(&root.join("containers"))
    );
    // The pin directory itself is a mount point (shared, as `ip netns`
    // makes /run/netns); the pins in it are checked below.
    let pin_dir = env.runroot().join("netns").to_string_lossy().into_owned();
    let m: Vec<String> = mounts_under(env.sb.path())
        .into_iter()
        .filter(|m| *m != pin_dir)
        .collect();
    assert!(m.is_empty(), "mounts remain: {m:?}");
    let pins = dir_entries(&env.runroot().join("netns"));
    assert!(pins.is_empty(), "netns pins remain: {pins:?}");
    let cache: Vec<String> = dir_entries(&root.join("network/cache"))
        .iter()
        .flat_map(|n| dir_entries(&root.join("network/cache").join(n)))
        .collect();
    assert!(cache.is_empty(), "CNI attachments remain: {cache:?}");
    let leases: Vec<String> = dir_entries(&root.join("network/ipam"))
        .iter()
        .flat_map(|n| dir_entries(&root.join("network/ipam").join(n)))
        .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(leases.is_empty(), "addresses stay leased: {leases:?}");
    // (Its compiled seccomp programs, `.seccomp`, are a cache, not state.)
    let runtime: Vec<String> = dir_entries(&env.runroot().join("runtime"))
        .into_iter()
        .filter(|d| !d.starts_with('.'))
        .collect();
    assert!(runtime.is_empty(), "runtime state remains: {runtime:?}");
    let monitors = processes_with(&env.sb.path().to_string_lossy());
    assert!(monitors.is_empty(), "processes remain: {monitors:?}");
    let rundirs = dir_entries(&env.runroot().join("c"));
    assert!(rundirs.is_empty(), "run dirs remain: {rundirs:?}");
    let cg: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .flat_map(|h| dir_entries(&h.path()))
        .filter(|d| d.starts_with("berth-") && env_owns(env, d))
        .collect();
    assert!(cg.is_empty(), "cgroups remain: {cg:?}");
}

/// Cgroups are host-wide: only those of this env's containers count (any
/// container this env ever made has a directory under its bundles while
/// it lives, so the ids are remembered by the test instead).
fn env_owns(env: &Env, cgroup: &str) -> bool {
    let made = env.sb.path().join("made-ids");
    std::fs::read_to_string(made)
        .unwrap_or_default()
        .lines()
        .any(|id| cgroup == format!("berth-{id}"))
}

fn remember(env: &Env, id: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.sb.path().join("made-ids"))
        .unwrap();
    writeln!(f, "{id}").unwrap();
}

#[test]
fn a_damaged_cni_cache_entry_does_not_make_rm_fail() {
    let env = Env::new();
    let id = env.run_d(&["-p", "127.0.0.1::80"], &["sleep", "1000"]);
    remember(&env, &id);
    let entry = env
        .sb
        .root()
        .join("network/cache/berth")
        .join(format!("{id}-eth0.json"));
    assert!(entry.exists());
    // What a kill -9 in the middle of an older berth's write left.
    std::fs::write(&entry, b"").unwrap();
    let (_, err) = env.code(0, &["rm", "-f", &id]);
    assert!(err.contains("Warning") && err.contains("unusable"), "{err}");
    assert_gone(&env, &id);
    assert_nothing_left(&env);
    let rules = String::from_utf8(
        std::process::Command::new("iptables-save")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!rules.contains(&id[..12]), "{rules}");
}

#[test]
fn an_unreadable_record_is_skipped_in_listings_and_removable() {
    let env = Env::new();
    let bad = env.run_d(&["--name", "bad"], &["sleep", "1000"]);
    let good = env.run_d(&["--name", "good", "--network", "none"], &["sleep", "1000"]);
    remember(&env, &bad);
    db(&env)
        .execute(
            "UPDATE containers SET state = '{not json' WHERE id = ?1",
            [&bad],
        )
        .unwrap();
    let out = env.berth(&["ps", "-a", "--format", "json"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unreadable") && err.contains(&bad[..12]),
        "{err}"
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["Id"], good.as_str());
    let (_, err) = env.code(125, &["inspect", "bad"]);
    assert!(err.contains("rm -f"), "{err}");
    let (_, err) = env.code(125, &["rm", "bad"]);
    assert!(err.contains("unreadable"), "{err}");
    env.ok(&["rm", "-f", "bad"]);
    assert_gone(&env, &bad);
    env.ok(&["rm", "-f", "good"]);
    assert_nothing_left(&env);
}

#[test]
fn a_lost_database_is_rebuilt_from_what_is_on_disk() {
    let env = Env::new();
    let running = env.run_d(
        &["--name", "keep", "-p", "127.0.0.1::80"],
        &["sleep", "1000"],
    );
    remember(&env, &running);
    let created = env.ok(&["create", "--name", "idle", &env.image, "true"]);
    let created = created.trim().to_string();
    env.ok(&["volume", "create", "data"]);
    env.ok(&["network", "create", "side"]);

    for lost in ["deleted", "emptied"] {
        let p = db_path(&env);
        for f in [
            p.clone(),
            p.with_extension("db-wal"),
            p.with_extension("db-shm"),
        ] {
            let _ = std::fs::remove_file(f);
        }
        if lost == "emptied" {
            std::fs::write(&p, b"").unwrap();
        }
        let (out, err) = env.code(0, &["ps", "-a", "--format", "json"]);
        assert!(err.contains("rebuilt from disk"), "{lost}: {err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        let state = |name: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|c| c["Names"][0] == name)
                .unwrap_or_else(|| panic!("{lost}: {name} in {list}"))["State"]
                .clone()
        };
        assert_eq!(state("keep"), "running", "{lost}");
        assert_eq!(state("idle"), "created", "{lost}");
        assert!(env.ok(&["volume", "ls", "-q"]).contains("data"), "{lost}");
        assert!(env.ok(&["network", "ls", "-q"]).contains("side"), "{lost}");
    }
    // The rebuilt records drive the containers as before.
    let out = env.ok(&["exec", "keep", "echo", "still here"]);
    assert_eq!(out.trim(), "still here");
    env.ok(&["stop", "-t", "1", "keep"]);
    env.ok(&["rm", "keep", &created]);
    env.ok(&["volume", "rm", "data"]);
    env.ok(&["network", "rm", "side"]);
    assert_gone(&env, &running);
    assert_nothing_left(&env);
}

#[test]
fn a_damaged_database_is_refused_with_a_copy_and_repaired_from_disk() {
    let env = Env::new();
    let id = env.run_d(&["--name", "a", "--network", "none"], &["sleep", "1000"]);
    remember(&env, &id);
    // Everything in the main file, then noise over its pages past the
    // header (where the tables and indexes are).
    {
        let c = db(&env);
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let p = db_path(&env);
    let mut raw = std::fs::read(&p).unwrap();
    assert!(raw.len() >= 8192, "{}", raw.len());
    let mut x: u32 = 0x1234_5678;
    for b in raw[4096..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(&p, &raw).unwrap();

    for args in [&["ps", "-a"][..], &["run", "-d", &env.image, "true"][..]] {
        let t = Instant::now();
        let (_, err) = env.code(125, args);
        assert!(
            err.contains("is damaged") && err.contains("a copy is at"),
            "{err}"
        );
        assert!(err.contains("berth system repair"), "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{args:?} must not spin"
        );
    }
    let copies: Vec<String> = dir_entries(&env.sb.root())
        .into_iter()
        .filter(|f| f.starts_with("engine.db.damaged-"))
        .collect();
    assert!(!copies.is_empty(), "a copy of the damaged file is kept");

    let out = env.ok(&["system", "repair"]);
    assert!(out.contains("1 containers"), "{out}");
    assert_eq!(env.status("a"), "running");
    env.ok(&["rm", "-f", "a"]);
    assert_gone(&env, &id);
    assert_nothing_left(&env);
}

#[test]
fn what_a_killed_rm_leaves_without_a_record_is_swept() {
    let env = Env::new();
    let id = env.run_d(&["--name", "orphan"], &["sleep", "1000"]);
    remember(&env, &id);
    // The record gone, everything else still there: what an older berth's
    // rm left when killed between removing the record and the bundle.
    db(&env)
        .execute("DELETE FROM containers WHERE id = ?1", [&id])
        .unwrap();
    assert!(env.ids().is_empty());
    let (_, err) = env.code(125, &["system", "prune"]);
    assert!(
        err.contains("--force"),
        "no terminal, no -f: refused: {err}"
    );
    assert!(env.sb.root().join("containers").join(&id).exists());
    let out = env.ok(&["system", "prune", "-f"]);
    assert!(out.contains("1 orphaned"), "{out}");
    assert_gone(&env, &id);
    assert_nothing_left(&env);
}

/// A small xorshift generator: the test prints its seed, so a failure
/// can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs berth with `args` and SIGKILLs it after `delay` (if it is still
/// running).
fn kill_after(env: &Env, args: &[&str], delay: Duration) {
    let mut child = env
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn killing_the_cli_at_random_points_leaves_nothing_after_rm_and_recovery() {
    let env = Env::new();
    let img = env.image.clone();
    let seed = std::env::var("BERTH_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("BERTH_FAULT_SEED={seed}");
    let mut rng = Rng(seed);
    // How long an uninterrupted run -d takes here: kills are spread over
    // it (and a little past it).
    let t = Instant::now();
    let probe = env.run_d(&["-p", "127.0.0.1::80"], &["sleep", "1000"]);
    let span = t.elapsed().as_millis() as u64 + 20;
    remember(&env, &probe);
    env.ok(&["rm", "-f", &probe]);

    for i in 0..50 {
        let name = format!("f{i}");
        let ms = rng.below(span);
        kill_after(
            &env,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "-p",
                "127.0.0.1::80",
                &img,
                "sleep",
                "1000",
            ],
            Duration::from_millis(ms),
        );
    }
    let ids = env.ids();
    for id in &ids {
        remember(&env, id);
    }
    // rm -f killed at random points too, then once more to the end.
    for id in ids.iter().cycle().take(50) {
        kill_after(
            &env,
            &["rm", "-f", id],
            Duration::from_millis(rng.below(60)),
        );
    }
    for id in env.ids() {
        env.ok(&["rm", "-f", &id]);
    }
    // Runs killed before their record was made left bundles only.
    for id in dir_entries(&env.sb.root().join("containers")) {
        remember(&env, &id);
    }
    env.ok(&["system", "prune", "-f"]);
    assert_nothing_left(&env);
}
