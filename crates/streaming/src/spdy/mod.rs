//! SPDY/3.1, as spdystream (and so kubectl, client-go and crictl) speaks
//! it: framing, header compression, and a session of client-opened
//! streams.

pub(crate) mod frame;
pub(crate) mod session;
pub(crate) mod zlib;

pub(crate) use session::{IncomingStream, Session, SessionConfig, StreamReader, StreamWriter};

use crate::config::Config;

pub(crate) fn session_config(cfg: &Config) -> SessionConfig {
    SessionConfig {
        limits: frame::FrameLimits {
            max_data: cfg.max_frame_size,
            max_control: cfg.max_control_frame_size,
        },
        max_header_block: cfg.max_header_block_size,
        max_headers: cfg.max_headers,
        max_streams: cfg.max_streams,
        max_buffered: cfg.max_buffered,
        idle_timeout: cfg.idle_timeout,
    }
}
