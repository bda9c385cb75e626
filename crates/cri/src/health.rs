//! Status: whether the runtime and the pod network can serve, with a
//! reason kubelet shows when not; the runtime handlers and what they do.

use std::path::Path;

use crate::api;
use crate::config::Config;
use crate::service::Cri;

/// The CNI plugins every pod attachment of a berth network runs.
const PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "firewall"];

/// The runtime can make containers: its state directories are there and
/// writable, its monitor binary runs.
pub fn runtime_condition(cri: &Cri) -> api::RuntimeCondition {
    let e = &cri.engine;
    let problem = if !is_executable(&e.monitor) {
        Some(format!("the monitor {} is missing", e.monitor.display()))
    } else if !is_executable(&e.berth) {
        Some(format!("the berth binary {} is missing", e.berth.display()))
    } else if let Err(err) = probe_write(&e.run_root) {
        Some(format!("{} is not writable: {err}", e.run_root.display()))
    } else {
        None
    };
    condition("RuntimeReady", "BerthNotReady", problem)
}

/// Pods can get a network: the CNI plugins the berth network runs exist.
pub fn network_condition(cri: &Cri) -> api::RuntimeCondition {
    let cni = cri.engine.cni();
    let missing: Vec<&str> = PLUGINS
        .iter()
        .copied()
        .filter(|p| !cni.plugin_dirs.iter().any(|d| is_executable(&d.join(p))))
        .collect();
    let problem = (!missing.is_empty()).then(|| {
        format!(
            "CNI plugins missing from {}: {} (Debian: apt install containernetworking-plugins)",
            cni.plugin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(", ")
        )
    });
    condition("NetworkReady", "NetworkPluginNotReady", problem)
}

fn condition(kind: &str, reason: &str, problem: Option<String>) -> api::RuntimeCondition {
    api::RuntimeCondition {
        r#type: kind.into(),
        status: problem.is_none(),
        reason: if problem.is_some() {
            reason.into()
        } else {
            String::new()
        },
        message: problem.unwrap_or_default(),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn probe_write(dir: &Path) -> std::io::Result<()> {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).map_err(std::io::Error::from)
}

/// The handlers kubelet may name in a RuntimeClass, with their features:
/// recursive read-only mounts and user namespaces where the runtime makes
/// them (berth's own, on kernels with mount_setattr: the rootfs's lowers
/// and kubelet's volumes are id-mapped).
pub fn handlers(c: &Config) -> Vec<api::RuntimeHandler> {
    c.handler_names()
        .into_iter()
        .flat_map(|name| {
            let builtin = c.runtime(&name).as_deref() == Some("berth");
            let mut out = vec![api::RuntimeHandler {
                name: name.clone(),
                features: Some(api::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: builtin,
                    user_namespaces: builtin,
                }),
            }];
            // The default handler is also listed under the empty name, as
            // kubelet looks it up.
            if name == c.default_runtime {
                out.push(api::RuntimeHandler {
                    name: String::new(),
                    ..out[0].clone()
                });
            }
            out
        })
        .collect()
}
