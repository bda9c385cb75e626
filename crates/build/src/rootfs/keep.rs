//! What survives when a rootfs build empties `/`, and what its walks
//! leave out (neither is the image's): the explicit list below, every
//! mount point (/proc/self/mountinfo), berth's binary directory, its
//! store and run root, and the build context.

use std::path::{Path, PathBuf};

use berth_image::protect::Protected;

use berth_base::mountinfo::mount_points;

use crate::error::{Error, Result};

/// Kept whether or not they are mounts here: the kernel's and the
/// runtime's files, which a container's image never owns (a working
/// container has them mounted over the image too).
pub const ALWAYS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run/secrets",
    "/run/.containerenv",
    "/.dockerenv",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
];

/// Directories berth's binary may not be in: keeping them would keep
/// the image's own files there out of every layer.
const SHARED_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/sbin",
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/lib",
    "/usr/lib",
    "/opt",
    "/root",
    "/tmp",
    "/var",
    "/etc",
    "/home",
];

/// The build's own paths, as the process sees them.
#[derive(Debug, Clone, Default)]
pub struct Own {
    /// The directory of the berth binary.
    pub exe_dir: PathBuf,
    /// `--root` and `--runroot`.
    pub store_root: PathBuf,
    pub run_root: PathBuf,
    /// The build context, when there is one.
    pub context: Option<PathBuf>,
}

impl Own {
    /// This process's, absolute and with symlinks resolved (the walk
    /// sees real paths).
    pub fn of_process(store_root: &Path, run_root: &Path, context: Option<&Path>) -> Result<Own> {
        let real = |p: &Path, what: &str| {
            std::fs::canonicalize(p).map_err(Error::io(format!("{what} {}", p.display())))
        };
        let exe = std::env::current_exe().map_err(Error::io("find the berth binary"))?;
        let exe = real(&exe, "the berth binary")?;
        Ok(Own {
            exe_dir: exe.parent().unwrap_or(Path::new("/")).to_path_buf(),
            store_root: real(store_root, "the store root")?,
            run_root: real(run_root, "the run root")?,
            context: context.map(|c| real(c, "the build context")).transpose()?,
        })
    }
}

/// The kept paths: `ALWAYS`, `mounts` (mount points but `/`) and `own`.
/// Refused when one of the build's own paths is `/` itself or berth sits
/// in a directory the image shares (`/usr/bin`): keeping it would keep
/// everything, or the image's own files, out of the build.
pub fn keep_list(own: &Own, mounts: &[String]) -> Result<Protected> {
    let exe = own.exe_dir.to_string_lossy().into_owned();
    let trimmed = if exe == "/" {
        "/"
    } else {
        exe.trim_end_matches('/')
    };
    if SHARED_DIRS.contains(&trimmed) {
        return Err(Error::invalid(
            "--isolation rootfs",
            format!(
                "berth is in {exe}, which images share; put it in a directory of its own (the builder image has /berth/berth): that directory is kept out of every layer"
            ),
        ));
    }
    let mut paths: Vec<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
    for (what, p) in [
        ("the store root (--root)", Some(&own.store_root)),
        ("the run root (--runroot)", Some(&own.run_root)),
        ("the build context", own.context.as_ref()),
    ] {
        let Some(p) = p else { continue };
        if p.components().count() <= 1 {
            return Err(Error::invalid(
                "--isolation rootfs",
                format!("{what} is /: a build in / cannot keep it apart from the image"),
            ));
        }
        paths.push(p.to_string_lossy().into_owned());
    }
    paths.push(exe);
    paths.extend(mounts.iter().filter(|m| m.as_str() != "/").cloned());
    Ok(Protected::new(paths.iter().map(|p| p.as_bytes())))
}

/// This process's mount points.
pub fn process_mounts() -> Result<Vec<String>> {
    let t = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(Error::io("read /proc/self/mountinfo"))?;
    Ok(mount_points(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Own {
        Own {
            exe_dir: "/berth".into(),
            store_root: "/var/lib/berth".into(),
            run_root: "/run/berth".into(),
            context: Some("/workspace".into()),
        }
    }

    #[test]
    fn the_list_is_the_fixed_paths_mounts_and_the_builds_own() {
        let mi = "\
600 500 0:60 / / rw - overlay overlay rw
601 600 0:61 / /proc rw - proc proc rw
602 600 0:62 / /dev rw - tmpfs tmpfs rw
603 600 8:1 /ctx /workspace ro - ext4 /dev/vda rw
604 600 8:1 /x /etc/hosts rw - ext4 /dev/vda rw
605 600 8:1 /y /mnt/with\\040space rw - ext4 /dev/vda rw
";
        let mounts = mount_points(mi);
        assert!(
            mounts.contains(&"/mnt/with space".to_string()),
            "{mounts:?}"
        );
        let k = keep_list(&own(), &mounts).unwrap();
        let got: Vec<String> = k
            .paths()
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        for want in [
            "proc",
            "sys",
            "dev",
            "etc/hosts",
            "etc/resolv.conf",
            "etc/hostname",
            "run/secrets",
            "berth",
            "var/lib/berth",
            "run/berth",
            "workspace",
            "mnt/with space",
        ] {
            assert!(got.contains(&want.to_string()), "{want} in {got:?}");
        }
        // Nothing else: not `/`, not a parent of a kept path.
        assert!(!got.iter().any(|p| p.is_empty() || p == "var" || p == "etc"));
        assert!(k.is_kept(b"var/lib/berth/layers"));
        assert!(!k.is_kept(b"var/lib/dpkg"));
        assert!(!k.is_kept(b"etc/passwd"));
    }

    #[test]
    fn berth_in_a_shared_directory_or_a_store_at_the_root_is_refused() {
        for dir in ["/usr/local/bin", "/bin", "/", "/tmp"] {
            let o = Own {
                exe_dir: dir.into(),
                ..own()
            };
            let e = keep_list(&o, &[]).unwrap_err().to_string();
            assert!(e.contains("directory of its own"), "{dir}: {e}");
        }
        let o = Own {
            store_root: "/".into(),
            ..own()
        };
        let e = keep_list(&o, &[]).unwrap_err().to_string();
        assert!(e.contains("the store root (--root) is /"), "{e}");
        let o = Own {
            context: Some("/".into()),
            ..own()
        };
        assert!(keep_list(&o, &[]).is_err());
    }
}
