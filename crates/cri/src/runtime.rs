//! CRI's RuntimeService over the engine: sandboxes, containers, exec,
//! stats, events and the runtime's own status.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_engine::model::Status as EngineStatus;
use berth_engine::pods::PodRequest;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::runtime_service_server::RuntimeService;
use crate::config::CgroupDriver;
use crate::service::{Cri, labels_match};
use crate::status::{self, already_exists, from_engine, invalid, is_not_found, required};
use crate::{container, exec, meta, sandbox, stats, time};

/// What the runtime calls itself in Version.
pub const RUNTIME_NAME: &str = "berth";

type EventStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<api::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(
        &self,
        _r: Request<api::VersionRequest>,
    ) -> Result<Response<api::VersionResponse>, Status> {
        self.finish(
            "Version",
            Instant::now(),
            Ok(api::VersionResponse {
                version: "0.1.0".into(),
                runtime_name: RUNTIME_NAME.into(),
                runtime_version: env!("CARGO_PKG_VERSION").into(),
                runtime_api_version: "v1".into(),
            }),
        )
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<api::RunPodSandboxRequest>,
    ) -> Result<Response<api::RunPodSandboxResponse>, Status> {
        let r = r.into_inner();
        self.call("RunPodSandbox", move |cri| {
            let start = Instant::now();
            let (req, runtime) = sandbox::request(&cri.config, &r)?;
            berth_engine::handler::Handler::resolve(&runtime, &cri.engine.run_root)
                .map_err(|e| invalid("runtime_handler", e))?;
            let id = run_pod(cri, req)?;
            cri.metrics.pod_started(start.elapsed());
            Ok(api::RunPodSandboxResponse { pod_sandbox_id: id })
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<api::StopPodSandboxRequest>,
    ) -> Result<Response<api::StopPodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        self.call("StopPodSandbox", move |cri| {
            let p = match cri.sandbox(&id) {
                Ok((p, _)) => p,
                // Idempotent: what is gone is stopped.
                Err(s) if is_not_found(&s) => return Ok(api::StopPodSandboxResponse {}),
                Err(s) => return Err(s),
            };
            // kubelet stopped the containers with their grace periods
            // before: whatever still runs is killed now.
            match cri.engine.pod_stop(&p.id, Some(Duration::ZERO)) {
                Ok(_) | Err(berth_engine::Error::NotFound(_)) => Ok(api::StopPodSandboxResponse {}),
                Err(e) => Err(from_engine(e)),
            }
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<api::RemovePodSandboxRequest>,
    ) -> Result<Response<api::RemovePodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        self.call("RemovePodSandbox", move |cri| {
            let p = match cri.sandbox(&id) {
                Ok((p, _)) => p,
                Err(s) if is_not_found(&s) => return Ok(api::RemovePodSandboxResponse {}),
                Err(s) => return Err(s),
            };
            match cri.engine.pod_remove(&p.id, true) {
                Ok(_) | Err(berth_engine::Error::NotFound(_)) => {
                    Ok(api::RemovePodSandboxResponse {})
                }
                Err(e) => Err(from_engine(e)),
            }
        })
        .await
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<api::PodSandboxStatusRequest>,
    ) -> Result<Response<api::PodSandboxStatusResponse>, Status> {
        let r = r.into_inner();
        self.call("PodSandboxStatus", move |cri| {
            let (p, _) = cri.sandbox(&r.pod_sandbox_id)?;
            let members = cri.engine.db.pod_containers(&p.id).map_err(from_engine)?;
            let mut containers_statuses = Vec::new();
            for c in members {
                if let Ok(c) = cri.engine.container(&c.id)
                    && let Some(s) = container_status(cri, &c)
                {
                    containers_statuses.push(s);
                }
            }
            Ok(api::PodSandboxStatusResponse {
                status: sandbox::status(&p),
                info: if r.verbose {
                    sandbox::info(&p)
                } else {
                    Default::default()
                },
                containers_statuses,
                timestamp: time::now(),
            })
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<api::ListPodSandboxRequest>,
    ) -> Result<Response<api::ListPodSandboxResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        self.call("ListPodSandbox", move |cri| {
            let items = cri
                .sandboxes()?
                .iter()
                .filter_map(sandbox::summary)
                .filter(|s| f.id.is_empty() || s.id.starts_with(&f.id))
                .filter(|s| f.state.as_ref().is_none_or(|v| v.state == s.state))
                .filter(|s| labels_match(&f.label_selector, &s.labels))
                .collect();
            Ok(api::ListPodSandboxResponse { items })
        })
        .await
    }

    async fn create_container(
        &self,
        r: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        let r = r.into_inner();
        self.call("CreateContainer", move |cri| {
            let (pod, data) = cri.sandbox(&r.pod_sandbox_id)?;
            if !pod.running() {
                return Err(Status::failed_precondition(format!(
                    "pod sandbox {} is not ready: containers cannot be created in it",
                    pod.id
                )));
            }
            let wanted = r
                .config
                .as_ref()
                .and_then(|c| c.image.as_ref())
                .map(|i| i.image.clone())
                .unwrap_or_default();
            if wanted.is_empty() {
                return Err(required("config.image.image"));
            }
            let image = find_image(cri, &wanted)?.ok_or_else(|| {
                Status::not_found(format!(
                    "config.image.image: image {wanted} is not in the store (PullImage it first)"
                ))
            })?;
            let req = container::request(&cri.config, &pod, &data, &r, &image.id.to_string())?;
            let mut req = req;
            for (i, v) in req.config.volumes.iter_mut().enumerate() {
                if v.kind != berth_engine::imagevol::KIND {
                    continue;
                }
                // As containerd: the image must have been pulled.
                let field = format!("config.mounts[{i}].image");
                let found = find_image(cri, &v.source)
                    .map_err(|s| Status::new(s.code(), format!("{field}: {}", s.message())))?;
                let image = found.ok_or_else(|| {
                    Status::not_found(format!(
                        "{field}: image {} is not in the store (PullImage it first)",
                        v.source
                    ))
                })?;
                v.source = image.id.to_string();
            }
            if let Some(t) = &req.config.extra.pid_target {
                container::check_pid_target(cri, &pod, t)?;
            }
            for w in &req.warnings {
                tracing::warn!(pod = pod.id, "{w}");
            }
            if let Some(dir) = req.config.log_path.as_ref().and_then(|p| p.parent()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Status::internal(format!("create the log directory {}: {e}", dir.display()))
                })?;
            }
            match cri.engine.create(&image, Some(&req.name), req.config) {
                Ok(c) => Ok(api::CreateContainerResponse { container_id: c.id }),
                Err(berth_engine::Error::Conflict(why)) => {
                    match cri.engine.db.resolve_container(&req.name) {
                        Ok((id, _)) => Err(already_exists("container", &req.name, &id)),
                        Err(_) => Err(Status::failed_precondition(why)),
                    }
                }
                Err(e) => Err(from_engine(e)),
            }
        })
        .await
    }

    async fn start_container(
        &self,
        r: Request<api::StartContainerRequest>,
    ) -> Result<Response<api::StartContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        self.call("StartContainer", move |cri| {
            let (c, _) = cri.container(&id)?;
            if c.state.status != EngineStatus::Created {
                return Err(Status::failed_precondition(format!(
                    "container {} is {}, not created: it cannot be started",
                    c.id,
                    c.state.status.name()
                )));
            }
            cri.engine.start(&c.id).map_err(from_engine)?;
            Ok(api::StartContainerResponse {})
        })
        .await
    }

    async fn stop_container(
        &self,
        r: Request<api::StopContainerRequest>,
    ) -> Result<Response<api::StopContainerResponse>, Status> {
        let r = r.into_inner();
        self.call("StopContainer", move |cri| {
            let c = match cri.container(&r.container_id) {
                Ok((c, _)) => c,
                Err(s) if is_not_found(&s) => return Ok(api::StopContainerResponse {}),
                Err(s) => return Err(s),
            };
            let grace = Duration::from_secs(r.timeout.max(0) as u64);
            match cri.engine.stop(&c.id, Some(grace)) {
                Ok(_) => {
                    // Released now rather than when the follower reads
                    // the die event: kubelet removes the container next.
                    if let Err(e) = cri.engine.cleanup(&c.id) {
                        tracing::warn!(container = %c.id, "cleanup after the stop: {e}");
                    }
                    Ok(api::StopContainerResponse {})
                }
                Err(berth_engine::Error::NotFound(_)) => Ok(api::StopContainerResponse {}),
                Err(e) => Err(from_engine(e)),
            }
        })
        .await
    }

    async fn remove_container(
        &self,
        r: Request<api::RemoveContainerRequest>,
    ) -> Result<Response<api::RemoveContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        self.call("RemoveContainer", move |cri| {
            let c = match cri.container(&id) {
                Ok((c, _)) => c,
                Err(s) if is_not_found(&s) => return Ok(api::RemoveContainerResponse {}),
                Err(s) => return Err(s),
            };
            match cri.engine.remove(&c.id, true) {
                Ok(()) | Err(berth_engine::Error::NotFound(_)) => {
                    cri.rates.retain(&|x| x != c.id);
                    Ok(api::RemoveContainerResponse {})
                }
                Err(e) => Err(from_engine(e)),
            }
        })
        .await
    }

    async fn list_containers(
        &self,
        r: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        self.call("ListContainers", move |cri| {
            let containers = cri
                .containers()?
                .iter()
                .filter_map(container::summary)
                .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
                .filter(|c| {
                    f.pod_sandbox_id.is_empty() || c.pod_sandbox_id.starts_with(&f.pod_sandbox_id)
                })
                .filter(|c| f.state.as_ref().is_none_or(|v| v.state == c.state))
                .filter(|c| labels_match(&f.label_selector, &c.labels))
                .collect();
            Ok(api::ListContainersResponse { containers })
        })
        .await
    }

    async fn container_status(
        &self,
        r: Request<api::ContainerStatusRequest>,
    ) -> Result<Response<api::ContainerStatusResponse>, Status> {
        let r = r.into_inner();
        self.call("ContainerStatus", move |cri| {
            let (c, _) = cri.container(&r.container_id)?;
            Ok(api::ContainerStatusResponse {
                status: container_status(cri, &c),
                info: if r.verbose {
                    container::info(&c)
                } else {
                    Default::default()
                },
            })
        })
        .await
    }

    async fn update_container_resources(
        &self,
        r: Request<api::UpdateContainerResourcesRequest>,
    ) -> Result<Response<api::UpdateContainerResourcesResponse>, Status> {
        let r = r.into_inner();
        self.call("UpdateContainerResources", move |cri| {
            let (c, _) = cri.container(&r.container_id)?;
            let Some(linux) = &r.linux else {
                return Err(required("linux"));
            };
            let (update, warnings) = container::resource_update(linux)?;
            for w in warnings {
                tracing::warn!(container = c.id, "{w}");
            }
            cri.engine
                .update_resources(&c.id, &update)
                .map_err(from_engine)?;
            Ok(api::UpdateContainerResourcesResponse {})
        })
        .await
    }

    async fn reopen_container_log(
        &self,
        r: Request<api::ReopenContainerLogRequest>,
    ) -> Result<Response<api::ReopenContainerLogResponse>, Status> {
        let id = r.into_inner().container_id;
        self.call("ReopenContainerLog", move |cri| {
            let (c, _) = cri.container(&id)?;
            if c.state.status != EngineStatus::Running {
                return Err(Status::failed_precondition(format!(
                    "container {} is not running: its log is not open",
                    c.id
                )));
            }
            berth_monitor::client::Client::reopen_log(&cri.engine.attach_socket(&c.id))
                .map_err(|e| Status::internal(format!("reopen the log of {}: {e}", c.id)))?;
            Ok(api::ReopenContainerLogResponse {})
        })
        .await
    }

    async fn exec_sync(
        &self,
        r: Request<api::ExecSyncRequest>,
    ) -> Result<Response<api::ExecSyncResponse>, Status> {
        let r = r.into_inner();
        self.call("ExecSync", move |cri| {
            let (c, _) = cri.container(&r.container_id)?;
            if r.cmd.is_empty() {
                return Err(required("cmd"));
            }
            if r.timeout < 0 {
                return Err(invalid("timeout", format!("{} is negative", r.timeout)));
            }
            let timeout = (r.timeout > 0).then(|| Duration::from_secs(r.timeout as u64));
            exec::sync(&cri.engine, &c, r.cmd.clone(), timeout)
        })
        .await
    }

    async fn exec(
        &self,
        r: Request<api::ExecRequest>,
    ) -> Result<Response<api::ExecResponse>, Status> {
        let r = r.into_inner();
        self.call("Exec", move |cri| {
            let (c, _) = cri.container(&r.container_id)?;
            if r.cmd.is_empty() {
                return Err(required("cmd"));
            }
            check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
            running(&c)?;
            let url = streaming(cri)?
                .request_exec(berth_streaming::ExecReq {
                    container_id: c.id.clone(),
                    cmd: r.cmd.clone(),
                    tty: r.tty,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                })
                .map_err(|e| Status::resource_exhausted(e.to_string()))?;
            Ok(api::ExecResponse { url })
        })
        .await
    }

    async fn attach(
        &self,
        r: Request<api::AttachRequest>,
    ) -> Result<Response<api::AttachResponse>, Status> {
        let r = r.into_inner();
        self.call("Attach", move |cri| {
            let (c, _) = cri.container(&r.container_id)?;
            check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
            running(&c)?;
            if r.stdin && !c.config.stdin {
                return Err(invalid(
                    "stdin",
                    "the container was not created with stdin open",
                ));
            }
            let url = streaming(cri)?
                .request_attach(berth_streaming::AttachReq {
                    container_id: c.id.clone(),
                    tty: r.tty,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                })
                .map_err(|e| Status::resource_exhausted(e.to_string()))?;
            Ok(api::AttachResponse { url })
        })
        .await
    }

    async fn port_forward(
        &self,
        r: Request<api::PortForwardRequest>,
    ) -> Result<Response<api::PortForwardResponse>, Status> {
        let r = r.into_inner();
        self.call("PortForward", move |cri| {
            let (p, _) = cri.sandbox(&r.pod_sandbox_id)?;
            if !p.running() {
                return Err(Status::failed_precondition(format!(
                    "pod sandbox {} is not ready",
                    p.id
                )));
            }
            let mut ports = Vec::new();
            for (i, port) in r.port.iter().enumerate() {
                match u16::try_from(*port) {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => {
                        return Err(invalid(
                            &format!("port[{i}]"),
                            format!("{port} is not a port"),
                        ));
                    }
                }
            }
            let url = streaming(cri)?
                .request_port_forward(berth_streaming::PortForwardReq {
                    pod_sandbox_id: p.id.clone(),
                    ports,
                })
                .map_err(|e| Status::resource_exhausted(e.to_string()))?;
            Ok(api::PortForwardResponse { url })
        })
        .await
    }

    async fn container_stats(
        &self,
        r: Request<api::ContainerStatsRequest>,
    ) -> Result<Response<api::ContainerStatsResponse>, Status> {
        let id = r.into_inner().container_id;
        self.call("ContainerStats", move |cri| {
            let (c, _) = cri.container(&id)?;
            Ok(api::ContainerStatsResponse {
                stats: container_stats(cri, &c),
            })
        })
        .await
    }

    async fn list_container_stats(
        &self,
        r: Request<api::ListContainerStatsRequest>,
    ) -> Result<Response<api::ListContainerStatsResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        self.call("ListContainerStats", move |cri| {
            let mut out = Vec::new();
            let all = cri.containers()?;
            cri.rates.retain(&|id| all.iter().any(|c| c.id == id));
            for c in &all {
                let Some(d) = meta::container_data(c) else {
                    continue;
                };
                if (!f.id.is_empty() && !c.id.starts_with(&f.id))
                    || (!f.pod_sandbox_id.is_empty()
                        && !d.pod_sandbox_id.starts_with(&f.pod_sandbox_id))
                    || !labels_match(&f.label_selector, &d.config.labels)
                {
                    continue;
                }
                if let Some(s) = container_stats(cri, c) {
                    out.push(s);
                }
            }
            Ok(api::ListContainerStatsResponse { stats: out })
        })
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<api::PodSandboxStatsRequest>,
    ) -> Result<Response<api::PodSandboxStatsResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        self.call("PodSandboxStats", move |cri| {
            let (p, _) = cri.sandbox(&id)?;
            Ok(api::PodSandboxStatsResponse {
                stats: Some(pod_stats(cri, &p)?),
            })
        })
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<api::ListPodSandboxStatsRequest>,
    ) -> Result<Response<api::ListPodSandboxStatsResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        self.call("ListPodSandboxStats", move |cri| {
            let mut out = Vec::new();
            for p in cri.sandboxes()? {
                let Some(d) = meta::sandbox_data(&p) else {
                    continue;
                };
                if (!f.id.is_empty() && !p.id.starts_with(&f.id))
                    || !labels_match(&f.label_selector, &d.config.labels)
                {
                    continue;
                }
                out.push(pod_stats(cri, &p)?);
            }
            Ok(api::ListPodSandboxStatsResponse { stats: out })
        })
        .await
    }

    async fn update_runtime_config(
        &self,
        r: Request<api::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<api::UpdateRuntimeConfigResponse>, Status> {
        let cidr = r
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        let start = Instant::now();
        let r = (|| {
            if !cidr.is_empty() {
                for part in cidr.split(',') {
                    part.trim().parse::<ipnet::IpNet>().map_err(|e| {
                        invalid(
                            "runtime_config.network_config.pod_cidr",
                            format!("{part:?}: {e}"),
                        )
                    })?;
                }
                tracing::info!(
                    pod_cidr = cidr,
                    "pod CIDR from kubelet (pods are addressed from the berth network's subnet)"
                );
            }
            *self.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()) = cidr.clone();
            Ok(api::UpdateRuntimeConfigResponse {})
        })();
        self.finish("UpdateRuntimeConfig", start, r)
    }

    async fn status(
        &self,
        r: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let verbose = r.into_inner().verbose;
        self.call("Status", move |cri| {
            let runtime = crate::health::runtime_condition(cri);
            let network = crate::health::network_condition(cri);
            let mut info = std::collections::HashMap::new();
            if verbose {
                info.insert(
                    "config".to_string(),
                    serde_json::to_string(&*cri.config).unwrap_or_default(),
                );
                info.insert(
                    "podCIDR".to_string(),
                    cri.pod_cidr
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                );
            }
            Ok(api::StatusResponse {
                status: Some(api::RuntimeStatus {
                    conditions: vec![runtime, network],
                }),
                info,
                runtime_handlers: crate::health::handlers(&cri.config),
                features: Some(api::RuntimeFeatures {
                    supplemental_groups_policy: false,
                }),
            })
        })
        .await
    }

    async fn checkpoint_container(
        &self,
        _r: Request<api::CheckpointContainerRequest>,
    ) -> Result<Response<api::CheckpointContainerResponse>, Status> {
        self.finish(
            "CheckpointContainer",
            Instant::now(),
            Err(Status::unimplemented(
                "CheckpointContainer: checkpointing needs CRIU, which berth does not support yet",
            )),
        )
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _r: Request<api::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let rx = self.events.subscribe();
        // A receiver that falls behind skips what it missed (kubelet's
        // relist catches up) rather than holding the sender back.
        let stream = BroadcastStream::new(rx).filter_map(|e| e.ok().map(Ok));
        self.finish(
            "GetContainerEvents",
            Instant::now(),
            Ok(Box::pin(stream) as EventStream),
        )
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<api::ListMetricDescriptorsRequest>,
    ) -> Result<Response<api::ListMetricDescriptorsResponse>, Status> {
        self.finish(
            "ListMetricDescriptors",
            Instant::now(),
            Ok(api::ListMetricDescriptorsResponse {
                descriptors: crate::podmetrics::descriptors(),
            }),
        )
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<api::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<api::ListPodSandboxMetricsResponse>, Status> {
        self.call("ListPodSandboxMetrics", move |cri| {
            let mut pod_metrics = Vec::new();
            for p in cri.sandboxes()? {
                let s = pod_stats(cri, &p)?;
                pod_metrics.push(crate::podmetrics::of_pod(&p, &s));
            }
            Ok(api::ListPodSandboxMetricsResponse { pod_metrics })
        })
        .await
    }

    async fn runtime_config(
        &self,
        _r: Request<api::RuntimeConfigRequest>,
    ) -> Result<Response<api::RuntimeConfigResponse>, Status> {
        let driver = match self.config.cgroup_driver {
            CgroupDriver::Cgroupfs => api::CgroupDriver::Cgroupfs,
            CgroupDriver::Systemd => api::CgroupDriver::Systemd,
        };
        self.finish(
            "RuntimeConfig",
            Instant::now(),
            Ok(api::RuntimeConfigResponse {
                linux: Some(api::LinuxRuntimeConfiguration {
                    cgroup_driver: driver as i32,
                }),
            }),
        )
    }
}

