//! The state every CRI call shares, and how a call runs: the engine's
//! blocking work on tokio's blocking pool, timed for the metrics, its
//! failure logged with the method's name.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_engine::Engine;
use berth_engine::model::{Container, Pod};
use tokio::sync::broadcast;
use tonic::{Response, Status};

use crate::api;
use crate::config::Config;
use crate::meta;
use crate::metrics::Metrics;
use crate::stats::CpuRates;
use crate::status;

#[derive(Clone)]
pub struct Cri {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub rates: Arc<CpuRates>,
    /// The pod CIDR kubelet last gave (UpdateRuntimeConfig).
    pub pod_cidr: Arc<Mutex<String>>,
    pub streaming: Option<Arc<berth_streaming::Server>>,
    /// registries.conf: short names, mirrors, insecure registries.
    pub registries: Arc<berth_image::registries::RegistriesConf>,
    pub events: broadcast::Sender<api::ContainerEventResponse>,
    /// ImageFsInfo's last figures.
    pub usage: Arc<crate::images::UsageCache>,
}

impl Cri {
    /// Runs `f` (engine calls: files, SQLite, processes) off the async
    /// workers; times it and logs a failure.
    pub async fn call<T: Send + 'static>(
        &self,
        method: &'static str,
        f: impl FnOnce(&Cri) -> Result<T, Status> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let start = Instant::now();
        let me = self.clone();
        let r = tokio::task::spawn_blocking(move || f(&me))
            .await
            .unwrap_or_else(|e| Err(Status::internal(format!("{method}: {e}"))));
        self.finish(method, start, r)
    }

    /// Records an async call's outcome as `call` does.
    pub fn finish<T>(
        &self,
        method: &'static str,
        start: Instant,
        r: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        let took = start.elapsed();
        self.metrics
            .observe(method, took, r.as_ref().err().map(Status::code));
        match &r {
            Ok(_) => tracing::debug!(method, ms = took.as_secs_f64() * 1e3, "done"),
            Err(s) => tracing::info!(
                method,
                code = ?s.code(),
                ms = took.as_secs_f64() * 1e3,
                "{}",
                s.message()
            ),
        }
        r.map(Response::new)
    }

    /// A pod berthd made (pods of the CLI are not CRI's to see).
    pub fn sandbox(&self, id: &str) -> Result<(Pod, meta::SandboxData), Status> {
        check_id("pod_sandbox_id", id)?;
        let not_found = || Status::not_found(format!("pod sandbox {id} not found"));
        let p = match self.engine.pod(id) {
            Ok(p) => p,
            Err(berth_engine::Error::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(status::from_engine(e)),
        };
        let d = meta::sandbox_data(&p).ok_or_else(not_found)?;
        Ok((p, d))
    }

    /// A container berthd made, its state refreshed from the runtime.
    pub fn container(&self, id: &str) -> Result<(Container, meta::ContainerData), Status> {
        check_id("container_id", id)?;
        let not_found = || Status::not_found(format!("container {id} not found"));
        let c = match self.engine.container(id) {
            Ok(c) => c,
            Err(berth_engine::Error::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(status::from_engine(e)),
        };
        let d = meta::container_data(&c).ok_or_else(not_found)?;
        Ok((c, d))
    }

    /// Every pod berthd made.
    pub fn sandboxes(&self) -> Result<Vec<Pod>, Status> {
        Ok(self
            .engine
            .db
            .pods()
            .map_err(status::from_engine)?
            .into_iter()
            .filter(|p| meta::sandbox_data(p).is_some())
            .collect())
    }

    /// Every container berthd made, refreshed.
    pub fn containers(&self) -> Result<Vec<Container>, Status> {
        Ok(self
            .engine
            .containers()
            .map_err(status::from_engine)?
            .into_iter()
            .filter(|c| meta::container_data(c).is_some())
            .collect())
    }
}

/// An id as CRI gives it: full or a unique prefix (crictl shortens them),
/// hex only, so that it never matches a name.
pub fn check_id(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(status::required(field));
    }
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(status::invalid(field, format!("{id:?} is not an id")));
    }
    Ok(())
}

/// CRI's label selector: every pair must be among the labels.
pub fn labels_match(
    selector: &std::collections::HashMap<String, String>,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
