//! Knobs, with kubelet's defaults where kubelet has one.

use std::time::Duration;

/// How the server behaves and what it will put up with from a client.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the returned URLs start with, e.g. `http://127.0.0.1:10010`
    /// (a trailing `/` is ignored). berthd knows its listen address before
    /// anyone asks for a URL, so it is given here rather than guessed.
    pub base_url: String,
    /// How long a token stays usable (kubelet: 1 minute).
    pub token_ttl: Duration,
    /// Tokens handed out and not yet used or expired (kubelet: 1000).
    pub max_tokens: usize,
    /// How long a SPDY client has to open the streams an exec or attach
    /// needs, and a port-forward pair to get both of its streams
    /// (kubelet: 30 s).
    pub stream_creation_timeout: Duration,
    /// A connection with no frame or message either way for this long is
    /// closed (kubelet: 4 h).
    pub idle_timeout: Duration,
    /// How long to read a request's HTTP head before giving up.
    pub header_read_timeout: Duration,
    /// After the outcome is sent, how long to wait for the client to close
    /// its side before the connection is dropped.
    pub close_grace: Duration,
    /// Connections served at once; further ones are closed on accept.
    pub max_connections: usize,
    /// Streams (SPDY) a connection may have open at once; beyond it new
    /// streams are refused. Also caps the ports of a WebSocket
    /// port-forward.
    pub max_streams: usize,
    /// Largest SPDY DATA frame or WebSocket message accepted from a
    /// client. client-go writes at most 32 KiB at a time.
    pub max_frame_size: usize,
    /// Largest SPDY control frame accepted (it carries a compressed
    /// header block).
    pub max_control_frame_size: usize,
    /// Largest header block once decompressed, and most headers in it.
    pub max_header_block_size: usize,
    pub max_headers: usize,
    /// Bytes received from a client and not yet consumed by the backend,
    /// per connection; when full the server stops reading the socket.
    pub max_buffered: usize,
}

impl Config {
    /// kubelet's defaults, with the limits this crate adds.
    pub fn new(base_url: impl Into<String>) -> Config {
        Config {
            base_url: base_url.into(),
            token_ttl: Duration::from_secs(60),
            max_tokens: 1000,
            stream_creation_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(4 * 60 * 60),
            header_read_timeout: Duration::from_secs(30),
            close_grace: Duration::from_secs(5),
            max_connections: 1024,
            max_streams: 256,
            max_frame_size: 1 << 20,
            max_control_frame_size: 64 << 10,
            max_header_block_size: 64 << 10,
            max_headers: 100,
            max_buffered: 4 << 20,
        }
    }
}
