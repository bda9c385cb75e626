//! A Dockerfile's text into the AST (ast.rs), as BuildKit's Dockerfile
//! frontend reads it: directives and logical lines (lines.rs), leading
//! `--flags` (flags.rs), then each instruction's arguments in the form it
//! takes. Words stay raw; the builder expands them (words.rs).

use super::ast::*;
use super::flags::{self, Flag, FlagKind};
use super::lines::{Logical, Source};
use super::mount::parse_mount;
use super::words::split_words;

/// Why a Dockerfile could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let (mut src, directives) =
        Source::new(text).map_err(|(pos, message)| ParseError { pos, message })?;
    let escape = directives.escape;
    let mut df = Dockerfile {
        syntax: directives.syntax,
        escape,
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    while let Some(line) = src.next_logical() {
        let mut bodies = || src.next_raw();
        match instruction(&line, escape, &mut bodies)? {
            Parsed::From(mut stage, name_pos) => {
                if let Some(name) = &stage.name
                    && let Some(first) = df.stages.iter().find(|s| s.name.as_ref() == Some(name))
                {
                    return Err(ParseError {
                        pos: name_pos,
                        message: format!(
                            "FROM: duplicate stage name {name:?} (first named at line {})",
                            first.pos.line
                        ),
                    });
                }
                stage.index = df.stages.len();
                df.stages.push(stage);
            }
            Parsed::Instr(instr) => match (df.stages.last_mut(), instr.kind) {
                (Some(stage), kind) => stage.instructions.push(Instruction { kind, ..instr }),
                (None, Kind::Arg(decls)) => df.global_args.extend(decls),
                (None, _) => {
                    let keyword = instr.original.split_whitespace().next().unwrap_or("");
                    return Err(ParseError {
                        pos: instr.pos,
                        message: format!(
                            "{}: no build stage yet: only ARG may come before the first FROM",
                            keyword.to_ascii_uppercase()
                        ),
                    });
                }
            },
        }
    }
    if df.stages.is_empty() {
        return Err(ParseError {
            pos: Pos { line: 1, col: 1 },
            message: "no build stage: the Dockerfile has no FROM".to_string(),
        });
    }
    Ok(df)
}

/// Parses one instruction written on its own, as an ONBUILD trigger is
/// when an image built on one is built: no heredocs (there are no lines
/// after it to hold their bodies) and no FROM.
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, ParseError> {
    let line = Logical::single(text.trim(), Pos { line: 1, col: 1 });
    match instruction(&line, escape, &mut || None)? {
        Parsed::Instr(i) => Ok(i),
        Parsed::From(stage, _) => Err(ParseError {
            pos: stage.pos,
            message: "FROM isn't an instruction on its own here".to_string(),
        }),
    }
}

enum Parsed {
    /// A FROM: the stage (no instructions yet) and where its name is.
    From(Stage, Pos),
    Instr(Instruction),
}

/// Supplies heredoc body lines: the physical lines after the instruction.
type Bodies<'b> = dyn FnMut() -> Option<(usize, &'b str)> + 'b;

/// The instruction being parsed, for errors that name it and point into it.
struct Ctx<'l> {
    line: &'l Logical,
    keyword: String,
}

impl Ctx<'_> {
    fn err(&self, off: usize, message: impl std::fmt::Display) -> ParseError {
        ParseError {
            pos: self.line.pos(off),
            message: format!("{}: {message}", self.keyword),
        }
    }
}

/// Arguments after the flags: the text and its offset in the line.
struct Args<'l> {
    text: &'l str,
    off: usize,
}

impl<'l> Args<'l> {
    /// Whitespace-separated words with their offsets in the line (FROM,
    /// EXPOSE, and COPY/ADD/VOLUME outside JSON form: BuildKit does not
    /// look at quotes there).
    fn fields(&self) -> Vec<(usize, &'l str)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in self.text.char_indices().chain([(self.text.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    out.push((self.off + s, &self.text[s..i]));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        out
    }
}

