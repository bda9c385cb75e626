//! A stage's state as its instructions change it: its layers, its image
//! config (Env, WorkingDir, User, Cmd, ...), its ARGs and SHELL; and the
//! instructions that only edit the config.

use std::collections::HashMap;

use berth_engine::model::{ContainerConfig, NetworkMode};
use berth_image::digest::Digest;
use berth_image::store::LayerInfo;
use serde_json::{Map, Value, json};

use crate::build::StageOut;
use crate::dockerfile::{self, Command, Health, Instruction, Kind};

pub struct StageState {
    pub layers: Vec<LayerInfo>,
    pub config: Value,
    /// ARGs this stage declared, with their values.
    pub args: Vec<(String, String)>,
    pub shell: Vec<String>,
    /// WORKDIRs not made yet: the next layer makes them.
    pub pending_dirs: Vec<String>,
    /// The time of the stage's last layer (history entries of config-only
    /// steps take it, so a build from cache is the same image).
    pub created: String,
    /// The cache keys of the stage's own layers (what `--cache-to`
    /// exports).
    pub keys: Vec<CacheKey>,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    cmd_set: bool,
    pub label: String,
}

/// A layer step's cache key, and which of the stage's layers it made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CacheKey {
    pub key: Digest,
    pub layer: usize,
    pub created: String,
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// `config[key]` as an object, made if missing or null.
pub fn object_at<'a>(config: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let v = &mut config["config"][key];
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("an object")
}

