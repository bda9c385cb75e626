//! The monitor with real containers, as root: through the builtin handler
//! (the runtime library in-process) and the external one (runc).

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use berth_monitor::logs::Reader;
use berth_monitor::{ExitRecord, Frame, Stream, client};
use support::{Kind, Sandbox, alive, monitors_of, wait_for, wait_monitor_gone};

const BOTH: [Kind; 2] = [Kind::Builtin, Kind::Runc];

fn exit_record(path: &Path) -> ExitRecord {
    wait_for("exit.json", 20, || path.exists());
    ExitRecord::read(path).unwrap().expect("exit.json")
}

/// `<RFC3339Nano UTC> <stream> <P|F> <msg>` with a nine-digit fraction.
fn assert_cri_line(line: &str) {
    let b = line.as_bytes();
    assert!(b.len() >= 40, "short record {line:?}");
    assert_eq!(b[29], b'Z', "{line:?}");
    assert!(
        berth_monitor::timefmt::parse(&line[..30]).is_some(),
        "{line:?}"
    );
    let rest = &line[31..];
    assert!(
        rest.starts_with("stdout F ")
            || rest.starts_with("stderr F ")
            || rest.starts_with("stdout P ")
            || rest.starts_with("stderr P "),
        "{line:?}"
    );
}

#[test]
fn output_lands_in_the_cri_log_and_the_exit_command_runs() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let bundle = sb.bundle(
            &[
                "sh",
                "-c",
                "echo out one; echo err one >&2; echo out two; printf tail",
            ],
            false,
        );
        let (mut cfg, path) = sb.config(kind, &bundle);
        let marker = sb.dir.path().join("exit-command-ran");
        cfg.exit_command = Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("cat {} > {}", cfg.exit_file.display(), marker.display()),
        ]);
        let pid = sb.launch(&cfg, &path).unwrap();
        assert!(alive(pid), "{kind:?}: container init {pid} is not alive");
        assert_eq!(
            fs::read_to_string(&cfg.pid_file).unwrap().trim(),
            pid.to_string()
        );
        let sock = fs::metadata(&cfg.attach_socket).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&sock.permissions()) & 0o777,
            0o600
        );
        sb.start(&cfg);
        let rec = exit_record(&cfg.exit_file);
        assert_eq!((rec.exit_code, rec.signal), (0, None), "{kind:?}");
        wait_monitor_gone(&path);

        let log = fs::read_to_string(&cfg.log_path).unwrap();
        for line in log.lines() {
            assert_cri_line(line);
        }
        let tails: Vec<&str> = log.lines().map(|l| &l[31..]).collect();
        let stdout: Vec<_> = tails.iter().filter(|l| l.starts_with("stdout")).collect();
        assert_eq!(
            stdout,
            [&"stdout F out one", &"stdout F out two", &"stdout F tail"],
            "{kind:?}: {log}"
        );
        assert!(tails.contains(&"stderr F err one"), "{kind:?}: {log}");
        // The exit command ran after exit.json was complete.
        let seen: ExitRecord =
            serde_json::from_slice(&fs::read(&marker).expect("the exit command ran")).unwrap();
        assert_eq!(seen, rec);
        assert!(!cfg.attach_socket.exists(), "the attach socket was left");
    }
}

#[test]
fn logs_rotate_and_read_back_in_order() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let bundle = sb.bundle(&["sh", "-c", "seq 1 40"], false);
        let (mut cfg, path) = sb.config(kind, &bundle);
        // A record of "NN" is 30 + 10 + 2 + 1 bytes: four fit in 200.
        cfg.log_max_size = 200;
        cfg.log_max_files = 2;
        sb.launch(&cfg, &path).unwrap();
        sb.start(&cfg);
        exit_record(&cfg.exit_file);
        wait_monitor_gone(&path);
        let rotated = |n: u32| berth_monitor::crilog::rotated(&cfg.log_path, n);
        assert!(rotated(2).exists(), "{kind:?}");
        assert!(
            !rotated(3).exists(),
            "{kind:?}: more files than log_max_files"
        );
        for p in [cfg.log_path.clone(), rotated(1), rotated(2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 200, "{}", p.display());
        }
        let got: Vec<String> = Reader::open(&cfg.log_path)
            .unwrap()
            .map(|r| String::from_utf8(r.unwrap().msg).unwrap())
            .collect();
        let first: u32 = got[0].parse().unwrap();
        let want: Vec<String> = (first..=40).map(|i| i.to_string()).collect();
        assert_eq!(got, want, "{kind:?}: lines missing or out of order");
        assert!(got.len() >= 9, "{kind:?}: {got:?}");
    }
}

