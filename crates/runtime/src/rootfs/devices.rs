//! /dev: the default and configured device nodes (bound from the host in a
//! user namespace, where mknod is not allowed) and the usual links.

use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::Mode;

use super::{Rootfs, os};
use crate::error::{Context, Error, Result};
use crate::inroot;
use crate::mountcall::{clone_tree, move_mount};

impl Rootfs<'_> {
    pub(super) fn create_devices(&self, devices: &[LinuxDevice]) -> Result<()> {
        let default = |name: &str, minor| -> (PathBuf, LinuxDeviceType, i64, i64, u32, u32, u32) {
            let (major, minor) = if name == "tty" { (5, 0) } else { (1, minor) };
            (
                PathBuf::from(format!("/dev/{name}")),
                LinuxDeviceType::C,
                major,
                minor,
                0o666,
                0,
                0,
            )
        };
        let mut all = vec![
            default("null", 3),
            default("zero", 5),
            default("full", 7),
            default("random", 8),
            default("urandom", 9),
            default("tty", 0),
        ];
        for d in devices {
            let entry = (
                d.path().clone(),
                d.typ(),
                d.major(),
                d.minor(),
                d.file_mode().unwrap_or(0o666) & 0o7777,
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
            );
            match all.iter_mut().find(|x| x.0 == entry.0) {
                Some(slot) => *slot = entry,
                None => all.push(entry),
            }
        }
        for (path, typ, major, minor, mode, uid, gid) in all {
            self.create_device(&path, typ, major, minor, mode, uid, gid)
                .map_err(|e| match e {
                    Error::Os { what, source } => {
                        Error::os(format!("device {}: {what}", path.display()), source)
                    }
                    other => other,
                })?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn create_device(
        &self,
        path: &Path,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let kind = match typ {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::config(
                    "linux.devices",
                    format!("{}: type \"a\" is not a device", path.display()),
                ));
            }
        };
        if self.userns {
            // mknod is not allowed in a user namespace: bind the host's node.
            let target = inroot::create_file(self.root(), path, 0o000).map_err(os("create"))?;
            let tree =
                clone_tree(path, false).map_err(os(format!("clone host {}", path.display())))?;
            return move_mount(&tree, &target).map_err(os("bind"));
        }
        let (parent, name) = inroot::split(path).map_err(os("split"))?;
        let dir = inroot::mkdir_all(self.root(), parent, 0o755).map_err(os("create parent"))?;
        let dir = inroot::reopen_dir(&dir).map_err(os("open parent"))?;
        let dev = libc::makedev(major as u32, minor as u32);
        let mknod = || {
            rustix::fs::mknodat(
                &dir,
                name,
                rustix::fs::FileType::from_raw_mode(kind),
                Mode::from_raw_mode(mode),
                dev,
            )
        };
        match mknod() {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                // What the image put there is replaced by the real device.
                rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())
                    .ctx(|| "remove the old node")?;
                mknod().ctx(|| "mknod")?;
            }
            Err(e) => return Err(Error::os("mknod", io::Error::from(e))),
        }
        rustix::fs::chownat(
            &dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx(|| "chown")?;
        Ok(())
    }

    pub(super) fn dev_symlinks(&self) -> Result<()> {
        let dev =
            inroot::mkdir_all(self.root(), Path::new("/dev"), 0o755).map_err(os("create /dev"))?;
        let dev = inroot::reopen_dir(&dev).map_err(os("open /dev"))?;
        let mut links = vec![
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
        ];
        if Path::new("/proc/kcore").exists() {
            links.push(("/proc/kcore", "core"));
        }
        let has_pts = self
            .spec
            .mounts()
            .iter()
            .flatten()
            .any(|m| m.destination() == Path::new("/dev/pts"));
        if has_pts {
            let _ = rustix::fs::unlinkat(&dev, "ptmx", rustix::fs::AtFlags::empty());
            links.push(("pts/ptmx", "ptmx"));
        }
        for (target, name) in links {
            match rustix::fs::symlinkat(target, &dev, name) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => {
                    return Err(Error::os(
                        format!("symlink /dev/{name}"),
                        io::Error::from(e),
                    ));
                }
            }
        }
        Ok(())
    }
}
