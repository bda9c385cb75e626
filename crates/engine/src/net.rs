//! A container's (or a pod's) network for one run: a pinned network
//! namespace and its CNI attachments, recorded before they are made so
//! that teardown finds them after any crash; and the network records.

use std::path::{Path, PathBuf};

use berth_network::{Network, PortMapping, netns};

use crate::engine::{Engine, path_str};
use crate::error::{Error, Result};
use crate::model::{Attached, Container, NetworkMode, Status};
use crate::spec::{self, NetNs};

fn neterr(e: impl std::fmt::Display) -> Error {
    Error::Network(e.to_string())
}

/// The network of `name`; the default one (`berth`, also called `bridge`)
/// is made on first use.
pub fn network(e: &Engine, name: &str) -> Result<Network> {
    let name = if name == "bridge" {
        berth_network::network::DEFAULT_NAME
    } else {
        name
    };
    if let Some(n) = e.db.network::<Network>(name)? {
        n.validate().map_err(neterr)?;
        return Ok(n);
    }
    if name == berth_network::network::DEFAULT_NAME {
        let _lock = e.lock("networks")?;
        if let Some(n) = e.db.network::<Network>(name)? {
            return Ok(n);
        }
        let existing: Vec<Network> = e.db.networks()?;
        let n = claim(&e.paths.host_locks, &existing, |bridge, subnet| {
            Network::new(name, bridge, subnet, None, false).map_err(neterr)
        })?;
        crate::recover::save_network_file(e, &n.name, &n)?;
        e.db.insert_network(&n.name, &n)?;
        return Ok(n);
    }
    Err(Error::NotFound(format!("no network named {name:?}")))
}

impl Engine {
    /// The networks made so far (the default one appears once used).
    pub fn networks(&self) -> Result<Vec<Network>> {
        self.db.networks()
    }

    pub fn network(&self, name: &str) -> Result<Network> {
        network(self, name)
    }

    /// A new bridge network; the subnet and bridge name are chosen when not
    /// given.
    pub fn network_create(
        &self,
        name: &str,
        subnet: Option<ipnet::Ipv4Net>,
        gateway: Option<std::net::Ipv4Addr>,
        internal: bool,
        labels: Vec<(String, String)>,
    ) -> Result<Network> {
        berth_network::network::validate_name(name).map_err(neterr)?;
        let _lock = self.lock("networks")?;
        let existing = self.networks()?;
        if existing.iter().any(|n| n.name == name) || name == "bridge" {
            return Err(Error::Conflict(format!("network {name} already exists")));
        }
        if let Some(s) = subnet
            && overlaps(&existing, &s)
        {
            let o = existing
                .iter()
                .find(|n| overlaps(std::slice::from_ref(n), &s))
                .expect("overlaps");
            return Err(Error::Conflict(format!(
                "subnet {s} overlaps network {} ({})",
                o.name, o.subnet
            )));
        }
        let locks = &self.paths.host_locks;
        let mut n = in_bridge_home(self, || match subnet {
            Some(s) => claim_given(locks, &existing, s, |bridge| {
                Network::new(name, bridge, s, gateway, internal).map_err(neterr)
            }),
            None => claim(locks, &existing, |bridge, s| {
                Network::new(name, bridge, s, gateway, internal).map_err(neterr)
            }),
        })?;
        n.labels = labels.into_iter().collect();
        crate::recover::save_network_file(self, &n.name, &n)?;
        self.db.insert_network(&n.name, &n)?;
        self.emit(
            berth_base::events::Event::new("network", "create", &n.id)
                .attr("name", n.name.as_str()),
        );
        Ok(n)
    }

    /// Removes a network no container uses (with `force`, removing those).
    pub fn network_remove(&self, name: &str, force: bool) -> Result<()> {
        let n = self
            .db
            .network::<Network>(canonical(name))?
            .ok_or_else(|| Error::NotFound(format!("no network named {name:?}")))?;
        let users: Vec<Container> = self
            .db
            .containers()?
            .into_iter()
            .filter(|c| {
                configured_networks(&c.config.network)
                    .iter()
                    .any(|x| canonical(x) == n.name)
            })
            .collect();
        if !users.is_empty() {
            if !force {
                let names: Vec<&str> = users.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::Conflict(format!(
                    "network {} is in use by {}",
                    n.name,
                    names.join(", ")
                )));
            }
            for c in users {
                self.remove(&c.id, true)?;
            }
        }
        in_bridge_home(self, || self.cni().remove_network(&n).map_err(neterr))?;
        self.db.remove_network(&n.name)?;
        crate::recover::remove_network_file(self, &n.name);
        self.emit(
            berth_base::events::Event::new("network", "destroy", &n.id)
                .attr("name", n.name.as_str()),
        );
        Ok(())
    }
}

