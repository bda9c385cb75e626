//! `berth unshare`: a command in the user namespace an ordinary user's
//! containers will run in (the user's own id as root, the subordinate
//! ranges of /etc/subuid and /etc/subgid above), as `podman unshare`.

use anyhow::{Result, bail};
use berth_base::subid;

pub fn unshare(command: Vec<String>) -> Result<i32> {
    let uid = rustix::process::getuid().as_raw();
    if uid == 0 {
        bail!("berth unshare enters an ordinary user's namespace; root has none to enter");
    }
    let gid = rustix::process::getgid().as_raw();
    let user = subid::user_name(uid).unwrap_or_else(|| uid.to_string());
    let (uids, gids) = subid::user_maps(
        &user,
        uid,
        gid,
        (
            std::path::Path::new(subid::SUBUID),
            std::path::Path::new(subid::SUBGID),
        ),
    )?;
    let argv = if command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        command
    };
    let mut child = subid::spawn_in_userns(&argv, &[("BERTH_USERNS", "1")], &uids, &gids)?;
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
