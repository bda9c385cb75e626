//! What the guest sees of the host: one directory, exported over 9p,
//! holding the container's rootfs and each bind mount's source, bound
//! there by the host (files and directories alike), and the spec the guest
//! runs, rewritten to name them where the guest mounts that directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::mount::UnmountFlags;
use serde_json::Value;

/// The name of a bind source in the shared directory.
fn entry(i: usize) -> String {
    format!("m{i}")
}

/// Binds the rootfs and every bind mount's source into `share` (the
/// container's directory in its VM's shared directory, which the guest
/// sees at `guest`) and returns the spec for the guest. What was bound
/// before a failure is unbound.
pub fn prepare(id: &str, spec: &Value, bundle: &Path, share: &Path, guest: &str) -> Result<Value> {
    std::fs::create_dir_all(share).with_context(|| format!("create {}", share.display()))?;
    let mut out = spec.clone();
    let made = (|| -> Result<()> {
        let root = spec["root"]["path"]
            .as_str()
            .context("config.json has no root.path")?;
        let root = bundle.join(root);
        bind(&root, &share.join("rootfs"))?;
        out["root"]["path"] = Value::from(format!("{guest}/rootfs"));
        if let Some(mounts) = out["mounts"].as_array_mut() {
            for (i, m) in mounts.iter_mut().enumerate() {
                if !is_bind(m) {
                    continue;
                }
                let source = m["source"].as_str().unwrap_or_default();
                let source = bundle.join(source);
                bind(&source, &share.join(entry(i)))
                    .with_context(|| format!("share the mount of {}", m["destination"]))?;
                m["source"] = Value::from(format!("{guest}/{}", entry(i)));
            }
        }
        Ok(())
    })();
    if let Err(e) = made {
        release(share);
        return Err(e);
    }
    keep_joined_hostname(&mut out);
    for_guest(&mut out, id);
    Ok(out)
}

/// A container joining a UTS namespace (a pod's) takes its hostname from
/// it, not from the spec; the guest cannot join a host namespace, so the
/// spec gets that hostname.
fn keep_joined_hostname(spec: &mut Value) {
    if spec["hostname"].as_str().is_some_and(|h| !h.is_empty()) {
        return;
    }
    let joined = spec["linux"]["namespaces"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["type"] == "uts"))
        .and_then(|n| n["path"].as_str())
        .map(PathBuf::from);
    if let Some(name) = joined.and_then(|p| hostname_in(&p)) {
        spec["hostname"] = Value::from(name);
    }
}

/// The hostname of the UTS namespace at `path`, asked from a thread that
/// joins it (and ends).
fn hostname_in(path: &Path) -> Option<String> {
    let ns = std::fs::File::open(path).ok()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::HostNameAndNISDomainName),
            )
            .ok()?;
            Some(
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .join()
        .ok()
        .flatten()
    })
}

fn is_mount_point(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_string_lossy();
    // Unknown counts as mounted: the caller then leaves it alone.
    info.is_empty()
        || berth_base::mountinfo::mount_points(&info)
            .iter()
            .any(|m| *m == p)
}

