//! The engine side of the streaming server: exec and attach sessions
//! through the container's monitor (its socket, driven asynchronously
//! here), and port forwarding by a TCP connection made inside the pod's
//! network namespace.

use std::sync::Arc;
use std::time::Duration;

use berth_engine::{Engine, ExecRequest};
use berth_monitor::frame::{self, Frame};
use berth_streaming::{AsyncReadWrite, AttachReq, Backend, BoxFuture, ExecReq, Streams, TermSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

pub struct EngineBackend {
    pub engine: Arc<Engine>,
}

/// How long connecting inside a pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Backend for EngineBackend {
    fn exec(&self, req: ExecReq, io: Streams) -> BoxFuture<'static, Result<i32, String>> {
        let engine = self.engine.clone();
        Box::pin(async move {
            let r = ExecRequest {
                args: req.cmd,
                tty: req.tty,
                interactive: req.stdin,
                ..ExecRequest::default()
            };
            let id = req.container_id;
            let session = tokio::task::spawn_blocking(move || engine.exec_start(&id, &r))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let client = session.client.ok_or("the exec session has no connection")?;
            match pump(client, io).await? {
                Some(code) => Ok(code),
                None => Err("the container's monitor went away before the command ended".into()),
            }
        })
    }

    fn attach(&self, req: AttachReq, io: Streams) -> BoxFuture<'static, Result<(), String>> {
        let socket = self.engine.attach_socket(&req.container_id);
        Box::pin(async move {
            let client =
                tokio::task::spawn_blocking(move || berth_monitor::client::Client::attach(&socket))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            pump(client, io).await.map(drop)
        })
    }

    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, String>> {
        let engine = self.engine.clone();
        Box::pin(async move {
            let stream =
                tokio::task::spawn_blocking(move || connect_in_pod(&engine, &pod_sandbox_id, port))
                    .await
                    .map_err(|e| e.to_string())??;
            stream.set_nonblocking(true).map_err(|e| e.to_string())?;
            let s = tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())?;
            Ok(Box::new(s) as Box<dyn AsyncReadWrite>)
        })
    }
}

/// A TCP connection to `port` on the pod's loopback, made by a thread
/// that joined the pod's network namespace (the socket stays in it).
fn connect_in_pod(engine: &Engine, pod: &str, port: u16) -> Result<std::net::TcpStream, String> {
    let p = engine.pod(pod).map_err(|e| e.to_string())?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let connect = move || {
        std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("connect to port {port} in pod {}: {e}", p.id))
    };
    match p.netns.clone() {
        Some(ns) => berth_engine::berth_network::netns::run_in(std::path::Path::new(&ns), connect)
            .map_err(|e| e.to_string())?,
        None => connect(),
    }
}

/// Carries a monitor session between the client's streams and the
/// monitor's socket until the monitor says the process exited (its code)
/// or closes the connection (None). Everything it starts ends with it:
/// when the client goes away this future is dropped, and with it the
/// socket, which ends the session on the monitor's side.
async fn pump(client: berth_monitor::client::Client, io: Streams) -> Result<Option<i32>, String> {
    let (std_sock, mut dec) = client.into_parts();
    std_sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let sock = UnixStream::from_std(std_sock).map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = sock.into_split();
    let Streams {
        stdin,
        mut stdout,
        mut stderr,
        resize,
    } = io;

    // One writer to the socket; stdin and resizes feed it. It keeps the
    // write half open when they are done: dropping it would shut the
    // socket down for writing, which the monitor takes for the client
    // leaving, and it would end the session before the exit code is sent.
    let (tx, mut rx) = mpsc::channel::<Frame>(16);
    let writer = async move {
        let mut wire = Vec::new();
        while let Some(f) = rx.recv().await {
            wire.clear();
            frame::encode(&f, &mut wire);
            if wr.write_all(&wire).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
        drop(wr);
    };
    let stdin_task = {
        let tx = tx.clone();
        async move {
            let Some(mut input) = stdin else { return };
            let mut buf = vec![0u8; frame::MAX_PAYLOAD];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Frame::Stdin(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Frame::CloseStdin).await;
        }
    };
    let resize_task = {
        let tx = tx.clone();
        async move {
            let Some(mut sizes) = resize else { return };
            while let Some(TermSize { width, height }) = sizes.recv().await {
                let f = Frame::Resize {
                    rows: height,
                    cols: width,
                };
                if tx.send(f).await.is_err() {
                    return;
                }
            }
        }
    };
    drop(tx);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(f) = dec.next_frame().map_err(|e| e.to_string())? {
                match f {
                    Frame::Stdout(d) => {
                        if let Some(out) = stdout.as_mut() {
                            out.write_all(&d).await.map_err(|e| e.to_string())?;
                        }
                    }
                    Frame::Stderr(d) => {
                        if let Some(err) = stderr.as_mut() {
                            err.write_all(&d).await.map_err(|e| e.to_string())?;
                        }
                    }
                    Frame::Exit(code) => {
                        flush(&mut stdout, &mut stderr).await;
                        return Ok(Some(code));
                    }
                    Frame::TimedOut => {}
                    other => return Err(format!("the monitor sent {other:?}")),
                }
            }
            let n = rd.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                flush(&mut stdout, &mut stderr).await;
                return Ok(None);
            }
            dec.push(&buf[..n]);
        }
    };
    // The reader decides the outcome; the others end with the socket.
    tokio::pin!(reader);
    let background = async {
        tokio::join!(writer, stdin_task, resize_task);
    };
    tokio::select! {
        r = &mut reader => r,
        _ = background => unreachable!("the writer never completes"),
    }
}

async fn flush(
    out: &mut Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    err: &mut Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
) {
    for w in [out, err].into_iter().flatten() {
        let _ = w.flush().await;
    }
}
