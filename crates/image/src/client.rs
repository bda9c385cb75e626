//! A client of the OCI distribution API, written on reqwest rather than
//! taken from oci-client: a pull streams each blob's bytes straight into
//! our own pipeline (partial file, digest, decompression, unpack) and
//! resumes from the bytes already on disk with a Range request, retrying
//! with backoff inside one pull. That needs the raw response, our own
//! retry loop and per-registry TLS from certs.d, which is most of what a
//! client is; the protocol itself (challenge auth, manifests, blobs,
//! uploads) is small.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};

use crate::auth::{CredentialStore, Credentials};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// How registries are reached: certificates, TLS verification, credentials.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    pub certs_dir: PathBuf,
    /// `Some(false)` is `--tls-verify=false`: any certificate, and plain
    /// HTTP when HTTPS fails. `None` follows registries.conf.
    pub tls_verify: Option<bool>,
    pub credentials: CredentialStore,
    /// Explicit credentials (`--creds`), used before the stores.
    pub creds_override: Option<Credentials>,
    /// A token given in place of credentials (CRI's auth config).
    pub token: Option<Token>,
    pub timeouts: Timeouts,
}

/// A token a client is given for a registry with token authentication
/// (Docker's distribution token spec).
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    /// A bearer token sent to the registry as it is.
    Registry(String),
    /// An OAuth2 refresh token, exchanged at the challenge's realm for an
    /// access token per scope (grant_type=refresh_token).
    Identity(String),
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Token::Registry(_) => "Token::Registry(***)",
            Token::Identity(_) => "Token::Identity(***)",
        })
    }
}

/// How long a registry may keep us waiting. There is no limit on a whole
/// download (a large layer on a slow link takes long), only on silence.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To set up a TCP connection (and TLS).
    pub connect: Duration,
    /// Without a byte from the server, while it owes an answer or a body.
    /// A stalled download is retried from where it stopped a few times,
    /// then fails naming the blob.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            certs_dir: crate::tls::DEFAULT_CERTS_DIR.into(),
            tls_verify: None,
            credentials: CredentialStore::default(),
            creds_override: None,
            token: None,
            timeouts: Timeouts::default(),
        }
    }
}

const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));
const ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

pub struct RegistryClient {
    pub host: String,
    pub timeouts: Timeouts,
    http: reqwest::Client,
    /// "https" or "http", settled by the first request.
    scheme: Mutex<Option<&'static str>>,
    allow_http: bool,
    creds: Option<Credentials>,
    token: Option<Token>,
    challenge: Mutex<Option<Challenge>>,
    /// Authorization header value per scope set.
    tokens: Mutex<HashMap<String, String>>,
}

