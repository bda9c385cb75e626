//! Image -> OCI bundle: a snapshot as `rootfs` and a config.json beside it,
//! in `<root>/containers/<id>/`, ready for berth-runtime. The snapshot is
//! the active snapshot `containers/<id>` on the image's layers (see
//! snapshots.rs); the container record, made with it, keeps the image
//! (and so its layers) from removal until `remove_bundle`.

use std::path::PathBuf;

use serde_json::Value;

use crate::error::{Context, Result};
use crate::snapshot::{self, Snapshotter};
use crate::snapshots;
use crate::spec::{self, SpecOptions};
use crate::store::{ImageRecord, Store};

#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// None: overlay, falling back to copy where this host cannot mount
    /// overlay at all.
    pub snapshotter: Option<Snapshotter>,
    pub spec: SpecOptions,
}

#[derive(Debug)]
pub struct Bundle {
    pub id: String,
    /// The bundle directory (holds config.json; pass as --bundle).
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub snapshotter: Snapshotter,
    /// The config.json written, for callers that adjust and rewrite it.
    pub config: Value,
    /// Why overlay was not used, when no snapshotter was asked for and
    /// this host cannot mount overlay: callers say so.
    pub fallback: Option<String>,
}

pub fn create_bundle(
    store: &Store,
    image: &ImageRecord,
    id: &str,
    opts: &BundleOptions,
) -> Result<Bundle> {
    snapshot::validate_id(id)?;
    let _lock = store.lock_shared()?;
    let kind = opts.snapshotter.unwrap_or(Snapshotter::Overlay);
    match build(store, image, id, opts, kind) {
        Ok(b) => Ok(b),
        Err(e) => {
            let _ = snapshots::remove_container(store, id);
            Err(e)
        }
    }
}

/// Makes the container's snapshot and mounts it on its rootfs.
fn prepare(store: &Store, image: &ImageRecord, id: &str, kind: Snapshotter) -> Result<PathBuf> {
    let mounts = snapshots::prepare_container(store, id, image, kind)?;
    let rootfs = snapshot::container_dir(store, id).join("rootfs");
    std::fs::create_dir_all(&rootfs).ctx(|| format!("create {}", rootfs.display()))?;
    mounts.mount(store, &rootfs)?;
    Ok(rootfs)
}

fn build(
    store: &Store,
    image: &ImageRecord,
    id: &str,
    opts: &BundleOptions,
    kind: Snapshotter,
) -> Result<Bundle> {
    let config_bytes = store.read_blob(&image.id)?;
    let config = crate::manifest::parse_config(&config_bytes, &format!("config {}", image.id))?;
    let mut fallback = None;
    let (rootfs, kind) = match prepare(store, image, id, kind) {
        Ok(r) => (r, kind),
        // Only where overlay cannot work at all: a failure of an overlay
        // that could work (too many layers for this kernel, say) is
        // reported, not papered over with a slow copy.
        Err(e @ crate::Error::Unsupported { .. }) if opts.snapshotter.is_none() => {
            // No overlay here (or not on this filesystem): copy instead,
            // and say why.
            fallback = Some(e.to_string());
            snapshots::remove_container(store, id)?;
            (
                prepare(store, image, id, Snapshotter::Copy)?,
                Snapshotter::Copy,
            )
        }
        Err(e) => return Err(e),
    };
    let spec = spec::generate(&config, &rootfs, id, &opts.spec)?;
    let dir = snapshot::container_dir(store, id);
    let tmp = dir.join("config.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&spec).expect("spec serialises"),
    )
    .ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("config.json")).ctx(|| format!("rename {}", tmp.display()))?;
    Ok(Bundle {
        id: id.to_string(),
        dir,
        rootfs,
        snapshotter: kind,
        config: spec,
        fallback,
    })
}

/// Mounts a bundle's rootfs again (after a reboot emptied the mounts).
pub fn remount_bundle(store: &Store, id: &str) -> Result<PathBuf> {
    let rootfs = snapshot::container_dir(store, id).join("rootfs");
    store
        .snapshots()
        .mounts(&snapshots::container_key(id))?
        .mount(store, &rootfs)?;
    Ok(rootfs)
}

/// Unmounts and deletes the bundle, its snapshot and its record. Missing
/// is fine.
pub fn remove_bundle(store: &Store, id: &str) -> Result<()> {
    snapshot::validate_id(id)?;
    snapshots::remove_container(store, id)
}
