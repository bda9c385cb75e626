//! Running CNI plugin chains for berth networks: ADD on attach, DEL on
//! detach, CHECK on demand, with a cache so DEL replays what ADD did.

mod cache;
pub mod conf;
mod exec;
mod result;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::netns;
use crate::network::{self, Network, NetworkError};
use crate::ports::PortMapping;
pub use exec::Op;
pub use result::Attachment;
use result::CniResult;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("network {network}: CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound {
        plugin: String,
        network: String,
        dirs: String,
    },
    #[error("network {network}: invalid CNI plugin type {kind:?}")]
    BadPluginType { network: String, kind: String },
    #[error("network {network}: CNI plugin {plugin} {op} failed: {msg} (code {code}){}",
        if details.is_empty() { String::new() } else { format!(": {details}") })]
    Plugin {
        plugin: String,
        network: String,
        op: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("network {network}: CNI plugin {plugin} {op} failed: {reason}")]
    PluginFailed {
        plugin: String,
        network: String,
        op: &'static str,
        reason: String,
    },
    #[error(
        "network {network}: CNI plugin {plugin} {op} printed an invalid result ({reason}): {output}"
    )]
    BadOutput {
        plugin: String,
        network: String,
        op: &'static str,
        reason: String,
        output: String,
    },
    #[error(
        "network {network}: CNI plugin {plugin} {op} did not finish within {secs} s and was killed"
    )]
    Timeout {
        plugin: String,
        network: String,
        op: &'static str,
        secs: f64,
    },
    #[error("network {network}: bad CNI configuration: {reason}")]
    BadConfig { network: String, reason: String },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArg {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("network {network}: masquerade rule: {why}")]
    Masquerade { network: String, why: String },
    #[error("container {container_id} is already attached to network {network} as {ifname}")]
    AlreadyAttached {
        network: String,
        container_id: String,
        ifname: String,
    },
    #[error("container {container_id} is not attached to network {network} as {ifname}")]
    NotAttached {
        network: String,
        container_id: String,
        ifname: String,
    },
    #[error("CNI cache entry {path} is unusable: {reason}")]
    BadCache { path: PathBuf, reason: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{error}; undoing it also failed, the attachment stays cached for a later detach: {cleanup}"
    )]
    CleanupFailed {
        #[source]
        error: Box<CniError>,
        cleanup: String,
    },
    #[error("network {network}: DEL failed, the attachment stays cached for a retry: {errors}")]
    DelFailed { network: String, errors: String },
}

pub type Result<T> = std::result::Result<T, CniError>;

/// Runs CNI plugins for berth's networks.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where plugin binaries are looked up, in order (becomes CNI_PATH).
    pub plugin_dirs: Vec<PathBuf>,
    /// berth's CNI state: `ipam/` (host-local's data) and `cache/`.
    pub state_dir: PathBuf,
    /// Longest a single plugin run may take before it is killed.
    pub timeout: Duration,
    /// Whether chains get the firewall plugin; None: when the host's
    /// FORWARD chain does not accept by default.
    pub firewall: Option<bool>,
    /// What iptables said lately, shared by this Cni's clones.
    iptables: std::sync::Arc<crate::firewall::Memo>,
}

impl Cni {
    /// Debian's plugin dir first, then the upstream default.
    pub fn new(state_dir: impl Into<PathBuf>) -> Cni {
        Cni {
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            state_dir: state_dir.into(),
            timeout: Duration::from_secs(60),
            firewall: None,
            iptables: Default::default(),
        }
    }

    /// host-local keeps its leases in `<ipam_dir>/<network name>/`.
    pub fn ipam_dir(&self) -> PathBuf {
        self.state_dir.join("ipam")
    }

    /// The conflist berth runs for `net`.
    pub fn conflist(&self, net: &Network, chain: conf::Chain) -> Result<Value> {
        net.validate()?;
        Ok(conf::conflist(net, &self.ipam_dir(), chain))
    }

