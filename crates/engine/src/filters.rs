//! `ps --filter KEY=VALUE` as docker reads it: filters of different keys
//! must all match, values of the same key are alternatives.

use std::collections::{BTreeMap, BTreeSet};

use berth_image::registries::RegistriesConf;
use berth_image::store::{ImageRecord, Store};

use crate::error::{Error, Result};
use crate::model::{Container, Status};

/// The keys `ps --filter` takes, for the error that lists them.
const KEYS: &[&str] = &["ancestor", "exited", "id", "label", "name", "status"];

/// Parsed `--filter` values, by key.
#[derive(Debug, Default)]
pub struct ContainerFilter {
    names: Vec<regex::Regex>,
    labels: Vec<(String, Option<String>)>,
    statuses: Vec<String>,
    ancestors: Vec<String>,
    /// IDs of the stored images an `ancestor` value names and of every
    /// image built on one of them (`resolve_ancestors`).
    descendants: BTreeSet<String>,
    ids: Vec<String>,
    exited: Vec<i32>,
}

fn invalid(spec: &str, why: impl Into<String>) -> Error {
    Error::Invalid {
        what: format!("--filter {spec}"),
        why: why.into(),
    }
}

impl ContainerFilter {
    /// Parses each `KEY=VALUE`; an unknown key or a bad value is an error
    /// naming it, as docker refuses them rather than matching nothing.
    pub fn parse(specs: &[String]) -> Result<ContainerFilter> {
        let mut f = ContainerFilter::default();
        for spec in specs {
            let (key, value) = spec
                .split_once('=')
                .ok_or_else(|| invalid(spec, "expected KEY=VALUE"))?;
            match key {
                "name" => f.names.push(
                    regex::Regex::new(value)
                        .map_err(|e| invalid(spec, format!("not a regular expression: {e}")))?,
                ),
                "label" => f.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                }),
                "status" => {
                    // docker's states; berth never shows the last three, so
                    // they match nothing rather than fail a script.
                    const STATES: &[&str] = &[
                        "created",
                        "running",
                        "paused",
                        "exited",
                        "restarting",
                        "removing",
                        "dead",
                    ];
                    if !STATES.contains(&value) {
                        return Err(invalid(
                            spec,
                            format!("status is one of {}", STATES.join(", ")),
                        ));
                    }
                    f.statuses.push(value.to_string());
                }
                "ancestor" => f.ancestors.push(value.to_string()),
                "id" => f.ids.push(value.to_string()),
                "exited" => f.exited.push(
                    value
                        .parse()
                        .map_err(|_| invalid(spec, "exited takes an exit code (an integer)"))?,
                ),
                _ => {
                    return Err(invalid(
                        spec,
                        format!("unknown filter {key:?}: ps filters on {}", KEYS.join(", ")),
                    ));
                }
            }
        }
        Ok(f)
    }

    /// Whether the filter is on state: docker's `ps` then looks at
    /// stopped containers too, without `-a`.
    pub fn wants_stopped(&self) -> bool {
        !self.exited.is_empty() || !self.statuses.is_empty()
    }

    /// Finds the images each `ancestor` value names in the store (as
    /// `run` would resolve it, or by the short name `is_ancestor` reads)
    /// and every stored image built on one of them: one whose layers
    /// start with all of the named image's layers, as a `commit` or a
    /// build on top of it makes. docker follows the parent images it
    /// records; berth records no parents, and the layers are the same
    /// relation: an image made on top of another keeps its layers.
    pub fn resolve_ancestors(&mut self, store: &Store, conf: &RegistriesConf) -> Result<()> {
        if self.ancestors.is_empty() {
            return Ok(());
        }
        let images = store.images()?;
        let mut bases: Vec<&ImageRecord> = Vec::new();
        for a in &self.ancestors {
            bases.extend(
                images
                    .iter()
                    .filter(|i| i.names.iter().any(|n| names_image(a, n))),
            );
            match berth_image::images::resolve(store, a, conf) {
                Ok(r) => {
                    if let Some(i) = images.iter().find(|i| i.id == r.id) {
                        bases.push(i);
                    }
                }
                // Not an image here (or not one image: an ambiguous ID
                // prefix, a malformed name): only the names of the
                // containers' images can match it.
                Err(
                    berth_image::Error::NotFound(_)
                    | berth_image::Error::Reference { .. }
                    | berth_image::Error::Invalid { .. },
                ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for i in &images {
            // An image without layers is the start of every chain, and
            // the ancestor of nothing.
            let built_on = |b: &&ImageRecord| {
                !b.layers.is_empty()
                    && i.layers.len() >= b.layers.len()
                    && b.layers
                        .iter()
                        .zip(&i.layers)
                        .all(|(x, y)| x.chain_id == y.chain_id)
            };
            if bases.iter().any(built_on) {
                self.descendants.insert(i.id.to_string());
            }
        }
        Ok(())
    }

    pub fn matches(&self, c: &Container) -> bool {
        let labels: BTreeMap<&str, &str> = c
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        any_or_none(&self.names, |re| {
            re.is_match(&c.name) || re.is_match(&format!("/{}", c.name))
        })
            // Labels are ANDed, as docker does: each given label must be on it.
            && self.labels.iter().all(|(k, v)| match v {
                Some(v) => labels.get(k.as_str()) == Some(&v.as_str()),
                None => labels.contains_key(k.as_str()),
            })
            && any_or_none(&self.statuses, |s| s == c.state.status.name())
            && (any_or_none(&self.ancestors, |a| is_ancestor(a, c))
                || self.descendants.contains(&c.image_id))
            && any_or_none(&self.ids, |p| c.id.starts_with(p.as_str()))
            && any_or_none(&self.exited, |code| {
                c.state.status == Status::Exited && c.state.exit_code == Some(*code)
            })
    }
}

/// True when no value was given for the key, else when one matches.
fn any_or_none<T>(values: &[T], f: impl FnMut(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(f)
}

/// Whether `a` names the container's image: its reference, or a prefix
/// of the image's ID.
fn is_ancestor(a: &str, c: &Container) -> bool {
    let id = c.image_id.strip_prefix("sha256:").unwrap_or(&c.image_id);
    let a_id = a.strip_prefix("sha256:").unwrap_or(a);
    names_image(a, &c.config.image)
        || (a_id.len() >= 4
            && a_id.chars().all(|ch| ch.is_ascii_hexdigit())
            && id.starts_with(a_id))
}

/// Whether `a` is the image reference `image` as given (with or without
/// the default `:latest`), or its last path part as a user types a short
/// name (`busybox`, `busybox:latest`).
fn names_image(a: &str, image: &str) -> bool {
    let untagged = image.strip_suffix(":latest").unwrap_or(image);
    let short = image.rsplit('/').next().unwrap_or(image);
    let short_untagged = short.strip_suffix(":latest").unwrap_or(short);
    [image, untagged, short, short_untagged].contains(&a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerConfig, ContainerRun, ContainerSpec, State};

    fn ctr(name: &str, status: Status, code: Option<i32>, labels: &[(&str, &str)]) -> Container {
        let spec = ContainerSpec {
            image_id: "sha256:abcdef0123456789".into(),
            created: "2026-01-01T00:00:00Z".into(),
            config: ContainerConfig {
                image: "127.0.0.1:5000/busybox:latest".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            command: vec!["sh".into()],
        };
        let run = ContainerRun {
            state: State {
                status,
                exit_code: code,
                ..Default::default()
            },
            ..Default::default()
        };
        Container::assemble(format!("{name}0123456789"), name.into(), spec, run, 0)
    }

    fn f(specs: &[&str]) -> ContainerFilter {
        ContainerFilter::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn same_key_is_any_different_keys_are_all() {
        let web = ctr("web", Status::Running, None, &[("app", "web")]);
        let job = ctr(
            "job",
            Status::Exited,
            Some(3),
            &[("app", "web"), ("t", "b")],
        );
        assert!(f(&["name=web", "name=job"]).matches(&web));
        assert!(f(&["name=web", "name=job"]).matches(&job));
        assert!(!f(&["name=web", "status=exited"]).matches(&web));
        assert!(f(&["status=running", "status=exited"]).matches(&job));
        // Labels: every one given must be there.
        assert!(!f(&["label=app=web", "label=t"]).matches(&web));
        assert!(f(&["label=app=web", "label=t=b"]).matches(&job));
        assert!(f(&["exited=3"]).matches(&job) && !f(&["exited=3"]).matches(&web));
        assert!(f(&["name=^/?web$"]).matches(&web) && f(&["name=^/web$"]).matches(&web));
        assert!(f(&["id=web01"]).matches(&web) && !f(&["id=01"]).matches(&web));
    }

    #[test]
    fn ancestor_by_reference_short_name_or_id() {
        let c = ctr("a", Status::Running, None, &[]);
        for a in [
            "127.0.0.1:5000/busybox:latest",
            "127.0.0.1:5000/busybox",
            "busybox",
            "busybox:latest",
            "abcdef01",
            "sha256:abcdef",
        ] {
            assert!(f(&[&format!("ancestor={a}")]).matches(&c), "{a}");
        }
        for a in ["busy", "alpine", "abc", "busybox:1"] {
            assert!(!f(&[&format!("ancestor={a}")]).matches(&c), "{a}");
        }
    }

    #[test]
    fn bad_filters_are_refused_with_their_text() {
        let err = |s: &str| {
            ContainerFilter::parse(&[s.to_string()])
                .unwrap_err()
                .to_string()
        };
        assert!(err("colour=red").contains("--filter colour=red: unknown filter \"colour\""));
        assert!(err("status=asleep").contains("status is one of"));
        assert!(err("exited=x").contains("exit code"));
        assert!(err("name=(").contains("not a regular expression"));
        assert!(err("name").contains("expected KEY=VALUE"));
        assert!(f(&["status=exited"]).wants_stopped() && !f(&["name=x"]).wants_stopped());
    }
}
