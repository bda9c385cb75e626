//! Exec, attach and port forwarding over SPDY, driven by the test suite's
//! own SPDY client (client-go drives it in goclient.rs).

mod support;

use std::time::Duration;

use support::spdy::{self, Ev};
use support::{path_of, start};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_v4_carries_stdio_and_the_exit_code() {
    let h = start(|_| {}).await;
    let url = h.exec(&["line", "3"], false, true, true, true);
    let resp = spdy::connect(
        h.addr,
        &path_of(&url),
        &["v4.channel.k8s.io", "v3.channel.k8s.io"],
    )
    .await;
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.header("X-Stream-Protocol-Version"),
        Some("v4.channel.k8s.io")
    );
    assert_eq!(resp.header("Upgrade"), Some("SPDY/3.1"));
    assert_eq!(
        resp.header("Connection"),
        Some("Upgrade"),
        "{:?}",
        resp.headers
    );
    let mut c = resp.client.unwrap();
    // client-go's order: error, stdin, stdout, stderr.
    let err = c.open(&[("streamtype", "error")]).await;
    let stdin = c.open(&[("streamtype", "stdin")]).await;
    let stdout = c.open(&[("streamtype", "stdout")]).await;
    let stderr = c.open(&[("streamtype", "stderr")]).await;
    c.data(stdin, b"hello ", false).await;
    c.data(stdin, b"world\n", true).await;
    let tr = spdy::read_all(c, T).await;
    assert_eq!(tr.replies, vec![err, stdin, stdout, stderr]);
    assert_eq!(tr.text(stdout), "hello world\n");
    assert_eq!(tr.text(stderr), "e:hello world\n");
    let status: serde_json::Value = serde_json::from_slice(&tr.data[&err]).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    for id in [stdout, stderr, err] {
        assert!(tr.fins.contains(&id), "stream {id} half-closed: {tr:?}");
    }
    assert_eq!(tr.goaway, Some((stderr, 0)));
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_protocols_report_failures_as_text() {
    let h = start(|_| {}).await;
    for (proto, code, want) in [
        ("v3.channel.k8s.io", "0", ""),
        ("v2.channel.k8s.io", "2", "exit status 2"),
        ("channel.k8s.io", "5", "exit status 5"),
    ] {
        let url = h.exec(&["exit", code], false, false, true, false);
        let resp = spdy::connect(h.addr, &path_of(&url), &[proto]).await;
        assert_eq!(resp.header("X-Stream-Protocol-Version"), Some(proto));
        let mut c = resp.client.unwrap();
        let err = c.open(&[("streamtype", "error")]).await;
        let _out = c.open(&[("streamtype", "stdout")]).await;
        let tr = spdy::read_all(c, T).await;
        let text = tr.text(err);
        assert!(
            text.contains(want) && (want.is_empty() == text.is_empty()),
            "{proto}: {text:?}"
        );
    }
    // No X-Stream-Protocol-Version at all: a pre-negotiation (v1) client.
    let url = h.exec(&["exit", "0"], false, false, true, false);
    let resp = spdy::connect(h.addr, &path_of(&url), &[]).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("X-Stream-Protocol-Version"), None);
    drop(resp);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_protocol_is_refused_with_the_accepted_ones() {
    let h = start(|_| {}).await;
    let url = h.exec(&["exit", "0"], false, false, true, false);
    let resp = spdy::connect(h.addr, &path_of(&url), &["v9.channel.k8s.io"]).await;
    assert_eq!(resp.status, 403);
    assert!(resp.header("X-Accepted-Stream-Protocol-Versions").is_some());
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_resizes_reach_the_backend() {
    let h = start(|_| {}).await;
    let url = h.exec(&["resize", "2"], true, true, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    let err = c.open(&[("streamtype", "error")]).await;
    let _stdin = c.open(&[("streamtype", "stdin")]).await;
    let stdout = c.open(&[("streamtype", "stdout")]).await;
    let resize = c.open(&[("streamtype", "resize")]).await;
    // Split mid-object on purpose: the stream is a byte stream.
    c.data(resize, b"{\"Width\":100,\"Hei", false).await;
    c.data(resize, b"ght\":40}\n{\"Width\":120,\"Height\":50}\n", false)
        .await;
    let tr = spdy::read_all(c, T).await;
    assert_eq!(tr.text(stdout), "100x40\n120x50\n");
    assert_eq!(tr.text(err), r#"{"metadata":{},"status":"Success"}"#);
    assert_eq!(h.backend.resizes.lock().unwrap().len(), 2);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reports_success_not_an_exit_code() {
    let h = start(|_| {}).await;
    let url = h
        .server
        .request_attach(berth_streaming::AttachReq {
            container_id: "c1".into(),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .unwrap();
    assert!(url.contains("/attach/"));
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    let err = c.open(&[("streamtype", "error")]).await;
    let stdin = c.open(&[("streamtype", "stdin")]).await;
    let stdout = c.open(&[("streamtype", "stdout")]).await;
    c.data(stdin, b"hi\n", false).await;
    let tr = spdy::read_all(c, T).await;
    assert_eq!(tr.text(stdout), "hi\n");
    assert_eq!(tr.text(err), r#"{"metadata":{},"status":"Success"}"#);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failure_is_an_internal_error() {
    let h = start(|_| {}).await;
    let url = h.exec(&["fail"], false, false, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    let err = c.open(&[("streamtype", "error")]).await;
    c.open(&[("streamtype", "stdout")]).await;
    let tr = spdy::read_all(c, T).await;
    let status: serde_json::Value = serde_json::from_slice(&tr.data[&err]).unwrap();
    assert_eq!(status["reason"], "InternalError");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("no such container")
    );
    h.settled(T).await;
}

/// spdystream (client-go) neither sends nor honours WINDOW_UPDATE: output
/// past the 64 KiB window must still flow to such a client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_flows_to_a_client_without_flow_control() {
    let h = start(|_| {}).await;
    let url = h.exec(&["big", "1000000"], false, false, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    c.open(&[("streamtype", "error")]).await;
    let stdout = c.open(&[("streamtype", "stdout")]).await;
    let tr = spdy::read_all(c, T).await;
    assert_eq!(tr.data[&stdout], support::pattern(1_000_000));
    h.settled(T).await;
}

/// A client that does flow control (it sent SETTINGS) gets no more than
/// its window until it sends WINDOW_UPDATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_controlling_client_is_held_to_its_window() {
    let h = start(|_| {}).await;
    let url = h.exec(&["big", "100000"], false, false, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    c.initial_window(10_000).await;
    c.open(&[("streamtype", "error")]).await;
    let stdout = c.open(&[("streamtype", "stdout")]).await;
    // The window's worth arrives (however slow the machine), then nothing.
    let mut got = 0usize;
    while got < 10_000 {
        match c.next_within(T).await {
            Some(Ev::Data(id, d, _)) if id == stdout => got += d.len(),
            Some(_) => {}
            None => panic!("connection closed early"),
        }
    }
    loop {
        match tokio::time::timeout(Duration::from_millis(300), c.next()).await {
            Ok(Some(Ev::Data(id, d, _))) if id == stdout => got += d.len(),
            Ok(Some(_)) => {}
            Ok(None) => panic!("connection closed early"),
            Err(_) => break,
        }
    }
    assert_eq!(got, 10_000, "exactly the stream's window before any update");
    let mut tr = spdy::Transcript::default();
    let mut total = got;
    while total < 100_000 {
        c.window_update(stdout, 30_000).await;
        c.window_update(0, 30_000).await;
        loop {
            match tokio::time::timeout(Duration::from_millis(300), c.next()).await {
                Ok(Some(Ev::Data(id, d, fin))) if id == stdout => {
                    total += d.len();
                    if fin {
                        break;
                    }
                }
                Ok(Some(ev)) => tr.record(ev),
                Ok(None) => panic!("connection closed early at {total}"),
                Err(_) => break,
            }
        }
    }
    assert_eq!(total, 100_000);
    drop(c);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_echoed() {
    let h = start(|_| {}).await;
    let url = h.exec(&["line", "0"], false, true, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    c.ping(7).await;
    assert_eq!(c.next_within(T).await, Some(Ev::Ping(7)));
    drop(c);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_pairs_streams_by_request_id() {
    let h = start(|_| {}).await;
    let (port, _echo) = support::echo_server(false).await;
    let url = h.port_forward(&[]);
    let resp = spdy::connect(h.addr, &path_of(&url), &["portforward.k8s.io"]).await;
    assert_eq!(
        resp.header("X-Stream-Protocol-Version"),
        Some("portforward.k8s.io")
    );
    let mut c = resp.client.unwrap();
    let p = port.to_string();
    // Two forwarded connections, their streams interleaved.
    let e1 = c
        .open(&[("streamtype", "error"), ("port", &p), ("requestid", "1")])
        .await;
    let e2 = c
        .open(&[("streamtype", "error"), ("port", &p), ("requestid", "2")])
        .await;
    let d2 = c
        .open(&[("streamtype", "data"), ("port", &p), ("requestid", "2")])
        .await;
    let d1 = c
        .open(&[("streamtype", "data"), ("port", &p), ("requestid", "1")])
        .await;
    c.data(e1, b"", true).await;
    c.data(e2, b"", true).await;
    c.data(d1, b"one", true).await;
    c.data(d2, b"two", true).await;
    // A refused port: the error stream says so.
    let e3 = c
        .open(&[("streamtype", "error"), ("port", "1"), ("requestid", "3")])
        .await;
    let d3 = c
        .open(&[("streamtype", "data"), ("port", "1"), ("requestid", "3")])
        .await;
    let mut tr = spdy::Transcript::default();
    tokio::time::timeout(T, async {
        while ![e1, e2, d1, d2, e3, d3]
            .iter()
            .all(|id| tr.fins.contains(id))
        {
            tr.record(c.next().await.expect("frames"));
        }
    })
    .await
    .expect("all pairs done");
    assert_eq!(tr.text(d1), "echo:one");
    assert_eq!(tr.text(d2), "echo:two");
    assert_eq!(tr.text(e1), "");
    assert!(
        tr.text(e3).contains("error forwarding port 1 to pod pod1"),
        "{}",
        tr.text(e3)
    );
    drop(c);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_pair_times_out_with_a_message() {
    let h = start(|c| c.stream_creation_timeout = Duration::from_millis(200)).await;
    let url = h.port_forward(&[]);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["portforward.k8s.io"])
        .await
        .client
        .unwrap();
    let e = c
        .open(&[("streamtype", "error"), ("port", "80"), ("requestid", "9")])
        .await;
    let mut tr = spdy::Transcript::default();
    tokio::time::timeout(T, async {
        while !tr.fins.contains(&e) {
            tr.record(c.next().await.expect("frames"));
        }
    })
    .await
    .unwrap();
    assert!(tr.text(e).contains("timed out"), "{}", tr.text(e));
    // Bad headers are refused, not fatal.
    let bad = c.open(&[("streamtype", "data"), ("port", "http")]).await;
    loop {
        match c.next_within(T).await {
            Some(Ev::Rst(id, 1)) if id == bad => break,
            Some(_) => {}
            None => panic!("closed"),
        }
    }
    drop(c);
    h.settled(T).await;
}