/// Makes and starts the pod; a pod that cannot start is removed again.
fn run_pod(cri: &Cri, req: PodRequest) -> Result<String, Status> {
    let name = req.name.clone().unwrap_or_default();
    let p = match cri.engine.pod_create(req) {
        Ok(p) => p,
        Err(berth_engine::Error::Conflict(why)) => {
            return Err(match cri.engine.pod(&name) {
                Ok(existing) => already_exists("pod sandbox", &name, &existing.id),
                Err(_) => Status::failed_precondition(why),
            });
        }
        Err(e) => return Err(from_engine(e)),
    };
    if let Err(e) = cri.engine.pod_start(&p.id) {
        if let Err(undo) = cri.engine.pod_remove(&p.id, true) {
            tracing::warn!(pod = p.id, "removing the pod that failed to start: {undo}");
        }
        return Err(from_engine(e));
    }
    Ok(p.id)
}

/// Resolves an image reference or id in the store, without pulling.
pub fn find_image(
    cri: &Cri,
    name: &str,
) -> Result<Option<berth_image::store::ImageRecord>, Status> {
    match berth_image::images::resolve(&cri.engine.images, name, &cri.registries) {
        Ok(i) => Ok(Some(i)),
        Err(berth_image::Error::NotFound(_)) => Ok(None),
        Err(e @ (berth_image::Error::Reference { .. } | berth_image::Error::Invalid { .. })) => {
            Err(invalid("image", e))
        }
        Err(e) => Err(status::from_image(e)),
    }
}

