//! Words as BuildKit's Dockerfile frontend reads them.
//!
//! `split_words` cuts an instruction's arguments into raw words (ENV,
//! LABEL, ARG) at parse time; quotes and escapes stay in the words, since
//! what they mean depends on where the word is used. `expand` gives a raw
//! word its value at build time, with the ARG and ENV then in force, as
//! BuildKit's shell lexer does: a subset of sh (quotes, escapes, `$VAR`
//! and `${VAR...}` forms), no command substitution, no word splitting.
//! `expand_text` does the same for a heredoc body, quotes being text there.

/// A word that could not be expanded: a syntax error, or `${VAR:?msg}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    pub message: String,
}

fn fail<T>(message: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError {
        message: message.into(),
    })
}

/// Expands one raw word: single quotes keep their text as is; double
/// quotes expand variables, and there the escape character escapes only
/// `"`, `$` and itself (it is kept before anything else); outside quotes
/// the escape character takes the next character literally. Unset
/// variables are empty.
pub fn expand(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(word, lookup, escape, true).whole()
}

/// Expands a heredoc body (COPY and ADD `<<EOF` with an unquoted
/// delimiter): variables and escapes as in `expand`, but quotes are
/// ordinary characters, as in BuildKit (so `\$` gives `$`, and a lone
/// escape character is dropped).
pub fn expand_text(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(text, lookup, escape, false).whole()
}

struct Lexer<'a> {
    chars: Vec<char>,
    at: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    escape: char,
    /// Whether quotes quote (false for heredoc bodies).
    quotes: bool,
}

impl<'a> Lexer<'a> {
    fn new(
        text: &str,
        lookup: &'a dyn Fn(&str) -> Option<String>,
        escape: char,
        quotes: bool,
    ) -> Self {
        Lexer {
            chars: text.chars().collect(),
            at: 0,
            lookup,
            escape,
            quotes,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn whole(mut self) -> Result<String, ExpandError> {
        Ok(self.until(&[], false)?.0)
    }

    /// Reads up to one of `stops` (taken, and returned) or, with no stops,
    /// to the end. With `pattern`, the text is a glob pattern: what was
    /// escaped or quoted literally is written with the escape character
    /// before it, so the pattern matches it as itself.
    fn until(
        &mut self,
        stops: &[char],
        pattern: bool,
    ) -> Result<(String, Option<char>), ExpandError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if stops.contains(&c) {
                self.bump();
                return Ok((out, Some(c)));
            }
            match c {
                '\'' if self.quotes => self.single_quoted(&mut out, pattern)?,
                '"' if self.quotes => self.double_quoted(&mut out, pattern)?,
                '$' => out.push_str(&self.dollar()?),
                _ => {
                    self.bump();
                    if c != self.escape {
                        out.push(c);
                    } else if let Some(next) = self.bump() {
                        self.literal(&mut out, next, pattern);
                    }
                }
            }
        }
        if stops.is_empty() {
            Ok((out, None))
        } else {
            fail("syntax error: missing '}'")
        }
    }

    /// Writes a character that stands for itself.
    fn literal(&self, out: &mut String, c: char, pattern: bool) {
        if pattern && (c == self.escape || c == '*' || c == '?') {
            out.push(self.escape);
        }
        out.push(c);
    }

