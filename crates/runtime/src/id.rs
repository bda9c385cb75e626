//! Container ids name directories under the state root, so they must never be
//! able to point anywhere else.

use crate::error::{Error, Result};

/// Longest id accepted; well under NAME_MAX so that suffixes still fit.
const MAX_LEN: usize = 1024;

pub fn validate(id: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidId {
            id: id.to_string(),
            why,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_LEN {
        return bad("it is longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("it is a relative path component");
    }
    if id.starts_with('.') {
        return bad("it starts with a dot");
    }
    // runc's alphabet: letters, digits, '_', '+', '-', '.'.
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_usual_ids() {
        for id in ["a", "ctr-1", "9f86d081884c7d65", "pod_x+y.z"] {
            validate(id).unwrap();
        }
    }

    #[test]
    fn rejects_paths_and_oddities() {
        let long = "x".repeat(1025);
        for id in [
            "", ".", "..", ".hidden", "a/b", "../x", "/abs", "a b", "a\nb", "é", &long,
        ] {
            assert!(validate(id).is_err(), "{id:?} accepted");
        }
    }
}
