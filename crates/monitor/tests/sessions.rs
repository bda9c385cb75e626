//! The monitor as the container's agent, with real containers, through the
//! builtin handler and runc: exec sessions (pipes, a pty, stdin, exit
//! codes, timeouts, detached), log reopening, and the OOM kill recorded in
//! the exit record. The clients here fork nothing: they only talk to the
//! monitor's socket.

mod support;

use std::time::{Duration, Instant};

use berth_monitor::client::Client;
use berth_monitor::protocol::ExecRequest;
use berth_monitor::{ExitRecord, Frame};
use serde_json::json;
use support::{Kind, Sandbox, wait_for, wait_monitor_gone};

const BOTH: [Kind; 2] = [Kind::Builtin, Kind::Runc];

fn exec(args: &[&str]) -> ExecRequest {
    ExecRequest {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A running container (`sleep`) with its monitor; the config.
fn running(sb: &Sandbox, kind: Kind) -> berth_monitor::Config {
    let bundle = sb.bundle(&["sleep", "1000"], false);
    let (cfg, path) = sb.config(kind, &bundle);
    sb.launch(&cfg, &path).unwrap();
    sb.start(&cfg);
    cfg
}

fn exit_record(path: &std::path::Path) -> ExitRecord {
    wait_for("the exit record", 20, || path.exists());
    ExitRecord::read(path).unwrap().unwrap()
}

#[test]
fn exec_sessions_relay_stdio_and_report_the_exit_code() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let cfg = running(&sb, kind);
        // Output of both streams and the exit code; the env and cwd given.
        let mut req = exec(&[
            "sh",
            "-c",
            "echo out $GREETING $(pwd); echo err >&2; exit 7",
        ]);
        req.env = vec!["GREETING=hi".into()];
        req.cwd = Some("/tmp".into());
        let (mut c, pid) = Client::exec(&cfg.attach_socket, req).unwrap();
        assert!(pid > 0);
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let f = c.collect().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&f.stdout),
            "out hi /tmp\n",
            "{kind:?}"
        );
        assert_eq!(String::from_utf8_lossy(&f.stderr), "err\n");
        assert_eq!((f.exit_code, f.timed_out), (Some(7), false));

        // Stdin, up to its end.
        let mut req = exec(&["sh", "-c", "tr a-z A-Z"]);
        req.stdin = true;
        let (mut c, _) = Client::exec(&cfg.attach_socket, req).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.send_stdin(b"quiet please\n").unwrap();
        c.close_stdin().unwrap();
        let f = c.collect().unwrap();
        assert_eq!(f.stdout, b"QUIET PLEASE\n", "{kind:?}");
        assert_eq!(f.exit_code, Some(0));

        // Without stdin the process reads /dev/null, whatever is sent.
        let (mut c, _) = Client::exec(&cfg.attach_socket, exec(&["cat"])).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let f = c.collect().unwrap();
        assert_eq!((f.stdout.len(), f.exit_code), (0, Some(0)));

        // Exec output is the exec's: the container's log does not have it.
        let log = std::fs::read_to_string(&cfg.log_path).unwrap_or_default();
        assert!(!log.contains("out hi"), "{log}");

        // A command that cannot be run is a clear refusal.
        let e = Client::exec(&cfg.attach_socket, exec(&["/no/such/binary"]))
            .map(|(mut c, _)| c.collect().unwrap().exit_code)
            .map_err(|e| e.to_string());
        match e {
            Err(msg) => assert!(msg.contains("no/such/binary"), "{kind:?}: {msg}"),
            Ok(code) => assert_eq!(code, Some(127), "{kind:?}"),
        }
    }
}

#[test]
fn exec_with_a_tty_takes_its_size_and_input() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let cfg = running(&sb, kind);
        let mut req = exec(&["sh", "-c", "stty size; read x; echo got $x"]);
        req.tty = true;
        req.stdin = true;
        req.rows = 40;
        req.cols = 132;
        let (mut c, _) = Client::exec(&cfg.attach_socket, req).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("40 132") {
            match c.recv().unwrap() {
                Some(Frame::Stdout(d)) => seen.extend(d),
                other => panic!("{kind:?}: {other:?} before the size: {seen:?}"),
            }
        }
        c.send_stdin(b"word\n").unwrap();
        let f = c.collect().unwrap();
        let all = String::from_utf8_lossy(&f.stdout);
        assert!(all.contains("got word"), "{kind:?}: {all:?}");
        assert!(f.stderr.is_empty(), "a tty has one stream");
        assert_eq!(f.exit_code, Some(0));
    }
}

