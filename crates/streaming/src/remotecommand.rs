//! Exec and attach: the remotecommand protocols (`channel.k8s.io` and its
//! v2..v5 successors) whatever carries them, and their SPDY transport.
//!
//! Versions, as client-go and kubelet have them:
//! - v1 `channel.k8s.io`: streams error, stdin, stdout, stderr; a failure
//!   is sent as plain text on the error stream, success as nothing.
//! - v2 `v2.channel.k8s.io`: the same streams; no stderr stream with a
//!   tty (v1 clients still opened one).
//! - v3 `v3.channel.k8s.io`: adds a resize stream for a tty, carrying a
//!   series of JSON `{"Width":..,"Height":..}` objects.
//! - v4 `v4.channel.k8s.io`: the error stream carries a JSON
//!   `metav1.Status`, which is how an exit code reaches the client.
//! - v5 `v5.channel.k8s.io` is WebSocket only (client-go's SPDY executor
//!   stops at v4): v4 plus a signal to half-close a channel.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::backend::{AttachReq, Backend, ExecReq, Streams, TermSize};
use crate::config::Config;
use crate::spdy::{self, IncomingStream, Session, StreamReader, StreamWriter, frame};

pub(crate) const V1: &str = "channel.k8s.io";
pub(crate) const V2: &str = "v2.channel.k8s.io";
pub(crate) const V3: &str = "v3.channel.k8s.io";
pub(crate) const V4: &str = "v4.channel.k8s.io";
pub(crate) const V5: &str = "v5.channel.k8s.io";

/// What the server offers over SPDY, most preferred first (kubelet's list).
pub(crate) const SPDY_PROTOCOLS: &[&str] = &[V4, V3, V2, V1];

/// Bytes the pipes between the protocol and the backend hold each way.
const PIPE_BUFFER: usize = 64 * 1024;
/// Resize events queued for the backend.
const RESIZE_QUEUE: usize = 16;
/// A resize stream's unparsed bytes may not grow past this: one event is
/// a few dozen bytes.
const MAX_RESIZE_PENDING: usize = 4096;

/// An exec or an attach, as the token stood for.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Exec(ExecReq),
    Attach(AttachReq),
}

impl Op {
    pub(crate) fn tty(&self) -> bool {
        match self {
            Op::Exec(r) => r.tty,
            Op::Attach(r) => r.tty,
        }
    }
    pub(crate) fn stdin(&self) -> bool {
        match self {
            Op::Exec(r) => r.stdin,
            Op::Attach(r) => r.stdin,
        }
    }
    pub(crate) fn stdout(&self) -> bool {
        match self {
            Op::Exec(r) => r.stdout,
            Op::Attach(r) => r.stdout,
        }
    }
    /// stderr is never separate under a tty (the request validation
    /// refuses that combination; this keeps older clients safe too).
    pub(crate) fn stderr(&self) -> bool {
        match self {
            Op::Exec(r) => r.stderr && !r.tty,
            Op::Attach(r) => r.stderr && !r.tty,
        }
    }
    fn container_id(&self) -> &str {
        match self {
            Op::Exec(r) => &r.container_id,
            Op::Attach(r) => &r.container_id,
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Op::Exec(_) => "exec",
            Op::Attach(_) => "attach",
        }
    }
}

/// How the error stream reports the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFormat {
    /// v1..v3: a failure's message as text, success as nothing.
    Text,
    /// v4, v5: a JSON metav1.Status either way.
    Json,
}

/// How an exec or attach ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exited(i32),
    Attached,
    Failed(String),
}

#[derive(Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

/// What goes on the error stream for `outcome`; `None` for nothing.
pub(crate) fn status_bytes(outcome: &Outcome, format: StatusFormat) -> Option<Vec<u8>> {
    let status = match outcome {
        Outcome::Exited(0) | Outcome::Attached => Status {
            metadata: Empty {},
            status: "Success",
            message: None,
            reason: None,
            details: None,
            code: None,
        },
        // client-go parses the code as an unsigned 8-bit number.
        Outcome::Exited(code @ 1..=255) => Status {
            metadata: Empty {},
            status: "Failure",
            message: Some(format!(
                "command terminated with non-zero exit code: exit status {code}"
            )),
            reason: Some("NonZeroExitCode"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: Some("ExitCode"),
                    message: code.to_string(),
                }],
            }),
            code: None,
        },
        Outcome::Exited(code) => internal_error(format!(
            "command terminated with exit code {code}, which has no 8-bit form"
        )),
        Outcome::Failed(msg) => internal_error(msg.clone()),
    };
    match format {
        StatusFormat::Json => Some(serde_json::to_vec(&status).expect("a Status serializes")),
        StatusFormat::Text => status.message.map(String::into_bytes),
    }
}

