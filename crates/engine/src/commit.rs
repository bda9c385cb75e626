//! `berth diff` and `berth commit`, with docker's meaning: what a container
//! changed in its root filesystem (its snapshot's upper dir over the
//! image's layers), and a new image of the container's image plus those
//! changes as one more layer, its config edited by Dockerfile-style
//! instructions (`-c 'CMD ["x"]'`).
//!
//! Mount points the runtime made in the container's root (/etc/hosts and
//! the other files berth binds in, the spec's mount destinations) are left
//! out of both: docker keeps them in a layer of their own under the
//! container's, podman leaves them out of `diff`.

use berth_image::changes::Change;
use berth_image::export::{Compression, ExportOptions};
use berth_image::snapshots::{self, Mounts};
use berth_image::store::ImageRecord;
use serde_json::{Map, Value, json};

use crate::engine::{Engine, now};
use crate::error::{Error, Result};
use crate::model::{Container, Status};

/// What `commit` makes.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `-a`: the image's author.
    pub author: Option<String>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-c`: Dockerfile instructions applied to the config (CMD,
    /// ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL).
    pub changes: Vec<String>,
    /// Pause a running container while its changes are read (docker's
    /// default).
    pub pause: bool,
    /// Names for the image, as stored (`localhost/name:tag`).
    pub names: Vec<String>,
    pub compression: Compression,
}

/// Files berth binds into every container: their mount points are made in
/// the container's root, and are not its changes.
const BOUND_FILES: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

impl Engine {
    /// The container's snapshot: its upper dir and its lower layers (top
    /// first), or why there is no upper dir to read.
    fn upper_of(&self, c: &Container) -> Result<(std::path::PathBuf, Vec<std::path::PathBuf>)> {
        let key = snapshots::container_key(&c.id);
        match self.images.snapshots().mounts(&key)? {
            Mounts::Overlay {
                lowers,
                upper: Some((upper, _)),
                ..
            } => Ok((
                upper,
                lowers.iter().map(|l| self.images.layer_diff(l)).collect(),
            )),
            _ => Err(Error::invalid(
                format!("container {}", c.name),
                "it uses the copy snapshotter: diff and commit read an overlay upper dir",
            )),
        }
    }

    /// Where the runtime mounts things in the container's root.
    fn mount_points(&self, c: &Container) -> Vec<String> {
        let mut out: Vec<String> = BOUND_FILES.iter().map(|s| s.to_string()).collect();
        let spec = std::fs::read(self.bundle_dir(&c.id).join("config.json"))
            .ok()
            .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok());
        if let Some(mounts) = spec.as_ref().and_then(|s| s["mounts"].as_array()) {
            for m in mounts {
                if let Some(d) = m["destination"].as_str()
                    && !d.trim_matches('/').is_empty()
                {
                    out.push(d.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// What the container changed, sorted by path.
    pub fn diff(&self, key: &str) -> Result<Vec<Change>> {
        let c = self.container(key)?;
        let (upper, lowers) = self.upper_of(&c)?;
        Ok(berth_image::changes::changes(
            &upper,
            &lowers,
            &self.mount_points(&c),
        )?)
    }

    /// Makes an image of the container's image and its changes.
    pub fn commit(&self, key: &str, opts: &CommitOptions) -> Result<ImageRecord> {
        let c = self.db.find_container(key)?;
        // Held throughout: the container is not removed, nor its upper
        // dir, while it is read.
        let _lock = self.lock(&c.id)?;
        let c = self.refresh(self.db.find_container(&c.id)?)?;
        if !c.config.extra.uid_map.is_empty() {
            // Its upper dir holds what it wrote with host ids (the lowers
            // are id-mapped, the upper is not): a layer needs them mapped
            // back, which the tar writer does not do yet.
            return Err(Error::invalid(
                format!("container {}", c.name),
                "it runs in a user namespace: commit of its changes is not supported yet",
            ));
        }
        let base_id = c.image_id.parse()?;
        let base = self.images.image(&base_id)?.ok_or_else(|| {
            Error::NotFound(format!("image {} of container {}", c.image_id, c.name))
        })?;
        let mut config = berth_image::commit::base_config(&self.images, &base)?;
        container_command(&mut config, &c);
        for change in &opts.changes {
            apply_change(&mut config, change)?;
        }
        let (upper, _) = self.upper_of(&c)?;
        let paused = opts.pause && c.state.status == Status::Running;
        let handler = self.handler(&c)?;
        if paused {
            handler.pause(&c.id)?;
        }
        let res = self.commit_paused(&c, &base, config, &upper, opts);
        if paused {
            let resumed = handler.resume(&c.id);
            let rec = res?;
            resumed?;
            return Ok(rec);
        }
        res
    }

    /// The container's changes as a new layer on `parent` (the top chain
    /// ID of the layers it was made from): a builder's step. The layer
    /// and its blob are put in `lease` before the store's shared lock goes,
    /// so no collection takes them before the builder records them.
    pub fn changes_layer(
        &self,
        key: &str,
        parent: Option<&berth_image::digest::Digest>,
        lease: &str,
        compression: Compression,
    ) -> Result<berth_image::store::LayerInfo> {
        use berth_image::leases::Resource;
        let c = self.db.find_container(key)?;
        let _lock = self.lock(&c.id)?;
        let (upper, _) = self.upper_of(&c)?;
        let _store = self.images.lock_shared()?;
        let layer = berth_image::export::export_layer(
            &self.images,
            &upper,
            parent,
            &ExportOptions {
                compression,
                exclude: self.mount_points(&c),
            },
        )?;
        self.images
            .lease_add(lease, &Resource::Layer(layer.chain_id.clone()))?;
        self.images
            .lease_add(lease, &Resource::Blob(layer.digest.clone()))?;
        Ok(layer)
    }

    fn commit_paused(
        &self,
        c: &Container,
        base: &ImageRecord,
        mut config: Value,
        upper: &std::path::Path,
        opts: &CommitOptions,
    ) -> Result<ImageRecord> {
        let _store = self.images.lock_shared()?;
        let layer = berth_image::export::export_layer(
            &self.images,
            upper,
            base.top_layer(),
            &ExportOptions {
                compression: opts.compression,
                exclude: self.mount_points(c),
            },
        )?;
        let created = now();
        config["created"] = json!(created);
        if let Some(a) = &opts.author {
            config["author"] = json!(a);
        }
        let mut entry = json!({
            "created": created,
            "created_by": c.command.join(" "),
        });
        if let Some(a) = &opts.author {
            entry["author"] = json!(a);
        }
        if let Some(m) = &opts.message {
            entry["comment"] = json!(m);
        }
        match config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => config["history"] = json!([entry]),
        }
        Ok(berth_image::commit::image_with_layer(
            &self.images,
            base,
            layer,
            config,
            &opts.names,
        )?)
    }
}

/// The container's own command, where its run gave one, becomes the
/// image's (docker's and podman's rule): a new entrypoint without a
/// command drops the image's Cmd, as it did for the run.
fn container_command(config: &mut Value, c: &Container) {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let cfg = &mut config["config"];
    if let Some(e) = &c.config.entrypoint {
        cfg["Entrypoint"] = if e.is_empty() { Value::Null } else { json!(e) };
        if c.config.cmd.is_none() {
            cfg["Cmd"] = Value::Null;
        }
    }
    if let Some(cmd) = &c.config.cmd {
        cfg["Cmd"] = json!(cmd);
    }
}

fn bad(change: &str, why: impl Into<String>) -> Error {
    Error::invalid(format!("change `{change}`"), why)
}

/// Applies one Dockerfile instruction to an image config (`config` is
/// the whole config; the instruction edits its `config` object).
pub fn apply_change(config: &mut Value, change: &str) -> Result<()> {
    let trimmed = change.trim();
    let (word, rest) = trimmed
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((trimmed, ""));
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let cfg = config["config"].as_object_mut().expect("an object");
    let need = |what: &str| {
        if rest.is_empty() {
            Err(bad(change, format!("{what} needs an argument")))
        } else {
            Ok(())
        }
    };
    match word.to_ascii_uppercase().as_str() {
        "CMD" | "ENTRYPOINT" => {
            need(word)?;
            let key = if word.eq_ignore_ascii_case("CMD") {
                "Cmd"
            } else {
                "Entrypoint"
            };
            cfg.insert(key.into(), json!(command_form(rest)));
        }
        "ENV" => {
            need("ENV")?;
            let pairs = if rest.contains('=') {
                key_values(change, rest)?
            } else {
                // The old form: `ENV NAME the rest is the value`.
                let (k, v) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| bad(change, "ENV needs NAME=VALUE"))?;
                vec![(k.to_string(), v.trim().to_string())]
            };
            let env = cfg
                .entry("Env")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .ok_or_else(|| bad(change, "the image's Env is not a list"))?;
            for (k, v) in pairs {
                let prefix = format!("{k}=");
                env.retain(|e| !e.as_str().is_some_and(|e| e.starts_with(&prefix)));
                env.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            need("LABEL")?;
            let labels = object_at(cfg, "Labels", change)?;
            for (k, v) in key_values(change, rest)? {
                labels.insert(k, json!(v));
            }
        }
        "WORKDIR" => {
            need("WORKDIR")?;
            let dir = unquote(rest);
            let dir = if dir.starts_with('/') {
                dir
            } else {
                // Relative to the one before, as in a Dockerfile.
                let base = cfg["WorkingDir"].as_str().unwrap_or("/").to_string();
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            cfg.insert("WorkingDir".into(), json!(dir));
        }
        "USER" => {
            need("USER")?;
            cfg.insert("User".into(), json!(unquote(rest)));
        }
        "EXPOSE" => {
            need("EXPOSE")?;
            let ports = object_at(cfg, "ExposedPorts", change)?;
            for p in rest.split_whitespace() {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                if port.parse::<u16>().is_err() || !matches!(proto.as_str(), "tcp" | "udp" | "sctp")
                {
                    return Err(bad(change, format!("{p:?} is not PORT[/tcp|udp|sctp]")));
                }
                ports.insert(format!("{port}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            need("VOLUME")?;
            let list: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) => v,
                Err(_) => rest.split_whitespace().map(String::from).collect(),
            };
            let vols = object_at(cfg, "Volumes", change)?;
            for v in list {
                vols.insert(v, json!({}));
            }
        }
        "STOPSIGNAL" => {
            need("STOPSIGNAL")?;
            crate::signals::parse(rest)?;
            cfg.insert("StopSignal".into(), json!(rest));
        }
        _ => {
            return Err(bad(
                change,
                "supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR",
            ));
        }
    }
    Ok(())
}

fn object_at<'a>(
    cfg: &'a mut Map<String, Value>,
    key: &str,
    change: &str,
) -> Result<&'a mut Map<String, Value>> {
    let v = cfg.entry(key).or_insert_with(|| json!({}));
    if v.is_null() {
        *v = json!({});
    }
    v.as_object_mut()
        .ok_or_else(|| bad(change, format!("the image's {key} is not an object")))
}

/// A JSON array is the exec form; anything else runs under /bin/sh -c.
fn command_form(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.into()],
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// `k=v k2="v 2" k3='v3'`: words split on unquoted blanks, quotes removed,
/// a backslash keeping the next character.
fn key_values(change: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = rest.chars();
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (_, '\\') if quote != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                any = true;
            }
            (None, '"' | '\'') => {
                quote = Some(ch);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quote.is_some() {
        return Err(bad(change, "unterminated quote"));
    }
    if any {
        words.push(cur);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(change, format!("{w:?} is not KEY=VALUE"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_edit_the_config_as_a_dockerfile_would() {
        let mut c = json!({"config": {"Env": ["PATH=/bin", "A=old"], "WorkingDir": "/srv"}});
        for ch in [
            r#"CMD ["echo", "hi"]"#,
            "ENTRYPOINT /bin/run --flag",
            r#"ENV A=new B="two words""#,
            "ENV C the rest is the value",
            "WORKDIR app",
            "USER 1000:1000",
            r#"LABEL org.example.x=1 "y"="a b""#,
            "EXPOSE 80 53/udp",
            r#"VOLUME ["/data"]"#,
            "STOPSIGNAL SIGINT",
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        let cfg = &c["config"];
        assert_eq!(cfg["Cmd"], json!(["echo", "hi"]));
        assert_eq!(
            cfg["Entrypoint"],
            json!(["/bin/sh", "-c", "/bin/run --flag"])
        );
        assert_eq!(
            cfg["Env"],
            json!([
                "PATH=/bin",
                "A=new",
                "B=two words",
                "C=the rest is the value"
            ])
        );
        assert_eq!(cfg["WorkingDir"], "/srv/app");
        assert_eq!(cfg["User"], "1000:1000");
        assert_eq!(cfg["Labels"], json!({"org.example.x": "1", "y": "a b"}));
        assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["Volumes"], json!({"/data": {}}));
        assert_eq!(cfg["StopSignal"], "SIGINT");
        for bad in [
            "RUN echo",
            "EXPOSE http",
            "LABEL novalue",
            "CMD",
            "ENV A=\"x",
        ] {
            let err = apply_change(&mut c, bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