impl RegistryClient {
    /// `insecure` (from registries.conf or `--tls-verify=false`) accepts any
    /// certificate and falls back to plain HTTP.
    pub fn new(
        host: &str,
        insecure: bool,
        repository: &str,
        opts: &TransportOptions,
    ) -> Result<RegistryClient> {
        let insecure = match opts.tls_verify {
            Some(v) => !v,
            None => insecure,
        };
        let tls = crate::tls::client_config(host, &opts.certs_dir, !insecure)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(USER_AGENT)
            .connect_timeout(opts.timeouts.connect)
            .read_timeout(opts.timeouts.idle)
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true)
            .http1_only()
            .no_proxy()
            .build()
            .map_err(|e| Error::registry(host, format!("HTTP client: {e}")))?;
        let creds = match &opts.creds_override {
            Some(c) => Some(c.clone()),
            None => opts.credentials.lookup(host, repository)?,
        };
        // docker.io's API lives on another host.
        Ok(RegistryClient {
            host: host.to_string(),
            timeouts: opts.timeouts,
            http,
            scheme: Mutex::new(None),
            allow_http: insecure,
            creds,
            token: opts.token.clone(),
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn api_host(&self) -> &str {
        if self.host == crate::reference::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.host
        }
    }

    fn err(&self, why: impl std::fmt::Display) -> Error {
        Error::registry(&self.host, why)
    }

    /// Settles the scheme with a GET /v2/ (HTTPS first; plain HTTP only for
    /// insecure registries) and learns the auth challenge.
    pub async fn ping(&self) -> Result<()> {
        if self.scheme.lock().unwrap().is_some() {
            return Ok(());
        }
        let schemes: &[&'static str] = if self.allow_http {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut last = None;
        for &scheme in schemes {
            let url = format!("{scheme}://{}/v2/", self.api_host());
            // HTTPS to a plain-HTTP registry fails at once and for good:
            // when HTTP may follow, one try is enough.
            let attempt = if scheme == "https" && self.allow_http {
                self.http.get(&url).send().await
            } else {
                self.with_retries(|| self.http.get(&url).send()).await
            };
            match attempt {
                Ok(resp) => {
                    *self.scheme.lock().unwrap() = Some(scheme);
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        self.learn_challenge(&resp);
                    }
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        if !self.allow_http && self.speaks_plain_http().await {
            return Err(self.err(format!(
                "pinging over HTTPS: server gave HTTP response to HTTPS client; to allow plain HTTP, pass --tls-verify=false or set insecure = true for {} in registries.conf",
                self.host
            )));
        }
        Err(self.err(format!(
            "cannot reach the registry: {}",
            last.map(|e| error_chain(&e)).unwrap_or_default()
        )))
    }

    /// Whether the host is a registry on plain HTTP, asked only after
    /// HTTPS failed and only to word the error (the answer is never used):
    /// a TLS handshake met by an HTTP reply fails with an opaque "corrupt
    /// message", which says nothing about the fix. A TLS server answers
    /// plain HTTP too, with a 400, so only a registry's answer to /v2/
    /// (200, 401, or its API version header) counts.
    async fn speaks_plain_http(&self) -> bool {
        let url = format!("http://{}/v2/", self.api_host());
        match self.http.get(&url).send().await {
            Ok(r) => {
                r.status().is_success()
                    || r.status() == StatusCode::UNAUTHORIZED
                    || r.headers().contains_key("docker-distribution-api-version")
            }
            Err(_) => false,
        }
    }

    async fn with_retries<F, Fut>(&self, mut f: F) -> Result<Response, reqwest::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Response, reqwest::Error>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if attempt + 1 < ATTEMPTS && retriable(&e) => {}
                Ok(r) if attempt + 1 < ATTEMPTS && retriable_status(r.status()) => {}
                other => return other,
            }
            backoff(attempt).await;
            attempt += 1;
        }
    }

    fn learn_challenge(&self, resp: &Response) {
        for v in resp.headers().get_all(reqwest::header::WWW_AUTHENTICATE) {
            if let Some(c) = v.to_str().ok().and_then(parse_challenge) {
                *self.challenge.lock().unwrap() = Some(c);
                return;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        let scheme = self.scheme.lock().unwrap().unwrap_or("https");
        format!("{scheme}://{}{path}", self.api_host())
    }

    /// Sends a request with auth and retries: a 401 gets a token for
    /// `scopes` (once), connection errors, 429 and 5xx are retried with
    /// backoff. The body is cloned per attempt, so it is kept small
    /// (manifests, upload chunks).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
        scopes: &[String],
    ) -> Result<Response> {
        self.ping().await?;
        let url = self.url(path);
        let key = scopes.join(" ");
        let mut authed_once = false;
        let mut attempt = 0;
        loop {
            let auth = self.tokens.lock().unwrap().get(&key).cloned();
            let mut req = self
                .http
                .request(method.clone(), &url)
                .headers(headers.clone());
            if let Some(a) = &auth {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let result = req.send().await;
            match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authed_once => {
                    self.learn_challenge(&resp);
                    self.authenticate(scopes).await?;
                    authed_once = true;
                    continue;
                }
                Ok(resp) if retriable_status(resp.status()) && attempt + 1 < ATTEMPTS => {}
                Ok(resp) => return Ok(resp),
                Err(e) if retriable(&e) && attempt + 1 < ATTEMPTS => {}
                Err(e) => return Err(self.err(format!("{method} {url}: {}", error_chain(&e)))),
            }
            backoff(attempt).await;
            attempt += 1;
        }
    }

    /// Gets an Authorization value for `scopes` from the challenge.
    async fn authenticate(&self, scopes: &[String]) -> Result<()> {
        let challenge = self.challenge.lock().unwrap().clone();
        let key = scopes.join(" ");
        let value = match (challenge, &self.token) {
            (None, _) => {
                return Err(self.err("401 Unauthorized without a WWW-Authenticate challenge"));
            }
            (Some(Challenge::Basic), Some(_)) => {
                return Err(self
                    .err("the registry asks for a username and password, and a token was given"));
            }
            (Some(Challenge::Bearer { .. }), Some(Token::Registry(t))) => format!("Bearer {t}"),
            (Some(Challenge::Basic), None) => {
                let c = self.creds.as_ref().ok_or_else(|| {
                    self.err(format!(
                        "authentication required: run `berth login {}`",
                        self.host
                    ))
                })?;
                basic(c)
            }
            (Some(Challenge::Bearer { realm, service }), _) => {
                let mut q: Vec<(&str, &str)> = Vec::new();
                if let Some(s) = &service {
                    q.push(("service", s));
                }
                for s in scopes {
                    q.push(("scope", s));
                }
                let query: Vec<String> = q
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect();
                let req = match &self.token {
                    // OAuth2's refresh grant: a POSTed form, the scopes in
                    // one space-separated value.
                    Some(Token::Identity(t)) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token".to_string()),
                            ("refresh_token", t.clone()),
                            ("client_id", "berth".to_string()),
                            ("scope", scopes.join(" ")),
                        ];
                        if let Some(s) = &service {
                            form.push(("service", s.clone()));
                        }
                        let body: Vec<String> = form
                            .iter()
                            .map(|(k, v)| format!("{k}={}", urlencode(v)))
                            .collect();
                        self.http
                            .post(&realm)
                            .header(
                                reqwest::header::CONTENT_TYPE,
                                "application/x-www-form-urlencoded",
                            )
                            .body(body.join("&"))
                    }
                    _ => {
                        let sep = if realm.contains('?') { '&' } else { '?' };
                        let url = format!("{realm}{sep}{}", query.join("&"));
                        let mut req = self.http.get(&url);
                        if let Some(c) = &self.creds {
                            req = req.header(reqwest::header::AUTHORIZATION, basic(c));
                        }
                        req
                    }
                };
                let resp = self
                    .with_retries(|| {
                        req.try_clone()
                            .expect("token request has no streaming body")
                            .send()
                    })
                    .await
                    .map_err(|e| self.err(format!("token from {realm}: {}", error_chain(&e))))?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let hint = if self.creds.is_none() {
                        format!(" (no credentials: run `berth login {}`)", self.host)
                    } else {
                        " (check the credentials)".into()
                    };
                    return Err(self.err(format!("token from {realm}: {status}{hint}")));
                }
                #[derive(serde::Deserialize)]
                struct Answer {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = read_limited(resp, 1 << 20, "token")
                    .await
                    .map_err(|e| self.err(e))?;
                let t: Answer = serde_json::from_slice(&body)
                    .map_err(|e| self.err(format!("token from {realm}: {e}")))?;
                let t = t.token.or(t.access_token).ok_or_else(|| {
                    self.err(format!("token from {realm}: no token in the answer"))
                })?;
                format!("Bearer {t}")
            }
        };
        self.tokens.lock().unwrap().insert(key, value);
        Ok(())
    }

