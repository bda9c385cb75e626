//! `berth build` and `berth builder prune`: the flags parsed, the
//! Dockerfile and context found, progress printed as BuildKit prints it;
//! the build itself is berth_build's.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_build::{BuildOptions, Progress};
use clap::Subcommand;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The build context: a directory, or `-` to read the Dockerfile from
    /// stdin with no context.
    context: String,
    /// The Dockerfile (default: CONTEXT/Containerfile, else
    /// CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short, long, value_name = "PATH")]
    file: Option<String>,
    /// A name for the image, NAME[:TAG] (repeatable).
    #[arg(short, long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// NAME[=VALUE]: a build argument (without a value, taken from the
    /// environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    target: Option<String>,
    /// KEY=VALUE: a label on the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Build every step again, the cache unused.
    #[arg(long)]
    no_cache: bool,
    /// When to pull base images: always (the flag alone), missing, never.
    #[arg(long, num_args = 0..=1, default_missing_value = "always", value_name = "POLICY")]
    pull: Option<String>,
    /// The platform to build for (only this host's: os/arch).
    #[arg(long)]
    platform: Option<String>,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// auto (tty on a terminal, else plain), plain (every line of every
    /// step, numbered), tty (a line per step, a RUN's output shown while it
    /// runs and folded away when it is done) or quiet.
    #[arg(long, default_value = "auto")]
    progress: String,
    /// The network of RUN steps: default, none, host, or a network's name.
    #[arg(long)]
    network: Option<String>,
    /// id=ID,src=PATH: a secret for RUN --mount=type=secret.
    #[arg(long = "secret", value_name = "id=ID,src=PATH")]
    secrets: Vec<String>,
    /// Where steps run: container (a working container per step, on
    /// overlay snapshots) or rootfs (in this process's own root, as
    /// Kaniko does: for building inside an unprivileged container; it
    /// empties that root). Default: $BERTH_ISOLATION, else container.
    #[arg(long, value_name = "container|rootfs")]
    isolation: Option<String>,
    /// A registry's build cache to use: REF, or type=registry,ref=REF
    /// (repeatable).
    #[arg(long = "cache-from", value_name = "REF")]
    cache_from: Vec<String>,
    /// Push this build's cache to a registry: REF, or
    /// type=registry,ref=REF.
    #[arg(long = "cache-to", value_name = "REF")]
    cache_to: Option<String>,
    /// Where else the result goes: type=docker|oci|tar|local,dest=PATH
    /// (`-` for stdout), or a directory for its files (type=local).
    #[arg(short, long, value_name = "type=TYPE,dest=PATH")]
    output: Option<String>,
    /// The image's manifest and config: oci or docker (schema 2).
    #[arg(long, default_value = "oci", value_parser = ["oci", "docker"])]
    format: String,
    /// Push the image to each -t name (which must name a registry).
    #[arg(long)]
    push: bool,
    /// Require HTTPS with a verified certificate for pulls and pushes.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    tls_verify: Option<bool>,
}

#[derive(Subcommand)]
pub enum BuilderCmd {
    /// Remove the build cache.
    Prune {
        /// Remove all of it (the default: berth's cache has no shared
        /// or internal parts to keep).
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
        /// Keep this much of the most recently used cache (bytes, or with
        /// K, M, G).
        #[arg(long, value_name = "SIZE", value_parser = crate::parse_size)]
        keep_storage: Option<u64>,
    },
    /// Show how much the build cache holds.
    Du,
}

