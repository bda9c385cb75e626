//! What the engine's records take on disk (`system df`), and the removal
//! of stopped containers (`container prune`, part of `system prune`).

use berth_image::Digest;
use berth_image::snapshots::{self, Mounts};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Container, Status};

/// One row of `system df`: how many, how many in use, their size and what
/// removing the unused would free.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsage {
    pub total: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

/// `system df`'s three rows.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Usage {
    pub images: DiskUsage,
    pub containers: DiskUsage,
    pub volumes: DiskUsage,
}

/// A container's size as docker's `ps --size` gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSize {
    /// What its writable layer holds (docker's SizeRw).
    pub rw_size: u64,
    /// That and its image's layers under it: the "virtual" size (docker's
    /// SizeRootFs).
    pub root_fs_size: u64,
}

/// What a prune removed (IDs), and what it could not (names, why).
pub type Pruned = (Vec<String>, Vec<(String, Error)>);

fn stopped(s: Status) -> bool {
    matches!(s, Status::Exited | Status::Created)
}

impl Engine {
    /// Images (their layers counted once per image, as docker does),
    /// containers (their writable layers) and volumes.
    pub fn disk_usage(&self) -> Result<Usage> {
        let containers = self.containers()?;
        let mut u = Usage::default();
        for i in self.images.images()? {
            let used = containers.iter().any(|c| c.image_id == i.id.to_string());
            u.images.total += 1;
            u.images.size += i.size();
            if used {
                u.images.active += 1;
            } else {
                u.images.reclaimable += i.size();
            }
        }
        for c in &containers {
            let bytes = self.container_size(c)?.rw_size;
            u.containers.total += 1;
            u.containers.size += bytes;
            if stopped(c.state.status) {
                u.containers.reclaimable += bytes;
            } else {
                u.containers.active += 1;
            }
        }
        for v in self.volumes()? {
            let (bytes, _) = berth_base::fs::disk_usage(std::path::Path::new(&v.mountpoint));
            u.volumes.total += 1;
            u.volumes.size += bytes;
            if self.volume_users(&v.name)?.is_empty() {
                u.volumes.reclaimable += bytes;
            } else {
                u.volumes.active += 1;
            }
        }
        Ok(u)
    }

    /// The container's writable layer and virtual size, files counted as
    /// docker counts them (`fs::apparent_size`). An overlay's writable
    /// layer is its upper dir; a copy snapshot's is the whole copy, which
    /// is also its root (the image's files were copied into it). A
    /// container without a snapshot (being made, or half removed) has
    /// written nothing.
    pub fn container_size(&self, c: &Container) -> Result<ContainerSize> {
        let image = match c.image_id.parse::<Digest>() {
            Ok(d) => self.images.image(&d)?.map(|i| i.size()).unwrap_or(0),
            Err(_) => 0,
        };
        let key = snapshots::container_key(&c.id);
        Ok(match self.images.snapshots().mounts(&key) {
            Ok(Mounts::Overlay {
                upper: Some((upper, _)),
                ..
            }) => {
                let rw = berth_base::fs::apparent_size(&upper);
                ContainerSize {
                    rw_size: rw,
                    root_fs_size: rw + image,
                }
            }
            Ok(Mounts::Bind { source, .. }) => {
                let all = berth_base::fs::apparent_size(&source);
                ContainerSize {
                    rw_size: all,
                    root_fs_size: all,
                }
            }
            Ok(Mounts::Overlay { upper: None, .. }) | Err(berth_image::Error::NotFound(_)) => {
                ContainerSize {
                    rw_size: 0,
                    root_fs_size: image,
                }
            }
            Err(e) => return Err(e.into()),
        })
    }

    /// Removes every stopped container berth's users made (kubelet's are
    /// kubelet's to remove): the IDs removed, and what could not be.
    pub fn container_prune(&self) -> Result<Pruned> {
        let (mut removed, mut failed) = (Vec::new(), Vec::new());
        for c in self.containers()? {
            // A created container with a pid has a process waiting to be
            // started: not stopped. An exited one may still have its pid
            // until its cleanup ran; removal releases it.
            let waiting = c.state.status == Status::Created && c.state.pid > 0;
            if c.config.owner.is_some() || !stopped(c.state.status) || waiting {
                continue;
            }
            match self.remove(&c.id, false) {
                Ok(()) => removed.push(c.id),
                Err(e) => failed.push((c.name, e)),
            }
        }
        Ok((removed, failed))
    }
}
