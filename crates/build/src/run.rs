//! RUN: the command in a working container on the stage's layers, its
//! mounts (`--mount=type=bind|cache|tmpfs|secret`) and network as asked,
//! what it changed committed as one layer.

use std::time::Instant;

use berth_engine::model::{NetworkMode, VolumeMount};
use serde_json::{Value, json};

use crate::build::{Builder, step_error};
use crate::dockerfile::{Command, Instruction, MountType, Run, RunMount};
use crate::error::{Error, Result};
use crate::stage::StageState;
use crate::working::Workspace;

/// What a RUN's mounts give its container.
#[derive(Default)]
struct Mounts<'e> {
    volumes: Vec<VolumeMount>,
    tmpfs: Vec<String>,
    /// Secrets given as variables (never in the cache key).
    env: Vec<String>,
    /// What the cache key takes of them.
    key: Vec<Value>,
    /// Containers whose roots are bound (`from=`), kept until the step
    /// ends.
    holders: Vec<Box<dyn Workspace + 'e>>,
}

impl<'a> Builder<'a> {
    pub(crate) fn run_step(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        run: &Run,
        n: usize,
    ) -> Result<bool> {
        let fail = |why: String| step_error(ins.pos, &ins.original, why);
        let (argv, stdin) = run_argv(st, run).map_err(fail)?;
        let network = run
            .network
            .as_deref()
            .or(self.opts.network.as_deref())
            .unwrap_or("default")
            .to_string();
        let mode = network_mode(&network).map_err(fail)?;
        if let Some(s) = &run.security
            && s != "sandbox"
        {
            return Err(fail(format!(
                "--security={s}: RUN steps run with the default confinement only"
            )));
        }
        self.rootfs_refuses(run, &network).map_err(fail)?;
        let mounts = self.run_mounts(st, ins, &run.mounts)?;
        let env = st.run_env(&self.args);
        let parent = st.top().cloned();
        let key = crate::cache::key(&json!({
            "op": "run",
            "parent": parent,
            "argv": argv,
            "stdin": stdin.as_ref().map(|s| berth_image::digest::Digest::of(s.as_bytes())),
            "env": st.env(),
            "args": env,
            "user": st.user(),
            "workdir": st.workdir(),
            "network": network,
            "mounts": mounts.key,
            "dirs": st.pending_dirs,
        }));
        let created_by = format!("RUN {} # buildkit", argv.join(" "));
        if let Some(e) = self.cached(&key)? {
            self.progress.cached(n);
            st.pending_dirs.clear();
            st.push_layer(e.layer, &e.created, &created_by, &key);
            return Ok(true);
        }
        let mut cfg = st.container_config(mode);
        cfg.cmd = Some(argv);
        let user = st.user();
        cfg.user = (!user.is_empty()).then_some(user);
        cfg.env = env.into_iter().chain(mounts.env.iter().cloned()).collect();
        cfg.volumes = mounts.volumes.clone();
        cfg.tmpfs = mounts.tmpfs.clone();
        cfg.stdin = stdin.is_some();
        let w = self
            .workspace(&st.layers, &st.config, cfg)
            .map_err(|e| fail(e.to_string()))?;
        self.make_dirs(w.as_ref(), st)?;
        let started = Instant::now();
        let ran = w.run(
            stdin.as_ref().map(|s| s.as_bytes()),
            self.progress,
            n,
            self.cancel,
        )?;
        if ran.code != 0 {
            return Err(Error::RunFailed {
                pos: ins.pos,
                instruction: ins.original.clone(),
                code: ran.code,
                tail: ran.tail,
            });
        }
        tracing::debug!("RUN took {:?}", started.elapsed());
        let layer = w.layer(parent.as_ref(), &self.lease)?;
        drop(w);
        drop(mounts);
        let created = crate::stage::now();
        self.remember(&key, &layer, &created)?;
        st.push_layer(layer, &created, &created_by, &key);
        Ok(false)
    }

