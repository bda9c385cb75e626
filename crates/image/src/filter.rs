//! `images --filter`: docker's and podman's image filters, applied to the
//! list before it is printed. Several filters must all hold, except that
//! several of the same key (`reference=a --filter reference=b`) need only
//! one to hold, as in docker.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::images;
use crate::reference::DOCKER_HUB;
use crate::registries::RegistriesConf;
use crate::store::{ImageRecord, Store};

/// One `--filter KEY=VALUE`, checked.
#[derive(Debug, Clone)]
enum Filter {
    Dangling(bool),
    Reference(String),
    Label(String, Option<String>),
    Before(SystemTime),
    Since(SystemTime),
}

/// Keeps the images every filter key lets through. An unknown key, a bad
/// value or a `before`/`since` image that is not here is an error naming
/// the filter.
pub fn filter_images(
    store: &Store,
    images: Vec<ImageRecord>,
    filters: &[String],
    conf: &RegistriesConf,
) -> Result<Vec<ImageRecord>> {
    let mut by_key: BTreeMap<&str, Vec<Filter>> = BTreeMap::new();
    for f in filters {
        let (key, value) = f.split_once('=').unwrap_or((f.as_str(), ""));
        let bad = |why: &str| Error::invalid(format!("--filter {f}"), why);
        let parsed = match key {
            "dangling" => Filter::Dangling(match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(bad("dangling is true or false")),
            }),
            "reference" if !value.is_empty() => Filter::Reference(value.to_string()),
            "label" if !value.is_empty() => match value.split_once('=') {
                Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
                None => Filter::Label(value.to_string(), None),
            },
            "before" | "since" if !value.is_empty() => {
                let other = images::resolve(store, value, conf)
                    .map_err(|e| Error::invalid(format!("--filter {f}"), e))?;
                let t = created(&other);
                if key == "before" {
                    Filter::Before(t)
                } else {
                    Filter::Since(t)
                }
            }
            "reference" | "label" | "before" | "since" => return Err(bad("needs a value")),
            _ => {
                return Err(bad("expected dangling, reference, label, before or since"));
            }
        };
        by_key.entry(key).or_default().push(parsed);
    }
    let mut out = Vec::new();
    for img in images {
        let mut labels = None;
        let mut keep = true;
        for group in by_key.values() {
            let mut any = false;
            for f in group {
                if matches(store, &img, f, &mut labels)? {
                    any = true;
                    break;
                }
            }
            if !any {
                keep = false;
                break;
            }
        }
        if keep {
            out.push(img);
        }
    }
    Ok(out)
}

/// When an image was made (its config's `created`); an image that does
/// not say sorts as the oldest.
fn created(img: &ImageRecord) -> SystemTime {
    img.created
        .as_deref()
        .and_then(berth_base::time::parse_rfc3339)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn matches(
    store: &Store,
    img: &ImageRecord,
    f: &Filter,
    labels: &mut Option<BTreeMap<String, String>>,
) -> Result<bool> {
    Ok(match f {
        Filter::Dangling(d) => img.is_dangling() == *d,
        Filter::Reference(pattern) => img
            .names
            .iter()
            .any(|n| short_forms(n).iter().any(|s| glob(pattern, s))),
        Filter::Label(k, v) => {
            if labels.is_none() {
                *labels = Some(config_labels(store, img)?);
            }
            let have = labels.as_ref().expect("just read").get(k);
            match (have, v) {
                (Some(h), Some(v)) => h == v,
                (Some(_), None) => true,
                (None, _) => false,
            }
        }
        Filter::Before(t) => created(img) < *t,
        Filter::Since(t) => created(img) > *t,
    })
}

/// The labels of the image's config.
fn config_labels(store: &Store, img: &ImageRecord) -> Result<BTreeMap<String, String>> {
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&img.id)?)
        .map_err(|e| Error::invalid(format!("image {} config", img.id.short()), e))?;
    Ok(config
        .pointer("/config/Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default())
}

/// The forms a stored name (`registry/repo:tag`) is matched in: whole and
/// without its tag, and as docker and podman users write it (without
/// `docker.io/`, `docker.io/library/` or `localhost/`).
fn short_forms(name: &str) -> Vec<String> {
    let mut forms = vec![name.to_string()];
    for prefix in [
        format!("{DOCKER_HUB}/library/"),
        format!("{DOCKER_HUB}/"),
        "localhost/".to_string(),
    ] {
        if let Some(rest) = name.strip_prefix(&prefix) {
            forms.push(rest.to_string());
            break;
        }
    }
    let untagged: Vec<String> = forms
        .iter()
        .filter_map(|f| {
            let slash = f.rfind('/').map_or(0, |i| i + 1);
            f[slash..].rfind(':').map(|i| f[..slash + i].to_string())
        })
        .collect();
    forms.extend(untagged);
    forms
}

/// Go's path.Match, which docker's reference filter uses: `*` is any run
/// of characters but `/`, `?` one such character, `[...]` a class (`^` or
/// `!` negates, `a-z` ranges), `\` escapes. A malformed class matches
/// nothing.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => {
            // Try every split that keeps `/` out of the star's part.
            let rest = &p[1..];
            for i in 0..=n.len() {
                if glob_at(rest, &n[i..]) {
                    return true;
                }
                if i < n.len() && n[i] == '/' {
                    break;
                }
            }
            false
        }
        Some('?') => !n.is_empty() && n[0] != '/' && glob_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(&c) = n.first() else { return false };
            match class(&p[1..], c) {
                Some((true, used)) => glob_at(&p[1 + used..], &n[1..]),
                _ => false,
            }
        }
        Some('\\') if p.len() > 1 => !n.is_empty() && n[0] == p[1] && glob_at(&p[2..], &n[1..]),
        Some(&c) => !n.is_empty() && n[0] == c && glob_at(&p[1..], &n[1..]),
    }
}

/// Whether `c` is in the class starting after `[`, and how many pattern
/// characters the class took (through `]`); `None` when it never closes.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != negate && c != '/', i + 1));
        }
        first = false;
        let lo = if p[i] == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            p[i]
        };
        i += 1;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            let hi = p[i + 1];
            i += 2;
            hit |= lo <= c && c <= hi;
        } else {
            hit |= lo == c;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_go_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(!glob("*", "library/busybox"));
        assert!(glob("*/busybox", "library/busybox"));
        assert!(glob("b?sy[a-c]ox", "busybox"));
        assert!(!glob("b[!u]sybox", "busybox"));
        assert!(glob("app:v[0-9]", "app:v1"));
        assert!(!glob("[a-", "a"));
    }

    #[test]
    fn names_match_as_users_write_them() {
        let f = short_forms("docker.io/library/busybox:1.36");
        for want in ["busybox:1.36", "busybox", "docker.io/library/busybox"] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }
        let f = short_forms("localhost/app:1");
        assert!(f.iter().any(|x| x == "app"));
        let f = short_forms("127.0.0.1:5000/team/app:1");
        assert!(f.iter().any(|x| x == "127.0.0.1:5000/team/app"));
    }
}
