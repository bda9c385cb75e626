//! A Dockerfile's text as the parser sees it: the parser directives at
//! the top, then logical lines (comments dropped, continuation lines
//! joined) with a map back to where each byte was written, and raw
//! physical lines for heredoc bodies, which are taken as they are.

use super::ast::Pos;

/// The directives given at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directives {
    pub syntax: Option<String>,
    pub escape: char,
    /// `# check=` (lint configuration): recorded, berth has no linter.
    pub check: Option<String>,
}

/// One instruction's text with continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logical {
    pub text: String,
    /// Where the pieces of `text` came from, in order of `start`.
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    /// Byte offset in `Logical::text` where this piece begins.
    start: usize,
    line: usize,
    /// Column (in characters, from 1) of the piece's first character.
    col: usize,
}

impl Logical {
    /// A logical line that is one piece of text written at `pos`.
    pub fn single(text: &str, pos: Pos) -> Logical {
        Logical {
            text: text.to_string(),
            segs: vec![Seg {
                start: 0,
                line: pos.line,
                col: pos.col,
            }],
        }
    }

    /// Where the character at byte offset `off` of `text` was written.
    pub fn pos(&self, off: usize) -> Pos {
        let off = off.min(self.text.len());
        // The last piece starting at or before `off`: an empty piece (a
        // continuation line with only the escape) yields to the next.
        let seg = self
            .segs
            .iter()
            .rev()
            .find(|s| s.start <= off)
            .unwrap_or(&self.segs[0]);
        Pos {
            line: seg.line,
            col: seg.col + self.text[seg.start..off].chars().count(),
        }
    }

    /// The text from `off` on, positions kept (an ONBUILD trigger).
    pub fn tail(&self, off: usize) -> Logical {
        let first = self.pos(off);
        let mut segs = vec![Seg {
            start: 0,
            line: first.line,
            col: first.col,
        }];
        segs.extend(self.segs.iter().filter(|s| s.start > off).map(|s| Seg {
            start: s.start - off,
            ..*s
        }));
        Logical {
            text: self.text[off..].to_string(),
            segs,
        }
    }
}

/// The physical lines of a Dockerfile and how far the parser has read.
pub(crate) struct Source<'a> {
    lines: Vec<&'a str>,
    next: usize,
    escape: char,
}

const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

impl<'a> Source<'a> {
    /// Reads the parser directives at the top of `text`.
    pub fn new(text: &'a str) -> Result<(Source<'a>, Directives), (Pos, String)> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.lines().collect();
        let mut directives = Directives {
            syntax: None,
            escape: '\\',
            check: None,
        };
        let mut seen: Vec<String> = Vec::new();
        let mut next = 0;
        // Directives are looked for only until the first line that is not
        // one: an instruction, a blank line, a plain comment, or an
        // unknown directive (which is then just a comment).
        while let Some(line) = lines.get(next) {
            let trimmed = line.trim_start();
            let Some((key, value)) = directive(trimmed) else {
                break;
            };
            if !KNOWN_DIRECTIVES.contains(&key.as_str()) {
                break;
            }
            let pos = Pos {
                line: next + 1,
                col: line.len() - trimmed.len() + 1,
            };
            if seen.contains(&key) {
                return Err((pos, format!("only one {key} parser directive can be used")));
            }
            match key.as_str() {
                "escape" => {
                    directives.escape = match value {
                        "\\" => '\\',
                        "`" => '`',
                        _ => {
                            return Err((
                                pos,
                                format!("invalid escape token {value:?}: it must be ` or \\"),
                            ));
                        }
                    }
                }
                "syntax" => directives.syntax = Some(value.to_string()),
                _ => directives.check = Some(value.to_string()),
            }
            seen.push(key);
            next += 1;
        }
        let escape = directives.escape;
        Ok((
            Source {
                lines,
                next,
                escape,
            },
            directives,
        ))
    }

    /// The next physical line as written, with its line number: a heredoc
    /// body line.
    pub fn next_raw(&mut self) -> Option<(usize, &'a str)> {
        let line = self.lines.get(self.next)?;
        self.next += 1;
        Some((self.next, line))
    }

    /// The next instruction's text: comment and blank lines skipped, the
    /// first line's leading whitespace dropped, continuation lines joined
    /// (comment lines and empty lines inside a continuation are dropped,
    /// as BuildKit does). None at the end of the file.
    pub fn next_logical(&mut self) -> Option<Logical> {
        loop {
            let (line_no, raw) = self.next_raw()?;
            let trimmed = raw.trim_start();
            if trimmed.starts_with('#') {
                continue;
            }
            let (body, mut more) = strip_continuation(trimmed, self.escape);
            if body.is_empty() && !more {
                continue;
            }
            let mut logical = Logical {
                text: body.to_string(),
                segs: vec![Seg {
                    start: 0,
                    line: line_no,
                    col: raw[..raw.len() - trimmed.len()].chars().count() + 1,
                }],
            };
            while more {
                let Some((line_no, raw)) = self.next_raw() else {
                    break;
                };
                let trimmed = raw.trim_start();
                if trimmed.starts_with('#') || trimmed.is_empty() {
                    continue;
                }
                let (body, again) = strip_continuation(raw, self.escape);
                logical.segs.push(Seg {
                    start: logical.text.len(),
                    line: line_no,
                    col: 1,
                });
                logical.text.push_str(body);
                more = again;
            }
            return Some(logical);
        }
    }
}

