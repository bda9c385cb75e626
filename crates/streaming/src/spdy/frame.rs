//! SPDY/3 frames on the wire: reading them with bounded lengths, writing
//! them. Header blocks stay compressed here; the session owns the zlib
//! contexts because each spans the whole connection.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

pub(crate) const VERSION: u16 = 3;

pub(crate) const TYPE_SYN_STREAM: u16 = 1;
pub(crate) const TYPE_SYN_REPLY: u16 = 2;
pub(crate) const TYPE_RST_STREAM: u16 = 3;
pub(crate) const TYPE_SETTINGS: u16 = 4;
pub(crate) const TYPE_PING: u16 = 6;
pub(crate) const TYPE_GOAWAY: u16 = 7;
pub(crate) const TYPE_HEADERS: u16 = 8;
pub(crate) const TYPE_WINDOW_UPDATE: u16 = 9;

pub(crate) const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes.
pub(crate) const RST_PROTOCOL_ERROR: u32 = 1;
pub(crate) const RST_REFUSED_STREAM: u32 = 3;
pub(crate) const RST_CANCEL: u32 = 5;
/// GOAWAY status codes.
pub(crate) const GOAWAY_OK: u32 = 0;
pub(crate) const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// SETTINGS ids this server reads.
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// A frame as read from the peer.
#[derive(Debug)]
pub(crate) enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        fin: bool,
        header_block: Vec<u8>,
    },
    SynReply {
        stream_id: u32,
        #[allow(dead_code)] // read only to reject the frame
        header_block: Vec<u8>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        entries: Vec<(u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Vec<u8>,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame type SPDY/3 does not define: the draft says to
    /// ignore it.
    Unknown {
        frame_type: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection ended inside a frame")]
    Truncated,
    #[error("{kind} frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("control frame of SPDY version {0}, not 3")]
    Version(u16),
    #[error("malformed {kind} frame: {why}")]
    Malformed {
        kind: &'static str,
        why: &'static str,
    },
    #[error("malformed header block: {0}")]
    HeaderBlock(String),
}

/// The limits a reader applies before allocating a frame's body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameLimits {
    pub(crate) max_data: usize,
    pub(crate) max_control: usize,
}

/// Reads one frame; `Ok(None)` when the peer closed cleanly between
/// frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: FrameLimits,
) -> Result<Option<Frame>, FrameError> {
    let mut head = [0u8; 8];
    // A clean close is one that happens before a frame's first byte.
    let n = r.read(&mut head).await?;
    if n == 0 {
        return Ok(None);
    }
    r.read_exact(&mut head[n..])
        .await
        .map_err(eof_is_truncated)?;
    let first = u32::from_be_bytes(head[0..4].try_into().unwrap());
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let control = first & 0x8000_0000 != 0;
    let (kind, max) = if control {
        ("control", limits.max_control)
    } else {
        ("data", limits.max_data)
    };
    if len > max {
        return Err(FrameError::TooLarge { kind, len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(eof_is_truncated)?;
    if !control {
        return Ok(Some(Frame::Data {
            stream_id: first & 0x7fff_ffff,
            fin: flags & FLAG_FIN != 0,
            data: Bytes::from(body),
        }));
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    parse_control((first & 0xffff) as u16, flags, body).map(Some)
}

fn eof_is_truncated(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn parse_control(frame_type: u16, flags: u8, mut body: Vec<u8>) -> Result<Frame, FrameError> {
    let need = |kind: &'static str, n: usize, exact: bool| {
        if body.len() < n || (exact && body.len() != n) {
            Err(FrameError::Malformed {
                kind,
                why: "wrong length",
            })
        } else {
            Ok(())
        }
    };
    let fin = flags & FLAG_FIN != 0;
    Ok(match frame_type {
        TYPE_SYN_STREAM => {
            // stream id, associated stream id, priority and slot, then
            // the header block.
            need("SYN_STREAM", 10, false)?;
            let stream_id = word(&body, 0) & 0x7fff_ffff;
            Frame::SynStream {
                stream_id,
                fin,
                header_block: body.split_off(10),
            }
        }
        TYPE_SYN_REPLY => {
            need("SYN_REPLY", 4, false)?;
            Frame::SynReply {
                stream_id: word(&body, 0) & 0x7fff_ffff,
                header_block: body.split_off(4),
            }
        }
        TYPE_HEADERS => {
            need("HEADERS", 4, false)?;
            Frame::Headers {
                stream_id: word(&body, 0) & 0x7fff_ffff,
                fin,
                header_block: body.split_off(4),
            }
        }
        TYPE_RST_STREAM => {
            need("RST_STREAM", 8, true)?;
            Frame::RstStream {
                stream_id: word(&body, 0) & 0x7fff_ffff,
                status: word(&body, 4),
            }
        }
        TYPE_SETTINGS => {
            need("SETTINGS", 4, false)?;
            let count = word(&body, 0) as usize;
            if body.len() != 4 + count.saturating_mul(8) {
                return Err(FrameError::Malformed {
                    kind: "SETTINGS",
                    why: "entry count does not match the length",
                });
            }
            let entries = (0..count)
                .map(|i| {
                    let at = 4 + i * 8;
                    (word(&body, at) & 0x00ff_ffff, word(&body, at + 4))
                })
                .collect();
            Frame::Settings { entries }
        }
        TYPE_PING => {
            need("PING", 4, true)?;
            Frame::Ping { id: word(&body, 0) }
        }
        TYPE_GOAWAY => {
            need("GOAWAY", 8, true)?;
            Frame::GoAway {
                last_good_stream_id: word(&body, 0) & 0x7fff_ffff,
                status: word(&body, 4),
            }
        }
        TYPE_WINDOW_UPDATE => {
            need("WINDOW_UPDATE", 8, true)?;
            Frame::WindowUpdate {
                stream_id: word(&body, 0) & 0x7fff_ffff,
                delta: word(&body, 4) & 0x7fff_ffff,
            }
        }
        other => Frame::Unknown { frame_type: other },
    })
}

/// A decoded header block: lower-case names, values as sent (several
/// values of one name are joined by NUL bytes on the wire).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (names are matched case-insensitively,
    /// as Go's http.Header does).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }
}

/// Parses a decompressed header block: a 32-bit count, then for each
/// header a 32-bit length and name, a 32-bit length and value.
pub(crate) fn parse_header_block(block: &[u8], max_headers: usize) -> Result<Headers, FrameError> {
    let bad = |why: String| FrameError::HeaderBlock(why);
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], FrameError> {
        if block.len() - at < n {
            return Err(bad(format!("ends {} bytes early", n - (block.len() - at))));
        }
        at += n;
        Ok(&block[at - n..at])
    };
    let count = u32::from_be_bytes(take(4)?.try_into().unwrap()) as usize;
    if count > max_headers {
        return Err(bad(format!(
            "{count} headers, over the limit of {max_headers}"
        )));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().unwrap()) as usize;
        if len == 0 {
            return Err(bad("a header with an empty name".into()));
        }
        let name = String::from_utf8_lossy(take(len)?).to_ascii_lowercase();
        let len = u32::from_be_bytes(take(4)?.try_into().unwrap()) as usize;
        let value = String::from_utf8_lossy(take(len)?).into_owned();
        headers.push((name, value));
    }
    if at != block.len() {
        return Err(bad(format!(
            "{} bytes after the last header",
            block.len() - at
        )));
    }
    Ok(Headers(headers))
}

/// Builds an uncompressed header block; names must already be lower case.
pub(crate) fn encode_header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        debug_assert_eq!(name.to_ascii_lowercase(), *name);
        b.extend_from_slice(&(name.len() as u32).to_be_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&(value.len() as u32).to_be_bytes());
        b.extend_from_slice(value.as_bytes());
    }
    b
}

