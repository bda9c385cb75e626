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
        let default = |name: &str, minor| -> Node {
            let (major, minor) = if name == "tty" { (5, 0) } else { (1, minor) };
            Node {
                path: PathBuf::from(format!("/dev/{name}")),
                typ: LinuxDeviceType::C,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
                index: None,
            }
        };
        let mut all = vec![
            default("null", 3),
            default("zero", 5),
            default("full", 7),
            default("random", 8),
            default("urandom", 9),
            default("tty", 0),
        ];
        for (i, d) in devices.iter().enumerate() {
            let entry = Node {
                path: d.path().clone(),
                typ: d.typ(),
                // A FIFO has no numbers (the spec makes them optional).
                major: d.major(),
                minor: d.minor(),
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
                index: Some(i),
            };
            match all.iter_mut().find(|x| x.path == entry.path) {
                Some(slot) => *slot = entry,
                None => all.push(entry),
            }
        }
        for node in &all {
            self.create_device(node).map_err(|e| match e {
                Error::Os { what, source } => {
                    Error::os(format!("device {}: {what}", node.path.display()), source)
                }
                other => other,
            })?;
        }
        Ok(())
    }

    fn create_device(&self, node: &Node) -> Result<()> {
        let Node {
            path,
            typ,
            major,
            minor,
            mode,
            uid,
            gid,
            index,
        } = node;
        let (path, typ, major, minor, mode, uid, gid) =
            (path.as_path(), *typ, *major, *minor, *mode, *uid, *gid);
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
        if self.userns && kind != libc::S_IFIFO {
            // mknod of a device is not allowed in a user namespace (of a
            // FIFO it is): bind the host's node.
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
                let st = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .ctx(|| "stat the existing file")?;
                let same = st.st_mode & libc::S_IFMT == kind
                    && (kind == libc::S_IFIFO || st.st_rdev == dev);
                if let Some(i) = index.filter(|_| !same) {
                    // The runtime-spec (config-linux.md, "Devices"): a file
                    // at the path that does not match is an error.
                    return Err(Error::config(
                        format!("linux.devices[{i}].path"),
                        format!(
                            "{} exists in the rootfs and is not the requested device",
                            path.display()
                        ),
                    ));
                }
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

/// One node to make in the container: a default device, or the config's
/// `linux.devices[index]`.
struct Node {
    path: PathBuf,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    index: Option<usize>,
}