fn internal_error(msg: String) -> Status<'static> {
    // As apierrors.NewInternalError words it.
    Status {
        metadata: Empty {},
        status: "Failure",
        message: Some(format!("Internal error occurred: {msg}")),
        reason: Some("InternalError"),
        details: Some(Details {
            causes: vec![Cause {
                reason: None,
                message: msg,
            }],
        }),
        code: Some(500),
    }
}

#[derive(Deserialize)]
struct WireSize {
    // Go decodes field names case-insensitively; client-go sends these.
    #[serde(rename = "Width", alias = "width")]
    width: u16,
    #[serde(rename = "Height", alias = "height")]
    height: u16,
}

/// Splits a resize stream into sizes. The stream is JSON objects one
/// after another; a message boundary need not fall between them.
#[derive(Default)]
pub(crate) struct ResizeParser {
    pending: Vec<u8>,
}

impl ResizeParser {
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Vec<TermSize>, String> {
        self.pending.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut used = 0;
        let mut it = serde_json::Deserializer::from_slice(&self.pending).into_iter::<WireSize>();
        loop {
            match it.next() {
                Some(Ok(s)) => {
                    used = it.byte_offset();
                    sizes.push(TermSize {
                        width: s.width,
                        height: s.height,
                    });
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(format!("bad terminal size on the resize stream: {e}")),
                None => {
                    used = self.pending.len();
                    break;
                }
            }
        }
        self.pending.drain(..used);
        if self.pending.len() > MAX_RESIZE_PENDING {
            return Err(format!(
                "resize stream sent {} bytes that are not a terminal size",
                self.pending.len()
            ));
        }
        Ok(sizes)
    }
}

/// The protocol's ends of the pipes to the backend.
pub(crate) struct Pipes {
    /// Client stdin goes in here; dropping it is end-of-file.
    pub(crate) stdin: Option<DuplexStream>,
    /// The backend's output comes out of these.
    pub(crate) stdout: Option<DuplexStream>,
    pub(crate) stderr: Option<DuplexStream>,
    pub(crate) resize: Option<mpsc::Sender<TermSize>>,
}

/// Pipes for what `op` asked for; `resize` if the protocol carries them.
pub(crate) fn pipes(op: &Op, resize: bool) -> (Pipes, Streams) {
    let mut p = Pipes {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    let mut s = Streams {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    if op.stdin() {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        p.stdin = Some(ours);
        s.stdin = Some(Box::new(theirs));
    }
    if op.stdout() {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        p.stdout = Some(ours);
        s.stdout = Some(Box::new(theirs));
    }
    if op.stderr() {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        p.stderr = Some(ours);
        s.stderr = Some(Box::new(theirs));
    }
    if op.tty() && resize {
        let (tx, rx) = mpsc::channel(RESIZE_QUEUE);
        p.resize = Some(tx);
        s.resize = Some(rx);
    }
    (p, s)
}

/// Runs the backend for `op`.
pub(crate) async fn run_backend(op: Op, backend: Arc<dyn Backend>, streams: Streams) -> Outcome {
    let name = op.name();
    let container = op.container_id().to_owned();
    let outcome = match op {
        Op::Exec(req) => match backend.exec(req, streams).await {
            Ok(code) => Outcome::Exited(code),
            Err(e) => Outcome::Failed(format!("error executing command in container: {e}")),
        },
        Op::Attach(req) => match backend.attach(req, streams).await {
            Ok(()) => Outcome::Attached,
            Err(e) => Outcome::Failed(format!("error attaching to container: {e}")),
        },
    };
    match &outcome {
        Outcome::Failed(e) => warn!(container, "{name} failed: {e}"),
        o => debug!(container, "{name} ended: {o:?}"),
    }
    outcome
}

/// Feeds a resize parser's sizes to the backend; false on a bad stream.
pub(crate) async fn feed_resize(
    parser: &mut ResizeParser,
    data: &[u8],
    to: &mpsc::Sender<TermSize>,
) -> bool {
    match parser.push(data) {
        Ok(sizes) => {
            for size in sizes {
                // A backend that stopped listening does not stop the session.
                let _ = to.send(size).await;
            }
            true
        }
        Err(e) => {
            warn!("{e}; ignoring further resizes");
            false
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "error" => Kind::Error,
            "stdin" => Kind::Stdin,
            "stdout" => Kind::Stdout,
            "stderr" => Kind::Stderr,
            "resize" => Kind::Resize,
            _ => return None,
        })
    }
    const ALL: [Kind; 5] = [
        Kind::Error,
        Kind::Stdin,
        Kind::Stdout,
        Kind::Stderr,
        Kind::Resize,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

type Halves = (StreamReader, StreamWriter);

/// Serves an exec or attach over an upgraded SPDY connection.
pub(crate) async fn serve_spdy<IO>(
    io: IO,
    protocol: &'static str,
    op: Op,
    backend: Arc<dyn Backend>,
    cfg: Arc<Config>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut session = Session::start(io, spdy::session_config(&cfg));
    let resize = protocol == V3 || protocol == V4;
    let mut wanted = [false; 5];
    wanted[Kind::Error.index()] = true;
    wanted[Kind::Stdin.index()] = op.stdin();
    wanted[Kind::Stdout.index()] = op.stdout();
    wanted[Kind::Stderr.index()] = op.stderr();
    wanted[Kind::Resize.index()] = op.tty() && resize;
    let mut got: [Option<Halves>; 5] = Default::default();

    // The client opens one stream per channel; wait for all of them, as
    // kubelet does, but no longer than the creation timeout.
    let deadline = tokio::time::sleep(cfg.stream_creation_timeout);
    tokio::pin!(deadline);
    while (0..5).any(|i| wanted[i] && got[i].is_none()) {
        let stream = tokio::select! {
            s = session.next_stream() => s,
            _ = &mut deadline => {
                let missing: Vec<_> = Kind::ALL.iter().filter(|k| wanted[k.index()] && got[k.index()].is_none()).collect();
                warn!(op = op.name(), ?missing, "timed out waiting for the client to create streams");
                // Long enough for the GOAWAY to go out; a client this slow
                // gets no further grace.
                session.shutdown(cfg.close_grace.min(std::time::Duration::from_millis(100))).await;
                return;
            }
        };
        let Some(stream) = stream else {
            info!(
                op = op.name(),
                "connection ended before all streams were created: {}",
                session.close_reason().unwrap_or_default()
            );
            return;
        };
        if let Some((kind, halves)) = take_stream(stream, &wanted, &got).await {
            got[kind.index()] = Some(halves);
        }
    }
    session.stop_accepting();
    let [error, stdin, stdout, stderr, resize_stream] = got;
    let format = if protocol == V4 {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };

    let (pipes, streams) = pipes(&op, resize);
    let mut inputs = JoinSet::new();
    let mut outputs = JoinSet::new();
    let mut idle_writers = Vec::new();
    if let Some((mut r, w)) = stdin {
        idle_writers.push(w);
        let mut pipe = pipes.stdin;
        inputs.spawn(async move {
            // Keep reading after the backend stops taking stdin, so the
            // connection's buffer budget is not held by unread data.
            while let Some(data) = r.read().await {
                if let Some(p) = pipe.as_mut()
                    && p.write_all(&data).await.is_err()
                {
                    pipe = None;
                }
            }
            // Dropping the pipe is the backend's end-of-file.
        });
    }
    if let Some((mut r, w)) = resize_stream {
        idle_writers.push(w);
        let to = pipes.resize;
        inputs.spawn(async move {
            let mut parser = ResizeParser::default();
            let mut ok = true;
            while let Some(data) = r.read().await {
                if ok && let Some(to) = &to {
                    ok = feed_resize(&mut parser, &data, to).await;
                }
            }
        });
    }
    for (halves, pipe) in [(stdout, pipes.stdout), (stderr, pipes.stderr)] {
        if let (Some((mut r, mut w)), Some(pipe)) = (halves, pipe) {
            let mut pipe = pipe;
            outputs.spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match pipe.read(&mut buf).await {
                        // The backend dropped its writer: the output ends,
                        // and its half-close waits for the status.
                        Ok(0) | Err(_) => return Some(w),
                        Ok(n) => {
                            if w.write(&buf[..n]).await.is_err() {
                                return None;
                            }
                        }
                    }
                }
            });
            // Whatever the client sends on an output stream is dropped.
            inputs.spawn(async move { while r.read().await.is_some() {} });
        }
    }
    let Some((mut error_r, mut error_w)) = error else {
        unreachable!("the error stream is always wanted");
    };
    inputs.spawn(async move { while error_r.read().await.is_some() {} });

    let closed = session.closed();
    tokio::pin!(closed);
    let outcome = tokio::select! {
        o = run_backend(op.clone(), backend, streams) => o,
        _ = &mut closed => {
            info!(op = op.name(), "client went away: {}", session.close_reason().unwrap_or_default());
            return;
        }
    };
    // Output the backend wrote before it ended still has to reach the
    // client, and before the status: the client reads the status last.
    let drained = async {
        let mut done = Vec::new();
        while let Some(w) = outputs.join_next().await {
            done.extend(w.ok().flatten());
        }
        done
    };
    let finished_outputs = tokio::select! {
        w = drained => w,
        _ = &mut closed => return,
    };
    if let Some(bytes) = status_bytes(&outcome, format)
        && let Err(e) = error_w.write(&bytes).await
    {
        info!(op = op.name(), "could not send the outcome: {e}");
        return;
    }
    let _ = error_w.finish().await;
    // Outputs end after the status: a v1 client stops at the end of its
    // output and would miss a status sent later. (v2+ clients wait for
    // both, so the order does them no harm.)
    for mut w in finished_outputs.into_iter().chain(idle_writers) {
        let _ = w.finish().await;
    }
    session.shutdown(cfg.close_grace).await;
    drop(inputs);
}

/// Accepts `stream` if it is one of the wanted kinds not yet seen;
/// refuses it otherwise.
async fn take_stream(
    stream: IncomingStream,
    wanted: &[bool; 5],
    got: &[Option<Halves>; 5],
) -> Option<(Kind, Halves)> {
    let id = stream.id;
    let raw = stream.headers.get("streamtype").map(str::to_owned);
    let kind = raw.as_deref().and_then(Kind::parse);
    match kind {
        Some(k) if wanted[k.index()] && got[k.index()].is_none() => match stream.accept().await {
            Ok(h) => Some((k, h)),
            Err(_) => None,
        },
        Some(k) if wanted[k.index()] => {
            warn!(stream = id, "refusing a second {k:?} stream");
            stream.refuse(frame::RST_PROTOCOL_ERROR);
            None
        }
        _ => {
            warn!(stream = id, stream_type = ?raw, "refusing a stream this request does not use");
            stream.refuse(frame::RST_REFUSED_STREAM);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(o: &Outcome) -> serde_json::Value {
        serde_json::from_slice(&status_bytes(o, StatusFormat::Json).unwrap()).unwrap()
    }

    #[test]
    fn statuses_are_what_client_go_decodes() {
        assert_eq!(
            json(&Outcome::Exited(0)),
            serde_json::json!({"metadata": {}, "status": "Success"})
        );
        assert_eq!(json(&Outcome::Attached)["status"], "Success");
        let v = json(&Outcome::Exited(3));
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(
            v["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "3"})
        );
        let v = json(&Outcome::Exited(-9));
        assert_eq!(v["reason"], "InternalError");
        let v = json(&Outcome::Failed("no such container".into()));
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert!(v["message"].as_str().unwrap().contains("no such container"));
    }

    #[test]
    fn text_statuses_say_nothing_on_success() {
        assert_eq!(status_bytes(&Outcome::Exited(0), StatusFormat::Text), None);
        let msg = String::from_utf8(status_bytes(&Outcome::Exited(2), StatusFormat::Text).unwrap())
            .unwrap();
        assert!(msg.contains("exit status 2"), "{msg}");
    }

    #[test]
    fn resizes_split_anywhere() {
        let mut p = ResizeParser::default();
        let wire = b"{\"Width\":80,\"Height\":24}\n{\"Width\":100,\"Height\":50}{\"width\":1,\"height\":2}";
        let mut sizes = Vec::new();
        for part in wire.chunks(7) {
            sizes.extend(p.push(part).unwrap());
        }
        assert_eq!(
            sizes,
            vec![
                TermSize {
                    width: 80,
                    height: 24
                },
                TermSize {
                    width: 100,
                    height: 50
                },
                TermSize {
                    width: 1,
                    height: 2
                }
            ]
        );
        assert!(p.push(b"\"wide\"").is_err());
        let mut p = ResizeParser::default();
        let mut endless = vec![b'"'];
        endless.extend_from_slice(&[b'a'; 5000]);
        assert!(p.push(&endless).is_err(), "an endless string is cut off");
    }
}
