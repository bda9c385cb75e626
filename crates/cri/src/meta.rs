//! What berthd keeps with each pod and container it makes: the CRI
//! request as kubelet sent it (in the engine record's manager data, opaque
//! to the engine), and the names it gives them in the shared store.

use std::collections::HashMap;

use berth_engine::model::{Container, Pod};
use serde::{Deserialize, Serialize};

use crate::api;

/// The owner mark of berthd's pods and containers: `berth ps` shows it and
/// `berth rm` refuses them without --force.
pub const OWNER: &str = "kubernetes";

/// A pod sandbox's request, kept with the pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxData {
    pub config: api::PodSandboxConfig,
    /// The RuntimeClass handler, as requested ("" for the default).
    pub runtime_handler: String,
    /// The engine's runtime the handler named when the pod was made.
    pub runtime: String,
    /// And its global flags.
    #[serde(default)]
    pub runtime_flags: Vec<String>,
}

/// A container's request, kept with the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerData {
    pub config: api::ContainerConfig,
    pub pod_sandbox_id: String,
    /// The image reference kubelet gave, and the id it resolved to.
    pub image_ref: String,
    /// The uid and gid the process runs as (the image's user resolved).
    #[serde(default)]
    pub user: Option<(i64, i64, Vec<i64>)>,
}

pub fn sandbox_data(p: &Pod) -> Option<SandboxData> {
    if p.options.owner.as_deref() != Some(OWNER) {
        return None;
    }
    serde_json::from_value(p.options.manager_data.clone()?).ok()
}

pub fn container_data(c: &Container) -> Option<ContainerData> {
    if c.config.owner.as_deref() != Some(OWNER) {
        return None;
    }
    serde_json::from_value(c.config.manager_data.clone()?).ok()
}

/// The store's name of a pod: kubelet's metadata, unique per attempt,
/// within berth's name rules and length.
pub fn sandbox_name(m: &api::PodSandboxMetadata) -> String {
    bounded(format!(
        "k8s_POD_{}_{}_{}_{}",
        m.name, m.namespace, m.uid, m.attempt
    ))
}

/// The store's name of a container: its own and its pod's metadata.
pub fn container_name(c: &api::ContainerMetadata, pod: &api::PodSandboxMetadata) -> String {
    bounded(format!(
        "k8s_{}_{}_{}_{}_{}",
        c.name, pod.name, pod.namespace, pod.uid, c.attempt
    ))
}

/// Names past berth's limit keep their start and a digest of the whole,
/// so two long names stay apart.
fn bounded(name: String) -> String {
    const MAX: usize = berth_base::names::MAX_NAME;
    if name.len() <= MAX {
        return name;
    }
    use sha2::Digest;
    let sum = sha2::Sha256::digest(name.as_bytes());
    let hex: String = sum.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX - hex.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hex}", &name[..cut])
}

/// Labels as the engine keeps them (ordered pairs) from CRI's map, and
/// back.
pub fn labels_in(m: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_attempt_and_bounded() {
        let m = api::PodSandboxMetadata {
            name: "web".into(),
            uid: "u-1".into(),
            namespace: "default".into(),
            attempt: 0,
        };
        let again = api::PodSandboxMetadata {
            attempt: 1,
            ..m.clone()
        };
        assert_eq!(sandbox_name(&m), "k8s_POD_web_default_u-1_0");
        assert_ne!(sandbox_name(&m), sandbox_name(&again));
        let long = api::PodSandboxMetadata {
            name: "a".repeat(250),
            ..m.clone()
        };
        let other = api::PodSandboxMetadata {
            uid: "u-2".into(),
            ..long.clone()
        };
        let (n1, n2) = (sandbox_name(&long), sandbox_name(&other));
        assert!(n1.len() <= berth_base::names::MAX_NAME);
        assert_ne!(n1, n2);
        assert!(berth_base::names::check("pod", &n1, berth_base::names::MAX_NAME).is_ok());
    }
}
