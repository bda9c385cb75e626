//! `--name=value` flags at the start of an instruction's arguments, as
//! BuildKit reads them: any words starting with `--` before the first one
//! that does not (or a bare `--`), quotes removed and `\` escapes taken.
//! Which flags an instruction accepts is checked against its spec.

/// One flag as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flag {
    /// Byte offset of its `--` in the text it was read from.
    pub off: usize,
    pub name: String,
    /// After `=`; None for a bare `--name`.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--name=value`, once.
    Str,
    /// `--name`, `--name=true|false`, once.
    Bool,
    /// `--name=value`, any number of times.
    Multi,
}

/// The flags at `text[start..]`, and the offset where the arguments after
/// them begin.
pub(crate) fn extract(text: &str, start: usize) -> (Vec<Flag>, usize) {
    let mut flags = Vec::new();
    let mut i = start;
    loop {
        let rest = &text[i..];
        let skipped = rest.len() - rest.trim_start().len();
        i += skipped;
        if !text[i..].starts_with("--") {
            return (flags, i);
        }
        let (word, len) = flag_word(&text[i..]);
        let off = i;
        i += len;
        if word == "--" {
            // `--` ends the flags; what follows is all arguments.
            let rest = &text[i..];
            return (flags, i + rest.len() - rest.trim_start().len());
        }
        let body = &word[2..];
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        flags.push(Flag { off, name, value });
    }
}

/// One word up to unquoted whitespace, quotes removed and `\` escapes
/// taken (always `\`, whatever the escape directive says, as BuildKit
/// does for flags): the word and how many bytes it took.
fn flag_word(text: &str) -> (String, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => return (word, i),
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => match chars.next() {
                Some((_, n)) => word.push(n),
                None => quote = None,
            },
            (_, c) => word.push(c),
        }
    }
    (word, text.len())
}

/// Checks `flags` against what the instruction accepts: unknown flags,
/// repeated ones, missing values and bad booleans are errors, with the
/// offset of the flag.
pub(crate) fn check(flags: &[Flag], spec: &[(&str, FlagKind)]) -> Result<(), (usize, String)> {
    for (i, flag) in flags.iter().enumerate() {
        let Some((_, kind)) = spec.iter().find(|(n, _)| *n == flag.name) else {
            return Err((flag.off, format!("unknown flag --{}", flag.name)));
        };
        if *kind != FlagKind::Multi && flags[..i].iter().any(|f| f.name == flag.name) {
            return Err((flag.off, format!("--{} given more than once", flag.name)));
        }
        match (kind, &flag.value) {
            (FlagKind::Str | FlagKind::Multi, None) => {
                return Err((
                    flag.off,
                    format!("--{} needs a value (--{0}=...)", flag.name),
                ));
            }
            (FlagKind::Bool, Some(v)) if parse_bool(v).is_none() => {
                return Err((
                    flag.off,
                    format!("--{} takes true or false, not {v:?}", flag.name),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The value of a checked string flag.
pub(crate) fn string(flags: &[Flag], name: &str) -> Option<String> {
    flags
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value.clone())
}

/// A checked boolean flag: absent is false, bare is true.
pub(crate) fn boolean(flags: &[Flag], name: &str) -> bool {
    flags.iter().find(|f| f.name == name).is_some_and(|f| {
        f.value
            .as_deref()
            .is_none_or(|v| parse_bool(v) == Some(true))
    })
}

/// Every use of a repeatable flag.
pub(crate) fn all<'f>(flags: &'f [Flag], name: &'f str) -> impl Iterator<Item = &'f Flag> {
    flags.iter().filter(move |f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> (Vec<(String, Option<String>)>, &str) {
        let (flags, rest) = extract(text, 0);
        (
            flags.into_iter().map(|f| (f.name, f.value)).collect(),
            &text[rest..],
        )
    }

    #[test]
    fn extraction() {
        let s = |v: &str| Some(v.to_string());
        // (text, the flags read, the arguments after them)
        type Case<'a> = (&'a str, &'a [(&'a str, Option<String>)], &'a str);
        let cases: &[Case] = &[
            ("echo --x", &[], "echo --x"),
            ("--link a b", &[("link", None)], "a b"),
            (
                "  --from=build  --chown=1:2 a b",
                &[("from", s("build")), ("chown", s("1:2"))],
                "a b",
            ),
            (
                "--mount=type=cache,target=/x\tcmd",
                &[("mount", s("type=cache,target=/x"))],
                "cmd",
            ),
            (
                r#"--mount="type=bind,src=a b" cmd"#,
                &[("mount", s("type=bind,src=a b"))],
                "cmd",
            ),
            (r"--x=a\ b cmd", &[("x", s("a b"))], "cmd"),
            (r#"--x='a"b' c"#, &[("x", s("a\"b"))], "c"),
            ("--a -- --b c", &[("a", None)], "--b c"),
            ("--a --", &[("a", None)], ""),
            ("--a", &[("a", None)], ""),
            ("-a b", &[], "-a b"),
            ("--x= c", &[("x", s(""))], "c"),
        ];
        for (text, flags, rest) in cases {
            let want: Vec<_> = flags
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            assert_eq!(names(text), (want, *rest), "{text:?}");
        }
        let (flags, rest) = extract("RUN  --a --b=1 x", 3);
        assert_eq!((flags[0].off, flags[1].off, rest), (5, 9, 15));
    }

    #[test]
    fn checking() {
        use FlagKind::*;
        let spec = [("from", Str), ("link", Bool), ("exclude", Multi)];
        let ok = [
            "--from=a --link",
            "--link=false --exclude=a --exclude=b",
            "--link=TRUE",
            "",
        ];
        for text in ok {
            let (flags, _) = extract(text, 0);
            assert_eq!(check(&flags, &spec), Ok(()), "{text:?}");
        }
        let bad: &[(&str, usize, &str)] = &[
            ("--from=a --nope=1", 9, "unknown flag --nope"),
            ("--from=a --from=b", 9, "--from given more than once"),
            ("--from", 0, "--from needs a value"),
            ("--exclude", 0, "--exclude needs a value"),
            ("--link=yes", 0, "--link takes true or false"),
        ];
        for (text, off, want) in bad {
            let (flags, _) = extract(text, 0);
            let (o, msg) = check(&flags, &spec).unwrap_err();
            assert_eq!(o, *off, "{text:?}");
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
        let (flags, _) = extract("--from=x --link=false --exclude=a --exclude=b", 0);
        assert_eq!(string(&flags, "from").as_deref(), Some("x"));
        assert!(!boolean(&flags, "link"));
        assert!(!boolean(&flags, "parents"));
        let ex: Vec<_> = all(&flags, "exclude")
            .filter_map(|f| f.value.clone())
            .collect();
        assert_eq!(ex, ["a", "b"]);
        let (flags, _) = extract("--link", 0);
        assert!(boolean(&flags, "link"));
    }
}
