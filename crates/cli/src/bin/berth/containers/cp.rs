//! `berth cp`: files between a container and the host, or a tar stream on
//! stdin/stdout with `-`.

use anyhow::{Result, bail};
use berth_engine::Engine;

/// Copies SRC to DEST, exactly one of them CONTAINER:PATH.
pub fn cp(e: &Engine, src: &str, dest: &str) -> Result<()> {
    // A colon before any slash names a container.
    let split = |s: &str| {
        let (c, p) = s.split_once(':')?;
        (!c.contains('/') && !c.is_empty()).then(|| (c.to_string(), p.to_string()))
    };
    // `-` is a tar stream on stdout or stdin, as with docker.
    match (split(src), split(dest)) {
        (Some((c, p)), None) if dest == "-" => e.copy_out_tar(&c, &p, std::io::stdout().lock())?,
        (Some((c, p)), None) => e.copy_out(&c, &p, std::path::Path::new(dest))?,
        (None, Some((c, p))) if src == "-" => e.copy_in_tar(&c, std::io::stdin().lock(), &p)?,
        (None, Some((c, p))) => e.copy_in(&c, std::path::Path::new(src), &p)?,
        _ => bail!("cp: exactly one of the two paths must be CONTAINER:PATH"),
    }
    Ok(())
}

/// `export CTR [-o FILE]`: the container's filesystem as a tar stream, to
/// stdout (never a terminal) or to the path as given.
pub fn export(e: &Engine, container: &str, output: &std::path::Path) -> Result<()> {
    if output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        if std::io::IsTerminal::is_terminal(&stdout) {
            bail!("not writing a tar stream to a terminal: redirect it or give -o FILE");
        }
        e.export(container, stdout.lock())?;
        return Ok(());
    }
    berth_image::archive::write_as_given(output, |w, _| {
        e.export(container, w).map_err(|err| {
            berth_image::Error::invalid(format!("export {container}"), err.to_string())
        })
    })?;
    Ok(())
}
