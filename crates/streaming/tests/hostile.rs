//! Tokens and clients that misbehave: every case must end with the
//! connection closed and nothing left running (connections counted by
//! the server, tasks by the runtime).

mod support;

use std::time::Duration;

use support::spdy::{self, Client};
use support::{alive_tasks, path_of, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

/// A plain HTTP request; the status code.
async fn http_status(addr: std::net::SocketAddr, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    resp.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Waits until the server has closed its side: EOF or a reset.
async fn closed_by_server(c: &mut Client) {
    tokio::time::timeout(T, async { while c.next().await.is_some() {} })
        .await
        .expect("the server closes the connection");
}

/// The runtime is back to the serve loop alone.
async fn no_tasks_left(baseline: usize) {
    let deadline = tokio::time::Instant::now() + T;
    while alive_tasks() > baseline {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} tasks alive, want {baseline}",
            alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_once() {
    let h = start(|_| {}).await;
    let url = h.exec(&["exit", "0"], false, false, true, false);
    let path = path_of(&url);
    let r = spdy::connect(h.addr, &path, &["v4.channel.k8s.io"]).await;
    assert_eq!(r.status, 101);
    drop(r);
    let r = spdy::connect(h.addr, &path, &["v4.channel.k8s.io"]).await;
    assert_eq!(r.status, 404, "a used token");
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_mismatched_and_expired_tokens_are_404() {
    let h = start(|c| c.token_ttl = Duration::from_millis(100)).await;
    assert_eq!(http_status(h.addr, "GET", "/exec/nosuchtoken").await, 404);
    assert_eq!(http_status(h.addr, "GET", "/other/x").await, 404);
    assert_eq!(http_status(h.addr, "GET", "/exec/").await, 404);
    // An exec token is no attach token (and is used up by trying).
    let url = h.exec(&["exit", "0"], false, false, true, false);
    let attach_path = path_of(&url).replace("/exec/", "/attach/");
    assert_eq!(http_status(h.addr, "GET", &attach_path).await, 404);
    assert_eq!(spdy::connect(h.addr, &path_of(&url), &[]).await.status, 404);
    let url = h.exec(&["exit", "0"], false, false, true, false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        spdy::connect(h.addr, &path_of(&url), &[]).await.status,
        404,
        "expired"
    );
    assert_eq!(http_status(h.addr, "DELETE", "/exec/x").await, 405);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_no_upgrade_is_400_and_uses_the_token() {
    let h = start(|_| {}).await;
    let url = h.exec(&["exit", "0"], false, false, true, false);
    assert_eq!(http_status(h.addr, "POST", &path_of(&url)).await, 400);
    assert_eq!(spdy::connect(h.addr, &path_of(&url), &[]).await.status, 404);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_outstanding_tokens_are_refused() {
    let h = start(|c| c.max_tokens = 3).await;
    for _ in 0..3 {
        h.exec(&["exit", "0"], false, false, true, false);
    }
    let err = h
        .server
        .request_port_forward(berth_streaming::PortForwardReq {
            pod_sandbox_id: "p".into(),
            ports: vec![],
        })
        .unwrap_err();
    assert!(err.to_string().contains("too many"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_upgrade_closes_the_connection() {
    let h = start(|_| {}).await;
    let baseline = alive_tasks();
    let url = h.exec(&["hang"], false, true, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    c.raw(b"GET / HTTP/1.1\r\nthis is not SPDY at all\r\n\r\n")
        .await;
    closed_by_server(&mut c).await;
    h.settled(T).await;
    no_tasks_left(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_the_connection() {
    let h = start(|c| {
        c.max_frame_size = 1024;
        c.max_control_frame_size = 512;
    })
    .await;
    let baseline = alive_tasks();
    // A DATA frame claiming 16 MiB: refused on its header, before the
    // server reads or allocates the body.
    let url = h.exec(&["hang"], false, true, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    c.raw(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]).await;
    closed_by_server(&mut c).await;
    // A SYN_STREAM over the control-frame limit.
    let url = h.exec(&["hang"], false, true, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    c.raw(&[0x80, 0x03, 0x00, 0x01, 0x00, 0x01, 0x86, 0xa0])
        .await;
    closed_by_server(&mut c).await;
    h.settled(T).await;
    no_tasks_left(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_bomb_closes_the_connection() {
    let h = start(|c| c.max_header_block_size = 4096).await;
    let baseline = alive_tasks();
    let url = h.exec(&["hang"], false, true, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    // 1 MiB of one value compresses to about a kilobyte.
    let value = "a".repeat(1 << 20);
    let block = Client::header_block(&[("streamtype", &value)]);
    c.open_with_id(1, &block).await;
    closed_by_server(&mut c).await;
    h.settled(T).await;
    no_tasks_left(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_opens_its_streams_is_timed_out() {
    let h = start(|c| c.stream_creation_timeout = Duration::from_millis(300)).await;
    let baseline = alive_tasks();
    let url = h.exec(&["hang"], false, true, true, true);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    // Only one of the four streams this exec needs.
    c.open(&[("streamtype", "error")]).await;
    let started = std::time::Instant::now();
    closed_by_server(&mut c).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        h.backend.calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the backend never ran"
    );
    h.settled(T).await;
    no_tasks_left(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    let h = start(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let baseline = alive_tasks();
    // Port forwarding waits for streams indefinitely; idleness ends it.
    let url = h.port_forward(&[]);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["portforward.k8s.io"])
        .await
        .client
        .unwrap();
    closed_by_server(&mut c).await;
    // And over WebSocket, an exec whose client says nothing.
    let url = h
        .exec(&["hang"], false, true, true, false)
        .replacen("http://", "ws://", 1);
    let sock = TcpStream::connect(h.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, sock).await.unwrap();
    use futures_util::StreamExt;
    tokio::time::timeout(T, async { while let Some(Ok(_)) = ws.next().await {} })
        .await
        .expect("the server closes the idle WebSocket");
    h.settled(T).await;
    no_tasks_left(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_exec_cancels_the_backend() {
    let h = start(|_| {}).await;
    let baseline = alive_tasks();
    let url = h.exec(&["hang"], false, true, true, false);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["v4.channel.k8s.io"])
        .await
        .client
        .unwrap();
    for t in ["error", "stdin", "stdout"] {
        c.open(&[("streamtype", t)]).await;
    }
    let deadline = tokio::time::Instant::now() + T;
    while h.backend.live.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(c);
    // The backend future is dropped with the connection.
    h.settled(T).await;
    no_tasks_left(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_off() {
    let h = start(|c| c.header_read_timeout = Duration::from_millis(300)).await;
    let baseline = alive_tasks();
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /exec/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // Whatever hyper answers (408 or nothing), the connection ends.
    tokio::time::timeout(T, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .ok();
    h.settled(T).await;
    no_tasks_left(baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused() {
    let h = start(|c| c.max_streams = 4).await;
    let url = h.port_forward(&[]);
    let mut c = spdy::connect(h.addr, &path_of(&url), &["portforward.k8s.io"])
        .await
        .client
        .unwrap();
    // Error streams only: pairs that never complete hold their streams.
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            c.open(&[
                ("streamtype", "error"),
                ("port", "80"),
                ("requestid", &i.to_string()),
            ])
            .await,
        );
    }
    let mut refused = Vec::new();
    let mut replied = Vec::new();
    while refused.len() + replied.len() < 6 {
        match c.next_within(T).await.expect("frames") {
            spdy::Ev::Reply(id) => replied.push(id),
            spdy::Ev::Rst(id, 3) => refused.push(id),
            _ => {}
        }
    }
    assert_eq!(
        replied.len(),
        2,
        "max_streams/2 pairs may wait: {replied:?} {refused:?}"
    );
    drop(c);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    let h = start(|c| c.max_connections = 2).await;
    let held: Vec<TcpStream> =
        futures_util::future::join_all((0..2).map(|_| TcpStream::connect(h.addr)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let deadline = tokio::time::Instant::now() + T;
    while h.server.active_connections() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut third = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(T, third.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed at once");
    drop(held);
    h.settled(T).await;
}
