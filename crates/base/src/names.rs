//! The one rule for the names users give things (containers, pods,
//! volumes, networks): docker's characters, and a length that fits in a
//! file name with room for what berth adds to it.

use std::fmt;

/// Containers and pods: Kubernetes' names run to 253 bytes (a DNS
/// subdomain), and a CRI runtime must take them.
pub const MAX_NAME: usize = 253;
/// Networks and volumes name files and directories with suffixes of
/// berth's own (a CNI cache entry adds a 64-digit id and an interface).
pub const MAX_RESOURCE_NAME: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    pub kind: &'static str,
    pub name: String,
    pub why: String,
}

impl BadName {
    /// The name as an error shows it: quoted, and cut short when long.
    pub fn shown(&self) -> String {
        let shown: String = self.name.chars().take(64).collect();
        let more = if shown.len() < self.name.len() {
            "…"
        } else {
            ""
        };
        format!("{shown:?}{more}")
    }
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} name {}: {}", self.kind, self.shown(), self.why)
    }
}

impl std::error::Error for BadName {}

/// Letters, digits and `_ . -`, starting with a letter or digit, at most
/// `max` bytes.
pub fn check(kind: &'static str, name: &str, max: usize) -> Result<(), BadName> {
    let bad = |why: String| {
        Err(BadName {
            kind,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty".into());
    }
    if name.len() > max {
        return bad(format!("{} bytes long, more than {max}", name.len()));
    }
    let ok = name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return bad("names are letters, digits and _ . - (starting with a letter or digit)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check("container", "web-1.a_b", MAX_NAME).is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "ä", "x\n"] {
            assert!(check("container", bad, MAX_NAME).is_err(), "{bad}");
        }
        let long = "n".repeat(MAX_RESOURCE_NAME + 1);
        let e = check("network", &long, MAX_RESOURCE_NAME).unwrap_err();
        assert!(
            e.to_string().contains("129 bytes long, more than 128"),
            "{e}"
        );
        assert!(e.to_string().len() < 200, "the name is shortened: {e}");
        assert!(check("network", &long[1..], MAX_RESOURCE_NAME).is_ok());
    }
}
