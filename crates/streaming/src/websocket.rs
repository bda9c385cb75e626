//! The WebSocket transport: one connection multiplexes numbered channels,
//! each message starting with its channel's number (`channel.k8s.io`
//! framing; the `base64.` variants send text, the number as an ASCII
//! digit and the rest base64).
//!
//! Exec and attach use channels 0 stdin, 1 stdout, 2 stderr, 3 error
//! (the outcome) and 4 resize (JSON sizes). v5 adds channel 255: a
//! message `[255, n]` half-closes channel n, which is how a client ends
//! stdin without ending the connection.
//!
//! Port forwarding uses channels 2i (data) and 2i+1 (error) for the i-th
//! port; the server starts both with the port number (two bytes, little
//! endian) so the client knows which is which. Each port is one TCP
//! connection, made when the WebSocket opens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tracing::{debug, info, warn};

use crate::backend::{Backend, PortForwardReq, TermSize};
use crate::config::Config;
use crate::remotecommand::{self, Op, ResizeParser, StatusFormat};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5's half-close signal.
const CLOSE: u8 = 255;

/// Messages queued for the writer.
const OUT_QUEUE: usize = 64;
/// Client data queued per forwarded port.
const PORT_QUEUE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Binary,
    Base64,
}

/// A negotiated WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WsProtocol {
    /// What the response names; empty when the client offered none.
    pub(crate) name: &'static str,
    pub(crate) codec: Codec,
    pub(crate) status: StatusFormat,
    /// Understands the `[255, n]` half-close signal.
    pub(crate) v5: bool,
}

const fn proto(name: &'static str, codec: Codec, status: StatusFormat, v5: bool) -> WsProtocol {
    WsProtocol {
        name,
        codec,
        status,
        v5,
    }
}

/// Exec and attach subprotocols, most preferred first. With none offered
/// kubelet speaks binary `channel.k8s.io`.
pub(crate) const EXEC_PROTOCOLS: &[WsProtocol] = &[
    proto(remotecommand::V5, Codec::Binary, StatusFormat::Json, true),
    proto(remotecommand::V4, Codec::Binary, StatusFormat::Json, false),
    proto(
        "v4.base64.channel.k8s.io",
        Codec::Base64,
        StatusFormat::Json,
        false,
    ),
    proto(remotecommand::V1, Codec::Binary, StatusFormat::Text, false),
    proto(
        "base64.channel.k8s.io",
        Codec::Base64,
        StatusFormat::Text,
        false,
    ),
];
const EXEC_DEFAULT: WsProtocol = proto("", Codec::Binary, StatusFormat::Text, false);

/// Port-forward subprotocols. kubelet offers the v4 pair; the SPDY name
/// is taken as the binary form too, for clients that reuse it.
pub(crate) const PORT_FORWARD_PROTOCOLS: &[WsProtocol] = &[
    proto(remotecommand::V4, Codec::Binary, StatusFormat::Text, false),
    proto(
        "v4.base64.channel.k8s.io",
        Codec::Base64,
        StatusFormat::Text,
        false,
    ),
    proto(
        crate::portforward::PROTOCOL,
        Codec::Binary,
        StatusFormat::Text,
        false,
    ),
];
const PORT_FORWARD_DEFAULT: WsProtocol = proto("", Codec::Binary, StatusFormat::Text, false);

/// Picks the first subprotocol the client offers that the server has
/// (the client's order, as kubelet does); `Err` lists what was offered.
pub(crate) fn negotiate(offered: &[String], exec: bool) -> Result<WsProtocol, String> {
    let (supported, default) = if exec {
        (EXEC_PROTOCOLS, EXEC_DEFAULT)
    } else {
        (PORT_FORWARD_PROTOCOLS, PORT_FORWARD_DEFAULT)
    };
    if offered.is_empty() {
        return Ok(default);
    }
    offered
        .iter()
        .find_map(|o| supported.iter().find(|p| p.name == o.as_str()).copied())
        .ok_or_else(|| {
            let names: Vec<_> = supported.iter().map(|p| p.name).collect();
            format!("unsupported WebSocket subprotocols {offered:?}; this server speaks {names:?}")
        })
}

fn ws_config(cfg: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(cfg.max_frame_size))
        .max_frame_size(Some(cfg.max_frame_size))
}

/// Last traffic either way, for the idle timeout.
#[derive(Clone)]
struct Activity {
    start: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    /// Resolves once nothing has moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let since = self
                .start
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    }
}