    /// Checks credentials: GET /v2/ authenticated (`berth login`).
    pub async fn check_login(&self) -> Result<()> {
        let resp = self
            .send(Method::GET, "/v2/", HeaderMap::new(), None, &[])
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.err("login failed: 401 Unauthorized (wrong username or password?)"));
        }
        if !resp.status().is_success() {
            return Err(self.err(format!("login failed: {}", resp.status())));
        }
        Ok(())
    }

    /// Fails with the registry's own error text for a non-success status.
    pub async fn check(&self, resp: Response, what: &str) -> Result<Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = read_prefix(resp, MAX_ERROR_BODY).await;
        Err(self.err(format!(
            "{what}: {status}{}",
            registry_message(&String::from_utf8_lossy(&body))
        )))
    }
}

/// Error bodies are a few hundred bytes of JSON; what a server sends
/// beyond this is not read (an endless body must not hold a pull).
pub const MAX_ERROR_BODY: usize = 64 << 10;

/// Up to `max` bytes of a body; the rest is dropped with the connection.
async fn read_prefix(mut resp: Response, max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < max {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c[..c.len().min(max - buf.len())]),
            _ => break,
        }
    }
    buf
}

pub fn scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
    h
}

fn retriable(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

fn retriable_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

pub async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
}

/// `60 s`, `1.5 s`.
fn humantime_secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The `errors[].message` of a distribution-spec error body.
fn registry_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_str::<Errs>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let parts: Vec<String> = e
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.code.as_deref().unwrap_or(""),
                        e.message.as_deref().unwrap_or("")
                    )
                    .trim()
                    .to_string()
                })
                .collect();
            format!(" ({})", parts.join("; "))
        }
        _ => String::new(),
    }
}

fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
    })
}

