//! containerd with its CRI plugin, as the benchmark runs it: its own
//! instance (never the host's /run/containerd), every path under the
//! target's directory on tmpfs, overlayfs snapshots, runc through the v2
//! shim with cgroupfs, the benchmark's CNI configuration, the pause image
//! from the local registry.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::daemon::Daemon;

/// Writes config.toml and the registry's hosts.toml under `dir`; returns
/// the config's path.
///
/// Settings this host needs: `restrict_oom_score_adj` (no
/// CAP_SYS_RESOURCE here, so the pause container's -998 would be refused),
/// a `sandbox_image` that exists locally, and plain HTTP for the registry
/// on 127.0.0.1 (a hosts.toml under `registry.config_path`). Netns pins go
/// under the state directory (`netns_mounts_under_state_dir`), so nothing
/// lands in the host's /run/netns.
pub fn write_config(
    dir: &Path,
    socket: &Path,
    registry: &str,
    pause_image: &str,
    cni_conf_dir: &Path,
    cni_bin_dir: &str,
) -> Result<std::path::PathBuf> {
    let hosts = dir.join("certs.d").join(registry);
    std::fs::create_dir_all(&hosts)?;
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://{registry}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )?;
    let d = dir.display();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let config = format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"

[grpc]
  address = "{sock}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.cni]
  bin_dir = "{cni_bin_dir}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{d}/runc"

[{cri}.registry]
  config_path = "{d}/certs.d"
"#,
        sock = socket.display(),
        cni_conf = cni_conf_dir.display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Starts containerd on `config` in the cgroup whose cgroup.procs is
/// `procs`.
pub fn start(binary: &Path, config: &Path, procs: &Path, dir: &Path) -> Result<Daemon> {
    let mut cmd = Command::new(binary);
    cmd.arg("--config").arg(config);
    Daemon::spawn(cmd, procs, &dir.join("containerd.log"))
}

/// `containerd --version`, first line.
pub fn version(binary: &Path) -> String {
    crate::runtime::version(binary)
}