impl StageState {
    pub fn new(from: StageOut, label: &str) -> StageState {
        let mut config = from.config;
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        if !config["history"].is_array() {
            config["history"] = json!([]);
        }
        let created = config["created"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(now);
        let shell = config["config"]["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .filter(|s: &Vec<String>| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]);
        StageState {
            layers: from.layers,
            config,
            args: Vec::new(),
            shell,
            pending_dirs: Vec::new(),
            keys: Vec::new(),
            created,
            cmd_set: false,
            label: label.to_string(),
        }
    }

    pub fn into_out(self) -> StageOut {
        StageOut {
            layers: self.layers,
            config: self.config,
            keys: self.keys,
        }
    }

    pub fn top(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }

    /// The base image's ONBUILD triggers, taken: they run now, and the
    /// new image does not pass them on.
    pub fn take_triggers(&mut self) -> Vec<String> {
        let t = self.config["config"]["OnBuild"].take();
        self.config["config"]
            .as_object_mut()
            .expect("an object")
            .remove("OnBuild");
        t.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A variable's value where a word is expanded: ENV first, then ARG.
    pub fn lookup(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.env()
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(&prefix).map(String::from))
            .or_else(|| crate::build::lookup_in(&self.args, name))
    }

    pub fn expand(&self, word: &str, escape: char) -> Result<String, String> {
        let lookup = |n: &str| self.lookup(n);
        dockerfile::words::expand(word, &lookup, escape).map_err(|e| e.to_string())
    }

    /// What a RUN's process gets on top of the image's Env: the stage's
    /// ARGs that no ENV shadows, and the proxy build args.
    pub fn run_env(&self, build_args: &HashMap<String, String>) -> Vec<String> {
        let env = self.env();
        let shadowed = |k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
        let mut out: Vec<String> = self
            .args
            .iter()
            .filter(|(k, _)| !shadowed(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for p in crate::platform::PROXY_ARGS {
            if let Some(v) = build_args.get(p)
                && !self.args.iter().any(|(k, _)| k == p)
            {
                out.push(format!("{p}={v}"));
            }
        }
        out
    }

    pub fn workdir(&self) -> String {
        self.config["config"]["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    pub fn user(&self) -> String {
        self.config["config"]["User"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// A working container's request: the stage's user and workdir come
    /// from its config; this sets what a step adds.
    pub fn container_config(&self, network: NetworkMode) -> ContainerConfig {
        ContainerConfig {
            image: format!("berth-build:{}", self.label),
            entrypoint: Some(Vec::new()),
            // Only a RUN runs anything; this is the command a container
            // needs to be made.
            cmd: Some(vec!["/bin/sh".into()]),
            // Files are written as root whatever USER says; a RUN sets
            // its own.
            user: Some("0:0".into()),
            network,
            owner: Some("berth build".into()),
            labels: vec![("io.berth.build".into(), "step".into())],
            ..Default::default()
        }
    }

    /// A step that made `layer`, cached under `key`.
    pub fn push_layer(&mut self, layer: LayerInfo, created: &str, created_by: &str, key: &Digest) {
        self.layers.push(layer);
        self.created = created.to_string();
        self.keys.push(CacheKey {
            key: key.clone(),
            layer: self.layers.len() - 1,
            created: created.to_string(),
        });
        self.history(json!({
            "created": created,
            "created_by": created_by,
            "comment": "buildkit.dockerfile.v0",
        }));
    }

    fn history(&mut self, e: Value) {
        self.config["history"]
            .as_array_mut()
            .expect("history is a list")
            .push(e);
    }

    /// A step that only changed the config.
    fn meta(&mut self, created_by: &str) {
        let e = json!({
            "created": self.created,
            "created_by": created_by,
            "comment": "buildkit.dockerfile.v0",
            "empty_layer": true,
        });
        self.history(e);
    }

    /// Applies a config-only instruction.
    pub fn apply(
        &mut self,
        ins: &Instruction,
        globals: &[(String, String)],
        escape: char,
        build_args: &HashMap<String, String>,
    ) -> Result<(), String> {
        let x = |s: &Self, w: &str| s.expand(w, escape);
        match &ins.kind {
            Kind::Arg(decls) => {
                for a in decls {
                    let v = match (build_args.get(&a.name), &a.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(x(self, d)?),
                        // Declared again without a value: the global
                        // ARG's (or the automatic platform ARG's) value.
                        (None, None) => crate::build::lookup_in(globals, &a.name),
                    };
                    self.args.retain(|(k, _)| k != &a.name);
                    if let Some(v) = v {
                        self.args.push((a.name.clone(), v));
                    }
                }
                // BuildKit keeps ARG out of the history.
                return Ok(());
            }
            Kind::Env(pairs) => {
                for (k, v) in pairs {
                    let k = x(self, k)?;
                    let v = x(self, v)?;
                    if k.is_empty() || k.contains('=') {
                        return Err(format!("{k:?} is not a variable name"));
                    }
                    let cfg = self.config["config"].as_object_mut().expect("an object");
                    let env = cfg.entry("Env").or_insert_with(|| json!([]));
                    if !env.is_array() {
                        *env = json!([]);
                    }
                    let env = env.as_array_mut().expect("a list");
                    let prefix = format!("{k}=");
                    let entry = json!(format!("{k}={v}"));
                    match env
                        .iter()
                        .position(|e| e.as_str().is_some_and(|e| e.starts_with(&prefix)))
                    {
                        Some(i) => env[i] = entry,
                        None => env.push(entry),
                    }
                }
            }
            Kind::Label(pairs) => {
                let mut out = Vec::new();
                for (k, v) in pairs {
                    out.push((x(self, k)?, x(self, v)?));
                }
                let labels = object_at(&mut self.config, "Labels");
                for (k, v) in out {
                    labels.insert(k, json!(v));
                }
            }
            Kind::Workdir(w) => {
                let w = x(self, w)?;
                let dir = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", self.workdir().trim_end_matches('/'))
                };
                let dir = format!("/{}", crate::context::clean_path(&dir));
                self.config["config"]["WorkingDir"] = json!(dir);
                if !self.pending_dirs.contains(&dir) {
                    self.pending_dirs.push(dir);
                }
            }
            Kind::User(u) => {
                let u = x(self, u)?;
                if u.is_empty() {
                    return Err("USER needs a user".into());
                }
                self.config["config"]["User"] = json!(u);
            }
            Kind::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    let p = x(self, p)?;
                    let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let ok_port = match port.split_once('-') {
                        Some((a, b)) => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
                        None => port.parse::<u16>().is_ok(),
                    };
                    if !ok_port || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(format!("{p:?} is not PORT[/tcp|udp|sctp]"));
                    }
                    out.push(format!("{port}/{proto}"));
                }
                let exposed = object_at(&mut self.config, "ExposedPorts");
                for p in out {
                    exposed.insert(p, json!({}));
                }
            }
            Kind::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    let v = x(self, v)?;
                    if v.is_empty() {
                        return Err("VOLUME needs a path".into());
                    }
                    out.push(v);
                }
                let volumes = object_at(&mut self.config, "Volumes");
                for v in out {
                    volumes.insert(v, json!({}));
                }
            }
            Kind::Entrypoint(c) => {
                let argv = self.argv(c);
                self.config["config"]["Entrypoint"] = json!(argv);
                if !self.cmd_set {
                    // The base's CMD was meant for the base's entrypoint.
                    self.config["config"]["Cmd"] = Value::Null;
                }
            }
            Kind::Cmd(c) => {
                let argv = self.argv(c);
                self.config["config"]["Cmd"] = json!(argv);
                self.cmd_set = true;
            }
            Kind::Healthcheck(h) => {
                let v = match h {
                    Health::None => json!({"Test": ["NONE"]}),
                    Health::Check {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match test {
                            Command::Exec(v) => std::iter::once("CMD".to_string())
                                .chain(v.clone())
                                .collect(),
                            Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                        };
                        let mut v = json!({"Test": test});
                        for (key, d) in [
                            ("Interval", interval),
                            ("Timeout", timeout),
                            ("StartPeriod", start_period),
                            ("StartInterval", start_interval),
                        ] {
                            if let Some(d) = d {
                                v[key] = json!(nanos(d)?);
                            }
                        }
                        if let Some(r) = retries {
                            v["Retries"] = json!(r);
                        }
                        v
                    }
                };
                self.config["config"]["Healthcheck"] = v;
            }
            Kind::StopSignal(s) => {
                let s = x(self, s)?;
                berth_engine::signals::parse(&s).map_err(|e| e.to_string())?;
                self.config["config"]["StopSignal"] = json!(s);
            }
            Kind::Shell(sh) => {
                if sh.is_empty() {
                    return Err("SHELL needs a JSON array with the shell's path".into());
                }
                self.shell = sh.clone();
                self.config["config"]["Shell"] = json!(sh);
            }
            Kind::Onbuild(t) => {
                let cfg = self.config["config"].as_object_mut().expect("an object");
                let list = cfg.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut().expect("a list").push(json!(t));
            }
            Kind::Maintainer(m) => {
                self.config["author"] = json!(m);
            }
            Kind::Run(_) | Kind::Copy(_) => unreachable!("layer steps are not config edits"),
        }
        let created_by = ins.original.clone();
        self.meta(&created_by);
        Ok(())
    }

    /// A command's argv: the exec form as is, the shell form under SHELL.
    pub fn argv(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => self
                .shell
                .iter()
                .cloned()
                .chain(std::iter::once(s.clone()))
                .collect(),
        }
    }
}

/// A Dockerfile duration (`30s`, `1m30s`) in nanoseconds, as image
/// configs keep them.
fn nanos(d: &str) -> Result<u64, String> {
    let t = humantime::parse_duration(d).map_err(|e| format!("duration {d:?}: {e}"))?;
    Ok(t.as_nanos() as u64)
}