    fn run_mounts(
        &self,
        st: &StageState,
        ins: &Instruction,
        list: &[RunMount],
    ) -> Result<Mounts<'a>> {
        let esc = self.df.escape;
        let fail = |why: String| step_error(ins.pos, &ins.original, why);
        let x = |w: &Option<String>| -> Result<Option<String>> {
            w.as_ref()
                .map(|w| st.expand(w, esc).map_err(&fail))
                .transpose()
        };
        let mut out = Mounts::default();
        for m in list {
            let target = x(&m.target)?;
            let source = x(&m.source)?;
            let from = x(&m.from)?;
            let id = x(&m.id)?;
            let abs = |t: &str| {
                if t.starts_with('/') {
                    t.to_string()
                } else {
                    format!("{}/{t}", st.workdir().trim_end_matches('/'))
                }
            };
            match m.kind {
                MountType::Bind => {
                    let target =
                        abs(&target.ok_or_else(|| fail("a bind mount needs a target".into()))?);
                    let source = source.unwrap_or_default();
                    let writable = m.readonly == Some(false);
                    let (host, key) = match &from {
                        None => {
                            if writable {
                                return Err(fail(
                                    "--mount=type=bind,rw of the build context: writes would land in your files; copy them instead".into(),
                                ));
                            }
                            self.context_bind(&source)
                                .map_err(|e| fail(e.to_string()))?
                        }
                        Some(f) => {
                            let (w, top) = self.root_of(st, f, ins)?;
                            let tree =
                                crate::context::Tree::image_root(&w.root(), format!("--from={f}"))?;
                            let host = tree.real_path(&source).map_err(|e| fail(e.to_string()))?;
                            out.holders.push(w);
                            (host, json!({"from": top, "source": source}))
                        }
                    };
                    out.key
                        .push(json!({"type": "bind", "target": target, "src": key}));
                    out.volumes.push(VolumeMount {
                        kind: "bind".into(),
                        source: host.display().to_string(),
                        destination: target,
                        options: vec![if writable { "rw" } else { "ro" }.into()],
                        ..Default::default()
                    });
                }
                MountType::Cache => {
                    let target =
                        abs(&target.ok_or_else(|| fail("a cache mount needs a target".into()))?);
                    let id = id.unwrap_or_else(|| target.clone());
                    let dir = self.cache_dir(&id, m).map_err(|e| fail(e.to_string()))?;
                    out.key
                        .push(json!({"type": "cache", "target": target, "id": id}));
                    out.volumes.push(VolumeMount {
                        kind: "bind".into(),
                        source: dir.display().to_string(),
                        destination: target,
                        options: vec![if m.readonly == Some(true) { "ro" } else { "rw" }.into()],
                        ..Default::default()
                    });
                }
                MountType::Tmpfs => {
                    let target =
                        abs(&target.ok_or_else(|| fail("a tmpfs mount needs a target".into()))?);
                    out.key.push(json!({"type": "tmpfs", "target": target}));
                    out.tmpfs.push(match m.size {
                        Some(s) => format!("{target}:size={s}"),
                        None => target,
                    });
                }
                MountType::Secret => {
                    let id = id
                        .or_else(|| {
                            target
                                .as_ref()
                                .and_then(|t| t.rsplit('/').next().map(String::from))
                        })
                        .ok_or_else(|| fail("a secret mount needs an id or a target".into()))?;
                    let Some((_, src)) = self.opts.secrets.iter().find(|(i, _)| *i == id) else {
                        if m.required {
                            return Err(fail(format!(
                                "secret {id} is required: give it with --secret id={id},src=PATH"
                            )));
                        }
                        continue;
                    };
                    out.key
                        .push(json!({"type": "secret", "id": id, "target": target, "env": m.env}));
                    if let Some(var) = &m.env {
                        let v = std::fs::read_to_string(src).map_err(|e| {
                            fail(format!("secret {id}: read {}: {e}", src.display()))
                        })?;
                        out.env.push(format!("{var}={}", v.trim_end_matches('\n')));
                        if target.is_none() {
                            continue;
                        }
                    }
                    let target = abs(&target.unwrap_or_else(|| format!("/run/secrets/{id}")));
                    out.volumes.push(VolumeMount {
                        kind: "bind".into(),
                        source: src.display().to_string(),
                        destination: target,
                        options: vec!["ro".into()],
                        ..Default::default()
                    });
                }
                MountType::Ssh => {
                    return Err(fail(
                        "--mount=type=ssh: berth build does not forward an SSH agent".into(),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A bind mount's source in the context: its host path (inside the
    /// context, symlinks included) and its contents' digests for the key.
    fn context_bind(&self, source: &str) -> Result<(std::path::PathBuf, Value)> {
        let Some(tree) = &self.context else {
            return Err(Error::invalid(
                "--mount=type=bind",
                "there is no build context to bind from",
            ));
        };
        let sources = tree.select(if source.is_empty() { "." } else { source })?;
        let items = tree.items(&sources, None)?;
        let key: Vec<Value> = items
            .iter()
            .map(|i| json!([i.dest, i.mode, i.digest, format!("{:?}", i.kind)]))
            .collect();
        Ok((tree.real_path(source)?, json!(key)))
    }

    /// The directory a cache mount keeps between builds.
    fn cache_dir(&self, id: &str, m: &RunMount) -> Result<std::path::PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let name = berth_image::digest::Digest::of(id.as_bytes());
        let dir = self
            .engine
            .images
            .root
            .join("build-cache/mounts")
            .join(&name.hex()[..32]);
        if !dir.exists() {
            std::fs::create_dir_all(&dir)
                .map_err(Error::io(format!("create {}", dir.display())))?;
            std::fs::set_permissions(
                &dir,
                std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
            )
            .map_err(Error::io(format!("chmod {}", dir.display())))?;
            std::os::unix::fs::chown(&dir, m.uid.or(Some(0)), m.gid.or(Some(0)))
                .map_err(Error::io(format!("chown {}", dir.display())))?;
        }
        Ok(dir)
    }

    /// A working container of what `--from` names (a stage, an image), for
    /// its root; and the chain ID that identifies its content.
    pub(crate) fn root_of(
        &self,
        st: &StageState,
        from: &str,
        ins: &Instruction,
    ) -> Result<(Box<dyn Workspace + 'a>, Value)> {
        let fail = |why: String| step_error(ins.pos, &ins.original, why);
        let (layers, config) = match crate::plan::resolve_any(&self.df, from) {
            crate::plan::Ref::Stage(i) => {
                let built = self.built.lock().expect("no builder panicked");
                let out = built.get(&i).ok_or_else(|| {
                    fail(format!(
                        "--from={from}: stage not built (is it after this one?)"
                    ))
                })?;
                (out.layers.clone(), out.config.clone())
            }
            crate::plan::Ref::Scratch => {
                return Err(fail("--from=scratch: there is nothing to read".into()));
            }
            crate::plan::Ref::Image(name) => {
                let img = self
                    .image(&name, self.step.load(std::sync::atomic::Ordering::Relaxed))
                    .map_err(|e| fail(e.to_string()))?;
                let cfg = berth_image::commit::base_config(&self.engine.images, &img)?;
                (img.layers.clone(), cfg)
            }
        };
        if layers.is_empty() {
            return Err(fail(format!("--from={from}: it has no files")));
        }
        let top = json!(layers.last().map(|l| l.chain_id.clone()));
        let w = self.tree_workspace(&layers, &config, st.container_config(NetworkMode::None))?;
        Ok((w, top))
    }
}

/// The argv of a RUN, and its input: a heredoc alone is the script (under
/// its `#!` interpreter when it has one, else the shell); heredocs after
/// a command go to the shell with the command, which reads them as the
/// shell always has.
fn run_argv(st: &StageState, run: &Run) -> Result<(Vec<String>, Option<String>), String> {
    match &run.command {
        Command::Exec(v) if run.heredocs.is_empty() => Ok((v.clone(), None)),
        Command::Exec(_) => Err("heredocs go with the shell form of RUN".into()),
        Command::Shell(s) if run.heredocs.is_empty() => {
            Ok((st.argv(&Command::Shell(s.clone())), None))
        }
        Command::Shell(s) => {
            let only_doc = run.heredocs.len() == 1 && is_only_heredoc(s);
            if only_doc {
                let body = run.heredocs[0].content.clone();
                if let Some(line) = body.strip_prefix("#!") {
                    let first = line.lines().next().unwrap_or("");
                    let argv: Vec<String> = first.split_whitespace().map(String::from).collect();
                    if argv.is_empty() {
                        return Err("the heredoc's #! line names no interpreter".into());
                    }
                    return Ok((argv, Some(body)));
                }
                return Ok((st.argv(&Command::Shell(body)), None));
            }
            let mut script = s.clone();
            script.push('\n');
            for h in &run.heredocs {
                script.push_str(&h.content);
                script.push_str(&h.name);
                script.push('\n');
            }
            Ok((st.argv(&Command::Shell(script)), None))
        }
    }
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`: nothing but the heredoc's marker.
fn is_only_heredoc(s: &str) -> bool {
    let t = s.trim();
    t.starts_with("<<") && !t[2..].contains(char::is_whitespace)
}

fn network_mode(n: &str) -> Result<NetworkMode, String> {
    Ok(match n {
        "default" | "bridge" | "" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other if other.starts_with("container:") => {
            return Err(format!(
                "--network={other}: a build step joins no container"
            ));
        }
        other => NetworkMode::Bridge(vec![other.to_string()]),
    })
}
