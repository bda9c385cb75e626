//! The link operations berth needs done in-process, over a bare rtnetlink
//! socket (the plumbing is in netlink.rs): bring `lo` up in a fresh netns, delete a
//! network's bridge, build a placeholder interface for a DEL whose netns is
//! gone; and what a VM runtime needs to hand a container's interface to its
//! guest: read the interface's configuration, copy settings onto another
//! one, make a tap device (the redirect between them is [`crate::tc`]).
//! Everything acts on the network namespace of the *calling thread*; run it
//! through [`crate::netns::run_in`] to act elsewhere.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::netlink::{Msg, NLM_F_CREATE, NLM_F_EXCL, attrs, invalid, split_struct, u32_of};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_KERNEL: u8 = 2;
/// What `ip route add` marks its routes with.
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
/// Sizes of struct ifinfomsg, ifaddrmsg and rtmsg.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;

/// A route through an interface, as the guest must re-create it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
}

/// What a guest needs to take over an interface: its MAC, MTU, addresses
/// (global scope only: no IPv6 link-local fe80::/10) and the routes of the
/// main table that go through it, except those the kernel made itself for
/// an address (rtm_protocol RTPROT_KERNEL): the guest's kernel makes those
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConfig {
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub addrs: Vec<IpNet>,
    pub routes: Vec<Route>,
}

/// Index of interface `name` in the calling thread's netns, `None` if absent.
pub fn index(name: &str) -> io::Result<Option<u32>> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODEV) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(idx))
}

/// Sets interface `name` administratively up.
pub fn set_up(name: &str) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, 0);
    m.ifinfo(
        must_index(name)? as i32,
        libc::IFF_UP as u32,
        libc::IFF_UP as u32,
    );
    m.send()
}

/// Deletes interface `name`; absent already is success, so a half-done
/// cleanup can simply be run again.
pub fn delete(name: &str) -> io::Result<()> {
    let Some(idx) = index(name)? else {
        return Ok(());
    };
    let mut m = Msg::new(RTM_DELLINK, 0);
    m.ifinfo(idx as i32, 0, 0);
    match m.send() {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        r => r,
    }
}

/// Creates a placeholder interface `name` carrying `addrs`: an empty bridge,
/// since kernels are often built without the `dummy` driver (this test
/// host's 6.18 is) while every container host has bridges.
pub fn add_placeholder(name: &str, addrs: &[IpNet]) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, 0, 0);
    m.attr(IFLA_IFNAME, &nul_terminated(name));
    let nest = m.begin_nested(IFLA_LINKINFO);
    m.attr(IFLA_INFO_KIND, b"bridge\0");
    m.end_nested(nest);
    m.send()?;
    let idx = must_index(name)?;
    for a in addrs {
        add_address_at(idx, *a)?;
    }
    Ok(())
}

/// Interface `name`'s MAC, MTU, global addresses and the routes of the main
/// table through it that the kernel did not make itself (see [`LinkConfig`]).
pub fn config(name: &str) -> io::Result<LinkConfig> {
    let idx = must_index(name)?;
    let (mac, mtu) = link_info(name, idx)?;
    let mut addrs = Vec::new();
    let mut routes = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        addrs.extend(addresses(idx, family)?);
        routes.extend(routes_through(idx, family)?);
    }
    Ok(LinkConfig {
        name: name.to_string(),
        mac,
        mtu,
        addrs,
        routes,
    })
}

/// MAC and MTU of the interface with index `idx`, from an RTM_GETLINK dump.
fn link_info(name: &str, idx: u32) -> io::Result<([u8; 6], u32)> {
    let mut m = Msg::new(RTM_GETLINK, 0);
    m.ifinfo(0, 0, 0);
    for msg in m.dump()? {
        let (hdr, rest) = split_struct(&msg, IFINFOMSG_LEN)?;
        if u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) != idx {
            continue;
        }
        let (mut mac, mut mtu) = (None, None);
        for a in attrs(rest) {
            match a? {
                (IFLA_ADDRESS, d) => mac = Some(d),
                (IFLA_MTU, d) => mtu = Some(u32_of(d)?),
                _ => {}
            }
        }
        let mac = mac
            .and_then(|d| <[u8; 6]>::try_from(d).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("interface {name:?} has no Ethernet address"),
                )
            })?;
        return Ok((mac, mtu.ok_or_else(|| invalid("link without IFLA_MTU"))?));
    }
    Err(no_such(name))
}

