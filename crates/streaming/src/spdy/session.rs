//! One SPDY/3.1 connection: a task reading frames, a task writing them, a
//! watchdog for idleness, and handles for the streams the client opens.
//!
//! The server never opens streams of its own; Kubernetes' protocols have
//! the client open every stream and the server answer each with
//! SYN_REPLY.
//!
//! Flow control: SPDY/3.1 gives each stream and the connection a 64 KiB
//! send window. spdystream (kubectl, client-go, crictl) implements none
//! of it: it never sends WINDOW_UPDATE and ignores ours. A server that
//! waited on windows would stall after 64 KiB of output to such a client,
//! so this one only enforces a peer's windows once the peer shows it does
//! flow control (it sends WINDOW_UPDATE or an initial window size in
//! SETTINGS). It always credits the peer with WINDOW_UPDATE as data is
//! consumed, which a flow-controlling peer needs and spdystream ignores.
//! What the peer sends is bounded another way: the bytes buffered per
//! connection (`max_buffered`); when they are used up the reader stops
//! reading the socket until the backend catches up, as spdystream does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::frame::{self, Frame, FrameLimits, Headers};
use super::zlib::{HeaderCompressor, HeaderDecompressor};

/// SPDY/3.1's initial window, per stream and per connection.
const INITIAL_WINDOW: i64 = 64 * 1024;
/// Credit the peer once this much of a window has been consumed.
const WINDOW_UPDATE_THRESHOLD: u32 = 32 * 1024;
/// Largest DATA frame this server sends.
const MAX_OUT_CHUNK: usize = 32 * 1024;
/// Frames queued for the writer task.
const OUT_QUEUE: usize = 64;
/// Chunks queued per stream for its consumer (bytes are bounded by the
/// connection's budget; this bounds the count of tiny ones).
const STREAM_QUEUE: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub(crate) limits: FrameLimits,
    pub(crate) max_header_block: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_streams: usize,
    pub(crate) max_buffered: usize,
    pub(crate) idle_timeout: Duration,
}

/// Data received on a stream, holding its share of the connection's
/// buffer budget until consumed.
struct Chunk {
    data: Bytes,
    _permit: OwnedSemaphorePermit,
}

