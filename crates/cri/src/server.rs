//! berthd's serving: the engine opened on the shared store, the CRI
//! socket, the streaming server, the metrics endpoint and the event
//! follower, until a shutdown signal.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_engine::Engine;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use crate::authority::AuthorityFix;

use crate::api::image_service_server::ImageServiceServer;
use crate::api::runtime_service_server::RuntimeServiceServer;
use crate::config::Config;
use crate::metrics::{Counts, Metrics};
use crate::service::Cri;
use crate::stats::CpuRates;
use crate::streams::EngineBackend;

/// kubelet sends and accepts messages up to 16 MiB (ListContainers on a
/// full node, ExecSync output).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The binaries berthd starts containers with.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub monitor: PathBuf,
    /// `berth`: the monitors' exit command and pod infra processes.
    pub berth: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Engine(#[from] berth_engine::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Busy(String),
    #[error("serving gRPC: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// What serving made, before the gRPC server runs: for tests that serve
/// in-process, and for berthd's own startup log.
pub struct Ready {
    pub streaming_url: Option<String>,
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Serves until `shutdown` completes; `ready` is told once the socket
/// accepts. Containers keep running when this returns.
pub async fn serve(
    config: Config,
    bins: Binaries,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Ready) + Send,
) -> Result<(), ServeError> {
    let engine = Arc::new(open_engine(&config, &bins)?);
    match engine.recover() {
        Ok(s) if s.leftovers > 0 => {
            tracing::info!(leftovers = s.leftovers, "released what a crash left behind")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("recovery sweep: {e}"),
    }
    let listener = bind(&config.listen)?;

    let stream_listener =
        tokio::net::TcpListener::bind((config.streaming.address, config.streaming.port))
            .await
            .map_err(io(format!(
                "bind the streaming server to {}:{}",
                config.streaming.address, config.streaming.port
            )))?;
    let addr = stream_listener
        .local_addr()
        .map_err(io("the streaming server's address"))?;
    let base_url = format!("http://{addr}");
    let mut sc = berth_streaming::Config::new(base_url.clone());
    sc.token_ttl = std::time::Duration::from_secs(config.streaming.token_ttl_secs);
    sc.idle_timeout = std::time::Duration::from_secs(config.streaming.idle_timeout_secs);
    let streaming = Arc::new(berth_streaming::Server::new(sc));

    let registries = berth_image::registries::RegistriesConf::load(
        config.registries_conf.as_deref(),
    )
    .map_err(|e| ServeError::Io {
        what: "read registries.conf".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let cri = Cri {
        engine: engine.clone(),
        config: Arc::new(config.clone()),
        metrics: Arc::new(Metrics::default()),
        rates: Arc::new(CpuRates::default()),
        pod_cidr: Arc::new(Mutex::new(String::new())),
        streaming: Some(streaming.clone()),
        registries: Arc::new(registries),
        usage: Arc::default(),
        events: crate::events::channel(),
    };
    crate::events::follow(cri.clone()).map_err(io("start the event follower"))?;

    let backend = Arc::new(EngineBackend {
        engine: engine.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = streaming.serve(stream_listener, backend).await {
            tracing::error!("the streaming server stopped: {e}");
        }
    });

    let mut metrics_addr = None;
    if let Some(addr) = config.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(format!("bind the metrics endpoint to {addr}")))?;
        metrics_addr = l.local_addr().ok();
        let counter = cri.clone();
        tokio::spawn(crate::metrics::serve(l, cri.metrics.clone(), move || {
            counts(&counter)
        }));
    }

    ready(&Ready {
        streaming_url: Some(base_url),
        metrics_addr,
    });
    let served = tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(cri.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ImageServiceServer::new(cri)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map(|c| c.map(AuthorityFix::new)),
            shutdown,
        )
        .await;
    let _ = std::fs::remove_file(&config.listen);
    served?;
    Ok(())
}

pub fn open_engine(config: &Config, bins: &Binaries) -> Result<Engine, ServeError> {
    Ok(Engine::open(berth_engine::Options {
        paths: berth_base::paths::HostPaths::with_roots(&config.root, &config.run_root),
        monitor: bins.monitor.clone(),
        berth: bins.berth.clone(),
        // The event follower cleans up after exits (events.rs).
        exit_command: false,
    })?)
}

/// The CRI socket: a stale one (no server behind it) is replaced; a live
/// one means another berthd serves it; anything else at the path is not
/// ours to remove.
fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::Busy(format!(
                    "{} is served by another process (another berthd?)",
                    path.display()
                )));
            }
            std::fs::remove_file(path)
                .map_err(io(format!("remove the stale {}", path.display())))?;
        }
        Ok(_) => {
            return Err(ServeError::Busy(format!(
                "{} exists and is not a socket: not replacing it",
                path.display()
            )));
        }
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(io(format!("listen on {}", path.display())))?;
    // The socket runs containers as root: root's only.
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    Ok(l)
}

/// Pods and containers by state, for the metrics.
fn counts(cri: &Cri) -> Counts {
    let mut c = Counts::default();
    if let Ok(pods) = cri.sandboxes() {
        for p in pods {
            if p.running() {
                c.pods_ready += 1;
            } else {
                c.pods_not_ready += 1;
            }
        }
    }
    if let Ok(cs) = cri.containers() {
        for x in cs {
            *c.containers.entry(x.state.status.name()).or_default() += 1;
        }
    }
    c
}
