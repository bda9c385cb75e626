//! Named volumes: directories under `<root>/volumes/<name>/_data`, made on
//! first use (as docker does for `-v name:/path`) or by `volume create`,
//! removed only when no container uses them.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use crate::engine::{Engine, now, path_str};
use crate::error::{Context, Error, Result};
use crate::ids;
use crate::model::{Container, Volume, VolumeMount};

impl Engine {
    /// Creates the volume; an existing one of that name is returned as is.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        labels: Vec<(String, String)>,
    ) -> Result<(Volume, bool)> {
        let name = match name {
            Some(n) => {
                ids::check_resource_name("volume", n)?;
                n.to_string()
            }
            None => ids::new_id(),
        };
        if let Some(v) = self.db.volume(&name)? {
            return Ok((v, false));
        }
        let dir = self.volumes_dir().join(&name);
        let data = dir.join("_data");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .ctx(|| format!("create {}", dir.display()))?;
        // The data directory is the container's to use: root's, 0755 as in
        // docker.
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&data)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .ctx(|| format!("create {}", data.display()))?;
        let v = Volume {
            name: name.clone(),
            created: now(),
            mountpoint: path_str(&data),
            labels,
        };
        crate::recover::save_volume_file(self, &v)?;
        if self.db.insert_volume(&v)? {
            self.emit(berth_base::events::Event::new("volume", "create", &v.name));
            Ok((v, true))
        } else {
            // Another berth made it meanwhile.
            Ok((
                self.db.volume(&name)?.expect("just inserted elsewhere"),
                false,
            ))
        }
    }

    /// The directory to bind for `-v name:/path`, creating the volume.
    pub(crate) fn volume_for_mount(&self, name: &str) -> Result<PathBuf> {
        Ok(PathBuf::from(
            self.volume_create(Some(name), Vec::new())?.0.mountpoint,
        ))
    }

    pub fn volume(&self, name: &str) -> Result<Volume> {
        self.db
            .volume(name)?
            .ok_or_else(|| Error::NotFound(format!("no volume named {name:?}")))
    }

    pub fn volumes(&self) -> Result<Vec<Volume>> {
        self.db.volumes()
    }

    /// Names of the containers whose mounts use the volume.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .db
            .containers()?
            .into_iter()
            .filter(|c| {
                c.config
                    .volumes
                    .iter()
                    .any(|v| v.kind == "volume" && v.source == name)
            })
            .map(|c| c.name)
            .collect())
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let v = self.volume(name)?;
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            if !force {
                return Err(Error::Conflict(format!(
                    "volume {name} is in use by {}",
                    users.join(", ")
                )));
            }
            for u in users {
                self.remove(&u, true)?;
            }
        }
        let dir = self.volumes_dir().join(&v.name);
        // Renamed first: a crash mid-removal leaves no half volume under
        // its name.
        let doomed = self
            .volumes_dir()
            .join(format!(".removing-{}", ids::new_id()));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(|| format!("rename {}", dir.display())),
        }
        self.db.remove_volume(&v.name)?;
        self.emit(berth_base::events::Event::new("volume", "destroy", &v.name));
        if doomed.exists() {
            std::fs::remove_dir_all(&doomed).ctx(|| format!("remove {}", doomed.display()))?;
        }
        Ok(())
    }

    /// Removes the volumes of removed container `c` that `which` picks,
    /// each only while no other container uses it. Failures are warnings:
    /// the container is gone either way.
    pub(crate) fn remove_volumes_of(&self, c: &Container, which: impl Fn(&VolumeMount) -> bool) {
        for v in c
            .config
            .volumes
            .iter()
            .filter(|v| v.kind == "volume" && which(v))
        {
            match self.volume_remove(&v.source, false) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => tracing::warn!("volume {} of {}: {e}", v.source, c.name),
            }
        }
    }

    /// Removes every volume no container uses; returns their names.
    pub fn volume_prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in self.volumes()? {
            if self.volume_users(&v.name)?.is_empty() {
                self.volume_remove(&v.name, false)?;
                removed.push(v.name);
            }
        }
        Ok(removed)
    }
}
