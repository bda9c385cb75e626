//! Exec, attach and port forwarding over WebSocket, with tokio-tungstenite
//! as the client.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::start;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const T: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<TcpStream>;

async fn connect(
    url: &str,
    protocols: &str,
) -> Result<(Ws, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().unwrap();
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
    }
    let host = req.uri().authority().unwrap().as_str().to_owned();
    let sock = TcpStream::connect(host).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, sock).await?;
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, proto))
}

/// Channel payloads until the server closes.
async fn read_all(ws: &mut Ws) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    tokio::time::timeout(T, async {
        while let Some(msg) = ws.next().await {
            match msg.unwrap() {
                Message::Binary(b) => got.push((b[0], b[1..].to_vec())),
                Message::Close(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("the server closes in time");
    got
}

fn channel(got: &[(u8, Vec<u8>)], ch: u8) -> Vec<u8> {
    got.iter()
        .filter(|(c, _)| *c == ch)
        .flat_map(|(_, d)| d.clone())
        .collect()
}

fn binary(ch: u8, data: &[u8]) -> Message {
    let mut m = vec![ch];
    m.extend_from_slice(data);
    Message::Binary(m.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_exec_carries_stdio_and_the_exit_code() {
    let h = start(|_| {}).await;
    let url = h.exec(&["line", "7"], false, true, true, true);
    let (mut ws, proto) = connect(&url, "v4.channel.k8s.io").await.unwrap();
    assert_eq!(proto.as_deref(), Some("v4.channel.k8s.io"));
    ws.send(binary(0, b"hello ")).await.unwrap();
    ws.send(binary(0, b"there\n")).await.unwrap();
    let got = read_all(&mut ws).await;
    // kubelet's "connected" signal comes first: empty, on stdout.
    assert_eq!(got[0], (1, vec![]));
    assert_eq!(channel(&got, 1), b"hello there\n");
    assert_eq!(channel(&got, 2), b"e:hello there\n");
    let status: serde_json::Value = serde_json::from_slice(&channel(&got, 3)).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "7"})
    );
    drop(ws);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_close_signal_ends_stdin() {
    let h = start(|_| {}).await;
    let url = h.exec(&["cat", "0"], false, true, true, false);
    let (mut ws, proto) = connect(&url, "v5.channel.k8s.io, v4.channel.k8s.io")
        .await
        .unwrap();
    assert_eq!(proto.as_deref(), Some("v5.channel.k8s.io"));
    ws.send(binary(0, b"abc")).await.unwrap();
    ws.send(binary(0, b"def")).await.unwrap();
    // [255, 0]: the client is done with stdin; `cat` sees end-of-file.
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let got = read_all(&mut ws).await;
    assert_eq!(channel(&got, 1), b"abcdef");
    assert_eq!(channel(&got, 3), br#"{"metadata":{},"status":"Success"}"#);
    drop(ws);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_has_no_close_signal() {
    // Under v4, 255 is no signal: stdin stays open until the connection
    // goes, so `cat` is still running when the client leaves, and is
    // cancelled then.
    let h = start(|_| {}).await;
    let url = h.exec(&["cat", "0"], false, true, true, false);
    let (mut ws, _) = connect(&url, "v4.channel.k8s.io").await.unwrap();
    ws.send(binary(0, b"abc")).await.unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let mut out = Vec::new();
    while out != b"abc" {
        match tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Binary(b) if b[0] == 1 => out.extend_from_slice(&b[1..]),
            Message::Binary(b) => panic!("channel {} before stdin ended: {b:?}", b[0]),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err(),
        "nothing more until stdin ends"
    );
    drop(ws);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_resizes_reach_the_backend() {
    let h = start(|_| {}).await;
    let url = h.exec(&["resize", "2"], true, true, true, false);
    let (mut ws, _) = connect(&url, "v5.channel.k8s.io").await.unwrap();
    ws.send(binary(4, br#"{"Width":80,"Height":24}"#))
        .await
        .unwrap();
    ws.send(binary(4, br#"{"Width":200,"Height":60}"#))
        .await
        .unwrap();
    let got = read_all(&mut ws).await;
    assert_eq!(channel(&got, 1), b"80x24\n200x60\n");
    let sizes = h.backend.resizes.lock().unwrap().clone();
    assert_eq!(sizes.len(), 2);
    assert_eq!((sizes[1].width, sizes[1].height), (200, 60));
    drop(ws);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_protocol_sends_text() {
    let h = start(|_| {}).await;
    let url = h.exec(&["line", "2"], false, true, true, false);
    let (mut ws, proto) = connect(&url, "base64.channel.k8s.io").await.unwrap();
    assert_eq!(proto.as_deref(), Some("base64.channel.k8s.io"));
    ws.send(Message::Text("0aGkK".into())).await.unwrap(); // "hi\n"
    let mut text = Vec::new();
    tokio::time::timeout(T, async {
        while let Some(m) = ws.next().await {
            if let Message::Text(t) = m.unwrap() {
                text.push(t.to_string());
            }
        }
    })
    .await
    .unwrap();
    assert!(text.contains(&"1aGkK".to_string()), "{text:?}");
    // Pre-v4: the failure is text, base64-encoded on channel '3'.
    let err = text
        .iter()
        .find(|t| t.starts_with('3') && t.len() > 1)
        .expect("an error message");
    use base64::Engine as _;
    let msg = base64::engine::general_purpose::STANDARD
        .decode(&err[1..])
        .unwrap();
    assert!(String::from_utf8(msg).unwrap().contains("exit status 2"));
    drop(ws);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_subprotocol_is_refused() {
    let h = start(|_| {}).await;
    let url = h.exec(&["exit", "0"], false, false, true, false);
    match connect(&url, "v9.channel.k8s.io").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("{:?}", other.map(|(_, p)| p)),
    }
    // The token went with that request.
    assert!(connect(&url, "v4.channel.k8s.io").await.is_err());
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket() {
    let h = start(|_| {}).await;
    let (p1, _e1) = support::echo_server(true).await;
    let (p2, _e2) = support::echo_server(true).await;
    let url = format!("{}?port={p1}&port={p2}", h.port_forward(&[]));
    let (mut ws, proto) = connect(&url, "v4.channel.k8s.io").await.unwrap();
    assert_eq!(proto.as_deref(), Some("v4.channel.k8s.io"));
    // Each channel starts with its port, little endian.
    let mut firsts = Vec::new();
    while firsts.len() < 4 {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => firsts.push((b[0], b[1..].to_vec())),
            other => panic!("{other:?}"),
        }
    }
    firsts.sort();
    assert_eq!(
        firsts,
        vec![
            (0, p1.to_le_bytes().to_vec()),
            (1, p1.to_le_bytes().to_vec()),
            (2, p2.to_le_bytes().to_vec()),
            (3, p2.to_le_bytes().to_vec())
        ]
    );
    ws.send(binary(0, b"first")).await.unwrap();
    ws.send(binary(2, b"second")).await.unwrap();
    // The echo servers answer once and close; both ports done closes the
    // WebSocket.
    let got = read_all(&mut ws).await;
    assert_eq!(channel(&got, 0), b"echo:first");
    assert_eq!(channel(&got, 2), b"echo:second");
    assert!(channel(&got, 1).is_empty() && channel(&got, 3).is_empty());
    drop(ws);
    h.settled(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_failure_is_on_the_error_channel() {
    let h = start(|_| {}).await;
    // Nothing listens on port 1; the request's own port list is used.
    let url = h.port_forward(&[1]);
    let (mut ws, _) = connect(&url, "v4.channel.k8s.io").await.unwrap();
    let got = read_all(&mut ws).await;
    let err = String::from_utf8(channel(&got, 1)).unwrap();
    assert!(
        err.contains("error forwarding port 1 to pod pod1"),
        "{err:?}"
    );
    drop(ws);
    h.settled(T).await;
}

/// kubectl and newer crictl forward ports with SPDY tunnelled through a
/// WebSocket (client-go's SPDY-over-WebSocket dialer): subprotocol
/// `SPDY/3.1+portforward.k8s.io`, SPDY frames in binary messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_through_a_spdy_tunnel() {
    use support::spdy::{Client, Transcript};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let h = start(|_| {}).await;
    let (port, _echo) = support::echo_server(false).await;
    let url = h.port_forward(&[]);
    let (ws, proto) = connect(&url, "SPDY/3.1+portforward.k8s.io").await.unwrap();
    assert_eq!(proto.as_deref(), Some("SPDY/3.1+portforward.k8s.io"));
    // The client's end of the tunnel: bytes to binary messages and back,
    // in arbitrary pieces.
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let pump = tokio::spawn(async move {
        let (mut sink, mut source) = ws.split();
        let mut buf = vec![0u8; 7];
        loop {
            tokio::select! {
                m = source.next() => match m {
                    Some(Ok(Message::Binary(b))) => theirs.write_all(&b).await.unwrap(),
                    Some(Ok(_)) => {}
                    _ => return,
                },
                n = theirs.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink.send(Message::Binary(buf[..n].to_vec().into())).await.unwrap(),
                },
            }
        }
    });
    let (r, w) = tokio::io::split(ours);
    let mut c = Client::new(tokio::io::BufReader::new(Box::new(r)), Box::new(w));
    let p = port.to_string();
    let e = c
        .open(&[("streamtype", "error"), ("port", &p), ("requestid", "0")])
        .await;
    let d = c
        .open(&[("streamtype", "data"), ("port", &p), ("requestid", "0")])
        .await;
    c.data(e, b"", true).await;
    c.data(d, b"tunnelled", true).await;
    let mut tr = Transcript::default();
    tokio::time::timeout(T, async {
        while !(tr.fins.contains(&d) && tr.fins.contains(&e)) {
            tr.record(c.next().await.expect("frames"));
        }
    })
    .await
    .unwrap();
    assert_eq!(tr.text(d), "echo:tunnelled");
    assert_eq!(tr.text(e), "");
    drop(c);
    pump.abort();
    h.settled(T).await;
}
