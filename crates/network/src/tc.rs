//! Traffic-control redirects, the way Kata Containers plugs a VM's tap
//! device into a container's network: every frame arriving on one
//! interface leaves through another (tc mirred), both ways between the
//! container's `eth0` and the tap. Built on u32 classifiers, as kernels
//! without cls_matchall or cls_flower still have them. Everything acts on
//! the network namespace of the *calling thread*; run it through
//! [`crate::netns::run_in`] to act elsewhere.

use std::io;

use crate::link;
use crate::netlink::{Msg, NLM_F_CREATE, NLM_F_EXCL, attrs, split_struct};

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const RTM_NEWTFILTER: u16 = 44;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
/// The ingress qdisc's parent (ffff:fff1) and handle (ffff:).
const TC_H_INGRESS: u32 = 0xffff_fff1;
const INGRESS_HANDLE: u32 = 0xffff_0000;
const TC_ACT_STOLEN: i32 = 4;
const TCA_EGRESS_REDIR: i32 = 1;
const TC_U32_TERMINAL: u8 = 1;
const ETH_P_ALL: u16 = 0x0003;
/// Size of struct tcmsg.
const TCMSG_LEN: usize = 20;

/// Every frame arriving on `from` leaves through `to`: an ingress qdisc on
/// `from` and a u32 match-all filter (`protocol all`, key 0/0 at offset 0)
/// whose action is mirred egress redirect to `to` (TC_ACT_STOLEN). The
/// equivalent of
///
/// ```text
/// tc qdisc replace dev FROM ingress
/// tc filter add dev FROM parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev TO
/// ```
///
/// except that an ingress qdisc already on `from` is replaced together with
/// its filters, so running it again (to the same or another `to`) leaves
/// exactly one redirect. A clsact qdisc on `from` is left alone: an error.
pub fn redirect(from: &str, to: &str) -> io::Result<()> {
    let ctx =
        |e: io::Error| io::Error::new(e.kind(), format!("redirecting {from:?} to {to:?}: {e}"));
    let from_idx = link::index(from)?.ok_or_else(|| ctx(link::no_such(from)))?;
    let to_idx = link::index(to)?.ok_or_else(|| ctx(link::no_such(to)))?;
    clear_at(from_idx).map_err(ctx)?;

    let mut m = Msg::new(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL);
    tcmsg(&mut m, from_idx, INGRESS_HANDLE, TC_H_INGRESS, 0);
    m.attr(TCA_KIND, b"ingress\0");
    m.send()
        .map_err(|e| ctx(annotate(e, "adding the ingress qdisc")))?;

    // Priority 0: the kernel picks one; protocol in network byte order.
    let mut m = Msg::new(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
    tcmsg(
        &mut m,
        from_idx,
        0,
        INGRESS_HANDLE,
        u32::from(ETH_P_ALL.to_be()),
    );
    m.attr(TCA_KIND, b"u32\0");
    let options = m.begin_nested(TCA_OPTIONS);
    m.attr(TCA_U32_SEL, &match_all_sel());
    let actions = m.begin_nested(TCA_U32_ACT);
    let first = m.begin_nested(1); // action order 1
    m.attr(TCA_ACT_KIND, b"mirred\0");
    let act_options = m.begin_nested(TCA_ACT_OPTIONS);
    m.attr(TCA_MIRRED_PARMS, &mirred_redirect(to_idx));
    m.end_nested(act_options);
    m.end_nested(first);
    m.end_nested(actions);
    m.end_nested(options);
    if let Err(e) = m.send() {
        let _ = clear_at(from_idx);
        return Err(ctx(annotate(e, "adding the u32 mirred filter")));
    }
    Ok(())
}

/// Removes `name`'s ingress qdisc, and with it its filters: undoes
/// [`redirect`]. No such qdisc, or no such interface, is success.
pub fn clear_redirect(name: &str) -> io::Result<()> {
    let Some(idx) = link::index(name)? else {
        return Ok(());
    };
    clear_at(idx).map_err(|e| io::Error::new(e.kind(), format!("clearing {name:?}: {e}")))
}

/// Deletes the ingress qdisc of interface `idx` if there is one. The slot
/// is looked at first: a request naming the kind fails with EINVAL rather
/// than ENOENT once an ingress qdisc has come and gone, and one without it
/// would delete a clsact qdisc too.
fn clear_at(idx: u32) -> io::Result<()> {
    match ingress_slot(idx)? {
        None => Ok(()),
        Some(kind) if kind == "ingress" => {
            let mut m = Msg::new(RTM_DELQDISC, 0);
            tcmsg(&mut m, idx, INGRESS_HANDLE, TC_H_INGRESS, 0);
            m.attr(TCA_KIND, b"ingress\0");
            match m.send() {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                r => r.map_err(|e| annotate(e, "deleting the ingress qdisc")),
            }
        }
        Some(kind) => Err(io::Error::other(format!(
            "a {kind:?} qdisc holds the ingress slot; not replacing it"
        ))),
    }
}

/// The kind of the qdisc attached at ffff:fff1 (ingress or clsact) of
/// interface `idx`, if any.
fn ingress_slot(idx: u32) -> io::Result<Option<String>> {
    let mut m = Msg::new(RTM_GETQDISC, 0);
    tcmsg(&mut m, idx, 0, 0, 0);
    for msg in m.dump()? {
        let (hdr, rest) = split_struct(&msg, TCMSG_LEN)?;
        let field =
            |at: usize| u32::from_ne_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]]);
        if field(4) != idx || field(12) != TC_H_INGRESS {
            continue;
        }
        for a in attrs(rest) {
            if let (TCA_KIND, d) = a? {
                let d = d.strip_suffix(&[0]).unwrap_or(d);
                return Ok(Some(String::from_utf8_lossy(d).into_owned()));
            }
        }
    }
    Ok(None)
}

/// struct tcmsg: family, pad, pad, ifindex, handle, parent, info.
fn tcmsg(m: &mut Msg, ifindex: u32, handle: u32, parent: u32, info: u32) {
    m.raw(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    for v in [ifindex, handle, parent, info] {
        m.raw(&v.to_ne_bytes());
    }
}

/// struct tc_u32_sel with one key matching everything: mask 0, value 0 at
/// offset 0; terminal, so the filter's actions decide.
fn match_all_sel() -> Vec<u8> {
    // flags, offshift, nkeys, pad, offmask, off, offoff, hoff, hmask
    let mut sel = vec![TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    sel.extend_from_slice(&0u32.to_ne_bytes()); // hmask
    // struct tc_u32_key: mask, val, off, offmask
    sel.extend_from_slice(&[0; 16]);
    sel
}

/// struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt),
/// eaction, ifindex.
fn mirred_redirect(ifindex: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(28);
    p.extend_from_slice(&0u32.to_ne_bytes()); // index: a new action
    p.extend_from_slice(&0u32.to_ne_bytes()); // capab
    p.extend_from_slice(&TC_ACT_STOLEN.to_ne_bytes());
    p.extend_from_slice(&0i32.to_ne_bytes()); // refcnt
    p.extend_from_slice(&0i32.to_ne_bytes()); // bindcnt
    p.extend_from_slice(&TCA_EGRESS_REDIR.to_ne_bytes());
    p.extend_from_slice(&ifindex.to_ne_bytes());
    p
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
