//! berth-vm for the test binaries that run it: this build's berth-vm and
//! the static agent this build made, or a reason to skip.

use std::path::{Path, PathBuf};

/// berth-vm beside this build's berth, and the flags naming the static
/// agent this build made (scripts/build-vm-agent.sh); None (skip) where
/// the guest kernel (scripts/install-vm-kernel.sh), the agent or QEMU is
/// missing.
pub fn berth_vm() -> Option<(String, String)> {
    let bin = Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("berth-vm");
    let agent = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/static/x86_64-unknown-linux-gnu/release/berth-vm-agent");
    let kernel = Path::new("/usr/local/lib/berth-vm/kernel/lib/modules");
    for (what, ok) in [
        ("berth-vm", bin.is_file()),
        (
            "the static berth-vm-agent (scripts/build-vm-agent.sh)",
            agent.is_file(),
        ),
        (
            "the guest kernel (scripts/install-vm-kernel.sh)",
            kernel.is_dir(),
        ),
        (
            "qemu-system-x86_64",
            crate::support::have("qemu-system-x86_64"),
        ),
    ] {
        if !ok {
            eprintln!("SKIPPED: {what} is missing");
            return None;
        }
    }
    let agent = agent.canonicalize().unwrap();
    Some((
        bin.to_string_lossy().into_owned(),
        format!("agent={}", agent.display()),
    ))
}
