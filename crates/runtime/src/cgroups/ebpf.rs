//! The device filter of cgroup v2: a tiny BPF_PROG_TYPE_CGROUP_DEVICE
//! program assembled here from a compiled rule list, loaded and attached to
//! the container's cgroup, replacing the program attached before.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::devices::{ACC_ALL, Program, Rule};
use crate::error::{Error, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// One eBPF instruction, as `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}
/// dst = *(u32 *)(src + off)
const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0)
}
const fn and32_k(dst: u8, imm: i32) -> Insn {
    insn(0x54, dst, 0, 0, imm)
}
const fn rsh32_k(dst: u8, imm: i32) -> Insn {
    insn(0x74, dst, 0, 0, imm)
}
const fn mov32_x(dst: u8, src: u8) -> Insn {
    insn(0xbc, dst, src, 0, 0)
}
const fn mov64_k(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
/// if dst != imm goto +off
const fn jne_k(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm)
}
/// if dst == imm goto +off
const fn jeq_k(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x15, dst, 0, off, imm)
}
const EXIT: Insn = insn(0x95, 0, 0, 0, 0);

/// Registers after the prologue: r2 device type, r3 requested access,
/// r4 major, r5 minor; r1 is scratch.
fn prologue() -> Vec<Insn> {
    vec![
        ldx_w(2, 1, 0),
        and32_k(2, 0xffff),
        ldx_w(3, 1, 0),
        rsh32_k(3, 16),
        ldx_w(4, 1, 4),
        ldx_w(5, 1, 8),
    ]
}

/// Instructions that return the rule's verdict when a request matches it
/// and fall through to the next block otherwise. An allow rule matches a
/// request whose every access it grants; a deny rule one that asks for any
/// access it denies.
fn rule_block(r: &Rule) -> Vec<Insn> {
    // Jumps are patched once the block's length is known; i16::MAX marks them.
    const NEXT: i16 = i16::MAX;
    let mut b = Vec::new();
    match r.kind {
        'b' => b.push(jne_k(2, DEV_BLOCK, NEXT)),
        'c' => b.push(jne_k(2, DEV_CHAR, NEXT)),
        _ => {}
    }
    let acc = i32::from(r.access);
    if r.allow && r.access != ACC_ALL {
        b.push(mov32_x(1, 3));
        b.push(and32_k(1, !acc & i32::from(ACC_ALL)));
        b.push(jne_k(1, 0, NEXT));
    } else if !r.allow && r.access != ACC_ALL {
        b.push(mov32_x(1, 3));
        b.push(and32_k(1, acc));
        b.push(jeq_k(1, 0, NEXT));
    }
    if let Some(m) = r.major {
        b.push(jne_k(4, m as i32, NEXT));
    }
    if let Some(m) = r.minor {
        b.push(jne_k(5, m as i32, NEXT));
    }
    b.push(mov64_k(0, i32::from(r.allow)));
    b.push(EXIT);
    let len = b.len();
    for (i, ins) in b.iter_mut().enumerate() {
        if ins.off == NEXT {
            ins.off = (len - i - 1) as i16;
        }
    }
    b
}

pub fn assemble(p: &Program) -> Vec<Insn> {
    let mut prog = prologue();
    for r in p.exceptions.iter().rev() {
        prog.extend(rule_block(r));
    }
    prog.push(mov64_k(0, i32::from(p.default_allow)));
    prog.push(EXIT);
    prog
}

/// bpf(2) with `attr` as its `union bpf_attr`.
///
/// # Safety
/// Every address `cmd` reads from or writes to through `attr` must be valid
/// for the length given beside it, for the whole call.
unsafe fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is 128 writable bytes, the size given; the caller vouches
    // for the addresses inside it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Packs two u32 fields into one u64 word of a `union bpf_attr`.
fn pair(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = [0u64; 16];
    attr[0] = pair(BPF_PROG_TYPE_CGROUP_DEVICE, insns.len() as u32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[3] = pair(1, log.len() as u32); // log_level, log_size
    attr[4] = log.as_mut_ptr() as u64;
    // SAFETY: insns (insn_cnt entries), license (NUL-terminated) and log
    // (log_size bytes, writable) all outlive the call.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let why = String::from_utf8_lossy(&log[..end]);
            Err(Error::Cgroup(format!(
                "load the device filter: {e} {}",
                why.trim()
            )))
        }
    }
}

