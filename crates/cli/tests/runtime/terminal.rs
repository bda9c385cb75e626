use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Reads from the pty master until `needle` shows up (or 5s pass).
fn read_until(master: &mut std::fs::File, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline && !seen.contains(needle) {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    seen
}

fn accept_master(listener: &UnixListener) -> std::fs::File {
    let (conn, _) = listener.accept().unwrap();
    let fd: OwnedFd = berth_runtime::recv_fd(conn.as_fd()).expect("a pty master arrives");
    std::fs::File::from(fd)
}

#[test]
fn console_socket_receives_the_pty_master() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "tty; stat -c %t,%T /dev/console; stty size; read line; echo got:$line; sleep 1000",
    ]);
    b.set("/process/terminal", json!(true));
    b.set("/process/consoleSize", json!({"height": 33, "width": 101}));
    b.save();
    let sock = sb.dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = sb.id("console");
    sb.ok(&[
        "create",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path(),
        &id,
    ]);
    let mut master = accept_master(&listener);
    sb.ok(&["start", &id]);
    let out = read_until(&mut master, "33 101");
    assert!(out.contains("/dev/pts/0"), "{out}");
    // /dev/console is the pty: major 136 (0x88).
    assert!(out.contains("88,0"), "{out}");
    master.write_all(b"hello\n").unwrap();
    let out = read_until(&mut master, "got:hello");
    assert!(out.contains("got:hello"), "{out}");
}

#[test]
fn exec_with_a_console_socket() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("execconsole");
    sb.start(&b, &id);
    let sock = sb.dir.path().join("exec.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    sb.ok(&[
        "exec",
        "-d",
        "-t",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; echo done-$((6*7))",
    ]);
    let mut master = accept_master(&listener);
    let out = read_until(&mut master, "done-42");
    assert!(
        out.contains("/dev/pts/") && out.contains("done-42"),
        "{out}"
    );
}

#[test]
fn terminal_without_a_console_socket_is_refused_for_create() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.set("/process/terminal", json!(true));
    b.save();
    let id = sb.id("noconsole");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("console-socket"));
    assert_gone(&sb, &id);
}

#[test]
fn run_in_the_foreground_proxies_a_terminal() {
    require!(
        have("script"),
        "script (util-linux) is needed for a terminal"
    );
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "tty; read line; echo got:$line; exit 4"]);
    b.set("/process/terminal", json!(true));
    b.save();
    let id = sb.id("fgtty");
    // script gives berth-runtime a terminal; the input line reaches the
    // container through the proxied pty, and its exit code comes back.
    let cmd = format!(
        "{} --root {} run --bundle {} {id}",
        bin(),
        sb.root.display(),
        b.path()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(300));
            c.stdin.take().unwrap().write_all(b"typed\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/0") && text.contains("got:typed"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(4));
    assert_gone(&sb, &id);
}
