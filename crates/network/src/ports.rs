//! Published ports: docker's `-p` syntax and the CNI `portMappings`
//! capability they turn into.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One host port forwarded to one container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// None: every host address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// The most ports one container or pod may publish. Each is a DNAT rule
/// that the portmap plugin adds with its own iptables run: a range of
/// thousands takes minutes to set up and to tear down.
pub const MAX_PUBLISHED: usize = 1024;

/// Refuses more than MAX_PUBLISHED mappings in all.
pub fn check_count(ports: &[PortMapping]) -> Result<(), PortError> {
    if ports.len() > MAX_PUBLISHED {
        return Err(PortError::Invalid {
            spec: format!("{} ports", ports.len()),
            reason: format!("at most {MAX_PUBLISHED} ports may be published"),
        });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("invalid port mapping {spec:?}: {reason}")]
    Invalid { spec: String, reason: String },
    /// The host port is taken: by a host process, or by another
    /// container's reservation (`reserve`).
    #[error("cannot publish {addr}/{protocol}: bind: {error}")]
    Taken {
        addr: SocketAddr,
        protocol: Protocol,
        error: String,
    },
    #[error("port mapping {spec:?}: no free {protocol} port on {ip}: {error}")]
    NoFreePort {
        spec: String,
        protocol: Protocol,
        ip: IpAddr,
        error: String,
    },
}

impl PortMapping {
    /// Parses docker's `-p` value:
    /// `[host_ip:][host_port:]container_port[/tcp|/udp]`, where the ports
    /// may be ranges `a-b` (host and container ranges of equal length) and
    /// an IPv6 host_ip is bracketed (`[::1]:8080:80`). An empty or absent
    /// host port gets a free ephemeral port of the host, found by binding
    /// port 0.
    pub fn parse(spec: &str) -> Result<Vec<PortMapping>, PortError> {
        let bad = |reason: &str| PortError::Invalid {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (rest, protocol) = match spec.split_once('/') {
            None => (spec, Protocol::Tcp),
            Some((r, "tcp")) => (r, Protocol::Tcp),
            Some((r, "udp")) => (r, Protocol::Udp),
            Some((_, "sctp")) => return Err(bad("protocol sctp is not supported (tcp or udp)")),
            Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?} (tcp or udp)"))),
        };
        let (host_ip, ports) = split_host_ip(rest).map_err(|r| bad(&r))?;
        let parts: Vec<&str> = ports.split(':').collect();
        let (host, container) = match parts.as_slice() {
            [c] => ("", *c),
            [h, c] => (*h, *c),
            _ => {
                return Err(bad(
                    "expected [host_ip:][host_port:]container_port (an IPv6 host_ip needs brackets)",
                ));
            }
        };
        let container = parse_range(container).map_err(|r| bad(&format!("container port: {r}")))?;
        let host = if host.is_empty() {
            None
        } else {
            Some(parse_range(host).map_err(|r| bad(&format!("host port: {r}")))?)
        };
        if let Some(h) = host
            && h.1 - h.0 != container.1 - container.0
        {
            return Err(bad("host and container port ranges differ in length"));
        }
        let count = usize::from(container.1 - container.0) + 1;
        if count > MAX_PUBLISHED {
            return Err(bad(&format!(
                "a range of {count} ports; at most {MAX_PUBLISHED} may be published"
            )));
        }
        let mut out = Vec::with_capacity(count);
        for (i, cport) in (container.0..=container.1).enumerate() {
            let host_port = match host {
                Some(h) => h.0 + i as u16,
                None => free_port(host_ip, protocol).map_err(|(ip, e)| PortError::NoFreePort {
                    spec: spec.to_string(),
                    protocol,
                    ip,
                    error: e.to_string(),
                })?,
            };
            out.push(PortMapping {
                host_ip,
                host_port,
                container_port: cport,
                protocol,
            });
        }
        Ok(out)
    }
}

/// Binds each mapping's host port, so that nothing else on the host can:
/// the DNAT rules alone take no port, and would silently shadow a host
/// server on it, or another container's mapping. The sockets are the
/// reservation; whoever holds them (the container's monitor) holds the
/// ports. TCP ones listen with SO_REUSEADDR (as a server's would): a
/// listening socket refuses every later bind, with SO_REUSEADDR or not,
/// and TIME_WAIT leftovers of an earlier server do not refuse it. Traffic
/// to the port is DNAT'd before it could reach them. A port in use is an
/// error saying "address already in use", as podman's is.
pub fn reserve(ports: &[PortMapping]) -> Result<Vec<OwnedFd>, PortError> {
    ports
        .iter()
        .map(|p| {
            let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let addr = SocketAddr::new(ip, p.host_port);
            let bound = match p.protocol {
                Protocol::Tcp => TcpListener::bind(addr).map(OwnedFd::from),
                Protocol::Udp => UdpSocket::bind(addr).map(OwnedFd::from),
            };
            bound.map_err(|e| PortError::Taken {
                addr,
                protocol: p.protocol,
                // The OS's own words start with a capital and end with
                // "(os error 98)".
                error: if e.kind() == std::io::ErrorKind::AddrInUse {
                    "address already in use".into()
                } else {
                    e.to_string()
                },
            })
        })
        .collect()
}