#[test]
fn an_exec_past_its_timeout_is_killed_and_says_so() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let cfg = running(&sb, kind);
        let mut req = exec(&["sleep", "100"]);
        req.timeout_ms = Some(300);
        let t = Instant::now();
        let (mut c, _) = Client::exec(&cfg.attach_socket, req).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let f = c.collect().unwrap();
        assert!(f.timed_out, "{kind:?}");
        assert_eq!(f.exit_code, Some(137));
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
}

#[test]
fn a_detached_exec_runs_on_with_no_stdio_of_the_clients() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let cfg = running(&sb, kind);
        let mut req = exec(&["sleep", "555"]);
        req.detach = true;
        let (mut c, pid) = Client::exec(&cfg.attach_socket, req).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        assert_eq!(c.recv().unwrap(), None, "the session ends at its reply");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        for fd in 0..3 {
            let t = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
            assert_eq!(t.to_string_lossy(), "/dev/null", "{kind:?} fd {fd}");
        }
    }
}

#[test]
fn exec_in_an_exited_container_is_refused() {
    let sb = Sandbox::new();
    let bundle = sb.bundle(&["true"], false);
    let (mut cfg, path) = sb.config(Kind::Builtin, &bundle);
    // The monitor stays (and answers) while its exit command runs.
    cfg.exit_command = Some(vec!["/bin/sleep".into(), "2".into()]);
    sb.launch(&cfg, &path).unwrap();
    sb.start(&cfg);
    exit_record(&cfg.exit_file);
    let e = Client::exec(&cfg.attach_socket, exec(&["true"]))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("not running"), "{e}");
    wait_monitor_gone(&path);
}

#[test]
fn the_log_is_reopened_after_a_rotator_moved_it() {
    let sb = Sandbox::new();
    let bundle = sb.bundle(
        &[
            "sh",
            "-c",
            "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after",
        ],
        false,
    );
    let (cfg, path) = sb.config(Kind::Builtin, &bundle);
    sb.launch(&cfg, &path).unwrap();
    sb.start(&cfg);
    wait_for("the first line", 20, || {
        std::fs::read_to_string(&cfg.log_path).is_ok_and(|l| l.contains("before"))
    });
    let moved = cfg.log_path.with_extension("moved");
    std::fs::rename(&cfg.log_path, &moved).unwrap();
    Client::reopen_log(&cfg.attach_socket).unwrap();
    assert!(cfg.log_path.exists(), "a new file at the log path");
    let (mut c, _) = Client::exec(&cfg.attach_socket, exec(&["sh", "-c", ": > /tmp/go"])).unwrap();
    c.collect().unwrap();
    exit_record(&cfg.exit_file);
    let new = std::fs::read_to_string(&cfg.log_path).unwrap();
    assert!(new.contains("after") && !new.contains("before"), "{new}");
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(old.contains("before") && !old.contains("after"), "{old}");
    wait_monitor_gone(&path);
}

#[test]
fn an_oom_kill_is_in_the_exit_record() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let bundle = sb.bundle_with(
            &[
                "sh",
                "-c",
                "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo $x",
            ],
            false,
            |c| c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432}),
        );
        let (cfg, path) = sb.config(kind, &bundle);
        sb.launch(&cfg, &path).unwrap();
        sb.start(&cfg);
        let rec = exit_record(&cfg.exit_file);
        assert!(rec.oom_killed, "{kind:?}: {rec:?}");
        assert_eq!(rec.exit_code, 137, "{kind:?}");
        wait_monitor_gone(&path);

        // And a plain exit is not one.
        let (cfg, path) = sb.config(kind, &sb.bundle(&["true"], false));
        sb.launch(&cfg, &path).unwrap();
        sb.start(&cfg);
        assert!(!exit_record(&cfg.exit_file).oom_killed);
        wait_monitor_gone(&path);
    }
}
