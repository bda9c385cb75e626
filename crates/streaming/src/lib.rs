//! berth's CRI streaming server: what the URLs returned by CRI's `Exec`,
//! `Attach` and `PortForward` calls lead to.
//!
//! # Use
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn demo(backend: Arc<dyn berth_streaming::Backend>) -> std::io::Result<()> {
//! use berth_streaming::{Config, ExecReq, Server};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:10010").await?;
//! let server = Server::new(Config::new("http://127.0.0.1:10010"));
//! let s = server.clone();
//! tokio::spawn(async move { s.serve(listener, backend).await });
//! // In the CRI Exec handler:
//! let url = server.request_exec(ExecReq {
//!     container_id: "abc".into(),
//!     cmd: vec!["sh".into()],
//!     tty: true,
//!     stdin: true,
//!     stdout: true,
//!     stderr: false,
//! });
//! # Ok(()) }
//! ```
//!
//! The server knows nothing of containers: a [`Backend`] runs commands,
//! attaches and dials ports, and sees only byte streams ([`Streams`]).
//!
//! # Design
//!
//! **Tokens** (`tokens.rs`). A `request_*` call stores the request behind
//! a random 128-bit token and returns `<base_url>/exec/<token>` (or
//! `/attach/`, `/portforward/`). A token is good for one request within
//! `token_ttl` (kubelet's minute); the request uses it up whatever
//! happens next, and an unknown, expired, used or mismatched token is a
//! 404. At most `max_tokens` wait at once.
//!
//! **HTTP** (`server.rs`). hyper 1 serves GET and POST on those paths and
//! upgrades them, to WebSocket when the request asks for it and to
//! SPDY/3.1 otherwise. SPDY protocol versions are negotiated through
//! `X-Stream-Protocol-Version` in the client's order (403 with
//! `X-Accepted-Stream-Protocol-Versions` when none fits; no header at all
//! means a v1 client), WebSocket ones through `Sec-WebSocket-Protocol`.
//! The upgraded protocol runs on the connection's own task, after hyper
//! lets go of the socket; every connection task belongs to the `serve`
//! future, so dropping it ends them all.
//!
//! **SPDY** (`spdy/`). `frame.rs` reads and writes SPDY/3 frames,
//! refusing a frame by its length before reading its body; `zlib.rs`
//! keeps the two header-compression streams (SPDY/3's dictionary, sync
//! flush per block, a bound on what a block may decompress to);
//! `session.rs` runs a connection: a reader task, a writer task that
//! batches frames, an idle watchdog, and handles for the streams the
//! client opens. spdystream, which kubectl, crictl and client-go use,
//! implements no flow control, so windows are only enforced towards a
//! peer that shows it does flow control; what a peer sends is bounded by
//! a per-connection buffer budget instead (see `session.rs`).
//!
//! **Exec and attach** (`remotecommand.rs`). The client opens one SPDY
//! stream per channel, named by its `streamType` header: `error`,
//! `stdin`, `stdout`, `stderr` (not with a tty), `resize` (a tty, v3+).
//! The server waits up to `stream_creation_timeout` for all the request
//! needs, runs the backend, sends what the backend wrote, then the
//! outcome on the error stream, then half-closes everything and says
//! GOAWAY. The outcome is text before v4 (nothing on success), a JSON
//! `metav1.Status` from v4 on; an exit code of 1..=255 is a `Failure`
//! with reason `NonZeroExitCode` and a cause `ExitCode` carrying the
//! code, which is how `kubectl exec` and `crictl exec` learn it. A
//! client that leaves cancels the backend (its future is dropped).
//!
//! **WebSocket** (`websocket.rs`). One connection, channels numbered by
//! each message's first byte: `v5.channel.k8s.io` (with the `[255, n]`
//! half-close), `v4.channel.k8s.io`, and the older `channel.k8s.io`, plus
//! the `base64.` text forms kubelet has. Port forwarding uses channels 2i
//! and 2i+1 for the ports in `?port=` (or the CRI request's), each
//! started with its port number; and `SPDY/3.1+portforward.k8s.io`
//! carries the SPDY port-forward protocol itself through the WebSocket,
//! as newer kubectl and crictl do.
//!
//! **Port forwarding over SPDY** (`portforward.rs`). Streams come in
//! pairs (`streamType` data and error, `port`, `requestID`); each pair
//! is one connection to the pod's port through the backend, half-closes
//! passed on both ways, and a failure reported on the error stream.
//!
//! **Bounds**. Frames and messages (`max_frame_size`,
//! `max_control_frame_size`), header blocks decompressed and their
//! header count, streams per connection, bytes buffered per connection,
//! connections at once, tokens, the time to send a request head, to open
//! the streams, and to stay idle: a client that exceeds one is refused or
//! disconnected, with a log line naming what it did.

mod backend;
mod config;
mod portforward;
mod remotecommand;
mod server;
mod spdy;
mod tokens;
mod websocket;

pub use backend::{
    AsyncReadWrite, AttachReq, Backend, BoxFuture, ExecReq, PortForwardReq, Streams, TermSize,
};
pub use config::Config;
pub use server::{RequestError, Server};
pub use tokens::TokenError;
