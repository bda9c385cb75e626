//! Exec, attach and port forwarding through the URLs berthd hands out,
//! with a WebSocket client as kubectl's newer versions speak it, and
//! crictl (a Go client over SPDY) when it is installed.

use std::process::Command;
use std::time::Duration;

use berth_cri::api;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::daemon::*;

type Ws = WebSocketStream<TcpStream>;

/// A WebSocket session on a streaming URL; the handshake's error when the
/// server refuses it.
async fn try_connect(
    url: &str,
    protocol: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).unwrap(),
    );
    let host = req.uri().authority().unwrap().as_str().to_owned();
    let sock = TcpStream::connect(host).await.unwrap();
    Ok(tokio_tungstenite::client_async(req, sock).await?.0)
}

async fn connect(url: &str, protocol: &str) -> Ws {
    try_connect(url, protocol)
        .await
        .expect("the WebSocket handshake")
}

/// Channel payloads until the server closes.
async fn read_all(ws: &mut Ws) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Binary(b)) if !b.is_empty() => got.push((b[0], b[1..].to_vec())),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await
    .expect("the server closes in time");
    got
}

fn channel(got: &[(u8, Vec<u8>)], ch: u8) -> String {
    let bytes: Vec<u8> = got
        .iter()
        .filter(|(c, _)| *c == ch)
        .flat_map(|(_, b)| b.clone())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn binary(ch: u8, data: &[u8]) -> Message {
    Message::Binary([&[ch][..], data].concat().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_port_forward_over_websocket() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "streams");
    let pod = run_pod(&mut rt, &pc).await;
    start(
        &mut rt,
        &pod,
        container_config(&d, "server", &["httpd", "-f", "-p", "8080", "-h", "/www"]),
        &pc,
    )
    .await;
    let mut cfg = container_config(
        &d,
        "reader",
        &["sh", "-c", "read line; echo got:$line; sleep 300"],
    );
    cfg.stdin = true;
    cfg.stdin_once = true;
    let reader = start(&mut rt, &pod, cfg, &pc).await;

    // Exec with stdin, stdout and stderr, over the v5 protocol: stdin is
    // closed with the close signal, the exit code is on the status channel.
    let url = rt
        .exec(api::ExecRequest {
            container_id: reader.clone(),
            cmd: vec!["sh".into(), "-c".into(), "cat; echo err >&2; exit 3".into()],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut ws = connect(&url, "v5.channel.k8s.io").await;
    ws.send(binary(0, b"from stdin\n")).await.unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let got = read_all(&mut ws).await;
    assert_eq!(channel(&got, 1), "from stdin\n");
    assert_eq!(channel(&got, 2), "err\n");
    let status: serde_json::Value = serde_json::from_str(&channel(&got, 3)).unwrap();
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3", "{status}");
    // A URL is good once.
    assert!(try_connect(&url, "v5.channel.k8s.io").await.is_err());

    // Attach to the container's own stdin and stdout.
    let url = rt
        .attach(api::AttachRequest {
            container_id: reader.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut ws = connect(&url, "v4.channel.k8s.io").await;
    ws.send(binary(0, b"hello\n")).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !out.contains("got:hello") {
            if let Some(Ok(Message::Binary(b))) = ws.next().await
                && b.first() == Some(&1)
            {
                out.push_str(&String::from_utf8_lossy(&b[1..]));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("attach output: {out:?}"));
    drop(ws);
    // The line is in the container's log too.
    wait_file(&d.logs.join("streams/reader.log"), "stdout F got:hello").await;

    // Port forwarding into the pod's network namespace.
    let url = rt
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![8080],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut ws = connect(&format!("{url}?port=8080"), "v4.channel.k8s.io").await;
    let mut firsts = 0;
    while firsts < 2 {
        if let Some(Ok(Message::Binary(_))) = ws.next().await {
            firsts += 1; // each channel opens with its port
        }
    }
    ws.send(binary(0, b"GET / HTTP/1.0\r\n\r\n")).await.unwrap();
    let got = read_all(&mut ws).await;
    let reply = channel(&got, 0);
    assert!(
        reply.starts_with("HTTP/1.") && reply.ends_with("hello from berth\n"),
        "{reply}"
    );
    assert_eq!(channel(&got, 1), "");

    // A stopped pod forwards nothing.
    stop_pod(&mut rt, &pod).await;
    let r = rt
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![8080],
        })
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::FailedPrecondition);
}

/// crictl, where installed (kubernetes-sigs/cri-tools, built by hand): the
/// Go gRPC and SPDY clients kubelet shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_runs_a_pod_through_berthd() {
    if !crate::support::have("crictl") {
        eprintln!("SKIPPED: crictl is not installed");
        return;
    }
    let d = Daemon::start();
    let _ = d.connect().await;
    let dir = d.env.sb.path();
    let pod_json = serde_json::json!({
        "metadata": {"name": "cli", "namespace": "berth-test", "uid": "cli-uid", "attempt": 0},
        "hostname": "cli",
        "log_directory": d.logs.join("cli").display().to_string(),
    });
    let ctr_json = serde_json::json!({
        "metadata": {"name": "app"},
        "image": {"image": d.env.image},
        "command": ["sh", "-c", "echo ready; httpd -f -p 8080 -h /www"],
        "log_path": "app.log",
    });
    std::fs::write(dir.join("pod.json"), pod_json.to_string()).unwrap();
    std::fs::write(dir.join("ctr.json"), ctr_json.to_string()).unwrap();
    let endpoint = format!("unix://{}", d.sock.display());
    let crictl = |args: &[&str]| {
        let out = Command::new("crictl")
            .args([
                "--runtime-endpoint",
                &endpoint,
                "--image-endpoint",
                &endpoint,
                "--timeout",
                "20s",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = crictl(args);
        assert_eq!(code, Some(0), "crictl {args:?}: {err}");
        out
    };
    let version = ok(&["version"]);
    assert!(version.contains("RuntimeName:  berth"), "{version}");
    assert!(ok(&["images"]).contains("busybox"));
    let pod = ok(&["runp", dir.join("pod.json").to_str().unwrap()]);
    let ctr = ok(&[
        "create",
        &pod,
        dir.join("ctr.json").to_str().unwrap(),
        dir.join("pod.json").to_str().unwrap(),
    ]);
    ok(&["start", &ctr]);
    assert!(ok(&["ps"]).contains(&ctr[..13]));
    assert_eq!(ok(&["exec", "-s", &ctr, "hostname"]), "cli");
    // Exec through the streaming server, over SPDY.
    assert_eq!(ok(&["exec", &ctr, "sh", "-c", "echo $((6*7))"]), "42");
    let (code, _, _) = crictl(&["exec", &ctr, "sh", "-c", "exit 4"]);
    assert_ne!(code, Some(0));
    wait_file(&d.logs.join("cli/app.log"), "ready").await;
    assert_eq!(ok(&["logs", &ctr]), "ready");
    ok(&["stop", &ctr]);
    ok(&["rm", &ctr]);
    ok(&["stopp", &pod]);
    ok(&["rmp", &pod]);
    assert_eq!(ok(&["pods", "-q"]), "");
    assert_eq!(d.leftovers(), Vec::<String>::new());
}