    /// The chain an attachment with `ports` gets on this host now.
    pub fn chain_for(&self, ports: &[PortMapping]) -> conf::Chain {
        conf::Chain {
            ports: !ports.is_empty(),
            firewall: self
                .firewall
                .unwrap_or_else(|| !self.iptables.forward_accepts()),
        }
    }

    /// Attaches the container whose netns is `netns` to `net` as `ifname`,
    /// publishing `ports`. On failure every plugin that ran is undone.
    pub fn attach(
        &self,
        net: &Network,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        ports: &[PortMapping],
        args: &[(String, String)],
    ) -> Result<Attachment> {
        let list = self.conflist(net, self.chain_for(ports))?;
        check_ids(container_id, ifname)?;
        if !net.internal {
            self.iptables.ensure_masquerade(net)?;
        }
        let cni_args = join_args(args)?;
        if !netns::exists(netns) {
            return Err(CniError::InvalidArg {
                what: "netns",
                value: netns.display().to_string(),
                reason: "not a network namespace",
            });
        }
        // Find every plugin before running any, so a missing one fails
        // cleanly instead of after half the chain.
        let binaries = self.binaries(&list, &net.name)?;
        let mut runtime = Map::new();
        runtime.insert("portMappings".into(), port_mappings(ports));
        let mut entry = cache::Entry {
            network: net.name.clone(),
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            args: args.to_vec(),
            runtime_config: runtime,
            config: list,
            result: None,
        };
        let path = cache::path(&self.state_dir, &net.name, container_id, ifname);
        let lock = cache::lock(&self.state_dir, &net.name, container_id, ifname)?;
        cache::create(&path, &entry)?;

        let plugins = conf::plugins(&entry.config, &net.name)?;
        let cni_path = self.cni_path();
        let env = exec::Env {
            op: Op::Add,
            network: &net.name,
            container_id,
            netns,
            ifname,
            args: &cni_args,
            path: &cni_path,
            hold: Some(lock.raw_fd()),
        };
        let mut prev: Option<Value> = None;
        let mut failure = None;
        for (i, (plugin, bin)) in plugins.iter().zip(&binaries).enumerate() {
            let kind = plugin["type"].as_str().unwrap_or_default();
            let stdin =
                conf::plugin_stdin(&entry.config, plugin, &entry.runtime_config, prev.as_ref());
            let out = exec::run(bin, kind, &env, &stdin, self.timeout)
                .and_then(|out| parse_result(&out, kind, &net.name, Op::Add));
            match out {
                Ok(v) => prev = Some(v),
                Err(e) => {
                    failure = Some((i, e));
                    break;
                }
            }
        }
        let (ran, error) = match failure {
            Some(f) => f,
            None => {
                let v = prev
                    .clone()
                    .expect("a chain that did not fail has a result");
                let r: CniResult = serde_json::from_value(v.clone()).expect("parsed before");
                entry.result = Some(v);
                match cache::update(&path, &entry) {
                    Ok(()) => return Ok(r.attachment(&net.name, ifname)),
                    // Without its result cached the attachment could not be
                    // cleanly undone later: undo it now.
                    Err(e) => (plugins.len() - 1, e),
                }
            }
        };
        // CNI spec: after a failed ADD, DEL the plugins in reverse order.
        let errors = self.del_chain(&entry, prev.as_ref(), netns, ran + 1, &lock);
        if errors.is_empty() {
            cache::remove(&path)?;
            cache::unlock_path(&self.state_dir, &net.name, container_id, ifname);
            Err(error)
        } else {
            Err(CniError::CleanupFailed {
                error: Box::new(error),
                cleanup: errors.join("; "),
            })
        }
    }

