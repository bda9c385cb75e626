//! Pinned network namespaces: made without touching the caller's
//! namespace, usable by path, and gone without a trace when removed.

mod support;

use std::net::{TcpListener, TcpStream};
use std::process::Command;

use berth_network::netns;

fn own_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").unwrap()
}

#[test]
fn create_pins_a_fresh_netns_and_remove_leaves_no_mount() {
    let dir = tempfile::tempdir().unwrap();
    let nsdir = dir.path().join("netns");
    let _guard = Unmount(nsdir.clone());
    let before = own_netns();
    let pin = netns::create(&nsdir, "one").unwrap();
    assert_eq!(own_netns(), before, "caller's netns changed");
    assert_eq!(pin, nsdir.join("one"));
    assert!(netns::exists(&pin));
    assert!(support::mounted(&pin));

    // A different namespace from ours, with lo up: a loopback connection
    // works inside it.
    let (inside, connected) = netns::run_in(&pin, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ok = TcpStream::connect(l.local_addr().unwrap()).is_ok();
        (own_netns(), ok)
    })
    .unwrap();
    assert_ne!(inside, before);
    assert!(connected, "lo is not up in the new netns");

    let e = netns::create(&nsdir, "one").unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");

    netns::remove(&pin).unwrap();
    assert!(!support::mounted(&pin));
    assert!(!pin.exists());
    assert!(!netns::exists(&pin));
    netns::remove(&pin).unwrap();
    assert!(netns::run_in(&pin, || ()).is_err());
}

/// The pin directory is a shared mount, as `ip netns` makes /run/netns:
/// pins made and removed later show up in mount namespaces copied earlier.
#[test]
fn pins_propagate_to_other_mount_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let nsdir = dir.path().join("netns");
    let _guard = Unmount(nsdir.clone());
    let first = netns::create(&nsdir, "first").unwrap();
    let mut other = Command::new("unshare")
        .args(["--mount", "--propagation", "unchanged", "sleep", "30"])
        .spawn()
        .unwrap();
    let _kill = Kill(other.id());
    // The other namespace must be copied before the second pin is made.
    let mnt = format!("/proc/{}/ns/mnt", other.id());
    let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    for _ in 0..500 {
        if std::fs::read_link(&mnt).is_ok_and(|l| l != own) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_ne!(
        std::fs::read_link(&mnt).unwrap(),
        own,
        "unshare made no mount ns"
    );
    let fs_type = |p: &std::path::Path| {
        let out = Command::new("nsenter")
            .arg(format!("--mount={mnt}"))
            .args(["stat", "-f", "-c", "%T"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let second = netns::create(&nsdir, "second").unwrap();
    assert_eq!(
        fs_type(&second),
        "nsfs",
        "new pin not seen in the other mount ns"
    );
    netns::remove(&second).unwrap();
    assert_ne!(fs_type(&first), "", "stat failed");
    assert_ne!(fs_type(&second), "nsfs", "removed pin still mounted there");
    netns::remove(&first).unwrap();
    let _ = other.kill();
    let _ = other.wait();
}

struct Kill(u32);

impl Drop for Kill {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this test spawned.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

#[test]
fn a_plain_file_is_not_a_netns_and_names_cannot_escape() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    std::fs::write(&f, b"").unwrap();
    assert!(!netns::exists(&f));
    for bad in ["", "..", "a/b", "."] {
        let e = netns::create(dir.path(), bad).unwrap_err();
        assert!(e.to_string().contains("invalid netns name"), "{bad:?}: {e}");
    }
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        for p in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let _ = netns::remove(&p.path());
        }
        support::unmount_all(&self.0);
    }
}
