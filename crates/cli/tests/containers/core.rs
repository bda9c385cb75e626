//! The engine as a daemon's core: used from many threads at once (no
//! fork of the caller anywhere), many berth processes on the same names at
//! once (records stay true), and pids that name other processes after a
//! (simulated) reboot (never joined, never signalled).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_engine::{Engine, ExecRequest};

use crate::env::*;

/// The engine of `env`, opened in this (multi-threaded) test process.
fn engine(env: &Env) -> Engine {
    let berth = PathBuf::from(crate::support::berth_bin());
    Engine::open(berth_engine::Options {
        paths: berth_base::paths::HostPaths::with_roots(env.sb.root(), env.runroot()),
        monitor: berth.with_file_name("berth-monitor"),
        berth,
        exit_command: true,
    })
    .unwrap()
}

/// This process's children, by every thread, that are of the engine's
/// making for container `id`: copies of this process (a fork of the
/// caller) or processes naming the container. Other tests in this process
/// start and stop children of their own (registries, berth commands) at
/// any moment: counting those made this test fail by chance.
fn children(id: &str) -> Vec<String> {
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            exe.as_ref() == Some(&me) || String::from_utf8_lossy(&cmd).contains(id)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn twenty_threads_exec_and_one_copies_without_forking_the_caller() {
    let env = Env::new();
    let id = env.run_d(&["--network", "none"], &["sleep", "1000"]);
    let e = engine(&env);
    // (This process has children of its own: the test's registry.)
    let before = children(&id);
    let t = Instant::now();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..20 {
            let (e, id) = (&e, &id);
            handles.push(s.spawn(move || {
                let r = ExecRequest {
                    args: vec![
                        "sh".into(),
                        "-c".into(),
                        format!("echo thread {i}; echo oops >&2; exit {}", i % 5),
                    ],
                    ..Default::default()
                };
                let f = e.exec_sync(id, &r).unwrap();
                assert_eq!(String::from_utf8_lossy(&f.stdout), format!("thread {i}\n"));
                assert_eq!(f.stderr, b"oops\n");
                assert_eq!(f.exit_code, Some(i % 5));
            }));
        }
        handles.push(s.spawn(|| {
            let mut tar = Vec::new();
            e.copy_out_tar(&id, "/etc/passwd", &mut tar).unwrap();
            let mut a = tar::Archive::new(&tar[..]);
            let mut entry = a.entries().unwrap().next().unwrap().unwrap();
            assert_eq!(entry.path().unwrap().to_str(), Some("passwd"));
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            assert!(text.starts_with("root:x:0:0"), "{text}");
        }));
        for h in handles {
            h.join().unwrap();
        }
    });
    assert!(t.elapsed() < Duration::from_secs(60));
    // A timeout holds, and the caller is told.
    let f = e
        .exec_sync(
            &id,
            &ExecRequest {
                args: vec!["sleep".into(), "30".into()],
                timeout: Some(Duration::from_millis(200)),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(f.timed_out && f.exit_code == Some(137), "{f:?}");
    // Nothing of those execs is a child of this process.
    assert_eq!(children(&id), before);
    drop(e);
    env.ok(&["rm", "-f", &id]);
    assert_gone(&env, &id);
}

#[test]
fn parallel_runs_stops_and_removals_on_the_same_names_keep_records_true() {
    let env = Env::new();
    let names = ["n0", "n1", "n2", "n3"];
    let mut children = Vec::new();
    for i in 0..20 {
        let name = names[i % names.len()];
        let mut c = env.cmd();
        let img = env.image.clone();
        match i % 4 {
            0 | 1 => c.args([
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                name,
                &img,
                "sleep",
                "1000",
            ]),
            2 => c.args(["stop", "-t", "1", name]),
            _ => c.args(["rm", "-f", name]),
        };
        children.push(
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut ps = env.cmd();
        ps.args(["ps", "-a", "--format", "json"]);
        children.push(ps.stdout(std::process::Stdio::null()).spawn().unwrap());
    }
    for mut c in children {
        c.wait().unwrap();
    }
    // Every name names at most one container, and what each record says
    // is what the kernel shows.
    let out = env.ok(&["ps", "-a", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    for n in names {
        assert!(
            list.iter().filter(|c| c["Names"][0] == n).count() <= 1,
            "{n}: {out}"
        );
    }
    for c in list {
        let id = c["Id"].as_str().unwrap();
        let pid = c["Pid"].as_i64().unwrap();
        let alive = pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists();
        match c["State"].as_str().unwrap() {
            "running" => assert!(alive, "{id} is called running: {c}"),
            "exited" | "created" => {}
            other => panic!("{id}: state {other}"),
        }
    }
    for c in list {
        env.ok(&["rm", "-f", c["Id"].as_str().unwrap()]);
    }
    assert!(env.ids().is_empty());
    let dirs: Vec<_> = std::fs::read_dir(env.sb.root().join("containers"))
        .unwrap()
        .flatten()
        .collect();
    assert!(dirs.is_empty(), "{dirs:?}");
}

/// A process that is not berth's, to hold a pid a record names.
fn bystander() -> std::process::Child {
    Command::new("sleep").arg("1000").spawn().unwrap()
}

#[test]
fn pids_that_name_other_processes_after_a_reboot_are_never_joined_or_signalled() {
    let env = Env::new();
    env.ok(&["pod", "create", "--name", "p", "--network", "none"]);
    let id = env.run_d(&["--pod", "p", "--name", "member"], &["sleep", "1000"]);
    env.ok(&["pod", "stop", "-t", "1", "p"]);
    // After a reboot the pids in the records belong to whoever has them
    // now: here an unrelated process, with its own start time.
    let mut other = bystander();
    let pid = other.id() as i32;
    let db = rusqlite::Connection::open(env.sb.root().join("engine.db")).unwrap();
    db.execute(
        "UPDATE pods SET record = json_set(record, '$.infraPid', ?1) WHERE name = 'p'",
        [pid],
    )
    .unwrap();
    db.execute(
        "UPDATE containers SET state = json_set(state, '$.monitorPid', ?1) WHERE id = ?2",
        rusqlite::params![pid, id],
    )
    .unwrap();
    drop(db);
    // Starting the pod's container makes a new infra process rather than
    // joining the bystander's namespaces; stopping and removing signal
    // nothing of it.
    env.ok(&["start", "member"]);
    let infra = env.ok(&["pod", "inspect", "p"]);
    assert!(!infra.contains(&format!("\"InfraPid\": {pid}")), "{infra}");
    let uts = |p: i64| std::fs::read_link(format!("/proc/{p}/ns/uts")).unwrap();
    let member_pid = env.inspect("member")["State"]["Pid"].as_i64().unwrap();
    assert_ne!(uts(member_pid), uts(pid as i64), "joined the bystander");
    env.ok(&["pod", "stop", "-t", "1", "p"]);
    env.ok(&["pod", "rm", "-f", "p"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        other.try_wait().unwrap().is_none(),
        "the bystander was signalled"
    );
    let _ = other.kill();
    let _ = other.wait();
    assert_gone(&env, &id);
}

#[test]
fn events_are_logged_by_every_process_and_followed() {
    let env = Env::new();
    // From the moment before it starts, so a follower slow to start (a
    // loaded machine) reads what it missed from the log before it follows.
    let since = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let mut follower = env
        .cmd()
        .args(["events", "--format", "json", "--filter", "container=ev"])
        .args(["--since", &since])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = {
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = follower.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    std::thread::sleep(Duration::from_millis(300));
    let id = env.run_d(&["--name", "ev", "--network", "none"], &["sleep", "1000"]);
    env.ok(&["exec", "ev", "true"]);
    env.ok(&["stop", "-t", "1", "ev"]);
    env.ok(&["rm", "ev"]);
    env.ok(&[
        "run",
        "--rm",
        "--name",
        "other",
        "--network",
        "none",
        &env.image,
        "true",
    ]);
    // The history, read back with a window, ends by itself.
    let past = env.ok(&[
        "events",
        "--since",
        "1m",
        "--until",
        "0s",
        "--filter",
        "event=die",
    ]);
    assert!(past.lines().count() >= 2, "{past}");
    assert!(
        past.contains("container die") && past.contains("exitCode="),
        "{past}"
    );

    // The follower prints each event as it comes: read until the last one
    // (or a deadline), then stop it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events: Vec<serde_json::Value> = Vec::new();
    while events.last().is_none_or(|e| e["Action"] != "destroy") {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        events.push(serde_json::from_str(&line).unwrap());
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["Action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["create", "start", "exec_start", "stop", "die", "destroy"],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["Actor"]["ID"] == id.as_str()));
    let die = &events[4];
    // PID 1 ignores SIGTERM: the stop ended with SIGKILL.
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "137");
    assert_eq!(die["Actor"]["Attributes"]["name"], "ev");
}
