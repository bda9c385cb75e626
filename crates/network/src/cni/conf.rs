//! The CNI network configuration list for a berth network, and the per-plugin
//! configuration each invocation gets on stdin.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::CniError;
use crate::network::Network;

/// The CNI spec version berth speaks; Debian 12's plugins (1.1.1) support
/// 0.1.0 through 1.0.0, firewall only 0.4.0 and 1.0.0.
pub const CNI_VERSION: &str = "1.0.0";

/// Which optional plugins an attachment's chain holds. Each plugin is a
/// process, and the iptables ones run several more: the chain is only as
/// long as the attachment needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// portmap, for published ports.
    pub ports: bool,
    /// firewall, for hosts whose FORWARD chain does not accept by default.
    pub firewall: bool,
}

/// The conflist for `net`: bridge with host-local IPAM (data under
/// `ipam_dir`), then portmap and firewall as `chain` says. Masquerading is
/// not the bridge plugin's (nine iptables runs per container): one rule per
/// network does it (see `Cni::ensure_masquerade`).
pub fn conflist(net: &Network, ipam_dir: &Path, chain: Chain) -> Value {
    let mut routes = Vec::new();
    if !net.internal {
        routes.push(json!({"dst": "0.0.0.0/0"}));
    }
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": net.bridge,
        // The bridge carries the gateway address: containers route
        // through the host, and the host reaches them.
        "isGateway": true,
        "ipMasq": false,
        // Lets a container reach itself through a published port.
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "dataDir": ipam_dir,
            "ranges": [[{"subnet": net.subnet, "gateway": net.gateway}]],
            "routes": routes,
        }
    })];
    if chain.ports {
        plugins.push(json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            // Masquerade hairpin and localhost traffic so replies come
            // back through the host; needed for 127.0.0.1 publishing.
            "snat": true
        }));
    }
    if chain.firewall {
        plugins.push(json!({"type": "firewall", "backend": "iptables"}));
    }
    json!({"cniVersion": CNI_VERSION, "name": net.name, "plugins": plugins})
}

/// Checks the shape of a conflist (ours, but possibly read back from a
/// damaged cache) and returns its plugin objects.
pub fn plugins<'a>(list: &'a Value, network: &str) -> Result<&'a [Value], CniError> {
    let bad = |reason: &str| CniError::BadConfig {
        network: network.to_string(),
        reason: reason.to_string(),
    };
    if list.get("name").and_then(Value::as_str) != Some(network) {
        return Err(bad("conflist name does not match the network"));
    }
    if list.get("cniVersion").and_then(Value::as_str).is_none() {
        return Err(bad("conflist has no cniVersion"));
    }
    let plugins = list
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("conflist has no plugins array"))?;
    if plugins.is_empty() {
        return Err(bad("conflist has no plugins"));
    }
    for p in plugins {
        if p.get("type").and_then(Value::as_str).is_none() {
            return Err(bad("a plugin has no type"));
        }
    }
    Ok(plugins)
}

/// The stdin of one plugin invocation (CNI spec, "Deriving execution
/// configuration from plugin configuration"): the plugin's object plus the
/// list's name and version, the runtime values of the capabilities it
/// declares, and the previous plugin's result.
pub fn plugin_stdin(
    list: &Value,
    plugin: &Value,
    runtime: &Map<String, Value>,
    prev: Option<&Value>,
) -> Vec<u8> {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), list["name"].clone());
    conf.insert("cniVersion".into(), list["cniVersion"].clone());
    let mut rc = Map::new();
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        for (cap, on) in caps {
            if on == &Value::Bool(true)
                && let Some(v) = runtime.get(cap)
            {
                rc.insert(cap.clone(), v.clone());
            }
        }
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    if let Some(p) = prev {
        conf.insert("prevResult".into(), p.clone());
    }
    serde_json::to_vec(&conf).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_networks_have_no_masquerade_and_no_default_route() {
        let mut n = Network::default_network();
        let all = Chain {
            ports: true,
            firewall: true,
        };
        let l = conflist(&n, Path::new("/x"), all);
        assert_eq!(l["plugins"][0]["ipMasq"], false);
        assert_eq!(l["plugins"].as_array().unwrap().len(), 3);
        assert_eq!(l["plugins"][0]["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(l["plugins"][0]["ipam"]["dataDir"], "/x");
        assert_eq!(
            l["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.77.0.0/24"
        );
        n.internal = true;
        let l = conflist(
            &n,
            Path::new("/x"),
            Chain {
                ports: false,
                firewall: false,
            },
        );
        assert_eq!(l["plugins"].as_array().unwrap().len(), 1);
        assert_eq!(l["plugins"][0]["ipMasq"], false);
        assert_eq!(l["plugins"][0]["ipam"]["routes"], json!([]));
        plugins(&l, "berth").unwrap();
        assert!(plugins(&l, "other").is_err());
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let n = Network::default_network();
        let l = conflist(
            &n,
            Path::new("/x"),
            Chain {
                ports: true,
                firewall: false,
            },
        );
        let mut rt = Map::new();
        rt.insert("portMappings".into(), json!([{"hostPort": 1}]));
        let prev = json!({"cniVersion": "1.0.0"});
        let bridge: Value =
            serde_json::from_slice(&plugin_stdin(&l, &l["plugins"][0], &rt, None)).unwrap();
        assert_eq!(bridge["name"], "berth");
        assert_eq!(bridge["cniVersion"], CNI_VERSION);
        assert!(bridge.get("runtimeConfig").is_none());
        assert!(bridge.get("prevResult").is_none());
        let pm: Value =
            serde_json::from_slice(&plugin_stdin(&l, &l["plugins"][1], &rt, Some(&prev))).unwrap();
        assert_eq!(pm["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
        assert_eq!(pm["prevResult"], prev);
    }
}
