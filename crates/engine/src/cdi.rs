//! CDI, the Container Device Interface: devices named `vendor.com/class=name`
//! that vendors describe in spec files (JSON or YAML) under a few
//! directories (/etc/cdi, /var/run/cdi), each a list of container edits
//! (env, device nodes, mounts, hooks, groups) at the spec's level, made
//! for any of its devices, and at each device's.
//!
//! A caller (berthd, `berth run --device`) loads a [`Registry`] and
//! resolves the names it was given into one [`Edits`], naming what it
//! cannot resolve; the container's record keeps the edits, so what it got
//! at creation is what it gets at every start, whatever happens to the
//! spec files later (as containerd writes them into the container's
//! spec). A spec file that does not parse or check is skipped with a
//! warning naming it, as the CDI reference library does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, HookBuilder, Spec};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::DeviceMapping;
use crate::spec;

/// Where CDI specs are looked for when nothing says otherwise; a later
/// directory's device replaces an earlier one's of the same name.
pub const DEFAULT_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

/// Edits to a container's spec, as CDI's `containerEdits` has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Edits {
    /// `NAME=VALUE`.
    pub env: Vec<String>,
    pub device_nodes: Vec<DeviceNode>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<HookEdit>,
    #[serde(rename = "additionalGIDs", alias = "additionalGids")]
    pub additional_gids: Vec<u32>,
    /// Not applied by berth: a device that needs them is refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub net_devices: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceNode {
    /// In the container.
    pub path: String,
    /// On the host; the same as `path` when empty.
    pub host_path: String,
    /// A subset of "rwm"; empty: all three.
    pub permissions: String,
    // Type, numbers, mode and owner are the host node's: berth gives the
    // container the host's node itself, never one made from numbers.
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    /// Empty: a bind mount.
    #[serde(rename = "type")]
    pub kind: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HookEdit {
    /// One of the OCI hooks: prestart, createRuntime, createContainer,
    /// startContainer, poststart, poststop.
    pub hook_name: String,
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

impl Edits {
    fn extend(&mut self, o: &Edits) {
        self.env.extend(o.env.iter().cloned());
        self.device_nodes.extend(o.device_nodes.iter().cloned());
        self.mounts.extend(o.mounts.iter().cloned());
        self.hooks.extend(o.hooks.iter().cloned());
        for g in &o.additional_gids {
            if !self.additional_gids.contains(g) {
                self.additional_gids.push(*g);
            }
        }
        self.net_devices.extend(o.net_devices.iter().cloned());
        if o.intel_rdt.is_some() {
            self.intel_rdt.clone_from(&o.intel_rdt);
        }
    }

    /// Why these edits cannot be made, if they cannot: what they ask of
    /// the spec is checked, so that a bad file is skipped as a whole.
    fn check(&self) -> std::result::Result<(), String> {
        for e in &self.env {
            if !e.contains('=') || e.starts_with('=') || e.contains('\0') {
                return Err(format!("env {e:?} is not NAME=VALUE"));
            }
        }
        for d in &self.device_nodes {
            absolute("deviceNodes path", &d.path)?;
            if !d.host_path.is_empty() {
                absolute("deviceNodes hostPath", &d.host_path)?;
            }
            if !d.permissions.chars().all(|c| "rwm".contains(c)) || d.permissions.len() > 3 {
                return Err(format!(
                    "deviceNodes permissions {:?}: r, w and m",
                    d.permissions
                ));
            }
        }
        for m in &self.mounts {
            absolute("mounts containerPath", &m.container_path)?;
            if m.kind.is_empty() || m.kind == "bind" {
                absolute("mounts hostPath", &m.host_path)?;
            }
        }
        for h in &self.hooks {
            absolute("hooks path", &h.path)?;
            if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
                return Err(format!(
                    "hooks hookName {:?} is not an OCI hook",
                    h.hook_name
                ));
            }
            if h.timeout.is_some_and(|t| t <= 0) {
                return Err(format!("hooks timeout of {} must be positive", h.path));
            }
        }
        Ok(())
    }
}

const HOOK_NAMES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn absolute(what: &str, p: &str) -> std::result::Result<(), String> {
    if p.starts_with('/') && !p.contains('\0') {
        Ok(())
    } else {
        Err(format!("{what} {p:?} is not an absolute path"))
    }
}

/// A spec file as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecFile {
    cdi_version: String,
    kind: String,
    #[serde(default)]
    devices: Vec<DeviceEntry>,
    #[serde(default)]
    container_edits: Edits,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceEntry {
    name: String,
    #[serde(default)]
    container_edits: Edits,
}

