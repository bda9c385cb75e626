//! A build: the Dockerfile parsed, the stages the target needs planned and
//! built in order, each instruction a step on the stage's state (its layers
//! and image config), the target's result recorded as an image.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use berth_engine::{Engine, PullPolicy};
use berth_image::pull::PullOptions;
use berth_image::store::{ImageRecord, LayerInfo};
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::context::Tree;
use crate::dockerfile::{self, Dockerfile, Instruction, Kind, Pos};
use crate::error::{Error, Result};
use crate::plan::{self, Ref};
use crate::progress::Progress;
use crate::stage::StageState;
use crate::working::Workspace;

/// What `berth build` asks for.
pub struct BuildOptions {
    /// The Dockerfile's text, and its name for messages.
    pub dockerfile: String,
    pub dockerfile_name: String,
    /// The context directory; None when there is none (`build -`).
    pub context: Option<PathBuf>,
    /// The context's `.dockerignore`, as read.
    pub ignore: Option<String>,
    /// Names for the image (`-t`), as given.
    pub tags: Vec<String>,
    /// `--build-arg NAME[=VALUE]`: without a value, taken from the
    /// environment (left unset when it has none).
    pub build_args: Vec<(String, Option<String>)>,
    pub target: Option<String>,
    /// `--label`: on the final image.
    pub labels: Vec<(String, String)>,
    pub no_cache: bool,
    /// `--pull`: how base images are fetched.
    pub pull: PullPolicy,
    pub pull_options: PullOptions,
    /// `--network` for every RUN: default, none, host, or a network.
    pub network: Option<String>,
    /// `--secret id=ID,src=PATH`.
    pub secrets: Vec<(String, PathBuf)>,
    /// `--platform`: only this host's.
    pub platform: Option<String>,
    /// `--isolation`: where steps run (rootfs/: in this process's root).
    pub isolation: crate::rootfs::Isolation,
    /// `--cache-from REF`: registries' build caches to import first.
    pub cache_from: Vec<String>,
    /// `--cache-to REF`: where this build's cache goes.
    pub cache_to: Option<String>,
    /// `--format docker`: a docker schema 2 manifest and config (buildah's
    /// and podman's flag); OCI otherwise.
    pub docker_format: bool,
}

/// What a built stage left: its layers and image config.
#[derive(Clone)]
pub struct StageOut {
    pub layers: Vec<LayerInfo>,
    pub config: Value,
    /// The cache keys of the layers this stage made.
    pub keys: Vec<crate::stage::CacheKey>,
}

pub struct Builder<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) opts: &'a BuildOptions,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) cancel: &'a AtomicBool,
    pub(crate) df: Dockerfile,
    pub(crate) cache: Cache,
    /// This build's lease: the config blobs and layers it made, until
    /// the image or the cache holds them.
    pub(crate) lease: String,
    pub(crate) context: Option<Tree>,
    /// Build args with their values (from the command line or the
    /// environment).
    pub(crate) args: HashMap<String, String>,
    /// The global ARGs' values.
    pub(crate) globals: Vec<(String, String)>,
    /// Stages built so far (stages build in parallel where they can).
    pub(crate) built: Mutex<HashMap<usize, StageOut>>,
    /// The last step number given out.
    pub(crate) step: AtomicUsize,
    /// A stage failed: the others stop at their next step.
    pub(crate) failed: AtomicBool,
    /// In rootfs isolation: the root every step runs in.
    pub(crate) rootfs: Option<std::sync::Arc<crate::rootfs::RootLock>>,
}