pub fn build(ctx: &crate::Ctx, a: BuildArgs) -> Result<()> {
    let (context, mut dockerfile_text, dockerfile_name, dockerfile_path) = inputs(&a)?;
    if dockerfile_text.starts_with('\u{feff}') {
        dockerfile_text.remove(0);
    }
    let ignore = match &context {
        Some(dir) => ignore_file(dir, dockerfile_path.as_deref())?,
        None => None,
    };
    let mut opts = BuildOptions {
        dockerfile: dockerfile_text,
        dockerfile_name,
        context,
        ignore,
        tags: a.tags.clone(),
        build_args: a
            .build_args
            .iter()
            .map(|b| match b.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (b.clone(), None),
            })
            .collect(),
        target: a.target.clone(),
        labels: a
            .labels
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| anyhow::anyhow!("--label {l:?}: KEY=VALUE is needed"))
            })
            .collect::<Result<_>>()?,
        no_cache: a.no_cache,
        pull: match &a.pull {
            Some(p) => berth_engine::PullPolicy::parse(p)?,
            None => berth_engine::PullPolicy::Missing,
        },
        pull_options: crate::pull_options(ctx, a.tls_verify)?,
        network: a.network.clone(),
        secrets: a
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<Result<_>>()?,
        platform: a.platform.clone(),
        isolation: berth_build::Isolation::Container,
        cache_from: a
            .cache_from
            .iter()
            .map(|c| cache_ref(c))
            .collect::<Result<_>>()?,
        cache_to: a.cache_to.as_deref().map(cache_ref).transpose()?,
        docker_format: a.format == "docker",
    };
    let output = a.output.as_deref().map(Output::parse).transpose()?;
    if a.push {
        for t in &a.tags {
            if !berth_image::reference::parse(t)?.qualified {
                bail!("--push {t}: the name must say which registry to push to");
            }
        }
        if a.tags.is_empty() {
            bail!("--push needs a name to push to: give -t REGISTRY/NAME[:TAG]");
        }
    }
    let engine = crate::containers::engine(ctx)?;
    let (isolation, note) = berth_build::Isolation::choose(
        a.isolation.as_deref(),
        std::env::var("BERTH_ISOLATION").ok().as_deref(),
        &engine.run_root.join("isolation-probe"),
    )?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    opts.isolation = isolation;
    let cancel = Arc::new(AtomicBool::new(false));
    watch_signals(cancel.clone());
    let quiet = a.quiet || a.progress == "quiet";
    let progress: Box<dyn Progress> = match (quiet, a.progress.as_str()) {
        (true, _) => Box::new(berth_build::progress::Quiet),
        (_, "plain") => Box::new(Plain::new()),
        (_, "tty") => Box::new(Tty::default()),
        (_, "auto") if std::io::stderr().is_terminal() => Box::new(Tty::default()),
        (_, "auto") => Box::new(Plain::new()),
        (_, other) => bail!("--progress {other}: expected auto, plain, tty or quiet"),
    };
    let img = berth_build::build(&engine, &opts, progress.as_ref(), &cancel)?;
    if let Some(o) = &output {
        o.write(&engine, &img)?;
    }
    if a.push {
        let opts = berth_image::push::PushOptions {
            transport: ctx.transport(&crate::Net {
                tls_verify: a.tls_verify,
                creds: None,
            })?,
            registries: ctx.conf.clone(),
            progress: Arc::new(crate::progress::Bars::new(quiet)),
            ..Default::default()
        };
        let rt = crate::runtime()?;
        for t in &a.tags {
            let d = rt.block_on(berth_image::push::push(&engine.images, &img, t, &opts))?;
            if !quiet {
                eprintln!("pushed {t}@{d}");
            }
        }
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, img.id.to_string()).with_context(|| format!("write {}", f.display()))?;
    }
    if !quiet {
        eprintln!("writing image {}", img.id);
        for n in &img.names {
            eprintln!("naming to {n}");
        }
    }
    println!("{}", img.id.hex());
    Ok(())
}

/// `--output`: BuildKit's exporters that make sense without a daemon.
enum Output {
    /// An image archive.
    Archive(berth_image::archive::Format, PathBuf),
    /// The image's files, as a tar stream.
    Tar(PathBuf),
    /// The image's files, in a directory.
    Local(PathBuf),
}

impl Output {
    fn parse(s: &str) -> Result<Output> {
        if !s.contains('=') {
            return Ok(Output::Local(PathBuf::from(s)));
        }
        let (mut kind, mut dest) = (None, None);
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("dest", v)) => dest = Some(PathBuf::from(v)),
                _ => bail!("--output {s:?}: expected type=TYPE,dest=PATH"),
            }
        }
        let dest = dest.ok_or_else(|| anyhow::anyhow!("--output {s:?}: dest= is missing"))?;
        use berth_image::archive::Format;
        Ok(match kind.as_deref().unwrap_or("local") {
            "docker" => Output::Archive(Format::DockerArchive, dest),
            "oci" => Output::Archive(Format::OciArchive, dest),
            "tar" => Output::Tar(dest),
            "local" => Output::Local(dest),
            other => bail!("--output type={other}: expected docker, oci, tar or local"),
        })
    }

    fn write(
        &self,
        engine: &berth_engine::Engine,
        img: &berth_image::store::ImageRecord,
    ) -> Result<()> {
        let name = img.names.first().cloned().unwrap_or_default();
        match self {
            Output::Archive(format, dest) => {
                let list = vec![(img.clone(), name)];
                if dest.as_os_str() == "-" {
                    if std::io::stdout().is_terminal() {
                        bail!(
                            "not writing an image archive to a terminal: redirect stdout, or give dest=FILE"
                        );
                    }
                    berth_image::archive::save_stream(
                        &engine.images,
                        &list,
                        *format,
                        &mut std::io::stdout().lock(),
                        "stdout",
                    )?;
                } else {
                    berth_image::archive::save(&engine.images, &list, *format, dest)?;
                }
            }
            Output::Tar(dest) => {
                if dest.as_os_str() == "-" && std::io::stdout().is_terminal() {
                    bail!(
                        "not writing a tar stream to a terminal: redirect stdout, or give dest=FILE"
                    );
                }
                berth_build::output::write_files(
                    engine,
                    img,
                    &berth_build::output::Files::Tar(dest.clone()),
                )?;
            }
            Output::Local(dir) => {
                berth_build::output::write_files(
                    engine,
                    img,
                    &berth_build::output::Files::Dir(dir.clone()),
                )?;
            }
        }
        Ok(())
    }
}