    fn single_quoted(&mut self, out: &mut String, pattern: bool) -> Result<(), ExpandError> {
        self.bump();
        loop {
            match self.bump() {
                None => return fail("unterminated single quote"),
                Some('\'') => return Ok(()),
                // Quoted text is still a pattern (BuildKit); only the
                // escape character must stay itself.
                Some(c) if pattern && c == self.escape => self.literal(out, c, pattern),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut String, pattern: bool) -> Result<(), ExpandError> {
        self.bump();
        loop {
            match self.peek() {
                None => return fail("unterminated double quote"),
                Some('"') => {
                    self.bump();
                    return Ok(());
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => {
                    self.bump();
                    match self.peek() {
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            self.bump();
                            self.literal(out, n, pattern);
                        }
                        // Kept: it escapes nothing else in double quotes.
                        Some(_) => self.literal(out, c, pattern),
                        None => {}
                    }
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    /// A name after `$`: digits (`$1`), one special character (`$$`,
    /// `$#`, ...), or letters, digits and `_`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.bump();
                }
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.bump();
                name.push(c);
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.bump();
                }
            }
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.bump();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok((self.lookup)(&name).unwrap_or_default());
        }
        self.bump();
        if self.peek().is_none() {
            return fail("syntax error: missing '}'");
        }
        let name = self.name();
        if name.is_empty() {
            return fail("syntax error: bad substitution");
        }
        let value = (self.lookup)(&name);
        let Some(op) = self.bump() else {
            return fail("syntax error: missing '}'");
        };
        match op {
            '}' => Ok(value.unwrap_or_default()),
            ':' => {
                let Some(modifier) = self.bump() else {
                    return fail("syntax error: missing '}'");
                };
                if !matches!(modifier, '-' | '+' | '?') {
                    return fail(format!(
                        "unsupported modifier (:{modifier}) in substitution"
                    ));
                }
                let word = self.until(&['}'], false)?.0;
                // With ':', an empty value counts as unset.
                let value = value.filter(|v| !v.is_empty());
                substitute(&name, modifier, value, word, ":")
            }
            '-' | '+' | '?' => {
                let word = self.until(&['}'], false)?.0;
                substitute(&name, op, value, word, "")
            }
            '#' | '%' => {
                let longest = self.peek() == Some(op);
                if longest {
                    self.bump();
                }
                let pattern = Pattern::new(&self.until(&['}'], true)?.0, self.escape);
                let value = value.unwrap_or_default();
                Ok(match op {
                    '#' => pattern.strip_prefix(&value, longest),
                    _ => pattern.strip_suffix(&value, longest),
                })
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.bump();
                }
                let (pattern, stop) = self.until(&['/', '}'], true)?;
                let pattern = Pattern::new(&pattern, self.escape);
                let with = match stop {
                    Some('/') => self.until(&['}'], false)?.0,
                    _ => String::new(),
                };
                Ok(pattern.replace(&value.unwrap_or_default(), &with, all))
            }
            other => fail(format!("unsupported modifier ({other}) in substitution")),
        }
    }
}

/// `${name-word}`, `${name+word}`, `${name?word}` (and with `:`, where
/// `value` is None also when it was empty).
fn substitute(
    name: &str,
    op: char,
    value: Option<String>,
    word: String,
    colon: &str,
) -> Result<String, ExpandError> {
    match (op, value) {
        ('-', Some(v)) => Ok(v),
        ('-', None) => Ok(word),
        ('+', Some(_)) => Ok(word),
        ('+', None) => Ok(String::new()),
        (_, Some(v)) => Ok(v),
        (_, None) if !word.is_empty() => fail(format!("{name}: {word}")),
        (_, None) if colon.is_empty() => fail(format!("{name}: is not allowed to be unset")),
        (_, None) => fail(format!("{name}: is not allowed to be unset or empty")),
    }
}

/// A shell pattern as BuildKit takes them in `${VAR#pattern}` and kin:
/// `*` any text, `?` any one character, the escape character makes the
/// next one literal. Brackets are literal (BuildKit has no classes here).
struct Pattern(Vec<Tok>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
    Any,
}

impl Pattern {
    fn new(text: &str, escape: char) -> Pattern {
        let mut toks = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            toks.push(match c {
                '*' => Tok::Any,
                '?' => Tok::One,
                c if c == escape => Tok::Lit(chars.next().unwrap_or(escape)),
                c => Tok::Lit(c),
            });
        }
        Pattern(toks)
    }

    /// Whether the pattern matches all of `s`.
    fn matches(&self, s: &[char]) -> bool {
        let p = &self.0;
        let (mut pi, mut si) = (0, 0);
        // Where to resume after the last `*`: its place and how much of
        // `s` it has eaten so far.
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(Tok::Any) => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some(Tok::One) => {
                    pi += 1;
                    si += 1;
                }
                Some(Tok::Lit(c)) if *c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|t| *t == Tok::Any)
    }

    /// `${VAR#pattern}` (shortest) and `${VAR##pattern}` (longest).
    fn strip_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut ends: Box<dyn Iterator<Item = usize>> = if longest {
            Box::new((0..=chars.len()).rev())
        } else {
            Box::new(0..=chars.len())
        };
        match ends.find(|&end| self.matches(&chars[..end])) {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${VAR%pattern}` (shortest) and `${VAR%%pattern}` (longest).
    fn strip_suffix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut starts: Box<dyn Iterator<Item = usize>> = if longest {
            Box::new(0..=chars.len())
        } else {
            Box::new((0..=chars.len()).rev())
        };
        match starts.find(|&start| self.matches(&chars[start..])) {
            Some(start) => chars[..start].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${VAR/pattern/with}` (the first match) and `${VAR//pattern/with}`
    /// (every match): leftmost, then longest, never empty.
    fn replace(&self, value: &str, with: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut at = 0;
        while at < chars.len() {
            let longest = (at + 1..=chars.len())
                .rev()
                .find(|&end| self.matches(&chars[at..end]));
            let Some(end) = longest else {
                out.push(chars[at]);
                at += 1;
                continue;
            };
            out.push_str(with);
            at = end;
            if !all {
                break;
            }
        }
        out.extend(&chars[at..]);
        out
    }
}

