//! Port forwarding over SPDY (`portforward.k8s.io`): the client opens a
//! pair of streams per forwarded connection, both carrying `port` and
//! `requestID` headers, one with `streamType: error` and one with
//! `streamType: data`. Each complete pair is one TCP connection to the
//! pod's port: bytes both ways on the data stream, and on failure a
//! message on the error stream. A pair that does not complete within the
//! stream creation timeout is given up with a message, as kubelet does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backend::{Backend, PortForwardReq};
use crate::config::Config;
use crate::spdy::{self, IncomingStream, Session, StreamReader, StreamWriter, frame};

pub(crate) const PROTOCOL: &str = "portforward.k8s.io";

#[derive(Default)]
struct Pair {
    port: u16,
    data: Option<(StreamReader, StreamWriter)>,
    error: Option<(StreamReader, StreamWriter)>,
}

/// Serves port forwarding over an upgraded SPDY connection until the
/// client goes away.
pub(crate) async fn serve_spdy<IO>(
    io: IO,
    req: PortForwardReq,
    backend: Arc<dyn Backend>,
    cfg: Arc<Config>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut session = Session::start(io, spdy::session_config(&cfg));
    let mut pending: HashMap<String, Pair> = HashMap::new();
    // Pairs in the order they were begun, so one timer serves them all
    // (the timeout is the same for each).
    let mut deadlines: VecDeque<(Instant, String)> = VecDeque::new();
    let mut forwards = JoinSet::new();
    let max_pending = (cfg.max_streams / 2).max(1);
    loop {
        while let Some((_, id)) = deadlines.front() {
            if pending.contains_key(id) {
                break;
            }
            deadlines.pop_front();
        }
        let next_deadline = deadlines.front().map(|(at, _)| *at);
        tokio::select! {
            stream = session.next_stream() => {
                let Some(stream) = stream else { break };
                let (id, kind, port) = match classify(&stream) {
                    Ok(c) => c,
                    Err(why) => {
                        warn!(stream = stream.id, headers = ?stream.headers, "refusing a port-forward stream: {why}");
                        stream.refuse(frame::RST_PROTOCOL_ERROR);
                        continue;
                    }
                };
                if !pending.contains_key(&id) {
                    if pending.len() >= max_pending {
                        warn!(request = id, "refusing a port-forward stream: {max_pending} pairs already waiting");
                        stream.refuse(frame::RST_REFUSED_STREAM);
                        continue;
                    }
                    deadlines.push_back((Instant::now() + cfg.stream_creation_timeout, id.clone()));
                }
                let pair = pending.entry(id.clone()).or_default();
                let slot = if kind == "data" { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    warn!(request = id, "refusing a second {kind} stream for one port-forward request");
                    stream.refuse(frame::RST_PROTOCOL_ERROR);
                    continue;
                }
                let Ok(halves) = stream.accept().await else { break };
                *slot = Some(halves);
                if kind == "data" {
                    pair.port = port;
                }
                if pair.data.is_some() && pair.error.is_some() {
                    let pair = pending.remove(&id).expect("the pair is there");
                    forwards.spawn(forward(pair, req.pod_sandbox_id.clone(), backend.clone()));
                }
            }
            _ = sleep_until(next_deadline) => {
                let (_, id) = deadlines.pop_front().expect("a deadline was due");
                if let Some(pair) = pending.remove(&id) {
                    let msg = format!("timed out waiting for the other stream of port-forward request {id}");
                    warn!("{msg}");
                    give_up(pair, &msg).await;
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
    debug!(
        "port-forward connection ended: {}",
        session.close_reason().unwrap_or_default()
    );
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The request id, stream type and port of a port-forward stream, or
/// what is wrong with its headers.
fn classify(stream: &IncomingStream) -> Result<(String, &'static str, u16), &'static str> {
    let h = &stream.headers;
    let port = h.get("port").ok_or("a port header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|_| "the port header is not a port number")?;
    if port == 0 {
        return Err("port 0 cannot be forwarded");
    }
    let kind = match h.get("streamtype") {
        Some("data") => "data",
        Some("error") => "error",
        Some(_) => return Err("streamType must be data or error"),
        None => return Err("a streamType header is required"),
    };
    let id = match h.get("requestid") {
        Some(id) if !id.is_empty() => id.to_owned(),
        // Clients before requestID paired streams by id: the error
        // stream first, its data stream next (kubelet does the same).
        _ if kind == "error" => stream.id.to_string(),
        _ => stream.id.saturating_sub(2).to_string(),
    };
    Ok((id, kind, port))
}

async fn give_up(pair: Pair, msg: &str) {
    if let Some((_, mut w)) = pair.error {
        let _ = w.write(msg.as_bytes()).await;
        let _ = w.finish().await;
    }
    if let Some((_, mut w)) = pair.data {
        w.reset(frame::RST_CANCEL);
    }
}

async fn forward(pair: Pair, sandbox: String, backend: Arc<dyn Backend>) {
    let port = pair.port;
    let (Some((mut data_r, mut data_w)), Some((mut error_r, mut error_w))) =
        (pair.data, pair.error)
    else {
        return;
    };
    // client-go half-closes the error stream at once; drain it anyway.
    let drain_error = async { while error_r.read().await.is_some() {} };
    let work = async {
        let conn = match backend.port_forward(sandbox.clone(), port).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("error forwarding port {port} to pod {sandbox}: {e}");
                warn!("{msg}");
                let _ = error_w.write(msg.as_bytes()).await;
                let _ = error_w.finish().await;
                let _ = data_w.finish().await;
                while data_r.read().await.is_some() {}
                return;
            }
        };
        let (mut conn_r, mut conn_w) = tokio::io::split(conn);
        let up = async {
            while let Some(data) = data_r.read().await {
                if conn_w.write_all(&data).await.is_err() {
                    // The pod side stopped taking data; keep draining the
                    // stream so the connection's buffer is not held.
                    while data_r.read().await.is_some() {}
                    return;
                }
            }
            // The client is done sending: pass its half-close on.
            let _ = conn_w.shutdown().await;
        };
        let down = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match conn_r.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if data_w.write(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        info!(port, "reading from the pod's port failed: {e}");
                        break;
                    }
                }
            }
            let _ = data_w.finish().await;
            // The client waits on the error stream too before it lets go.
            let _ = error_w.finish().await;
        };
        tokio::join!(up, down);
    };
    tokio::join!(work, drain_error);
}