/// Global addresses of family `family` on interface `idx`.
fn addresses(idx: u32, family: u8) -> io::Result<Vec<IpNet>> {
    let mut m = Msg::new(RTM_GETADDR, 0);
    // struct ifaddrmsg: family, prefixlen, flags, scope, index
    m.raw(&[family, 0, 0, 0, 0, 0, 0, 0]);
    let mut out = Vec::new();
    for msg in m.dump()? {
        let (hdr, rest) = split_struct(&msg, IFADDRMSG_LEN)?;
        let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if hdr[0] != family || index != idx || hdr[3] != RT_SCOPE_UNIVERSE {
            continue;
        }
        // IFA_LOCAL is the address itself; IFA_ADDRESS is too, except on
        // point-to-point links (the peer's). IPv6 often sends only the latter.
        let (mut local, mut address) = (None, None);
        for a in attrs(rest) {
            match a? {
                (IFA_LOCAL, d) => local = Some(d),
                (IFA_ADDRESS, d) => address = Some(d),
                _ => {}
            }
        }
        let bytes = local
            .or(address)
            .ok_or_else(|| invalid("address without IFA_ADDRESS"))?;
        let ip = ip_of(family, bytes)?;
        if is_link_local_v6(ip) {
            continue;
        }
        out.push(IpNet::new(ip, hdr[1]).map_err(|_| invalid("bad address prefix length"))?);
    }
    Ok(out)
}

/// Unicast routes of the main table through interface `idx`, less those
/// the kernel made for its addresses.
fn routes_through(idx: u32, family: u8) -> io::Result<Vec<Route>> {
    let mut m = Msg::new(RTM_GETROUTE, 0);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags
    m.raw(&[family, 0, 0, 0, 0, 0, 0, 0]);
    m.raw(&0u32.to_ne_bytes());
    let mut out = Vec::new();
    for msg in m.dump()? {
        let (hdr, rest) = split_struct(&msg, RTMSG_LEN)?;
        let (dst_len, src_len, mut table, protocol, kind) =
            (hdr[1], hdr[2], hdr[4], hdr[5], hdr[7]);
        // Source-specific routes (IPv6 `from`) cannot be told to the guest
        // as a [`Route`]; none of berth's networks make them.
        if hdr[0] != family || kind != RTN_UNICAST || protocol == RTPROT_KERNEL || src_len != 0 {
            continue;
        }
        let (mut oif, mut dst, mut gateway) = (None, None, None);
        for a in attrs(rest) {
            match a? {
                (RTA_TABLE, d) => table = u32_of(d)?.try_into().unwrap_or(0),
                (RTA_OIF, d) => oif = Some(u32_of(d)?),
                (RTA_DST, d) => dst = Some(ip_of(family, d)?),
                (RTA_GATEWAY, d) => gateway = Some(ip_of(family, d)?),
                _ => {}
            }
        }
        if table != RT_TABLE_MAIN || oif != Some(idx) {
            continue;
        }
        let dst = dst.unwrap_or(if family == libc::AF_INET as u8 {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        let dst = IpNet::new(dst, dst_len).map_err(|_| invalid("bad route prefix length"))?;
        out.push(Route { dst, gateway });
    }
    Ok(out)
}

fn ip_of(family: u8, data: &[u8]) -> io::Result<IpAddr> {
    let bad = || invalid("address of the wrong size for its family");
    Ok(if family == libc::AF_INET as u8 {
        IpAddr::V4(<[u8; 4]>::try_from(data).map_err(|_| bad())?.into())
    } else {
        IpAddr::V6(<[u8; 16]>::try_from(data).map_err(|_| bad())?.into())
    })
}

fn is_link_local_v6(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

fn family_and_bytes(ip: IpAddr) -> (u8, Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
    }
}

fn exists_is_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// Adds `addr` to interface `name`; an address already there is success.
pub fn add_address(name: &str, addr: IpNet) -> io::Result<()> {
    add_address_at(must_index(name)?, addr)
}

fn add_address_at(idx: u32, addr: IpNet) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    let (family, bytes) = family_and_bytes(addr.addr());
    // struct ifaddrmsg: family, prefixlen, flags, scope, index
    m.raw(&[family, addr.prefix_len(), 0, RT_SCOPE_UNIVERSE]);
    m.raw(&idx.to_ne_bytes());
    m.attr(IFA_LOCAL, &bytes);
    m.attr(IFA_ADDRESS, &bytes);
    exists_is_ok(m.send())
}

/// Adds `route` through interface `name` to the main table: a default
/// route is dst 0.0.0.0/0 or ::/0; without a gateway the route is on-link.
/// A route already there is success.
pub fn add_route(name: &str, route: &Route) -> io::Result<()> {
    let idx = must_index(name)?;
    let dst = route.dst.trunc();
    let (family, dst_bytes) = family_and_bytes(dst.addr());
    let scope = if route.gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags
    m.raw(&[
        family,
        dst.prefix_len(),
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        scope,
        RTN_UNICAST,
    ]);
    m.raw(&0u32.to_ne_bytes());
    if dst.prefix_len() > 0 {
        m.attr(RTA_DST, &dst_bytes);
    }
    if let Some(gw) = route.gateway {
        let (gw_family, gw_bytes) = family_and_bytes(gw);
        if gw_family != family {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("route to {dst} via {gw}: gateway of another address family"),
            ));
        }
        m.attr(RTA_GATEWAY, &gw_bytes);
    }
    m.attr_u32(RTA_OIF, idx);
    exists_is_ok(m.send())
}