/// The context directory (None for `-`) and the Dockerfile's text, name
/// and path.
#[allow(clippy::type_complexity)]
fn inputs(a: &BuildArgs) -> Result<(Option<PathBuf>, String, String, Option<PathBuf>)> {
    let stdin_text = || -> Result<String> {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read the Dockerfile from stdin")?;
        Ok(s)
    };
    if a.context == "-" {
        if a.file.is_some() {
            bail!("build -: the Dockerfile comes from stdin; -f has nothing to name");
        }
        return Ok((None, stdin_text()?, "Dockerfile (stdin)".into(), None));
    }
    let dir = PathBuf::from(&a.context);
    if !dir.is_dir() {
        bail!("context {}: not a directory", dir.display());
    }
    let path = match a.file.as_deref() {
        Some("-") => return Ok((Some(dir), stdin_text()?, "Dockerfile (stdin)".into(), None)),
        Some(f) => PathBuf::from(f),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no Containerfile or Dockerfile in {}: name one with -f",
                    dir.display()
                )
            })?,
    };
    let meta =
        std::fs::metadata(&path).with_context(|| format!("Dockerfile {}", path.display()))?;
    if !meta.is_file() {
        bail!("Dockerfile {}: not a regular file", path.display());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("read the Dockerfile {}", path.display()))?;
    Ok((Some(dir), text, path.display().to_string(), Some(path)))
}

/// `<Dockerfile>.dockerignore` beside the Dockerfile, else the context's
/// `.containerignore` or `.dockerignore`.
fn ignore_file(
    dir: &std::path::Path,
    dockerfile: Option<&std::path::Path>,
) -> Result<Option<String>> {
    let mut candidates = Vec::new();
    if let Some(d) = dockerfile {
        candidates.push(PathBuf::from(format!("{}.dockerignore", d.display())));
    }
    candidates.push(dir.join(".containerignore"));
    candidates.push(dir.join(".dockerignore"));
    for c in candidates {
        match std::fs::read_to_string(&c) {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("read {}", c.display())),
        }
    }
    Ok(None)
}

/// `REF` or `type=registry,ref=REF` (BuildKit's form; other cache types
/// need a daemon or a local directory berth does not keep).
fn cache_ref(s: &str) -> Result<String> {
    if !s.contains('=') {
        return Ok(s.to_string());
    }
    let mut r = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", "registry")) => {}
            Some(("type", t)) => bail!("cache {s:?}: type={t} is not supported, only registry"),
            Some(("ref", v)) => r = Some(v.to_string()),
            Some(("mode", "max" | "min")) => {}
            _ => bail!("cache {s:?}: expected REF or type=registry,ref=REF"),
        }
    }
    r.ok_or_else(|| anyhow::anyhow!("cache {s:?}: ref= is missing"))
}

fn parse_secret(s: &str) -> Result<(String, PathBuf)> {
    let (mut id, mut src) = (None, None);
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("type", "file")) => {}
            _ => bail!("--secret {s:?}: expected id=ID,src=PATH"),
        }
    }
    let id = id.ok_or_else(|| anyhow::anyhow!("--secret {s:?}: id= is missing"))?;
    let src = src.ok_or_else(|| anyhow::anyhow!("--secret {s:?}: src= is missing"))?;
    if !src.is_file() {
        bail!("--secret {s:?}: {} is not a file", src.display());
    }
    Ok((id, src))
}

/// SIGINT and SIGTERM stop the build (its working container killed and
/// removed, nothing half-made kept) rather than this process at once.
fn watch_signals(cancel: Arc<AtomicBool>) {
    // SAFETY: a zeroed sigset_t is initialised by sigemptyset; the calls
    // take valid pointers to it. Blocked before any thread starts, so
    // every thread has them blocked and only the watcher takes them.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is an initialised signal set; `sig` is a valid out
        // pointer.
        while unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            if cancel.swap(true, Ordering::Relaxed) {
                // A second one: leave now.
                std::process::exit(128 + sig);
            }
            eprintln!("interrupted: stopping the build");
        }
    });
}