pub(crate) fn container_status(
    cri: &Cri,
    c: &berth_engine::model::Container,
) -> Option<api::ContainerStatus> {
    container::status(c, &cri.engine.log_path(c), process_user(cri, c))
}

/// The uid, gid and groups the container's process runs as, from the
/// spec the runtime was given (none before the first start).
fn process_user(cri: &Cri, c: &berth_engine::model::Container) -> Option<api::ContainerUser> {
    let raw = std::fs::read(cri.engine.bundle_dir(&c.id).join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    let u = v.pointer("/process/user")?;
    Some(api::ContainerUser {
        linux: Some(api::LinuxContainerUser {
            uid: u.get("uid")?.as_i64()?,
            gid: u.get("gid")?.as_i64()?,
            supplemental_groups: u
                .get("additionalGids")
                .and_then(|g| g.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
                .unwrap_or_default(),
        }),
    })
}

fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Status> {
    if !(stdin || stdout || stderr) {
        return Err(invalid(
            "stdin/stdout/stderr",
            "at least one stream is needed",
        ));
    }
    if tty && stderr {
        return Err(invalid("stderr", "a tty has no separate stderr"));
    }
    Ok(())
}

fn running(c: &berth_engine::model::Container) -> Result<(), Status> {
    if c.state.status != EngineStatus::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {}, not running",
            c.id,
            c.state.status.name()
        )));
    }
    Ok(())
}

