//! Pull: resolve a reference (short names through the unqualified-search
//! registries, then mirrors before the registry itself), negotiate the
//! manifest, pick the platform, fetch the config, then download every
//! layer concurrently, each streamed through hashing, decompression and
//! unpack (see ingest.rs), and record the image.

use std::fs::{File, OpenOptions};
use std::sync::Arc;

use bytes::Bytes;
use oci_spec::image::ImageConfiguration;

use crate::client::{RegistryClient, TransportOptions};
use crate::digest::{Digest, chain_ids};
use crate::error::{Context, Error, Result};
use crate::ingest::{self, Job};
use crate::limits::{self, Budget, Limits};
use crate::manifest::{self, Kind};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::{self, Reference};
use crate::registries::{Endpoint, RegistriesConf};
use crate::store::{ImageRecord, LayerInfo, Store, now};

pub struct PullOptions {
    pub platform: Option<Platform>,
    pub transport: TransportOptions,
    pub registries: RegistriesConf,
    pub progress: Arc<dyn Progress>,
    /// Layers downloaded at once.
    pub concurrency: usize,
    /// Unpacked-size caps per layer and per image.
    pub limits: Limits,
    /// Whether a person is at a terminal (short-name-mode enforcing would
    /// have podman ask them).
    pub terminal: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            transport: TransportOptions::default(),
            registries: RegistriesConf::default(),
            progress: Arc::new(crate::progress::Quiet),
            concurrency: 6,
            limits: Limits::default(),
            terminal: false,
        }
    }
}

/// Pulls `name` into the store and returns its record.
pub async fn pull(store: Arc<Store>, name: &str, opts: &PullOptions) -> Result<ImageRecord> {
    let parsed = reference::parse(name)?;
    let candidates: Vec<Reference> = if parsed.qualified {
        vec![parsed.reference.clone()]
    } else {
        opts.registries
            .remote_candidates(&parsed.reference, name, opts.terminal)?
    };
    let _lock = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.lock_shared())
            .await
            .expect("lock task")?
    };
    let mut errors = Vec::new();
    for r in &candidates {
        for ep in opts.registries.endpoints(r)? {
            opts.progress
                .message(&format!("Trying to pull {}/{}...", ep.host, ep.repository));
            match pull_from(&store, r, &ep, opts).await {
                Ok(rec) => return Ok(rec),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Endpoint(e)) => errors.push(e),
            }
        }
    }
    if errors.len() == 1 {
        return Err(errors.pop().expect("one error"));
    }
    let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    Err(Error::invalid(format!("pull {name}"), all.join("; ")))
}

/// Why a pull from one endpoint failed.
enum Failure {
    /// Maybe the endpoint's fault: an error from it, or bytes it sent that
    /// did not verify. The next mirror may do better.
    Endpoint(Error),
    /// Not a matter of where the bytes come from: a verified layer that is
    /// bad, or a local error. Stop.
    Final(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Endpoint(e)
    }
}

impl From<ingest::Failed> for Failure {
    fn from(f: ingest::Failed) -> Failure {
        if f.verified {
            Failure::Final(f.error)
        } else {
            Failure::Endpoint(f.error)
        }
    }
}

