//! The per-container monitor (conmon's role), and what the engine and the
//! CLI use to talk to it. The contract is docs/engine.md, section Monitor.
//!
//! - `config::Config`: monitor.json.
//! - `spawn::start_monitor`: start a monitor, get the container's pid.
//! - `client::Client`: the monitor socket's client (attach, exec, log
//!   reopen).
//! - `logs`: read CRI log files (rotated ones too), tail, since, follow.
//! - `exit::ExitRecord`: exit.json.
//! - `monitor::main`: the `berth-monitor` program itself.

pub mod client;
pub mod config;
pub mod crilog;
pub mod error;
pub mod exit;
pub mod frame;
mod fsutil;
mod handler;
pub mod health;
pub mod logs;
pub mod monitor;
mod pio;
pub mod protocol;
mod ready;
mod server;
mod session;
pub mod spawn;
pub mod timefmt;

pub use config::{Config, Handler};
pub use crilog::Stream;
pub use error::{Error, Result};
pub use exit::ExitRecord;
pub use frame::Frame;
pub use spawn::{Started, start_detached, start_monitor, start_monitor_holding};
