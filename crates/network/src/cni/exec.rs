//! Running one CNI plugin binary once: environment, stdin, timeout, and
//! turning its exit into a result or one clear error.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::CniError;

/// The CNI operations berth issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Check,
    Del,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Check => "CHECK",
            Op::Del => "DEL",
        }
    }
}

/// Everything but stdin that a plugin invocation passes: the CNI_* variables.
pub struct Env<'a> {
    pub op: Op,
    pub network: &'a str,
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// Already joined as `K=V;K=V`.
    pub args: &'a str,
    /// Already joined with ':'.
    pub path: &'a str,
    /// An fd the plugin keeps open as long as it runs: the attachment's
    /// lock, so that a plugin left running by a killed berth holds off the
    /// next ADD or DEL of the same attachment until it is done.
    pub hold: Option<std::os::fd::RawFd>,
}

/// The error object a failing plugin prints (CNI spec, "Error").
#[derive(Deserialize)]
struct PluginError {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Finds plugin `kind` in `dirs`, the way CNI_PATH is searched.
pub fn find(kind: &str, network: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    // The type names a file in the plugin dirs; anything path-like could
    // escape them.
    let valid = !kind.is_empty()
        && !kind.starts_with('.')
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(CniError::BadPluginType {
            network: network.to_string(),
            kind: kind.to_string(),
        });
    }
    for d in dirs {
        let p = d.join(kind);
        if let Ok(m) = p.metadata()
            && m.is_file()
        {
            return Ok(p);
        }
    }
    Err(CniError::PluginNotFound {
        plugin: kind.to_string(),
        network: network.to_string(),
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Runs `binary` (plugin `kind`) with `env` and `stdin`; returns its stdout
/// on success.
pub fn run(
    binary: &Path,
    kind: &str,
    env: &Env<'_>,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let failed = |reason: String| CniError::PluginFailed {
        plugin: kind.to_string(),
        network: env.network.to_string(),
        op: env.op.as_str(),
        reason,
    };
    // A clean environment so the host's stray CNI_* or locale settings do
    // not leak into plugins; PATH is kept because plugins exec iptables.
    let path_var = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let mut cmd = Command::new(binary);
    if let Some(fd) = env.hold {
        // SAFETY: fcntl is async-signal-safe; it only clears close-on-exec
        // on an fd this process owns, in the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .env_clear()
        .env("PATH", path_var)
        .env("CNI_COMMAND", env.op.as_str())
        .env("CNI_CONTAINERID", env.container_id)
        .env("CNI_NETNS", env.netns)
        .env("CNI_IFNAME", env.ifname)
        .env("CNI_ARGS", env.args)
        .env("CNI_PATH", env.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever it started
        // too: a surviving grandchild would hold the pipes open.
        .process_group(0)
        .spawn()
        .map_err(|e| failed(format!("cannot execute {}: {e}", binary.display())))?;
    let mut out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    // Drain both pipes while we wait, so a chatty plugin cannot block on a
    // full pipe and look like a hang.
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.take(64 * 1024).read_to_end(&mut b);
        b
    });
    let mut input = child.stdin.take().expect("piped");
    // A plugin may exit without reading stdin (EPIPE): its exit status tells.
    let _ = input.write_all(stdin);
    drop(input);

    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: kill(2) on the group we made for this child.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Err(CniError::Timeout {
                    plugin: kind.to_string(),
                    network: env.network.to_string(),
                    op: env.op.as_str(),
                    secs: timeout.as_secs_f64(),
                });
            }
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(failed(format!("waiting for it: {e}"))),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    if let Ok(e) = serde_json::from_slice::<PluginError>(&stdout) {
        return Err(CniError::Plugin {
            plugin: kind.to_string(),
            network: env.network.to_string(),
            op: env.op.as_str(),
            code: e.code,
            msg: e.msg,
            details: e.details,
        });
    }
    let text = if stderr.is_empty() { &stdout } else { &stderr };
    Err(failed(format!("{status}: {}", snippet(text))))
}

/// At most 1 KiB of plugin output, lossily decoded, for error messages.
pub fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(1024)]);
    s.trim().to_string()
}
