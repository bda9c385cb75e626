//! berth: the user's command line. It parses arguments and prints; the
//! work is done by berth-image and berth-engine.

mod attach;
mod build;
mod commit;
mod containers;
mod docs;
mod events;
mod format;
mod human;
mod progress;
mod rootless;
mod search;
mod warnings;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use berth_image::Platform;
use berth_image::archive::{self, Format};
use berth_image::auth::{CredentialStore, Credentials};
use berth_image::bundle::{self, BundleOptions};
use berth_image::client::{RegistryClient, Timeouts, TransportOptions};
use berth_image::filter;
use berth_image::history::{self, Step};
use berth_image::images::{self, Removed};
use berth_image::limits::Limits;
use berth_image::pull::{self, PullOptions};
use berth_image::push::{self, PushOptions};
use berth_image::registries::RegistriesConf;
use berth_image::snapshot::Snapshotter;
use berth_image::spec::SpecOptions;
use berth_image::store::{ImageRecord, Store};
use clap::{Parser, Subcommand};
use human::{ago, human_size, table};

/// The heading that keeps the global flags apart from each command's own
/// in `--help`.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(name = "berth", version, about = "Containers and images, daemonless")]
struct Cli {
    /// Where images, layers and containers are stored (default
    /// /var/lib/berth; for another user $XDG_DATA_HOME/berth, i.e.
    /// ~/.local/share/berth; or berth/ under the graphroot of the
    /// storage.conf $CONTAINERS_STORAGE_CONF names).
    #[arg(long, global = true, help_heading = GLOBAL)]
    root: Option<PathBuf>,
    /// Volatile state: runtime state, locks, network namespaces, sockets
    /// (default /run/berth; for another user $XDG_RUNTIME_DIR/berth; or
    /// berth/ under that storage.conf's runroot).
    #[arg(long, global = true, help_heading = GLOBAL)]
    runroot: Option<PathBuf>,
    /// registries.conf (default /etc/containers/registries.conf).
    #[arg(long, global = true, help_heading = GLOBAL)]
    registries_conf: Option<PathBuf>,
    /// Directory of per-registry CAs: <dir>/<host:port>/*.crt.
    #[arg(long, global = true, help_heading = GLOBAL, default_value = berth_image::tls::DEFAULT_CERTS_DIR)]
    certs_dir: PathBuf,
    /// Credentials file (default: podman's auth.json).
    #[arg(long, global = true, help_heading = GLOBAL)]
    authfile: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Caps and timeouts for bringing images in (pull, run, load, import).
#[derive(clap::Args, Clone)]
struct LimitArgs {
    /// Largest unpacked size of one layer (bytes, or with K, M, G, T).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "SIZE", default_value = "16G", value_parser = parse_size)]
    max_layer_size: u64,
    /// Largest unpacked size of all of an image's layers.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "SIZE", default_value = "64G", value_parser = parse_size)]
    max_image_size: u64,
    /// How long to wait for a connection to a registry.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    connect_timeout: std::time::Duration,
    /// How long a registry may send nothing before a download is retried
    /// (and, a few retries later, given up).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: std::time::Duration,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            layer: self.max_layer_size,
            image: self.max_image_size,
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    berth_image::limits::parse_size(s).map_err(|e| e.to_string())
}

#[derive(clap::Args, Clone)]
struct Net {
    /// Require HTTPS with a verified certificate (false: any certificate,
    /// plain HTTP allowed).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    tls_verify: Option<bool>,
    /// USER[:PASSWORD] for the registry.
    #[arg(long)]
    creds: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Containers(Box<containers::Cmd>),
    #[command(flatten)]
    ImageVerb(ImageVerb),
    /// Run a command in this user's user namespace (its id as root, the
    /// subordinate ids of /etc/subuid and /etc/subgid above), as the
    /// user's containers see ids.
    Unshare {
        /// The command and its arguments (default: $SHELL).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Build an image from a Dockerfile.
    Build(Box<build::BuildArgs>),
    /// Manage the build cache.
    Builder {
        #[command(subcommand)]
        cmd: build::BuilderCmd,
    },
    /// List images.
    Images(ImagesArgs),
    /// Remove images.
    Rmi {
        /// Images to remove, by name or ID.
        #[arg(required = true)]
        images: Vec<String>,
        /// Remove the image even if it has other names.
        #[arg(short, long)]
        force: bool,
    },
    /// Image management.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Search registries' catalogs for repositories, or list a
    /// repository's tags (where the registry serves its catalog: Docker
    /// Hub does not).
    Search(search::Args),
    /// Store registry credentials in the auth file.
    Login {
        /// The registry, as HOST[:PORT].
        registry: String,
        /// The user name.
        #[arg(short, long)]
        username: Option<String>,
        /// The password (visible in the process list: prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Remove registry credentials from the auth file.
    Logout {
        /// The registry, as HOST[:PORT].
        registry: String,
    },
    /// Print a shell completion script.
    ///
    /// For example `berth completion bash >
    /// /usr/share/bash-completion/completions/berth` (setup.sh installs
    /// bash's, zsh's and fish's).
    Completion {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// The process that holds an ordinary user's namespace open.
    #[command(hide = true, name = "rootless-pause")]
    RootlessPause,
    /// Write a man page per command into DIR (setup.sh installs them).
    #[command(hide = true)]
    GenerateMan {
        /// Where to write berth.1, berth-run.1, ...
        dir: PathBuf,
    },
    /// OCI bundles from images, for a runtime (plumbing).
    Bundle {
        #[command(subcommand)]
        cmd: BundleCmd,
    },
}

/// The image commands that are both `berth X` and, as docker's and
/// podman's are, `berth image X`.
#[derive(Subcommand)]
enum ImageVerb {
    /// Pull an image from a registry.
    Pull {
        /// The image: NAME[:TAG] or NAME@DIGEST.
        image: String,
        /// os/arch[/variant] (default: this host's).
        #[arg(long)]
        platform: Option<String>,
        /// Print only the image ID.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Push an image to a registry.
    Push {
        /// The local image to push.
        image: String,
        /// Where to push it (default: the image's own name, which must then
        /// name a registry).
        destination: Option<String>,
        /// Print only the manifest digest, no progress.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Show an image's build steps, newest first.
    History {
        /// The image, by name or ID.
        image: String,
        /// Do not shorten IDs and commands.
        #[arg(long)]
        no_trunc: bool,
        /// Print only the IDs (`<missing>` for steps without an image).
        #[arg(short, long)]
        quiet: bool,
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Add names to an image.
    Tag {
        /// The image to name, by name or ID.
        image: String,
        /// The new names: NAME[:TAG].
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Write images to a docker-archive or oci-archive tarball, or an OCI
    /// layout directory.
    Save {
        /// Images to write, by name or ID.
        #[arg(required = true)]
        images: Vec<String>,
        /// Where to write: a file (replaced whole), a FIFO or device
        /// (written to), a symlink (followed); `-` for stdout (the default).
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
        /// docker-archive, oci-archive or oci-dir.
        #[arg(long, default_value = "docker-archive")]
        format: String,
    },
    /// Load images from a docker-archive or oci-archive tarball, an OCI
    /// layout directory or a docker dir (skopeo's `dir:`).
    Load {
        /// The archive or directory; `-` for stdin (the default; either
        /// kind of archive).
        #[arg(short, long, default_value = "-")]
        input: PathBuf,
        /// Print only the IDs of the loaded images.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Make an image from a rootfs tarball.
    Import {
        /// A tarball of a root filesystem.
        tarball: PathBuf,
        /// NAME[:TAG] for the image (default: none, only an ID).
        name: Option<String>,
        /// The image's default command (JSON array or a shell line).
        #[arg(long)]
        cmd: Option<String>,
    },
}

#[derive(clap::Args)]
struct ImagesArgs {
    /// table, json, or a Go template: '{{.Repository}}:{{.Tag}}'.
    #[arg(long, default_value = "table")]
    format: String,
    /// Show the manifest digests.
    #[arg(long)]
    digests: bool,
    /// Only IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show whole image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// KEY=VALUE: dangling=true|false, reference=PATTERN (docker's glob),
    /// label=KEY[=VALUE], before=IMAGE, since=IMAGE. Repeated keys: any
    /// may match; different keys: all must.
    #[arg(short, long)]
    filter: Vec<String>,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Show an image's record, manifest and config as JSON.
    Inspect {
        /// A Go template over each record: '{{.Config.Cmd}}'.
        #[arg(short, long)]
        format: Option<String>,
        /// Images to show, by name or ID.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove dangling images (all unused with -a) and unreferenced data.
    Prune {
        /// Every image no container uses, not only dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    #[command(flatten)]
    Verb(ImageVerb),
    /// List images (`berth images`).
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Remove images (`berth rmi`).
    Rm {
        /// Images to remove, by name or ID.
        #[arg(required = true)]
        images: Vec<String>,
        /// Remove the image even if it has other names.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum BundleCmd {
    /// Make <root>/containers/ID with a rootfs and config.json; prints the
    /// bundle directory.
    Create {
        /// The image to make the bundle from.
        image: String,
        /// The bundle's (and container's) ID.
        id: String,
        /// overlay or copy (default: overlay, copy where it cannot mount).
        #[arg(long)]
        snapshotter: Option<String>,
        /// The command, replacing the image's Cmd.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Unmount and delete a bundle.
    Rm {
        /// The bundle's ID.
        id: String,
    },
}

fn main() {
    // `berth images | head` should end quietly, not panic on EPIPE.
    // SAFETY: first thing in main, before any thread exists; SIG_DFL
    // installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_error(e));
    match cli.cmd {
        Cmd::RootlessPause => berth_base::rootless::pause(),
        Cmd::Completion { .. } | Cmd::GenerateMan { .. } => {}
        // Before any thread starts: a threaded process cannot join it.
        _ => {
            if let Err(e) = rootless::enter() {
                eprintln!("Error: {}", error_text(&e));
                std::process::exit(125);
            }
        }
    }
    warnings::init();
    if let Err(e) = run(cli) {
        // A batch printed each of its failures as it met them.
        if let Some(r) = e.downcast_ref::<containers::batch::Reported>() {
            std::process::exit(r.code);
        }
        eprintln!("Error: {}", error_text(&e));
        std::process::exit(exit_code_for(&e));
    }
}

/// An error and its causes, each said once: a cause whose text its
/// context already quotes (an OS error in "open x: No such file") is not
/// repeated.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if text.contains(&s) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s);
    }
    text
}

/// Prints clap's message and exits: 125 for a usage error (an unknown
/// flag, a missing argument, a bad value), as podman and docker do, where
/// clap would exit 2; 0 for --help and --version, which are not errors.
fn usage_error(e: clap::Error) -> ! {
    let _ = e.print();
    std::process::exit(if e.use_stderr() { 125 } else { 0 });
}

/// docker's codes: 127 when the container's command was not found, 126
/// when it could not be run (podman's too for a published port in use),
/// 125 for every other failure of berth's own.
fn exit_code_for(e: &anyhow::Error) -> i32 {
    let text = format!("{e:#}");
    if text.contains("executable file not found")
        || text.contains("no such file or directory") && text.contains("exec")
    {
        127
    } else if text.contains("permission denied") && text.contains("exec")
        || text.contains("address already in use")
    {
        126
    } else {
        125
    }
}

/// Asks a yes/no question on the terminal; without one, refuses (a script
/// must say -f to mean it).
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!("not asking without a terminal: pass --force (-f) to go ahead");
    }
    print!("{question}Are you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

struct Ctx {
    root: PathBuf,
    runroot: PathBuf,
    conf: RegistriesConf,
    certs_dir: PathBuf,
    authfile: Option<PathBuf>,
    limits: LimitArgs,
}

impl Ctx {
    fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.root)?)
    }

    fn transport(&self, net: &Net) -> Result<TransportOptions> {
        let creds_override = match &net.creds {
            Some(c) => {
                let (u, p) = c.split_once(':').unwrap_or((c, ""));
                Some(Credentials {
                    username: u.into(),
                    password: p.into(),
                })
            }
            None => None,
        };
        Ok(TransportOptions {
            certs_dir: self.certs_dir.clone(),
            tls_verify: net.tls_verify,
            credentials: CredentialStore::with_auth_file(self.authfile.clone()),
            creds_override,
            token: None,
            timeouts: Timeouts {
                connect: self.limits.connect_timeout,
                idle: self.limits.idle_timeout,
            },
        })
    }
}

fn run(cli: Cli) -> Result<()> {
    // Made from the definitions alone: no configuration is read, so a
    // broken registries.conf does not break completion.
    match &cli.cmd {
        Cmd::Completion { shell } => return docs::completion(*shell),
        Cmd::Unshare { command } => {
            let code = rootless::unshare(command.clone())?;
            std::process::exit(code);
        }
        Cmd::GenerateMan { dir } => return docs::man_pages(dir),
        _ => {}
    }
    let (conf_root, conf_runroot) = berth_engine::podman_conf::storage_roots()?;
    let (default_root, default_runroot) = match berth_base::rootless::host_user() {
        None => (
            PathBuf::from(berth_base::paths::SYSTEM_ROOT),
            PathBuf::from(berth_base::paths::SYSTEM_RUN_ROOT),
        ),
        Some(uid) => berth_base::paths::user_roots(|k| std::env::var_os(k), uid),
    };
    let ctx = Ctx {
        root: cli.root.or(conf_root).unwrap_or(default_root),
        runroot: cli.runroot.or(conf_runroot).unwrap_or(default_runroot),
        conf: RegistriesConf::load(cli.registries_conf.as_deref())?,
        certs_dir: cli.certs_dir,
        authfile: cli.authfile,
        limits: cli.limits,
    };
    match cli.cmd {
        Cmd::ImageVerb(v)
        | Cmd::Image {
            cmd: ImageCmd::Verb(v),
        } => image_verb(&ctx, v)?,
        Cmd::Images(a)
        | Cmd::Image {
            cmd: ImageCmd::Ls(a),
        } => {
            let store = ctx.store()?;
            let imgs = filter::filter_images(&store, store.images()?, &a.filter, &ctx.conf)?;
            list(imgs, &a)?
        }
        Cmd::Rmi { images, force }
        | Cmd::Image {
            cmd: ImageCmd::Rm { images, force },
        } => {
            let store = ctx.store()?;
            containers::batch::removals(&images, force, |i| {
                for r in images::remove(&store, i, force, &ctx.conf)? {
                    match r {
                        Removed::Untagged(n) => println!("Untagged: {n}"),
                        Removed::Deleted(d) => println!("Deleted: {}", d.hex()),
                    }
                }
                Ok(())
            })?;
        }
        Cmd::Image {
            cmd: ImageCmd::Inspect { images, format },
        } => {
            let store = ctx.store()?;
            let mut out = Vec::new();
            for i in &images {
                out.push(inspect(&store, &images::resolve(&store, i, &ctx.conf)?)?);
            }
            format::print_inspect(format.as_deref(), &out)?;
        }
        Cmd::Image {
            cmd: ImageCmd::Prune { all, force },
        } => {
            let what = if all {
                "all images without at least one container associated with them"
            } else {
                "all dangling images"
            };
            if !force && !confirm(&format!("WARNING! This will remove {what}.\n"))? {
                return Ok(());
            }
            for d in images::prune(&ctx.store()?, all)? {
                println!("{}", d.hex());
            }
        }
        Cmd::Login {
            registry,
            username,
            password,
            password_stdin,
            net,
        } => {
            let host = registry
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let username = match username {
                Some(u) => u,
                None => bail!("--username is required (no interactive prompt)"),
            };
            let password = match (password, password_stdin) {
                (Some(p), false) => p,
                (None, true) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("read the password from stdin")?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
                (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
                (None, false) => bail!("give --password or --password-stdin"),
            };
            let creds = Credentials { username, password };
            let mut t = ctx.transport(&net)?;
            t.creds_override = Some(creds.clone());
            let (insecure, _) = ctx.conf.host_policy(&host);
            let client = RegistryClient::new(&host, insecure, "", &t)?;
            runtime()?.block_on(client.check_login())?;
            t.credentials.store(&host, &creds)?;
            println!("Login Succeeded!");
        }
        Cmd::Search(a) => search::run(&ctx, a)?,
        Cmd::Logout { registry } => {
            let host = registry
                .trim_start_matches("https://")
                .trim_end_matches('/');
            let store = CredentialStore::with_auth_file(ctx.authfile.clone());
            if !store.remove(host)? {
                bail!("not logged into {host}");
            }
            println!("Removed login credentials for {host}");
        }
        Cmd::Bundle {
            cmd:
                BundleCmd::Create {
                    image,
                    id,
                    snapshotter,
                    args,
                },
        } => {
            let store = ctx.store()?;
            let rec = images::resolve(&store, &image, &ctx.conf)?;
            let opts = BundleOptions {
                snapshotter: snapshotter.as_deref().map(Snapshotter::parse).transpose()?,
                spec: SpecOptions {
                    args: (!args.is_empty()).then_some(args),
                    ..SpecOptions::default()
                },
            };
            let b = bundle::create_bundle(&store, &rec, &id, &opts)?;
            if let Some(why) = &b.fallback {
                eprintln!("warning: {why}; using the copy snapshotter");
            }
            println!("{}", b.dir.display());
        }
        Cmd::Bundle {
            cmd: BundleCmd::Rm { id },
        } => bundle::remove_bundle(&ctx.store()?, &id)?,
        Cmd::Completion { .. } | Cmd::GenerateMan { .. } => {
            unreachable!("handled before the configuration is read")
        }
        Cmd::Unshare { .. } | Cmd::RootlessPause => {
            unreachable!("handled before any configuration is read")
        }
        Cmd::Build(a) => build::build(&ctx, *a)?,
        Cmd::Builder { cmd } => build::builder(&ctx, cmd)?,
        Cmd::Containers(cmd) => {
            let code = containers::run(&ctx, *cmd)?;
            if code != 0 {
                std::process::exit(code);
            }
        }
    }
    Ok(())
}

/// Runs an image command, given as `berth X` or `berth image X`.
fn image_verb(ctx: &Ctx, v: ImageVerb) -> Result<()> {
    match v {
        ImageVerb::Pull {
            image,
            platform,
            quiet,
            net,
        } => {
            let store = Arc::new(ctx.store()?);
            let opts = PullOptions {
                platform: platform.as_deref().map(Platform::parse).transpose()?,
                transport: ctx.transport(&net)?,
                registries: ctx.conf.clone(),
                progress: Arc::new(progress::Bars::new(quiet)),
                limits: ctx.limits.limits(),
                terminal: std::io::IsTerminal::is_terminal(&std::io::stdin()),
                ..PullOptions::default()
            };
            let rec = runtime()?.block_on(pull::pull(store, &image, &opts))?;
            if !quiet {
                eprintln!("Writing manifest to image destination");
            }
            println!("{}", rec.id.hex());
        }
        ImageVerb::Push {
            image,
            destination,
            quiet,
            net,
        } => {
            let store = ctx.store()?;
            let rec = images::resolve(&store, &image, &ctx.conf)?;
            let dest = match destination {
                Some(d) => d,
                None => {
                    let p = berth_image::reference::parse(&image)?;
                    if !p.qualified {
                        bail!(
                            "{image}: say where to push (a name with a registry, or a destination)"
                        );
                    }
                    p.reference.to_string()
                }
            };
            let opts = PushOptions {
                transport: ctx.transport(&net)?,
                registries: ctx.conf.clone(),
                progress: Arc::new(progress::Bars::new(quiet)),
                ..PushOptions::default()
            };
            let d = runtime()?.block_on(push::push(&store, &rec, &dest, &opts))?;
            if !quiet {
                eprintln!("Pushed {dest}");
            }
            println!("{d}");
        }
        ImageVerb::History {
            image,
            no_trunc,
            quiet,
            format,
        } => {
            let store = ctx.store()?;
            let rec = images::resolve(&store, &image, &ctx.conf)?;
            print_history(&history::history(&store, &rec)?, no_trunc, quiet, &format)?;
        }
        ImageVerb::Tag { image, names } => {
            let store = ctx.store()?;
            let rec = images::resolve(&store, &image, &ctx.conf)?;
            for n in names {
                images::tag(&store, &rec, &n)?;
            }
        }
        ImageVerb::Save {
            images,
            output,
            format,
        } => {
            let store = ctx.store()?;
            let format = Format::parse(&format)?;
            let list = images
                .iter()
                .map(|i| images::for_archive(&store, i, &ctx.conf))
                .collect::<Result<Vec<_>, _>>()?;
            if output.as_os_str() == "-" {
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() {
                    bail!(
                        "not writing an image archive to a terminal: redirect stdout, or give -o FILE"
                    );
                }
                archive::save_stream(
                    &store,
                    &list,
                    format,
                    &mut std::io::stdout().lock(),
                    "stdout",
                )?;
            } else {
                archive::save(&store, &list, format, &output)?;
            }
        }
        ImageVerb::Load { input, quiet } => {
            let opts = archive::LoadOptions {
                limits: ctx.limits.limits(),
            };
            let store = ctx.store()?;
            let loaded = if input.as_os_str() == "-" {
                use std::io::IsTerminal;
                if std::io::stdin().is_terminal() {
                    bail!(
                        "load reads an archive from stdin, which is a terminal: redirect it, or give -i FILE"
                    );
                }
                archive::load_stream(&store, std::io::stdin().lock(), "stdin", &opts)?
            } else {
                archive::load(&store, &input, &opts)?
            };
            for l in loaded {
                if quiet {
                    println!("{}", l.image.id.hex());
                } else if l.names.is_empty() {
                    println!("Loaded image: {}", l.image.id.hex());
                } else {
                    // The names this archive gave, not whatever else the
                    // image was called before.
                    for n in &l.names {
                        println!("Loaded image: {n}");
                    }
                }
            }
        }
        ImageVerb::Import { tarball, name, cmd } => {
            let cmd = cmd.map(|c| match serde_json::from_str::<Vec<String>>(&c) {
                Ok(v) => v,
                Err(_) => vec!["/bin/sh".into(), "-c".into(), c],
            });
            let opts = archive::LoadOptions {
                limits: ctx.limits.limits(),
            };
            let rec = archive::import(&ctx.store()?, &tarball, name.as_deref(), cmd, &opts)?;
            println!("{}", rec.id.hex());
        }
    }
    Ok(())
}

/// How `run` and `create` pull a missing image: quietly, with this
/// berth's registries, certificates, credentials and limits, and their
/// `--tls-verify`.
fn pull_options(ctx: &Ctx, tls_verify: Option<bool>) -> Result<PullOptions> {
    Ok(PullOptions {
        transport: ctx.transport(&Net {
            tls_verify,
            creds: None,
        })?,
        registries: ctx.conf.clone(),
        progress: Arc::new(progress::Bars::new(true)),
        limits: ctx.limits.limits(),
        terminal: std::io::IsTerminal::is_terminal(&std::io::stdin()),
        ..PullOptions::default()
    })
}

fn list(imgs: Vec<ImageRecord>, a: &ImagesArgs) -> Result<()> {
    let format = format::Format::parse(&a.format)?;
    if let format::Format::Json = format {
        let v: Vec<serde_json::Value> = imgs
            .iter()
            .map(|i| {
                serde_json::json!({
                    "Id": i.id.hex(),
                    "Names": i.names,
                    "Digest": i.manifest_digest,
                    "RepoDigests": i.repo_digests,
                    "Created": i.created,
                    "Size": i.size(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if a.quiet {
        for i in &imgs {
            // docker's and podman's: the full ID with its algorithm, as
            // `--no-trunc --format {{.ID}}` prints it.
            if a.no_trunc {
                println!("{}", i.id);
            } else {
                println!("{}", i.id.short());
            }
        }
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = imgs
        .iter()
        .flat_map(|i| image_rows(i, a.no_trunc))
        .collect();
    if let format::Format::Template(t) = format {
        return format::print_rows(&t, &rows, &IMAGE_OPTIONS);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![text(r, "Repository"), text(r, "Tag")];
            if a.digests {
                row.push(text(r, "Digest"));
            }
            row.extend([text(r, "ID"), text(r, "CreatedSince"), text(r, "Size")]);
            row
        })
        .collect();
    table(&header, &table_rows);
    Ok(())
}

/// docker images' column names where they are not the field's name.
const IMAGE_OPTIONS: berth_template::Options = berth_template::Options {
    methods: &[],
    headers: &[("ID", "IMAGE ID"), ("CreatedSince", "CREATED")],
};

/// An image's rows under docker's template names (one per name it has,
/// `<none>` for an untagged one), which the table shows too.
fn image_rows(i: &ImageRecord, no_trunc: bool) -> Vec<serde_json::Value> {
    let names: Vec<(String, String)> = if i.names.is_empty() {
        vec![("<none>".into(), "<none>".into())]
    } else {
        i.names
            .iter()
            .map(|n| match n.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                _ => (n.clone(), "<none>".into()),
            })
            .collect()
    };
    names
        .into_iter()
        .map(|(repo, tag)| {
            serde_json::json!({
                "Repository": repo,
                "Tag": tag,
                "ID": if no_trunc { i.id.to_string() } else { i.id.short().to_string() },
                "Digest": i.manifest_digest.to_string(),
                "CreatedSince": ago(i.created.as_deref()),
                "CreatedAt": i.created.as_deref().map(human::docker_time).unwrap_or_default(),
                "Size": human_size(i.size()),
            })
        })
        .collect()
}

/// `history`: docker's columns, or JSON with podman's keys.
fn print_history(steps: &[Step], no_trunc: bool, quiet: bool, format: &str) -> Result<()> {
    let id = |s: &Step| match &s.image {
        Some(hex) if no_trunc => format!("sha256:{hex}"),
        Some(hex) => hex[..12].to_string(),
        None => "<missing>".to_string(),
    };
    if quiet {
        for s in steps {
            println!("{}", id(s));
        }
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.image.clone().unwrap_or_else(|| "<missing>".into()),
                        "created": s.created,
                        "createdBy": s.created_by,
                        "size": s.size,
                        "comment": s.comment,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "table" => {
            let rows: Vec<Vec<String>> = steps
                .iter()
                .map(|s| {
                    // docker's width: 45 characters, the last three dots.
                    let by = if no_trunc || s.created_by.chars().count() <= 45 {
                        s.created_by.clone()
                    } else {
                        let head: String = s.created_by.chars().take(42).collect();
                        format!("{head}...")
                    };
                    vec![
                        id(s),
                        ago(s.created.as_deref()),
                        by,
                        human_size(s.size),
                        s.comment.clone(),
                    ]
                })
                .collect();
            table(
                &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                &rows,
            );
        }
        other => bail!("--format {other}: expected table or json"),
    }
    Ok(())
}

fn inspect(store: &Store, rec: &ImageRecord) -> Result<serde_json::Value> {
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&rec.id)?)?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&rec.manifest_digest)?)?;
    Ok(serde_json::json!({
        "Id": rec.id.hex(),
        "Digest": rec.manifest_digest,
        "RepoTags": rec.names,
        "RepoDigests": rec.repo_digests,
        "Created": rec.created,
        "Architecture": config.get("architecture"),
        "Os": config.get("os"),
        "Size": rec.size(),
        "Config": config.get("config"),
        // docker's and podman's shape of the config's rootfs.
        "RootFS": {
            "Type": config["rootfs"]["type"],
            "Layers": config["rootfs"]["diff_ids"],
        },
        "Author": config.get("author"),
        "History": config.get("history"),
        "ManifestType": rec.manifest_media_type,
        "Manifest": manifest,
        "Layers": rec.layers,
    }))
}
