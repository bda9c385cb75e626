//! Restart policies without a daemon: the monitor's exit command starts
//! the container again after docker's backoff; `stop` ends that; the first
//! use of berth after a boot brings back `always` and `unless-stopped`.

use crate::env::*;

fn restarts(env: &Env, id: &str) -> u64 {
    env.inspect(id)["RestartCount"].as_u64().unwrap()
}

#[test]
fn on_failure_restarts_up_to_its_count_and_always_until_stopped() {
    let env = Env::new();
    let img = env.image.clone();
    let failing = env.run_d(&["--restart", "on-failure:2"], &["sh", "-c", "exit 3"]);
    wait_for("two restarts and the last exit", || {
        restarts(&env, &failing) == 2 && env.status(&failing) == "exited"
    });
    let v = env.inspect(&failing);
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    // No third start: the count is reached.
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(restarts(&env, &failing), 2);
    assert_eq!(env.status(&failing), "exited");

    // A clean exit is no failure; `always` restarts it anyway.
    let ok = env.run_d(&["--restart", "on-failure"], &["true"]);
    let always = env.run_d(&["--restart", "always"], &["sh", "-c", "sleep 0.2"]);
    wait_for("always restarting", || restarts(&env, &always) >= 2);
    assert_eq!(restarts(&env, &ok), 0);
    // The user's stop is final.
    env.ok(&["stop", "-t", "1", &always]);
    let n = restarts(&env, &always);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(env.status(&always), "exited");
    assert_eq!(restarts(&env, &always), n);
    // The user's start counts afresh.
    env.ok(&["start", &always]);
    assert_eq!(restarts(&env, &always), 0);
    env.ok(&["stop", "-t", "1", &always]);

    // restart: stopped and started again.
    let web = env.run_d(&[], &["sleep", "1000"]);
    let before = env.inspect(&web)["State"]["StartedAt"].clone();
    let pid = env.inspect(&web)["State"]["Pid"].clone();
    env.ok(&["restart", "-t", "1", &web]);
    let v = env.inspect(&web);
    assert_eq!(v["State"]["Status"], "running");
    assert_ne!(v["State"]["Pid"], pid);
    assert_ne!(v["State"]["StartedAt"], before);
    // The old monitor, leaving after the new one bound the same socket
    // path, leaves that socket alone: exec reaches the new one.
    std::thread::sleep(std::time::Duration::from_millis(500));
    env.ok(&["exec", &web, "true"]);

    for (flags, want) in [
        (&["--rm", "--restart", "always"][..], "--rm"),
        (&["--restart", "sometimes"][..], "sometimes"),
        (&["--restart", "always:3"][..], "only on-failure"),
    ] {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.extend([img.as_str(), "true"]);
        let (_, err) = env.code(125, &args);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    for id in [&failing, &ok, &always, &web] {
        env.ok(&["rm", "-f", id]);
    }
}

#[test]
fn after_a_boot_always_and_unless_stopped_come_back() {
    let env = Env::new();
    let unless = env.run_d(&["--restart", "unless-stopped"], &["sleep", "1000"]);
    let always = env.run_d(&["--restart", "always"], &["sleep", "1000"]);
    let stopped = env.run_d(&["--restart", "unless-stopped"], &["sleep", "1000"]);
    let never = env.run_d(&[], &["sleep", "1000"]);
    env.ok(&["stop", "-t", "1", &always]);
    env.ok(&["stop", "-t", "1", &stopped]);
    // A reboot, as berth sees one: monitors and processes gone without
    // their exit commands, and another boot id.
    for id in [&unless, &never] {
        let v = env.inspect(id);
        for key in ["MonitorPid", "State"] {
            let pid = if key == "State" {
                v["State"]["Pid"].as_i64().unwrap()
            } else {
                v["MonitorPid"].as_i64().unwrap()
            };
            // SAFETY: kill(2) of a process this test's berth started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    std::fs::write(env.runroot().join("booted"), "another boot").unwrap();
    wait_for("the first use after the boot", || {
        env.status(&unless) == "running"
    });
    // docker's rules: `always` comes back even after the user's stop,
    // `unless-stopped` not; no policy, no start.
    assert_eq!(env.status(&always), "running");
    assert_eq!(env.status(&stopped), "exited");
    assert_eq!(env.status(&never), "exited");
    for id in [&unless, &always, &stopped, &never] {
        env.ok(&["rm", "-f", id]);
    }
}