fn control_head(out: &mut Vec<u8>, frame_type: u16, flags: u8, len: usize) {
    out.extend_from_slice(
        &(0x8000_0000u32 | (u32::from(VERSION) << 16) | u32::from(frame_type)).to_be_bytes(),
    );
    out.extend_from_slice(&((u32::from(flags) << 24) | len as u32).to_be_bytes());
}

pub(crate) fn write_data(out: &mut Vec<u8>, stream_id: u32, fin: bool, data: &[u8]) {
    debug_assert!(data.len() < 1 << 24);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    let flags = if fin { FLAG_FIN } else { 0 };
    out.extend_from_slice(&((u32::from(flags) << 24) | data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

pub(crate) fn write_syn_reply(out: &mut Vec<u8>, stream_id: u32, fin: bool, compressed: &[u8]) {
    control_head(
        out,
        TYPE_SYN_REPLY,
        if fin { FLAG_FIN } else { 0 },
        4 + compressed.len(),
    );
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(compressed);
}

pub(crate) fn write_rst_stream(out: &mut Vec<u8>, stream_id: u32, status: u32) {
    control_head(out, TYPE_RST_STREAM, 0, 8);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
}

pub(crate) fn write_ping(out: &mut Vec<u8>, id: u32) {
    control_head(out, TYPE_PING, 0, 4);
    out.extend_from_slice(&id.to_be_bytes());
}

pub(crate) fn write_goaway(out: &mut Vec<u8>, last_good_stream_id: u32, status: u32) {
    control_head(out, TYPE_GOAWAY, 0, 8);
    out.extend_from_slice(&last_good_stream_id.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
}

pub(crate) fn write_window_update(out: &mut Vec<u8>, stream_id: u32, delta: u32) {
    control_head(out, TYPE_WINDOW_UPDATE, 0, 8);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&delta.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_data: 1024,
        max_control: 256,
    };

    async fn read_one(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        let mut r = bytes;
        read_frame(&mut r, LIMITS).await
    }

    #[tokio::test]
    async fn frames_written_read_back() {
        let mut b = Vec::new();
        write_data(&mut b, 5, true, b"hello");
        write_rst_stream(&mut b, 7, RST_CANCEL);
        write_ping(&mut b, 3);
        write_goaway(&mut b, 9, GOAWAY_OK);
        write_window_update(&mut b, 1, 4096);
        write_syn_reply(&mut b, 11, false, b"zz");
        let mut r = &b[..];
        match read_frame(&mut r, LIMITS).await.unwrap().unwrap() {
            Frame::Data {
                stream_id: 5,
                fin: true,
                data,
            } => assert_eq!(&data[..], b"hello"),
            f => panic!("{f:?}"),
        }
        assert!(matches!(
            read_frame(&mut r, LIMITS).await.unwrap().unwrap(),
            Frame::RstStream {
                stream_id: 7,
                status: RST_CANCEL
            }
        ));
        assert!(matches!(
            read_frame(&mut r, LIMITS).await.unwrap().unwrap(),
            Frame::Ping { id: 3 }
        ));
        assert!(matches!(
            read_frame(&mut r, LIMITS).await.unwrap().unwrap(),
            Frame::GoAway {
                last_good_stream_id: 9,
                status: GOAWAY_OK
            }
        ));
        assert!(matches!(
            read_frame(&mut r, LIMITS).await.unwrap().unwrap(),
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 4096
            }
        ));
        match read_frame(&mut r, LIMITS).await.unwrap().unwrap() {
            Frame::SynReply {
                stream_id: 11,
                header_block,
            } => assert_eq!(header_block, b"zz"),
            f => panic!("{f:?}"),
        }
        assert!(read_frame(&mut r, LIMITS).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocation() {
        let mut b = Vec::new();
        write_data(&mut b, 1, false, &[0; 2000]);
        assert!(matches!(
            read_one(&b[..8]).await,
            Err(FrameError::TooLarge {
                kind: "data",
                len: 2000,
                max: 1024
            })
        ));
        // A control frame claiming 16 MiB.
        let head = [0x80, 0x03, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_one(&head).await,
            Err(FrameError::TooLarge {
                kind: "control",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn short_or_odd_frames_are_errors() {
        let mut b = Vec::new();
        write_data(&mut b, 1, false, b"abc");
        assert!(matches!(
            read_one(&b[..9]).await,
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_one(&b[..3]).await,
            Err(FrameError::Truncated)
        ));
        let v2 = [0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1];
        assert!(matches!(read_one(&v2).await, Err(FrameError::Version(2))));
        let short_rst = [0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1];
        assert!(matches!(
            read_one(&short_rst).await,
            Err(FrameError::Malformed {
                kind: "RST_STREAM",
                ..
            })
        ));
        let lying_settings = [
            0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(matches!(
            read_one(&lying_settings).await,
            Err(FrameError::Malformed {
                kind: "SETTINGS",
                ..
            })
        ));
        let unknown = [0x80, 0x03, 0x00, 0x63, 0x00, 0x00, 0x00, 0x01, 9];
        assert!(matches!(
            read_one(&unknown).await.unwrap().unwrap(),
            Frame::Unknown { frame_type: 0x63 }
        ));
    }

    #[test]
    fn header_blocks_round_trip_and_are_checked() {
        let block = encode_header_block(&[("streamtype", "stdin"), ("port", "80\u{0}81")]);
        let h = parse_header_block(&block, 10).unwrap();
        assert_eq!(h.get("streamType"), Some("stdin"));
        assert_eq!(h.get("port"), Some("80"));
        assert_eq!(h.get("missing"), None);
        assert!(
            parse_header_block(&block, 1).is_err(),
            "count over the limit"
        );
        assert!(
            parse_header_block(&block[..block.len() - 1], 10).is_err(),
            "cut short"
        );
        let mut long = block.clone();
        long.push(0);
        assert!(parse_header_block(&long, 10).is_err(), "trailing bytes");
        // A name length far past the end must not be trusted.
        assert!(parse_header_block(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, b'a'], 10).is_err());
    }
}