/// One device as found: its file's edits and its own.
#[derive(Debug, Clone)]
struct Found {
    file: PathBuf,
    /// Its directory's place in the list: a later one wins.
    priority: usize,
    spec_edits: Edits,
    edits: Edits,
    /// Another file of the same directory names it too.
    conflict: Option<PathBuf>,
}

/// The devices of every valid spec file under some directories.
#[derive(Debug, Default)]
pub struct Registry {
    dirs: Vec<PathBuf>,
    /// By kind, then by name.
    devices: BTreeMap<String, BTreeMap<String, Found>>,
}

/// A name that could not be resolved: which of those given, and why.
#[derive(Debug)]
pub struct Unresolved {
    pub index: usize,
    pub why: String,
}

impl Registry {
    /// Reads `*.json`, `*.yaml` and `*.yml` in each directory (a missing
    /// one is none); a file that does not parse or check is left out with
    /// a warning naming it.
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let mut r = Registry {
            dirs: dirs.to_vec(),
            ..Registry::default()
        };
        for (priority, dir) in dirs.iter().enumerate() {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|x| x.to_str()),
                        Some("json" | "yaml" | "yml")
                    )
                })
                .collect();
            files.sort();
            for file in files {
                match read_spec(&file) {
                    Ok(s) => r.add(priority, &file, s),
                    Err(why) => {
                        tracing::warn!(file = %file.display(), "CDI spec skipped: {why}")
                    }
                }
            }
        }
        r
    }

    fn add(&mut self, priority: usize, file: &Path, s: SpecFile) {
        let kind = self.devices.entry(s.kind).or_default();
        for d in s.devices {
            let found = Found {
                file: file.to_path_buf(),
                priority,
                spec_edits: s.container_edits.clone(),
                edits: d.container_edits,
                conflict: None,
            };
            match kind.get_mut(&d.name) {
                Some(old) if old.priority == priority => old.conflict = Some(file.to_path_buf()),
                _ => {
                    kind.insert(d.name, found);
                }
            }
        }
    }

    /// The edits for every name in `names`: the spec-level edits of each
    /// file involved once, then each device's own. `vendor.com/class=all`
    /// is a device named "all" where a spec defines one, else every device
    /// of the kind.
    pub fn resolve(&self, names: &[String]) -> std::result::Result<Edits, Unresolved> {
        let mut out = Edits::default();
        let mut files_done = BTreeSet::new();
        let mut devices_done = BTreeSet::new();
        for (index, name) in names.iter().enumerate() {
            let fail = |why: String| Unresolved { index, why };
            let (kind, dev) = parse_name(name).map_err(|why| fail(format!("{name:?}: {why}")))?;
            let known = self.devices.get(kind).ok_or_else(|| {
                fail(format!(
                    "{name}: no CDI spec of kind {kind} in {}",
                    self.dirs_list()
                ))
            })?;
            let picked: Vec<(&String, &Found)> = match known.get_key_value(dev) {
                Some(one) => vec![one],
                None if dev == "all" => known.iter().collect(),
                None => {
                    return Err(fail(format!(
                        "{name}: no such device (the specs of kind {kind} have {})",
                        known.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            };
            for (dev_name, f) in picked {
                if let Some(other) = &f.conflict {
                    return Err(fail(format!(
                        "{kind}={dev_name} is defined in both {} and {}",
                        f.file.display(),
                        other.display()
                    )));
                }
                if !f.edits.net_devices.is_empty() || f.edits.intel_rdt.is_some() {
                    return Err(fail(format!(
                        "{kind}={dev_name} needs netDevices or intelRdt, which berth does not apply"
                    )));
                }
                if !devices_done.insert((kind.to_string(), dev_name.clone())) {
                    continue;
                }
                if files_done.insert(f.file.clone()) {
                    out.extend(&f.spec_edits);
                }
                out.extend(&f.edits);
            }
        }
        Ok(out)
    }

    fn dirs_list(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `vendor.com/class=name` as (kind, name), checked as CDI's names are.
pub fn parse_name(s: &str) -> std::result::Result<(&str, &str), String> {
    let (kind, name) = s
        .split_once('=')
        .ok_or("not a CDI device name (vendor.com/class=name)")?;
    check_kind(kind)?;
    let ok_name = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !ok_name {
        return Err(format!(
            "device name {name:?}: letters, digits and - _ . :, starting and ending with a letter or digit"
        ));
    }
    Ok((kind, name))
}

/// `vendor.com/class`: a vendor of DNS labels, a class of letters,
/// digits and - _ . (each starting and ending with a letter or digit).
fn check_kind(kind: &str) -> std::result::Result<(), String> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("kind {kind:?} is not vendor.com/class"))?;
    let edges = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let vendor_ok = edges(vendor)
        && vendor.len() <= 253
        && vendor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
    let class_ok = edges(class)
        && class.len() <= 63
        && class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if vendor_ok && class_ok {
        Ok(())
    } else {
        Err(format!("kind {kind:?} is not vendor.com/class"))
    }
}

/// Largest spec file read: vendors' specs are a few KiB.
const MAX_SPEC: u64 = 4 << 20;

fn read_spec(file: &Path) -> std::result::Result<SpecFile, String> {
    use std::io::Read;
    let mut raw = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_SPEC + 1).read_to_end(&mut raw))
        .map_err(|e| e.to_string())?;
    if raw.len() as u64 > MAX_SPEC {
        return Err(format!("larger than {MAX_SPEC} bytes"));
    }
    let s: SpecFile = if file.extension().is_some_and(|x| x == "json") {
        serde_json::from_slice(&raw).map_err(|e| e.to_string())?
    } else {
        let text = std::str::from_utf8(&raw).map_err(|e| e.to_string())?;
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    let v = s.cdi_version.split('.').collect::<Vec<_>>();
    if v.len() != 3
        || !v
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("cdiVersion {:?} is not a version", s.cdi_version));
    }
    check_kind(&s.kind)?;
    if s.devices.is_empty() {
        return Err("it defines no devices".into());
    }
    s.container_edits.check()?;
    let mut names = BTreeSet::new();
    for d in &s.devices {
        parse_name(&format!("{}={}", s.kind, d.name))?;
        if !names.insert(&d.name) {
            return Err(format!("device {:?} is defined twice", d.name));
        }
        d.container_edits
            .check()
            .map_err(|why| format!("device {}: {why}", d.name))?;
    }
    Ok(s)
}