/// `k="v", k2=v2` (quoted values may hold commas).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = s[ks..i].trim().to_ascii_lowercase();
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                val.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let vs = i.min(b.len());
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i.min(b.len())].trim().to_string();
        }
        if !key.is_empty() {
            out.insert(key, val);
        }
    }
    out
}

/// What a manifest request accepts, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1";

/// A manifest body and what the registry said about it.
pub struct FetchedManifest {
    pub body: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

pub const MAX_MANIFEST: usize = 4 << 20;

impl RegistryClient {
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let what = format!("manifest {repository}:{reference}");
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{repository}/manifests/{reference}"),
                header("accept", MANIFEST_ACCEPT),
                None,
                &[scope(repository, "pull")],
            )
            .await?;
        let resp = self.check(resp, &what).await?;
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let body = read_limited(resp, MAX_MANIFEST, &what)
            .await
            .map_err(|e| self.err(e))?;
        let digest = Digest::of(&body);
        if let Ok(d) = reference.parse::<Digest>()
            && d != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("{}/{what}", self.host),
                expected: d.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(FetchedManifest {
            body,
            media_type,
            digest,
        })
    }

    /// A small blob (an image config), read whole and verified.
    pub async fn get_blob_bytes(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Bytes> {
        let what = format!("blob {digest} of {repository}");
        if size > MAX_MANIFEST as u64 * 8 {
            return Err(self.err(format!(
                "{what}: declared size {size} is too large for a config"
            )));
        }
        let mut resp = self.blob_response(repository, digest, 0).await?.0;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.body_error(digest, &e))?
        {
            if (body.len() + chunk.len()) as u64 > size {
                return Err(crate::ingest::too_long(digest, size));
            }
            body.extend_from_slice(&chunk);
        }
        if (body.len() as u64) < size {
            return Err(crate::ingest::too_short(digest, body.len() as u64, size));
        }
        let actual = Digest::of(&body);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(body.into())
    }

    /// What a failed read of blob `d`'s body was, naming the blob: a
    /// silence longer than the idle timeout is called a stall.
    pub fn body_error(&self, d: &Digest, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return self.err(format!(
                "blob {d}: the download stalled (no data for {})",
                humantime_secs(self.timeouts.idle)
            ));
        }
        self.err(format!("blob {d}: {}", error_chain(e)))
    }

    /// GET of a blob from `offset`. Returns the response and the offset
    /// its body starts at: `offset`, or 0 when the registry ignored the
    /// Range or answered it from the start.
    pub async fn blob_response(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<(Response, u64)> {
        let headers = if offset > 0 {
            header("range", &format!("bytes={offset}-"))
        } else {
            HeaderMap::new()
        };
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{repository}/blobs/{digest}"),
                headers,
                None,
                &[scope(repository, "pull")],
            )
            .await?;
        if offset > 0 && resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Box::pin(self.blob_response(repository, digest, 0)).await;
        }
        let what = format!("blob {digest} of {repository}");
        let resp = self.check(resp, &what).await?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Ok((resp, 0));
        }
        // A 206 is only as good as its Content-Range: bytes from anywhere
        // else would be appended at the wrong place.
        let range = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        match range_start(&range) {
            Some(s) if s == offset || s == 0 => Ok((resp, s)),
            _ if offset > 0 => {
                drop(resp);
                Box::pin(self.blob_response(repository, digest, 0)).await
            }
            _ => Err(self.err(format!(
                "{what}: a partial answer ({range:?}) to a request for the whole blob"
            ))),
        }
    }
}

/// The first byte of `bytes FIRST-LAST/TOTAL`.
fn range_start(content_range: &str) -> Option<u64> {
    let rest = content_range.trim().strip_prefix("bytes ")?;
    let (first, rest) = rest.split_once('-')?;
    rest.split_once('/')?;
    first.trim().parse().ok()
}

