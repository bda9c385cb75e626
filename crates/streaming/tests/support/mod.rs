//! Test support: a scripted backend, a server on a loopback port, and a
//! small SPDY client of our own (the real one is client-go; see
//! goclient.rs).

#![allow(dead_code)]

pub mod spdy;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_streaming::{
    AsyncReadWrite, AttachReq, Backend, BoxFuture, Config, ExecReq, Server, Streams, TermSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Runs commands by name:
/// - `line CODE`: reads stdin to a newline, writes it to stdout and
///   `e:` + it to stderr, exits CODE;
/// - `cat CODE`: copies stdin to stdout until end-of-file, exits CODE;
/// - `exit CODE`: exits at once;
/// - `resize N`: writes each of the first N sizes as `WxH\n`, exits 0;
/// - `big N`: writes N bytes to stdout, exits 0;
/// - `fail`: cannot run;
/// - `hang`: never ends (counted in `live` until dropped).
#[derive(Default)]
pub struct TestBackend {
    pub resizes: Mutex<Vec<TermSize>>,
    pub live: Arc<AtomicUsize>,
    pub calls: AtomicUsize,
}

struct LiveGuard(Arc<AtomicUsize>);
impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

impl TestBackend {
    fn run(
        self: &Arc<Self>,
        cmd: Vec<String>,
        mut io: Streams,
    ) -> BoxFuture<'static, Result<i32, String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(self.live.clone());
        Box::pin(async move {
            let _guard = guard;
            let arg = |i: usize| cmd.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            match cmd.first().map(String::as_str) {
                Some("line") => {
                    let mut line = Vec::new();
                    let stdin = io.stdin.as_mut().expect("stdin");
                    let mut b = [0u8; 1];
                    while stdin.read(&mut b).await.map_err(|e| e.to_string())? == 1 {
                        line.push(b[0]);
                        if b[0] == b'\n' {
                            break;
                        }
                    }
                    if let Some(out) = io.stdout.as_mut() {
                        out.write_all(&line).await.map_err(|e| e.to_string())?;
                    }
                    if let Some(err) = io.stderr.as_mut() {
                        err.write_all(b"e:").await.map_err(|e| e.to_string())?;
                        err.write_all(&line).await.map_err(|e| e.to_string())?;
                    }
                    Ok(arg(1) as i32)
                }
                Some("cat") => {
                    let mut stdin = io.stdin.take().expect("stdin");
                    let mut out = io.stdout.take().expect("stdout");
                    tokio::io::copy(&mut stdin, &mut out)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(arg(1) as i32)
                }
                Some("exit") => Ok(arg(1) as i32),
                Some("resize") => {
                    let mut rx = io.resize.take().expect("resize");
                    let mut out = io.stdout.take().expect("stdout");
                    for _ in 0..arg(1) {
                        let Some(s) = rx.recv().await else { break };
                        me.resizes.lock().unwrap().push(s);
                        out.write_all(format!("{}x{}\n", s.width, s.height).as_bytes())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(0)
                }
                Some("big") => {
                    let mut out = io.stdout.take().expect("stdout");
                    out.write_all(&pattern(arg(1) as usize))
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(0)
                }
                Some("fail") => Err("no such container".into()),
                Some("hang") => std::future::pending().await,
                other => Err(format!("unknown test command {other:?}")),
            }
        })
    }
}

pub struct Shared(pub Arc<TestBackend>);

impl Backend for Shared {
    fn exec(&self, req: ExecReq, io: Streams) -> BoxFuture<'static, Result<i32, String>> {
        self.0.run(req.cmd, io)
    }

    fn attach(&self, _req: AttachReq, io: Streams) -> BoxFuture<'static, Result<(), String>> {
        let f = self.0.run(vec!["line".into(), "0".into()], io);
        Box::pin(async move { f.await.map(|_| ()) })
    }

    fn port_forward(
        &self,
        _sandbox: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, String>> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| format!("connecting to port {port}: {e}"))?;
            Ok(Box::new(s) as Box<dyn AsyncReadWrite>)
        })
    }
}

pub struct Harness {
    pub server: Server,
    pub addr: std::net::SocketAddr,
    pub backend: Arc<TestBackend>,
    serve: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

/// A server on a loopback port, with `tweak` applied to its config.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Harness {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(format!("http://{addr}"));
    tweak(&mut config);
    let server = Server::new(config);
    let backend = Arc::new(TestBackend::default());
    let s = server.clone();
    let b: Arc<dyn Backend> = Arc::new(Shared(backend.clone()));
    let serve = tokio::spawn(async move {
        s.serve(listener, b).await.unwrap();
    });
    Harness {
        server,
        addr,
        backend,
        serve,
    }
}

impl Harness {
    pub fn exec(&self, cmd: &[&str], tty: bool, stdin: bool, stdout: bool, stderr: bool) -> String {
        self.server
            .request_exec(ExecReq {
                container_id: "c1".into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout,
                stderr,
            })
            .unwrap()
    }

    pub fn port_forward(&self, ports: &[u16]) -> String {
        self.server
            .request_port_forward(berth_streaming::PortForwardReq {
                pod_sandbox_id: "pod1".into(),
                ports: ports.to_vec(),
            })
            .unwrap()
    }

    /// Waits until no connection is being served and no backend call is
    /// running; panics after `within`.
    pub async fn settled(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let conns = self.server.active_connections();
            let live = self.backend.live.load(Ordering::SeqCst);
            if conns == 0 && live == 0 {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("still {conns} connections and {live} backend calls after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Alive tasks on this test's runtime: the serve loop is one.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// A loopback TCP server that echoes each connection back, prefixed, and
/// closes when the client half-closes (or after `first_only`, after the
/// first read).
pub async fn echo_server(first_only: bool) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    if s.write_all(&reply).await.is_err() || first_only {
                        break;
                    }
                }
            });
        }
    });
    (port, h)
}

/// The path part of a URL.
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}