#[test]
fn exit_codes_and_signal_deaths() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let (cfg, path) = sb.config(kind, &sb.bundle(&["sh", "-c", "exit 7"], false));
        sb.launch(&cfg, &path).unwrap();
        sb.start(&cfg);
        let rec = exit_record(&cfg.exit_file);
        assert_eq!((rec.exit_code, rec.signal), (7, None), "{kind:?}");
        assert!(berth_monitor::timefmt::parse(&rec.finished_at).is_some());

        let (cfg, path) = sb.config(kind, &sb.bundle(&["sleep", "100"], false));
        let pid = sb.launch(&cfg, &path).unwrap();
        sb.start(&cfg);
        // SAFETY: kill takes integers only.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let rec = exit_record(&cfg.exit_file);
        assert_eq!((rec.exit_code, rec.signal), (137, Some(9)), "{kind:?}");
        wait_monitor_gone(&path);
    }
}

#[test]
fn attach_gets_output_sends_stdin_and_gets_the_exit_frame() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let bundle = sb.bundle(
            &["sh", "-c", "echo ready; cat; echo bye >&2; exit 3"],
            false,
        );
        let (mut cfg, path) = sb.config(kind, &bundle);
        cfg.stdin = true;
        sb.launch(&cfg, &path).unwrap();
        let mut client = client::Client::attach(&cfg.attach_socket).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        sb.start(&cfg);
        assert_eq!(
            client.recv().unwrap(),
            Some(Frame::Stdout(b"ready\n".to_vec()))
        );
        client.send_stdin(b"hello cat\n").unwrap();
        assert_eq!(
            client.recv().unwrap(),
            Some(Frame::Stdout(b"hello cat\n".to_vec()))
        );
        client.close_stdin().unwrap();
        let f = client.collect().unwrap();
        assert_eq!(
            (f.stdout.as_slice(), f.stderr.as_slice(), f.exit_code),
            (&b""[..], &b"bye\n"[..], Some(3))
        );
        assert_eq!(client.recv().unwrap(), None, "the exit frame is the last");
        let rec = exit_record(&cfg.exit_file);
        assert_eq!(rec.exit_code, 3);
        // The log has what the clients saw.
        let recs: Vec<_> = Reader::open(&cfg.log_path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let msgs: Vec<_> = recs.iter().map(|r| (r.stream, r.msg.as_slice())).collect();
        assert_eq!(
            msgs,
            [
                (Stream::Stdout, &b"ready"[..]),
                (Stream::Stdout, b"hello cat"),
                (Stream::Stderr, b"bye")
            ]
        );
        wait_monitor_gone(&path);
    }
}

#[test]
fn a_client_after_the_exit_gets_the_exit_frame_at_once() {
    let sb = Sandbox::new();
    let (mut cfg, path) = sb.config(Kind::Builtin, &sb.bundle(&["sh", "-c", "exit 5"], false));
    // The monitor serves attach until the exit command is done.
    cfg.exit_command = Some(vec!["/bin/sleep".into(), "2".into()]);
    sb.launch(&cfg, &path).unwrap();
    sb.start(&cfg);
    exit_record(&cfg.exit_file);
    let mut client = client::Client::attach(&cfg.attach_socket).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(client.recv().unwrap(), Some(Frame::Exit(5)));
    assert_eq!(client.recv().unwrap(), None);
    wait_monitor_gone(&path);
    assert!(!cfg.attach_socket.exists());
}

#[test]
fn tty_output_and_resize() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let bundle = sb.bundle(&["sh", "-c", "read x; stty size; echo done"], true);
        let (mut cfg, path) = sb.config(kind, &bundle);
        cfg.tty = true;
        cfg.stdin = true;
        sb.launch(&cfg, &path).unwrap();
        let mut client = client::Client::attach(&cfg.attach_socket).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        client.resize(33, 111).unwrap();
        sb.start(&cfg);
        client.send_stdin(b"go\n").unwrap();
        let f = client.collect().unwrap();
        let out = String::from_utf8_lossy(&f.stdout);
        assert!(out.contains("33 111\r\n"), "{kind:?}: {out:?}");
        assert!(f.stderr.is_empty(), "a tty has one stream");
        assert_eq!(f.exit_code, Some(0));
        let recs: Vec<_> = Reader::open(&cfg.log_path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let msgs: Vec<_> = recs
            .iter()
            .map(|r| String::from_utf8_lossy(&r.msg))
            .collect();
        assert!(msgs.iter().any(|m| m == "33 111"), "{kind:?}: {msgs:?}");
        assert!(msgs.iter().any(|m| m == "done"), "{kind:?}: {msgs:?}");
        assert!(recs.iter().all(|r| r.stream == Stream::Stdout));
        wait_monitor_gone(&path);
    }
}

