//! GetContainerEvents: the engine's event log (every berth process's and
//! monitor's lifecycle events) followed by one thread, the CRI containers'
//! turned into CRI events with their pod's status, and fanned out to
//! every subscribed kubelet.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::api;
use crate::meta::OWNER;
use crate::service::Cri;
use crate::{runtime, sandbox, time};

/// Events a slow subscriber may fall behind by before it skips some.
pub const BACKLOG: usize = 1024;

pub fn channel() -> broadcast::Sender<api::ContainerEventResponse> {
    broadcast::channel(BACKLOG).0
}

/// Starts the follower thread; it lives as long as the process.
pub fn follow(cri: Cri) -> std::io::Result<()> {
    let mut log = cri.engine.subscribe();
    let cri = Arc::new(cri);
    std::thread::Builder::new()
        .name("cri-events".into())
        .spawn(move || {
            for e in &mut log {
                if e.kind != "container" {
                    continue;
                }
                let Some(kind) = kind(&e.action) else {
                    continue;
                };
                if kind == api::ContainerEventType::ContainerStoppedEvent {
                    cleanup(&cri, &e);
                }
                if cri.events.receiver_count() == 0 {
                    continue;
                }
                if let Some(ev) = convert(&cri, &e, kind) {
                    let _ = cri.events.send(ev);
                }
            }
        })
        .map(drop)
}

/// What a monitor's exit command does for the CLI: the exit recorded and
/// the run's resources (runtime state, cgroups) released, for berthd's own
/// containers (their monitors run no exit command).
fn cleanup(cri: &Cri, e: &berth_base::events::Event) {
    if e.actor.attributes.get("owner").map(String::as_str) != Some(OWNER) {
        return;
    }
    if let Err(err) = cri.engine.cleanup(&e.actor.id) {
        tracing::warn!(container = %e.actor.id, "cleanup after the exit: {err}");
    }
}

fn kind(action: &str) -> Option<api::ContainerEventType> {
    Some(match action {
        "create" => api::ContainerEventType::ContainerCreatedEvent,
        "start" => api::ContainerEventType::ContainerStartedEvent,
        "die" => api::ContainerEventType::ContainerStoppedEvent,
        "destroy" => api::ContainerEventType::ContainerDeletedEvent,
        _ => return None,
    })
}

/// The CRI event, for a container berthd made; its pod's status and the
/// pod's containers' statuses as they are now.
fn convert(
    cri: &Cri,
    e: &berth_base::events::Event,
    kind: api::ContainerEventType,
) -> Option<api::ContainerEventResponse> {
    let id = &e.actor.id;
    let attrs = &e.actor.attributes;
    let pod_id = match cri.container(id) {
        Ok((_, d)) => d.pod_sandbox_id,
        // Gone (deleted): the engine's event says whose it was.
        Err(_) if attrs.get("owner").map(String::as_str) == Some(OWNER) => {
            attrs.get("pod")?.clone()
        }
        Err(_) => return None,
    };
    let (pod_sandbox_status, containers_statuses) = match cri.sandbox(&pod_id) {
        Ok((p, _)) => {
            let statuses = cri
                .engine
                .db
                .pod_containers(&p.id)
                .ok()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| cri.engine.container(&c.id).ok())
                .filter_map(|c| runtime::status_of(cri, &c))
                .collect();
            (sandbox::status(&p), statuses)
        }
        Err(_) => (None, Vec::new()),
    };
    Some(api::ContainerEventResponse {
        container_id: id.clone(),
        container_event_type: kind as i32,
        created_at: if e.time_nano > 0 {
            e.time_nano
        } else {
            time::now()
        },
        pod_sandbox_status,
        containers_statuses,
    })
}