/// Builds what `opts` asks; the image, named as `-t` says.
pub fn build(
    engine: &Engine,
    opts: &BuildOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<ImageRecord> {
    if let Some(p) = &opts.platform
        && !crate::platform::is_host(p)
    {
        return Err(Error::invalid(
            format!("--platform {p}"),
            format!(
                "berth builds for this host's platform only ({})",
                crate::platform::host_string()
            ),
        ));
    }
    let df = dockerfile::parse(&opts.dockerfile).map_err(|e| Error::Dockerfile {
        file: opts.dockerfile_name.clone(),
        pos: e.pos,
        message: e.message,
    })?;
    let context = match &opts.context {
        Some(dir) => {
            let ignore = match &opts.ignore {
                Some(text) => Some(
                    dockerfile::ignore::Ignore::parse(text)
                        .map_err(|e| Error::invalid(".dockerignore", e.to_string()))?,
                ),
                None => None,
            };
            Some(Tree::context(dir, ignore)?)
        }
        None => None,
    };
    let args: HashMap<String, String> = opts
        .build_args
        .iter()
        .filter_map(|(k, v)| {
            v.clone()
                .or_else(|| std::env::var(k).ok())
                .map(|v| (k.clone(), v))
        })
        .collect();
    let rootfs = crate::rootfs::for_build(&engine.root, &engine.run_root, opts)?;
    let lease = engine
        .images
        .lease_create(
            [("berth.build".to_string(), "running".to_string())].into(),
            // A crashed build's lease lets go by itself.
            Some(std::time::Duration::from_secs(24 * 3600)),
        )?
        .id;
    let mut b = Builder {
        engine,
        opts,
        progress,
        cancel,
        df,
        cache: Cache::open(&engine.images)?,
        lease: lease.clone(),
        context,
        args,
        globals: Vec::new(),
        built: Mutex::new(HashMap::new()),
        step: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        rootfs,
    };
    let res = b.run();
    let _ = engine.images.lease_release(&lease);
    res
}

impl<'a> Builder<'a> {
    fn run(&mut self) -> Result<ImageRecord> {
        self.globals = self.global_args()?;
        let df = &self.df;
        let plan = plan::order(df, self.opts.target.as_deref(), &|_, word| {
            self.expand_global(word).map_err(|m| plan::PlanError {
                pos: Pos::default(),
                message: m,
            })
        })
        .map_err(|e| Error::Dockerfile {
            file: self.opts.dockerfile_name.clone(),
            pos: e.pos,
            message: e.message,
        })?;
        let target = *plan.order.last().expect("the target is in the plan");
        self.import_cache()?;
        self.build_stages(&plan)?;
        let stages: Vec<(usize, StageOut)> = {
            let built = self.built.lock().expect("no builder panicked");
            plan.order.iter().map(|i| (*i, built[i].clone())).collect()
        };
        let out = stages
            .iter()
            .find(|(i, _)| *i == target)
            .map(|(_, o)| o.clone())
            .expect("the target was built");
        let img = self.commit(out)?;
        self.export_cache(target, &stages)?;
        Ok(img)
    }

    /// Builds the planned stages, each once the stages it reads are
    /// built; those that are ready together build in parallel (each
    /// step's work is mostly waiting on processes and the disk).
    fn build_stages(&self, plan: &plan::Plan) -> Result<()> {
        let mut left: Vec<usize> = plan.order.clone();
        // Rootfs isolation has one root: stages in parallel would empty
        // it for each other at every step.
        let width = if self.rootfs.is_some() {
            1
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2)
        };
        while !left.is_empty() {
            let ready: Vec<usize> = {
                let built = self.built.lock().expect("no builder panicked");
                left.iter()
                    .copied()
                    .filter(|i| plan.deps[*i].iter().all(|d| built.contains_key(d)))
                    .take(width)
                    .collect()
            };
            left.retain(|i| !ready.contains(i));
            let results: Vec<Result<(usize, StageOut)>> = if ready.len() == 1 {
                vec![self.build_stage(ready[0]).map(|o| (ready[0], o))]
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<_> = ready
                        .iter()
                        .map(|&i| s.spawn(move || self.build_stage(i).map(|o| (i, o))))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a stage's thread does not panic"))
                        .collect()
                })
            };
            for r in results {
                let (i, out) = r.inspect_err(|_| self.failed.store(true, Ordering::Relaxed))?;
                self.built
                    .lock()
                    .expect("no builder panicked")
                    .insert(i, out);
            }
        }
        Ok(())
    }

    pub(crate) fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// ARGs before the first FROM, with the automatic platform ones.
    fn global_args(&self) -> Result<Vec<(String, String)>> {
        let mut vals: Vec<(String, String)> = crate::platform::automatic_args();
        for a in &self.df.global_args {
            let v = match (self.args.get(&a.name), &a.default) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => {
                    let lookup = |n: &str| lookup_in(&vals, n);
                    dockerfile::words::expand(d, &lookup, self.df.escape)
                        .map_err(|e| Error::invalid(format!("ARG {}", a.name), e.to_string()))?
                }
                (None, None) => continue,
            };
            vals.retain(|(k, _)| k != &a.name);
            vals.push((a.name.clone(), v));
        }
        Ok(vals)
    }

    /// A word of a FROM line, with the global ARGs.
    pub(crate) fn expand_global(&self, word: &str) -> std::result::Result<String, String> {
        let lookup = |n: &str| lookup_in(&self.globals, n);
        dockerfile::words::expand(word, &lookup, self.df.escape).map_err(|e| e.to_string())
    }

    fn build_stage(&self, i: usize) -> Result<StageOut> {
        let stage = self.df.stages[i].clone();
        let base = self
            .expand_global(&stage.base)
            .map_err(|why| step_error(stage.pos, &stage.original, why))?;
        if let Some(p) = &stage.platform {
            let p = self
                .expand_global(p)
                .map_err(|why| step_error(stage.pos, &stage.original, why))?;
            if !crate::platform::is_host(&p) {
                return Err(step_error(
                    stage.pos,
                    &stage.original,
                    format!(
                        "platform {p}: berth builds for this host's platform only ({})",
                        crate::platform::host_string()
                    ),
                ));
            }
        }
        let total = stage.instructions.len() + 1;
        let label = plan::stage_label(&self.df, i);
        // The base as it resolved, as BuildKit shows it.
        let from = match &stage.name {
            Some(name) => format!("FROM {base} AS {name}"),
            None => format!("FROM {base}"),
        };
        let n = self.next_step(&format!("[{label} 1/{total}] {from}"));
        let started = Instant::now();
        let from = match plan::resolve(&self.df, &base, i) {
            Ref::Scratch => StageOut {
                layers: Vec::new(),
                config: scratch_config(),
                keys: Vec::new(),
            },
            Ref::Stage(s) => self
                .built
                .lock()
                .expect("no builder panicked")
                .get(&s)
                .cloned()
                .expect("planned before"),
            Ref::Image(name) => {
                let img = self
                    .image(&name, n)
                    .map_err(|e| step_error(stage.pos, &stage.original, e.to_string()))?;
                StageOut {
                    layers: img.layers.clone(),
                    config: berth_image::commit::base_config(&self.engine.images, &img)?,
                    keys: Vec::new(),
                }
            }
        };
        self.progress.done(n, started.elapsed());
        let mut st = StageState::new(from, &label);
        let triggers = st.take_triggers();
        for t in &triggers {
            let ins = crate::onbuild::parse_trigger(t).map_err(|why| {
                step_error(stage.pos, &stage.original, format!("ONBUILD {t}: {why}"))
            })?;
            let title = format!("[{label} 1/{total}] ONBUILD {}", ins.original);
            self.instruction(&mut st, &ins, &title)?;
        }
        for (k, ins) in stage.instructions.iter().enumerate() {
            self.check_cancel()?;
            let title = format!("[{label} {}/{total}] {}", k + 2, ins.original);
            self.instruction(&mut st, ins, &title)?;
        }
        self.flush_dirs(&mut st)?;
        Ok(st.into_out())
    }

    pub(crate) fn next_step(&self, title: &str) -> usize {
        let n = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        self.progress.step(n, title);
        n
    }

    /// A base image or a `--from` image, pulled as --pull says.
    pub(crate) fn image(&self, name: &str, n: usize) -> Result<ImageRecord> {
        let progress = self.progress;
        Ok(self
            .engine
            .image_for(name, self.opts.pull, &self.opts.pull_options, &mut |what| {
                progress.note(n, &format!("pulling {what}"))
            })?)
    }

    fn instruction(&self, st: &mut StageState, ins: &Instruction, title: &str) -> Result<()> {
        let n = self.next_step(title);
        let started = Instant::now();
        let res = match &ins.kind {
            Kind::Run(r) => self.run_step(st, ins, r, n),
            Kind::Copy(c) => self.copy_step(st, ins, c, n),
            _ => st
                .apply(ins, &self.globals, self.df.escape, &self.args)
                .map(|()| false)
                .map_err(|why| step_error(ins.pos, &ins.original, why)),
        };
        // A cached step has said so; BuildKit gives it no time.
        if !res? {
            self.progress.done(n, started.elapsed());
        }
        Ok(())
    }

    /// Directories WORKDIR named that no step has made yet: one layer
    /// makes them at the end of a stage.
    fn flush_dirs(&self, st: &mut StageState) -> Result<()> {
        if st.pending_dirs.is_empty() {
            return Ok(());
        }
        let parent = st.top().cloned();
        let key = crate::cache::key(&json!({
            "op": "mkdir",
            "parent": parent,
            "dirs": st.pending_dirs,
        }));
        if let Some(e) = self.cached(&key)? {
            st.push_layer(e.layer, &e.created, "WORKDIR", &key);
            st.pending_dirs.clear();
            return Ok(());
        }
        let w = self.files_workspace(st)?;
        let layer = w.layer(parent.as_ref(), &self.lease)?;
        let created = crate::stage::now();
        self.remember(&key, &layer, &created)?;
        st.push_layer(layer, &created, "WORKDIR", &key);
        Ok(())
    }

    /// A workspace holding `layers`, for a step with `config` (an image
    /// config) and `container` (what the step adds: its command, user,
    /// mounts, network).
    /// A workspace of the stage where only files are written (no process
    /// runs), the pending WORKDIRs made in it.
    pub(crate) fn files_workspace(&self, st: &mut StageState) -> Result<Box<dyn Workspace + 'a>> {
        let w = self.workspace(
            &st.layers,
            &st.config,
            st.container_config(berth_engine::model::NetworkMode::None),
        )?;
        self.make_dirs(w.as_ref(), st)?;
        Ok(w)
    }

    pub(crate) fn workspace(
        &self,
        layers: &[LayerInfo],
        config: &Value,
        container: berth_engine::model::ContainerConfig,
    ) -> Result<Box<dyn Workspace + 'a>> {
        if let Some(root) = &self.rootfs {
            return Ok(Box::new(crate::rootfs::RootfsWorkspace::create(
                root.clone(),
                &self.engine.images,
                layers,
                config,
                container,
            )?));
        }
        Ok(Box::new(crate::working::Working::create(
            self.engine,
            &self.lease,
            layers,
            config,
            container,
        )?))
    }

    /// Makes the pending WORKDIRs in a workspace.
    pub(crate) fn make_dirs(&self, w: &dyn Workspace, st: &mut StageState) -> Result<()> {
        for d in std::mem::take(&mut st.pending_dirs) {
            w.mkdir(&d, (0, 0))?;
        }
        Ok(())
    }

    /// The cache's entry for `key`, unless --no-cache.
    pub(crate) fn cached(
        &self,
        key: &berth_image::digest::Digest,
    ) -> Result<Option<crate::cache::Entry>> {
        if self.opts.no_cache {
            return Ok(None);
        }
        self.cache.get(&self.engine.images, key)
    }

    pub(crate) fn remember(
        &self,
        key: &berth_image::digest::Digest,
        layer: &LayerInfo,
        created: &str,
    ) -> Result<()> {
        self.cache.put(
            &self.engine.images,
            key,
            &crate::cache::Entry {
                layer: layer.clone(),
                created: created.to_string(),
                used: berth_image::store::now(),
            },
        )
    }

    /// The target's result as an image, named as `-t` says.
    fn commit(&mut self, out: StageOut) -> Result<ImageRecord> {
        let mut config = out.config;
        if !self.opts.labels.is_empty() {
            let labels = crate::stage::object_at(&mut config, "Labels");
            for (k, v) in &self.opts.labels {
                labels.insert(k.clone(), json!(v));
            }
        }
        let created = config["history"]
            .as_array()
            .and_then(|h| h.last())
            .and_then(|e| e["created"].as_str())
            .map(String::from)
            .unwrap_or_else(crate::stage::now);
        config["created"] = json!(created);
        let names = self
            .opts
            .tags
            .iter()
            .map(|t| berth_image::archive::local_name(t))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if self.opts.docker_format
            && let Some(l) = out.layers.iter().find(|l| l.media_type.contains("zstd"))
        {
            return Err(Error::invalid(
                "--format docker",
                format!(
                    "layer {} is zstd-compressed, which a docker image cannot hold: build as OCI",
                    l.digest
                ),
            ));
        }
        let _l = self.engine.images.lock_shared()?;
        Ok(berth_image::commit::image_of_layers(
            &self.engine.images,
            out.layers,
            config,
            self.opts.docker_format,
            &names,
        )?)
    }
}

pub(crate) fn lookup_in(vals: &[(String, String)], name: &str) -> Option<String> {
    vals.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

pub(crate) fn step_error(pos: Pos, original: &str, why: impl Into<String>) -> Error {
    Error::Step {
        pos,
        instruction: original.to_string(),
        why: why.into(),
    }
}

/// The config of an image with nothing in it.
fn scratch_config() -> Value {
    let (os, arch) = crate::platform::host();
    json!({
        "architecture": arch,
        "os": os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}
