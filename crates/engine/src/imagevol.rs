//! Image volumes (Kubernetes' ImageVolume): an image's files mounted
//! read-only in a container. Each is a read-only snapshot view of the
//! image's layers, keyed by the container and the volume's place in its
//! config, made with the container and removed with it; the view holds
//! the layers against garbage collection meanwhile, as a container's own
//! snapshot does.

use std::path::PathBuf;

use berth_image::snapshots::Parent;

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::model::Container;

/// The kind of a `VolumeMount` that is an image (its source the image's
/// id).
pub const KIND: &str = "image";

fn key(id: &str, index: usize) -> String {
    format!("image-volumes/{id}/{index}")
}

impl Engine {
    /// Makes the views of `c`'s image volumes and mounts them in the
    /// store. Undone by `remove_image_volumes`.
    pub(crate) fn make_image_volumes(&self, c: &Container) -> Result<()> {
        for (i, v) in c.config.volumes.iter().enumerate() {
            if v.kind != KIND {
                continue;
            }
            let digest: berth_image::Digest = v.source.parse().map_err(|e| {
                Error::invalid(format!("image volume {}", v.destination), format!("{e}"))
            })?;
            let image = self.images.image(&digest)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "image volume {}: image {} is not in the store",
                    v.destination, v.source
                ))
            })?;
            let chain: Vec<berth_image::Digest> =
                image.layers.iter().map(|l| l.chain_id.clone()).collect();
            let labels = [("berth.container".to_string(), c.id.clone())].into();
            self.images
                .snapshots()
                .view(&key(&c.id, i), Some(Parent::Layers(&chain)), labels)?;
            self.image_volume_path(&c.id, i)?;
        }
        Ok(())
    }

    /// Where image volume `index` of container `id` is mounted, mounted
    /// again if it is not (after a reboot).
    pub(crate) fn image_volume_path(&self, id: &str, index: usize) -> Result<PathBuf> {
        let snaps = self.images.snapshots();
        let k = key(id, index);
        let info = snaps.stat(&k)?;
        let dir = info
            .dir
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("snapshot {k} has no directory")))?;
        let target = self.images.root.join(dir).join("rootfs");
        if !berth_image::snapshot::is_mounted(&target) {
            std::fs::create_dir_all(&target).ctx(|| format!("create {}", target.display()))?;
            snaps.mounts(&k)?.mount(&self.images, &target)?;
        }
        Ok(target)
    }

    /// Removes every image volume view of container `id` (unmounted
    /// first); none is fine.
    pub(crate) fn remove_image_volumes(&self, id: &str) -> Result<()> {
        let snaps = self.images.snapshots();
        let prefix = format!("image-volumes/{id}/");
        for info in snaps.walk()? {
            if info.key.starts_with(&prefix) {
                snaps.remove(&info.key)?;
            }
        }
        Ok(())
    }
}
