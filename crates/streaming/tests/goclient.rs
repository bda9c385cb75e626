//! Interoperability with the real SPDY client: client-go's remotecommand
//! executor and port forwarder (spdystream underneath), as kubectl and
//! crictl use them.
//!
//! The client is a small Go program built against cri-tools' vendored
//! client-go, outside this repository. The tests find it through
//! `BERTH_STREAMING_PROBE` or at /usr/local/bin/berth-streaming-probe,
//! and print a SKIPPED line and pass without it. Its interface:
//! `exec -url U [-protocols a,b] [-tty] [-stdin] [-stdout=false]
//! [-stderr] [-resize WxH,..]` streams its stdio and exits with the
//! remote exit code (125 for any other error); `portforward -url U
//! -port P -conns N -message M` forwards a local port to P, sends
//! "M i" on N connections in turn and prints each reply.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::start;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const T: Duration = Duration::from_secs(20);

fn probe() -> Option<PathBuf> {
    let p = std::env::var_os("BERTH_STREAMING_PROBE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/berth-streaming-probe"));
    if p.is_file() {
        Some(p)
    } else {
        println!(
            "SKIPPED: no client-go probe at {} (set BERTH_STREAMING_PROBE)",
            p.display()
        );
        None
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(probe: &PathBuf, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(probe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(T, child.wait_with_output())
        .await
        .expect("the probe finishes")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_exec_gets_stdio_and_the_exit_code() {
    let Some(probe) = probe() else { return };
    let h = start(|_| {}).await;
    let url = h.exec(&["cat", "3"], false, true, true, false);
    let r = run(
        &probe,
        &["exec", "-url", &url, "-stdin"],
        b"from client-go\n",
    )
    .await;
    assert_eq!(r.code, 3, "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "from client-go\n");
    let url = h.exec(&["line", "0"], false, true, true, true);
    let r = run(&probe, &["exec", "-url", &url, "-stdin", "-stderr"], b"x\n").await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "x\n", "e:x\n")
    );
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_speaks_every_spdy_protocol_version() {
    let Some(probe) = probe() else { return };
    let h = start(|_| {}).await;
    for proto in [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ] {
        // v1 clients never half-close stdin, so read a line, not to EOF.
        let url = h.exec(&["line", "0"], false, true, true, false);
        let r = run(
            &probe,
            &["exec", "-url", &url, "-stdin", "-protocols", proto],
            b"hi\n",
        )
        .await;
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "hi\n"),
            "{proto}: {}",
            r.stderr
        );
        // Before v4 a failure is text, and client-go cannot read a code.
        let url = h.exec(&["exit", "4"], false, false, true, false);
        let r = run(&probe, &["exec", "-url", &url, "-protocols", proto], b"").await;
        match proto {
            "v4.channel.k8s.io" => assert_eq!(r.code, 4, "{}", r.stderr),
            // A v1 client returns once its output ends, racing the error
            // stream (spdystream hands streams to different workers), so
            // it may or may not see the failure; if it does, it is text.
            "channel.k8s.io" => assert!(
                r.code == 0 || r.stderr.contains("exit status 4"),
                "{}",
                r.stderr
            ),
            _ => {
                assert_eq!(r.code, 125, "{proto}: {}", r.stderr);
                assert!(r.stderr.contains("exit status 4"), "{proto}: {}", r.stderr);
            }
        }
    }
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_tty_resizes_reach_the_backend() {
    let Some(probe) = probe() else { return };
    let h = start(|_| {}).await;
    let url = h.exec(&["resize", "2"], true, true, true, false);
    let r = run(
        &probe,
        &[
            "exec",
            "-url",
            &url,
            "-tty",
            "-stdin",
            "-resize",
            "100x40,132x50",
        ],
        b"",
    )
    .await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "100x40\n132x50\n"),
        "{}",
        r.stderr
    );
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_gets_large_output_without_flow_control() {
    let Some(probe) = probe() else { return };
    let h = start(|_| {}).await;
    let url = h.exec(&["big", "3000000"], false, false, true, false);
    let out = Command::new(&probe)
        .args(["exec", "-url", &url])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(T, out).await.unwrap().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == support::pattern(3_000_000),
        "{} bytes",
        out.stdout.len()
    );
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_port_forwards_several_connections() {
    let Some(probe) = probe() else { return };
    let h = start(|_| {}).await;
    let (port, _echo) = support::echo_server(false).await;
    let url = h.port_forward(&[]);
    let r = run(
        &probe,
        &[
            "portforward",
            "-url",
            &url,
            "-port",
            &port.to_string(),
            "-conns",
            "3",
            "-message",
            "hello",
        ],
        b"",
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout, "echo:hello 0\necho:hello 1\necho:hello 2\n",
        "{}",
        r.stderr
    );
    h.settled(T).await;
}