enum Out {
    Data(u8, Bytes),
    Close,
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;
type Source<S> = futures_util::stream::SplitStream<WebSocketStream<S>>;

async fn write_loop<S>(
    mut sink: Sink<S>,
    mut rx: mpsc::Receiver<Out>,
    codec: Codec,
    activity: Activity,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(out) = rx.recv().await {
        let msg = match out {
            Out::Data(ch, data) => encode(codec, ch, &data),
            Out::Close => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })))
                    .await;
                return;
            }
        };
        if let Err(e) = sink.send(msg).await {
            debug!("writing to the WebSocket client failed: {e}");
            return;
        }
        activity.touch();
    }
}

fn encode(codec: Codec, ch: u8, data: &[u8]) -> Message {
    match codec {
        Codec::Binary => {
            let mut m = Vec::with_capacity(data.len() + 1);
            m.push(ch);
            m.extend_from_slice(data);
            Message::Binary(m.into())
        }
        Codec::Base64 => {
            let mut s = String::with_capacity(data.len() * 4 / 3 + 5);
            s.push(char::from(b'0' + ch));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::Text(s.into())
        }
    }
}

/// A client message's channel and payload; `None` for one to skip.
fn decode(codec: Codec, msg: &Message) -> Option<Result<(u8, Vec<u8>), String>> {
    // Like kubelet, take text and binary messages alike.
    let raw: &[u8] = match msg {
        Message::Binary(b) => b,
        Message::Text(t) => t.as_bytes(),
        _ => return None,
    };
    let (&first, rest) = raw.split_first()?;
    Some(match codec {
        Codec::Binary => Ok((first, rest.to_vec())),
        Codec::Base64 => {
            if first == CLOSE {
                return Some(Ok((CLOSE, rest.to_vec())));
            }
            match base64::engine::general_purpose::STANDARD.decode(rest) {
                Ok(d) => Ok((first.wrapping_sub(b'0'), d)),
                Err(e) => Err(format!(
                    "bad base64 on channel {}: {e}",
                    first.wrapping_sub(b'0')
                )),
            }
        }
    })
}

/// Where a client message's payload goes.
trait Dispatch: Send {
    fn dispatch(
        &mut self,
        ch: u8,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// Reads client messages until the client closes, handing each payload
/// to `dispatch`; `done` flips when it returns.
async fn read_loop<S, D>(
    mut source: Source<S>,
    codec: Codec,
    activity: Activity,
    done: watch::Sender<bool>,
    mut dispatch: D,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Dispatch,
{
    while let Some(msg) = source.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                info!("WebSocket connection failed: {e}");
                break;
            }
        };
        activity.touch();
        if let Message::Close(_) = msg {
            break;
        }
        match decode(codec, &msg) {
            None => {}
            Some(Ok((ch, payload))) => dispatch.dispatch(ch, payload).await,
            Some(Err(e)) => warn!("{e}; message dropped"),
        }
    }
    done.send_replace(true);
}

async fn wait_done(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|d| *d).await;
}

