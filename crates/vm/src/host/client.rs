//! A berth-vm command talking to a container's keeper over its control
//! socket: one connection is one channel to the agent.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::proto::{Frame, Kind, Msg, read_frame, write_frame};

pub struct Client {
    pub stream: UnixStream,
}

impl Client {
    /// Connects to the keeper; `timeout` bounds every later read and write.
    pub fn connect(ctl: &Path, timeout: Duration) -> Result<Client> {
        let short = berth_base::sockpath::short(ctl)?;
        let stream = UnixStream::connect(&short.path)
            .with_context(|| format!("connect to the container's keeper at {}", ctl.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client { stream })
    }

    pub fn send(&mut self, m: &Msg) -> Result<()> {
        write_frame(&mut self.stream, &Frame::msg(0, m)).context("write to the keeper")
    }

    /// Sends a request and waits for its answer.
    pub fn request(&mut self, m: &Msg) -> Result<Option<serde_json::Value>> {
        self.send(m)?;
        self.answer()
    }

    /// The next answer on this channel (output frames before it are not
    /// expected here and are skipped).
    pub fn answer(&mut self) -> Result<Option<serde_json::Value>> {
        loop {
            let f = match read_frame(&mut self.stream) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    bail!("the container's keeper closed the connection (the VM has ended)")
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!("the container's VM did not answer in time")
                }
                Err(e) => return Err(e).context("read from the keeper"),
            };
            if f.kind != Kind::Msg {
                continue;
            }
            return match f.message()? {
                Msg::Done { value } => Ok(value),
                Msg::Failed { error } => Err(anyhow!("{error}")),
                other => Err(anyhow!("the keeper answered {other:?}")),
            };
        }
    }
}