fn streaming(cri: &Cri) -> Result<&berth_streaming::Server, Status> {
    cri.streaming
        .as_deref()
        .ok_or_else(|| Status::unavailable("the streaming server is not running"))
}

/// A running container's figures; None for one that does not run.
fn container_stats(cri: &Cri, c: &berth_engine::model::Container) -> Option<api::ContainerStats> {
    let d = meta::container_data(c)?;
    let attributes = Some(api::ContainerAttributes {
        id: c.id.clone(),
        metadata: d.config.metadata.clone(),
        labels: d.config.labels.clone(),
        annotations: d.config.annotations.clone(),
    });
    let layer = Some(stats::writable_layer(
        &cri.engine.bundle_dir(&c.id).join("upper"),
    ));
    if !matches!(c.state.status, EngineStatus::Running | EngineStatus::Paused) {
        return Some(api::ContainerStats {
            attributes,
            cpu: None,
            memory: None,
            writable_layer: layer,
            swap: None,
        });
    }
    let raw = cri.engine.handler(c).ok()?.stats(&c.id).ok()?;
    let s = stats::sample(&raw);
    let rate = cri.rates.nano_cores(&c.id, &s);
    Some(api::ContainerStats {
        attributes,
        cpu: Some(stats::cpu(&s, rate)),
        memory: Some(stats::memory(&s)),
        writable_layer: layer,
        swap: Some(stats::swap(&s)),
    })
}

