//! Container ids (64 hex digits, as docker's) and names: given ones are
//! checked, missing ones made up.

use berth_base::names;

use crate::error::{Error, Result};

pub use berth_base::ids::{new_id, short};

/// Names of containers and pods, as docker and podman accept them.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    names::check(what, name, names::MAX_NAME).map_err(bad_name)
}

/// Names of volumes and networks: they name files of berth's too.
pub fn check_resource_name(what: &'static str, name: &str) -> Result<()> {
    names::check(what, name, names::MAX_RESOURCE_NAME).map_err(bad_name)
}

fn bad_name(e: names::BadName) -> Error {
    Error::invalid(format!("{} name {}", e.kind, e.shown()), e.why)
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
/// Its errors are errors, never taken for "in use": a damaged database
/// must not make this loop forever.
pub fn make_name(taken: impl Fn(&str) -> Result<bool>) -> Result<String> {
    let id = new_id();
    let pick = |i: usize, n: usize| usize::from_str_radix(&id[i..i + 2], 16).unwrap_or(0) % n;
    let base = format!(
        "{}_{}",
        ADJECTIVES[pick(0, ADJECTIVES.len())],
        NOUNS[pick(2, NOUNS.len())]
    );
    if !taken(&base)? {
        return Ok(base);
    }
    // Then with a random suffix: 2^32 of them, so a free one comes at once
    // unless something is badly wrong.
    for _ in 0..100 {
        let n = format!("{base}_{}", &new_id()[..8]);
        if !taken(&n)? {
            return Ok(n);
        }
    }
    Err(Error::Conflict(format!(
        "no free name like {base}_... after 100 tries: give one with --name"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("container", "web-1.a_b").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "ä"] {
            assert!(check_name("container", bad).is_err(), "{bad}");
        }
        let n = make_name(|_| Ok(false)).unwrap();
        assert!(check_name("container", &n).is_ok());
        let taken = n.clone();
        let other = make_name(|c| Ok(c == taken || c.split('_').count() == 2)).unwrap();
        assert_ne!(other, n);
        assert!(check_name("container", &other).is_ok());
        // A failing lookup is an error, not "taken" forever.
        let e = make_name(|_| Err(Error::NotFound("db".into()))).unwrap_err();
        assert!(e.to_string().contains("db"));
        assert!(make_name(|_| Ok(true)).is_err());
    }
}