pub fn builder(ctx: &crate::Ctx, cmd: BuilderCmd) -> Result<()> {
    let store = ctx.store()?;
    let cache = berth_build::cache::Cache::open(&store)?;
    match cmd {
        BuilderCmd::Prune {
            all: _,
            force,
            keep_storage,
        } => {
            if !force && !crate::confirm("WARNING! This will remove the build cache.\n")? {
                return Ok(());
            }
            let p = cache.prune(&store, keep_storage)?;
            println!(
                "Deleted {} cache entries\nTotal reclaimed space: {}",
                p.entries,
                crate::human::human_size(p.bytes)
            );
        }
        BuilderCmd::Du => {
            let (bytes, n) = cache.usage()?;
            println!("Entries: {n}\nTotal: {}", crate::human::human_size(bytes));
        }
    }
    Ok(())
}

/// BuildKit's tty progress, without its redrawn block: a line per step,
/// rewritten with its time (or CACHED) when it ends, the output of a RUN
/// shown dimmed meanwhile and folded away when the step ends, as long as
/// nothing else was printed since (stages in parallel interleave).
#[derive(Default)]
struct Tty {
    state: std::sync::Mutex<TtyState>,
}

#[derive(Default)]
struct TtyState {
    titles: std::collections::HashMap<usize, String>,
    /// The step whose lines are the last on screen, and how many lines
    /// (its title included).
    last: Option<(usize, usize)>,
}

impl Tty {
    fn with(&self, f: impl FnOnce(&mut TtyState, &mut std::io::Stderr)) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr();
        f(&mut st, &mut err);
        let _ = err.flush();
    }

    /// Replaces step `n`'s lines with `line` when they are the last on
    /// screen; else adds it.
    fn end(&self, n: usize, line: impl FnOnce(&str) -> String) {
        self.with(|st, err| {
            let title = st.titles.remove(&n).unwrap_or_default();
            if let Some((last, lines)) = st.last
                && last == n
            {
                // Up to the step's title, and everything below it gone.
                let _ = write!(err, "\x1b[{lines}F\x1b[J");
            }
            let _ = writeln!(err, "{}", line(&title));
            st.last = None;
        });
    }
}

impl Progress for Tty {
    fn step(&self, n: usize, title: &str) {
        self.with(|st, err| {
            st.titles.insert(n, title.to_string());
            let _ = writeln!(err, "\x1b[34m=> {title}\x1b[0m");
            st.last = Some((n, 1));
        });
    }
    fn cached(&self, n: usize) {
        self.end(n, |t| format!("=> CACHED {t}"));
    }
    fn output(&self, n: usize, data: &[u8]) {
        self.with(|st, err| {
            let text = String::from_utf8_lossy(data);
            let count = text.lines().count();
            for l in text.lines() {
                let _ = writeln!(err, "\x1b[2m   {l}\x1b[0m");
            }
            st.last = match st.last {
                Some((last, lines)) if last == n => Some((n, lines + count)),
                _ => None,
            };
        });
    }
    fn note(&self, n: usize, line: &str) {
        self.output(n, format!("{line}\n").as_bytes());
    }
    fn done(&self, n: usize, took: Duration) {
        // A cached step has already ended.
        let known = self
            .state
            .lock()
            .map(|s| s.titles.contains_key(&n))
            .unwrap_or(false);
        if known {
            self.end(n, |t| format!("=> {t}  {:.1}s", took.as_secs_f64()));
        }
    }
}

/// BuildKit's plain progress: `#N` lines per step on stderr.
struct Plain {
    started: std::time::Instant,
    out: std::sync::Mutex<std::io::Stderr>,
}

impl Plain {
    fn new() -> Plain {
        Plain {
            started: std::time::Instant::now(),
            out: std::sync::Mutex::new(std::io::stderr()),
        }
    }

    fn line(&self, s: &str) {
        let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "{s}");
    }
}

impl Progress for Plain {
    fn step(&self, n: usize, title: &str) {
        self.line(&format!("#{n} {title}"));
    }
    fn cached(&self, n: usize) {
        self.line(&format!("#{n} CACHED"));
    }
    fn output(&self, n: usize, data: &[u8]) {
        let t = self.started.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(data);
        for l in text.lines() {
            self.line(&format!("#{n} {t:.3} {l}"));
        }
    }
    fn note(&self, n: usize, line: &str) {
        self.line(&format!("#{n} {line}"));
    }
    fn done(&self, n: usize, took: Duration) {
        self.line(&format!("#{n} DONE {:.1}s", took.as_secs_f64()));
    }
}
