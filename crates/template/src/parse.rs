//! Template text to a tree: the lexer splits text from actions (applying
//! `{{-`/`-}}` trims), tokenizes each action, and the parser nests
//! `if`/`range`/`with` blocks up to their `end`.

use crate::{Error, error_at, funcs};

#[derive(Debug)]
pub enum Node {
    Text(String),
    Action(Pipe),
    /// `if`, `range` and `with`: a pipeline, a body and an `else` part.
    Block {
        kind: BlockKind,
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlockKind {
    If,
    Range,
    With,
}

#[derive(Debug)]
pub struct Pipe {
    pub pos: usize,
    /// Variables it declares: `$x :=`, or `$i, $e :=` in a range.
    pub decl: Vec<String>,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug)]
pub struct Cmd {
    pub pos: usize,
    /// Its source text, for errors ("at <truncate .ID>").
    pub text: String,
    /// Where its last operand starts.
    pub last: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug)]
pub enum Arg {
    /// `.A.B` (var None), `$x.A` or `$` (var Some); `.` has no names.
    Field {
        pos: usize,
        var: Option<String>,
        names: Vec<String>,
    },
    Func {
        pos: usize,
        name: String,
    },
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Pipe(Pipe),
    /// `(pipeline).A.B`, or a function's result `json.A`: fields of what
    /// the term yields (Go's ChainNode). Only a term written right
    /// against its fields is one: `(.X) .Y` is two operands, as in Go.
    Chain {
        node: Box<Arg>,
        names: Vec<String>,
        /// The whole chain's source text.
        text: String,
        /// Where Go's errors for a field along the chain point: the last
        /// operand evaluated in the term (`0` in `(index .P 0).X`), since
        /// Go reports the last node it visited.
        at: (usize, String),
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Option<String>, Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen,
    Bar,
    Declare,
    Comma,
}

/// Text, or an action's tokens (with their positions) and its start.
enum Item {
    Text(String),
    Action(usize, Vec<(usize, Tok)>),
}

pub fn parse(src: &str) -> Result<Vec<Node>, Error> {
    let items = lex(src)?;
    let mut p = Parser { src, items, i: 0 };
    let (nodes, end) = p.list()?;
    match end {
        None => Ok(nodes),
        Some((pos, word, _)) => Err(error_at(src, pos, format!("unexpected {{{{{word}}}}}"))),
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits the source into text and actions.
fn lex(src: &str) -> Result<Vec<Item>, Error> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    // Whether the last action ended in `-}}`: the next text loses its
    // leading white space.
    let mut trim_next = false;
    while i < b.len() {
        let Some(off) = src[i..].find("{{") else {
            text.push_str(&src[i..]);
            break;
        };
        text.push_str(&src[i..i + off]);
        let open = i + off;
        let mut j = open + 2;
        // `{{-` trims only when followed by white space: `{{-3}}` is -3.
        if b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(|&c| is_space(c)) {
            text.truncate(text.trim_end().len());
            j += 2;
        }
        push_text(&mut items, &mut text, &mut trim_next);
        let (toks, close, trims) = lex_action(src, open, j)?;
        trim_next = trims;
        if let Some(toks) = toks {
            items.push(Item::Action(open, toks));
        }
        i = close;
    }
    push_text(&mut items, &mut text, &mut trim_next);
    Ok(items)
}

fn push_text(items: &mut Vec<Item>, text: &mut String, trim_next: &mut bool) {
    let mut t = std::mem::take(text);
    if *trim_next {
        t = t.trim_start().to_string();
        *trim_next = false;
    }
    if !t.is_empty() {
        items.push(Item::Text(t));
    }
}

/// One action from `j` (after `{{` and any `- `): its tokens (None for a
/// comment), where the text after it starts, and whether it ended `-}}`.
#[allow(clippy::type_complexity)]
fn lex_action(
    src: &str,
    open: usize,
    mut j: usize,
) -> Result<(Option<Vec<(usize, Tok)>>, usize, bool), Error> {
    let b = src.as_bytes();
    let unclosed = || error_at(src, open, "unclosed action");
    let close_at = |k: usize| -> Option<(usize, bool)> {
        if src[k..].starts_with("}}") {
            Some((k + 2, false))
        } else if k > 0 && is_space(b[k - 1]) && src[k..].starts_with("-}}") {
            Some((k + 3, true))
        } else {
            None
        }
    };
    if src[j..].starts_with("/*") {
        let end = src[j..].find("*/").ok_or_else(unclosed)? + j + 2;
        let k = end + src[end..].len() - src[end..].trim_start().len();
        return match close_at(k) {
            Some((after, trims)) => Ok((None, after, trims)),
            None => Err(error_at(src, end, "comment ends before closing delimiter")),
        };
    }
    let mut toks = Vec::new();
    loop {
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        if j >= b.len() {
            return Err(unclosed());
        }
        if let Some((after, trims)) = close_at(j) {
            return Ok((Some(toks), after, trims));
        }
        let (tok, next) = token(src, j)?;
        toks.push((j, tok));
        j = next;
    }
}

/// The token at `j` and where the next starts.
fn token(src: &str, j: usize) -> Result<(Tok, usize), Error> {
    let b = src.as_bytes();
    let word_end = |k: usize| {
        let mut k = k;
        while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_' || b[k] >= 0x80) {
            k += 1;
        }
        k
    };
    let c = b[j];
    Ok(match c {
        b'(' => (Tok::LParen, j + 1),
        b')' => (Tok::RParen, j + 1),
        b'|' => (Tok::Bar, j + 1),
        b',' => (Tok::Comma, j + 1),
        b':' if b.get(j + 1) == Some(&b'=') => (Tok::Declare, j + 2),
        b'"' => quoted(src, j)?,
        b'`' => {
            let end = src[j + 1..]
                .find('`')
                .ok_or_else(|| error_at(src, j, "unterminated raw quoted string"))?;
            (Tok::Str(src[j + 1..j + 1 + end].to_string()), j + end + 2)
        }
        b'.' | b'$' => {
            let mut k = j;
            let var = if c == b'$' {
                k = word_end(j + 1);
                Some(src[j..k].to_string())
            } else {
                None
            };
            let mut names = Vec::new();
            while b.get(k) == Some(&b'.') {
                let e = word_end(k + 1);
                if e == k + 1 {
                    // A lone `.`: dot itself, valid only first.
                    if var.is_some() || !names.is_empty() {
                        return Err(error_at(src, k, "unexpected . after term"));
                    }
                    k = e;
                    break;
                }
                names.push(src[k + 1..e].to_string());
                k = e;
            }
            (Tok::Field(var, names), k)
        }
        b'0'..=b'9' | b'-' | b'+' => {
            let mut k = j + 1;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'.' || b[k] == b'_') {
                k += 1;
            }
            let text = &src[j..k];
            let tok = if let Ok(n) = text.parse::<i64>() {
                Tok::Int(n)
            } else if let Ok(f) = text.parse::<f64>() {
                Tok::Float(f)
            } else {
                return Err(error_at(src, j, format!("bad number syntax: {text:?}")));
            };
            (tok, k)
        }
        _ if c.is_ascii_alphabetic() || c == b'_' => {
            let k = word_end(j);
            (Tok::Ident(src[j..k].to_string()), k)
        }
        _ => {
            let ch = src[j..].chars().next().unwrap_or('?');
            return Err(error_at(src, j, format!("unexpected {ch:?} in command")));
        }
    })
}

