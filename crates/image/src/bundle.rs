//! Image -> OCI bundle: a snapshot as `rootfs` and a config.json beside it,
//! in `<root>/containers/<id>/`, ready for berth-runtime. The snapshot is
//! the active snapshot `containers/<id>` on the image's layers (see
//! snapshots.rs); the container record, made with it, keeps the image
//! (and so its layers) from removal until `remove_bundle`.

use std::path::PathBuf;

use crate::error::{Context, Result};
use crate::snapshot::{self, Snapshotter};
use crate::snapshots::{self, IdMap};
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
    /// The config.json written.
    pub config: oci_spec::runtime::Spec,
    /// Why overlay was not used, when no snapshotter was asked for and
    /// this host cannot mount overlay: callers say so.
    pub fallback: Option<String>,
}

/// A container's root filesystem, without a config: what an engine that
/// writes the spec itself (once, when the container starts) needs.
#[derive(Debug)]
pub struct Rootfs {
    pub rootfs: PathBuf,
    pub snapshotter: Snapshotter,
    /// Why overlay was not used (see Bundle::fallback).
    pub fallback: Option<String>,
}

/// The snapshot of the container `id` on the image's layers, mounted at
/// `<root>/containers/<id>/rootfs`. Undone on failure.
pub fn create_rootfs(
    store: &Store,
    image: &ImageRecord,
    id: &str,
    snapshotter: Option<Snapshotter>,
    idmap: Option<&IdMap>,
) -> Result<Rootfs> {
    snapshot::validate_id(id)?;
    let _lock = store.lock_shared()?;
    let kind = snapshotter.unwrap_or(Snapshotter::Overlay);
    let made = match prepare(store, image, id, kind, idmap) {
        Ok(r) => Ok(Rootfs {
            rootfs: r,
            snapshotter: kind,
            fallback: None,
        }),
        // Only where overlay cannot work at all: a failure of an overlay
        // that could work (too many layers for this kernel, say) is
        // reported, not papered over with a slow copy.
        Err(e @ crate::Error::Unsupported { .. }) if snapshotter.is_none() && idmap.is_none() => {
            // No overlay here (or not on this filesystem): copy instead,
            // and say why.
            snapshots::remove_container(store, id)?;
            prepare(store, image, id, Snapshotter::Copy, idmap).map(|r| Rootfs {
                rootfs: r,
                snapshotter: Snapshotter::Copy,
                fallback: Some(e.to_string()),
            })
        }
        Err(e) => Err(e),
    };
    if made.is_err() {
        let _ = snapshots::remove_container(store, id);
    }
    made
}

/// The image's config, as the spec is made from it.
pub fn image_config(
    store: &Store,
    image: &ImageRecord,
) -> Result<oci_spec::image::ImageConfiguration> {
    let raw = store.read_blob(&image.id)?;
    crate::manifest::parse_config(&raw, &format!("config {}", image.id))
}

/// A whole bundle (rootfs and config.json from the image's defaults), for
/// a runtime driven by hand (`berth bundle create`).
pub fn create_bundle(
    store: &Store,
    image: &ImageRecord,
    id: &str,
    opts: &BundleOptions,
) -> Result<Bundle> {
    let r = create_rootfs(store, image, id, opts.snapshotter, None)?;
    match write_config(store, image, id, opts, r) {
        Ok(b) => Ok(b),
        Err(e) => {
            let _ = snapshots::remove_container(store, id);
            Err(e)
        }
    }
}

/// Makes the container's snapshot and mounts it on its rootfs.
fn prepare(
    store: &Store,
    image: &ImageRecord,
    id: &str,
    kind: Snapshotter,
    idmap: Option<&IdMap>,
) -> Result<PathBuf> {
    let mounts = snapshots::prepare_container(store, id, image, kind, idmap)?;
    let rootfs = snapshot::container_dir(store, id).join("rootfs");
    std::fs::create_dir_all(&rootfs).ctx(|| format!("create {}", rootfs.display()))?;
    mounts.mount(store, &rootfs)?;
    Ok(rootfs)
}

fn write_config(
    store: &Store,
    image: &ImageRecord,
    id: &str,
    opts: &BundleOptions,
    r: Rootfs,
) -> Result<Bundle> {
    let config = image_config(store, image)?;
    let spec = spec::generate(&config, &r.rootfs, id, &opts.spec)?;
    let dir = snapshot::container_dir(store, id);
    let raw = serde_json::to_vec_pretty(&spec).expect("spec serialises");
    let path = dir.join("config.json");
    berth_base::fs::atomic_write(&path, &raw, 0o644).ctx(|| format!("write {}", path.display()))?;
    Ok(Bundle {
        id: id.to_string(),
        dir,
        rootfs: r.rootfs,
        snapshotter: r.snapshotter,
        config: spec,
        fallback: r.fallback,
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
