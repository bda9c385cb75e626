//! Go gRPC clients of the Kubernetes 1.25 era (crictl 1.26 among them, and
//! kubelets before 1.26) send a unix socket's path as the HTTP/2
//! `:authority`; h2, under tonic, answers such a request with a stream reset
//! (PROTOCOL_ERROR), since a path is not an authority. containerd and CRI-O
//! (Go servers) accept it, so kubelet and crictl expect a CRI runtime to.
//!
//! [`AuthorityFix`] sits between the socket and the HTTP/2 server and
//! rewrites what the client sends: every header block is decoded (HPACK
//! state is per connection, so all of them must be) and re-encoded with
//! literals only, an unparsable `:authority` becoming `localhost`; every
//! other frame passes unchanged, streamed, without being buffered. The
//! server's HPACK table stays empty, which the protocol allows.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (RFC 9113, SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;
/// A header block larger than this closes the connection: CRI requests
/// carry a few short headers.
const MAX_BLOCK: usize = 1 << 20;

/// The client-to-server byte stream's rewriter; pure, so it is tested
/// without sockets.
pub(crate) struct Rewriter {
    preface_left: usize,
    /// Bytes of a frame that is passed through as it arrives.
    passing: usize,
    /// Bytes read but not yet a whole frame header or header frame.
    pending: Vec<u8>,
    /// A header block waiting for its CONTINUATION frames.
    block: Option<Block>,
    decoder: Decoder<'static>,
}

struct Block {
    stream: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            preface_left: PREFACE.len(),
            passing: 0,
            pending: Vec::new(),
            block: None,
            decoder: Decoder::new(),
        }
    }
}

impl Rewriter {
    /// Takes what the client sent and appends what the server is to read.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !input.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(input.len());
                let at = PREFACE.len() - self.preface_left;
                if input[..n] != PREFACE[at..at + n] {
                    return Err(bad("not an HTTP/2 connection preface"));
                }
                out.extend_from_slice(&input[..n]);
                self.preface_left -= n;
                input = &input[n..];
                continue;
            }
            if self.passing > 0 {
                let n = self.passing.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.passing -= n;
                input = &input[n..];
                continue;
            }
            // A frame header, then a header frame's payload, are gathered.
            let want = if self.pending.len() < FRAME_HEADER {
                FRAME_HEADER
            } else {
                FRAME_HEADER + frame_len(&self.pending)
            };
            let n = (want - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.pending.len() < want {
                continue;
            }
            let kind = self.pending[3];
            if want == FRAME_HEADER && kind != HEADERS && kind != CONTINUATION {
                if self.block.is_some() {
                    return Err(bad("a header block interrupted by another frame"));
                }
                out.extend_from_slice(&self.pending);
                self.passing = frame_len(&self.pending);
                self.pending.clear();
                continue;
            }
            if want == FRAME_HEADER && frame_len(&self.pending) > 0 {
                if frame_len(&self.pending) > MAX_BLOCK {
                    return Err(bad("a header frame over 1 MiB"));
                }
                continue; // gather the payload
            }
            let frame = std::mem::take(&mut self.pending);
            self.header_frame(&frame, out)?;
        }
        Ok(())
    }

    fn header_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream: [u8; 4] = frame[5..9].try_into().unwrap();
        let mut payload = &frame[FRAME_HEADER..];
        if kind == HEADERS {
            if self.block.is_some() {
                return Err(bad("a header block interrupted by another frame"));
            }
            if flags & PADDED != 0 {
                let pad = *payload
                    .first()
                    .ok_or_else(|| bad("a padded frame without padding"))?;
                if pad as usize + 1 > payload.len() {
                    return Err(bad("padding longer than the frame"));
                }
                payload = &payload[1..payload.len() - pad as usize];
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                let p = payload.get(..5).ok_or_else(|| bad("a short priority"))?;
                priority = Some(p.try_into().unwrap());
                payload = &payload[5..];
            }
            self.block = Some(Block {
                stream,
                flags,
                priority,
                fragment: Vec::new(),
            });
        }
        let block = self
            .block
            .as_mut()
            .filter(|b| b.stream == stream)
            .ok_or_else(|| bad("a CONTINUATION frame outside a header block"))?;
        if block.fragment.len() + payload.len() > MAX_BLOCK {
            return Err(bad("a header block over 1 MiB"));
        }
        block.fragment.extend_from_slice(payload);
        if flags & END_HEADERS != 0 {
            let block = self.block.take().unwrap();
            self.reencode(block, out)?;
        }
        Ok(())
    }

    fn reencode(&mut self, block: Block, out: &mut Vec<u8>) -> io::Result<()> {
        let headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| bad(format!("a header block HPACK cannot decode: {e:?}")))?;
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        for (name, value) in &headers {
            let value: &[u8] = if name == b":authority" && !is_authority(value) {
                b"localhost"
            } else {
                value
            };
            literal(name, value, &mut encoded);
        }
        let mut first = Vec::with_capacity(MAX_FRAME);
        if let Some(p) = block.priority {
            first.extend_from_slice(&p);
        }
        let room = MAX_FRAME - first.len();
        let (head, mut rest) = encoded.split_at(room.min(encoded.len()));
        first.extend_from_slice(head);
        let keep = block.flags & !(PADDED | END_HEADERS);
        let end = if rest.is_empty() { END_HEADERS } else { 0 };
        frame(HEADERS, keep | end, block.stream, &first, out);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(MAX_FRAME.min(rest.len()));
            rest = tail;
            let end = if rest.is_empty() { END_HEADERS } else { 0 };
            frame(CONTINUATION, end, block.stream, chunk, out);
        }
        Ok(())
    }
}