/// Serves an exec or attach over an upgraded WebSocket connection.
pub(crate) async fn serve_exec<S>(
    io: S,
    protocol: WsProtocol,
    op: Op,
    backend: Arc<dyn Backend>,
    cfg: Arc<Config>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(&cfg))).await;
    let (sink, source) = ws.split();
    let activity = Activity::new();
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let mut tasks = JoinSet::new();
    tasks.spawn(write_loop(sink, out_rx, protocol.codec, activity.clone()));

    // kubelet's "connected" signal: an empty message on the lowest
    // channel the client reads.
    let first = if op.stdout() {
        STDOUT
    } else if op.stderr() {
        STDERR
    } else {
        ERROR
    };
    let _ = out.send(Out::Data(first, Bytes::new())).await;

    let (pipes, streams) = remotecommand::pipes(&op, true);
    let (done_tx, done) = watch::channel(false);
    let dispatch = ExecDispatch {
        v5: protocol.v5,
        stdin: pipes.stdin,
        resize: pipes.resize,
        parser: ResizeParser::default(),
        resize_broken: false,
    };
    tasks.spawn(read_loop(
        source,
        protocol.codec,
        activity.clone(),
        done_tx,
        dispatch,
    ));

    let mut outputs = JoinSet::new();
    for (ch, pipe) in [(STDOUT, pipes.stdout), (STDERR, pipes.stderr)] {
        if let Some(pipe) = pipe {
            let out = out.clone();
            let mut pipe = pipe;
            outputs.spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                // Ends when the backend drops its writer or the client is gone.
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    if out
                        .send(Out::Data(ch, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    }

    let done_watch = done.clone();
    let idle = cfg.idle_timeout;
    let idle_activity = activity.clone();
    let gone = async move {
        tokio::select! {
            _ = wait_done(done_watch) => "the client closed the connection".to_string(),
            _ = idle_activity.idle(idle) => format!("no messages for {idle:?}"),
        }
    };
    tokio::pin!(gone);
    let outcome = tokio::select! {
        o = remotecommand::run_backend(op.clone(), backend, streams) => o,
        why = &mut gone => {
            info!(op = ?op_name(&op), "WebSocket {why}; ending the session");
            return;
        }
    };
    tokio::select! {
        _ = async { while outputs.join_next().await.is_some() {} } => {}
        why = &mut gone => {
            info!("WebSocket {why} before all output was sent");
            return;
        }
    }
    if let Some(bytes) = remotecommand::status_bytes(&outcome, protocol.status) {
        let _ = out.send(Out::Data(ERROR, bytes.into())).await;
    }
    let _ = out.send(Out::Close).await;
    // The client answers the close; give it a moment, then drop.
    let _ = tokio::time::timeout(cfg.close_grace, wait_done(done)).await;
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Exec(_) => "exec",
        Op::Attach(_) => "attach",
    }
}

struct ExecDispatch {
    v5: bool,
    stdin: Option<DuplexStream>,
    resize: Option<mpsc::Sender<TermSize>>,
    parser: ResizeParser,
    resize_broken: bool,
}

impl Dispatch for ExecDispatch {
    async fn dispatch(&mut self, ch: u8, payload: Vec<u8>) {
        match ch {
            STDIN => {
                if let Some(p) = self.stdin.as_mut()
                    && p.write_all(&payload).await.is_err()
                {
                    // The backend stopped reading stdin; drop the rest.
                    self.stdin = None;
                }
            }
            RESIZE => {
                if let Some(to) = &self.resize
                    && !self.resize_broken
                {
                    self.resize_broken =
                        !remotecommand::feed_resize(&mut self.parser, &payload, to).await;
                }
            }
            CLOSE if self.v5 => {
                if payload.first() == Some(&STDIN) {
                    debug!("client closed stdin");
                    // Dropping the pipe is the backend's end-of-file.
                    self.stdin = None;
                }
            }
            other => debug!(
                channel = other,
                "message on a channel the client does not write, dropped"
            ),
        }
    }
}

struct PortDispatch {
    inbound: Vec<mpsc::Sender<Vec<u8>>>,
}

impl Dispatch for PortDispatch {
    async fn dispatch(&mut self, ch: u8, payload: Vec<u8>) {
        match self.inbound.get((ch / 2) as usize) {
            Some(tx) if ch.is_multiple_of(2) => {
                // A port already finished has dropped its receiver.
                let _ = tx.send(payload).await;
            }
            _ => debug!(
                channel = ch,
                "message on a channel the client does not write, dropped"
            ),
        }
    }
}

/// Serves port forwarding of `ports` over an upgraded WebSocket
/// connection.
pub(crate) async fn serve_port_forward<S>(
    io: S,
    protocol: WsProtocol,
    req: PortForwardReq,
    ports: Vec<u16>,
    backend: Arc<dyn Backend>,
    cfg: Arc<Config>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(&cfg))).await;
    let (sink, source) = ws.split();
    let activity = Activity::new();
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let mut tasks = JoinSet::new();
    tasks.spawn(write_loop(sink, out_rx, protocol.codec, activity.clone()));

    let mut inbound = Vec::with_capacity(ports.len());
    let mut forwards = JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let data_ch = (2 * i) as u8;
        let port_bytes = Bytes::copy_from_slice(&port.to_le_bytes());
        let _ = out.send(Out::Data(data_ch, port_bytes.clone())).await;
        let _ = out.send(Out::Data(data_ch + 1, port_bytes)).await;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(PORT_QUEUE);
        inbound.push(tx);
        forwards.spawn(forward_port(
            port,
            data_ch,
            rx,
            out.clone(),
            req.pod_sandbox_id.clone(),
            backend.clone(),
        ));
    }

    let (done_tx, done) = watch::channel(false);
    tasks.spawn(read_loop(
        source,
        protocol.codec,
        activity.clone(),
        done_tx,
        PortDispatch { inbound },
    ));

    tokio::select! {
        _ = async { while forwards.join_next().await.is_some() {} } => {}
        _ = wait_done(done.clone()) => {
            debug!("port-forward client closed the connection");
            return;
        }
        _ = activity.idle(cfg.idle_timeout) => {
            info!(idle = ?cfg.idle_timeout, "port-forward WebSocket idle too long, closing it");
            return;
        }
    }
    let _ = out.send(Out::Close).await;
    let _ = tokio::time::timeout(cfg.close_grace, wait_done(done)).await;
}