/// A "..." string with Go's escapes.
fn quoted(src: &str, j: usize) -> Result<(Tok, usize), Error> {
    let mut out = String::new();
    let mut chars = src[j + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => return Ok((Tok::Str(out), j + 1 + k + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    '\\' | '"' | '\'' => e,
                    _ => {
                        return Err(error_at(src, j + 1 + k, format!("unknown escape \\{e}")));
                    }
                });
            }
            _ => out.push(c),
        }
    }
    Err(error_at(src, j, "unterminated quoted string"))
}

struct Parser<'a> {
    src: &'a str,
    items: Vec<Item>,
    i: usize,
}

/// How a list of nodes ended: `{{else ...}}` or `{{end}}`, where, and the
/// tokens after `else` (`else if x` chains).
type Ending = Option<(usize, &'static str, Vec<(usize, Tok)>)>;

impl Parser<'_> {
    /// Nodes up to an `else`, an `end` or the end of the source.
    fn list(&mut self) -> Result<(Vec<Node>, Ending), Error> {
        let mut nodes = Vec::new();
        while self.i < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.i], Item::Text(String::new()));
            self.i += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(pos, toks) => {
                    let kw = match toks.first() {
                        Some((_, Tok::Ident(w))) => w.as_str(),
                        _ => "",
                    };
                    match kw {
                        "end" => {
                            if toks.len() > 1 {
                                return Err(error_at(
                                    self.src,
                                    toks[1].0,
                                    "unexpected token in end",
                                ));
                            }
                            return Ok((nodes, Some((pos, "end", Vec::new()))));
                        }
                        "else" => return Ok((nodes, Some((pos, "else", toks[1..].to_vec())))),
                        "if" | "range" | "with" => {
                            nodes.push(self.block(kw, toks[0].0, &toks[1..])?)
                        }
                        "define" | "template" | "block" | "break" | "continue" => {
                            return Err(error_at(
                                self.src,
                                pos,
                                format!("{{{{{kw}}}}} is not supported in --format"),
                            ));
                        }
                        _ if toks.is_empty() => {
                            return Err(error_at(self.src, pos, "missing value for command"));
                        }
                        _ => nodes.push(Node::Action(self.pipe(pos, &toks, true)?)),
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    /// An `if`/`range`/`with` from its pipeline's tokens to its `end`.
    fn block(&mut self, kw: &str, pos: usize, toks: &[(usize, Tok)]) -> Result<Node, Error> {
        let kind = match kw {
            "if" => BlockKind::If,
            "range" => BlockKind::Range,
            _ => BlockKind::With,
        };
        if toks.is_empty() {
            return Err(error_at(self.src, pos, format!("missing value for {kw}")));
        }
        let pipe = self.pipe(pos, toks, true)?;
        let (body, end) = self.list()?;
        let otherwise = match end {
            None => {
                return Err(error_at(
                    self.src,
                    pos,
                    format!("unexpected EOF: {kw} without end"),
                ));
            }
            Some((_, "end", _)) => Vec::new(),
            Some((epos, _, rest)) => match rest.first() {
                // `{{else if x}}` / `{{else with x}}`: a block of its own
                // that shares the outer one's `end`.
                Some((p, Tok::Ident(w))) if w == "if" || w == "with" => {
                    vec![self.block(&w.clone(), *p, &rest[1..])?]
                }
                Some((p, _)) => {
                    return Err(error_at(self.src, *p, "unexpected token after else"));
                }
                None => match self.list()? {
                    (nodes, Some((_, "end", _))) => nodes,
                    _ => {
                        return Err(error_at(
                            self.src,
                            epos,
                            format!("expected end after {kw}'s else"),
                        ));
                    }
                },
            },
        };
        Ok(Node::Block {
            kind,
            pipe,
            body,
            otherwise,
        })
    }

    /// A pipeline: optional declarations, then commands separated by `|`.
    fn pipe(&self, pos: usize, toks: &[(usize, Tok)], top: bool) -> Result<Pipe, Error> {
        let mut rest = toks;
        let mut decl = Vec::new();
        if top {
            let vars: Vec<&str> = toks
                .iter()
                .take_while(|(_, t)| !matches!(t, Tok::Declare))
                .filter_map(|(_, t)| match t {
                    Tok::Field(Some(v), n) if n.is_empty() => Some(v.as_str()),
                    _ => None,
                })
                .collect();
            let n = vars.len() * 2 - usize::from(!vars.is_empty());
            if !vars.is_empty() && matches!(toks.get(n), Some((_, Tok::Declare))) {
                decl = vars.iter().map(|v| v.to_string()).collect();
                rest = &toks[n + 1..];
            }
        }
        let mut cmds = Vec::new();
        let mut start = 0;
        let mut depth = 0;
        for (k, (_, t)) in rest.iter().enumerate() {
            match t {
                Tok::LParen => depth += 1,
                Tok::RParen => depth -= 1,
                Tok::Bar if depth == 0 => {
                    cmds.push(self.cmd(&rest[start..k], pos)?);
                    start = k + 1;
                }
                _ => {}
            }
        }
        cmds.push(self.cmd(&rest[start..], pos)?);
        Ok(Pipe {
            pos: rest.first().map(|t| t.0).unwrap_or(pos),
            decl,
            cmds,
        })
    }

    /// One command: its operands, a parenthesized pipeline being one.
    fn cmd(&self, toks: &[(usize, Tok)], pos: usize) -> Result<Cmd, Error> {
        let Some(&(start, _)) = toks.first() else {
            return Err(error_at(self.src, pos, "missing command in pipeline"));
        };
        let mut args = Vec::new();
        let mut last = start;
        let mut k = 0;
        while k < toks.len() {
            let (p, t) = &toks[k];
            last = *p;
            let arg = match t {
                Tok::Field(var, names) => Arg::Field {
                    pos: *p,
                    var: var.clone(),
                    names: names.clone(),
                },
                Tok::Str(s) => Arg::Str(s.clone()),
                Tok::Int(n) => Arg::Int(*n),
                Tok::Float(f) => Arg::Float(*f),
                Tok::Ident(w) => match w.as_str() {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    "nil" => Arg::Nil,
                    _ if funcs::exists(w) => Arg::Func {
                        pos: *p,
                        name: w.clone(),
                    },
                    _ => {
                        return Err(error_at(
                            self.src,
                            *p,
                            format!("function {w:?} not defined"),
                        ));
                    }
                },
                Tok::LParen => {
                    let close = matching_paren(toks, k)
                        .ok_or_else(|| error_at(self.src, *p, "unclosed left paren"))?;
                    let inner = self.pipe(*p, &toks[k + 1..close], false)?;
                    k = close;
                    Arg::Pipe(inner)
                }
                Tok::RParen => return Err(error_at(self.src, *p, "unexpected right paren")),
                Tok::Declare | Tok::Comma | Tok::Bar => {
                    return Err(error_at(self.src, *p, "unexpected token in operand"));
                }
            };
            // The term ends where its last token ends (its `)` for a
            // pipeline); fields written right after it are a chain.
            let end = toks[k].0 + self.token_len(toks[k].0);
            match toks.get(k + 1) {
                Some((fp, Tok::Field(None, names))) if *fp == end && !names.is_empty() => {
                    args.push(self.chain(*p, arg, *fp, names)?);
                    k += 2;
                }
                _ => {
                    args.push(arg);
                    k += 1;
                }
            }
        }
        let end = toks
            .last()
            .map(|(p, _)| *p + self.token_len(*p))
            .unwrap_or(start);
        Ok(Cmd {
            pos: start,
            last,
            text: self.src[start..end.max(start)].trim().to_string(),
            args,
        })
    }

    /// `term.A.B`, the term starting at `start` and its fields at `fpos`.
    /// A literal has no fields (Go's "unexpected . after term").
    fn chain(&self, start: usize, node: Arg, fpos: usize, names: &[String]) -> Result<Arg, Error> {
        if matches!(
            node,
            Arg::Str(_) | Arg::Int(_) | Arg::Float(_) | Arg::Bool(_) | Arg::Nil
        ) {
            return Err(error_at(
                self.src,
                fpos,
                format!("unexpected . after term {:?}", &self.src[start..fpos]),
            ));
        }
        let end = fpos + self.token_len(fpos);
        let at = self.last_operand(start, &node);
        Ok(Arg::Chain {
            node: Box::new(node),
            names: names.to_vec(),
            text: self.src[start..end].to_string(),
            at,
        })
    }

    /// The last operand evaluating `a` visits, and its text: a pipeline's
    /// last command's last operand, looked into when that is a pipeline
    /// or a chain itself.
    fn last_operand(&self, pos: usize, a: &Arg) -> (usize, String) {
        match a {
            Arg::Pipe(p) => match p.cmds.last() {
                Some(c) => match c.args.last() {
                    Some(last @ (Arg::Pipe(_) | Arg::Chain { .. })) => {
                        self.last_operand(c.last, last)
                    }
                    _ => (
                        c.last,
                        self.src[c.last..c.last + self.token_len(c.last)].to_string(),
                    ),
                },
                None => (pos, String::new()),
            },
            Arg::Chain { at, .. } => at.clone(),
            _ => (pos, self.src[pos..pos + self.token_len(pos)].to_string()),
        }
    }

    /// The length of the token at `p`, re-lexed (tokens keep no end).
    fn token_len(&self, p: usize) -> usize {
        token(self.src, p).map(|(_, e)| e - p).unwrap_or(0)
    }
}

/// The index of the `)` closing the `(` at `open`.
fn matching_paren(toks: &[(usize, Tok)], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (k, (_, t)) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}
