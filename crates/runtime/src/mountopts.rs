//! The options of a config.json mount, sorted into what each mount call
//! needs: mount(2) flags, filesystem data, propagation, and the attributes
//! that mount_setattr(2) applies to one mount or a whole tree.

use crate::error::{Error, Result};

/// mount(2) flags.
pub type MsFlags = libc::c_ulong;

// mount_setattr(2) attributes.
pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;
pub const ATTR_ATIME_MASK: u64 = 0x70;
pub const ATTR_NOATIME: u64 = 0x10;
pub const ATTR_STRICTATIME: u64 = 0x20;
pub const ATTR_NODIRATIME: u64 = 0x80;
pub const ATTR_NOSYMFOLLOW: u64 = 0x200000;

/// A set/clear pair of mount attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub set: u64,
    pub clr: u64,
}

impl Attrs {
    fn add(&mut self, set: u64, clr: u64) {
        self.set = (self.set & !clr) | set;
        self.clr = (self.clr & !set) | clr;
    }

    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clr == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOpts {
    /// Flags for mount(2) of a filesystem (not propagation).
    pub flags: MsFlags,
    /// A bind mount ("bind", "rbind" or type "bind").
    pub bind: bool,
    /// Bind the whole tree ("rbind").
    pub recursive: bool,
    /// Attributes for the top mount (what `mount -o remount,bind,ro`
    /// would change).
    pub attrs: Attrs,
    /// Attributes for every mount of the tree ("rro", "rnosuid"...).
    pub rec_attrs: Attrs,
    /// Propagation changes, in order, each with its MS_REC bit.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, comma-joined.
    pub data: String,
    /// Copy the directory's former content into a fresh tmpfs.
    pub tmpcopyup: bool,
    /// An idmapped mount ("idmap" or "ridmap").
    pub idmap: bool,
    /// "ridmap": the mapping applies to every mount of the tree.
    pub idmap_recursive: bool,
}

pub fn parse(options: &[String], typ: Option<&str>, field: &str) -> Result<MountOpts> {
    let mut o = MountOpts {
        bind: typ == Some("bind"),
        ..Default::default()
    };
    let mut data = Vec::new();
    for opt in options {
        // (mount(2) flag to set, to clear, mount attribute to set, to clear)
        let simple: Option<(MsFlags, MsFlags, u64, u64)> = match opt.as_str() {
            "defaults" => Some((0, 0, 0, 0)),
            "ro" => Some((libc::MS_RDONLY, 0, ATTR_RDONLY, 0)),
            "rw" => Some((0, libc::MS_RDONLY, 0, ATTR_RDONLY)),
            "nosuid" => Some((libc::MS_NOSUID, 0, ATTR_NOSUID, 0)),
            "suid" => Some((0, libc::MS_NOSUID, 0, ATTR_NOSUID)),
            "nodev" => Some((libc::MS_NODEV, 0, ATTR_NODEV, 0)),
            "dev" => Some((0, libc::MS_NODEV, 0, ATTR_NODEV)),
            "noexec" => Some((libc::MS_NOEXEC, 0, ATTR_NOEXEC, 0)),
            "exec" => Some((0, libc::MS_NOEXEC, 0, ATTR_NOEXEC)),
            "noatime" => Some((libc::MS_NOATIME, 0, ATTR_NOATIME, ATTR_ATIME_MASK)),
            "atime" => Some((0, libc::MS_NOATIME, 0, ATTR_ATIME_MASK)),
            "relatime" => Some((libc::MS_RELATIME, 0, 0, ATTR_ATIME_MASK)),
            "norelatime" => Some((0, libc::MS_RELATIME, 0, 0)),
            "strictatime" => Some((libc::MS_STRICTATIME, 0, ATTR_STRICTATIME, ATTR_ATIME_MASK)),
            "nostrictatime" => Some((0, libc::MS_STRICTATIME, 0, 0)),
            "nodiratime" => Some((libc::MS_NODIRATIME, 0, ATTR_NODIRATIME, 0)),
            "diratime" => Some((0, libc::MS_NODIRATIME, 0, ATTR_NODIRATIME)),
            "nosymfollow" => Some((libc::MS_NOSYMFOLLOW, 0, ATTR_NOSYMFOLLOW, 0)),
            "symfollow" => Some((0, libc::MS_NOSYMFOLLOW, 0, ATTR_NOSYMFOLLOW)),
            "sync" => Some((libc::MS_SYNCHRONOUS, 0, 0, 0)),
            "async" => Some((0, libc::MS_SYNCHRONOUS, 0, 0)),
            "dirsync" => Some((libc::MS_DIRSYNC, 0, 0, 0)),
            "mand" => Some((libc::MS_MANDLOCK, 0, 0, 0)),
            "nomand" => Some((0, libc::MS_MANDLOCK, 0, 0)),
            "lazytime" => Some((libc::MS_LAZYTIME, 0, 0, 0)),
            "nolazytime" => Some((0, libc::MS_LAZYTIME, 0, 0)),
            "iversion" => Some((libc::MS_I_VERSION, 0, 0, 0)),
            "noiversion" => Some((0, libc::MS_I_VERSION, 0, 0)),
            "silent" => Some((libc::MS_SILENT, 0, 0, 0)),
            "loud" => Some((0, libc::MS_SILENT, 0, 0)),
            _ => None,
        };
        if let Some((set, clr, aset, aclr)) = simple {
            o.flags = (o.flags & !clr) | set;
            if aset != 0 || aclr != 0 {
                o.attrs.add(aset, aclr);
            }
            continue;
        }
        let rec = |a: u64, clr: bool| -> (u64, u64) { if clr { (0, a) } else { (a, 0) } };
        let rec_attr = match opt.as_str() {
            "rro" => Some(rec(ATTR_RDONLY, false)),
            "rrw" => Some(rec(ATTR_RDONLY, true)),
            "rnosuid" => Some(rec(ATTR_NOSUID, false)),
            "rsuid" => Some(rec(ATTR_NOSUID, true)),
            "rnodev" => Some(rec(ATTR_NODEV, false)),
            "rdev" => Some(rec(ATTR_NODEV, true)),
            "rnoexec" => Some(rec(ATTR_NOEXEC, false)),
            "rexec" => Some(rec(ATTR_NOEXEC, true)),
            "rnodiratime" => Some(rec(ATTR_NODIRATIME, false)),
            "rdiratime" => Some(rec(ATTR_NODIRATIME, true)),
            "rnosymfollow" => Some(rec(ATTR_NOSYMFOLLOW, false)),
            "rsymfollow" => Some(rec(ATTR_NOSYMFOLLOW, true)),
            "rnoatime" => Some((ATTR_NOATIME, ATTR_ATIME_MASK)),
            "ratime" | "rrelatime" => Some((0, ATTR_ATIME_MASK)),
            "rstrictatime" => Some((ATTR_STRICTATIME, ATTR_ATIME_MASK)),
            "rnorelatime" | "rnostrictatime" => Some((0, 0)),
            _ => None,
        };
        if let Some((set, clr)) = rec_attr {
            o.rec_attrs.add(set, clr);
            continue;
        }
        let prop = match opt.as_str() {
            "private" => Some(libc::MS_PRIVATE),
            "rprivate" => Some(libc::MS_PRIVATE | libc::MS_REC),
            "shared" => Some(libc::MS_SHARED),
            "rshared" => Some(libc::MS_SHARED | libc::MS_REC),
            "slave" => Some(libc::MS_SLAVE),
            "rslave" => Some(libc::MS_SLAVE | libc::MS_REC),
            "unbindable" => Some(libc::MS_UNBINDABLE),
            "runbindable" => Some(libc::MS_UNBINDABLE | libc::MS_REC),
            _ => None,
        };
        if let Some(p) = prop {
            o.propagation.push(p);
            continue;
        }
        match opt.as_str() {
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "tmpcopyup" => o.tmpcopyup = true,
            "idmap" => o.idmap = true,
            "ridmap" => {
                o.idmap = true;
                o.idmap_recursive = true;
            }
            "remount" => {
                return Err(Error::config(
                    field,
                    "\"remount\" cannot be used: the container's mounts are all new",
                ));
            }
            "" => {}
            other => data.push(other.to_string()),
        }
    }
    o.data = data.join(",");
    Ok(o)
}

/// rootfsPropagation as the flags for "/".
pub fn root_propagation(p: Option<&str>) -> Result<MsFlags> {
    Ok(match p.unwrap_or("") {
        "" => libc::MS_SLAVE | libc::MS_REC,
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        other => {
            return Err(Error::config(
                "linux.rootfsPropagation",
                format!("{other:?} is not a propagation mode"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOpts {
        let v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        parse(&v, None, "mounts[0].options").unwrap()
    }

    #[test]
    fn sorts_options() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind);

        let o = p(&["rbind", "ro", "rprivate", "rnoexec"]);
        assert!(o.bind && o.recursive);
        assert_eq!(
            o.attrs,
            Attrs {
                set: ATTR_RDONLY,
                clr: 0
            }
        );
        assert_eq!(
            o.rec_attrs,
            Attrs {
                set: ATTR_NOEXEC,
                clr: 0
            }
        );
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
    }

    #[test]
    fn later_options_win() {
        let o = p(&["ro", "rw"]);
        assert_eq!(o.flags & libc::MS_RDONLY, 0);
        assert_eq!(
            o.attrs,
            Attrs {
                set: 0,
                clr: ATTR_RDONLY
            }
        );
    }

    #[test]
    fn rejects_remount() {
        assert!(parse(&["remount".into()], None, "mounts[1].options").is_err());
    }
}
