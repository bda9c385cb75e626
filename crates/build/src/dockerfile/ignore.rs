//! `.dockerignore`, as docker reads it: one pattern a line, `#` comment
//! lines, surrounding whitespace trimmed, each pattern cleaned like a path
//! (a leading `/` dropped: the context is the root), `!` for exceptions.
//! A path is excluded if the last rule matching it, or one of its parent
//! directories, excludes it.
//!
//! Patterns are Go filepath.Match patterns (`*` and `?` not crossing `/`,
//! `[a-z]`, `[^a]`, `\` escapes) plus `**`, which matches any number of
//! directories: `**/x`, `a/**/b`, `a/**`.

/// A pattern that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: bad .dockerignore pattern {pattern:?}: {message}")]
pub struct IgnoreError {
    pub line: usize,
    pub pattern: String,
    pub message: String,
}

/// The rules of a `.dockerignore`, in order.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// A `!` rule: it includes again what it matches.
    exception: bool,
    matcher: Matcher,
    /// The pattern's path components, each a pattern of its own (None for
    /// one holding `**`), to tell whether it can match under a directory.
    parts: Vec<Option<Vec<Tok>>>,
}

#[derive(Debug, Clone)]
enum Matcher {
    Glob(Vec<Tok>),
    /// `**` then no other wildcard: docker matches these by suffix (so
    /// `**foo` matches `xfoo`), and `**/foo` matches `foo` too.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: any text without `/`.
    Star,
    /// `**` followed by more: nothing, or anything ending in `/`.
    Dirs,
    /// `**` at the end: anything.
    All,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            // A comment only where the line starts, before trimming.
            if line.starts_with('#') {
                continue;
            }
            let pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let bad = |message: &str| IgnoreError {
                line: i + 1,
                pattern: pattern.to_string(),
                message: message.to_string(),
            };
            let (exception, rest) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, pattern),
            };
            if rest.is_empty() {
                return Err(bad("an exception needs a pattern after '!'"));
            }
            let cleaned = clean(rest);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(relative) if !relative.is_empty() => relative.to_string(),
                _ => cleaned,
            };
            validate(&cleaned).map_err(|m| bad(&m))?;
            rules.push(Rule::new(exception, &cleaned));
        }
        Ok(Ignore { rules })
    }

    /// No rules: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is left
    /// out of the context.
    pub fn excluded(&self, rel_path: &str) -> bool {
        let path = clean(rel_path.trim_start_matches('/'));
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for rule in &self.rules {
            // Only an exclusion can change an included path and only an
            // exception an excluded one.
            if rule.exception != excluded {
                continue;
            }
            if rule.matches(&path) || parents.iter().any(|p| rule.matches(p)) {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// For a walker at an excluded directory: whether an exception might
    /// include again something under it, so it must still look inside.
    /// Errs towards yes; no means nothing under `dir` can be included.
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir = clean(dir.trim_start_matches('/'));
        let dir: Vec<&str> = dir.split('/').collect();
        self.rules
            .iter()
            .filter(|r| r.exception)
            .any(|r| r.may_match_under(&dir))
    }
}

impl Rule {
    fn new(exception: bool, pattern: &str) -> Rule {
        let suffix = pattern
            .strip_prefix("**")
            .filter(|rest| !rest.contains(['*', '?', '[', ']', '\\']));
        let matcher = match suffix {
            Some(rest) => Matcher::Suffix(rest.to_string()),
            None => Matcher::Glob(compile(pattern)),
        };
        let parts = pattern
            .split('/')
            .map(|part| (!part.contains("**")).then(|| compile(part)))
            .collect();
        Rule {
            exception,
            matcher,
            parts,
        }
    }

    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str()) || suffix.strip_prefix('/') == Some(path)
            }
            Matcher::Glob(toks) => glob(toks, &path.chars().collect::<Vec<_>>()),
        }
    }

    /// Whether the pattern can match `dir`, a parent of it, or something
    /// under it, judged component by component.
    fn may_match_under(&self, dir: &[&str]) -> bool {
        for (i, part) in self.parts.iter().enumerate() {
            let (Some(part), Some(name)) = (part, dir.get(i)) else {
                // A `**`, or the pattern goes deeper than `dir`.
                return true;
            };
            if !glob(part, &name.chars().collect::<Vec<_>>()) {
                return false;
            }
        }
        // It matches `dir` or a parent, and so what is under it.
        true
    }
}