/// Sets interface `name`'s MTU.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, 0);
    m.ifinfo(must_index(name)? as i32, 0, 0);
    m.attr_u32(IFLA_MTU, mtu);
    m.send()
}

/// Moves interface `name` into the network namespace open at `ns`, under
/// the same name. A tap keeps its open fds, so a running VM's NIC follows
/// it.
pub fn move_to_netns(name: &str, ns: BorrowedFd) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, 0);
    m.ifinfo(must_index(name)? as i32, 0, 0);
    m.attr_u32(IFLA_NET_NS_FD, ns.as_raw_fd() as u32);
    m.send()
}

/// Sets interface `name`'s MAC address.
pub fn set_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut m = Msg::new(RTM_NEWLINK, 0);
    m.ifinfo(must_index(name)? as i32, 0, 0);
    m.attr(IFLA_ADDRESS, &mac);
    m.send()
}

/// A non-persistent tap device `name` (IFF_TAP | IFF_NO_PI: plain frames,
/// no packet-info or virtio-net header), set up, returned as its open
/// /dev/net/tun fd with close-on-exec set (clearing it for a child such as
/// QEMU is the caller's business). The device goes away when the last fd
/// closes. An existing interface of that name is an AlreadyExists error,
/// never attached to.
pub fn create_tap(name: &str) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // std opens with O_CLOEXEC.
    let tun: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?
        .into();
    // SAFETY: ifreq is plain data (arrays, integers, a union of them and a
    // pointer never dereferenced here): all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // IFF_TUN_EXCL: fail rather than attach to a device already named so.
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `req` is; the
    // name is NUL-terminated (shorter than IFNAMSIZ, rest zeroed) and the
    // fd is open.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EBUSY) {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("interface {name:?} already exists"),
            )
        } else {
            e
        });
    }
    // On error `tun` closes here, and the device goes with it.
    set_up(name)?;
    Ok(tun)
}

fn must_index(name: &str) -> io::Result<u32> {
    index(name)?.ok_or_else(|| no_such(name))
}

pub(crate) fn no_such(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no interface {name:?}"))
}

pub(crate) fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}