/// `# key = value` (key letters and digits, starting with a letter):
/// the lowercased key and the value. None if the line is not of that form.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let key_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..]
        .trim_start_matches([' ', '\t'])
        .strip_prefix('=')?
        .trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value))
}

/// A line ending in the escape character (spaces and tabs may follow it)
/// continues on the next: the line without it, and whether it did.
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let end = line.trim_end_matches([' ', '\t']);
    match end.strip_suffix(escape) {
        Some(body) => (body, true),
        None => (line, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logicals(text: &str) -> Vec<String> {
        let (mut src, _) = Source::new(text).unwrap();
        std::iter::from_fn(|| src.next_logical())
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn directives() {
        let cases: &[(&str, Option<&str>, char)] = &[
            (
                "# syntax=docker/dockerfile:1\nFROM a",
                Some("docker/dockerfile:1"),
                '\\',
            ),
            ("#escape=`\nFROM a", None, '`'),
            ("# ESCAPE = ` \nFROM a", None, '`'),
            ("\t# escape\t=\t`\nFROM a", None, '`'),
            ("# syntax=x\n# escape=`\nFROM a", Some("x"), '`'),
            // After a plain comment, a blank line or an unknown directive,
            // directives are comments.
            ("# hello\n# escape=`\nFROM a", None, '\\'),
            ("\n# escape=`\nFROM a", None, '\\'),
            ("# unknown=1\n# escape=`\nFROM a", None, '\\'),
            ("FROM a\n# escape=`", None, '\\'),
            // Not of the directive form.
            ("# escape=\nFROM a", None, '\\'),
            ("# 1x=`\n# escape=`\nFROM a", None, '\\'),
            ("\u{feff}# escape=`\nFROM a", None, '`'),
        ];
        for (text, syntax, escape) in cases {
            let (_, d) = Source::new(text).unwrap();
            assert_eq!(d.syntax.as_deref(), *syntax, "{text:?}");
            assert_eq!(d.escape, *escape, "{text:?}");
        }
    }

    #[test]
    fn directive_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("# escape=x\nFROM a", 1, "invalid escape token"),
            (
                "# escape=\\\n  # escape=`\n",
                2,
                "only one escape parser directive",
            ),
        ];
        for (text, line, want) in cases {
            let Err((pos, msg)) = Source::new(text) else {
                panic!("{text:?} parsed")
            };
            assert_eq!(pos.line, *line, "{text:?}");
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
        // A directive after an unknown one is a comment, even a bad one.
        let (_, d) = Source::new("# x=1\n# escape=x\n").unwrap();
        assert_eq!(d.escape, '\\');
    }

    #[test]
    fn continuations_and_comments() {
        let cases: &[(&str, &[&str])] = &[
            ("FROM a\nRUN a \\\n  b", &["FROM a", "RUN a   b"]),
            // Trailing whitespace after the escape.
            ("RUN a \\  \t\n b", &["RUN a  b"]),
            // Comments and empty lines inside a continuation are dropped.
            ("RUN a \\\n# c\n\n   \n  # d\n b", &["RUN a  b"]),
            (
                "  # c\n\n   RUN x # not a comment",
                &["RUN x # not a comment"],
            ),
            // A continuation at the end of the file.
            ("RUN a \\", &["RUN a "]),
            ("RUN a \\\n", &["RUN a "]),
            // An escaped escape still continues, as in BuildKit.
            ("RUN a \\\\\nb", &["RUN a \\b"]),
            ("RUN a\r\nRUN b\r\n", &["RUN a", "RUN b"]),
            ("\\\nRUN a", &["RUN a"]),
        ];
        for (text, want) in cases {
            assert_eq!(logicals(text), *want, "{text:?}");
        }
        assert_eq!(
            logicals("# escape=`\nRUN a `\n b \\\nRUN c"),
            ["RUN a  b \\", "RUN c"]
        );
    }

    #[test]
    fn positions() {
        let (mut src, _) = Source::new("\n  RUN a \\\n# c\n   b \\\n\\\nc").unwrap();
        let l = src.next_logical().unwrap();
        assert_eq!(l.text, "RUN a    b c");
        let at = |s: &str| l.pos(l.text.find(s).unwrap());
        assert_eq!(at("RUN"), Pos { line: 2, col: 3 });
        assert_eq!(at("a"), Pos { line: 2, col: 7 });
        assert_eq!(at("b"), Pos { line: 4, col: 4 });
        assert_eq!(at("c"), Pos { line: 6, col: 1 });
        let t = l.tail(l.text.find('a').unwrap());
        assert_eq!(t.text, "a    b c");
        assert_eq!(t.pos(0), Pos { line: 2, col: 7 });
        assert_eq!(t.pos(t.text.find('b').unwrap()), Pos { line: 4, col: 4 });
        // Columns count characters.
        let (mut src, _) = Source::new("LABEL é=1 x=2").unwrap();
        let l = src.next_logical().unwrap();
        assert_eq!(l.pos(l.text.find('x').unwrap()), Pos { line: 1, col: 11 });
    }

    #[test]
    fn raw_lines_for_heredocs() {
        let (mut src, _) = Source::new("RUN <<EOF\n  # kept\n\nEOF\nRUN b").unwrap();
        assert_eq!(src.next_logical().unwrap().text, "RUN <<EOF");
        assert_eq!(src.next_raw(), Some((2, "  # kept")));
        assert_eq!(src.next_raw(), Some((3, "")));
        assert_eq!(src.next_raw(), Some((4, "EOF")));
        assert_eq!(src.next_logical().unwrap().text, "RUN b");
        assert_eq!(src.next_raw(), None);
    }
}
