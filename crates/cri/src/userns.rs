//! `hostUsers: false`: the user namespace kubelet asks for with a pod's
//! (and each of its containers') namespace options. Every container of
//! the pod gets a namespace of its own with the pod's maps, its rootfs
//! id-mapped to them (berth_image::snapshots::IdMap), and kubelet's
//! volumes id-mapped with the same maps.

use tonic::Status;

use crate::api;
use crate::status::invalid;

/// A uid or gid map as the engine takes it: (container, host, size).
pub type Map = Vec<(u32, u32, u32)>;

/// The maps of a user namespace option: None for the node's namespace
/// (the default), both maps for the pod's own.
pub fn maps(field: &str, u: Option<&api::UserNamespace>) -> Result<Option<(Map, Map)>, Status> {
    let Some(u) = u else { return Ok(None) };
    match api::NamespaceMode::try_from(u.mode) {
        Ok(api::NamespaceMode::Node) => Ok(None),
        Ok(api::NamespaceMode::Pod) => {
            let uids = map(&format!("{field}.uids"), &u.uids)?;
            let gids = map(&format!("{field}.gids"), &u.gids)?;
            Ok(Some((uids, gids)))
        }
        _ => Err(invalid(
            &format!("{field}.mode"),
            "a user namespace is the node's (NODE) or the pod's own (POD)",
        )),
    }
}

/// The engine checks overlaps and bounds; what is checked here is what
/// kubelet must send: a map that is there and maps the container's root.
pub fn map(field: &str, m: &[api::IdMapping]) -> Result<Map, Status> {
    if m.is_empty() {
        return Err(invalid(field, "a pod's own user namespace needs a map"));
    }
    if !m.iter().any(|r| r.container_id == 0 && r.length > 0) {
        return Err(invalid(
            field,
            "the map must map the container's root (id 0)",
        ));
    }
    Ok(m.iter()
        .map(|r| (r.container_id, r.host_id, r.length))
        .collect())
}
