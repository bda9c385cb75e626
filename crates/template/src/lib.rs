//! Go's text/template as docker and podman accept it in `--format`,
//! evaluated over JSON values: a command builds each row (a container, an
//! image, an inspect record) as a `serde_json::Value` under docker's field
//! names, and the user's template reads it.
//!
//! What is covered: text and actions, `{{- -}}` trims, comments, fields
//! and nested fields (`.State.Status`), variables (`$`, `$x :=`,
//! `range $i, $e :=`), pipes, parenthesized pipelines and the fields of
//! their values (`(index .Ports 0).HostPort`, Go's chains), `if`/`else if`/
//! `else`, `range`, `with`, Go's builtins (`and or not len index print
//! printf println eq ne lt le gt ge`) and docker's (`json split join title
//! lower upper pad truncate`), and docker's `table` prefix with its
//! tabwriter layout. Not covered: `define`/`template`/`block`, `break`/
//! `continue`, and builtins for the web (`html js urlquery`) — no command
//! of ours needs them.
//!
//! JSON objects stand for Go structs: a missing key is an error naming the
//! field ("can't evaluate field Foo"), as it is for docker's typed records.

mod exec;
mod funcs;
mod parse;
mod tabwriter;

use serde_json::Value;

pub use tabwriter::tabwrite;

/// A template error, worded as Go words it: "template: :1:2: ...".
#[derive(Debug, Clone, PartialEq)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A method a row offers besides its fields, as Go structs have them
/// (docker's `{{.Label "key"}}`): called with the object that holds it and
/// the arguments it was given.
pub type Method = fn(&Value, &[Value]) -> Result<Value, String>;

/// What a command gives besides its rows: its methods and the header
/// words of its `table` columns where they are not the field's name in
/// capitals (docker's `.ID` is "CONTAINER ID" in ps, "IMAGE ID" in images).
#[derive(Default, Clone, Copy)]
pub struct Options<'a> {
    pub methods: &'a [(&'a str, Method)],
    pub headers: &'a [(&'a str, &'a str)],
}

/// A parsed `--format` value.
pub struct Template {
    src: String,
    table: bool,
    nodes: Vec<parse::Node>,
}

impl Template {
    /// Parses a format as docker takes it: an optional `table ` prefix,
    /// and `\t`/`\n` written as two characters (as shells pass them)
    /// standing for a tab and a newline.
    pub fn parse(format: &str) -> Result<Template, Error> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, format),
        };
        let src = body.replace("\\t", "\t").replace("\\n", "\n");
        let nodes = parse::parse(&src)?;
        Ok(Template { src, table, nodes })
    }

    /// Whether the format began with `table`: a header row, then columns
    /// aligned.
    pub fn is_table(&self) -> bool {
        self.table
    }

    /// The template's output for one value.
    pub fn execute(&self, data: &Value, opts: &Options) -> Result<String, Error> {
        exec::execute(&self.src, &self.nodes, data, opts, None)
    }

    /// The header row of a `table` format: each field stands for its
    /// column's name, and docker's functions pass it through unchanged
    /// (`{{upper .Names}}` heads its column "NAMES", not "names").
    pub fn header(&self, opts: &Options) -> Result<String, Error> {
        let name = |field: &str| header_word(field, opts.headers);
        exec::execute(&self.src, &self.nodes, &Value::Null, opts, Some(&name))
    }

    /// Every row's output, each ending in a newline; for a `table`
    /// format the header first and the columns aligned as docker's
    /// tabwriter does.
    pub fn render(&self, rows: &[Value], opts: &Options) -> Result<String, Error> {
        let mut out = String::new();
        if self.table {
            push_line(&mut out, &self.header(opts)?);
        }
        for r in rows {
            push_line(&mut out, &self.execute(r, opts)?);
        }
        Ok(if self.table { tabwrite(&out) } else { out })
    }
}

/// Appends a row and its newline (one only, if the row ends in one).
fn push_line(out: &mut String, row: &str) {
    out.push_str(row);
    if !row.ends_with('\n') {
        out.push('\n');
    }
}

/// A column's header: the command's own word for the field, else the
/// field's name split at its capitals and upper-cased ("CreatedAt" is
/// "CREATED AT"; "ID" stays "ID").
pub fn header_word(field: &str, headers: &[(&str, &str)]) -> String {
    if let Some((_, h)) = headers.iter().find(|(f, _)| *f == field) {
        return h.to_string();
    }
    let mut out = String::new();
    let chars: Vec<char> = field.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let starts_word = i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()));
        if starts_word {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// Line and column (0-based, as Go counts it) of byte `pos` in `src`.
fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|n| pos - n - 1).unwrap_or(pos);
    (line, col)
}

fn error_at(src: &str, pos: usize, msg: impl std::fmt::Display) -> Error {
    let (l, c) = line_col(src, pos);
    Error(format!("template: :{l}:{c}: {msg}"))
}

#[cfg(test)]
mod tests;