enum Out {
    Reply {
        id: u32,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    Rst {
        id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last: u32,
        status: u32,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    /// Flush, then shut the socket's write side.
    Shutdown,
}

struct StreamState {
    /// Where the reader puts this stream's data; gone after the peer's
    /// FIN or RST.
    inbound: Option<mpsc::Sender<Chunk>>,
    send_window: i64,
    /// Bytes consumed and not yet credited back with WINDOW_UPDATE.
    unacked: u32,
    local_closed: bool,
    remote_closed: bool,
    reset: bool,
}

struct State {
    streams: HashMap<u32, StreamState>,
    last_peer_stream: u32,
    peer_flow_control: bool,
    initial_send_window: i64,
    session_send_window: i64,
    session_unacked: u32,
    closing: bool,
    close_reason: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    out: mpsc::Sender<Out>,
    /// Woken when send windows grow, a stream is reset, or the session
    /// closes.
    changed: Notify,
    closed: watch::Sender<bool>,
    budget: Arc<Semaphore>,
    start: Instant,
    /// Milliseconds since `start` of the last frame either way.
    last_activity: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        self.last_activity
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks the session over; the first reason given is the one kept.
    fn close(&self, reason: impl Into<String>) {
        {
            let mut st = self.lock();
            if st.close_reason.is_none() {
                st.close_reason = Some(reason.into());
            }
            st.closing = true;
            // Consumers see end-of-stream; writers see the session gone.
            for s in st.streams.values_mut() {
                s.inbound = None;
            }
        }
        self.closed.send_replace(true);
        self.changed.notify_waiters();
    }

    fn remove_if_done(st: &mut State, id: u32) {
        if let Some(s) = st.streams.get(&id)
            && (s.reset || (s.local_closed && s.remote_closed))
        {
            st.streams.remove(&id);
        }
    }
}

/// A stream the client opened, not yet answered.
pub(crate) struct IncomingStream {
    pub(crate) id: u32,
    pub(crate) headers: Headers,
    shared: Arc<Shared>,
    inbound: Option<mpsc::Receiver<Chunk>>,
}

impl IncomingStream {
    /// Accepts the stream (SYN_REPLY) and hands back its two halves.
    pub(crate) async fn accept(self) -> Result<(StreamReader, StreamWriter), std::io::Error> {
        self.shared
            .out
            .send(Out::Reply { id: self.id })
            .await
            .map_err(|_| gone())?;
        Ok((
            StreamReader {
                id: self.id,
                rx: self.inbound,
                shared: self.shared.clone(),
            },
            StreamWriter {
                id: self.id,
                shared: self.shared,
            },
        ))
    }

    /// Refuses the stream with RST_STREAM.
    pub(crate) fn refuse(self, status: u32) {
        reset_stream(&self.shared, self.id, status);
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the SPDY connection is closed",
    )
}

fn reset_stream(shared: &Shared, id: u32, status: u32) {
    {
        let mut st = shared.lock();
        if let Some(s) = st.streams.get_mut(&id) {
            s.reset = true;
            s.inbound = None;
        }
        Shared::remove_if_done(&mut st, id);
    }
    shared.changed.notify_waiters();
    // Best effort: if the queue is full the connection is backed up and a
    // lost RST only leaves the peer's stream open until the end.
    let _ = shared.out.try_send(Out::Rst { id, status });
}

/// The receiving half of a stream.
pub(crate) struct StreamReader {
    id: u32,
    rx: Option<mpsc::Receiver<Chunk>>,
    shared: Arc<Shared>,
}

impl StreamReader {
    /// The next data the client sent; `None` once it half-closed, reset
    /// the stream or went away.
    pub(crate) async fn read(&mut self) -> Option<Bytes> {
        let chunk = self.rx.as_mut()?.recv().await;
        let Some(chunk) = chunk else {
            self.rx = None;
            return None;
        };
        let n = chunk.data.len() as u32;
        let mut updates = Vec::new();
        {
            let mut st = self.shared.lock();
            if let Some(s) = st.streams.get_mut(&self.id) {
                s.unacked += n;
                // No credit for a stream the peer has finished sending on.
                if s.unacked >= WINDOW_UPDATE_THRESHOLD && !s.remote_closed {
                    updates.push((self.id, std::mem::take(&mut s.unacked)));
                }
            }
            st.session_unacked += n;
            if st.session_unacked >= WINDOW_UPDATE_THRESHOLD {
                updates.push((0, std::mem::take(&mut st.session_unacked)));
            }
        }
        for (id, delta) in updates {
            let _ = self.shared.out.send(Out::WindowUpdate { id, delta }).await;
        }
        Some(chunk.data)
    }
}

/// The sending half of a stream.
pub(crate) struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Sends `data`, waiting on the peer's windows if it does flow
    /// control; fails once the stream was reset or the connection closed.
    pub(crate) async fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = self.reserve(data.len()).await?;
            let chunk = Bytes::copy_from_slice(&data[..n]);
            self.shared
                .out
                .send(Out::Data {
                    id: self.id,
                    fin: false,
                    data: chunk,
                })
                .await
                .map_err(|_| gone())?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Waits until up to `want` bytes may be sent and takes them from the
    /// windows.
    async fn reserve(&self, want: usize) -> std::io::Result<usize> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if st.close_reason.is_some() {
                    return Err(gone());
                }
                let flow_control = st.peer_flow_control;
                let session_window = st.session_send_window;
                let Some(s) = st.streams.get_mut(&self.id) else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        format!("SPDY stream {} was reset", self.id),
                    ));
                };
                if s.reset || s.local_closed {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        format!("SPDY stream {} is closed", self.id),
                    ));
                }
                let mut n = want.min(MAX_OUT_CHUNK);
                if flow_control {
                    let avail = s.send_window.min(session_window);
                    if avail > 0 {
                        n = n.min(avail as usize);
                    } else {
                        n = 0;
                    }
                }
                if n > 0 {
                    s.send_window -= n as i64;
                    st.session_send_window -= n as i64;
                    return Ok(n);
                }
            }
            changed.await;
        }
    }

    /// Half-closes the stream (an empty DATA frame with FIN).
    pub(crate) async fn finish(&mut self) -> std::io::Result<()> {
        {
            let mut st = self.shared.lock();
            match st.streams.get_mut(&self.id) {
                Some(s) if !s.reset && !s.local_closed => s.local_closed = true,
                _ => return Ok(()),
            }
            Shared::remove_if_done(&mut st, self.id);
        }
        self.shared
            .out
            .send(Out::Data {
                id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await
            .map_err(|_| gone())
    }

    /// Aborts the stream with RST_STREAM.
    pub(crate) fn reset(&mut self, status: u32) {
        reset_stream(&self.shared, self.id, status);
    }
}

/// A running SPDY connection. Dropping it stops its tasks and closes the
/// socket.
pub(crate) struct Session {
    shared: Arc<Shared>,
    incoming: Option<mpsc::Receiver<IncomingStream>>,
    tasks: JoinSet<()>,
}

impl Session {
    pub(crate) fn start<IO>(io: IO, cfg: SessionConfig) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(cfg.max_streams.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                streams: HashMap::new(),
                last_peer_stream: 0,
                peer_flow_control: false,
                initial_send_window: INITIAL_WINDOW,
                session_send_window: INITIAL_WINDOW,
                session_unacked: 0,
                closing: false,
                close_reason: None,
            }),
            out: out_tx,
            changed: Notify::new(),
            closed: watch::channel(false).0,
            // A frame must always fit in the budget, or the reader would
            // wait for permits that can never exist.
            budget: Arc::new(Semaphore::new(
                cfg.max_buffered.max(cfg.limits.max_data).max(1),
            )),
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(write_loop(w, out_rx, shared.clone()));
        tasks.spawn(read_loop(
            BufReader::new(r),
            in_tx,
            shared.clone(),
            cfg.clone(),
        ));
        tasks.spawn(watchdog(shared.clone(), cfg.idle_timeout));
        Session {
            shared,
            incoming: Some(in_rx),
            tasks,
        }
    }

    /// The next stream the client opens; `None` once the connection is
    /// closed or [`Session::stop_accepting`] was called.
    pub(crate) async fn next_stream(&mut self) -> Option<IncomingStream> {
        let closed = self.closed();
        let incoming = self.incoming.as_mut()?;
        // The reader may still be blocked on the socket after the session
        // was closed (idleness): closing ends the wait too.
        tokio::select! {
            s = incoming.recv() => s,
            _ = closed => None,
        }
    }

    /// Streams opened from now on are refused.
    pub(crate) fn stop_accepting(&mut self) {
        self.incoming = None;
    }

    /// Resolves when the connection has ended (peer gone, protocol error,
    /// idleness).
    pub(crate) fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Why the connection ended, once it has.
    pub(crate) fn close_reason(&self) -> Option<String> {
        self.shared.lock().close_reason.clone()
    }

    /// Ends the connection politely: GOAWAY, then our FIN, then up to
    /// `grace` for the client to close its side.
    pub(crate) async fn shutdown(mut self, grace: Duration) {
        let last = {
            let mut st = self.shared.lock();
            st.closing = true;
            st.last_peer_stream
        };
        self.incoming = None;
        let sent = async {
            self.shared
                .out
                .send(Out::GoAway {
                    last,
                    status: frame::GOAWAY_OK,
                })
                .await
                .ok()?;
            self.shared.out.send(Out::Shutdown).await.ok()
        };
        let closed = self.closed();
        let _ = tokio::time::timeout(grace, async {
            sent.await;
            closed.await;
        })
        .await;
        self.tasks.abort_all();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Wake anything still waiting on a window so it sees the end.
        self.shared.close("the server is done with the connection");
    }
}

