//! The description of one berth network, as the engine stores it, and the
//! rules a description must follow (names, bridge, addressing).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Name, bridge and subnet of the network every container joins by default.
pub const DEFAULT_NAME: &str = "berth";
pub const DEFAULT_BRIDGE: &str = "berth0";
/// berth's networks are /24s carved from this range; the default is the first.
pub const POOL: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 16) {
    Ok(n) => n,
    Err(_) => panic!("valid pool"),
};
/// Linux interface names are at most IFNAMSIZ - 1 bytes.
pub const MAX_IFNAME: usize = 15;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("invalid {0}")]
    InvalidName(String),
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidInterface { name: String, reason: &'static str },
    #[error("network {name}: subnet {subnet} is not a network address (did you mean {trunc}?)")]
    SubnetNotCanonical {
        name: String,
        subnet: Ipv4Net,
        trunc: Ipv4Net,
    },
    #[error(
        "network {name}: subnet {subnet} is too small; it needs room for a gateway and containers (/30 or larger)"
    )]
    SubnetTooSmall { name: String, subnet: Ipv4Net },
    #[error("network {name}: gateway {gateway} is not a host address of subnet {subnet}")]
    BadGateway {
        name: String,
        gateway: Ipv4Addr,
        subnet: Ipv4Net,
    },
    #[error("unsupported network driver {0:?} (only \"bridge\")")]
    UnsupportedDriver(String),
    #[error("no free /24 left in {POOL}")]
    PoolExhausted,
}

/// One network, serialized as the engine's record of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// 64 hex digits, like podman's network ids.
    pub id: String,
    pub driver: String,
    /// Host bridge interface the containers' veths are enslaved to.
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// No masquerade and no default route: containers reach the host and
    /// each other only.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub created: String,
}

impl Network {
    /// A new bridge network; the gateway defaults to the subnet's first host.
    pub fn new(
        name: &str,
        bridge: &str,
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        internal: bool,
    ) -> Result<Network, NetworkError> {
        let net = Network {
            name: name.to_string(),
            id: berth_base::ids::new_id(),
            driver: "bridge".to_string(),
            bridge: bridge.to_string(),
            subnet,
            gateway: gateway.unwrap_or_else(|| first_host(subnet)),
            internal,
            labels: BTreeMap::new(),
            created: berth_base::time::now_rfc3339(),
        };
        net.validate()?;
        Ok(net)
    }

    /// The `berth` network on `berth0`, 10.77.0.0/24, gateway 10.77.0.1.
    pub fn default_network() -> Network {
        let subnet = Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 24).expect("valid /24");
        Network::new(DEFAULT_NAME, DEFAULT_BRIDGE, subnet, None, false)
            .expect("the default network is valid")
    }

    /// Checks a record, e.g. one read back from the engine's store, which is
    /// trusted no more than user input.
    pub fn validate(&self) -> Result<(), NetworkError> {
        validate_name(&self.name)?;
        validate_ifname(&self.bridge)?;
        if self.driver != "bridge" {
            return Err(NetworkError::UnsupportedDriver(self.driver.clone()));
        }
        if self.subnet.trunc() != self.subnet {
            return Err(NetworkError::SubnetNotCanonical {
                name: self.name.clone(),
                subnet: self.subnet,
                trunc: self.subnet.trunc(),
            });
        }
        if self.subnet.prefix_len() > 30 {
            return Err(NetworkError::SubnetTooSmall {
                name: self.name.clone(),
                subnet: self.subnet,
            });
        }
        let g = self.gateway;
        if !self.subnet.contains(&g) || g == self.subnet.network() || g == self.subnet.broadcast() {
            return Err(NetworkError::BadGateway {
                name: self.name.clone(),
                gateway: g,
                subnet: self.subnet,
            });
        }
        Ok(())
    }
}

/// podman's rule for network names; it also keeps them safe as file names
/// (IPAM and cache directories are named after them).
pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    use berth_base::names;
    names::check("network", name, names::MAX_RESOURCE_NAME)
        .map_err(|e| NetworkError::InvalidName(e.to_string()))
}

