//! Runs a parsed template over a JSON value.

use serde_json::Value;

use crate::parse::{Arg, BlockKind, Cmd, Node, Pipe};
use crate::{Error, Options, error_at, funcs};

/// How header rows are made: each field yields its column's name.
pub type HeaderFn<'a> = &'a dyn Fn(&str) -> String;

struct State<'a> {
    src: &'a str,
    opts: &'a Options<'a>,
    header: Option<HeaderFn<'a>>,
    /// Variables in scope, innermost last; `$` is the data itself.
    vars: Vec<(String, Value)>,
    out: String,
}

pub fn execute(
    src: &str,
    nodes: &[Node],
    data: &Value,
    opts: &Options,
    header: Option<HeaderFn>,
) -> Result<String, Error> {
    let mut s = State {
        src,
        opts,
        header,
        vars: vec![("$".into(), data.clone())],
        out: String::new(),
    };
    s.walk(nodes, data)?;
    Ok(s.out)
}

/// Go's notion of true: not false, 0, nil, or empty.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl State<'_> {
    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<(), Error> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    // A declaration prints nothing, as in Go.
                    if p.decl.is_empty() {
                        self.out.push_str(&funcs::print(&v));
                    }
                }
                Node::Block {
                    kind,
                    pipe,
                    body,
                    otherwise,
                } => self.block(*kind, pipe, body, otherwise, dot)?,
            }
        }
        Ok(())
    }

    fn block(
        &mut self,
        kind: BlockKind,
        pipe: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<(), Error> {
        let depth = self.vars.len();
        let r = match kind {
            BlockKind::If | BlockKind::With => {
                let v = self.pipe(pipe, dot)?;
                match (truthy(&v), kind) {
                    (true, BlockKind::If) => self.walk(body, dot),
                    (true, _) => self.walk(body, &v),
                    (false, _) => self.walk(otherwise, dot),
                }
            }
            BlockKind::Range => self.range(pipe, body, otherwise, dot),
        };
        // Variables declared in a block end with it.
        self.vars.truncate(depth);
        r
    }

    /// `range`: the body once per element (per value of an object, in key
    /// order, as Go ranges over a map), else the `else` part.
    fn range(
        &mut self,
        pipe: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<(), Error> {
        let v = self.pipe_value(pipe, dot)?;
        let items: Vec<(Value, Value)> = match v {
            Value::Array(a) => a
                .into_iter()
                .enumerate()
                .map(|(i, e)| (Value::from(i), e))
                .collect(),
            Value::Object(o) => {
                let mut kv: Vec<(String, Value)> = o.into_iter().collect();
                kv.sort_by(|a, b| a.0.cmp(&b.0));
                kv.into_iter().map(|(k, e)| (Value::String(k), e)).collect()
            }
            Value::Null => Vec::new(),
            Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                .map(|i| (Value::from(i), Value::from(i)))
                .collect(),
            other => {
                return Err(self.exec_error(
                    pipe.pos,
                    &pipe_text(pipe),
                    format!("range can't iterate over {}", funcs::print(&other)),
                ));
            }
        };
        if items.is_empty() {
            return self.walk(otherwise, dot);
        }
        let depth = self.vars.len();
        for (k, e) in items {
            self.vars.truncate(depth);
            match pipe.decl.as_slice() {
                [one] => self.vars.push((one.clone(), e.clone())),
                [key, elem] => {
                    self.vars.push((key.clone(), k));
                    self.vars.push((elem.clone(), e.clone()));
                }
                _ => {}
            }
            self.walk(body, &e)?;
        }
        Ok(())
    }

    /// A pipeline's value, declaring its variables.
    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, Error> {
        let v = self.pipe_value(p, dot)?;
        for name in &p.decl {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    /// A pipeline's value: each command's result is the last argument of
    /// the next.
    fn pipe_value(&mut self, p: &Pipe, dot: &Value) -> Result<Value, Error> {
        let mut last = None;
        for c in &p.cmds {
            last = Some(self.cmd(c, dot, last)?);
        }
        Ok(last.unwrap_or(Value::Null))
    }

    fn cmd(&mut self, c: &Cmd, dot: &Value, piped: Option<Value>) -> Result<Value, Error> {
        // Only functions, fields and chains (methods) take arguments; Go
        // says so before it evaluates any of them.
        let callable = matches!(
            c.args[0],
            Arg::Func { .. } | Arg::Field { .. } | Arg::Chain { .. }
        );
        if !callable && (c.args.len() > 1 || piped.is_some()) {
            return Err(self.not_a_function(c));
        }
        let mut rest = Vec::new();
        for a in &c.args[1..] {
            rest.push(self.arg(a, dot, c)?);
        }
        rest.extend(piped);
        match &c.args[0] {
            Arg::Func { pos, name } => {
                if self.header.is_some() && funcs::passes_header(name) {
                    return Ok(rest.into_iter().next().unwrap_or(Value::Null));
                }
                funcs::call(name, &rest).map_err(|e| {
                    self.exec_error(*pos, &c.text, format!("error calling {name}: {e}"))
                })
            }
            Arg::Field { pos, var, names } if !rest.is_empty() => {
                // A field given arguments is a method call, as Go's
                // `.Label "key"` on docker's records.
                self.method(*pos, var.as_deref(), names, &rest, dot, c)
            }
            Arg::Chain {
                node, names, at, ..
            } if !rest.is_empty() => {
                // `(pipeline).Label "key"`: the last field is the method.
                let (last, init) = names.split_last().expect("a chain has fields");
                if let Some(h) = self.header {
                    return Ok(Value::String(h(last)));
                }
                let recv = self.chain(node, init, at, dot, c)?;
                self.step(at.0, &recv, last, &at.1, &rest)
            }
            first if rest.is_empty() => self.arg(first, dot, c),
            _ => Err(self.not_a_function(c)),
        }
    }

    fn not_a_function(&self, c: &Cmd) -> Error {
        self.exec_error(
            c.pos,
            &c.text,
            format!(
                "can't give argument to non-function {}",
                c.args[0].describe()
            ),
        )
    }

    fn arg(&mut self, a: &Arg, dot: &Value, c: &Cmd) -> Result<Value, Error> {
        Ok(match a {
            Arg::Field { pos, var, names } => self.field(*pos, var.as_deref(), names, dot)?,
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Int(n) => Value::from(*n),
            Arg::Float(f) => Value::from(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Pipe(p) => self.pipe_value(p, dot)?,
            Arg::Chain {
                node, names, at, ..
            } => {
                if let (Some(h), Some(last)) = (self.header, names.last()) {
                    return Ok(Value::String(h(last)));
                }
                self.chain(node, names, at, dot, c)?
            }
            Arg::Func { pos, name } => {
                // A function as an operand is called with no arguments.
                funcs::call(name, &[]).map_err(|e| {
                    self.exec_error(*pos, &c.text, format!("error calling {name}: {e}"))
                })?
            }
        })
    }

    /// The value a variable names.
    fn var(&self, pos: usize, name: &str) -> Result<Value, Error> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| error_at(self.src, pos, format!("undefined variable: {name}")))
    }

    /// `.A.B` from dot, `$x.A` from a variable.
    fn field(
        &self,
        pos: usize,
        var: Option<&str>,
        names: &[String],
        dot: &Value,
    ) -> Result<Value, Error> {
        if let (Some(h), Some(last)) = (self.header, names.last()) {
            return Ok(Value::String(h(last)));
        }
        let mut v = match var {
            Some(name) => self.var(pos, name)?,
            None => dot.clone(),
        };
        for (i, name) in names.iter().enumerate() {
            v = self.step(pos, &v, name, &format!(".{}", names[..=i].join(".")), &[])?;
        }
        Ok(v)
    }

    /// One `.Name` step: the object's key, else the row's method of that
    /// name (with `args`). Errors point at `pos`, showing `text`.
    fn step(
        &self,
        pos: usize,
        v: &Value,
        name: &str,
        text: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if let Value::Object(o) = v
            && args.is_empty()
            && let Some(x) = o.get(name)
        {
            return Ok(x.clone());
        }
        if let Some((_, m)) = self.opts.methods.iter().find(|(n, _)| *n == name)
            && matches!(v, Value::Object(_))
        {
            return m(v, args)
                .map_err(|e| self.exec_error(pos, text, format!("error calling {name}: {e}")));
        }
        let msg = match v {
            Value::Object(o) if o.contains_key(name) => {
                format!("can't give argument to non-function {text}")
            }
            Value::Null => format!("nil pointer evaluating interface {{}}.{name}"),
            _ => format!("can't evaluate field {name} in type {}", type_name(v)),
        };
        Err(self.exec_error(pos, text, msg))
    }

    fn method(
        &self,
        pos: usize,
        var: Option<&str>,
        names: &[String],
        args: &[Value],
        dot: &Value,
        c: &Cmd,
    ) -> Result<Value, Error> {
        let Some((last, init)) = names.split_last() else {
            return Err(self.exec_error(
                pos,
                &c.text,
                format!("can't give argument to non-function {}", var.unwrap_or(".")),
            ));
        };
        if let Some(h) = self.header {
            return Ok(Value::String(h(last)));
        }
        let recv = self.field(pos, var, init, dot)?;
        self.step(pos, &recv, last, &format!(".{}", names.join(".")), args)
    }

    /// `(pipeline).A.B`: the term's value, then each field of it. Errors
    /// along the fields point where Go's do, at the term's last operand.
    fn chain(
        &mut self,
        node: &Arg,
        names: &[String],
        at: &(usize, String),
        dot: &Value,
        c: &Cmd,
    ) -> Result<Value, Error> {
        let mut v = self.arg(node, dot, c)?;
        for name in names {
            v = self.step(at.0, &v, name, &at.1, &[])?;
        }
        Ok(v)
    }

    fn exec_error(&self, pos: usize, at: &str, msg: impl std::fmt::Display) -> Error {
        error_at(self.src, pos, format!("executing \"\" at <{at}>: {msg}"))
    }
}

/// Go's name for a value's type, in errors.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn pipe_text(p: &Pipe) -> String {
    p.cmds
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

impl Arg {
    fn describe(&self) -> String {
        match self {
            Arg::Field { var, names, .. } => {
                format!("{}.{}", var.as_deref().unwrap_or(""), names.join("."))
            }
            Arg::Str(s) => format!("{s:?}"),
            Arg::Int(n) => n.to_string(),
            Arg::Float(f) => f.to_string(),
            Arg::Bool(b) => b.to_string(),
            Arg::Nil => "nil".into(),
            Arg::Pipe(_) => "(pipeline)".into(),
            Arg::Chain { text, .. } => text.clone(),
            Arg::Func { name, .. } => name.clone(),
        }
    }
}