async fn pull_from(
    store: &Arc<Store>,
    r: &Reference,
    ep: &Endpoint,
    opts: &PullOptions,
) -> Result<ImageRecord, Failure> {
    let client = Arc::new(RegistryClient::new(
        &ep.host,
        ep.insecure,
        &ep.repository,
        &opts.transport,
    )?);
    let repo = ep.repository.as_str();
    let top = client.get_manifest(repo, &r.manifest_ref()).await?;
    let what = format!("{}/{repo}@{}", ep.host, top.digest);
    let (kind, media_type) = manifest::classify(&top.body, &top.media_type, &what)?;
    let mut extra = Vec::new();
    let (body, media_type, digest) = match kind {
        Kind::Manifest => (top.body.clone(), media_type, top.digest.clone()),
        Kind::Index => {
            let index = manifest::parse_index(&top.body, &what)?;
            let want = opts.platform.clone().unwrap_or_else(Platform::host);
            let (d, _) = manifest::choose(&index, &want, &what)?;
            let m = client.get_manifest(repo, d.as_str()).await?;
            let what = format!("{}/{repo}@{d}", ep.host);
            let (k, mt) = manifest::classify(&m.body, &m.media_type, &what)?;
            if !matches!(k, Kind::Manifest) {
                return Err(Error::invalid(what, "an index entry is itself an index").into());
            }
            store.put_blob(&top.body, &top.digest)?;
            extra.push(top.digest.clone());
            (m.body, mt, d)
        }
    };
    let what = format!("{}/{repo}@{digest}", ep.host);
    let m = manifest::parse_manifest(&body, &what)?;
    // Before any blob: such an image could never be mounted.
    limits::check_layer_count(m.layers().len(), &what).map_err(Failure::Final)?;
    let cdesc = m.config();
    let config_digest = manifest::digest_of(cdesc.digest(), &what)?;
    let config_bytes = if store.has_blob(&config_digest) {
        Bytes::from(store.read_blob(&config_digest)?)
    } else {
        client
            .get_blob_bytes(repo, &config_digest, cdesc.size())
            .await?
    };
    let config = manifest::parse_config(&config_bytes, &format!("config {config_digest}"))?;
    if let Some(p) = &opts.platform {
        let (os, arch) = (config.os().to_string(), config.architecture().to_string());
        if !p.matches(&os, &arch, config.variant().as_deref()) {
            return Err(
                Error::invalid(what, format!("the image is for {os}/{arch}, not {p}")).into(),
            );
        }
    }
    let layers = plan_layers(&m, &config, &what)?;
    store.put_blob(&config_bytes, &config_digest)?;
    store.put_blob(&body, &digest)?;

    let budget = Budget::new(opts.limits);
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = Vec::new();
    for l in &layers {
        let (store, client, sem, progress, budget) = (
            store.clone(),
            client.clone(),
            sem.clone(),
            opts.progress.clone(),
            budget.clone(),
        );
        let (repo, l) = (repo.to_string(), l.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            fetch_layer(&store, &client, &repo, &l, budget, progress.as_ref()).await
        }));
    }
    let mut infos = Vec::new();
    let mut first_err = None;
    for (t, mut l) in tasks.into_iter().zip(layers) {
        match t.await.expect("layer task") {
            Ok(unpacked) => {
                l.unpacked = unpacked;
                infos.push(l);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let rec = ImageRecord {
        id: config_digest,
        manifest_digest: digest.clone(),
        manifest_media_type: media_type,
        config_size: config_bytes.len() as u64,
        layers: infos,
        created: config.created().clone(),
        added: now(),
        extra_blobs: extra.clone(),
        names: Vec::new(),
        repo_digests: Vec::new(),
        digest_names: Vec::new(),
    };
    let mut names = Vec::new();
    if let Some(t) = &r.tag {
        names.push(format!("{}:{t}", r.name()));
    }
    let mut digests = vec![format!("{}@{digest}", r.name())];
    for d in &extra {
        digests.push(format!("{}@{d}", r.name()));
    }
    // Pulled by digest: that reference is the image's name.
    let pinned: Vec<String> = r
        .digest
        .iter()
        .map(|d| format!("{}@{d}", r.name()))
        .collect();
    Ok(store.put_image(&rec, &names, &digests, &pinned)?)
}

/// Layers with their diffIDs and chain IDs, checked against the config.
pub fn plan_layers(
    m: &oci_spec::image::ImageManifest,
    config: &ImageConfiguration,
    what: &str,
) -> Result<Vec<LayerInfo>> {
    let diff_ids: Vec<Digest> = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse())
        .collect::<Result<_>>()
        .map_err(|e| Error::invalid(what, format!("config: {e}")))?;
    if diff_ids.len() != m.layers().len() {
        return Err(Error::invalid(
            what,
            format!(
                "{} layers but {} diffIDs in the config",
                m.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let chains = chain_ids(&diff_ids);
    m.layers()
        .iter()
        .zip(diff_ids)
        .zip(chains)
        .map(|((l, diff_id), chain_id)| {
            let mt = l.media_type().to_string();
            if (mt.contains("foreign") || mt.contains("nondistributable"))
                && !l.urls().as_ref().is_none_or(|u| u.is_empty())
            {
                return Err(Error::invalid(
                    what,
                    "foreign layers with URLs are not supported",
                ));
            }
            Ok(LayerInfo {
                digest: manifest::digest_of(l.digest(), what)?,
                size: l.size(),
                media_type: mt,
                diff_id,
                chain_id,
                unpacked: 0,
            })
        })
        .collect()
}

/// Downloads and unpacks one layer (or finds it there). Returns its
/// unpacked size.
async fn fetch_layer(
    store: &Arc<Store>,
    client: &Arc<RegistryClient>,
    repo: &str,
    l: &LayerInfo,
    budget: Arc<Budget>,
    progress: &dyn Progress,
) -> Result<u64, Failure> {
    let lock = {
        let (s, d) = (store.clone(), l.digest.clone());
        tokio::task::spawn_blocking(move || s.lock_blob(&d))
            .await
            .expect("lock task")?
    };
    let have_blob = store.has_blob(&l.digest);
    let have_layer = store.has_layer(&l.chain_id);
    if have_blob && have_layer {
        let size = store.layer_size(&l.chain_id);
        budget
            .charge_existing(&l.digest, size)
            .map_err(Failure::Final)?;
        progress.layer_done(&l.digest, true);
        return Ok(size);
    }
    let job = Job {
        digest: l.digest.clone(),
        size: l.size,
        diff_id: l.diff_id.clone(),
        chain_id: l.chain_id.clone(),
        unpack: !have_layer,
        budget,
    };
    if have_blob {
        // Unpack from the local blob: no network.
        let prefix =
            File::open(store.blob_path(&l.digest)).ctx(|| format!("open blob {}", l.digest))?;
        let s = store.clone();
        let done =
            tokio::task::spawn_blocking(move || ingest::run(&s, &job, Some(prefix), None, None))
                .await
                .expect("unpack task")?;
        progress.layer_done(&l.digest, true);
        drop(lock);
        return Ok(done.unpacked);
    }
    progress.layer_start(&l.digest, l.size);
    let partial = store.partial_path(&l.digest);
    let mut retried_fresh = false;
    loop {
        let resumed = std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0);
        match download(store, client, repo, &job, progress).await {
            Ok(n) => {
                progress.layer_done(&l.digest, false);
                drop(lock);
                return Ok(n);
            }
            // The partial file stays for the next attempt.
            Err(Download::Network(e)) => return Err(Failure::Endpoint(e)),
            Err(Download::Content(f)) => {
                // Bytes that did not decompress, unpack or verify: from this
                // server, or from an earlier download kept on disk (torn by a
                // crash, or from another server). Either way the partial
                // file is no use; a resumed download gets one fresh try.
                let _ = std::fs::remove_file(&partial);
                if resumed && !f.verified && !retried_fresh {
                    retried_fresh = true;
                    continue;
                }
                return Err(f.into());
            }
        }
    }
}

/// Tries of one blob download (each resuming where the last stopped)
/// before the pull fails; with backoff, a blob that stalls every time
/// fails after about this many idle timeouts plus 6 s.
const DOWNLOAD_ATTEMPTS: u32 = 6;

/// How a download failed: on the network (resume later) or in the bytes.
enum Download {
    Network(Error),
    Content(ingest::Failed),
}

async fn download(
    store: &Arc<Store>,
    client: &RegistryClient,
    repo: &str,
    job: &Job,
    progress: &dyn Progress,
) -> Result<u64, Download> {
    // A local file error is no reason to try another server.
    let local = |error: Error| {
        Download::Content(ingest::Failed {
            error,
            verified: true,
        })
    };
    let partial = store.partial_path(&job.digest);
    let mut offset = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    if offset > job.size {
        offset = 0;
    }
    let (mut resp, start) = if offset < job.size {
        let (r, s) = client
            .blob_response(repo, &job.digest, offset)
            .await
            .map_err(Download::Network)?;
        (Some(r), s)
    } else {
        (None, offset)
    };
    // The registry may ignore the Range: then the partial file is useless.
    let offset = start;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&partial)
        .ctx(|| format!("open {}", partial.display()))
        .map_err(local)?;
    f.set_len(offset)
        .ctx(|| format!("truncate {}", partial.display()))
        .map_err(local)?;
    let prefix = (offset > 0)
        .then(|| File::open(&partial))
        .transpose()
        .ctx(|| format!("open {}", partial.display()))
        .map_err(local)?;
    let mut out = f;
    std::io::Seek::seek(&mut out, std::io::SeekFrom::End(0))
        .ctx(|| format!("seek {}", partial.display()))
        .map_err(local)?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let worker = {
        let (s, job) = (store.clone(), job.clone());
        tokio::task::spawn_blocking(move || {
            ingest::run(&s, &job, prefix, Some((partial, out)), Some(rx))
        })
    };
    let mut sent = offset;
    let mut attempt = 0u32;
    let mut net_err = None;
    // Why the last attempt stopped short, for the error once they run out.
    let mut last_break: Option<Error> = None;
    progress.layer_bytes(&job.digest, sent);
    'outer: while sent < job.size {
        let mut r = match resp.take() {
            Some(r) => r,
            None => match client.blob_response(repo, &job.digest, sent).await {
                Ok((r, s)) if s == sent => r,
                Ok((mut r, _)) => {
                    // Range ignored mid-pull: skip what we already have.
                    let mut skip = sent;
                    let mut ok = true;
                    while skip > 0 {
                        match r.chunk().await {
                            Ok(Some(c)) if (c.len() as u64) <= skip => skip -= c.len() as u64,
                            Ok(Some(c)) => {
                                let rest = c.slice(skip as usize..);
                                skip = 0;
                                sent += rest.len() as u64;
                                if tx.send(rest).await.is_err() {
                                    break 'outer;
                                }
                            }
                            _ => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    if !ok {
                        attempt += 1;
                        if attempt >= DOWNLOAD_ATTEMPTS {
                            net_err = Some(Error::registry(
                                &client.host,
                                format!(
                                    "blob {}: gave up after {attempt} attempts (the registry ignores Range and breaks off)",
                                    job.digest
                                ),
                            ));
                            break;
                        }
                        crate::client::backoff(attempt).await;
                        continue;
                    }
                    r
                }
                Err(e) => {
                    net_err = Some(e);
                    break;
                }
            },
        };
        loop {
            match r.chunk().await {
                Ok(Some(c)) => {
                    sent += c.len() as u64;
                    if tx.send(c).await.is_err() {
                        break 'outer;
                    }
                    progress.layer_bytes(&job.digest, sent.min(job.size));
                }
                Ok(None) => {
                    if sent < job.size {
                        // Cut short without an error: retry the rest.
                        attempt += 1;
                        last_break = Some(Error::registry(
                            &client.host,
                            format!(
                                "blob {}: the connection closed after {sent} of {} bytes",
                                job.digest, job.size
                            ),
                        ));
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    last_break = Some(client_err(client, &job.digest, &e));
                    break;
                }
            }
        }
        if sent < job.size {
            if attempt >= DOWNLOAD_ATTEMPTS {
                let why = last_break.take().map_or_else(
                    || format!("registry {}: blob {}", client.host, job.digest),
                    |e| e.to_string(),
                );
                net_err = Some(Error::invalid(
                    why,
                    format!("gave up after {attempt} attempts"),
                ));
                break;
            }
            crate::client::backoff(attempt).await;
        }
    }
    drop(tx);
    let res = worker.await.expect("ingest task");
    match (res, net_err) {
        // The network failed first: the worker only saw the stream end.
        (_, Some(e)) => Err(Download::Network(e)),
        // Otherwise the worker's error says more (a bad layer stops the
        // download).
        (Err(f), None) => Err(Download::Content(f)),
        (Ok(d), None) => Ok(d.unpacked),
    }
}

fn client_err(client: &RegistryClient, d: &Digest, e: &reqwest::Error) -> Error {
    client.body_error(d, e)
}
