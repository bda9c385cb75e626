//! Container names on user networks, as docker resolves them: each
//! container's /etc/hosts lists the running containers it shares a
//! network with (other than the default one), kept current as they start
//! and stop. No DNS server: the hosts file is bound into each container
//! and rewritten in place (a rename would leave the bind mount on the old
//! file), under one lock per network.

use std::io::Write;

use crate::engine::Engine;
use crate::error::{Context, Result};
use crate::model::{Container, Status};

/// What the engine writes of a container's /etc/hosts itself; the peers
/// are added after it.
const BASE: &str = "hosts.base";

impl Engine {
    /// Writes the container's own /etc/hosts (`base`, then its peers) and
    /// adds it to its peers'. `c` is the container being started, its
    /// networks attached.
    pub(crate) fn publish_names(&self, c: &Container, base: &str) -> Result<()> {
        let ud = self.userdata(&c.id);
        crate::etcfiles::write(&ud, BASE, base)?;
        let nets = user_networks(c);
        if nets.is_empty() {
            return crate::etcfiles::write(&ud, "hosts", base);
        }
        // Its own file is written with its peers' lines, once, as theirs.
        self.rewrite_names(c, &nets, true)
    }

    /// Rewrites the hosts files on `c`'s user networks and on `also` (one
    /// it just left): after a `network connect` or `disconnect`.
    pub(crate) fn refresh_names(&self, c: &Container, also: &[String]) -> Result<()> {
        let mut nets = user_networks(c);
        for n in also {
            if n != berth_network::network::DEFAULT_NAME && !nets.contains(n) {
                nets.push(n.clone());
            }
        }
        let running = matches!(c.state.status, Status::Running | Status::Paused);
        self.rewrite_names(c, &nets, running)
    }

    /// Takes the container out of its peers' /etc/hosts (it stopped).
    pub(crate) fn withdraw_names(&self, c: &Container) -> Result<()> {
        let nets = user_networks(c);
        if nets.is_empty() {
            return Ok(());
        }
        self.rewrite_names(c, &nets, false)
    }

    /// Rewrites the hosts file of every running container on `nets` (and
    /// `c`'s own, when it is `running`).
    fn rewrite_names(&self, c: &Container, nets: &[String], running: bool) -> Result<()> {
        // Each network's lock once, in one order: a flock taken twice by
        // one process waits on itself.
        let mut nets = nets.to_vec();
        nets.sort();
        nets.dedup();
        let _locks: Vec<_> = nets
            .iter()
            .map(|n| self.lock(&format!("names-{n}")))
            .collect::<Result<_>>()?;
        let mut members: Vec<Container> = self
            .db
            .containers()?
            .into_iter()
            .filter(|o| o.id != c.id)
            .filter(|o| matches!(o.state.status, Status::Running | Status::Paused))
            .filter(|o| user_networks(o).iter().any(|n| nets.contains(n)))
            .collect();
        if running {
            members.push(c.clone());
        }
        for m in &members {
            let mine = user_networks(m);
            let mut lines = String::new();
            for p in members.iter().filter(|p| p.id != m.id) {
                for a in p.networks.iter().filter(|a| mine.contains(&a.network)) {
                    for ip in &a.ips {
                        let ip = ip.split('/').next().unwrap_or(ip);
                        lines.push_str(&format!("{ip}\t{}\n", p.name));
                    }
                }
            }
            self.write_hosts(m, &lines)?;
        }
        Ok(())
    }

    /// The container's hosts file, rewritten in place: its base, then the
    /// peers' lines.
    fn write_hosts(&self, c: &Container, peers: &str) -> Result<()> {
        let ud = self.userdata(&c.id);
        let hosts = ud.join("hosts");
        let Ok(base) = std::fs::read_to_string(ud.join(BASE)) else {
            // Made before names were kept, or removed meanwhile.
            return Ok(());
        };
        // Made here on a container's first start; rewritten in place
        // after (a running one has it bound in).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&hosts)
            .ctx(|| format!("open {}", hosts.display()))?;
        f.write_all(format!("{base}{peers}").as_bytes())
            .ctx(|| format!("write {}", hosts.display()))
    }
}

/// The networks whose members see each other by name: all but the
/// default one (docker's rule for its default bridge).
fn user_networks(c: &Container) -> Vec<String> {
    c.networks
        .iter()
        .map(|a| a.network.clone())
        .filter(|n| n != berth_network::network::DEFAULT_NAME)
        .collect()
}