/// Splits `text` on whitespace outside quotes, keeping quotes and escapes
/// in the words as written. The escape character takes the next character
/// along (even a quote or a space) outside single quotes; inside single
/// quotes it is an ordinary character. An escape at the very end is
/// dropped; an unterminated quote runs to the end.
pub fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            match chars.next() {
                Some(next) => {
                    word.push(c);
                    word.push(next);
                }
                None => quote = None,
            }
            continue;
        }
        match quote {
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        let value = match name {
            "A" => "a",
            "E" => "",
            "S" => "a b",
            "Q" => "\"q\"",
            "P" => "/usr/local/bin",
            "F" => "file.tar.gz",
            "STAR" => "*",
            "B" => "bee",
            _ => return None,
        };
        Some(value.to_string())
    }

    fn ex(word: &str) -> Result<String, String> {
        expand(word, &env, '\\').map_err(|e| e.message)
    }

    #[test]
    fn quotes_escapes_and_variables() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("", ""),
            ("$A", "a"),
            ("${A}", "a"),
            ("x${A}y", "xay"),
            ("$A$B", "abee"),
            ("$Ab", ""),
            ("${A}b", "ab"),
            ("$UNSET", ""),
            ("$", "$"),
            ("a$", "a$"),
            ("$/x", "$/x"),
            ("$1x", "x"),
            ("$$", ""),
            ("$S", "a b"),
            ("$Q", "\"q\""),
            // Single quotes: everything literal.
            ("'$A \\ \"'", "$A \\ \""),
            // Double quotes: variables; the escape only before " $ and itself.
            ("\"$A ${B}\"", "a bee"),
            ("\"\\$A \\\" \\\\ \\n \\'\"", "$A \" \\ \\n \\'"),
            ("\"it's\"", "it's"),
            ("'say \"hi\"'", "say \"hi\""),
            ("a'b'\"c\"d", "abcd"),
            // Outside quotes the escape takes the next character.
            ("\\$A", "$A"),
            ("\\a\\ b", "a b"),
            ("\\'x", "'x"),
            ("\\\\", "\\"),
            ("end\\", "end"),
            ("a b  c", "a b  c"),
            ("é$A", "éa"),
        ];
        for (word, want) in cases {
            assert_eq!(ex(word).as_deref(), Ok(*want), "{word:?}");
        }
        // A backtick escape leaves backslashes alone.
        let got = expand("C:\\dir\\`$A `\"x`\"", &env, '`').unwrap();
        assert_eq!(got, "C:\\dir\\$A \"x\"");
    }

    #[test]
    fn modifiers() {
        let cases: &[(&str, &str)] = &[
            ("${A:-d}", "a"),
            ("${E:-d}", "d"),
            ("${U:-d}", "d"),
            ("${A-d}", "a"),
            ("${E-d}", ""),
            ("${U-d}", "d"),
            ("${A:+w}", "w"),
            ("${E:+w}", ""),
            ("${U:+w}", ""),
            ("${A+w}", "w"),
            ("${E+w}", "w"),
            ("${U+w}", ""),
            ("${A:?no}", "a"),
            ("${E?no}", ""),
            // Words are expanded, quoted, nested.
            ("${U:-${B}}", "bee"),
            ("${U:-${V:-$A}x}", "ax"),
            ("${U:-\"a b\"}", "a b"),
            ("${U:-'}'}", "}"),
            ("${U:-a\\}b}", "a}b"),
            ("\"${U:-x y}\"", "x y"),
            ("${A:+$B-$B}", "bee-bee"),
        ];
        for (word, want) in cases {
            assert_eq!(ex(word).as_deref(), Ok(*want), "{word:?}");
        }
    }

    #[test]
    fn patterns() {
        let cases: &[(&str, &str)] = &[
            ("${F#*.}", "tar.gz"),
            ("${F##*.}", "gz"),
            ("${F%.*}", "file.tar"),
            ("${F%%.*}", "file"),
            ("${P#/usr}", "/local/bin"),
            ("${P#/nope}", "/usr/local/bin"),
            ("${P##*/}", "bin"),
            ("${P%/*}", "/usr/local"),
            ("${P%%/*}", ""),
            ("${F#?}", "ile.tar.gz"),
            ("${F#*}", "file.tar.gz"),
            ("${F##*}", ""),
            ("${U#x}", ""),
            // Escaped and variable-given pattern characters.
            ("${STAR#\\*}", ""),
            ("${F#\\*}", "file.tar.gz"),
            ("${F%.$U*}", "file.tar"),
            ("${F#[f]}", "file.tar.gz"),
            // Replacement: first, then all; leftmost, longest.
            ("${P/\\//:}", ":usr/local/bin"),
            ("${P//\\//:}", ":usr:local:bin"),
            ("${F/.*/}", "file"),
            ("${F//a/A}", "file.tAr.gz"),
            ("${S// /_}", "a_b"),
            ("${F/x/y}", "file.tar.gz"),
            ("${F//?/-}", "-----------"),
            ("${F/file}", ".tar.gz"),
        ];
        for (word, want) in cases {
            assert_eq!(ex(word).as_deref(), Ok(*want), "{word:?}");
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            ("${U:?must be set}", "U: must be set"),
            ("${U?}", "U: is not allowed to be unset"),
            ("${E:?}", "E: is not allowed to be unset or empty"),
            ("${A", "missing '}'"),
            ("${", "missing '}'"),
            ("${A:-x", "missing '}'"),
            ("${}", "bad substitution"),
            ("${:-x}", "bad substitution"),
            ("${{A}}", "bad substitution"),
            ("${A.b}", "unsupported modifier (.)"),
            ("${A:=x}", "unsupported modifier (:=)"),
            ("'abc", "unterminated single quote"),
            ("\"abc", "unterminated double quote"),
            ("\"abc\\", "unterminated double quote"),
            // Words are expanded even when not used, as in BuildKit.
            ("${A:-${U:?gone}}", "U: gone"),
        ];
        for (word, want) in cases {
            let err = ex(word).unwrap_err();
            assert!(err.contains(want), "{word:?}: {err}");
        }
    }

    #[test]
    fn heredoc_text() {
        let text = "echo \"$A\" '${B}' \\$HOME \\\\n $U.\n  it's\n";
        let got = expand_text(text, &env, '\\').unwrap();
        assert_eq!(got, "echo \"a\" 'bee' $HOME \\n .\n  it's\n");
        assert!(expand_text("${U:?x}", &env, '\\').is_err());
    }

    #[test]
    fn pattern_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "a/b", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b", "xxaxxb", true),
            ("*a*b", "xxaxxbx", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("[a]", "[a]", true),
        ];
        for (pattern, text, want) in cases {
            let chars: Vec<char> = text.chars().collect();
            assert_eq!(
                Pattern::new(pattern, '\\').matches(&chars),
                *want,
                "{pattern:?} {text:?}"
            );
        }
    }

    #[test]
    fn splitting() {
        let cases: &[(&str, char, &[&str])] = &[
            ("", '\\', &[]),
            ("  a  b\tc ", '\\', &["a", "b", "c"]),
            (r#"k="a b" k2='c d'"#, '\\', &[r#"k="a b""#, "k2='c d'"]),
            (r"a\ b c", '\\', &[r"a\ b", "c"]),
            (r#"a\"b c"#, '\\', &[r#"a\"b"#, "c"]),
            (r#""a\" b" c"#, '\\', &[r#""a\" b""#, "c"]),
            (r"'a\' b", '\\', &[r"'a\'", "b"]),
            (r#"x="" y"#, '\\', &[r#"x="""#, "y"]),
            ("a \\", '\\', &["a"]),
            ("\"a b", '\\', &["\"a b"]),
            ("a` b c\\ d", '`', &["a` b", "c\\", "d"]),
            ("é=1 ü=\"2 3\"", '\\', &["é=1", "ü=\"2 3\""]),
        ];
        for (text, escape, want) in cases {
            assert_eq!(split_words(text, *escape), *want, "{text:?}");
        }
    }
}
