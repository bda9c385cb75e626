//! ListMetricDescriptors / ListPodSandboxMetrics: the cAdvisor-named
//! metrics kubelet can take from the runtime instead of cAdvisor, made
//! from the same figures as the stats calls.

use crate::api;
use crate::time;

struct Def {
    name: &'static str,
    help: &'static str,
    kind: api::MetricType,
}

const CONTAINER: &[Def] = &[
    Def {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        kind: api::MetricType::Counter,
    },
    Def {
        name: "container_memory_working_set_bytes",
        help: "Current working set in bytes.",
        kind: api::MetricType::Gauge,
    },
    Def {
        name: "container_memory_usage_bytes",
        help: "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        kind: api::MetricType::Gauge,
    },
    Def {
        name: "container_memory_rss",
        help: "Size of RSS in bytes.",
        kind: api::MetricType::Gauge,
    },
    Def {
        name: "container_fs_usage_bytes",
        help: "Number of bytes that are consumed by the container's writable layer.",
        kind: api::MetricType::Gauge,
    },
];

const POD: &[Def] = &[
    Def {
        name: "container_network_receive_bytes_total",
        help: "Cumulative count of bytes received.",
        kind: api::MetricType::Counter,
    },
    Def {
        name: "container_network_transmit_bytes_total",
        help: "Cumulative count of bytes transmitted.",
        kind: api::MetricType::Counter,
    },
];

const CONTAINER_LABELS: &[&str] = &["container", "pod", "namespace"];
const POD_LABELS: &[&str] = &["pod", "namespace", "interface"];

pub fn descriptors() -> Vec<api::MetricDescriptor> {
    let d = |defs: &[Def], labels: &[&str]| -> Vec<api::MetricDescriptor> {
        defs.iter()
            .map(|m| api::MetricDescriptor {
                name: m.name.into(),
                help: m.help.into(),
                label_keys: labels.iter().map(|l| l.to_string()).collect(),
            })
            .collect()
    };
    let mut v = d(CONTAINER, CONTAINER_LABELS);
    v.extend(d(POD, POD_LABELS));
    v
}

fn metric(name: &str, kind: api::MetricType, labels: Vec<String>, value: u64) -> api::Metric {
    api::Metric {
        name: name.into(),
        timestamp: time::now(),
        metric_type: kind as i32,
        label_values: labels,
        value: Some(api::UInt64Value { value }),
    }
}

/// The pod's metrics from its stats.
pub fn of_pod(p: &berth_engine::model::Pod, s: &api::PodSandboxStats) -> api::PodSandboxMetrics {
    let md = s
        .attributes
        .as_ref()
        .and_then(|a| a.metadata.clone())
        .unwrap_or_default();
    let linux = s.linux.clone().unwrap_or_default();
    let mut metrics = Vec::new();
    if let Some(n) = &linux.network {
        for i in &n.interfaces {
            let labels = vec![md.name.clone(), md.namespace.clone(), i.name.clone()];
            let v = |x: &Option<api::UInt64Value>| x.as_ref().map(|v| v.value).unwrap_or(0);
            metrics.push(metric(
                POD[0].name,
                POD[0].kind,
                labels.clone(),
                v(&i.rx_bytes),
            ));
            metrics.push(metric(POD[1].name, POD[1].kind, labels, v(&i.tx_bytes)));
        }
    }
    let container_metrics = linux
        .containers
        .iter()
        .map(|c| {
            let name = c
                .attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let labels = vec![name, md.name.clone(), md.namespace.clone()];
            let get = |x: Option<&api::UInt64Value>| x.map(|v| v.value).unwrap_or(0);
            let cpu = c.cpu.as_ref();
            let mem = c.memory.as_ref();
            let values = [
                get(cpu.and_then(|c| c.usage_core_nano_seconds.as_ref())) / 1_000_000_000,
                get(mem.and_then(|m| m.working_set_bytes.as_ref())),
                get(mem.and_then(|m| m.usage_bytes.as_ref())),
                get(mem.and_then(|m| m.rss_bytes.as_ref())),
                get(c
                    .writable_layer
                    .as_ref()
                    .and_then(|w| w.used_bytes.as_ref())),
            ];
            api::ContainerMetrics {
                container_id: c
                    .attributes
                    .as_ref()
                    .map(|a| a.id.clone())
                    .unwrap_or_default(),
                metrics: CONTAINER
                    .iter()
                    .zip(values)
                    .map(|(d, v)| metric(d.name, d.kind, labels.clone(), v))
                    .collect(),
            }
        })
        .collect();
    api::PodSandboxMetrics {
        pod_sandbox_id: p.id.clone(),
        metrics,
        container_metrics,
    }
}
