//! Push from the local store: each blob is checked with HEAD, mounted from
//! another repository of the same registry when the image came from there,
//! or uploaded (monolithic for small blobs, chunked PATCHes for large
//! ones); then the manifest is PUT.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::client::{RegistryClient, TransportOptions, header, scope};
use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::progress::Progress;
use crate::reference::{self, Reference};
use crate::registries::RegistriesConf;
use crate::store::{ImageRecord, Store};

pub struct PushOptions {
    pub transport: TransportOptions,
    pub registries: RegistriesConf,
    pub progress: Arc<dyn Progress>,
    /// Blobs larger than this go up in chunks of this size.
    pub chunk_size: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            transport: TransportOptions::default(),
            registries: RegistriesConf::default(),
            progress: Arc::new(crate::progress::Quiet),
            chunk_size: 32 << 20,
        }
    }
}

/// Pushes `image` as `dest`; returns the manifest digest.
pub async fn push(
    store: &Store,
    image: &ImageRecord,
    dest: &str,
    opts: &PushOptions,
) -> Result<Digest> {
    let r = Reference::parse(dest)?;
    let (insecure, blocked) = opts.registries.host_policy(&r.registry);
    if blocked {
        return Err(Error::registry(&r.registry, "blocked by registries.conf"));
    }
    let client = RegistryClient::new(&r.registry, insecure, &r.repository, &opts.transport)?;
    let repo = r.repository.as_str();
    // Removal waits until the blobs are up.
    let _lock = store.lock_shared()?;
    // Where the image came from on the same registry, for cross-repo mounts.
    let from: Vec<String> = image
        .repo_digests
        .iter()
        .chain(image.names.iter())
        .filter_map(|n| reference::parse(n).ok())
        .map(|p| p.reference)
        .filter(|o| o.registry == r.registry && o.repository != r.repository)
        .map(|o| o.repository)
        .collect();
    let mut blobs: Vec<(Digest, u64)> = vec![(image.id.clone(), image.config_size)];
    blobs.extend(image.layers.iter().map(|l| (l.digest.clone(), l.size)));
    for (d, size) in &blobs {
        push_blob(store, &client, repo, d, *size, &from, opts).await?;
    }
    let manifest = store.read_blob(&image.manifest_digest)?;
    let reference = match (&r.tag, &r.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".into(),
    };
    opts.progress
        .message("Writing manifest to image destination");
    let resp = client
        .send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            header("content-type", &image.manifest_media_type),
            Some(Bytes::from(manifest)),
            &[scope(repo, "pull,push")],
        )
        .await?;
    client
        .check(resp, &format!("put manifest {repo}:{reference}"))
        .await?;
    Ok(image.manifest_digest.clone())
}

async fn push_blob(
    store: &Store,
    client: &RegistryClient,
    repo: &str,
    d: &Digest,
    size: u64,
    from: &[String],
    opts: &PushOptions,
) -> Result<()> {
    let scopes = [scope(repo, "pull,push")];
    let resp = client
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{d}"),
            HeaderMap::new(),
            None,
            &scopes,
        )
        .await?;
    if resp.status() == StatusCode::OK {
        opts.progress.layer_done(d, true);
        return Ok(());
    }
    for f in from {
        let scopes = [scope(repo, "pull,push"), scope(f, "pull")];
        let resp = client
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={f}"),
                HeaderMap::new(),
                None,
                &scopes,
            )
            .await?;
        if resp.status() == StatusCode::CREATED {
            opts.progress.layer_done(d, true);
            return Ok(());
        }
    }
    let path = store.blob_path(d);
    let mut file = std::fs::File::open(&path)
        .ctx(|| format!("open blob {d} (is the image complete in the store?)"))?;
    opts.progress.layer_start(d, size);
    let resp = client
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            HeaderMap::new(),
            None,
            &scopes,
        )
        .await?;
    let resp = client.check(resp, &format!("start upload of {d}")).await?;
    let mut location = location(&resp, client)?;
    let chunk = opts.chunk_size.max(1 << 20);
    let mut sent = 0u64;
    if size as usize > chunk {
        let mut buf = vec![0u8; chunk];
        while sent < size {
            let n = read_full(&mut file, &mut buf).ctx(|| format!("read blob {d}"))?;
            if n == 0 {
                return Err(Error::invalid(format!("blob {d}"), "shorter than recorded"));
            }
            let mut h = header("content-type", "application/octet-stream");
            h.extend(header(
                "content-range",
                &format!("{sent}-{}", sent + n as u64 - 1),
            ));
            let resp = client
                .send(
                    Method::PATCH,
                    &location,
                    h,
                    Some(Bytes::copy_from_slice(&buf[..n])),
                    &scopes,
                )
                .await?;
            let resp = client.check(resp, &format!("upload chunk of {d}")).await?;
            location = crate::push::location(&resp, client)?;
            sent += n as u64;
            opts.progress.layer_bytes(d, sent);
        }
        let url = with_digest(&location, d);
        let resp = client
            .send(
                Method::PUT,
                &url,
                HeaderMap::new(),
                Some(Bytes::new()),
                &scopes,
            )
            .await?;
        client.check(resp, &format!("finish upload of {d}")).await?;
    } else {
        let mut body = Vec::with_capacity(size as usize);
        file.read_to_end(&mut body)
            .ctx(|| format!("read blob {d}"))?;
        let url = with_digest(&location, d);
        let resp = client
            .send(
                Method::PUT,
                &url,
                header("content-type", "application/octet-stream"),
                Some(body.into()),
                &scopes,
            )
            .await?;
        client.check(resp, &format!("upload {d}")).await?;
    }
    opts.progress.layer_done(d, false);
    Ok(())
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub(crate) fn location(resp: &reqwest::Response, client: &RegistryClient) -> Result<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
        .ok_or_else(|| Error::registry(&client.host, "upload answer without a Location header"))
}

fn with_digest(location: &str, d: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", d.as_str().replace(':', "%3A"))
}
