//! `berth cp`: files between the host and a container's filesystem, as a
//! tar stream. The container's side is always handled by a child process
//! inside the container's view: in its mount namespace while it runs (so
//! volumes and its /etc files are there), chrooted into its root when it
//! does not. The container's symlinks then resolve inside it, whatever they
//! point at: a hostile image cannot make `cp` read or write the host's
//! files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::engine::Engine;
use crate::error::{Error, Result};

impl Engine {
    /// Where the container's files are seen: its running init's mount
    /// namespace, or else its root filesystem (mounted).
    fn view_for_copy(&self, key: &str) -> Result<View> {
        let c = self.container(key)?;
        if c.state.status == crate::model::Status::Running && c.state.pid > 0 {
            return Ok(View::Namespace(c.state.pid));
        }
        let rootfs = self.bundle_dir(&c.id).join("rootfs");
        if !berth_image::snapshot::is_mounted(&rootfs) {
            berth_image::bundle::remount_bundle(&self.images, &c.id)?;
        }
        Ok(View::Root(rootfs))
    }

    /// Copies `src` (in the container) to `dest` on the host: into `dest`
    /// when it is a directory, else as `dest`.
    pub fn copy_out(&self, key: &str, src: &str, dest: &Path) -> Result<()> {
        let view = self.view_for_copy(key)?;
        let src = PathBuf::from(src);
        let name = src
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let (into, rename) = if dest.is_dir() {
            (dest.to_path_buf(), None)
        } else {
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), dest.file_name().map(PathBuf::from))
        };
        let data = in_view(&view, |w| {
            let mut b = tar::Builder::new(w);
            b.follow_symlinks(false);
            let meta = std::fs::symlink_metadata(&src)?;
            if meta.is_dir() {
                b.append_dir_all(&name, &src)?;
            } else {
                b.append_path_with_name(&src, &name)?;
            }
            b.finish()
        })
        .map_err(|e| Error::invalid(format!("cp {}", src.display()), e))?;
        // The archive comes from the container: unpack_in keeps every entry
        // inside `into` (no absolute paths, no `..`, no writing through
        // links).
        let mut a = tar::Archive::new(&data[..]);
        a.set_preserve_permissions(true);
        a.set_overwrite(true);
        for entry in a
            .entries()
            .map_err(|e| Error::invalid("cp", e.to_string()))?
        {
            let mut entry = entry.map_err(|e| Error::invalid("cp", e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| Error::invalid("cp", e.to_string()))?
                .into_owned();
            if let Some(r) = &rename {
                // The top entry takes the destination's name.
                let rel = path.strip_prefix(&name).unwrap_or(&path).to_path_buf();
                let target = if rel.as_os_str().is_empty() {
                    into.join(r)
                } else {
                    into.join(r).join(rel)
                };
                let parent = target.parent().unwrap_or(&into).to_path_buf();
                std::fs::create_dir_all(&parent).map_err(|e| Error::Os {
                    what: format!("create {}", parent.display()),
                    source: e,
                })?;
                entry.unpack(&target).map_err(|e| Error::Os {
                    what: format!("write {}", target.display()),
                    source: e,
                })?;
            } else {
                entry.unpack_in(&into).map_err(|e| Error::Os {
                    what: format!("write into {}", into.display()),
                    source: e,
                })?;
            }
        }
        Ok(())
    }

    /// Copies `src` on the host into the container's directory `dest`.
    pub fn copy_in(&self, key: &str, src: &Path, dest: &str) -> Result<()> {
        let view = self.view_for_copy(key)?;
        let name = src
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| Error::invalid(format!("cp {}", src.display()), "no file name"))?;
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        let meta = std::fs::symlink_metadata(src).map_err(|e| Error::Os {
            what: format!("stat {}", src.display()),
            source: e,
        })?;
        let r = if meta.is_dir() {
            b.append_dir_all(&name, src)
        } else {
            b.append_path_with_name(src, &name)
        };
        r.and_then(|_| b.finish()).map_err(|e| Error::Os {
            what: format!("read {}", src.display()),
            source: e,
        })?;
        let data = b.into_inner().map_err(|e| Error::Os {
            what: "tar".into(),
            source: e,
        })?;
        let dest = PathBuf::from(dest);
        in_view(&view, move |_| {
            if !dest.is_dir() {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory in the container",
                    dest.display()
                )));
            }
            let mut a = tar::Archive::new(&data[..]);
            a.set_preserve_permissions(true);
            a.set_overwrite(true);
            a.unpack(&dest)
        })
        .map_err(|e| {
            Error::invalid(
                format!(
                    "cp to {}",
                    self.container(key).map(|c| c.name).unwrap_or_default()
                ),
                e,
            )
        })?;
        Ok(())
    }
}

enum View {
    /// The mount namespace of this process.
    Namespace(i32),
    Root(PathBuf),
}

/// Runs `f` in a child process inside the container's view; returns what
/// it wrote to the given writer, or its error text.
fn in_view(
    view: &View,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::result::Result<Vec<u8>, String> {
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| e.to_string())?;
    let (er, ew) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| e.to_string())?;
    // Opened here: after setns the host's /proc is out of sight.
    let (ns, root_c) = match view {
        View::Namespace(pid) => {
            let f = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
                .map_err(|e| format!("the container's mount namespace: {e}"))?;
            (Some(f), None)
        }
        View::Root(root) => (
            None,
            Some(
                std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
                    .map_err(|e| e.to_string())?,
            ),
        ),
    };
    // SAFETY: the berth CLI is single-threaded here; the child only uses
    // async-signal-safe calls before chroot, then plain Rust.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    if pid == 0 {
        drop(r);
        drop(er);
        let mut out = std::fs::File::from(w);
        let mut err = std::fs::File::from(ew);
        let code = unsafe {
            let entered = match (&ns, &root_c) {
                (Some(f), _) => {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(f), libc::CLONE_NEWNS) == 0
                }
                (None, Some(r)) => libc::chroot(r.as_ptr()) == 0,
                (None, None) => false,
            };
            if !entered || libc::chdir(c"/".as_ptr()) != 0 {
                let _ = write!(
                    err,
                    "enter the container's root: {}",
                    std::io::Error::last_os_error()
                );
                libc::_exit(1)
            }
            match f(&mut out) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write!(err, "{e}");
                    1
                }
            }
        };
        let _ = out.flush();
        unsafe { libc::_exit(code) };
    }
    drop(w);
    drop(ew);
    let mut data = Vec::new();
    let mut r = std::fs::File::from(r);
    let _ = r.read_to_end(&mut data);
    let mut msg = String::new();
    let _ = std::fs::File::from(er).read_to_string(&mut msg);
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(data)
    } else {
        Err(if msg.is_empty() {
            "the copy failed".into()
        } else {
            msg
        })
    }
}