fn instruction(
    line: &Logical,
    escape: char,
    bodies: &mut Bodies<'_>,
) -> Result<Parsed, ParseError> {
    let text = line.text.as_str();
    let kw_end = text.find(char::is_whitespace).unwrap_or(text.len());
    let keyword = &text[..kw_end];
    let cx = Ctx {
        line,
        keyword: keyword.to_ascii_uppercase(),
    };
    let lower = keyword.to_ascii_lowercase();
    let Some(spec) = flag_spec(&lower) else {
        return Err(ParseError {
            pos: line.pos(0),
            message: format!("unknown instruction: {keyword}"),
        });
    };
    let (flags, args_off) = flags::extract(text, kw_end);
    flags::check(&flags, spec).map_err(|(off, msg)| cx.err(off, msg))?;
    let args = Args {
        text: text[args_off..].trim_end(),
        off: args_off,
    };
    if args.text.is_empty() {
        let what = if lower == "from" {
            "needs an image: FROM image [AS name]"
        } else {
            "requires at least one argument"
        };
        return Err(cx.err(0, what));
    }
    let kind = match lower.as_str() {
        "from" => return from(&cx, &flags, &args),
        "arg" => Kind::Arg(arg(&cx, &args, escape)?),
        "env" => Kind::Env(key_values(&cx, &args, escape)?),
        "label" => Kind::Label(key_values(&cx, &args, escape)?),
        "run" => Kind::Run(run(&cx, &flags, &args, bodies)?),
        "copy" | "add" => Kind::Copy(copy(&cx, &flags, &args, bodies, lower == "add")?),
        "workdir" => Kind::Workdir(args.text.to_string()),
        "user" => Kind::User(args.text.to_string()),
        "stopsignal" => Kind::StopSignal(args.text.to_string()),
        "maintainer" => Kind::Maintainer(args.text.to_string()),
        "expose" => Kind::Expose(
            args.fields()
                .into_iter()
                .map(|(_, w)| w.to_string())
                .collect(),
        ),
        "volume" => Kind::Volume(volume(&cx, &args)?),
        "cmd" => Kind::Cmd(command(&cx, &args)?),
        "entrypoint" => Kind::Entrypoint(command(&cx, &args)?),
        "shell" => Kind::Shell(shell(&cx, &args)?),
        "healthcheck" => Kind::Healthcheck(healthcheck(&cx, &flags, &args)?),
        "onbuild" => Kind::Onbuild(onbuild(&cx, &args, escape)?),
        _ => unreachable!("flag_spec knows {lower}"),
    };
    Ok(Parsed::Instr(Instruction {
        pos: line.pos(0),
        original: text.trim_end().to_string(),
        kind,
    }))
}

/// The flags each instruction takes; None for an unknown instruction.
fn flag_spec(keyword: &str) -> Option<&'static [(&'static str, FlagKind)]> {
    use FlagKind::*;
    Some(match keyword {
        "from" => &[("platform", Str)],
        "run" => &[("mount", Multi), ("network", Str), ("security", Str)],
        "copy" => &[
            ("from", Str),
            ("chown", Str),
            ("chmod", Str),
            ("link", Bool),
            ("parents", Bool),
            ("exclude", Multi),
        ],
        "add" => &[
            ("chown", Str),
            ("chmod", Str),
            ("link", Bool),
            ("exclude", Multi),
            ("checksum", Str),
            ("keep-git-dir", Bool),
        ],
        "healthcheck" => &[
            ("interval", Str),
            ("timeout", Str),
            ("start-period", Str),
            ("start-interval", Str),
            ("retries", Str),
        ],
        "arg" | "env" | "label" | "workdir" | "user" | "stopsignal" | "maintainer" | "expose"
        | "volume" | "cmd" | "entrypoint" | "shell" | "onbuild" => &[],
        _ => return None,
    })
}

