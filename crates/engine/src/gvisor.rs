//! What gVisor's runsc needs of berth, beyond runc's command line: the
//! network it serves the container with.

use std::sync::OnceLock;

use crate::model::NetworkMode;

/// runsc's flags for a container on `mode`, unless `given` already names
/// a network. `--network none` is gVisor's own loopback only; the host's
/// network is its host mode; every other mode is a namespace berth made
/// or joined, whose interfaces gVisor's own stack ("sandbox") copies, or,
/// where runsc would refuse that namespace, serves through the host
/// kernel in that same namespace ("host", `netstack_refused`).
pub fn flags(mode: &NetworkMode, given: &[String]) -> Vec<String> {
    let named = given.iter().any(|f| {
        let f = f.trim_start_matches('-');
        f == "network" || f.starts_with("network=")
    });
    if named {
        return Vec::new();
    }
    let network = match mode {
        NetworkMode::None => "none",
        NetworkMode::Host => "host",
        _ if netstack_refused() => "host",
        _ => "sandbox",
    };
    vec![format!("--network={network}")]
}

/// runsc before mid-2024 takes a namespace where
/// /proc/sys/net/core/rmem_default exists for the host's and refuses to
/// copy its interfaces ("cannot run with network enabled in root network
/// namespace"); kernels since 6.8 show that file in every namespace
/// (gVisor issue 10704). Asked once, of a new namespace on a thread of
/// its own.
fn netstack_refused() -> bool {
    static REFUSED: OnceLock<bool> = OnceLock::new();
    *REFUSED.get_or_init(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unshare of this thread's network namespace only;
                // the thread ends right after.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return true;
                }
                // /proc/sys/net answers for the reading thread's namespace.
                std::path::Path::new("/proc/sys/net/core/rmem_default").exists()
            })
            .join()
            .unwrap_or(true)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_gets_its_network_unless_one_is_given() {
        assert_eq!(flags(&NetworkMode::None, &[]), ["--network=none"]);
        assert_eq!(flags(&NetworkMode::Host, &[]), ["--network=host"]);
        let own = flags(&NetworkMode::Default, &[]);
        assert!(
            own == ["--network=host"] || own == ["--network=sandbox"],
            "{own:?}"
        );
        assert!(flags(&NetworkMode::Pasta, &["network=sandbox".into()]).is_empty());
        assert!(flags(&NetworkMode::None, &["--network=host".into()]).is_empty());
    }
}