    /// Undoes [`Cni::attach`] from the cached ADD, so it needs neither the
    /// network record nor a live netns (a stand-in is used when it is gone).
    /// Nothing cached means nothing to undo.
    ///
    /// A cache entry that cannot be read (a crash of an older berth, a
    /// damaged disk) must not make the attachment unremovable: DEL then
    /// runs from `fallback` (the network and ports the attachment was made
    /// with), as CNI runtimes do without a cached result, and the entry is
    /// removed. Returns what was skipped, if anything: with no fallback the
    /// plugins cannot run and only the entry goes.
    pub fn detach(
        &self,
        network: &str,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        fallback: Option<(&Network, &[PortMapping])>,
    ) -> Result<Option<String>> {
        network::validate_name(network)?;
        check_ids(container_id, ifname)?;
        let path = cache::path(&self.state_dir, network, container_id, ifname);
        // Waits for a plugin that a killed berth left running on this
        // attachment: two DELs at once leave each other's half undone.
        let lock = cache::lock(&self.state_dir, network, container_id, ifname)?;
        cache::remove_temps(&path);
        let (entry, warning) = match cache::load(&path, network, container_id, ifname) {
            Ok(None) => {
                cache::unlock_path(&self.state_dir, network, container_id, ifname);
                return Ok(None);
            }
            Ok(Some(entry)) => (entry, None),
            Err(e @ CniError::BadCache { .. }) => match fallback {
                Some((net, ports)) if net.name == network => {
                    let entry = self.rebuilt_entry(net, container_id, ifname, ports)?;
                    (
                        entry,
                        Some(format!("{e}: detached from the network's configuration")),
                    )
                }
                _ => {
                    cache::remove(&path)?;
                    cache::unlock_path(&self.state_dir, network, container_id, ifname);
                    return Ok(Some(format!(
                        "{e}: removed; without the network's record its plugins could not run"
                    )));
                }
            },
            Err(e) => return Err(e),
        };
        let plugins = conf::plugins(&entry.config, network)?;
        let errors = self.del_chain(&entry, entry.result.as_ref(), netns, plugins.len(), &lock);
        if !errors.is_empty() {
            return Err(CniError::DelFailed {
                network: network.to_string(),
                errors: errors.join("; "),
            });
        }
        cache::remove(&path)?;
        cache::unlock_path(&self.state_dir, network, container_id, ifname);
        Ok(warning)
    }

    /// What the cache would hold for an attachment whose ADD never finished:
    /// the chain attach would run now, without a result.
    fn rebuilt_entry(
        &self,
        net: &Network,
        container_id: &str,
        ifname: &str,
        ports: &[PortMapping],
    ) -> Result<cache::Entry> {
        let mut runtime = Map::new();
        runtime.insert("portMappings".into(), port_mappings(ports));
        Ok(cache::Entry {
            network: net.name.clone(),
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            runtime_config: runtime,
            config: self.conflist(net, self.chain_for(ports))?,
            result: self.leased_result(net, container_id, ifname),
        })
    }

