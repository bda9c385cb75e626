//! The monitor protocol's framing (docs/engine.md): `[kind u8][len u32
//! BE][payload]` both ways on the monitor's socket. A client's first frame
//! is HELLO (see protocol.rs); the monitor answers with REPLY.

use crate::error::{Error, Result};

pub const STDIN: u8 = 0;
pub const STDIN_CLOSE: u8 = 1;
pub const RESIZE: u8 = 2;
pub const HELLO: u8 = 3;
pub const STDOUT: u8 = 16;
pub const STDERR: u8 = 17;
pub const EXIT: u8 = 18;
pub const REPLY: u8 = 19;
pub const TIMED_OUT: u8 = 20;

pub const HEADER: usize = 5;
/// Payloads larger than this are refused: a peer cannot make the other
/// side buffer without bound. Senders split data into smaller frames.
pub const MAX_PAYLOAD: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize {
        rows: u16,
        cols: u16,
    },
    /// A client's request (JSON, protocol.rs), its first frame.
    Hello(Vec<u8>),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
    /// The monitor's answer to HELLO (JSON).
    Reply(Vec<u8>),
    /// An exec session's process ran past its timeout and was killed; its
    /// EXIT follows.
    TimedOut,
}

pub fn header(kind: u8, len: usize) -> [u8; HEADER] {
    let l = (len as u32).to_be_bytes();
    [kind, l[0], l[1], l[2], l[3]]
}

/// Appends one encoded frame to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let (kind, payload): (u8, &[u8]) = match frame {
        Frame::Stdin(d) => (STDIN, d),
        Frame::CloseStdin => (STDIN_CLOSE, &[]),
        Frame::Stdout(d) => (STDOUT, d),
        Frame::Stderr(d) => (STDERR, d),
        Frame::Hello(d) => (HELLO, d),
        Frame::Reply(d) => (REPLY, d),
        Frame::TimedOut => (TIMED_OUT, &[]),
        Frame::Resize { rows, cols } => {
            let (r, c) = (rows.to_be_bytes(), cols.to_be_bytes());
            out.extend_from_slice(&header(RESIZE, 4));
            out.extend_from_slice(&[r[0], r[1], c[0], c[1]]);
            return;
        }
        Frame::Exit(code) => {
            out.extend_from_slice(&header(EXIT, 4));
            out.extend_from_slice(&code.to_be_bytes());
            return;
        }
    };
    out.extend_from_slice(&header(kind, payload.len()));
    out.extend_from_slice(payload);
}

/// Collects bytes from a stream socket and hands out whole frames.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when bytes of an unfinished frame are held.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(Error::Protocol(format!(
                "a frame of kind {kind} claims {len} bytes, more than {MAX_PAYLOAD}"
            )));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = &self.buf[HEADER..HEADER + len];
        let fixed = |n: usize| -> Result<()> {
            if len == n {
                Ok(())
            } else {
                Err(Error::Protocol(format!(
                    "a frame of kind {kind} must carry {n} bytes, not {len}"
                )))
            }
        };
        let frame = match kind {
            STDIN => Frame::Stdin(payload.to_vec()),
            STDIN_CLOSE => {
                fixed(0)?;
                Frame::CloseStdin
            }
            RESIZE => {
                fixed(4)?;
                Frame::Resize {
                    rows: u16::from_be_bytes([payload[0], payload[1]]),
                    cols: u16::from_be_bytes([payload[2], payload[3]]),
                }
            }
            STDOUT => Frame::Stdout(payload.to_vec()),
            STDERR => Frame::Stderr(payload.to_vec()),
            HELLO => Frame::Hello(payload.to_vec()),
            REPLY => Frame::Reply(payload.to_vec()),
            TIMED_OUT => {
                fixed(0)?;
                Frame::TimedOut
            }
            EXIT => {
                fixed(4)?;
                Frame::Exit(i32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]))
            }
            other => return Err(Error::Protocol(format!("unknown frame kind {other}"))),
        };
        self.buf.drain(..HEADER + len);
        if self.buf.is_empty() {
            // An attach session can be long; do not keep a burst's buffer.
            self.buf.shrink_to(HEADER + 64);
        }
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_byte_by_byte() {
        let frames = [
            Frame::Stdin(b"abc".to_vec()),
            Frame::CloseStdin,
            Frame::Resize {
                rows: 40,
                cols: 120,
            },
            Frame::Stdout(vec![]),
            Frame::Stderr(vec![7; 1000]),
            Frame::Hello(b"{}".to_vec()),
            Frame::Reply(b"{}".to_vec()),
            Frame::TimedOut,
            Frame::Exit(-3),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            encode(f, &mut wire);
        }
        assert_eq!(&wire[..8], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in wire {
            d.push(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(!d.has_partial());
    }

    #[test]
    fn refuses_bad_frames() {
        for (wire, want) in [
            (header(STDIN, MAX_PAYLOAD + 1).to_vec(), "claims"),
            (
                [&header(RESIZE, 3)[..], &[0, 0, 0]].concat(),
                "must carry 4",
            ),
            ([&header(STDIN_CLOSE, 1)[..], &[0]].concat(), "must carry 0"),
            (header(99, 0).to_vec(), "unknown frame kind 99"),
        ] {
            let mut d = Decoder::default();
            d.push(&wire);
            let err = d.next_frame().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