/// A Linux interface name the kernel will accept (dev_valid_name) and that
/// is safe inside a file name.
pub fn validate_ifname(name: &str) -> Result<(), NetworkError> {
    let bad = |reason| {
        Err(NetworkError::InvalidInterface {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_IFNAME {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
    {
        return bad("only printable ASCII without '/', ':' or spaces");
    }
    Ok(())
}

/// The first 10.77.N.0/24 that overlaps none of `existing`.
pub fn next_subnet(existing: &[Network]) -> Result<Ipv4Net, NetworkError> {
    (0..=255u8)
        .map(|n| Ipv4Net::new(Ipv4Addr::new(10, 77, n, 0), 24).expect("valid /24"))
        .find(|cand| {
            !existing
                .iter()
                .any(|e| e.subnet.contains(cand) || cand.contains(&e.subnet))
        })
        .ok_or(NetworkError::PoolExhausted)
}

/// The first `berthN` bridge name no existing network uses.
pub fn next_bridge(existing: &[Network]) -> String {
    (0u32..)
        .map(|n| format!("berth{n}"))
        .find(|b| !existing.iter().any(|e| &e.bridge == b))
        .expect("unbounded")
}

fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> Network {
        Network::new(name, "br-t", subnet.parse().unwrap(), None, false).unwrap()
    }

    #[test]
    fn default_network_is_berth0_on_10_77_0() {
        let n = Network::default_network();
        assert_eq!(n.name, "berth");
        assert_eq!(n.bridge, "berth0");
        assert_eq!(n.subnet.to_string(), "10.77.0.0/24");
        assert_eq!(n.gateway, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(n.id.len(), 64);
        assert!(!n.internal);
    }

    #[test]
    fn record_round_trips_through_json() {
        let mut n = Network::default_network();
        n.labels.insert("a".into(), "b".into());
        let back: Network = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn names_follow_podman() {
        for ok in ["a", "net-1", "A.b_c", "9"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-a", ".", "..", "a/b", "a b", "_x", "ä", "a\0"] {
            assert!(
                matches!(validate_name(bad), Err(NetworkError::InvalidName(_))),
                "{bad:?}"
            );
        }
        // A name longer than a file name could hold with berth's suffixes.
        let e = validate_name(&"n".repeat(300)).unwrap_err().to_string();
        assert!(e.contains("300 bytes long, more than 128"), "{e}");
    }

    #[test]
    fn interface_names_fit_the_kernel() {
        validate_ifname("berth0").unwrap();
        validate_ifname("123456789012345").unwrap();
        for bad in ["", "1234567890123456", ".", "..", "a/b", "a:b", "a b", "é"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_addressing_is_refused() {
        let e = Network::new("n", "b", "10.1.2.3/24".parse().unwrap(), None, false).unwrap_err();
        assert!(e.to_string().contains("10.1.2.0/24"), "{e}");
        let e = Network::new("n", "b", "10.1.2.0/31".parse().unwrap(), None, false).unwrap_err();
        assert!(matches!(e, NetworkError::SubnetTooSmall { .. }));
        for g in ["10.1.3.1", "10.1.2.0", "10.1.2.255"] {
            let e = Network::new(
                "n",
                "b",
                "10.1.2.0/24".parse().unwrap(),
                Some(g.parse().unwrap()),
                false,
            )
            .unwrap_err();
            assert!(matches!(e, NetworkError::BadGateway { .. }), "{g}");
        }
        let mut n = net("n", "10.1.2.0/24");
        n.driver = "macvlan".into();
        assert!(matches!(
            n.validate(),
            Err(NetworkError::UnsupportedDriver(_))
        ));
    }

    #[test]
    fn next_subnet_skips_overlaps() {
        assert_eq!(next_subnet(&[]).unwrap().to_string(), "10.77.0.0/24");
        let taken = [
            net("a", "10.77.0.0/24"),
            net("b", "10.77.1.0/25"),
            net("c", "10.77.2.0/23"),
        ];
        assert_eq!(next_subnet(&taken).unwrap().to_string(), "10.77.4.0/24");
        let all = [net("all", "10.77.0.0/16")];
        assert_eq!(next_subnet(&all), Err(NetworkError::PoolExhausted));
    }

    #[test]
    fn next_bridge_counts_up() {
        let mut a = net("a", "10.77.0.0/24");
        a.bridge = "berth0".into();
        assert_eq!(next_bridge(&[a]), "berth1");
    }
}