/// Subnets in use on this host, whoever made them (another berth root,
/// podman, a VPN): a new network must not clash with them.
struct HostClaims {
    nets: Vec<ipnet::Ipv4Net>,
}

impl HostClaims {
    fn read() -> HostClaims {
        let mut nets = Vec::new();
        // Routes: connected ones cover every address of an up interface.
        if let Ok(r) = std::fs::read_to_string("/proc/net/route") {
            for l in r.lines().skip(1) {
                let f: Vec<&str> = l.split_whitespace().collect();
                let hex = |s: &str| {
                    u32::from_str_radix(s, 16)
                        .ok()
                        .map(|v| std::net::Ipv4Addr::from(v.swap_bytes()))
                };
                if let (Some(dst), Some(mask)) =
                    (f.get(1).and_then(|s| hex(s)), f.get(7).and_then(|s| hex(s)))
                    && let Ok(n) = ipnet::Ipv4Net::with_netmask(dst, mask)
                    && n.prefix_len() > 0
                {
                    nets.push(n);
                }
            }
        }
        // Addresses of interfaces that are down have no route yet.
        if let Ok(out) = std::process::Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
        {
            for w in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(n) = w.parse::<ipnet::Ipv4Net>() {
                    nets.push(n.trunc());
                }
            }
        }
        HostClaims { nets }
    }

    fn clashes(&self, s: &ipnet::Ipv4Net) -> bool {
        self.nets
            .iter()
            .any(|n| n.contains(&s.network()) || s.contains(&n.network()))
    }
}

/// Whether the calling thread's namespace has a link `name` (not
/// /sys/class/net, which shows the namespace /sys was mounted from).
fn link_exists(name: &str) -> bool {
    berth_network::link::index(name).is_ok_and(|i| i.is_some())
}

fn overlaps(existing: &[Network], s: &ipnet::Ipv4Net) -> bool {
    existing
        .iter()
        .any(|e| e.subnet.contains(&s.network()) || s.contains(&e.subnet.network()))
}

/// Claims a bridge name and a /24 of 10.77.0.0/16 that neither this root's
/// networks nor the host use, and makes the bridge at once (holding the
/// gateway address), so that the next claimant, in any berth process with
/// any root, sees them taken. A host-wide lock orders the claimants.
fn claim(
    host_locks: &Path,
    existing: &[Network],
    make: impl Fn(&str, ipnet::Ipv4Net) -> Result<Network>,
) -> Result<Network> {
    let _lock = crate::lock::acquire(host_locks, "berth-networks")?;
    let host = HostClaims::read();
    for n in 0..=255u8 {
        let subnet = ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 77, n, 0), 24).expect("a /24");
        let bridge = format!("berth{n}");
        let ours = overlaps(existing, &subnet) || existing.iter().any(|e| e.bridge == bridge);
        if ours || host.clashes(&subnet) || link_exists(&bridge) {
            continue;
        }
        let net = make(&bridge, subnet)?;
        hold(&net)?;
        return Ok(net);
    }
    Err(Error::Network(
        "no free /24 left in 10.77.0.0/16 on this host".into(),
    ))
}

/// `claim` for a subnet the user chose.
fn claim_given(
    host_locks: &Path,
    existing: &[Network],
    subnet: ipnet::Ipv4Net,
    make: impl Fn(&str) -> Result<Network>,
) -> Result<Network> {
    let _lock = crate::lock::acquire(host_locks, "berth-networks")?;
    if HostClaims::read().clashes(&subnet) {
        return Err(Error::Conflict(format!(
            "subnet {subnet} is in use on this host"
        )));
    }
    let bridge = (0..=9999u32)
        .map(|n| format!("berth{n}"))
        .find(|b| !existing.iter().any(|e| &e.bridge == b) && !link_exists(b))
        .ok_or_else(|| Error::Network("no free bridge name".into()))?;
    let net = make(&bridge)?;
    hold(&net)?;
    Ok(net)
}