#[test]
fn a_bad_monitor_json_is_one_clear_error() {
    let sb = Sandbox::new();
    let (cfg, path) = sb.config(Kind::Builtin, &sb.bundle(&["true"], false));
    let bin = support::monitor_bin();
    let err = berth_monitor::start_monitor(&bin, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("monitor.json") && err.contains("cannot open"),
        "{err}"
    );
    fs::write(&path, b"{\"id\": \"x\", ").unwrap();
    let err = berth_monitor::start_monitor(&bin, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("monitor.json") && err.contains("not valid"),
        "{err}"
    );
    let mut v = serde_json::to_value(&cfg).unwrap();
    v["log_path"] = "relative.log".into();
    support::write_json(&path, &v);
    let err = berth_monitor::start_monitor(&bin, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("log_path must be an absolute path"), "{err}");
    // It exits right after its error line; give a loaded machine a moment.
    let gone = (0..250).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        monitors_of(&path).is_empty()
    });
    assert!(gone, "the monitor stayed");
    assert!(!cfg.attach_socket.exists());
}

#[test]
fn a_bad_bundle_is_one_clear_error() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let bundle = sb.bundle(&["true"], false);
        fs::remove_dir_all(bundle.join("rootfs")).unwrap();
        let (cfg, path) = sb.config(kind, &bundle);
        let err = sb.launch(&cfg, &path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("monitor: create container {}:", cfg.id)),
            "{kind:?}: {err}"
        );
        assert!(err.contains("rootfs"), "{kind:?}: {err}");
        assert!(!err.contains('\n'));
        wait_monitor_gone(&path);
        assert!(
            !cfg.attach_socket.exists(),
            "{kind:?}: the attach socket was left"
        );
        assert!(!cfg.exit_file.exists());
    }
}

#[test]
fn a_tty_mismatch_is_named() {
    let sb = Sandbox::new();
    let (mut cfg, path) = sb.config(Kind::Builtin, &sb.bundle(&["true"], false));
    cfg.tty = true;
    let err = sb.launch(&cfg, &path).unwrap_err().to_string();
    assert!(err.contains("process.terminal"), "{err}");
}

#[test]
fn killing_the_monitor_leaves_the_container_running() {
    for kind in BOTH {
        let sb = Sandbox::new();
        let (cfg, path) = sb.config(kind, &sb.bundle(&["sleep", "100"], false));
        let pid = sb.launch(&cfg, &path).unwrap();
        sb.start(&cfg);
        let monitors = monitors_of(&path);
        assert_eq!(monitors.len(), 1, "{kind:?}");
        // SAFETY: kill takes integers only.
        unsafe { libc::kill(monitors[0], libc::SIGKILL) };
        wait_monitor_gone(&path);
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(pid), "{kind:?}: the container died with its monitor");
        // The container is in its own session, not the monitor's.
        // SAFETY: getsid takes an integer only.
        assert_eq!(unsafe { libc::getsid(pid) }, pid, "{kind:?}");
    }
}

#[test]
fn a_client_that_does_not_read_is_dropped_not_waited_for() {
    let sb = Sandbox::new();
    // Far more output than socket buffers and the client backlog hold.
    let bundle = sb.bundle(
        &[
            "sh",
            "-c",
            "yes 0123456789abcdef | head -c 8000000; echo; echo end",
        ],
        false,
    );
    let (cfg, path) = sb.config(Kind::Builtin, &bundle);
    sb.launch(&cfg, &path).unwrap();
    let lazy = client::Client::attach(&cfg.attach_socket).unwrap();
    sb.start(&cfg);
    let rec = exit_record(&cfg.exit_file);
    assert_eq!(rec.exit_code, 0);
    wait_monitor_gone(&path);
    let last = Reader::open(&cfg.log_path).unwrap().tail(1).unwrap();
    assert_eq!(last[0].msg, b"end");
    drop(lazy);
}
