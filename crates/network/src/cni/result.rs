//! Reading CNI 1.0.0 results and what berth keeps of them.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Where a container sits on one network after ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    /// Interface name inside the container.
    pub interface: String,
    pub ips: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    pub mac: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
}

#[derive(Debug, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub interface: Option<usize>,
}

impl CniResult {
    /// The addresses given to the container's interface `ifname`. An IP
    /// with no interface index is counted as the container's (the spec
    /// leaves it unspecified; bridge always sets it).
    pub fn attachment(&self, network: &str, ifname: &str) -> Attachment {
        let own = |i: &Option<usize>| match i {
            None => true,
            Some(i) => self.interfaces.get(*i).is_some_and(|f| {
                f.name == ifname && f.sandbox.as_deref().is_some_and(|s| !s.is_empty())
            }),
        };
        let ips: Vec<&IpConfig> = self.ips.iter().filter(|ip| own(&ip.interface)).collect();
        let mac = self
            .interfaces
            .iter()
            .find(|f| f.name == ifname && f.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
            .and_then(|f| f.mac.clone());
        Attachment {
            network: network.to_string(),
            interface: ifname.to_string(),
            ips: ips.iter().map(|ip| ip.address).collect(),
            gateway: ips.iter().find_map(|ip| ip.gateway),
            mac,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_container_side_interface() {
        let r: CniResult = serde_json::from_str(
            r#"{"cniVersion":"1.0.0",
                "interfaces":[{"name":"br0","mac":"aa"},{"name":"veth1","mac":"bb"},
                              {"name":"eth0","mac":"cc","sandbox":"/run/x"}],
                "ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":2},
                       {"address":"10.9.0.1/24","interface":0}]}"#,
        )
        .unwrap();
        let a = r.attachment("n", "eth0");
        assert_eq!(a.ips, vec!["10.0.0.2/24".parse::<IpNet>().unwrap()]);
        assert_eq!(a.gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(a.mac.as_deref(), Some("cc"));
    }
}