/// Go's filepath.Clean for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's filepath.Match syntax check: classes closed and not empty, range
/// ends present, no escape at the end.
fn validate(pattern: &str) -> Result<(), String> {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return Err("'\\' at the end escapes nothing".into()),
            '[' => {
                chars.next_if_eq(&'^');
                let mut ranges = 0;
                loop {
                    let Some(lo) = chars.next() else {
                        return Err("'[' without its ']'".into());
                    };
                    if lo == ']' && ranges > 0 {
                        break;
                    }
                    class_char(lo, &mut chars)?;
                    if chars.next_if_eq(&'-').is_some() {
                        let Some(hi) = chars.next() else {
                            return Err("'[' without its ']'".into());
                        };
                        class_char(hi, &mut chars)?;
                    }
                    ranges += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One end of a class range: not `]` or `-` unescaped, an escape followed
/// by something.
fn class_char(c: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<(), String> {
    match c {
        ']' | '-' => Err(format!(
            "{c:?} where a character of a '[...]' class belongs"
        )),
        '\\' if chars.next().is_none() => Err("'[' without its ']'".into()),
        _ => Ok(()),
    }
}

/// Compiles a validated pattern.
fn compile(pattern: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' if chars.next_if_eq(&'*').is_some() => {
                // `**/` is `**`; it matches whole directories.
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    Tok::All
                } else {
                    Tok::Dirs
                }
            }
            '*' => Tok::Star,
            '?' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            '[' => {
                let negated = chars.next_if_eq(&'^').is_some();
                let mut ranges = Vec::new();
                while let Some(lo) = chars.next() {
                    if lo == ']' && !ranges.is_empty() {
                        break;
                    }
                    let lo = if lo == '\\' {
                        chars.next().unwrap_or(lo)
                    } else {
                        lo
                    };
                    let mut hi = lo;
                    if chars.next_if_eq(&'-').is_some() {
                        hi = chars.next().unwrap_or(lo);
                        if hi == '\\' {
                            hi = chars.next().unwrap_or(hi);
                        }
                    }
                    ranges.push((lo, hi));
                }
                Tok::Class { negated, ranges }
            }
            c => Tok::Lit(c),
        });
    }
    toks
}

