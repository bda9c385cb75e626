//! A test binary's `#[ignore]`d tests run again inside the throw-away
//! QEMU guest of scripts/run-in-vm.sh (pure cgroup v2, optionally with
//! systemd as PID 1), for the code paths this host cannot reach.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Boots the guest with the repository and `target` (the directory of
/// the binaries under test) shared, and runs this test binary's ignored
/// tests matching `filter` there. Returns the exit code and the output;
/// None where no guest can boot (no qemu, no kernel): nothing to test.
pub fn run_in_vm(systemd: bool, filter: &str, target: &Path) -> Option<(i32, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/run-in-vm.sh");
    let qemu = Command::new("sh")
        .args(["-c", "command -v qemu-system-x86_64"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !qemu || !script.exists() {
        return None;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&script);
    cmd.args(["-t", "600", "-m", "2048"]);
    if systemd {
        cmd.arg("-s");
    }
    cmd.arg("-w").arg(root.canonicalize().unwrap());
    cmd.arg("-w").arg(target.canonicalize().unwrap());
    cmd.arg("--")
        .arg(exe)
        .args(["--ignored", "--test-threads", "1", "--nocapture", filter]);
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().unwrap_or(-1);
    eprintln!("{text}");

    // 125: the guest itself failed (no kernel, no qemu): nothing to test.
    if code == 125 && !text.contains("test result") {
        eprintln!("SKIPPED: the guest could not boot:\n{text}");
        return None;
    }
    Some((code, text))
}
