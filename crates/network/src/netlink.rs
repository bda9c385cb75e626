//! The rtnetlink plumbing shared by [`crate::link`] and [`crate::tc`]: a
//! request built in place ([`Msg`]), sent over a bare `NETLINK_ROUTE`
//! socket that lives for one request, and bounds-checked parsing of what
//! comes back. The socket belongs to the network namespace of the calling
//! thread.

use std::io;
use std::os::fd::AsRawFd;

pub(crate) const NLMSG_NOOP: u16 = 1;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_MULTI: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
/// Attribute type bits, without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// struct nlmsghdr: len, type, flags, seq, pid.
const NLMSG_HDRLEN: usize = 16;
const SEQ: u32 = 1;

/// One rtnetlink request, built in place: header, family struct, attributes.
pub(crate) struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    pub(crate) fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in exchange()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&SEQ.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
        Msg { buf }
    }

    /// Raw bytes: a family struct (ifaddrmsg, rtmsg, tcmsg) after the header.
    pub(crate) fn raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// struct ifinfomsg: family, pad, type, index, flags, change.
    pub(crate) fn ifinfo(&mut self, index: i32, flags: u32, change: u32) {
        self.buf
            .extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    pub(crate) fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    pub(crate) fn attr_u32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_ne_bytes());
    }

    pub(crate) fn begin_nested(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub(crate) fn end_nested(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn or_flags(&mut self, flags: u16) {
        let old = u16::from_ne_bytes([self.buf[6], self.buf[7]]);
        self.buf[6..8].copy_from_slice(&(old | flags).to_ne_bytes());
    }

    /// Sends the request and waits for the kernel's ack.
    pub(crate) fn send(mut self) -> io::Result<()> {
        self.or_flags(NLM_F_ACK);
        self.exchange(false, |_, _, _| {})
    }

    /// Sends a dump request (an RTM_GET*) and collects the payloads (what
    /// follows the nlmsghdr) of the RTM_NEW* messages answering it, up to
    /// NLMSG_DONE. A dump the kernel marks inconsistent (NLM_F_DUMP_INTR:
    /// the tables changed under it) is done again.
    pub(crate) fn dump(mut self) -> io::Result<Vec<Vec<u8>>> {
        self.or_flags(NLM_F_DUMP);
        let kind = u16::from_ne_bytes([self.buf[4], self.buf[5]]);
        // rtnetlink numbering: RTM_NEWx, RTM_DELx, RTM_GETx follow each other.
        let answer = kind.wrapping_sub(2);
        let mut tries = 0;
        loop {
            let mut out = Vec::new();
            let mut interrupted = false;
            self.exchange(true, |k, flags, payload| {
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                if k == answer {
                    out.push(payload.to_vec());
                }
            })?;
            tries += 1;
            if !interrupted {
                return Ok(out);
            }
            if tries == 5 {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "netlink dump kept changing under us",
                ));
            }
        }
    }

    /// The one socket helper: sends the request and reads replies until an
    /// ack or error (NLMSG_ERROR), the end of a dump (NLMSG_DONE), or a lone
    /// data message without NLM_F_MULTI. Data messages go to `each` as
    /// (type, flags, payload); outside a dump they are skipped.
    fn exchange(&mut self, dump: bool, mut each: impl FnMut(u16, u16, &[u8])) -> io::Result<()> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        let sock = berth_base::netlink::route_socket()?;
        // SAFETY: a zeroed sockaddr_nl addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: buf and addr are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                self.buf.as_ptr().cast(),
                self.buf.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // Dump datagrams are at most 32 KiB (the kernel's cap for a
        // receiver with room); MSG_TRUNC reports a bigger one rather than
        // letting it be cut silently.
        let mut reply = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reply is a writable buffer of the given length.
            let n = unsafe {
                libc::recv(
                    sock.as_raw_fd(),
                    reply.as_mut_ptr().cast(),
                    reply.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > reply.len() {
                return Err(invalid("netlink reply larger than the receive buffer"));
            }
            let mut rest = &reply[..n];
            while !rest.is_empty() {
                let (msg, next) = split_message(rest)?;
                rest = next;
                if msg.seq != SEQ {
                    continue;
                }
                let (kind, payload) = (msg.kind, msg.payload);
                match kind {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR | NLMSG_DONE => {
                        // NLMSG_ERROR starts with the error code (0: ack),
                        // NLMSG_DONE may; both end the exchange.
                        let code = match payload.get(..4) {
                            Some(b) => i32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                            None if kind == NLMSG_DONE => 0,
                            None => return Err(invalid("short netlink error message")),
                        };
                        return if code < 0 {
                            Err(io::Error::from_raw_os_error(-code))
                        } else {
                            Ok(())
                        };
                    }
                    _ if !dump => {
                        // Not our ack (the kernel sends nothing else for
                        // these requests, but skip rather than misread).
                    }
                    _ => {
                        each(kind, msg.flags, payload);
                        if msg.flags & NLM_F_MULTI == 0 {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// One netlink message of a reply: its header fields and payload.
struct Message<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// Splits the first netlink message off `buf`; returns it and what follows.
fn split_message(buf: &[u8]) -> io::Result<(Message<'_>, &[u8])> {
    let bad = || invalid("malformed netlink message header");
    let hdr = buf.get(..NLMSG_HDRLEN).ok_or_else(bad)?;
    let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(bad());
    }
    let msg = Message {
        kind: u16::from_ne_bytes([hdr[4], hdr[5]]),
        flags: u16::from_ne_bytes([hdr[6], hdr[7]]),
        seq: u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
        payload: &buf[NLMSG_HDRLEN..len],
    };
    Ok((msg, buf.get(align(len)..).unwrap_or(&[])))
}

const fn align(n: usize) -> usize {
    (n + 3) & !3
}

pub(crate) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Splits a reply payload into its family struct of `size` bytes and the
/// attributes after it.
pub(crate) fn split_struct(payload: &[u8], size: usize) -> io::Result<(&[u8], &[u8])> {
    if payload.len() < size {
        return Err(invalid("netlink message shorter than its header"));
    }
    let (head, rest) = payload.split_at(size);
    Ok((head, rest.get(align(size) - size..).unwrap_or(&[])))
}

/// The attributes in `buf`, as (type without flag bits, data); a malformed
/// attribute ends the walk with an InvalidData error.
pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { rest: buf }
}

pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = io::Result<(u16, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = self.rest;
        let (len, kind) = match buf.get(..4) {
            Some(h) => (
                u16::from_ne_bytes([h[0], h[1]]) as usize,
                u16::from_ne_bytes([h[2], h[3]]),
            ),
            None => (0, 0),
        };
        if len < 4 || len > buf.len() {
            self.rest = &[];
            return Some(Err(invalid("malformed netlink attribute")));
        }
        self.rest = buf.get(align(len)..).unwrap_or(&[]);
        Some(Ok((kind & NLA_TYPE_MASK, &buf[4..len])))
    }
}

/// A u32 attribute's value; any other length is InvalidData.
pub(crate) fn u32_of(data: &[u8]) -> io::Result<u32> {
    let b: [u8; 4] = data
        .try_into()
        .map_err(|_| invalid("netlink u32 attribute of the wrong size"))?;
    Ok(u32::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_are_bounds_checked() {
        // A 4-byte u32 attribute, then one claiming more than is there.
        let mut buf = vec![8, 0, 4, 0, 1, 0, 0, 0];
        let ok: Vec<_> = attrs(&buf).collect::<io::Result<_>>().unwrap();
        assert_eq!(ok, vec![(4u16, &[1u8, 0, 0, 0][..])]);
        buf.extend_from_slice(&[200, 0, 1, 0, 9]);
        let r: io::Result<Vec<_>> = attrs(&buf).collect();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // Shorter than an attribute header, and a length below 4.
        assert!(attrs(&[1, 0]).next().unwrap().is_err());
        assert!(attrs(&[2, 0, 1, 0]).next().unwrap().is_err());
        // The last attribute needs no padding after it.
        let r: Vec<_> = attrs(&[5, 0, 3, 0x80, 7])
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(r, vec![(3u16, &[7u8][..])]);
    }

    #[test]
    fn messages_are_bounds_checked() {
        assert!(split_message(&[0; 8]).is_err());
        let mut m = vec![0u8; 16];
        m[0] = 40; // claims more than the buffer holds
        assert!(split_message(&m).is_err());
        m[0] = 8; // shorter than its own header
        assert!(split_message(&m).is_err());
        m[0] = 18;
        m.extend_from_slice(&[1, 2]);
        let (msg, rest) = split_message(&m).unwrap();
        assert_eq!(msg.payload, &[1, 2]);
        assert!(rest.is_empty());
        assert!(split_struct(&[1, 2], 4).is_err());
        assert!(u32_of(&[1, 2, 3]).is_err());
    }
}
