//! The functions a template can call: Go's builtins and the ones docker
//! adds, and how values print (Go's `%v`).

use serde_json::Value;

use crate::exec::truthy;

const FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge", "json", "split", "join", "title", "lower", "upper", "pad", "truncate",
];

pub fn exists(name: &str) -> bool {
    FUNCS.contains(&name)
}

/// docker's functions that, in a table's header row, give back the header
/// unchanged (its templates.HeaderFunctions).
pub fn passes_header(name: &str) -> bool {
    matches!(
        name,
        "json" | "split" | "join" | "title" | "lower" | "upper" | "pad" | "truncate"
    )
}

pub fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let want = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    let at_least = |n: usize| {
        if args.len() >= n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want at least {n} got {}",
                args.len()
            ))
        }
    };
    Ok(match name {
        "and" => {
            at_least(1)?;
            args.iter()
                .find(|a| !truthy(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "or" => {
            at_least(1)?;
            args.iter()
                .find(|a| truthy(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "not" => {
            want(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "len" => {
            want(1)?;
            Value::from(len(&args[0])?)
        }
        "index" => {
            at_least(1)?;
            index(&args[0], &args[1..])?
        }
        "print" => Value::String(sprint(args)),
        "println" => Value::String(args.iter().map(print).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            at_least(1)?;
            Value::String(sprintf(&text(&args[0])?, &args[1..]))
        }
        "eq" => {
            at_least(2)?;
            let mut any = false;
            for b in &args[1..] {
                any |= compare(&args[0], b)? == std::cmp::Ordering::Equal;
            }
            Value::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let o = compare(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            Value::Bool(match name {
                "ne" => o != Equal,
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            })
        }
        "json" => {
            want(1)?;
            Value::String(json(&args[0]))
        }
        "split" => {
            want(2)?;
            let (s, sep) = (text(&args[0])?, text(&args[1])?);
            Value::Array(s.split(sep.as_str()).map(Value::from).collect())
        }
        "join" => {
            want(2)?;
            let sep = text(&args[1])?;
            match &args[0] {
                Value::Array(a) => {
                    Value::String(a.iter().map(print).collect::<Vec<_>>().join(&sep))
                }
                Value::Null => Value::String(String::new()),
                other => Value::String(print(other)),
            }
        }
        "title" => {
            want(1)?;
            Value::String(title(&text(&args[0])?))
        }
        "lower" => {
            want(1)?;
            Value::String(text(&args[0])?.to_lowercase())
        }
        "upper" => {
            want(1)?;
            Value::String(text(&args[0])?.to_uppercase())
        }
        "pad" => {
            want(3)?;
            let (before, after) = (int(&args[1])?, int(&args[2])?);
            Value::String(format!(
                "{}{}{}",
                " ".repeat(before.max(0) as usize),
                text(&args[0])?,
                " ".repeat(after.max(0) as usize)
            ))
        }
        "truncate" => {
            want(2)?;
            let n = int(&args[1])?.max(0) as usize;
            Value::String(text(&args[0])?.chars().take(n).collect())
        }
        _ => return Err(format!("function {name:?} not defined")),
    })
}

/// A string argument; other scalars as they print (docker's functions
/// take strings, and a number given to `upper` is no reason to fail).
fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::Array(_) | Value::Object(_) => Err(format!(
            "wrong type for value; expected string; got {}",
            if v.is_array() {
                "[]interface {}"
            } else {
                "map[string]interface {}"
            }
        )),
        _ => Ok(print(v)),
    }
}

fn int(v: &Value) -> Result<i64, String> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| format!("expected an integer; got {}", print(v)))
}

fn len(v: &Value) -> Result<usize, String> {
    match v {
        Value::String(s) => Ok(s.len()),
        Value::Array(a) => Ok(a.len()),
        Value::Object(o) => Ok(o.len()),
        Value::Null => Err("len of nil pointer".into()),
        other => Err(format!("len of type {}", print(other))),
    }
}

/// `index x k1 k2`: a missing key of a map gives "" (docker's maps are of
/// strings, whose zero value that is).
fn index(v: &Value, keys: &[Value]) -> Result<Value, String> {
    let mut cur = v.clone();
    for k in keys {
        cur = match (&cur, k) {
            (Value::Object(o), Value::String(s)) => {
                o.get(s).cloned().unwrap_or(Value::String(String::new()))
            }
            (Value::Array(a), _) => {
                let i = k
                    .as_i64()
                    .ok_or_else(|| format!("cannot index slice/array with {}", print(k)))?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| a.get(i))
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            (Value::Null, _) => return Err("index of untyped nil".into()),
            (Value::Object(_), _) => {
                return Err(format!("value has type {}; should be string", print(k)));
            }
            (other, _) => return Err(format!("can't index item of type {}", print(other))),
        };
    }
    Ok(cur)
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).ok_or_else(|| "NaN".to_string())
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Null, Value::Null) => Ok(std::cmp::Ordering::Equal),
        _ => Err("incompatible types for comparison".into()),
    }
}

/// docker's `json`: compact, and with `<`, `>` and `&` as they are (its
/// encoder has Go's HTML escaping turned off, and podman's agrees), so
/// `{{json .Config.Cmd}}` shows `sh -c "a > b"` as it was given.
pub fn json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Go's strings.Title: each letter after a non-letter upper-cased.
fn title(s: &str) -> String {
    let mut out = String::new();
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

/// A value as Go's `%v` prints it (a nil as `<nil>`, a list as `[a b]`,
/// a map as `map[k:v]` in key order).
pub fn print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut kv: Vec<_> = o.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{k}:{}", print(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%v` of a float64: the shortest form, in exponent form when the
/// exponent is below -4 or at least 21.
fn float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return f.to_string();
    }
    let exp = f.abs().log10().floor() as i32;
    if (-4..21).contains(&exp) {
        return f.to_string();
    }
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = e.strip_prefix('-').map(|d| ('-', d)).unwrap_or(('+', e));
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// Go's fmt.Sprint: spaces between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&print(a));
    }
    out
}

