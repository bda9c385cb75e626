//! Container ids (64 hex digits, as docker's) and names: given ones are
//! checked, missing ones made up.

use crate::error::{Error, Result};

/// A fresh random id.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    let mut filled = 0;
    while filled < b.len() {
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The short form shown in tables.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Names as docker and podman accept them.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("{what} name {name:?}"),
            "names are letters, digits and _ . - (starting with a letter or digit)",
        ))
    }
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "rapid", "sharp", "steady", "swift", "tidy", "vivid", "witty",
];
const NOUNS: &[&str] = &[
    "anchor", "barge", "buoy", "cutter", "dinghy", "ferry", "galley", "harbor", "jetty", "keel",
    "ketch", "mast", "pier", "quay", "rudder", "schooner", "sloop", "tender", "wharf", "yawl",
];

/// A made-up name like `swift_ketch`; `taken` says whether one is in use.
pub fn make_name(taken: impl Fn(&str) -> bool) -> String {
    let id = new_id();
    let pick = |i: usize, n: usize| usize::from_str_radix(&id[i..i + 2], 16).unwrap_or(0) % n;
    let base = format!(
        "{}_{}",
        ADJECTIVES[pick(0, ADJECTIVES.len())],
        NOUNS[pick(2, NOUNS.len())]
    );
    if !taken(&base) {
        return base;
    }
    // Then with a suffix from the random id: collisions end quickly.
    (0..)
        .map(|i| format!("{base}_{}", &id[4 + i % 50..8 + i % 50]))
        .find(|n| !taken(n))
        .expect("some name is free")
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

    #[test]
    fn names() {
        assert!(check_name("container", "web-1.a_b").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "ä"] {
            assert!(check_name("container", bad).is_err(), "{bad}");
        }
        let n = make_name(|_| false);
        assert!(check_name("container", &n).is_ok());
        let taken = n.clone();
        let other = make_name(|c| c == taken || c.split('_').count() == 2);
        assert_ne!(other, n);
        assert!(check_name("container", &other).is_ok());
    }
}