fn from(cx: &Ctx, flags: &[Flag], args: &Args) -> Result<Parsed, ParseError> {
    let words = args.fields();
    let (base, name) = match words.as_slice() {
        [base] => (base, None),
        [base, (_, as_kw), name] if as_kw.eq_ignore_ascii_case("as") => (base, Some(name)),
        _ => {
            return Err(cx.err(
                args.off,
                "needs an image and at most a name: FROM image [AS name]",
            ));
        }
    };
    let mut name_pos = cx.line.pos(0);
    let name = match name {
        Some((off, name)) => {
            name_pos = cx.line.pos(*off);
            let lower = name.to_ascii_lowercase();
            if !valid_stage_name(&lower) {
                return Err(cx.err(
                    *off,
                    format!(
                        "invalid stage name {name:?}: it must start with a letter, then letters, digits, '.', '_' or '-'"
                    ),
                ));
            }
            Some(lower)
        }
        None => None,
    };
    let stage = Stage {
        index: 0,
        name,
        base: base.1.to_string(),
        platform: flags::string(flags, "platform"),
        pos: cx.line.pos(0),
        original: cx.line.text.trim_end().to_string(),
        instructions: Vec::new(),
    };
    Ok(Parsed::From(stage, name_pos))
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn arg(cx: &Ctx, args: &Args, escape: char) -> Result<Vec<ArgDecl>, ParseError> {
    split_words(args.text, escape)
        .into_iter()
        .map(|word| {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (word.clone(), None),
            };
            if name.is_empty() {
                return Err(cx.err(args.off, format!("{word:?}: an ARG needs a name")));
            }
            Ok(ArgDecl { name, default })
        })
        .collect()
}