/// Go's fmt.Sprintf for the verbs templates use: %v %s %d %q %t %x %X
/// %f %e %g with flags `-+0 ` , width and precision.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek().filter(|f| "-+0 #".contains(**f)) {
            flags.push(f);
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let body = verb_text(verb, &flags, prec, arg);
        let w: usize = width.parse().unwrap_or(0);
        let n = body.chars().count();
        if n >= w {
            out.push_str(&body);
        } else if flags.contains('-') {
            out.push_str(&body);
            out.push_str(&" ".repeat(w - n));
        } else if flags.contains('0') && arg.is_number() {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(w - n));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(w - n));
            out.push_str(&body);
        }
    }
    if next.len() > 0 {
        let extra: Vec<String> = next
            .map(|a| format!("{}={}", go_type(a), print(a)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        _ => "interface {}",
    }
}

/// One verb's text, before padding; a verb of the wrong type prints as Go
/// prints it: `%!d(string=x)`.
fn verb_text(verb: char, flags: &str, prec: Option<usize>, arg: &Value) -> String {
    let bad = || format!("%!{verb}({}={})", go_type(arg), print(arg));
    let plus = |s: String, positive: bool| {
        if flags.contains('+') && positive {
            format!("+{s}")
        } else {
            s
        }
    };
    match verb {
        'v' => print(arg),
        's' => {
            let s = print(arg);
            match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            }
        }
        'q' => match arg {
            Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
            _ => bad(),
        },
        't' => match arg {
            Value::Bool(b) => b.to_string(),
            _ => bad(),
        },
        'd' => match arg.as_i64() {
            Some(n) if !arg.as_number().is_some_and(|n| n.is_f64()) => plus(n.to_string(), n >= 0),
            _ => match arg.as_u64() {
                Some(n) => n.to_string(),
                None => bad(),
            },
        },
        'x' | 'X' => {
            let s = match arg {
                Value::Number(n) if n.as_i64().is_some() && !n.is_f64() => {
                    format!("{:x}", n.as_i64().unwrap_or(0))
                }
                Value::String(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                _ => return bad(),
            };
            if verb == 'X' { s.to_uppercase() } else { s }
        }
        'f' | 'F' | 'e' | 'g' => match arg.as_f64() {
            Some(f) => {
                let p = prec.unwrap_or(6);
                let s = match verb {
                    'e' => format!("{f:.p$e}"),
                    'g' if prec.is_none() => float(f),
                    'g' => format!("{f:.p$}"),
                    _ => format!("{f:.p$}"),
                };
                plus(s, f >= 0.0)
            }
            None => bad(),
        },
        _ => format!("%!{verb}({}={})", go_type(arg), print(arg)),
    }
}
