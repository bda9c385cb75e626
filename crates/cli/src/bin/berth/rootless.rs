//! An ordinary user's berth runs in the user's namespace
//! (`berth_base::rootless`): `enter` joins it before anything else runs,
//! `unshare` runs a command there, as `podman unshare`.

use anyhow::{Context, Result};
use berth_base::rootless;

/// The hidden command the pause process runs.
pub const PAUSE_COMMAND: &str = "rootless-pause";

/// Joins the user's namespace when an ordinary user runs berth (once:
/// a berth already in it, such as one `berth unshare` started, stays).
pub fn enter() -> Result<()> {
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        return Ok(());
    }
    let (_, run_dir) = berth_base::paths::user_roots(|k| std::env::var_os(k), uid);
    let exe = std::env::current_exe().context("find berth's own executable")?;
    let argv = [exe.to_string_lossy().into_owned(), PAUSE_COMMAND.into()];
    rootless::enter(&run_dir, &argv).context("enter the user's namespace")
}

pub fn unshare(command: Vec<String>) -> Result<i32> {
    if rootless::host_user().is_none() {
        anyhow::bail!("berth unshare enters an ordinary user's namespace; root has none to enter");
    }
    let argv = if command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        command
    };
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("BERTH_USERNS", "1")
        .status()
        .with_context(|| format!("run {}", argv[0]))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