/// Whether `toks` match all of `s`: a table of which pattern suffixes
/// match which text suffixes, filled from the ends.
fn glob(toks: &[Tok], s: &[char]) -> bool {
    let n = s.len();
    let mut next = vec![false; n + 1];
    next[n] = true;
    for tok in toks.iter().rev() {
        let mut cur = vec![false; n + 1];
        // For Dirs: whether some `/` at or after j ends a match.
        let mut slash_then_rest = false;
        for j in (0..=n).rev() {
            let one = |ok: bool| j < n && ok && next[j + 1];
            cur[j] =
                match tok {
                    Tok::Lit(c) => one(j < n && s[j] == *c),
                    Tok::One => one(j < n && s[j] != '/'),
                    Tok::Class { negated, ranges } => one(j < n
                        && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[j])) != *negated),
                    Tok::Star => next[j] || (j < n && s[j] != '/' && cur[j + 1]),
                    Tok::All => next[j] || (j < n && cur[j + 1]),
                    Tok::Dirs => {
                        slash_then_rest |= j < n && s[j] == '/' && next[j + 1];
                        next[j] || slash_then_rest
                    }
                };
        }
        next = cur;
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn cleaning() {
        let cases = [
            ("", "."),
            ("a/b", "a/b"),
            ("a//b/", "a/b"),
            ("./a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("/a/b/..", "/a"),
        ];
        for (path, want) in cases {
            assert_eq!(clean(path), want, "{path:?}");
        }
    }

    #[test]
    fn single_patterns() {
        // (pattern, path, excluded)
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo/bar", true),
            ("foo", "foo/bar/baz", true),
            ("foo", "foobar", false),
            ("foo", "a/foo", false),
            ("/foo", "foo/x", true),
            ("./foo/", "foo", true),
            ("foo/../bar", "bar", true),
            ("  spaced  ", "spaced", true),
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("*/*.md", "docs/README.md", true),
            ("*", "anything/at/all", true),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("a?b", "a/b", false),
            ("temp?", "temp1/x", true),
            ("**/*.go", "main.go", true),
            ("**/*.go", "a/b/c.go", true),
            ("**/*.go", "a/b/c.rs", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/xb", false),
            ("a/**", "a/x/y", true),
            ("a/**", "a", false),
            ("**", "x/y", true),
            ("**/node_modules", "node_modules", true),
            ("**/node_modules", "web/node_modules/x", true),
            ("**/node_modules", "xnode_modules", false),
            // docker's suffix match for `**` then no wildcard.
            ("**foo", "xfoo", true),
            ("**.go", "a/b.go", true),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[^a-c]x", "dx", true),
            ("[^a-c]x", "ax", false),
            ("[\\]]x", "]x", true),
            ("\\*x", "*x", true),
            ("\\*x", "ax", false),
            ("a\\?", "a?", true),
            ("é*", "été", true),
        ];
        for (pattern, path, want) in cases {
            let got = Ignore::parse(pattern).map(|ig| ig.excluded(path));
            assert_eq!(got, Ok(*want), "{pattern:?} {path:?}");
        }
    }

    #[test]
    fn rules_in_order() {
        let ig = ignore(
            "# comment\n\
             \n\
             *.md\n\
             !README.md\n\
             docs\n\
             !docs/keep/**\n\
             docs/keep/secret\n\
             node_modules\n\
             \x20 # not a comment\n",
        );
        let cases = [
            ("CHANGES.md", true),
            ("README.md", false),
            ("sub/README.md", false),
            ("docs", true),
            ("docs/a.txt", true),
            ("docs/keep", true),
            ("docs/keep/x", false),
            ("docs/keep/secret", true),
            ("docs/keep/secret/y", true),
            ("node_modules/x/y", true),
            ("# not a comment", true),
            ("src/main.rs", false),
            ("/src/main.rs", false),
            ("./node_modules", true),
        ];
        for (path, want) in cases {
            assert_eq!(ig.excluded(path), want, "{path:?}");
        }
        // The last matching rule wins: an exception before the exclusion
        // does nothing.
        let ig = ignore("!keep.txt\n*.txt");
        assert!(ig.excluded("keep.txt"));
        assert!(!ignore("").excluded("x"));
        assert!(ignore("").is_empty());
    }

    #[test]
    fn reinclude_under() {
        let ig = ignore("docs\n!docs/keep/**\n!**/LICENSE\nbuild\n!build/out\nvendor\n");
        let cases = [
            ("docs", true),
            ("docs/other", true),
            ("vendor", true),
            ("build", true),
            ("build/tmp", true),
        ];
        for (dir, want) in cases {
            assert_eq!(ig.may_reinclude_under(dir), want, "{dir:?}");
        }
        let ig = ignore("docs\n!docs/keep\nvendor\n!src/*.rs\n!*.md\n");
        let cases = [
            ("docs", true),
            ("docs/keep", true),
            ("docs/other", false),
            ("vendor", false),
            ("src", true),
            ("src/sub", false),
            ("node_modules", false),
        ];
        for (dir, want) in cases {
            assert_eq!(ig.may_reinclude_under(dir), want, "{dir:?}");
        }
        assert!(!ignore("a\nb/c").may_reinclude_under("a"));
        assert!(ignore("a\n!a/[bc]").may_reinclude_under("a"));
        assert!(!ignore("a/x\n!a/[bc]/d").may_reinclude_under("a/x"));
    }

    #[test]
    fn bad_patterns() {
        let cases: &[(&str, usize, &str, &str)] = &[
            ("ok\n[abc", 2, "[abc", "without its ']'"),
            ("a[", 1, "a[", "without its ']'"),
            ("[]a]", 1, "[]a]", "class"),
            ("[-a]", 1, "[-a]", "class"),
            ("[a-]", 1, "[a-]", "class"),
            ("[a\\", 1, "[a\\", "without its ']'"),
            ("a\\", 1, "a\\", "escapes nothing"),
            ("\n\n!", 3, "!", "needs a pattern"),
            ("!  ", 1, "!", "needs a pattern"),
        ];
        for (text, line, pattern, want) in cases {
            let e = Ignore::parse(text).unwrap_err();
            assert_eq!((e.line, e.pattern.as_str()), (*line, *pattern), "{text:?}");
            assert!(e.message.contains(want), "{text:?}: {e}");
        }
        assert_eq!(
            Ignore::parse("x[").unwrap_err().to_string(),
            "line 1: bad .dockerignore pattern \"x[\": '[' without its ']'"
        );
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("a*", "a/b", false),
            ("a**", "a/b", true),
            ("a/**", "a/b", true),
            ("**/b/**", "x/b/y", true),
            ("**/b/**", "b/y", true),
            ("**/b/**", "x/bb/y", false),
        ];
        for (pattern, path, want) in cases {
            let chars: Vec<char> = path.chars().collect();
            assert_eq!(
                glob(&compile(pattern), &chars),
                *want,
                "{pattern:?} {path:?}"
            );
        }
    }
}
