//! `save -o` writes to the path as the user gave it (a FIFO or a device is
//! written to, a symlink followed, a regular file replaced whole), `-o -`
//! and `load -i -` are streams, and `load` names what it loaded.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::support::*;

const PROMPT: Duration = Duration::from_secs(30);

/// A sandbox with the base fixture loaded as `localhost/base:t`.
fn with_image() -> Sandbox {
    let sb = Sandbox::new();
    sb.ok(&["load", "-i", fixture("oci/base").to_str().unwrap()]);
    sb
}

/// The members of a docker archive.
fn members(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    let mut v: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_archive(tar: &[u8], what: &str) {
    let m = members(tar);
    assert!(
        m.iter().any(|n| n == "manifest.json") && m.iter().any(|n| n.ends_with("layer.tar")),
        "{what} is no docker archive: {m:?}"
    );
}

fn save_to(sb: &Sandbox, out: &Path) {
    let (o, _) = sb.berth_within(&["save", "-o", out.to_str().unwrap(), "base:t"], PROMPT);
    assert!(
        o.status.success(),
        "save -o {}: {}",
        out.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn save_writes_through_fifos_devices_and_links_and_replaces_files_whole() {
    let sb = with_image();
    let dir = sb.path();

    // A regular file: replaced by a new one (another inode), whole.
    let file = dir.join("out.tar");
    fs::write(&file, b"old").unwrap();
    let old_ino = fs::metadata(&file).unwrap().ino();
    save_to(&sb, &file);
    assert_ne!(fs::metadata(&file).unwrap().ino(), old_ino, "not replaced");
    assert_archive(&fs::read(&file).unwrap(), "the file");
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp") || n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "temp files remain: {leftovers:?}");

    // A symlink is followed: the link stays, its target gets the archive.
    let target = dir.join("target.tar");
    fs::write(&target, b"old").unwrap();
    let link = dir.join("link.tar");
    std::os::unix::fs::symlink("target.tar", &link).unwrap();
    save_to(&sb, &link);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_archive(&fs::read(&target).unwrap(), "the link's target");
    // A dangling one makes its target.
    let dangling = dir.join("dangling.tar");
    std::os::unix::fs::symlink("made.tar", &dangling).unwrap();
    save_to(&sb, &dangling);
    assert!(
        fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_archive(&fs::read(dir.join("made.tar")).unwrap(), "the made target");

    // A character device is written to, not replaced (a null device of
    // the test's own: never the host's /dev/null).
    let null = dir.join("null");
    let made = std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    save_to(&sb, &null);
    assert!(
        fs::symlink_metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device()
    );

    // A FIFO is written to: a reader on the other end gets the archive.
    let fifo = dir.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (tx, rx) = mpsc::channel();
    let reader = fifo.clone();
    // If save replaced the FIFO this thread waits forever in open; the
    // test fails at the timeout below and the thread ends with the process.
    std::thread::spawn(move || {
        let _ = tx.send(fs::read(&reader).unwrap());
    });
    save_to(&sb, &fifo);
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the FIFO's reader got nothing: was the FIFO replaced?");
    assert_archive(&got, "what the FIFO carried");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // A link to this process's stdout (what /dev/stdout is) writes to the
    // pipe on stdout; the link stays.
    let to_stdout = dir.join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &to_stdout).unwrap();
    let (o, _) = sb.berth_within(
        &["save", "-o", to_stdout.to_str().unwrap(), "base:t"],
        PROMPT,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_archive(&o.stdout, "stdout through a link");
    assert!(
        fs::symlink_metadata(&to_stdout)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A directory is refused by name.
    let err = sb.fails(&["save", "-o", dir.to_str().unwrap(), "base:t"]);
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn save_and_load_stream_through_stdout_and_stdin() {
    let sb = with_image();
    let (o, _) = sb.berth_within(&["save", "-o", "-", "base:t"], PROMPT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_archive(&o.stdout, "save -o -");
    // Without -o, stdout too (docker's default).
    let (o2, _) = sb.berth_within(&["save", "base:t"], PROMPT);
    assert!(
        o2.status.success(),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    assert_eq!(o2.stdout, o.stdout);
    let archive = sb.path().join("a.tar");
    fs::write(&archive, &o.stdout).unwrap();

    // Into a fresh store from stdin, with -i - and without -i.
    for args in [&["load", "-i", "-"][..], &["load"][..]] {
        let other = sb.path().join(format!("other-{}", args.len()));
        let out = sb
            .cmd_root(&other)
            .args(args)
            .stdin(fs::File::open(&archive).unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Loaded image: localhost/base:t\n"
        );
        let listed = sb.cmd_root(&other).args(["images", "-q"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
    }
    // An OCI layout cannot go to a stream.
    let err = sb.fails(&["save", "--format", "oci-dir", "-o", "-", "base:t"]);
    assert!(err.contains("directory"), "{err}");
}

#[test]
fn load_names_the_tags_it_loaded_not_the_images_other_names() {
    let sb = with_image();
    sb.ok(&["tag", "base:t", "aaa:1", "zzz:2"]);
    let out = sb.path().join("zzz.tar");
    let (o, _) = sb.berth_within(&["save", "-o", out.to_str().unwrap(), "zzz:2"], PROMPT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The image is in the store under three names; the archive has one.
    let said = sb.ok(&["load", "-i", out.to_str().unwrap()]);
    assert_eq!(said, "Loaded image: localhost/zzz:2\n");
}