/// A pod's figures: its containers' summed, its network's interfaces.
fn pod_stats(cri: &Cri, p: &berth_engine::model::Pod) -> Result<api::PodSandboxStats, Status> {
    let d = meta::sandbox_data(p).ok_or_else(|| Status::not_found(p.id.clone()))?;
    let mut containers = Vec::new();
    for c in cri.engine.db.pod_containers(&p.id).map_err(from_engine)? {
        if let Ok(c) = cri.engine.container(&c.id)
            && let Some(s) = container_stats(cri, &c)
        {
            containers.push(s);
        }
    }
    let now = time::now();
    let sum = |f: &dyn Fn(&api::ContainerStats) -> Option<u64>| -> Option<api::UInt64Value> {
        Some(api::UInt64Value {
            value: containers.iter().filter_map(f).sum(),
        })
    };
    let cpu = api::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: sum(&|s| {
            s.cpu
                .as_ref()?
                .usage_core_nano_seconds
                .as_ref()
                .map(|v| v.value)
        }),
        usage_nano_cores: sum(&|s| s.cpu.as_ref()?.usage_nano_cores.as_ref().map(|v| v.value)),
    };
    let memory = api::MemoryUsage {
        timestamp: now,
        working_set_bytes: sum(&|s| {
            s.memory
                .as_ref()?
                .working_set_bytes
                .as_ref()
                .map(|v| v.value)
        }),
        available_bytes: None,
        usage_bytes: sum(&|s| s.memory.as_ref()?.usage_bytes.as_ref().map(|v| v.value)),
        rss_bytes: sum(&|s| s.memory.as_ref()?.rss_bytes.as_ref().map(|v| v.value)),
        page_faults: sum(&|s| s.memory.as_ref()?.page_faults.as_ref().map(|v| v.value)),
        major_page_faults: sum(&|s| {
            s.memory
                .as_ref()?
                .major_page_faults
                .as_ref()
                .map(|v| v.value)
        }),
    };
    let processes: u64 = cri
        .engine
        .db
        .pod_containers(&p.id)
        .map_err(from_engine)?
        .iter()
        .filter_map(|c| cri.engine.handler(c).ok()?.pids(&c.id).ok())
        .map(|v| v.len() as u64)
        .sum();
    let network = p
        .netns
        .as_deref()
        .filter(|_| p.running())
        .and_then(|n| stats::network(Path::new(n)));
    Ok(api::PodSandboxStats {
        attributes: Some(api::PodSandboxAttributes {
            id: p.id.clone(),
            metadata: d.config.metadata.clone(),
            labels: d.config.labels.clone(),
            annotations: d.config.annotations.clone(),
        }),
        linux: Some(api::LinuxPodSandboxStats {
            cpu: Some(cpu),
            memory: Some(memory),
            network,
            process: Some(api::ProcessUsage {
                timestamp: now,
                process_count: Some(api::UInt64Value { value: processes }),
            }),
            containers,
        }),
        windows: None,
    })
}

pub(crate) use self::container_status as status_of;