async fn forward_port(
    port: u16,
    data_ch: u8,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Out>,
    sandbox: String,
    backend: Arc<dyn Backend>,
) {
    let conn = match backend.port_forward(sandbox.clone(), port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {sandbox}: {e}");
            warn!("{msg}");
            let _ = out
                .send(Out::Data(data_ch + 1, msg.into_bytes().into()))
                .await;
            return;
        }
    };
    let (mut conn_r, mut conn_w) = tokio::io::split(conn);
    let up = async {
        while let Some(data) = from_client.recv().await {
            if conn_w.write_all(&data).await.is_err() {
                break;
            }
        }
        // Only a v4 connection's end ends the client's side; nothing to
        // pass on before that.
        std::future::pending::<()>().await
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match conn_r.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if out
                        .send(Out::Data(data_ch, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    info!(port, "reading from the pod's port failed: {e}");
                    return;
                }
            }
        }
    };
    // The pod closing its side ends this port, as with kubelet.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// The subprotocol of SPDY tunnelled through a WebSocket: kubectl's
/// and crictl's WebSocket port forwarding (client-go's
/// `NewSPDYOverWebsocketDialer`) sends SPDY frames as binary messages.
pub(crate) const SPDY_TUNNEL_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// A WebSocket as a byte stream: binary messages in, binary messages out.
/// Message boundaries mean nothing to what is carried.
pub(crate) struct Tunnel<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

/// Largest message the tunnel sends.
const TUNNEL_CHUNK: usize = 32 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Tunnel<S> {
    pub(crate) async fn accept(io: S, cfg: &Config) -> Self {
        Tunnel {
            ws: WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(cfg))).await,
            pending: Bytes::new(),
        }
    }
}

fn ws_io(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tunnel<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let me = &mut *self;
        while me.pending.is_empty() {
            match std::task::ready!(me.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(b))) => me.pending = b,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "text message in a SPDY tunnel",
                    )));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(ws_io(e))),
            }
        }
        let n = me.pending.len().min(buf.remaining());
        buf.put_slice(&me.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tunnel<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let me = &mut *self;
        std::task::ready!(me.ws.poll_ready_unpin(cx)).map_err(ws_io)?;
        let n = data.len().min(TUNNEL_CHUNK);
        me.ws
            .start_send_unpin(Message::Binary(Bytes::copy_from_slice(&data[..n])))
            .map_err(ws_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.ws.poll_flush_unpin(cx).map_err(ws_io)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.ws.poll_close_unpin(cx).map_err(ws_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_client_order() {
        let offer = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(&offer(&["v5.channel.k8s.io", "v4.channel.k8s.io"]), true)
                .unwrap()
                .name,
            "v5.channel.k8s.io"
        );
        assert_eq!(
            negotiate(&offer(&["v4.channel.k8s.io", "v5.channel.k8s.io"]), true)
                .unwrap()
                .name,
            "v4.channel.k8s.io"
        );
        let p = negotiate(&offer(&["nope", "base64.channel.k8s.io"]), true).unwrap();
        assert_eq!((p.codec, p.status), (Codec::Base64, StatusFormat::Text));
        assert_eq!(negotiate(&[], true).unwrap().name, "");
        assert!(negotiate(&offer(&["v5.channel.k8s.io"]), false).is_err());
        assert_eq!(
            negotiate(&offer(&["v4.channel.k8s.io"]), false)
                .unwrap()
                .codec,
            Codec::Binary
        );
    }

    #[test]
    fn base64_framing_round_trips() {
        let m = encode(Codec::Base64, 1, b"hello");
        assert_eq!(m, Message::Text("1aGVsbG8=".into()));
        assert_eq!(
            decode(Codec::Base64, &Message::Text("0aGk=".into()))
                .unwrap()
                .unwrap(),
            (0, b"hi".to_vec())
        );
        assert!(
            decode(Codec::Base64, &Message::Text("0!!!".into()))
                .unwrap()
                .is_err()
        );
        assert_eq!(
            decode(Codec::Binary, &Message::Binary(vec![4, b'{'].into()))
                .unwrap()
                .unwrap(),
            (4, b"{".to_vec())
        );
        assert!(decode(Codec::Binary, &Message::Binary(Bytes::new())).is_none());
    }
}
