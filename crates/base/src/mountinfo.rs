//! /proc/self/mountinfo as the kernel writes it: fields separated by
//! spaces, with space, tab, newline and backslash in paths escaped as
//! three octal digits (`\040`).

/// A mountinfo path field with its octal escapes undone.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points (field 5) of a mountinfo text, unescaped, sorted,
/// each once.
pub fn mount_points(mountinfo: &str) -> Vec<String> {
    let mut out: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unescaped_and_listed_once() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/end\04"), r"/end\04", "a cut escape stays");
        let mi = "1 0 0:1 / / rw - overlay o rw\n2 1 0:2 / /my\\040dir rw - tmpfs t rw\n3 1 0:3 / / rw - proc p rw\n";
        assert_eq!(mount_points(mi), ["/", "/my dir"]);
    }
}