/// Makes the network's bridge, with its gateway address, ahead of CNI.
fn hold(net: &Network) -> Result<()> {
    let gw = ipnet::IpNet::new(std::net::IpAddr::V4(net.gateway), net.subnet.prefix_len())
        .map_err(neterr)?;
    berth_network::link::add_placeholder(&net.bridge, &[gw])
        .map_err(|e| Error::Network(format!("create bridge {}: {e}", net.bridge)))
}

fn canonical(name: &str) -> &str {
    if name == "bridge" {
        berth_network::network::DEFAULT_NAME
    } else {
        name
    }
}

/// The mode as this berth can have it: an ordinary user's default is
/// pasta (podman 5's); its bridge networks live in its bridge home
/// (`bridge_home`).
pub fn for_this_user(mode: NetworkMode) -> Result<NetworkMode> {
    match mode {
        NetworkMode::Default if berth_base::rootless::host_user().is_some() => {
            Ok(NetworkMode::Pasta)
        }
        other => Ok(other),
    }
}

/// The name of the pin of a user's bridge home.
const BRIDGE_HOME: &str = "berth-bridges";

/// Where bridge networks live: the host's namespace for root (None); for
/// an ordinary user, who cannot make links there, a namespace of its own
/// (podman's rootless netns) that holds the bridges, their addresses and
/// firewall rules, reaching out through a pasta of its own (published
/// ports go through one pasta per container, `usernet::publish`). Made on
/// first use; its pasta is started again if it has gone.
pub(crate) fn bridge_home(e: &Engine) -> Result<Option<PathBuf>> {
    if berth_base::rootless::host_user().is_none() {
        return Ok(None);
    }
    let _lock = e.lock("bridge-home")?;
    let path = e.netns_dir().join(BRIDGE_HOME);
    if !netns::exists(&path) {
        netns::create(&e.netns_dir(), BRIDGE_HOME).map_err(neterr)?;
    }
    let record = e.run_root.join("bridge-home.json");
    let running = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<berth_base::process::ProcessId>(&b).ok())
        .is_some_and(|p| p.is_alive());
    if !running {
        let helper = berth_network::usernet::Helper::Pasta
            .start(&path, &[], &e.run_root.join("usernet").join(BRIDGE_HOME))
            .and_then(|s| s.ready())
            .map_err(neterr)?;
        let json = serde_json::to_vec(&helper).expect("a process id serializes");
        berth_base::fs::atomic_write(&record, &json, 0o600)
            .map_err(|err| Error::Network(format!("write {}: {err}", record.display())))?;
    }
    Ok(Some(path))
}

/// Runs `f` where bridge networks live (`bridge_home`): links made, CNI
/// plugins and iptables started there (a child takes its namespaces from
/// the thread that starts it).
pub(crate) fn in_bridge_home<T: Send>(
    e: &Engine,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    match bridge_home(e)? {
        None => f(),
        Some(home) => netns::run_in(&home, f).map_err(neterr)?,
    }
}

/// The networks a mode attaches to, by name.
fn configured_networks(mode: &NetworkMode) -> Vec<String> {
    match mode {
        NetworkMode::Default => vec![berth_network::network::DEFAULT_NAME.to_string()],
        NetworkMode::Bridge(names) if names.is_empty() => {
            vec![berth_network::network::DEFAULT_NAME.to_string()]
        }
        NetworkMode::Bridge(names) => names.iter().map(|n| canonical(n).to_string()).collect(),
        _ => Vec::new(),
    }
}

/// A pinned namespace attached to the mode's networks. `record` is called
/// with the pin and the attachments after each step, so that what exists
/// is on disk before the next is made.
pub(crate) fn attach_all(
    e: &Engine,
    owner_id: &str,
    mode: &NetworkMode,
    ports: &[PortMapping],
    mut record: impl FnMut(Option<String>, Vec<Attached>) -> Result<()>,
) -> Result<PathBuf> {
    let nets: Vec<Network> = configured_networks(mode)
        .iter()
        .map(|n| network(e, n))
        .collect::<Result<_>>()?;
    let pin_name = Engine::netns_name(owner_id);
    let stale = e.netns_dir().join(&pin_name);
    if netns::exists(&stale) {
        // Left by a crashed run whose cleanup did not happen.
        netns::remove(&stale).map_err(neterr)?;
    }
    let pin = Some(path_str(&stale));
    let mut attached = Vec::new();
    record(pin.clone(), attached.clone())?;
    let path = netns::create(&e.netns_dir(), &pin_name).map_err(neterr)?;
    let c = e.cni();
    for (i, n) in nets.iter().enumerate() {
        let ifname = format!("eth{i}");
        // Ports go through the first network.
        let p = if i == 0 { ports } else { &[] };
        let args = [("IgnoreUnknown".to_string(), "1".to_string())];
        let a = in_bridge_home(e, || {
            c.attach(n, owner_id, &path, &ifname, p, &args)
                .map_err(neterr)
        })?;
        attached.push(attached_from(a));
        record(pin.clone(), attached.clone())?;
    }
    // Recorded once ready (`user_net_ready`); until then, removing the
    // pin ends it (pasta quits with its namespace).
    let dir = user_net_dir(e, owner_id);
    let starting = match mode.user_helper() {
        Some(h) => Some(h.start(&path, ports, &dir).map_err(neterr)?),
        // A user's bridge network: its ports through a pasta that only
        // publishes (the home's own forwards none).
        None if !nets.is_empty() && !ports.is_empty() && bridge_home(e)?.is_some() => {
            Some(berth_network::usernet::publish(&path, ports, &dir).map_err(neterr)?)
        }
        None => None,
    };
    if let Some(s) = starting {
        e.user_nets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((owner_id.to_string(), s));
    }
    Ok(path)
}