async fn write_loop<W: AsyncWrite>(
    w: tokio::io::WriteHalf<W>,
    mut rx: mpsc::Receiver<Out>,
    shared: Arc<Shared>,
) {
    let mut w = w;
    let mut compressor = match HeaderCompressor::new() {
        Ok(c) => c,
        Err(e) => {
            shared.close(format!("SPDY header compression unavailable: {e}"));
            return;
        }
    };
    let empty_headers = frame::encode_header_block(&[]);
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut shutdown = false;
        let mut next = Some(first);
        // Batch what is already queued into one write.
        while let Some(msg) = next.take() {
            match msg {
                Out::Reply { id } => match compressor.compress(&empty_headers) {
                    Ok(block) => frame::write_syn_reply(&mut buf, id, false, &block),
                    Err(e) => {
                        shared.close(format!("compressing a SYN_REPLY: {e}"));
                        return;
                    }
                },
                Out::Data { id, fin, data } => frame::write_data(&mut buf, id, fin, &data),
                Out::Rst { id, status } => frame::write_rst_stream(&mut buf, id, status),
                Out::Ping { id } => frame::write_ping(&mut buf, id),
                Out::GoAway { last, status } => frame::write_goaway(&mut buf, last, status),
                Out::WindowUpdate { id, delta } => frame::write_window_update(&mut buf, id, delta),
                Out::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if let Err(e) = async {
                w.write_all(&buf).await?;
                w.flush().await
            }
            .await
            {
                shared.close(format!("writing to the client: {e}"));
                return;
            }
            buf.clear();
            shared.touch();
        }
        if shutdown {
            let _ = w.shutdown().await;
            return;
        }
    }
}

