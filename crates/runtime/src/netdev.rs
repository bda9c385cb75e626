//! linux.netDevices: moving host network interfaces into the container's
//! network namespace (and renaming them), with one rtnetlink request each.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::{Error, Result};

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn socket() -> io::Result<OwnedFd> {
    berth_base::netlink::route_socket()
}

/// Moves interface `host_name` into the network namespace behind `netns`,
/// naming it `new_name` there.
pub fn move_device(host_name: &str, new_name: &str, netns: &OwnedFd) -> Result<()> {
    let field = format!("linux.netDevices.{host_name}");
    let cname = std::ffi::CString::new(host_name)
        .map_err(|_| Error::config(&field, "bad interface name"))?;
    // SAFETY: cname is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(Error::config(
            field,
            "no such network interface on the host",
        ));
    }
    if new_name.is_empty()
        || new_name.len() >= libc::IFNAMSIZ
        || new_name.contains('/')
        || new_name.contains(char::is_whitespace)
    {
        return Err(Error::config(
            format!("{field}.name"),
            format!("{new_name:?} is not an interface name"),
        ));
    }
    // nlmsghdr, then ifinfomsg (family, pad, type, index, flags, change).
    let mut msg = vec![0u8; 16];
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg.extend_from_slice(&(index as i32).to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(
        &mut msg,
        IFLA_NET_NS_FD,
        &(netns.as_raw_fd() as u32).to_ne_bytes(),
    );
    let mut name = new_name.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut msg, IFLA_IFNAME, &name);
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());

    let sock = socket().map_err(|e| Error::os("open a netlink socket", e))?;
    // SAFETY: sock is open and msg readable for msg.len() bytes; the
    // netns fd named inside stays open (borrowed) until the reply below.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(Error::os("send to netlink", io::Error::last_os_error()));
    }
    let mut reply = [0u8; 4096];
    // SAFETY: sock is open and reply writable for reply.len() bytes.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            reply.as_mut_ptr() as *mut libc::c_void,
            reply.len(),
            0,
        )
    };
    if n < 20 {
        return Err(Error::os(
            "receive from netlink",
            io::Error::last_os_error(),
        ));
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind == NLMSG_ERROR {
        let errno = -i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        if errno != 0 {
            return Err(Error::os(
                format!("move {host_name} into the container as {new_name}"),
                io::Error::from_raw_os_error(errno),
            ));
        }
    }
    Ok(())
}