/// ENV and LABEL: `k=v ...` words, or the old `key value...` form (when
/// the first word has no `=`), where the value is the rest of the line.
fn key_values(cx: &Ctx, args: &Args, escape: char) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_words(args.text, escape);
    if !words[0].contains('=') {
        let Some((key, value)) = args.text.split_once(char::is_whitespace) else {
            return Err(cx.err(
                args.off,
                format!(
                    "{:?} has no value: write key=value (or key value)",
                    args.text
                ),
            ));
        };
        return Ok(vec![(key.to_string(), value.trim_start().to_string())]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(cx.err(args.off, format!("{word:?}: the name is empty"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(cx.err(
                args.off,
                format!("{word:?} has no '=': each word must be name=value"),
            )),
        })
        .collect()
}

/// A JSON array of strings if `text` is one; None if it is not JSON (shell
/// form then, as BuildKit falls back); an error for a JSON array holding
/// something other than strings.
fn json_array(cx: &Ctx, args: &Args) -> Result<Option<Vec<String>>, ParseError> {
    if !args.text.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(args.text) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            other => Err(cx.err(
                args.off,
                format!("JSON arrays must hold only strings, not {other}"),
            )),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn command(cx: &Ctx, args: &Args) -> Result<Command, ParseError> {
    Ok(match json_array(cx, args)? {
        Some(words) => Command::Exec(words),
        None => Command::Shell(args.text.to_string()),
    })
}

fn shell(cx: &Ctx, args: &Args) -> Result<Vec<String>, ParseError> {
    match json_array(cx, args)? {
        Some(words) if words.is_empty() => Err(cx.err(args.off, "needs at least the shell's path")),
        Some(words) => Ok(words),
        None => Err(cx.err(
            args.off,
            "takes a JSON array only, like SHELL [\"/bin/sh\", \"-c\"]",
        )),
    }
}

fn volume(cx: &Ctx, args: &Args) -> Result<Vec<String>, ParseError> {
    let words = match json_array(cx, args)? {
        Some(words) => words,
        None => args
            .fields()
            .into_iter()
            .map(|(_, w)| w.to_string())
            .collect(),
    };
    if words.iter().any(|w| w.trim().is_empty()) {
        return Err(cx.err(args.off, "a volume can't be an empty string"));
    }
    Ok(words)
}

fn run(cx: &Ctx, flags: &[Flag], args: &Args, bodies: &mut Bodies<'_>) -> Result<Run, ParseError> {
    let mounts = flags::all(flags, "mount")
        .map(|f| {
            let value = f.value.as_deref().unwrap_or_default();
            parse_mount(value).map_err(|msg| cx.err(f.off, format!("--mount: {msg}")))
        })
        .collect::<Result<_, _>>()?;
    let choice = |name: &str, allowed: &[&str]| -> Result<Option<String>, ParseError> {
        let Some(value) = flags::string(flags, name) else {
            return Ok(None);
        };
        if !allowed.contains(&value.as_str()) {
            let off = flags::all(flags, name).next().map_or(0, |f| f.off);
            return Err(cx.err(
                off,
                format!("--{name}={value:?}: must be one of {}", allowed.join(", ")),
            ));
        }
        Ok(Some(value))
    };
    let network = choice("network", &["default", "none", "host"])?;
    let security = choice("security", &["insecure", "sandbox"])?;
    let (command, heredocs) = match json_array(cx, args)? {
        Some(words) => (Command::Exec(words), Vec::new()),
        None => (
            Command::Shell(args.text.to_string()),
            read_heredocs(cx, args, bodies)?,
        ),
    };
    Ok(Run {
        command,
        mounts,
        network,
        security,
        heredocs,
    })
}

fn copy(
    cx: &Ctx,
    flags: &[Flag],
    args: &Args,
    bodies: &mut Bodies<'_>,
    add: bool,
) -> Result<Copy, ParseError> {
    let (mut words, heredocs): (Vec<(usize, String)>, Vec<Heredoc>) = match json_array(cx, args)? {
        Some(words) => (
            words.into_iter().map(|w| (args.off, w)).collect(),
            Vec::new(),
        ),
        None => (
            args.fields()
                .into_iter()
                .map(|(o, w)| (o, w.to_string()))
                .collect(),
            read_heredocs(cx, args, bodies)?,
        ),
    };
    if words.len() < 2 {
        return Err(cx.err(args.off, "needs a source and a destination"));
    }
    let (dest_off, dest) = words.pop().expect("two words");
    if heredoc_word(&dest).is_some() {
        return Err(cx.err(dest_off, "a heredoc can't be the destination"));
    }
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    for (_, word) in words {
        if !heredocs.is_empty()
            && let Some(marker) = heredoc_word(&word)
        {
            // The line was split differently to find the heredocs (quotes
            // and escapes count there), so a marker may have no body.
            let Some(found) = heredocs.iter().rev().find(|h| h.name == marker.name) else {
                return Err(cx.err(args.off, format!("{word}: no heredoc body for it")));
            };
            inline.push(found.clone());
        } else {
            sources.push(word);
        }
    }
    Ok(Copy {
        add,
        sources,
        dest,
        from: flags::string(flags, "from"),
        chown: flags::string(flags, "chown"),
        chmod: flags::string(flags, "chmod"),
        link: flags::boolean(flags, "link"),
        parents: flags::boolean(flags, "parents"),
        excludes: flags::all(flags, "exclude")
            .filter_map(|f| f.value.clone())
            .collect(),
        checksum: flags::string(flags, "checksum"),
        keep_git_dir: flags::boolean(flags, "keep-git-dir"),
        heredocs: inline,
    })
}

fn healthcheck(cx: &Ctx, flags: &[Flag], args: &Args) -> Result<Health, ParseError> {
    let kind_end = args
        .text
        .find(char::is_whitespace)
        .unwrap_or(args.text.len());
    let kind = &args.text[..kind_end];
    let rest_text = args.text[kind_end..].trim_start();
    let rest = Args {
        text: rest_text,
        off: args.off + args.text.len() - rest_text.len(),
    };
    if kind.eq_ignore_ascii_case("none") {
        if !rest.text.is_empty() {
            return Err(cx.err(rest.off, "NONE takes no arguments"));
        }
        return Ok(Health::None);
    }
    if !kind.eq_ignore_ascii_case("cmd") {
        return Err(cx.err(args.off, format!("unknown type {kind:?} (CMD or NONE)")));
    }
    if rest.text.is_empty() {
        return Err(cx.err(args.off, "CMD needs a command"));
    }
    let flag_off = |name: &str| flags::all(flags, name).next().map_or(0, |f| f.off);
    let duration = |name: &str| -> Result<Option<String>, ParseError> {
        let Some(value) = flags::string(flags, name) else {
            return Ok(None);
        };
        match go_duration_secs(&value) {
            Some(d) if d == 0.0 || d >= 0.001 => Ok(Some(value)),
            Some(_) => Err(cx.err(flag_off(name), format!("--{name}={value}: less than 1ms"))),
            None => Err(cx.err(
                flag_off(name),
                format!("--{name}={value:?}: not a duration (like 30s or 1m30s)"),
            )),
        }
    };
    let retries = match flags::string(flags, "retries") {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| {
            cx.err(
                flag_off("retries"),
                format!("--retries={v:?}: not a number of tries"),
            )
        })?),
    };
    Ok(Health::Check {
        test: command(cx, &rest)?,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// A Go duration (`300ms`, `1.5h`, `2h45m`, `0`) in seconds; None if it
/// is not one. Negative durations are refused.
fn go_duration_secs(s: &str) -> Option<f64> {
    if s == "0" {
        return Some(0.0);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Some(total)
}

fn onbuild(cx: &Ctx, args: &Args, escape: char) -> Result<String, ParseError> {
    let trigger = args.text.split_whitespace().next().unwrap_or("");
    match trigger.to_ascii_uppercase().as_str() {
        "ONBUILD" => return Err(cx.err(args.off, "ONBUILD ONBUILD isn't allowed")),
        t @ ("FROM" | "MAINTAINER") => {
            return Err(cx.err(args.off, format!("{t} isn't allowed as an ONBUILD trigger")));
        }
        _ => {}
    }
    // The trigger runs in another build; checking it now reports its
    // mistakes where they were written.
    instruction(&cx.line.tail(args.off), escape, &mut || None)?;
    Ok(args.text.to_string())
}

/// A `<<` word: `[n]<<[-]WORD` with WORD holding no `<`.
struct Marker {
    name: String,
    chomp: bool,
    expand: bool,
}

fn heredoc_word(word: &str) -> Option<Marker> {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = after_fd.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = unquote_delimiter(rest)?;
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return None;
    }
    Some(Marker {
        name,
        chomp,
        expand: !quoted,
    })
}

/// A heredoc delimiter with its quotes removed and `\` escapes taken, and
/// whether any part of it was quoted (which turns expansion off, as in
/// sh; an escape alone does not, as in BuildKit). None for an unterminated
/// quote.
fn unquote_delimiter(word: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                quoted = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, '\\') => out.extend(chars.next()),
            (Some('"'), '\\') if matches!(chars.peek(), Some('"' | '$' | '\\')) => {
                out.extend(chars.next())
            }
            (_, c) => out.push(c),
        }
    }
    quote.is_none().then_some((out, quoted))
}

/// Reads the bodies of the heredocs named on the instruction line, in
/// order, from the lines after it.
fn read_heredocs(
    cx: &Ctx,
    args: &Args,
    bodies: &mut Bodies<'_>,
) -> Result<Vec<Heredoc>, ParseError> {
    if !args.text.contains("<<") {
        return Ok(Vec::new());
    }
    let mut docs = Vec::new();
    let mut search_from = 0;
    for word in split_words(args.text, '\\') {
        let Some(marker) = heredoc_word(&word) else {
            continue;
        };
        let at = args.text[search_from..]
            .find(&word)
            .map_or(args.off, |i| args.off + search_from + i);
        search_from = at - args.off + word.len();
        let mut content = String::new();
        loop {
            let Some((_, line)) = bodies() else {
                return Err(cx.err(
                    at,
                    format!(
                        "unterminated heredoc {word}: no line {:?} before the end",
                        marker.name
                    ),
                ));
            };
            let line = if marker.chomp {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if line == marker.name {
                break;
            }
            content.push_str(line);
            content.push('\n');
        }
        docs.push(Heredoc {
            name: marker.name,
            content,
            expand: marker.expand,
        });
    }
    Ok(docs)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
