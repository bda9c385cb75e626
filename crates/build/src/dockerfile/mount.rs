//! `RUN --mount=type=...,key=value,...`: the flag's value read into a
//! RunMount as BuildKit reads it. The value is a CSV record (a field may be
//! quoted to hold a comma); keys are case-insensitive; a few options stand
//! alone (`ro`, `rw`, `required`).

use super::ast::{MountType, RunMount};

pub(crate) fn parse_mount(value: &str) -> Result<RunMount, String> {
    let mut m = RunMount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        readonly: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    // Options that only some types take are checked once the type is
    // known, wherever `type=` was written.
    let mut required_given = false;
    for field in csv_fields(value)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => m.readonly = Some(true),
                "readwrite" | "rw" => m.readonly = Some(false),
                "required" => {
                    m.required = true;
                    required_given = true;
                }
                _ => return Err(format!("mount option {field:?} needs a value (key=value)")),
            }
            continue;
        };
        let owned = || Some(val.to_string());
        match key.as_str() {
            "type" => m.kind = mount_type(val)?,
            "target" | "dst" | "destination" => m.target = owned(),
            "source" | "src" => m.source = owned(),
            "from" => m.from = owned(),
            "id" => m.id = owned(),
            "env" => m.env = owned(),
            "readonly" | "ro" => m.readonly = Some(boolean(&key, val)?),
            "readwrite" | "rw" => m.readonly = Some(!boolean(&key, val)?),
            "required" => {
                m.required = boolean(&key, val)?;
                required_given = true;
            }
            "sharing" => {
                let v = val.to_ascii_lowercase();
                if !["shared", "private", "locked"].contains(&v.as_str()) {
                    return Err(format!(
                        "unsupported sharing {val:?} (shared, private or locked)"
                    ));
                }
                m.sharing = Some(v);
            }
            "mode" => m.mode = Some(number(&key, val, 8)?),
            "uid" => m.uid = Some(number(&key, val, 10)?),
            "gid" => m.gid = Some(number(&key, val, 10)?),
            "size" => m.size = Some(size(val)?),
            _ => return Err(format!("unknown mount option {key:?}")),
        }
    }
    validate(&m, required_given)?;
    Ok(m)
}

fn validate(m: &RunMount, required_given: bool) -> Result<(), String> {
    use MountType::*;
    let kind = type_name(m.kind);
    let only = |set: bool, what: &str, types: &[MountType], names: &str| {
        if set && !types.contains(&m.kind) {
            Err(format!("{what} is for {names} mounts, not {kind}"))
        } else {
            Ok(())
        }
    };
    only(
        m.mode.is_some() || m.uid.is_some() || m.gid.is_some(),
        "mode/uid/gid",
        &[Cache, Secret, Ssh],
        "cache, secret and ssh",
    )?;
    only(m.sharing.is_some(), "sharing", &[Cache], "cache")?;
    only(m.size.is_some(), "size", &[Tmpfs], "tmpfs")?;
    only(required_given, "required", &[Secret, Ssh], "secret and ssh")?;
    only(m.env.is_some(), "env", &[Secret], "secret")?;
    match m.kind {
        Bind | Cache | Tmpfs if m.target.is_none() => Err(format!("a {kind} mount needs a target")),
        Secret if m.from.is_some() => Err("a secret mount takes no from".to_string()),
        Secret if m.source.is_none() && m.target.is_none() && m.id.is_none() => {
            Err("a secret mount needs an id, a source or a target".to_string())
        }
        Secret if m.source.is_some() && m.id.is_some() => {
            Err("a secret mount takes a source or an id, not both".to_string())
        }
        _ => Ok(()),
    }
}

fn mount_type(val: &str) -> Result<MountType, String> {
    Ok(match val.to_ascii_lowercase().as_str() {
        "bind" => MountType::Bind,
        "cache" => MountType::Cache,
        "tmpfs" => MountType::Tmpfs,
        "secret" => MountType::Secret,
        "ssh" => MountType::Ssh,
        _ => {
            return Err(format!(
                "unsupported mount type {val:?} (bind, cache, tmpfs, secret or ssh)"
            ));
        }
    })
}

fn type_name(kind: MountType) -> &'static str {
    match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// Go's strconv.ParseBool, which BuildKit uses here.
fn boolean(key: &str, val: &str) -> Result<bool, String> {
    match val {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{key}={val:?}: not a boolean")),
    }
}

/// Numbers are read now, so a `$VAR` in them is an error here (BuildKit
/// expands mount options first; berth does not yet for these).
fn number(key: &str, val: &str, radix: u32) -> Result<u32, String> {
    u32::from_str_radix(val, radix).map_err(|_| {
        let what = if radix == 8 {
            "an octal number"
        } else {
            "a number"
        };
        let hint = if val.contains('$') {
            " (variables are not supported in mount uid/gid/mode/size)"
        } else {
            ""
        };
        format!("{key}={val:?}: not {what}{hint}")
    })
}