/// Splits off a leading host IP when there are three colon-separated fields
/// (`ip:h:c`, `ip::c`) or a bracketed IPv6 address.
fn split_host_ip(s: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, rest) = rest.split_once(']').ok_or("unclosed '[' in host IP")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("bad IPv6 host address {ip:?}"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or("expected ':' after the bracketed host IP")?;
        if !rest.contains(':') {
            return Err("expected host_port:container_port after the host IP".into());
        }
        return Ok((Some(IpAddr::V6(ip)), rest));
    }
    if s.matches(':').count() != 2 {
        return Ok((None, s));
    }
    let (ip, rest) = s.split_once(':').expect("two colons");
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("bad host address {ip:?}"))?;
    Ok((Some(IpAddr::V4(ip)), rest))
}

/// `p` or `a-b`, every port in 1..=65535, digits only (no sign, no spaces).
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (parse_port(a)?, parse_port(b)?),
        None => {
            let p = parse_port(s)?;
            (p, p)
        }
    };
    if b < a {
        return Err(format!("range {s:?} ends before it starts"));
    }
    Ok((a, b))
}

fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err("missing".into());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 5 {
        return Err(format!("{s:?} is not a port number"));
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("{s} is out of range 1-65535")),
    }
}

/// Asks the kernel for a free port by binding port 0. The port is free now,
/// not reserved: portmap's DNAT rules do not bind it, so a later listener on
/// the host could still take it, as with docker's userland-proxy-less mode.
fn free_port(ip: Option<IpAddr>, proto: Protocol) -> Result<u16, (IpAddr, std::io::Error)> {
    let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let port = match proto {
        Protocol::Tcp => TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()),
    };
    port.map(|a| a.port()).map_err(|e| (ip, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortMapping {
        let mut v = PortMapping::parse(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v.remove(0)
    }

    fn err(spec: &str) -> String {
        PortMapping::parse(spec).unwrap_err().to_string()
    }

    #[test]
    fn docker_forms() {
        let m = one("8080:80");
        assert_eq!(
            (m.host_ip, m.host_port, m.container_port, m.protocol),
            (None, 8080, 80, Protocol::Tcp)
        );
        let m = one("127.0.0.1:8080:80/udp");
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (m.host_port, m.container_port, m.protocol),
            (8080, 80, Protocol::Udp)
        );
        let m = one("[::1]:8080:80");
        assert_eq!(m.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(one("1:65535/tcp").container_port, 65535);
    }

    #[test]
    fn empty_host_port_gets_an_ephemeral_one() {
        for spec in ["80", ":80", "127.0.0.1::80", "80/udp"] {
            let m = one(spec);
            assert_eq!(m.container_port, 80);
            assert_ne!(m.host_port, 0, "{spec}");
            // The kernel handed it out from its ephemeral range.
            let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
            let lo: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
            assert!(m.host_port >= lo, "{spec}: {}", m.host_port);
        }
    }

    #[test]
    fn ranges() {
        let v = PortMapping::parse("8000-8002:80-82").unwrap();
        let pairs: Vec<_> = v.iter().map(|m| (m.host_port, m.container_port)).collect();
        assert_eq!(pairs, [(8000, 80), (8001, 81), (8002, 82)]);
        let v = PortMapping::parse("90-91").unwrap();
        assert_eq!(v.len(), 2);
        assert_ne!(v[0].host_port, v[1].host_port);
        assert!(err("8000-8001:80").contains("differ in length"));
        assert!(err("82-80").contains("ends before it starts"));
        // A range whose setup would run for hours is refused at once.
        let t = std::time::Instant::now();
        let e = err("1-65535:1-65535");
        assert!(e.contains("65535 ports; at most 1024"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            PortMapping::parse("1000-2023:1000-2023").unwrap().len(),
            1024
        );
        let many: Vec<PortMapping> = (0..2)
            .flat_map(|i| {
                PortMapping::parse(&format!(
                    "{0}-{1}:{0}-{1}",
                    1000 + i * 1000,
                    1999 + i * 1000
                ))
                .unwrap()
            })
            .collect();
        assert!(
            check_count(&many)
                .unwrap_err()
                .to_string()
                .contains("at most 1024")
        );
    }

    #[test]
    fn hostile_inputs_are_refused_with_a_reason() {
        let cases = [
            ("", "container port: missing"),
            ("0", "out of range"),
            ("65536", "out of range"),
            ("99999999999999999999", "not a port number"),
            ("8080:0", "out of range"),
            ("-1", "missing"),
            ("+80", "not a port number"),
            (" 80", "not a port number"),
            ("80 ", "not a port number"),
            ("80/", "unknown protocol"),
            ("80/TCP", "unknown protocol"),
            ("80/tcp/udp", "unknown protocol"),
            ("80/sctp", "sctp is not supported"),
            ("1.2.3:80:80", "bad host address"),
            ("999.1.1.1:80:80", "bad host address"),
            ("::1:80:80", "expected"),
            ("[::1:80:80", "unclosed"),
            ("[zz]:80:80", "bad IPv6"),
            ("[::1]80:80", "expected ':'"),
            ("[::1]:80", "expected host_port:container_port"),
            ("a:b", "not a port number"),
            ("1:2:3:4", "expected"),
            ("80-", "missing"),
            ("1-2-3", "not a port number"),
            ("80:", "container port: missing"),
            ("8080:80\0", "not a port number"),
        ];
        for (spec, want) in cases {
            let e = err(spec);
            assert!(e.contains(want), "{spec:?}: {e}");
            assert!(
                e.contains(&format!("{spec:?}")),
                "error names the input: {e}"
            );
        }
    }

    #[test]
    fn serializes_lowercase_protocol() {
        let m = one("1:2/udp");
        assert_eq!(serde_json::to_value(&m).unwrap()["protocol"], "udp");
    }
}