fn is_bind(m: &Value) -> bool {
    m["type"] == "bind"
        || m["options"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// A bind of `source` (file or directory) at `target`, made for it.
fn bind(source: &Path, target: &Path) -> Result<()> {
    let meta = std::fs::metadata(source).with_context(|| format!("{}", source.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(target)?;
    } else if meta.is_file() || meta.file_type().is_symlink() {
        std::fs::File::create(target)?;
    } else {
        bail!(
            "{} is neither a file nor a directory: a VM cannot share it",
            source.display()
        );
    }
    rustix::mount::mount_bind_recursive(source, target)
        .with_context(|| format!("bind {} into the shared directory", source.display()))?;
    Ok(())
}

/// The guest's own kernel owns everything the host's namespaces,
/// cgroups and hooks would have given: the container joins the guest's
/// network (the NIC that took over its interface) and gets fresh
/// namespaces of the rest.
fn for_guest(spec: &mut Value, id: &str) {
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
        for n in ns.iter_mut() {
            if let Some(o) = n.as_object_mut() {
                o.remove("path");
            }
        }
    }
    if let Some(linux) = spec["linux"].as_object_mut() {
        // A name for the guest's cgroupfs driver, one per container of
        // the VM; systemd's form means nothing there.
        linux.insert("cgroupsPath".into(), Value::from(format!("/berth-vm/{id}")));
    }
    if let Some(p) = spec["process"].as_object_mut() {
        // Host policies the guest has no profiles for.
        p.remove("apparmorProfile");
        p.remove("selinuxLabel");
    }
    if let Some(o) = spec.as_object_mut() {
        // Hook programs live on the host.
        o.remove("hooks");
    }
}

/// Unbinds everything in `share` (a VM's, or one container's in it) and
/// removes it; what is already gone is fine, so this runs at every end
/// (a keeper's, the holder's, `delete`'s).
pub fn release(share: &Path) {
    let Ok(entries) = std::fs::read_dir(share) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if rustix::mount::unmount(&path, UnmountFlags::DETACH).is_err()
            && e.file_type().is_ok_and(|t| t.is_dir())
            && !is_mount_point(&path)
        {
            // Not a bind itself: a container's directory of binds. (Never
            // into a bind still mounted: that would be the container's
            // own files.)
            release(&path);
        }
        let _ = std::fs::remove_dir(&path).or_else(|_| std::fs::remove_file(&path));
    }
    let _ = std::fs::remove_dir(share);
}

/// The network namespace the host gave the container, if any; the host's
/// own (no network entry) cannot be shared with a VM.
pub fn netns_path(spec: &Value) -> Result<Option<PathBuf>> {
    let Some(ns) = spec["linux"]["namespaces"].as_array() else {
        bail!("{}", HOST_NETWORK);
    };
    match ns.iter().find(|n| n["type"] == "network") {
        None => bail!("{}", HOST_NETWORK),
        Some(n) => Ok(n["path"]
            .as_str()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)),
    }
}

const HOST_NETWORK: &str = "a VM cannot share the host's network namespace: give the container a \
     network of its own (a bridge network, or --network none)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_spec_drops_what_only_the_host_has() {
        let mut s = serde_json::json!({
            "process": {"apparmorProfile": "x", "args": ["sh"]},
            "hooks": {"prestart": [{"path": "/bin/true"}]},
            "linux": {
                "cgroupsPath": "system.slice:berth:abc",
                "namespaces": [
                    {"type": "network", "path": "/run/netns/x"},
                    {"type": "pid"},
                    {"type": "ipc", "path": "/proc/7/ns/ipc"}
                ]
            }
        });
        for_guest(&mut s, "abc");
        assert_eq!(
            s["linux"]["namespaces"],
            serde_json::json!([{"type": "pid"}, {"type": "ipc"}])
        );
        assert_eq!(s["linux"]["cgroupsPath"], "/berth-vm/abc");
        assert!(s.get("hooks").is_none());
        assert!(s["process"].get("apparmorProfile").is_none());
        assert_eq!(s["process"]["args"][0], "sh");
    }

    #[test]
    fn the_hosts_network_is_refused_by_name() {
        let host = serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}});
        assert!(
            netns_path(&host)
                .unwrap_err()
                .to_string()
                .contains("host's network")
        );
        let own = serde_json::json!({"linux": {"namespaces": [{"type": "network"}]}});
        assert_eq!(netns_path(&own).unwrap(), None);
        let given = serde_json::json!({"linux": {"namespaces": [{"type": "network", "path": "/run/netns/a"}]}});
        assert_eq!(
            netns_path(&given).unwrap(),
            Some(PathBuf::from("/run/netns/a"))
        );
    }
}
