//! `--output type=tar|local`: the built image's files, as a tar stream
//! or in a directory (BuildKit's exporters of the same names), read from
//! a container of the image that never runs.

use std::path::PathBuf;

use berth_engine::Engine;
use berth_engine::model::{ContainerConfig, NetworkMode};
use berth_image::store::ImageRecord;

use crate::error::{Error, Result};

pub enum Files {
    /// A tar stream to this file (`-`: stdout), written as `save -o`
    /// writes: a FIFO or device written to, a regular file replaced.
    Tar(PathBuf),
    /// Unpacked into this directory (made if missing).
    Dir(PathBuf),
}

pub fn write_files(engine: &Engine, img: &ImageRecord, to: &Files) -> Result<()> {
    let c = engine.create(
        img,
        None,
        ContainerConfig {
            image: img.id.to_string(),
            cmd: Some(vec!["/bin/sh".into()]),
            entrypoint: Some(Vec::new()),
            user: Some("0:0".into()),
            network: NetworkMode::None,
            owner: Some("berth build".into()),
            ..Default::default()
        },
    )?;
    let res = write_from(engine, &c.id, to);
    let removed = engine.remove(&c.id, true);
    res?;
    Ok(removed?)
}

fn write_from(engine: &Engine, id: &str, to: &Files) -> Result<()> {
    match to {
        Files::Tar(dest) if dest.as_os_str() == "-" => {
            engine.export(id, std::io::stdout().lock())?;
        }
        Files::Tar(dest) => {
            berth_image::archive::write_as_given(dest, |w, what| {
                engine
                    .export(id, w)
                    .map_err(|e| berth_image::Error::invalid(what, e.to_string()))
            })?;
        }
        Files::Dir(dir) => {
            std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
            // Through a temporary file: an image may be larger than memory.
            let mut f = engine.images.temp_file()?;
            engine.export(id, &mut f)?;
            use std::io::Seek;
            f.rewind().map_err(Error::io("rewind the exported files"))?;
            // tar's unpack keeps every entry inside `dir`: no absolute
            // paths, no `..`, no writing through a link an entry made.
            let mut a = tar::Archive::new(f);
            a.set_preserve_permissions(true);
            a.set_preserve_ownerships(true);
            a.set_overwrite(true);
            a.unpack(dir)
                .map_err(Error::io(format!("write into {}", dir.display())))?;
        }
    }
    Ok(())
}
