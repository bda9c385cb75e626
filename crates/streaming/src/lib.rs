//! The CRI streaming server (docs to come).

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
