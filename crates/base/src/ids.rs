//! Random ids: 64 hex digits, as docker's container ids.

/// `n` random bytes from the kernel's pool, as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    fill_random(&mut b);
    let mut s = String::with_capacity(2 * n);
    for x in b {
        s.push(char::from(b"0123456789abcdef"[usize::from(x >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(x & 15)]));
    }
    s
}

/// A new 64-hex-digit id.
pub fn new_id() -> String {
    random_hex(32)
}

/// The 12-digit form shown in tables.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Fills `buf` from the kernel's pool.
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most rest.len() bytes into rest.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n >= 0 {
            filled += n as usize;
            continue;
        }
        let e = std::io::Error::last_os_error();
        // getrandom(2) fails otherwise only on kernels berth does not run on.
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "getrandom: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(short(&a).len(), 12);
    }
}
