//! What the server asks of the engine: run a command, attach to a
//! container, open a TCP connection inside a pod. The server owns the
//! protocols; the backend only ever sees byte streams.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A boxed, sendable future, so that [`Backend`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bidirectional byte stream: what [`Backend::port_forward`] returns.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// CRI v1 `ExecRequest`, as the server keeps it behind a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecReq {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// CRI v1 `AttachRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachReq {
    pub container_id: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// CRI v1 `PortForwardRequest`. `ports` may be empty: SPDY clients name
/// the port per stream, WebSocket clients with `?port=`; the request's
/// ports are only the WebSocket fallback when the URL names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardReq {
    pub pod_sandbox_id: String,
    pub ports: Vec<u16>,
}

/// A terminal size from the client's resize stream (columns, rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// The client's streams, as the request asked for them: a stream the
/// request did not ask for is `None`.
///
/// `stdin` reaches end-of-file when the client half-closes it (SPDY FIN,
/// WebSocket v5 close signal) or goes away. Writes to `stdout`/`stderr`
/// wait while the client is slow to read and fail once it has gone.
/// `resize` is only there for a tty, and only if the negotiated protocol
/// carries resizes (SPDY v3+, any WebSocket protocol).
pub struct Streams {
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// The engine side of the streaming server.
///
/// The futures run on the connection's task: when the client goes away
/// before one completes, it is dropped, so an implementation must clean
/// up on drop (berthd: closing its connection to the container's monitor).
/// An implementation must not keep `stdout`/`stderr` alive past its
/// future: the client's streams end only when both writers are dropped.
pub trait Backend: Send + Sync + 'static {
    /// Runs `req.cmd` in the container; resolves to its exit code, or to
    /// a message saying why it could not be run. Codes 1..=255 reach the
    /// client as the exit code (`kubectl exec` and `crictl exec` exit
    /// with it); other non-zero codes are reported as an internal error.
    fn exec(&self, req: ExecReq, io: Streams) -> BoxFuture<'static, Result<i32, String>>;

    /// Attaches to the container's main process until the client or the
    /// process goes away. As with kubelet, an attach reports success or a
    /// failure message, never the process' exit code.
    fn attach(&self, req: AttachReq, io: Streams) -> BoxFuture<'static, Result<(), String>>;

    /// Connects to `port` on the pod's loopback, inside its network
    /// namespace. Called once per forwarded connection.
    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, String>>;
}
