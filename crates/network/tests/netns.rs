//! Pinned network namespaces: made without touching the caller's
//! namespace, usable by path, and gone without a trace when removed.

mod support;

use std::net::{TcpListener, TcpStream};

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
