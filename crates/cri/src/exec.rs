//! ExecSync: a command run to its end in a running container, its output
//! collected up to a cap (a command that writes without end must not
//! exhaust berthd's memory; kubelet caps it the same).

use std::time::Duration;

use berth_engine::model::{Container, Status as EngineStatus};
use berth_engine::{Engine, ExecRequest};
use berth_monitor::frame::Frame;
use tonic::Status;

use crate::api;

/// Per stream, as kubelet's own limit.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

pub fn sync(
    engine: &Engine,
    c: &Container,
    cmd: Vec<String>,
    timeout: Option<Duration>,
) -> Result<api::ExecSyncResponse, Status> {
    if c.state.status != EngineStatus::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {}, not running",
            c.id,
            c.state.status.name()
        )));
    }
    let req = ExecRequest {
        args: cmd,
        timeout,
        ..ExecRequest::default()
    };
    let mut session = engine
        .exec_start(&c.id, &req)
        .map_err(crate::status::from_engine)?;
    let client = session.client.as_mut().expect("not detached");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let keep = |buf: &mut Vec<u8>, d: &[u8]| {
        let room = MAX_OUTPUT.saturating_sub(buf.len());
        buf.extend_from_slice(&d[..d.len().min(room)]);
    };
    let mut timed_out = false;
    loop {
        match client.recv() {
            Ok(Some(Frame::Stdout(d))) => keep(&mut stdout, &d),
            Ok(Some(Frame::Stderr(d))) => keep(&mut stderr, &d),
            Ok(Some(Frame::TimedOut)) => timed_out = true,
            Ok(Some(Frame::Exit(code))) => {
                if timed_out {
                    return Err(Status::deadline_exceeded(format!(
                        "command timed out after {}s and was killed",
                        timeout.map(|t| t.as_secs()).unwrap_or(0)
                    )));
                }
                return Ok(api::ExecSyncResponse {
                    stdout,
                    stderr,
                    exit_code: code,
                });
            }
            Ok(Some(other)) => {
                return Err(Status::internal(format!(
                    "the monitor of {} sent {other:?}",
                    c.id
                )));
            }
            Ok(None) => {
                return Err(Status::internal(format!(
                    "the monitor of {} went away before the command ended",
                    c.id
                )));
            }
            Err(e) => return Err(Status::internal(format!("exec in {}: {e}", c.id))),
        }
    }
}