pub(crate) async fn read_limited(
    mut resp: Response,
    max: usize,
    what: &str,
) -> Result<Bytes, String> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{what}: {}", error_chain(&e)))?
    {
        if buf.len() + chunk.len() > max {
            return Err(format!("{what}: larger than {max} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        ) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.docker.io/token");
                assert_eq!(service.as_deref(), Some("registry.docker.io"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-9/*"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start(""), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }

    #[test]
    fn registry_errors_are_quoted() {
        let m = registry_message(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(m, " (MANIFEST_UNKNOWN manifest unknown)");
        assert_eq!(registry_message("<html>"), "");
    }

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the fake registry answers a request with: a head, then a body
    /// of `body` repeated `times` times (u64::MAX: without end).
    struct Answer {
        head: String,
        body: Vec<u8>,
        times: u64,
    }

    /// A plain-HTTP server on 127.0.0.1 answering each request (its head,
    /// as text) with `answer`. Counts the body bytes it managed to send.
    async fn fake_registry(
        answer: impl Fn(&str) -> Answer + Send + Sync + 'static,
    ) -> (String, Arc<AtomicU64>, Arc<std::sync::Mutex<Vec<String>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = l.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let (s2, l2) = (sent.clone(), log.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = l.accept().await else {
                    return;
                };
                let (answer, sent, log) = (answer.clone(), s2.clone(), l2.clone());
                tokio::spawn(async move {
                    loop {
                        let mut head = Vec::new();
                        let mut b = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if c.read(&mut b).await.unwrap_or(0) == 0 {
                                return;
                            }
                            // A TLS hello: not for us.
                            if head.is_empty() && b[0] == 0x16 {
                                return;
                            }
                            head.push(b[0]);
                        }
                        let text = String::from_utf8_lossy(&head).into_owned();
                        log.lock().unwrap().push(text.clone());
                        let a = answer(&text);
                        if c.write_all(a.head.as_bytes()).await.is_err() {
                            return;
                        }
                        for _ in 0..a.times {
                            if c.write_all(&a.body).await.is_err() {
                                return;
                            }
                            sent.fetch_add(a.body.len() as u64, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        (host, sent, log)
    }

    fn client(host: &str) -> RegistryClient {
        let d = tempfile::tempdir().unwrap();
        let opts = TransportOptions {
            certs_dir: d.path().to_path_buf(),
            tls_verify: Some(false),
            credentials: CredentialStore::default(),
            creds_override: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            token: None,
            timeouts: Timeouts::default(),
        };
        RegistryClient::new(host, true, "r", &opts).unwrap()
    }

    fn ok(text: &str) -> Answer {
        Answer {
            head: format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len()),
            body: text.as_bytes().to_vec(),
            times: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endless_error_body_is_cut_at_its_cap() {
        let (host, sent, _) = fake_registry(|req| {
            if req.starts_with("GET /v2/ ") {
                return ok("{}");
            }
            // An error whose chunked body never ends.
            let mut chunk = format!("{:x}\r\n", 8192).into_bytes();
            chunk.extend_from_slice(&[b'x'; 8192]);
            chunk.extend_from_slice(b"\r\n");
            Answer {
                head: "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                body: chunk,
                times: u64::MAX,
            }
        })
        .await;
        let c = client(&host);
        let d = Digest::of(b"blob");
        let err = tokio::time::timeout(Duration::from_secs(30), c.blob_response("r", &d, 0))
            .await
            .expect("an endless error body holds the request")
            .expect_err("a 404 is an error");
        let err = err.to_string();
        assert!(err.contains("404") && err.contains(d.as_str()), "{err}");
        // What was read is what the socket buffers held besides the cap.
        let n = sent.load(Ordering::Relaxed);
        assert!(n < 64 << 20, "{n} bytes of error body were taken");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partial_answer_from_elsewhere_is_not_taken_as_the_rest() {
        let blob = b"0123456789abcdefghij".to_vec();
        let b2 = blob.clone();
        let (host, _, log) = fake_registry(move |req| {
            if req.starts_with("GET /v2/ ") {
                return ok("{}");
            }
            let has_range = req.to_ascii_lowercase().contains("range: bytes=");
            if has_range {
                // Asked for 10-, answers 5-: the wrong place.
                let part = &b2[5..];
                Answer {
                    head: format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-19/20\r\nContent-Length: {}\r\n\r\n",
                        part.len()
                    ),
                    body: part.to_vec(),
                    times: 1,
                }
            } else {
                Answer {
                    head: format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b2.len()),
                    body: b2.clone(),
                    times: 1,
                }
            }
        })
        .await;
        let c = client(&host);
        let d = Digest::of(&blob);
        let (mut resp, start) = c.blob_response("r", &d, 10).await.unwrap();
        assert_eq!(start, 0, "the body starts at 0, not where it was asked");
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        assert_eq!(body, blob);
        let reqs = log.lock().unwrap().clone();
        let blob_reqs: Vec<_> = reqs.iter().filter(|r| r.contains("/blobs/")).collect();
        assert_eq!(blob_reqs.len(), 2, "{reqs:#?}");
        assert!(
            !blob_reqs[1].to_ascii_lowercase().contains("range:"),
            "{reqs:#?}"
        );
    }
}