fn frame_len(header: &[u8]) -> usize {
    (header[0] as usize) << 16 | (header[1] as usize) << 8 | header[2] as usize
}

fn frame(kind: u8, flags: u8, stream: [u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream);
    out.extend_from_slice(payload);
}

fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A literal header field without indexing, new name, no Huffman coding
/// (RFC 7541, 6.2.2): it leaves the server's dynamic table untouched.
fn literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    for s in [name, value] {
        loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, out)
            .expect("writing to a Vec cannot fail");
        out.extend_from_slice(s);
    }
}

/// A connection whose client-to-server bytes go through a [`Rewriter`].
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    out: Vec<u8>,
    at: usize,
    scratch: Box<[u8]>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            out: Vec::new(),
            at: 0,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.at);
                buf.put_slice(&this.out[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            this.out.clear();
            this.at = 0;
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.rewriter.feed(read.filled(), &mut this.out)?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut dec = Decoder::new();
        let mut at = PREFACE.len();
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while at < bytes.len() {
            let len = frame_len(&bytes[at..]);
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            let mut payload = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + len];
            if kind == HEADERS && flags & PRIORITY != 0 {
                payload = &payload[5..];
            }
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    blocks.push(dec.decode(&block).unwrap());
                    block.clear();
                }
            }
            at += FRAME_HEADER + len;
        }
        blocks
    }

    fn request(enc: &mut loona_hpack::Encoder, authority: &[u8]) -> Vec<u8> {
        enc.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ])
    }

    fn headers_frame(flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) {
        frame(HEADERS, flags, stream.to_be_bytes(), payload, out);
    }

    #[test]
    fn a_socket_path_becomes_localhost_across_indexed_requests() {
        let mut enc = loona_hpack::Encoder::new();
        let mut wire = PREFACE.to_vec();
        // SETTINGS and DATA pass through unchanged.
        frame(0x4, 0, [0; 4], &[0, 3, 0, 0, 0, 100], &mut wire);
        headers_frame(
            END_HEADERS,
            1,
            &request(&mut enc, b"/run/berth/berthd.sock"),
            &mut wire,
        );
        frame(0x0, 0x1, 1u32.to_be_bytes(), b"\0\0\0\0\0", &mut wire);
        // The second request refers to the first's indexed headers.
        headers_frame(
            END_HEADERS,
            3,
            &request(&mut enc, b"/run/berth/berthd.sock"),
            &mut wire,
        );
        headers_frame(
            END_HEADERS,
            5,
            &request(&mut enc, b"localhost:1234"),
            &mut wire,
        );

        // Fed in awkward pieces, as a socket may deliver them.
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for chunk in wire.chunks(7) {
            r.feed(chunk, &mut out).unwrap();
        }
        let blocks = decode_all(&out);
        let authorities: Vec<&[u8]> = blocks
            .iter()
            .map(|b| {
                b.iter()
                    .find(|h| h.0 == b":authority")
                    .unwrap()
                    .1
                    .as_slice()
            })
            .collect();
        assert_eq!(
            authorities,
            [&b"localhost"[..], b"localhost", b"localhost:1234"]
        );
        assert_eq!(blocks[1][1].1, b"/runtime.v1.RuntimeService/Version");
        // The DATA frame and SETTINGS are there byte for byte.
        let data = [&[0, 0, 5, 0, 1, 0, 0, 0, 1][..], b"\0\0\0\0\0"].concat();
        assert!(out.windows(data.len()).any(|w| w == data));
        assert!(out.windows(6).any(|w| w == [0, 3, 0, 0, 0, 100]));
    }

    #[test]
    fn padding_priority_and_continuations_are_handled() {
        let mut enc = loona_hpack::Encoder::new();
        let block = request(&mut enc, b"/tmp/x.sock");
        let (a, b) = block.split_at(block.len() / 2);
        let mut payload = vec![3]; // pad length
        payload.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut wire = PREFACE.to_vec();
        headers_frame(PADDED | PRIORITY, 1, &payload, &mut wire);
        frame(CONTINUATION, END_HEADERS, 1u32.to_be_bytes(), b, &mut wire);
        let mut out = Vec::new();
        Rewriter::default().feed(&wire, &mut out).unwrap();
        let blocks = decode_all(&out);
        assert_eq!(blocks.len(), 1);
        assert!(blocks[0].contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        // The priority is kept, the padding dropped.
        assert_eq!(out[PREFACE.len() + 4], PRIORITY | END_HEADERS);
        assert_eq!(
            &out[PREFACE.len() + 9..PREFACE.len() + 14],
            &[0, 0, 0, 0, 16]
        );
    }

    #[test]
    fn garbage_closes_the_connection() {
        let mut out = Vec::new();
        assert!(
            Rewriter::default()
                .feed(b"GET / HTTP/1.1\r\n", &mut out)
                .is_err()
        );
        let mut wire = PREFACE.to_vec();
        headers_frame(END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff], &mut wire);
        assert!(Rewriter::default().feed(&wire, &mut out).is_err());
        let mut wire = PREFACE.to_vec();
        frame(
            CONTINUATION,
            END_HEADERS,
            1u32.to_be_bytes(),
            b"x",
            &mut wire,
        );
        assert!(Rewriter::default().feed(&wire, &mut out).is_err());
        let mut wire = PREFACE.to_vec();
        headers_frame(PADDED | END_HEADERS, 1, &[200, 1, 2], &mut wire);
        assert!(Rewriter::default().feed(&wire, &mut out).is_err());
    }
}
