//! A minimal SPDY/3 client written for the tests, apart from the crate's
//! own framing so that the two check each other.

use std::collections::HashMap;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

fn dictionary() -> Vec<u8> {
    let words = "options head post put delete trace accept accept-charset accept-encoding accept-language \
        accept-ranges age allow authorization cache-control connection content-base content-encoding \
        content-language content-length content-location content-md5 content-range content-type date etag \
        expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since \
        last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer \
        retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate \
        method get status 200_OK version HTTP/1.1 url public set-cookie keep-alive origin";
    let mut d = Vec::new();
    for w in words.split_whitespace() {
        let w = w.replace('_', " ");
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb \
Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,\
image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,\
publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    assert_eq!(d.len(), 1423, "the test client's dictionary");
    d
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub client: Option<Client>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends the upgrade request and reads the response head.
pub async fn connect(addr: std::net::SocketAddr, path: &str, protocols: &[&str]) -> Response {
    let sock = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = sock.into_split();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    w.write_all(req.as_bytes()).await.unwrap();
    let mut r = BufReader::new(r);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = r.read_u8().await.expect("response head");
        head.push(b);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let client = (status == 101).then(|| Client::new(BufReader::new(Box::new(r)), Box::new(w)));
    Response {
        status,
        headers,
        client,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Reply(u32),
    Data(u32, Vec<u8>, bool),
    Rst(u32, u32),
    Ping(u32),
    GoAway(u32, u32),
    WindowUpdate(u32, u32),
    Other(u16),
}

pub struct Client {
    r: Reader,
    pub w: Writer,
    comp: Compress,
    decomp: Decompress,
    dict: Vec<u8>,
    next_id: u32,
}

impl Client {
    /// A client over any byte stream already past its upgrade.
    pub fn new(r: Reader, w: Writer) -> Client {
        let dict = dictionary();
        let mut comp = Compress::new(Compression::best(), true);
        comp.set_dictionary(&dict).unwrap();
        Client {
            r,
            w,
            comp,
            decomp: Decompress::new(true),
            dict,
            next_id: 1,
        }
    }

    fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 1024);
        self.comp
            .compress_vec(block, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.len() < out.capacity());
        out
    }

    pub fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut b = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            b.extend_from_slice(&(k.len() as u32).to_be_bytes());
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        b
    }

    fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80, 0x03];
        f.extend_from_slice(&kind.to_be_bytes());
        f.push(flags);
        f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(body);
        f
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    /// SYN_STREAM with these headers; its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        self.open_with_id(id, &Self::header_block(headers)).await;
        id
    }

    /// SYN_STREAM with a given id and uncompressed header block.
    pub async fn open_with_id(&mut self, id: u32, block: &[u8]) {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let z = self.compress(block);
        body.extend_from_slice(&z);
        let f = Self::control(1, 0, &body);
        self.raw(&f).await;
    }

    pub async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        let mut f = id.to_be_bytes().to_vec();
        f.push(if fin { 1 } else { 0 });
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(data);
        self.raw(&f).await;
    }

    pub async fn rst(&mut self, id: u32, status: u32) {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&status.to_be_bytes());
        self.raw(&Self::control(3, 0, &body)).await;
    }

    pub async fn ping(&mut self, id: u32) {
        self.raw(&Self::control(6, 0, &id.to_be_bytes())).await;
    }

    pub async fn initial_window(&mut self, size: u32) {
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend_from_slice(&7u32.to_be_bytes());
        body.extend_from_slice(&size.to_be_bytes());
        self.raw(&Self::control(4, 0, &body)).await;
    }

    pub async fn window_update(&mut self, id: u32, delta: u32) {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&delta.to_be_bytes());
        self.raw(&Self::control(9, 0, &body)).await;
    }

    fn decompress(&mut self, z: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let before = self.decomp.total_in();
        loop {
            let done = (self.decomp.total_in() - before) as usize;
            match self
                .decomp
                .decompress_vec(&z[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.decomp.set_dictionary(&self.dict).unwrap();
                    continue;
                }
                Err(e) => panic!("server header block: {e}"),
            }
            if (self.decomp.total_in() - before) as usize == z.len() {
                return out;
            }
        }
    }

    /// The next frame, or `None` at end-of-file or a reset connection.
    pub async fn next(&mut self) -> Option<Ev> {
        let mut head = [0u8; 8];
        if self.r.read_exact(&mut head).await.is_err() {
            return None;
        }
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await.ok()?;
        let word = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        if head[0] & 0x80 == 0 {
            return Some(Ev::Data(word(&head, 0), body, head[4] & 1 == 1));
        }
        assert_eq!(
            u16::from_be_bytes([head[0] & 0x7f, head[1]]),
            3,
            "server speaks SPDY/3"
        );
        let kind = u16::from_be_bytes([head[2], head[3]]);
        Some(match kind {
            2 => {
                let block = self.decompress(&body[4..]);
                assert_eq!(block, [0, 0, 0, 0], "SYN_REPLY carries no headers");
                Ev::Reply(word(&body, 0))
            }
            3 => Ev::Rst(word(&body, 0), word(&body, 4)),
            6 => Ev::Ping(word(&body, 0)),
            7 => Ev::GoAway(word(&body, 0), word(&body, 4)),
            9 => Ev::WindowUpdate(word(&body, 0), word(&body, 4)),
            other => Ev::Other(other),
        })
    }

    /// The next frame within `t`; panics on a timeout.
    pub async fn next_within(&mut self, t: Duration) -> Option<Ev> {
        tokio::time::timeout(t, self.next())
            .await
            .expect("a frame in time")
    }
}

/// Everything a server sent on a connection, by stream.
#[derive(Debug, Default)]
pub struct Transcript {
    pub replies: Vec<u32>,
    pub data: HashMap<u32, Vec<u8>>,
    pub fins: Vec<u32>,
    pub rsts: Vec<(u32, u32)>,
    pub goaway: Option<(u32, u32)>,
    pub pings: Vec<u32>,
    pub window_updates: Vec<(u32, u32)>,
}

impl Transcript {
    pub fn record(&mut self, ev: Ev) {
        match ev {
            Ev::Reply(id) => self.replies.push(id),
            Ev::Data(id, d, fin) => {
                self.data.entry(id).or_default().extend_from_slice(&d);
                if fin {
                    self.fins.push(id);
                }
            }
            Ev::Rst(id, s) => self.rsts.push((id, s)),
            Ev::GoAway(last, s) => self.goaway = Some((last, s)),
            Ev::Ping(id) => self.pings.push(id),
            Ev::WindowUpdate(id, d) => self.window_updates.push((id, d)),
            Ev::Other(_) => {}
        }
    }

    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.data.get(&id).map(Vec::as_slice).unwrap_or(&[])).into_owned()
    }
}

/// Reads until the server closes the connection (within `t`), then
/// closes ours, as client-go does when a session is over.
pub async fn read_all(mut c: Client, t: Duration) -> Transcript {
    let mut tr = Transcript::default();
    tokio::time::timeout(t, async {
        while let Some(ev) = c.next().await {
            tr.record(ev);
        }
    })
    .await
    .expect("the server closes the connection in time");
    tr
}