/// A size as docker reads one for tmpfs: a number, then optionally a
/// binary unit `k`, `m`, `g`, `t` or `p` (any case, `i` and `b` allowed
/// after it): `64m`, `1.5GiB`, `4096`.
fn size(val: &str) -> Result<u64, String> {
    let bad = || format!("size={val:?}: not a size (like 64m or 1g)");
    let digits_end = val
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(val.len());
    let (num, unit) = val.split_at(digits_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let num: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut chars = unit.chars();
    let shift = match chars.next() {
        None => 0,
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        Some('b') => 0,
        Some(_) => return Err(bad()),
    };
    let rest: String = chars.collect();
    let rest_ok = if unit.starts_with('b') {
        rest.is_empty()
    } else {
        ["", "i", "b", "ib"].contains(&rest.as_str())
    };
    if !rest_ok {
        return Err(bad());
    }
    Ok((num * (1u64 << shift) as f64) as u64)
}

/// The fields of one CSV record: comma-separated, a field that starts with
/// `"` is quoted (`""` inside stands for `"`) and may hold commas.
fn csv_fields(value: &str) -> Result<Vec<String>, String> {
    if value.is_empty() {
        return Err("empty mount".to_string());
    }
    let mut fields = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in {value:?}")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!("text after a closing quote in {value:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(format!("a quote inside an unquoted field in {value:?}"));
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(kind: MountType, target: &str) -> RunMount {
        RunMount {
            kind,
            target: Some(target.to_string()),
            source: None,
            from: None,
            id: None,
            readonly: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            required: false,
            size: None,
            env: None,
        }
    }

    #[test]
    fn mounts() {
        use MountType::*;
        let s = |v: &str| Some(v.to_string());
        let cases: Vec<(&str, RunMount)> = vec![
            ("target=/x", base(Bind, "/x")),
            (
                "type=bind,src=a,from=build,dst=/x,rw",
                RunMount {
                    source: s("a"),
                    from: s("build"),
                    readonly: Some(false),
                    ..base(Bind, "/x")
                },
            ),
            (
                "type=cache,target=/root/.cache,id=pip,sharing=LOCKED,mode=0755,uid=1000,gid=100",
                RunMount {
                    id: s("pip"),
                    sharing: s("locked"),
                    mode: Some(0o755),
                    uid: Some(1000),
                    gid: Some(100),
                    ..base(Cache, "/root/.cache")
                },
            ),
            (
                "Type=Cache,Destination=/c,ro",
                RunMount {
                    readonly: Some(true),
                    ..base(Cache, "/c")
                },
            ),
            (
                "type=cache,target=/c,readonly=false",
                RunMount {
                    readonly: Some(false),
                    ..base(Cache, "/c")
                },
            ),
            (
                "type=cache,target=/c,rw=0",
                RunMount {
                    readonly: Some(true),
                    ..base(Cache, "/c")
                },
            ),
            (
                "type=tmpfs,target=/t,size=64m",
                RunMount {
                    size: Some(64 << 20),
                    ..base(Tmpfs, "/t")
                },
            ),
            (
                "type=secret,id=aws,env=AWS_KEY,required",
                RunMount {
                    target: None,
                    id: s("aws"),
                    env: s("AWS_KEY"),
                    required: true,
                    ..base(Secret, "")
                },
            ),
            ("type=secret,target=/run/s", base(Secret, "/run/s")),
            (
                "type=ssh",
                RunMount {
                    target: None,
                    ..base(Ssh, "")
                },
            ),
            (
                "required=true,type=ssh,id=gh",
                RunMount {
                    target: None,
                    id: s("gh"),
                    required: true,
                    ..base(Ssh, "")
                },
            ),
            (r#""target=/a,b",type=bind"#, base(Bind, "/a,b")),
            (r#""target=/a""b",type=bind"#, base(Bind, "/a\"b")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_mount(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn mount_errors() {
        let cases: &[(&str, &str)] = &[
            ("type=volume,target=/x", "unsupported mount type \"volume\""),
            ("target=/x,bogus=1", "unknown mount option \"bogus\""),
            ("target=/x,nope", "needs a value"),
            ("type=bind", "a bind mount needs a target"),
            ("type=cache,target=/x,sharing=all", "unsupported sharing"),
            ("type=cache,target=/x,mode=999", "not an octal number"),
            (
                "type=cache,target=/x,uid=$UID",
                "variables are not supported",
            ),
            (
                "type=bind,target=/x,uid=1",
                "mode/uid/gid is for cache, secret and ssh mounts, not bind",
            ),
            (
                "type=bind,target=/x,sharing=shared",
                "sharing is for cache mounts",
            ),
            ("type=cache,target=/x,size=1m", "size is for tmpfs mounts"),
            (
                "type=cache,target=/x,required",
                "required is for secret and ssh mounts",
            ),
            ("type=tmpfs,target=/x,size=lots", "not a size"),
            ("type=secret,id=a,from=b", "takes no from"),
            ("type=secret", "needs an id, a source or a target"),
            ("type=secret,id=a,src=b", "not both"),
            ("target=/x,ro=maybe", "not a boolean"),
            ("", "empty mount"),
            (r#""target=/x"#, "unterminated quote"),
            (r#"target=/x"y"#, "quote inside an unquoted field"),
            (r#""target=/x"y"#, "text after a closing quote"),
        ];
        for (text, want) in cases {
            let err = parse_mount(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, u64)] = &[
            ("4096", 4096),
            ("1k", 1024),
            ("64M", 64 << 20),
            ("1.5GiB", 3 << 29),
            ("2 gb", 2 << 30),
            ("10b", 10),
        ];
        for (text, want) in cases {
            assert_eq!(size(text), Ok(*want), "{text:?}");
        }
        for bad in ["", "m", "1x", "1.", ".5", "1kbb", "1bi"] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
    }
}