async fn watchdog(shared: Arc<Shared>, idle: Duration) {
    loop {
        let last = Duration::from_millis(shared.last_activity.load(Ordering::Relaxed));
        let since = shared.start.elapsed().saturating_sub(last);
        if since >= idle {
            warn!(idle = ?idle, "SPDY connection idle too long, closing it");
            shared.close(format!("no frames for {idle:?}"));
            return;
        }
        tokio::time::sleep(idle - since).await;
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    incoming: mpsc::Sender<IncomingStream>,
    shared: Arc<Shared>,
    cfg: SessionConfig,
) {
    let mut decompressor = HeaderDecompressor::new();
    loop {
        let frame = match frame::read_frame(&mut r, cfg.limits).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                debug!("SPDY client closed the connection");
                shared.close("the client closed the connection");
                return;
            }
            Err(e) => {
                fail(&shared, format!("bad SPDY frame from the client: {e}"));
                return;
            }
        };
        shared.touch();
        if let Err(reason) = handle_frame(frame, &mut decompressor, &incoming, &shared, &cfg).await
        {
            fail(&shared, reason);
            return;
        }
    }
}

/// Ends the connection for a protocol error: GOAWAY saying so, if the
/// queue has room, then close.
fn fail(shared: &Shared, reason: String) {
    warn!("{reason}; closing the connection");
    let last = shared.lock().last_peer_stream;
    let _ = shared.out.try_send(Out::GoAway {
        last,
        status: frame::GOAWAY_PROTOCOL_ERROR,
    });
    let _ = shared.out.try_send(Out::Shutdown);
    shared.close(reason);
}

fn decode_headers(
    block: &[u8],
    decompressor: &mut HeaderDecompressor,
    cfg: &SessionConfig,
) -> Result<Result<Headers, String>, String> {
    // A block that does not decompress breaks the shared zlib context,
    // so it ends the connection; one that decompresses but does not parse
    // only spoils its stream.
    let raw = decompressor
        .decompress(block, cfg.max_header_block)
        .map_err(|e| e.to_string())?;
    Ok(frame::parse_header_block(&raw, cfg.max_headers).map_err(|e| e.to_string()))
}