    /// The part of an ADD's result that DEL needs, from host-local's
    /// leases (a file per address holding the container id and
    /// interface): the firewall plugin removes its rules by these
    /// addresses.
    fn leased_result(&self, net: &Network, container_id: &str, ifname: &str) -> Option<Value> {
        let dir = self.ipam_dir().join(&net.name);
        let mut ips = Vec::new();
        for f in fs::read_dir(dir).ok()?.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Ok(ip) = name.parse::<std::net::Ipv4Addr>() else {
                continue;
            };
            let body = fs::read_to_string(f.path()).unwrap_or_default();
            let mut lines = body.lines().map(|l| l.trim_end_matches('\r'));
            if lines.next() == Some(container_id) && lines.next().is_none_or(|i| i == ifname) {
                ips.push(json!({
                    "address": format!("{ip}/{}", net.subnet.prefix_len()),
                    "gateway": net.gateway.to_string(),
                }));
            }
        }
        (!ips.is_empty()).then(|| json!({"cniVersion": conf::CNI_VERSION, "ips": ips}))
    }

    /// The attachments the cache holds, as (network, container id,
    /// interface), for owners whose ids hold no '-' (berth's are hex): what
    /// a recovery sweep looks through for attachments nobody owns.
    pub fn cached(&self) -> Vec<(String, String, String)> {
        cache::list(&self.state_dir)
            .into_iter()
            .filter_map(|(net, stem)| {
                let (id, ifname) = stem.split_once('-')?;
                Some((net, id.to_string(), ifname.to_string()))
            })
            .collect()
    }

    /// Runs CHECK for a cached attachment.
    pub fn check(
        &self,
        network: &str,
        container_id: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<()> {
        network::validate_name(network)?;
        check_ids(container_id, ifname)?;
        let path = cache::path(&self.state_dir, network, container_id, ifname);
        let not_attached = || CniError::NotAttached {
            network: network.to_string(),
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        };
        let entry = cache::load(&path, network, container_id, ifname)?.ok_or_else(not_attached)?;
        // An entry without a result is an ADD that never finished.
        let result = entry.result.as_ref().ok_or_else(not_attached)?;
        let cni_args = join_args(&entry.args)?;
        let binaries = self.binaries(&entry.config, network)?;
        let cni_path = self.cni_path();
        for (plugin, bin) in conf::plugins(&entry.config, network)?.iter().zip(&binaries) {
            let kind = plugin["type"].as_str().unwrap_or_default();
            let stdin =
                conf::plugin_stdin(&entry.config, plugin, &entry.runtime_config, Some(result));
            let env = exec::Env {
                op: Op::Check,
                hold: None,
                network,
                container_id,
                netns,
                ifname,
                args: &cni_args,
                path: &cni_path,
            };
            exec::run(bin, kind, &env, &stdin, self.timeout)?;
        }
        Ok(())
    }

    /// Forgets a network's host side once no container uses it: deletes its
    /// bridge, host-local's leases and the (empty) cache directory.
    pub fn remove_network(&self, net: &Network) -> Result<()> {
        net.validate()?;
        self.iptables.remove_masquerade(net)?;
        crate::link::delete(&net.bridge).map_err(|source| CniError::Io {
            what: "deleting bridge",
            path: PathBuf::from(&net.bridge),
            source,
        })?;
        for dir in [
            self.ipam_dir().join(&net.name),
            self.state_dir.join("cache").join(&net.name),
        ] {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CniError::Io {
                        what: "removing",
                        path: dir,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn cni_path(&self) -> String {
        let dirs: Vec<String> = self
            .plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(":")
    }

    fn binaries(&self, list: &Value, network: &str) -> Result<Vec<PathBuf>> {
        conf::plugins(list, network)?
            .iter()
            .map(|p| {
                exec::find(
                    p["type"].as_str().unwrap_or_default(),
                    network,
                    &self.plugin_dirs,
                )
            })
            .collect()
    }

    /// DELs plugins `count-1` down to 0; keeps going past failures (each
    /// plugin frees what it can) and returns what failed.
    fn del_chain(
        &self,
        entry: &cache::Entry,
        prev: Option<&Value>,
        netns: &Path,
        count: usize,
        lock: &berth_base::lock::Flock,
    ) -> Vec<String> {
        let network = &entry.network;
        let plugins = match conf::plugins(&entry.config, network) {
            Ok(p) => p,
            Err(e) => return vec![e.to_string()],
        };
        let cni_args = match join_args(&entry.args) {
            Ok(a) => a,
            Err(e) => return vec![e.to_string()],
        };
        // Debian's bridge plugin (1.1.1) learns which addresses to
        // un-masquerade from the live container interface, so with the
        // netns gone its iptables rules would leak. A scratch netns holding
        // a placeholder interface with the cached addresses stands in for it.
        let stand_in = if netns::exists(netns) {
            None
        } else {
            stand_in(entry, prev)
        };
        let netns = stand_in.as_ref().map_or(netns, |s| s.path());
        let cni_path = self.cni_path();
        let mut errors = Vec::new();
        for plugin in plugins[..count.min(plugins.len())].iter().rev() {
            let kind = plugin["type"].as_str().unwrap_or_default();
            let bin = match exec::find(kind, network, &self.plugin_dirs) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let stdin = conf::plugin_stdin(&entry.config, plugin, &entry.runtime_config, prev);
            let env = exec::Env {
                op: Op::Del,
                network,
                container_id: &entry.container_id,
                netns,
                ifname: &entry.ifname,
                args: &cni_args,
                path: &cni_path,
                hold: Some(lock.raw_fd()),
            };
            if let Err(e) = exec::run(&bin, kind, &env, &stdin, self.timeout) {
                errors.push(e.to_string());
            }
        }
        errors
    }
}

/// A scratch netns with a placeholder `ifname` carrying the cached result's addresses; None
/// if there is nothing to stand in for or it cannot be made (DEL then runs
/// against the missing path, which plugins must tolerate).
fn stand_in(entry: &cache::Entry, prev: Option<&Value>) -> Option<netns::Scratch> {
    let r: CniResult = serde_json::from_value(prev?.clone()).ok()?;
    let ips = r.attachment(&entry.network, &entry.ifname).ips;
    if ips.is_empty() {
        return None;
    }
    let ifname = entry.ifname.clone();
    netns::Scratch::new(move || crate::link::add_placeholder(&ifname, &ips)).ok()
}

fn parse_result(out: &[u8], kind: &str, network: &str, op: Op) -> Result<Value> {
    let bad = |reason: String| CniError::BadOutput {
        plugin: kind.to_string(),
        network: network.to_string(),
        op: op.as_str(),
        reason,
        output: exec::snippet(out),
    };
    let v: Value = serde_json::from_slice(out).map_err(|e| bad(e.to_string()))?;
    let r: CniResult = serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
    if r.cni_version != conf::CNI_VERSION {
        return Err(bad(format!(
            "cniVersion {} instead of {}",
            r.cni_version,
            conf::CNI_VERSION
        )));
    }
    Ok(v)
}

/// CNI spec: container ids are alphanumerics, hyphen, underscore, period;
/// both ids also name cache files, so they must be safe there too.
fn check_ids(container_id: &str, ifname: &str) -> Result<()> {
    let mut c = container_id.chars();
    let ok = matches!(c.next(), Some(ch) if ch.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    if !ok {
        return Err(CniError::InvalidArg {
            what: "container id",
            value: container_id.to_string(),
            reason: "must be alphanumerics, '-', '_' or '.', starting with an alphanumeric",
        });
    }
    network::validate_ifname(ifname)?;
    Ok(())
}

/// CNI_ARGS is `K=V;K=V`: neither may hold ';' or '=' (or be empty keys).
fn join_args(args: &[(String, String)]) -> Result<String> {
    let mut parts = Vec::with_capacity(args.len());
    for (k, v) in args {
        let bad = |s: &str| s.contains([';', '=', '\0']);
        if k.is_empty() || bad(k) || bad(v) {
            return Err(CniError::InvalidArg {
                what: "CNI argument",
                value: format!("{k}={v}"),
                reason: "keys must be non-empty; neither key nor value may contain ';', '=' or NUL",
            });
        }
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(";"))
}

/// The `portMappings` capability value (CNI conventions document).
fn port_mappings(ports: &[PortMapping]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.to_string(),
                    "hostIP": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_refuse_separators() {
        assert_eq!(
            join_args(&[("A".into(), "1".into()), ("B".into(), "".into())]).unwrap(),
            "A=1;B="
        );
        for (k, v) in [
            ("", "x"),
            ("a;b", "x"),
            ("a", "x;y"),
            ("a", "b=c"),
            ("a=b", "c"),
        ] {
            assert!(join_args(&[(k.into(), v.into())]).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn container_ids_are_safe_file_names() {
        check_ids("abc-1_2.3", "eth0").unwrap();
        for id in ["", "../x", "a/b", ".a", "-a", "a b"] {
            let e = check_ids(id, "eth0").unwrap_err();
            assert!(e.to_string().contains("container id"), "{e}");
        }
        assert!(check_ids("a", "../x").is_err());
    }

    #[test]
    fn port_mappings_use_cni_field_names() {
        let p = PortMapping::parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            port_mappings(&p),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"}])
        );
    }
}
