//! The files a container's /etc gets from berth: hosts, hostname and
//! resolv.conf, written into its userdata and bound in.

use std::path::Path;

use crate::error::{Context, Result};

/// /etc/hosts: localhost, then the container under its hostname and name
/// at each of its addresses (or at 127.0.1.1 without any).
pub fn hosts(hostname: &str, name: &str, ips: &[String]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let names = if hostname == name {
        hostname.to_string()
    } else {
        format!("{hostname} {name}")
    };
    if ips.is_empty() {
        s.push_str(&format!("127.0.1.1\t{names}\n"));
    }
    for ip in ips {
        let addr = ip.split('/').next().unwrap_or(ip);
        s.push_str(&format!("{addr}\t{names}\n"));
    }
    s
}

/// The host's resolv.conf as a container with its own network sees it:
/// loopback name servers (a local stub resolver) are not reachable from
/// there, so systemd-resolved's upstream list is used when there is one,
/// and loopback servers are dropped otherwise.
pub fn resolv_conf(own_netns: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if !own_netns {
        return host;
    }
    let loopback = |l: &str| {
        l.split_whitespace().next() == Some("nameserver")
            && l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.starts_with("127.") || a == "::1")
    };
    if host.lines().any(loopback)
        && let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return upstream;
    }
    host.lines()
        .filter(|l| !loopback(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `base` (a resolv.conf) with the parts `dns` gives replacing its own:
/// nameservers, search domains, options, each on its own (docker's rule).
pub fn resolv_with(base: &str, dns: &crate::model::Dns) -> String {
    let kept = |key: &str, given: &[String]| {
        given.is_empty().then(|| {
            base.lines()
                .filter(|l| l.split_whitespace().next() == Some(key))
                .flat_map(|l| {
                    l.split_whitespace()
                        .skip(1)
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
    };
    crate::model::Dns {
        servers: kept("nameserver", &dns.servers).unwrap_or_else(|| dns.servers.clone()),
        searches: kept("search", &dns.searches).unwrap_or_else(|| dns.searches.clone()),
        options: kept("options", &dns.options).unwrap_or_else(|| dns.options.clone()),
    }
    .resolv_conf()
}

pub fn write(dir: &Path, file: &str, content: &str) -> Result<()> {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, content).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).ctx(|| format!("rename {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_dns_parts_replace_the_hosts_and_the_rest_stay() {
        let base = "nameserver 10.0.0.1\nsearch corp.example\noptions ndots:1\n";
        let d = crate::model::Dns {
            servers: vec!["192.0.2.53".into()],
            searches: vec![],
            options: vec!["ndots:5".into()],
        };
        let r = super::resolv_with(base, &d);
        assert!(r.contains("nameserver 192.0.2.53"), "{r}");
        assert!(!r.contains("10.0.0.1"), "{r}");
        assert!(r.contains("search corp.example"), "{r}");
        assert!(r.contains("ndots:5") && !r.contains("ndots:1"), "{r}");
    }

    use super::*;

    #[test]
    fn hosts_lists_every_address() {
        let h = hosts("abc", "web", &["10.77.0.5/24".into()]);
        assert!(h.contains("10.77.0.5\tabc web\n"), "{h}");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        let h = hosts("web", "web", &[]);
        assert!(h.contains("127.0.1.1\tweb\n"), "{h}");
    }
}