/// Waits for the user-mode helper `attach_all` started for `owner_id`,
/// if any: a mode of its own gets an attachment of its own; one that
/// publishes a bridge attachment's ports is recorded with that (the
/// first, which carries the ports).
pub(crate) fn user_net_ready(
    e: &Engine,
    owner_id: &str,
    mode: &NetworkMode,
    attached: &mut Vec<Attached>,
) -> Result<()> {
    let starting = {
        let mut pending = e.user_nets.lock().unwrap_or_else(|p| p.into_inner());
        let i = pending.iter().position(|(o, _)| o == owner_id);
        i.map(|i| pending.swap_remove(i).1)
    };
    let Some(s) = starting else {
        return Ok(());
    };
    let helper = s.ready().map_err(neterr)?;
    let Some(h) = mode.user_helper() else {
        match attached.first_mut() {
            Some(a) => a.helper = Some(helper),
            None => berth_network::usernet::stop(&helper),
        }
        return Ok(());
    };
    attached.push(Attached {
        network: h.name().to_string(),
        interface: berth_network::usernet::INTERFACE.to_string(),
        ips: Vec::new(),
        gateway: None,
        mac: None,
        helper: Some(helper),
    });
    Ok(())
}

/// Where the user-mode helper of `owner_id`'s namespace keeps its pid
/// file, log and socket.
fn user_net_dir(e: &Engine, owner_id: &str) -> PathBuf {
    e.run_root.join("usernet").join(crate::ids::short(owner_id))
}

/// The interface a network is on in the namespace: as recorded (a
/// network connected later, or one disconnected before it, moves the
/// others' places), else by its place in the list.
fn interface_of(attached: &[Attached], network: &str, index: usize) -> String {
    attached
        .iter()
        .find(|a| a.network == network)
        .map(|a| a.interface.clone())
        .unwrap_or_else(|| format!("eth{index}"))
}

fn attached_from(a: berth_network::Attachment) -> Attached {
    Attached {
        network: a.network,
        interface: a.interface,
        ips: a.ips.iter().map(|x| x.to_string()).collect(),
        gateway: a.gateway.map(|g| g.to_string()),
        mac: a.mac,
        helper: None,
    }
}

/// Undoes `attach_all`, from the mode (so interfaces whose attach was cut
/// short are detached too) and the recorded namespace. What could not be
/// undone from a damaged cache entry is said as a warning, and the
/// detach goes on: a damaged file must not make a container unremovable.
pub(crate) fn detach_all(
    e: &Engine,
    owner_id: &str,
    mode: &NetworkMode,
    ports: &[PortMapping],
    attached: &[Attached],
    netns_path: Option<&str>,
) -> Result<()> {
    // One never waited for (the run failed before its start) goes first.
    e.user_nets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(o, _)| o != owner_id);
    for helper in attached.iter().filter_map(|a| a.helper.as_ref()) {
        berth_network::usernet::stop(helper);
    }
    let _ = std::fs::remove_dir_all(user_net_dir(e, owner_id));
    let c = e.cni();
    let path = netns_path.map(PathBuf::from).unwrap_or_default();
    let names = configured_networks(mode);
    for (i, n) in names.iter().enumerate().rev() {
        let net = e.db.network::<Network>(n)?;
        let p = if i == 0 { ports } else { &[] };
        let fallback = net.as_ref().map(|net| (net, p));
        let ifname = interface_of(attached, n, i);
        if let Some(w) = in_bridge_home(e, || {
            c.detach(n, owner_id, &path, &ifname, fallback)
                .map_err(neterr)
        })? {
            tracing::warn!("{}: {w}", crate::ids::short(owner_id));
        }
    }
    if let Some(p) = netns_path {
        netns::remove(Path::new(p)).map_err(neterr)?;
    }
    Ok(())
}

