//! The HTTP side: handing out URLs, accepting connections, routing
//! `/exec/<token>`, `/attach/<token>` and `/portforward/<token>`, and
//! upgrading them to SPDY or WebSocket.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::backend::{AttachReq, Backend, BoxFuture, ExecReq, PortForwardReq};
use crate::config::Config;
use crate::remotecommand::{self, Op};
use crate::tokens::{TokenCache, TokenError};
use crate::{portforward, websocket};

const PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
const ACCEPTED_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";
const SPDY_31: &str = "SPDY/3.1";

/// Why a CRI request got no URL. berthd maps `InvalidArgument` to gRPC's
/// INVALID_ARGUMENT and `Token` to RESOURCE_EXHAUSTED (or INTERNAL).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("{0}")]
    InvalidArgument(&'static str),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What a token stands for.
enum Pending {
    Exec(ExecReq),
    Attach(AttachReq),
    PortForward(PortForwardReq),
}

struct Inner {
    config: Arc<Config>,
    base_url: String,
    prefix: String,
    tokens: TokenCache<Pending>,
    active: AtomicUsize,
}

/// The streaming server. Cheap to clone; clones share tokens.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    pub fn new(config: Config) -> Server {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        // Serve under the base URL's path, if it has one.
        let prefix = base_url
            .parse::<http::Uri>()
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Server {
            inner: Arc::new(Inner {
                tokens: TokenCache::new(config.token_ttl, config.max_tokens),
                config: Arc::new(config),
                base_url,
                prefix,
                active: AtomicUsize::new(0),
            }),
        }
    }

    /// The URL for an exec (what CRI's `ExecResponse.url` carries).
    pub fn request_exec(&self, req: ExecReq) -> Result<String, RequestError> {
        check_streams(
            &req.container_id,
            req.tty,
            req.stdin,
            req.stdout,
            req.stderr,
        )?;
        if req.cmd.is_empty() {
            return Err(RequestError::InvalidArgument("cmd must not be empty"));
        }
        self.url("exec", Pending::Exec(req))
    }

    /// The URL for an attach.
    pub fn request_attach(&self, req: AttachReq) -> Result<String, RequestError> {
        check_streams(
            &req.container_id,
            req.tty,
            req.stdin,
            req.stdout,
            req.stderr,
        )?;
        self.url("attach", Pending::Attach(req))
    }

    /// The URL for a port forward.
    pub fn request_port_forward(&self, req: PortForwardReq) -> Result<String, RequestError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(RequestError::InvalidArgument(
                "missing required pod_sandbox_id",
            ));
        }
        if req.ports.contains(&0) {
            return Err(RequestError::InvalidArgument("port 0 cannot be forwarded"));
        }
        self.url("portforward", Pending::PortForward(req))
    }

    fn url(&self, kind: &str, pending: Pending) -> Result<String, RequestError> {
        let token = self.inner.tokens.insert(pending)?;
        Ok(format!("{}/{kind}/{token}", self.inner.base_url))
    }

    /// Connections being served right now (upgraded or not).
    pub fn active_connections(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Serves `listener` until an accept error that is not transient, or
    /// forever. Every connection runs on a task owned by this future:
    /// dropping it closes them all.
    pub async fn serve(
        &self,
        listener: TcpListener,
        backend: Arc<dyn Backend>,
    ) -> std::io::Result<()> {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((sock, peer)) => {
                        let active = self.inner.active.load(Ordering::SeqCst);
                        if active >= self.inner.config.max_connections {
                            warn!(%peer, active, "refusing a connection: at the connection limit");
                            continue;
                        }
                        let guard = ActiveGuard::new(self.inner.clone());
                        conns.spawn(serve_connection(sock, self.inner.clone(), backend.clone(), guard));
                    }
                    Err(e) if is_transient(&e) => {
                        // Out of descriptors and the like: back off rather
                        // than spin.
                        warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | OutOfMemory
    ) || matches!(e.raw_os_error(), Some(code) if code == 24 /* EMFILE */ || code == 23 /* ENFILE */ || code == 105 /* ENOBUFS */ || code == 12 /* ENOMEM */)
}

fn check_streams(
    container_id: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), RequestError> {
    if container_id.is_empty() {
        return Err(RequestError::InvalidArgument(
            "missing required container_id",
        ));
    }
    if tty && stderr {
        // With a tty the output is one stream; kubelet refuses this too.
        return Err(RequestError::InvalidArgument(
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(RequestError::InvalidArgument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

/// Counts a connection while it lives.
struct ActiveGuard(Arc<Inner>);

impl ActiveGuard {
    fn new(inner: Arc<Inner>) -> Self {
        inner.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(inner)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What to run on the connection once hyper has written the 101.
type UpgradeJob = Box<dyn FnOnce(hyper::upgrade::Upgraded) -> BoxFuture<'static, ()> + Send>;
type Upgrade = (hyper::upgrade::OnUpgrade, UpgradeJob);

async fn serve_connection(
    sock: TcpStream,
    inner: Arc<Inner>,
    backend: Arc<dyn Backend>,
    _guard: ActiveGuard,
) {
    let peer = sock.peer_addr().ok();
    let _ = sock.set_nodelay(true);
    // The upgraded protocol runs here, on this connection's task, after
    // hyper is done with the HTTP part: one task per connection, all of
    // it owned by `serve`.
    let slot: Arc<Mutex<Option<Upgrade>>> = Arc::default();
    let svc = {
        let slot = slot.clone();
        let inner = inner.clone();
        service_fn(move |req| {
            let resp = route(req, &inner, &backend, &slot);
            async move { Ok::<_, Infallible>(resp) }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(inner.config.header_read_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(sock), svc)
        .with_upgrades();
    // The HTTP part of a connection (keep-alive included) gets as long as
    // one request head may take; only an upgraded connection lives on.
    // (Keep-alive stays on: turning it off makes hyper answer the 101
    // with `Connection: close`, which client-go rejects.)
    match tokio::time::timeout(inner.config.header_read_timeout, conn).await {
        Ok(Err(e)) => debug!(?peer, "HTTP connection ended: {e}"),
        Ok(Ok(())) => {}
        Err(_) => {
            info!(
                ?peer,
                "HTTP connection took too long to ask for anything, closing it"
            );
            return;
        }
    }
    let upgrade = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((on_upgrade, job)) = upgrade {
        match on_upgrade.await {
            Ok(upgraded) => job(upgraded).await,
            Err(e) => info!(?peer, "upgrade did not complete: {e}"),
        }
    }
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    let mut msg = msg.into();
    msg.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(msg)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn route(
    mut req: Request<Incoming>,
    inner: &Arc<Inner>,
    backend: &Arc<dyn Backend>,
    slot: &Arc<Mutex<Option<Upgrade>>>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and POST");
    }
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix(inner.prefix.as_str()) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let mut parts = rest.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/')
    {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    // Used up by this request whatever happens next, as with kubelet.
    let pending = match (kind, inner.tokens.consume(token)) {
        ("exec", Some(Pending::Exec(r))) => Pending::Exec(r),
        ("attach", Some(Pending::Attach(r))) => Pending::Attach(r),
        ("portforward", Some(Pending::PortForward(r))) => Pending::PortForward(r),
        _ => {
            info!(
                kind,
                "streaming request with an unknown, expired or used token"
            );
            return plain(StatusCode::NOT_FOUND, "not found");
        }
    };
    let cfg = inner.config.clone();
    let backend = backend.clone();
    let headers = req.headers();
    let (resp, job): (Response<Full<Bytes>>, UpgradeJob) = if is_websocket(headers) {
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "WebSocket upgrade without Sec-WebSocket-Key",
            );
        };
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            != Some(b"13")
        {
            let mut r = plain(
                StatusCode::UPGRADE_REQUIRED,
                "only WebSocket version 13 is supported",
            );
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return r;
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let offered = header_list(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str());
        let exec = kind != "portforward";
        if !exec
            && offered
                .iter()
                .any(|p| p == websocket::SPDY_TUNNEL_PORT_FORWARD)
        {
            // SPDY carried in WebSocket messages: the SPDY port-forward
            // protocol, unchanged, over a byte stream made of the socket.
            let Pending::PortForward(r) = pending else {
                unreachable!("kind is portforward")
            };
            let job: UpgradeJob = Box::new(move |up| {
                Box::pin(async move {
                    let tunnel = websocket::Tunnel::accept(TokioIo::new(up), &cfg).await;
                    portforward::serve_spdy(tunnel, r, backend, cfg).await
                })
            });
            let mut r = switching("websocket");
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
            );
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(websocket::SPDY_TUNNEL_PORT_FORWARD),
            );
            let on_upgrade = hyper::upgrade::on(&mut req);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((on_upgrade, job));
            return r;
        }
        let protocol = match websocket::negotiate(&offered, exec) {
            Ok(p) => p,
            Err(e) => {
                warn!("{e}");
                return plain(StatusCode::BAD_REQUEST, e);
            }
        };
        let job: UpgradeJob = match pending {
            Pending::Exec(r) => ws_exec(protocol, Op::Exec(r), backend, cfg),
            Pending::Attach(r) => ws_exec(protocol, Op::Attach(r), backend, cfg),
            Pending::PortForward(r) => {
                let ports =
                    match ws_ports(req.uri().query(), &r.ports, inner.config.max_streams / 2) {
                        Ok(p) => p,
                        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
                    };
                Box::new(move |up| {
                    Box::pin(websocket::serve_port_forward(
                        TokioIo::new(up),
                        protocol,
                        r,
                        ports,
                        backend,
                        cfg,
                    ))
                })
            }
        };
        let mut r = switching("websocket");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
        if !protocol.name.is_empty() {
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol.name),
            );
        }
        (r, job)
    } else if is_spdy(headers) {
        let supported: &[&'static str] = if kind == "portforward" {
            &[portforward::PROTOCOL]
        } else {
            remotecommand::SPDY_PROTOCOLS
        };
        let offered = header_list(headers, PROTOCOL_VERSION);
        // The client's order decides, as in apimachinery's Handshake. No
        // header at all is a pre-negotiation client: protocol v1.
        let chosen = if offered.is_empty() {
            None
        } else {
            match offered
                .iter()
                .find_map(|o| supported.iter().find(|s| **s == o.as_str()))
            {
                Some(p) => Some(*p),
                None => {
                    let msg = format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
                    );
                    warn!("{msg}");
                    let mut r = plain(StatusCode::FORBIDDEN, msg);
                    for s in supported {
                        r.headers_mut()
                            .append(ACCEPTED_PROTOCOL_VERSIONS, HeaderValue::from_static(s));
                    }
                    return r;
                }
            }
        };
        let job: UpgradeJob = match pending {
            Pending::Exec(r) => spdy_exec(
                chosen.unwrap_or(remotecommand::V1),
                Op::Exec(r),
                backend,
                cfg,
            ),
            Pending::Attach(r) => spdy_exec(
                chosen.unwrap_or(remotecommand::V1),
                Op::Attach(r),
                backend,
                cfg,
            ),
            Pending::PortForward(r) => Box::new(move |up| {
                Box::pin(portforward::serve_spdy(TokioIo::new(up), r, backend, cfg))
            }),
        };
        let mut r = switching(SPDY_31);
        if let Some(p) = chosen {
            r.headers_mut()
                .insert(PROTOCOL_VERSION, HeaderValue::from_static(p));
        }
        (r, job)
    } else {
        return plain(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request (want Upgrade: SPDY/3.1 or websocket)",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((on_upgrade, job));
    resp
}

fn ws_exec(
    protocol: websocket::WsProtocol,
    op: Op,
    backend: Arc<dyn Backend>,
    cfg: Arc<Config>,
) -> UpgradeJob {
    Box::new(move |up| {
        Box::pin(websocket::serve_exec(
            TokioIo::new(up),
            protocol,
            op,
            backend,
            cfg,
        ))
    })
}

fn spdy_exec(
    protocol: &'static str,
    op: Op,
    backend: Arc<dyn Backend>,
    cfg: Arc<Config>,
) -> UpgradeJob {
    Box::new(move |up| {
        Box::pin(remotecommand::serve_spdy(
            TokioIo::new(up),
            protocol,
            op,
            backend,
            cfg,
        ))
    })
}

fn switching(upgrade: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    r.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(upgrade));
    r
}

/// Every comma-separated value of every `name` header, trimmed.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn connection_upgrade(headers: &HeaderMap) -> bool {
    header_list(headers, header::CONNECTION.as_str())
        .iter()
        .any(|v| v.eq_ignore_ascii_case("upgrade"))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    connection_upgrade(headers)
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn is_spdy(headers: &HeaderMap) -> bool {
    connection_upgrade(headers)
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("spdy/3.1"))
}

/// The ports a WebSocket port-forward serves: `?port=` (repeatable,
/// comma-separated, as kubelet reads it), else the CRI request's.
fn ws_ports(query: Option<&str>, requested: &[u16], max: usize) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        if k != "port" {
            continue;
        }
        for p in v.split("%2C").flat_map(|v| v.split(',')) {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("unable to parse {p:?} as a port")),
                Ok(port) => ports.push(port),
            }
        }
    }
    if ports.is_empty() {
        ports = requested.to_vec();
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    if ports.len() > max {
        return Err(format!(
            "{} ports asked for; at most {max} at once",
            ports.len()
        ));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query_or_the_request() {
        assert_eq!(
            ws_ports(Some("port=80&port=81,82"), &[9], 10).unwrap(),
            vec![80, 81, 82]
        );
        assert_eq!(ws_ports(Some("x=1"), &[9], 10).unwrap(), vec![9]);
        assert!(ws_ports(None, &[], 10).is_err());
        assert!(ws_ports(Some("port=0"), &[], 10).is_err());
        assert!(ws_ports(Some("port=http"), &[], 10).is_err());
        assert!(ws_ports(Some("port=1,2,3"), &[], 2).is_err());
    }

    #[test]
    fn requests_are_validated_like_kubelet() {
        let s = Server::new(Config::new("http://127.0.0.1:1/"));
        let exec = |tty, stdin, stdout, stderr| ExecReq {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty,
            stdin,
            stdout,
            stderr,
        };
        let url = s.request_exec(exec(false, true, true, true)).unwrap();
        assert!(url.starts_with("http://127.0.0.1:1/exec/"), "{url}");
        assert!(s.request_exec(exec(true, true, true, true)).is_err());
        assert!(s.request_exec(exec(false, false, false, false)).is_err());
        assert!(
            s.request_port_forward(PortForwardReq {
                pod_sandbox_id: String::new(),
                ports: vec![]
            })
            .is_err()
        );
    }
}