/// Makes the edits in a container's spec: env (replacing a variable of
/// the same name), device nodes with their cgroup permissions, mounts,
/// hooks and supplementary groups.
pub fn apply(s: &mut Spec, e: &Edits) -> Result<()> {
    if let Some(p) = s.process_mut() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &e.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
        if !e.additional_gids.is_empty() {
            let mut gids = p.user().additional_gids().clone().unwrap_or_default();
            for g in &e.additional_gids {
                if !gids.contains(g) {
                    gids.push(*g);
                }
            }
            p.user_mut().set_additional_gids(Some(gids));
        }
    }
    for d in &e.device_nodes {
        let host = if d.host_path.is_empty() {
            &d.path
        } else {
            &d.host_path
        };
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            &d.permissions
        };
        spec::add_device(
            s,
            &DeviceMapping {
                host: host.clone(),
                container: d.path.clone(),
                access: access.into(),
            },
        )
        .map_err(|e| Error::invalid(format!("CDI device node {}", d.path), e.to_string()))?;
    }
    for m in &e.mounts {
        let kind = if m.kind.is_empty() { "bind" } else { &m.kind };
        let mut o: Vec<&str> = m.options.iter().map(String::as_str).collect();
        if kind == "bind" && !o.iter().any(|x| *x == "bind" || *x == "rbind") {
            o.push("rbind");
        }
        spec::add_mount(s, &m.container_path, kind, &m.host_path, &o);
    }
    if !e.hooks.is_empty() {
        let mut hooks = s.hooks().clone().unwrap_or_default();
        for h in &e.hooks {
            let mut args = h.args.clone();
            if args.is_empty() {
                args.push(h.path.clone());
            }
            let mut b = HookBuilder::default().path(&h.path).args(args);
            if !h.env.is_empty() {
                b = b.env(h.env.clone());
            }
            if let Some(t) = h.timeout {
                b = b.timeout(t);
            }
            let hook: Hook = b.build().expect("a hook with a path");
            let list = match h.hook_name.as_str() {
                #[allow(deprecated)] // still run by runtimes, and CDI allows it
                "prestart" => hooks.prestart_mut(),
                "createRuntime" => hooks.create_runtime_mut(),
                "createContainer" => hooks.create_container_mut(),
                "startContainer" => hooks.start_container_mut(),
                "poststart" => hooks.poststart_mut(),
                "poststop" => hooks.poststop_mut(),
                other => {
                    return Err(Error::invalid(
                        format!("CDI hook {}", h.path),
                        format!("{other:?} is not an OCI hook"),
                    ));
                }
            };
            list.get_or_insert_with(Vec::new).push(hook);
        }
        s.set_hooks(Some(hooks));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn names_parse_as_cdi_has_them() {
        assert_eq!(
            parse_name("vendor.com/gpu=gpu0").unwrap(),
            ("vendor.com/gpu", "gpu0")
        );
        assert!(parse_name("nvidia.com/gpu=all").is_ok());
        assert!(parse_name("a.b/c_d.e=0:1").is_ok());
        for bad in [
            "gpu0",
            "vendor.com=x",
            "vendor.com/gpu=",
            "/gpu=x",
            "v/c=-x",
            "v/c/d=x",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_resolve_with_priority_all_and_conflicts() {
        let (etc, run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(
            etc.path(),
            "v.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev",
                "containerEdits":{"env":["SPEC=1"]},
                "devices":[{"name":"a","containerEdits":{"env":["A=etc"]}},
                           {"name":"b","containerEdits":{"deviceNodes":[{"path":"/dev/b","hostPath":"/dev/null"}]}}]}"#,
        );
        write(
            run.path(),
            "v.yaml",
            "cdiVersion: 0.6.0\nkind: vendor.com/dev\ndevices:\n  - name: a\n    containerEdits:\n      env: [A=run]\n      additionalGIDs: [44]\n",
        );
        write(run.path(), "broken.json", "{");
        write(
            run.path(),
            "badpath.yaml",
            "cdiVersion: 0.6.0\nkind: other.com/x\ndevices:\n  - name: y\n    containerEdits:\n      mounts: [{hostPath: rel, containerPath: /x}]\n",
        );
        write(
            etc.path(),
            "dup.json",
            r#"{"cdiVersion":"0.6.0","kind":"dup.com/x","devices":[{"name":"d","containerEdits":{}}]}"#,
        );
        write(
            etc.path(),
            "dup2.json",
            r#"{"cdiVersion":"0.6.0","kind":"dup.com/x","devices":[{"name":"d","containerEdits":{}}]}"#,
        );
        let r = Registry::load(&[etc.path().into(), run.path().into()]);
        // The later directory's "a" wins; "b" is still the first's.
        let e = r.resolve(&["vendor.com/dev=a".into()]).unwrap();
        assert_eq!(e.env, ["A=run"]);
        assert_eq!(e.additional_gids, [44]);
        let e = r.resolve(&["vendor.com/dev=b".into()]).unwrap();
        assert_eq!(e.env, ["SPEC=1"]);
        assert_eq!(e.device_nodes[0].path, "/dev/b");
        // all: every device of the kind, each file's edits once.
        let e = r.resolve(&["vendor.com/dev=all".into()]).unwrap();
        assert_eq!(e.env, ["A=run", "SPEC=1"]);
        // Unknown names say which and why; bad files are left out.
        let u = r
            .resolve(&["vendor.com/dev=a".into(), "vendor.com/dev=zz".into()])
            .unwrap_err();
        assert_eq!(u.index, 1);
        assert!(u.why.contains("vendor.com/dev=zz"), "{}", u.why);
        assert!(r.resolve(&["other.com/x=y".into()]).is_err());
        let u = r.resolve(&["dup.com/x=d".into()]).unwrap_err();
        assert!(u.why.contains("both"), "{}", u.why);
    }

    #[test]
    fn edits_land_in_the_spec() {
        let mut s = Spec::default();
        let e = Edits {
            env: vec!["PATH=/cdi".into(), "X=1".into()],
            device_nodes: vec![DeviceNode {
                path: "/dev/vendor0".into(),
                host_path: "/dev/null".into(),
                permissions: "rw".into(),
            }],
            mounts: vec![Mount {
                host_path: "/usr/lib".into(),
                container_path: "/opt/lib".into(),
                options: vec!["ro".into()],
                ..Default::default()
            }],
            hooks: vec![HookEdit {
                hook_name: "createContainer".into(),
                path: "/bin/true".into(),
                ..Default::default()
            }],
            additional_gids: vec![44],
            ..Default::default()
        };
        apply(&mut s, &e).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        let env = v["process"]["env"].as_array().unwrap();
        assert!(env.contains(&"PATH=/cdi".into()) && env.contains(&"X=1".into()));
        assert_eq!(
            env.iter()
                .filter(|x| x.as_str().unwrap().starts_with("PATH="))
                .count(),
            1
        );
        assert_eq!(v["linux"]["devices"][0]["path"], "/dev/vendor0");
        assert_eq!(v["linux"]["devices"][0]["major"], 1);
        let rules = v["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules.last().unwrap()["access"], "rw");
        let m = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/opt/lib")
            .unwrap()
            .clone();
        assert_eq!(m["options"], serde_json::json!(["ro", "rbind"]));
        assert_eq!(v["hooks"]["createContainer"][0]["path"], "/bin/true");
        assert_eq!(
            v["process"]["user"]["additionalGids"],
            serde_json::json!([44])
        );
    }
}
