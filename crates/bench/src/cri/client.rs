//! A CRI v1 client over a unix socket: the runtime and image services on
//! one HTTP/2 connection, as the kubelet holds them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ImageSpec, PullImageRequest, VersionRequest, VersionResponse};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Longest any one call may take: a stuck runtime fails its target instead
/// of hanging the whole run.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Both CRI services of one runtime. Cloning shares the connection.
#[derive(Clone)]
pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
}

/// Connects to the socket once; fails at once when nothing listens.
pub async fn connect(socket: &Path) -> Result<Cri> {
    let path: PathBuf = socket.to_path_buf();
    // The URI is a placeholder that tonic requires: the connector below
    // ignores it and dials the socket.
    let channel = Endpoint::try_from("http://[::]")?
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| {
            // tonic's error says "transport error" and hides the cause in
            // its source chain (where it appears twice): name the cause.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(s) = cause.source() {
                cause = s;
            }
            anyhow::anyhow!("connect to {}: {cause}", socket.display())
        })?;
    Ok(Cri {
        rt: RuntimeServiceClient::new(channel.clone()),
        img: ImageServiceClient::new(channel),
    })
}

/// Connects and calls Version until the runtime answers or `wait` has
/// passed: a daemon just started needs a moment before it serves.
pub async fn wait_ready(socket: &Path, wait: Duration) -> Result<(Cri, VersionResponse)> {
    let t0 = Instant::now();
    loop {
        let err = match connect(socket).await {
            Ok(mut cri) => match cri.rt.version(VersionRequest::default()).await {
                Ok(v) => return Ok((cri, v.into_inner())),
                Err(e) => anyhow::anyhow!("Version: {e}"),
            },
            Err(e) => e,
        };
        if t0.elapsed() >= wait {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cri {
    /// Pulls an image through the runtime's ImageService, as the kubelet
    /// does before it creates a container.
    pub async fn pull(&mut self, image: &str) -> Result<String> {
        let r = self
            .img
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("PullImage {image}"))?
            .into_inner();
        if r.image_ref.is_empty() {
            bail!("PullImage {image}: no image reference in the answer");
        }
        Ok(r.image_ref)
    }
}
