//! An ordinary user's berth: `unshare` into the user namespace of the
//! user's subordinate ids, clear errors where there are none, per-user
//! paths. The users are made for the test and removed after it.

use std::process::{Command, Output};

use crate::support::{berth_bin, have};

/// A user made for one test (useradd, which gives Debian's subordinate
/// ranges unless told not to), removed with its home when dropped.
struct TestUser {
    name: String,
}

/// useradd and userdel lock /etc/passwd; tests make users one at a time.
fn users_lock() -> berth_base::lock::Flock {
    berth_base::lock::Flock::acquire(
        std::path::Path::new("/tmp/berth-test-users.lock"),
        berth_base::lock::Kind::Exclusive,
        berth_base::lock::Wait::For(std::time::Duration::from_secs(60)),
    )
    .unwrap()
    .unwrap()
}

impl TestUser {
    fn new(with_ranges: bool) -> Option<TestUser> {
        if !have("useradd") || !have("newuidmap") || !have("runuser") {
            eprintln!("SKIPPED: useradd, newuidmap (uidmap) and runuser are needed");
            return None;
        }
        let name = format!("bt{}", &berth_base::ids::random_hex(4));
        let _l = users_lock();
        let mut c = Command::new("useradd");
        c.args(["-m", "-s", "/bin/sh"]);
        if !with_ranges {
            c.args(["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
        }
        let out = c.arg(&name).output().unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let u = TestUser { name };
        if with_ranges
            && !std::fs::read_to_string("/etc/subuid")
                .unwrap_or_default()
                .contains(&format!("{}:", u.name))
        {
            eprintln!("SKIPPED: useradd gave {} no subordinate ids", u.name);
            return None;
        }
        Some(u)
    }

    /// berth as this user, from a directory it may read.
    fn berth(&self, args: &[&str]) -> Output {
        Command::new("runuser")
            .args([
                "-u",
                &self.name,
                "--",
                "env",
                "-i",
                "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
            ])
            .arg(format!("HOME=/home/{}", self.name))
            .arg(berth_bin())
            .args(args)
            .current_dir("/")
            .output()
            .unwrap()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // berth's run root for a user without XDG_RUNTIME_DIR.
        if let Ok(out) = Command::new("id").args(["-u", &self.name]).output() {
            let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !uid.is_empty() {
                let _ = std::fs::remove_dir_all(format!("/tmp/berth-run-{uid}"));
            }
        }
        let _l = users_lock();
        // Processes the user left (none should be) go first.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

#[test]
fn unshare_maps_the_user_to_root_and_its_subordinate_ids_above() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    let uid: u32 = String::from_utf8(
        Command::new("id")
            .args(["-u", &u.name])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let sub = std::fs::read_to_string("/etc/subuid").unwrap();
    let line = sub
        .lines()
        .find(|l| l.starts_with(&format!("{}:", u.name)))
        .unwrap();
    let f: Vec<&str> = line.split(':').collect();
    let out = u.berth(&[
        "unshare",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo $BERTH_USERNS; exit 3",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"]);
    assert_eq!(
        lines[1],
        ["0".to_string(), uid.to_string(), "1".into()]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(lines[2], ["1", f[1], f[2]]);
    assert_eq!(lines[3], ["1"]);
    // The user's store goes under its home (XDG), never /var/lib/berth.
    let out = u.berth(&[
        "info",
        "--format",
        "{{.Store.GraphRoot}} {{.Host.Rootless}}",
    ]);
    let info = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        info.trim(),
        format!("/home/{}/.local/share/berth true", u.name),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_user_without_subordinate_ids_is_told_what_to_add() {
    let Some(u) = TestUser::new(false) else {
        return;
    };
    let out = u.berth(&["unshare", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&format!("/etc/subuid has no range for {}", u.name))
            && err.contains("usermod --add-subuids"),
        "{err}"
    );
    // Root has no user namespace to enter.
    let out = Command::new(berth_bin())
        .args(["unshare", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("root has none"));
}