/// Reserves the container's published host ports for this run (see
/// `berth_network::ports::reserve`): the sockets, for its monitor to hold.
/// Only a container on bridge networks publishes; a port in use is
/// refused with "address already in use".
pub fn reserve_ports(c: &Container) -> Result<Vec<std::os::fd::OwnedFd>> {
    // A user's ports are bound by its pasta.
    if berth_base::rootless::host_user().is_some() {
        return Ok(Vec::new());
    }
    match c.config.network {
        NetworkMode::Default | NetworkMode::Bridge(_) => {
            berth_network::ports::reserve(&c.config.ports)
                .map_err(|e| Error::Conflict(e.to_string()))
        }
        _ => Ok(Vec::new()),
    }
}

/// Sets up the container's network namespace for this run and points the
/// spec at it. Returns whether the container has a namespace of its own.
pub fn setup(e: &Engine, c: &mut Container, s: &mut oci_spec::runtime::Spec) -> Result<bool> {
    match c.config.network.clone() {
        NetworkMode::Host => {
            spec::set_network(s, NetNs::Host);
            Ok(false)
        }
        NetworkMode::Container(other) => {
            let o = e.container(&other)?;
            if o.state.status != Status::Running {
                return Err(Error::Conflict(format!(
                    "container {} is not running: its network cannot be joined",
                    o.name
                )));
            }
            let path = match &o.netns {
                Some(p) => p.clone(),
                None => format!("/proc/{}/ns/net", o.state.pid),
            };
            spec::set_network(s, NetNs::Join(&path));
            Ok(o.config.network != NetworkMode::Host)
        }
        NetworkMode::Pod => {
            let pod_key = c
                .config
                .pod
                .clone()
                .ok_or_else(|| Error::invalid("--network pod", "the container is in no pod"))?;
            let pod = e.db.find_pod(&pod_key)?;
            if !pod.running() {
                return Err(Error::Conflict(format!("pod {} is not running", pod.name)));
            }
            match &pod.netns {
                Some(n) => spec::set_network(s, NetNs::Join(n)),
                None => spec::set_network(s, NetNs::Host),
            }
            spec::join_pod(s, &pod)?;
            c.networks = pod.networks.clone();
            Ok(pod.network != NetworkMode::Host)
        }
        // `none` too is a namespace made here (no network attached): its
        // `lo` up, as docker's and podman's, and its defaults set.
        mode @ (NetworkMode::None
        | NetworkMode::Default
        | NetworkMode::Bridge(_)
        | NetworkMode::Pasta
        | NetworkMode::Slirp4netns) => {
            let (id, ports) = (c.id.clone(), c.config.ports.clone());
            let path = attach_all(e, &id, &mode, &ports, |ns, at| {
                c.netns = ns;
                c.networks = at;
                e.db.update_container(c)
            })?;
            set_default_sysctls(&path, c.config.owner.as_deref(), &c.config.extra.sysctls)?;
            spec::set_network(s, NetNs::Join(&path_str(&path)));
            Ok(true)
        }
    }
}

/// What a namespace berth made for a container or pod of its own (not
/// one kubelet manages) gets before anything runs in it: ICMP echo
/// sockets for every group, so that `ping` works without NET_RAW
/// (docker's default; podman's opens them to root's group only). Written
/// here as the host's root, not left to the runtime through the spec: the
/// runtime writes sysctls from inside the container, which in a user
/// namespace may not write them, and a namespace joined from another
/// container (`--network container:`) is not the joiner's to change. A
/// `--sysctl` of the same key is the runtime's to set, after this.
pub(crate) fn set_default_sysctls(
    path: &Path,
    owner: Option<&str>,
    given: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    const PING: &str = "net.ipv4.ping_group_range";
    if owner.is_some() || given.contains_key(PING) {
        return Ok(());
    }
    // In a user's namespace, only the groups it maps can be named.
    let range = format!("0 {}", berth_base::rootless::highest_gid());
    netns::set_sysctl(path, PING, &range).map_err(neterr)
}