fn query(cgroup: &OwnedFd) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = [0u64; 16];
    attr[0] = pair(cgroup.as_raw_fd() as u32, BPF_CGROUP_DEVICE);
    attr[2] = ids.as_mut_ptr() as u64;
    attr[3] = ids.len() as u64; // prog_cnt in, count out
    // SAFETY: ids has room for the prog_cnt ids the kernel may write, and
    // outlives the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }
        .map_err(|e| Error::Cgroup(format!("query device filters: {e}")))?;
    let n = (attr[3] & 0xffff_ffff) as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

/// Loads the program for `p` and makes it the only device filter of the
/// cgroup at `dir`.
pub fn attach_device_filter(dir: &Path, p: &Program) -> Result<()> {
    let cgroup: OwnedFd = std::fs::File::open(dir)
        .map_err(|e| Error::Cgroup(format!("open {}: {e}", dir.display())))?
        .into();
    let old = query(&cgroup)?;
    let prog = load(&assemble(p))?;
    let mut attr = [0u64; 16];
    attr[0] = pair(cgroup.as_raw_fd() as u32, prog.as_raw_fd() as u32);
    attr[1] = pair(BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI);
    // SAFETY: BPF_PROG_ATTACH takes fds (open here) and flags, no addresses.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }
        .map_err(|e| Error::Cgroup(format!("attach the device filter: {e}")))?;
    // The new filter is in place before the old ones go: no gap where the
    // container could open anything.
    for id in old {
        let mut attr = [0u64; 16];
        attr[0] = u64::from(id);
        // SAFETY: BPF_PROG_GET_FD_BY_ID takes an id, no addresses.
        let Ok(fd) = (unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }) else {
            continue;
        };
        // SAFETY: the kernel returned a new fd that nothing else owns.
        let old_prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut attr = [0u64; 16];
        attr[0] = pair(cgroup.as_raw_fd() as u32, old_prog.as_raw_fd() as u32);
        attr[1] = u64::from(BPF_CGROUP_DEVICE);
        // SAFETY: BPF_PROG_DETACH takes fds (open here) and a type, no addresses.
        unsafe { bpf(BPF_PROG_DETACH, &mut attr) }
            .map_err(|e| Error::Cgroup(format!("detach the old device filter: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::devices::{ACC_READ, ACC_WRITE};

    /// Runs the assembled program the way the kernel would, for the subset
    /// of instructions the assembler emits.
    fn eval(prog: &[Insn], kind: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                0x61 => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                0x54 => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                0x74 => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                0xbc => r[dst] = r[src] as u32 as u64,
                0xb7 => r[dst] = i.imm as i64 as u64,
                0x55 if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                0x15 if r[dst] == i.imm as i64 as u64 => pc += i.off as usize,
                0x55 | 0x15 => {}
                0x95 => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rule(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: u8) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    #[test]
    fn program_enforces_rules() {
        let p = Program {
            default_allow: false,
            exceptions: vec![
                rule(true, 'c', Some(1), None, ACC_ALL),
                rule(false, 'c', Some(1), Some(3), ACC_WRITE),
                rule(true, 'b', Some(8), Some(0), ACC_READ),
            ],
        };
        let prog = assemble(&p);
        let (r, w) = (u32::from(ACC_READ), u32::from(ACC_WRITE));
        assert_eq!(eval(&prog, DEV_CHAR, r, 1, 5), 1);
        assert_eq!(eval(&prog, DEV_CHAR, r, 1, 3), 1);
        assert_eq!(eval(&prog, DEV_CHAR, w, 1, 3), 0);
        assert_eq!(eval(&prog, DEV_CHAR, r | w, 1, 3), 0);
        assert_eq!(eval(&prog, DEV_CHAR, r, 2, 0), 0);
        assert_eq!(eval(&prog, DEV_BLOCK, r, 8, 0), 1);
        assert_eq!(eval(&prog, DEV_BLOCK, w, 8, 0), 0);
        assert_eq!(eval(&prog, DEV_CHAR, r, 8, 0), 0);
    }

    #[test]
    fn default_allow_without_exceptions() {
        let p = Program {
            default_allow: true,
            exceptions: vec![],
        };
        assert_eq!(eval(&assemble(&p), DEV_CHAR, 2, 9, 9), 1);
    }
}
