//! Where a step runs: a workspace holding the stage's files, in which a
//! RUN's process runs and COPY writes, whose changes become one layer.
//! `Working` is the default one: a working container the engine makes on
//! the stage's layers (as buildah's working containers are), run through
//! its monitor while the builder relays its output, its changes exported
//! from its overlay upper dir, and removed whatever happens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_engine::Engine;
use berth_engine::model::ContainerConfig;
use berth_image::digest::Digest;
use berth_image::export::Compression;
use berth_image::leases::Resource;
use berth_image::store::LayerInfo;
use berth_monitor::frame::Frame;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::progress::Progress;

/// Lines of a failed RUN's output its error quotes.
const TAIL_LINES: usize = 10;

pub struct Working<'e> {
    engine: &'e Engine,
    pub id: String,
}

/// A step's workspace.
pub trait Workspace {
    /// Its root filesystem as a host directory (a `--chown` user is looked
    /// up in its /etc/passwd; a `--from` tree is read from it).
    fn root(&self) -> std::path::PathBuf;
    /// Makes directory `path` and the missing ones on the way, owned by
    /// `owner`, symlinks resolved inside the root.
    fn mkdir(&self, path: &str, owner: (u32, u32)) -> Result<()>;
    /// Whether `path` (symlinks resolved inside the root) is a directory.
    fn is_dir(&self, path: &str) -> Result<bool>;
    /// Unpacks a tar stream into directory `dest`.
    fn copy_in(&self, tar: &mut dyn std::io::Read, dest: &str) -> Result<()>;
    /// Runs the step's process; its output to `progress`.
    fn run(
        &self,
        stdin: Option<&[u8]>,
        progress: &dyn Progress,
        n: usize,
        cancel: &AtomicBool,
    ) -> Result<Ran>;
    /// What the step changed, as a layer on `parent`, held by `lease`.
    fn layer(&self, parent: Option<&Digest>, lease: &str) -> Result<LayerInfo>;
}

/// How a process in a working container ended.
pub struct Ran {
    pub code: i32,
    /// Its last lines of output.
    pub tail: String,
}

impl<'e> Working<'e> {
    /// A container of `layers` with `config` (an image config), not
    /// started. The config's blob is held by `lease` while it is made.
    pub fn create(
        engine: &'e Engine,
        lease: &str,
        layers: &[LayerInfo],
        config: &Value,
        container: ContainerConfig,
    ) -> Result<Working<'e>> {
        let store = &engine.images;
        let image = {
            let _l = store.lock_shared()?;
            let image = berth_image::commit::working_image(store, layers.to_vec(), config.clone())?;
            store.lease_add(lease, &Resource::Blob(image.id.clone()))?;
            image
        };
        let c = engine.create(&image, None, container)?;
        Ok(Working { engine, id: c.id })
    }
}

impl Workspace for Working<'_> {
    fn root(&self) -> std::path::PathBuf {
        self.engine.bundle_dir(&self.id).join("rootfs")
    }

    fn mkdir(&self, path: &str, owner: (u32, u32)) -> Result<()> {
        Ok(self.engine.mkdir_in(&self.id, path, owner)?)
    }

    fn is_dir(&self, path: &str) -> Result<bool> {
        Ok(self.engine.is_dir_in(&self.id, path)?)
    }

    fn copy_in(&self, tar: &mut dyn std::io::Read, dest: &str) -> Result<()> {
        Ok(self.engine.copy_in_tar(&self.id, tar, dest)?)
    }

    /// Starts the container and relays its output to `progress` (step
    /// `n`) until it exits; `stdin`, when given, is its whole input.
    /// `cancel` kills it.
    fn run(
        &self,
        stdin: Option<&[u8]>,
        progress: &dyn Progress,
        n: usize,
        cancel: &AtomicBool,
    ) -> Result<Ran> {
        let mut client = None;
        self.engine.start_with(&self.id, &mut |c| {
            let sock = self.engine.attach_socket(&c.id);
            client =
                Some(berth_monitor::client::Client::attach(&sock).map_err(|e| {
                    berth_engine::Error::Monitor(format!("attach to {}: {e}", c.name))
                })?);
            Ok(())
        })?;
        let mut client = client.expect("attached before the start");
        if let Some(data) = stdin {
            client
                .send_stdin(data)
                .and_then(|()| client.close_stdin())
                .map_err(|e| Error::invalid("the step's input", e.to_string()))?;
        }
        // Woken now and then to see whether the build was interrupted.
        client
            .set_read_timeout(Some(Duration::from_millis(250)))
            .map_err(|e| Error::invalid("the step's output", e.to_string()))?;
        let mut tail = Tail::default();
        loop {
            if cancel.load(Ordering::Relaxed) {
                let c = self.engine.container(&self.id)?;
                let _ = self.engine.handler(&c)?.kill(
                    &self.id,
                    rustix::process::Signal::KILL.as_raw(),
                    true,
                );
                return Err(Error::Interrupted);
            }
            match client.recv() {
                Ok(Some(Frame::Stdout(d) | Frame::Stderr(d))) => {
                    tail.push(&d);
                    progress.output(n, &d);
                }
                Ok(Some(Frame::Exit(code))) => {
                    return Ok(Ran {
                        code,
                        tail: tail.text(),
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // The monitor went without an exit frame: the records
                    // have the code.
                    let code = self.engine.wait(&self.id, Some(Duration::from_secs(10)))?;
                    return Ok(Ran {
                        code,
                        tail: tail.text(),
                    });
                }
                Err(berth_monitor::Error::Io { source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(Error::invalid("the step's output", e.to_string())),
            }
        }
    }

    /// What the container changed (its upper dir), as a layer.
    fn layer(&self, parent: Option<&Digest>, lease: &str) -> Result<LayerInfo> {
        Ok(self
            .engine
            .changes_layer(&self.id, parent, lease, Compression::Gzip)?)
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove(&self.id, true) {
            tracing::warn!("removing build container {}: {e}", self.id);
        }
    }
}

/// The last lines of a stream.
#[derive(Default)]
pub(crate) struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    pub(crate) fn push(&mut self, d: &[u8]) {
        self.buf.extend_from_slice(d);
        // Bounded: only the end is ever shown.
        if self.buf.len() > 64 * 1024 {
            let cut = self.buf.len() - 16 * 1024;
            self.buf.drain(..cut);
        }
    }

    pub(crate) fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.buf);
        let lines: Vec<&str> = s.trim_end().lines().collect();
        let from = lines.len().saturating_sub(TAIL_LINES);
        lines[from..].join("\n")
    }
}
