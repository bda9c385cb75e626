//! berthd: berth's Kubernetes CRI v1 server. Parses flags and the config
//! file, sets up logging and signals, and serves (berth_cri does the rest).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_cri::config::{self, CgroupDriver, Config, LogFormat};
use clap::Parser;
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth's Kubernetes CRI v1 server (RuntimeService and ImageService on a unix socket)",
    after_help = "kubelet: --container-runtime-endpoint=unix:///run/berth/berthd.sock\ncrictl:  crictl --runtime-endpoint unix:///run/berth/berthd.sock ps"
)]
struct Flags {
    /// The configuration file (a missing default file means the defaults).
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// The CRI socket to serve.
    #[arg(long)]
    listen: Option<PathBuf>,
    /// berth's persistent state, shared with the berth CLI.
    #[arg(long)]
    root: Option<PathBuf>,
    /// berth's volatile state, shared with the berth CLI.
    #[arg(long)]
    runroot: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at this address (host:port).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// text or json.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// error, warn, info, debug or trace (or a tracing filter).
    #[arg(long)]
    log_level: Option<String>,
    /// kubelet's --cgroup-driver: cgroupfs or systemd.
    #[arg(long, value_parser = ["cgroupfs", "systemd"])]
    cgroup_driver: Option<String>,
    /// The streaming server's port (0: any free one).
    #[arg(long)]
    stream_port: Option<u16>,
    /// The berth-monitor binary ($BERTH_MONITOR, else beside berthd,
    /// else /usr/local/bin/berth-monitor).
    #[arg(long)]
    monitor: Option<PathBuf>,
    /// The berth binary (beside berthd, else /usr/local/bin/berth).
    #[arg(long)]
    berth: Option<PathBuf>,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let explicit = flags.config.as_os_str() != config::DEFAULT_PATH;
    let mut c = match Config::load(&flags.config, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::from(2);
        }
    };
    apply(&flags, &mut c);
    if let Err(why) = c.validate() {
        eprintln!("berthd: {why}");
        return ExitCode::from(2);
    }
    if let Err(why) = init_logging(&c) {
        eprintln!("berthd: {why}");
        return ExitCode::from(2);
    }
    let bins = binaries(&flags);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = c.listen.clone();
    let r = rt.block_on(berth_cri::serve(c, bins, shutdown(), |ready| {
        tracing::info!(
            socket = %listen.display(),
            streaming = ready.streaming_url.as_deref().unwrap_or("-"),
            metrics = ready.metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            version = env!("CARGO_PKG_VERSION"),
            "serving"
        );
    }));
    // Sessions still streaming are cut: containers keep running.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match r {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berthd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn apply(f: &Flags, c: &mut Config) {
    if let Some(v) = &f.listen {
        c.listen = v.clone();
    }
    if let Some(v) = &f.root {
        c.root = v.clone();
    }
    if let Some(v) = &f.runroot {
        c.run_root = v.clone();
    }
    if f.metrics.is_some() {
        c.metrics = f.metrics;
    }
    if let Some(v) = &f.log_format {
        c.log_format = if v == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    if let Some(v) = &f.log_level {
        c.log_level = v.clone();
    }
    if let Some(v) = &f.cgroup_driver {
        c.cgroup_driver = if v == "systemd" {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        };
    }
    if let Some(p) = f.stream_port {
        c.streaming.port = p;
    }
}

/// A plain level is berth's: the HTTP/2 and gRPC libraries beneath log
/// every frame at debug, so they stay at warn unless a filter names them.
fn init_logging(c: &Config) -> Result<(), String> {
    let spec = match c.log_level.as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => {
            format!("{l},h2=warn,hyper=warn,hyper_util=warn,tower=warn,tonic=warn,loona_hpack=warn")
        }
        filter => filter.to_string(),
    };
    // `Targets` takes the same `target=level` lists as `EnvFilter` without
    // a regex engine: compiling one at start-up touched about a megabyte of
    // code that then stayed resident in an idle daemon.
    let filter: tracing_subscriber::filter::Targets = spec
        .parse()
        .map_err(|e| format!("log_level {:?}: {e}", c.log_level))?;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match c.log_format {
        LogFormat::Json => registry.with(layer.json().with_filter(filter)).init(),
        LogFormat::Text => registry.with(layer.with_filter(filter)).init(),
    }
    Ok(())
}

fn binaries(f: &Flags) -> berth_cri::Binaries {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/berthd"));
    let beside = |name: &str| {
        let p = me.with_file_name(name);
        p.is_file().then_some(p)
    };
    let monitor = f
        .monitor
        .clone()
        .or_else(|| std::env::var_os("BERTH_MONITOR").map(PathBuf::from))
        .or_else(|| beside("berth-monitor"))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/berth-monitor"));
    let berth = f
        .berth
        .clone()
        .or_else(|| beside("berth"))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/berth"));
    berth_cri::Binaries { monitor, berth }
}

/// SIGTERM or SIGINT: stop accepting, finish what is in flight.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