async fn handle_frame(
    frame: Frame,
    decompressor: &mut HeaderDecompressor,
    incoming: &mpsc::Sender<IncomingStream>,
    shared: &Arc<Shared>,
    cfg: &SessionConfig,
) -> Result<(), String> {
    match frame {
        Frame::SynStream {
            stream_id,
            fin,
            header_block,
        } => {
            let headers = decode_headers(&header_block, decompressor, cfg)?;
            let refuse = |why: &str, status: u32| {
                warn!(stream = stream_id, "refusing SPDY stream: {why}");
                let _ = shared.out.try_send(Out::Rst {
                    id: stream_id,
                    status,
                });
            };
            {
                let mut st = shared.lock();
                if stream_id == 0 || stream_id % 2 == 0 || stream_id <= st.last_peer_stream {
                    return Err(format!(
                        "SYN_STREAM with stream id {stream_id} (client streams are odd and increasing; last was {})",
                        st.last_peer_stream
                    ));
                }
                st.last_peer_stream = stream_id;
                if st.closing {
                    drop(st);
                    refuse("the connection is closing", frame::RST_REFUSED_STREAM);
                    return Ok(());
                }
                if st.streams.len() >= cfg.max_streams {
                    drop(st);
                    refuse(
                        &format!("already {} streams open, the limit", cfg.max_streams),
                        frame::RST_REFUSED_STREAM,
                    );
                    return Ok(());
                }
            }
            let headers = match headers {
                Ok(h) => h,
                Err(e) => {
                    refuse(&e, frame::RST_PROTOCOL_ERROR);
                    return Ok(());
                }
            };
            let (tx, rx) = if fin {
                (None, None)
            } else {
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                (Some(tx), Some(rx))
            };
            let initial = {
                let mut st = shared.lock();
                let initial = st.initial_send_window;
                st.streams.insert(
                    stream_id,
                    StreamState {
                        inbound: tx,
                        send_window: initial,
                        unacked: 0,
                        local_closed: false,
                        remote_closed: fin,
                        reset: false,
                    },
                );
                initial
            };
            debug!(
                stream = stream_id,
                ?headers,
                window = initial,
                "SPDY stream opened"
            );
            let stream = IncomingStream {
                id: stream_id,
                headers,
                shared: shared.clone(),
                inbound: rx,
            };
            if let Err(e) = incoming.try_send(stream) {
                let stream = match e {
                    mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
                };
                warn!(
                    stream = stream_id,
                    "refusing SPDY stream: the server expects no more streams"
                );
                stream.refuse(frame::RST_REFUSED_STREAM);
            }
        }
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let tx = {
                let mut st = shared.lock();
                let Some(s) = st.streams.get_mut(&stream_id) else {
                    debug!(
                        stream = stream_id,
                        len = data.len(),
                        "DATA for no open stream, dropped"
                    );
                    return Ok(());
                };
                if s.remote_closed {
                    debug!(stream = stream_id, "DATA after the client's FIN, dropped");
                    return Ok(());
                }
                if fin {
                    s.remote_closed = true;
                    s.inbound.take()
                } else {
                    s.inbound.clone()
                }
            };
            if let Some(tx) = tx
                && !data.is_empty()
            {
                // Waiting here is the backpressure: nothing more is read
                // from this client until the backend has taken some.
                let permit = shared
                    .budget
                    .clone()
                    .acquire_many_owned(data.len() as u32)
                    .await
                    .map_err(|_| "buffer budget closed".to_string())?;
                let _ = tx
                    .send(Chunk {
                        data,
                        _permit: permit,
                    })
                    .await;
            }
            if fin {
                let mut st = shared.lock();
                Shared::remove_if_done(&mut st, stream_id);
            }
        }
        Frame::SynReply { stream_id, .. } => {
            // The server opens no streams, so there is nothing to reply to.
            return Err(format!(
                "SYN_REPLY for stream {stream_id}, which the server never opened"
            ));
        }
        Frame::RstStream { stream_id, status } => {
            debug!(stream = stream_id, status, "client reset a stream");
            {
                let mut st = shared.lock();
                if let Some(s) = st.streams.get_mut(&stream_id) {
                    s.reset = true;
                    s.inbound = None;
                }
                Shared::remove_if_done(&mut st, stream_id);
            }
            shared.changed.notify_waiters();
        }
        Frame::Settings { entries } => {
            let mut st = shared.lock();
            for (id, value) in entries {
                if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                    let value = i64::from(value.min(0x7fff_ffff));
                    let delta = value - st.initial_send_window;
                    st.initial_send_window = value;
                    for s in st.streams.values_mut() {
                        s.send_window += delta;
                    }
                    st.peer_flow_control = true;
                }
            }
            drop(st);
            shared.changed.notify_waiters();
        }
        Frame::Ping { id } => {
            // Odd ids are the client's own pings, to be echoed; the server
            // sends none, so an even id answers nothing.
            if id % 2 == 1 {
                let _ = shared.out.send(Out::Ping { id }).await;
            }
        }
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            debug!(status, last_good_stream_id, "client sent GOAWAY");
            shared.lock().closing = true;
        }
        Frame::Headers {
            stream_id,
            fin,
            header_block,
        } => {
            // Decoded only to keep the zlib context in step; no protocol
            // here uses trailing headers.
            let _ = decode_headers(&header_block, decompressor, cfg)?;
            if fin {
                let mut st = shared.lock();
                if let Some(s) = st.streams.get_mut(&stream_id) {
                    s.remote_closed = true;
                    s.inbound = None;
                }
                Shared::remove_if_done(&mut st, stream_id);
            }
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut st = shared.lock();
            st.peer_flow_control = true;
            if stream_id == 0 {
                st.session_send_window =
                    (st.session_send_window + i64::from(delta)).min(0x7fff_ffff);
            } else if let Some(s) = st.streams.get_mut(&stream_id) {
                s.send_window = (s.send_window + i64::from(delta)).min(0x7fff_ffff);
            }
            drop(st);
            shared.changed.notify_waiters();
        }
        Frame::Unknown { frame_type } => {
            debug!(frame_type, "ignoring a control frame of unknown type");
        }
    }
    Ok(())
}
