//! Which image a new container runs: resolved in the store by the name
//! the user gave (short names through registries.conf), pulled by the
//! pull policy. The engine's, so that the CLI and a daemon decide alike.

use std::sync::Arc;

use berth_image::pull::PullOptions;
use berth_image::store::{ImageRecord, Store};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// docker's and CRI's `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull every time (the store's copy is used if the registry has the
    /// same).
    Always,
    /// Pull only when the store has no image of that name.
    #[default]
    Missing,
    /// Never pull: an image missing from the store is an error.
    Never,
}

impl PullPolicy {
    pub fn parse(s: &str) -> Result<PullPolicy> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "missing" | "ifnotpresent" | "IfNotPresent" => Ok(PullPolicy::Missing),
            "never" | "Never" => Ok(PullPolicy::Never),
            other => Err(Error::invalid(
                format!("--pull {other}"),
                "expected always, missing or never",
            )),
        }
    }
}

impl Engine {
    /// The image `name` names, pulled as `policy` says. `pulling` is told
    /// before a pull starts (the CLI says so on stderr).
    pub fn image_for(
        &self,
        name: &str,
        policy: PullPolicy,
        opts: &PullOptions,
        pulling: &mut dyn FnMut(&str),
    ) -> Result<ImageRecord> {
        if policy != PullPolicy::Always {
            match berth_image::images::resolve(&self.images, name, &opts.registries) {
                Ok(r) => return Ok(r),
                Err(berth_image::Error::NotFound(_)) if policy == PullPolicy::Missing => {}
                Err(berth_image::Error::NotFound(_)) => {
                    return Err(Error::NotFound(format!(
                        "image {name} is not in the store, and the pull policy is never"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        pulling(name);
        self.pull(name, opts)
    }

    /// Pulls `name` into the store (its registry transport bounded by the
    /// options' connect and idle timeouts).
    pub fn pull(&self, name: &str, opts: &PullOptions) -> Result<ImageRecord> {
        let store = Arc::new(Store::open(&self.root)?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Os {
                what: "start the pull's runtime".into(),
                source: e,
            })?;
        Ok(rt.block_on(berth_image::pull::pull(store, name, opts))?)
    }
}