/// Releases what `setup` made; idempotent, and works after a crash or a
/// reboot from what the record says.
pub fn teardown(e: &Engine, c: &mut Container) -> Result<()> {
    if c.config.network.has_own_namespace() {
        detach_all(
            e,
            &c.id,
            &c.config.network,
            &c.config.ports,
            &c.networks,
            c.netns.as_deref(),
        )?;
    }
    c.networks.clear();
    c.netns = None;
    Ok(())
}

impl Engine {
    /// Connects the container to another network: in its record, and, when
    /// it runs, on a new interface of its namespace (docker's `network
    /// connect`).
    pub fn network_connect(&self, name: &str, key: &str) -> Result<Container> {
        let net = network(self, name)?;
        let c = self.db.find_container(key)?;
        let _lock = self.lock(&c.id)?;
        let mut c = self.refresh(self.db.find_container(&c.id)?)?;
        let mut names = match &c.config.network {
            NetworkMode::Default | NetworkMode::Bridge(_) => configured_networks(&c.config.network),
            _ => {
                return Err(Error::invalid(
                    format!("container {}", c.name),
                    "it is not on bridge networks (host, none, a pod's or another container's)",
                ));
            }
        };
        if names.iter().any(|n| n == &net.name) {
            return Err(Error::Conflict(format!(
                "container {} is already connected to network {}",
                c.name, net.name
            )));
        }
        names.push(net.name.clone());
        c.config.network = NetworkMode::Bridge(names.clone());
        let running = matches!(c.state.status, Status::Running | Status::Paused);
        if running && let Some(ns) = c.netns.clone() {
            // A name no interface of the namespace has yet.
            let taken: Vec<&str> = c.networks.iter().map(|a| a.interface.as_str()).collect();
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !taken.contains(&n.as_str()))
                .expect("a free name");
            let args = [("IgnoreUnknown".to_string(), "1".to_string())];
            let a = in_bridge_home(self, || {
                self.cni()
                    .attach(&net, &c.id, Path::new(&ns), &ifname, &[], &args)
                    .map_err(neterr)
            })?;
            c.networks.push(attached_from(a));
        }
        // The network list is the container's spec (kept for its next
        // start); the attachment, its state.
        self.db.update_container_spec(&mut c)?;
        self.db.update_container(&mut c)?;
        if running {
            self.refresh_names(&c, std::slice::from_ref(&net.name))?;
        }
        self.emit(
            berth_base::events::Event::new("network", "connect", &net.id)
                .attr("name", net.name.as_str())
                .attr("container", c.id.as_str()),
        );
        Ok(c)
    }

    /// Disconnects the container from a network: its interface there goes
    /// (when it runs) and the network leaves its record.
    pub fn network_disconnect(&self, name: &str, key: &str) -> Result<Container> {
        let name = canonical(name).to_string();
        let c = self.db.find_container(key)?;
        let _lock = self.lock(&c.id)?;
        let mut c = self.refresh(self.db.find_container(&c.id)?)?;
        let names = configured_networks(&c.config.network);
        let Some(i) = names.iter().position(|n| *n == name) else {
            return Err(Error::NotFound(format!(
                "container {} is not connected to network {name}",
                c.name
            )));
        };
        if let Some(ns) = c.netns.clone()
            && let Some(at) = c.networks.iter().position(|a| a.network == name)
        {
            let net = self.db.network::<Network>(&name)?;
            let ports: &[PortMapping] = if i == 0 { &c.config.ports } else { &[] };
            let fallback = net.as_ref().map(|n| (n, ports));
            let ifname = c.networks[at].interface.clone();
            if let Some(w) = in_bridge_home(self, || {
                self.cni()
                    .detach(&name, &c.id, Path::new(&ns), &ifname, fallback)
                    .map_err(neterr)
            })? {
                tracing::warn!("{}: {w}", crate::ids::short(&c.id));
            }
            c.networks.remove(at);
        }
        let rest: Vec<String> = names.into_iter().filter(|n| *n != name).collect();
        c.config.network = if rest.is_empty() {
            NetworkMode::None
        } else {
            NetworkMode::Bridge(rest)
        };
        self.db.update_container_spec(&mut c)?;
        self.db.update_container(&mut c)?;
        self.refresh_names(&c, std::slice::from_ref(&name))?;
        self.emit(
            berth_base::events::Event::new("network", "disconnect", &name)
                .attr("name", name.as_str())
                .attr("container", c.id.as_str()),
        );
        Ok(c)
    }
}
