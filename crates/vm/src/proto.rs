//! The one contract between berth-vm on the host and its agent in the
//! guest, and between berth-vm's commands and a container's keeper: a
//! stream of frames, each a length, a kind, a channel and a payload.
//!
//! Every channel is one conversation the VM's holder opened for one
//! client connection: a container's keeper (its creation, then its
//! process's stdio and end), an exec's keeper, or a command (`kill`,
//! `start`...). The holder keeps channel 0 for itself. Control messages are JSON ([`Msg`]); stdio
//! travels as raw bytes so a container's output is never re-encoded.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The largest frame either side sends or accepts: stdio is cut into
/// pieces far smaller, a spec or a stats reply fits with room to spare.
pub const MAX_FRAME: usize = 1 << 20;

/// Bytes before the payload: length (u32, of kind + channel + payload),
/// kind (u8), channel (u32), all little-endian.
const HEADER: usize = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A JSON [`Msg`].
    Msg = 1,
    /// Bytes for the process's stdin (host to guest).
    Stdin = 2,
    /// The process's stdout, or its terminal's output (guest to host).
    Stdout = 3,
    Stderr = 4,
    /// The process's stdin has ended (host to guest).
    StdinEof = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Msg,
            2 => Kind::Stdin,
            3 => Kind::Stdout,
            4 => Kind::Stderr,
            5 => Kind::StdinEof,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub chan: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn msg(chan: u32, m: &Msg) -> Frame {
        Frame {
            kind: Kind::Msg,
            chan,
            payload: serde_json::to_vec(m).expect("a message serializes"),
        }
    }

    pub fn data(kind: Kind, chan: u32, bytes: &[u8]) -> Frame {
        Frame {
            kind,
            chan,
            payload: bytes.to_vec(),
        }
    }

    /// The message a `Msg` frame carries; any other frame, or JSON that is
    /// not a message, is an error naming what arrived.
    pub fn message(&self) -> io::Result<Msg> {
        if self.kind != Kind::Msg {
            return Err(invalid(format!(
                "a {:?} frame where a message was due",
                self.kind
            )));
        }
        serde_json::from_slice(&self.payload).map_err(|e| invalid(format!("a bad message: {e}")))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        out.extend_from_slice(&((5 + self.payload.len()) as u32).to_le_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.chan.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Stdio is read and sent in pieces of this size.
pub const CHUNK: usize = 32 * 1024;

/// What the two sides say to each other beyond stdio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Msg {
    /// The agent is up (guest to host, channel 0, once): the guest's
    /// kernel release, and the guest's clock (ms since its kernel started)
    /// when the agent began and when it was ready.
    Ready {
        kernel: String,
        init_ms: u64,
        ready_ms: u64,
    },
    /// Create a container from its spec; its process belongs to this
    /// channel (its stdio and end go there).
    Create(Box<CreateRequest>),
    Start,
    Kill {
        signal: i32,
        all: bool,
    },
    /// Run one more process in the container; it answers on this channel.
    Exec {
        process: serde_json::Value,
        tty: bool,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    /// The container's cgroup statistics, in runc's `events --stats` shape.
    Stats,
    Pause,
    Resume,
    Update {
        resources: serde_json::Value,
    },
    /// Is the agent (and, through it, the VM) still answering?
    Ping,
    /// The success answer to any request; `value` for those that return one.
    Done {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
    },
    /// The failure answer to any request, in words for the user.
    Failed {
        error: String,
    },
    /// The channel's process has ended with this wait(2) status.
    Exited {
        status: i32,
    },
    /// The client of this channel is gone (holder to agent).
    Hangup,
    /// Later requests on this channel are about this container (a VM may
    /// hold a pod's containers).
    Target {
        id: String,
    },
    /// The guest's NICs take over these interfaces (holder to agent, once,
    /// before any container).
    Network {
        links: Vec<berth_network::link::LinkConfig>,
    },
    /// A pre-booted VM is wanted for a container (a command to the holder,
    /// which answers itself): its NIC joins `netns`'s interface, and the
    /// VM belongs to pod `sandbox` from now on. Fails when another claim
    /// came first.
    Claim {
        netns: Option<std::path::PathBuf>,
        sandbox: Option<String>,
    },
    /// A pre-booted VM nobody claimed ends (a command to the holder).
    Retire,
    /// The VM is ending, and why (holder to its clients, last).
    Gone {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    /// The bundle's config.json, as the guest must run it (rootfs and bind
    /// sources rewritten to the shared directory).
    pub spec: serde_json::Value,
}

/// Reads frames from a byte stream that may deliver them in pieces.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, None until one is complete; a frame that
    /// breaks the format is an error (the stream cannot be trusted after).
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[0..4].try_into().expect("4 bytes")) as usize;
        if !(5..=MAX_FRAME).contains(&len) {
            return Err(invalid(format!("a frame of {len} bytes")));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let kind = Kind::from_u8(self.buf[4])
            .ok_or_else(|| invalid(format!("a frame of unknown kind {}", self.buf[4])))?;
        let chan = u32::from_le_bytes(self.buf[5..9].try_into().expect("4 bytes"));
        let payload = self.buf[HEADER..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(Frame {
            kind,
            chan,
            payload,
        }))
    }
}

/// Writes one frame whole.
pub fn write_frame(w: &mut impl Write, f: &Frame) -> io::Result<()> {
    w.write_all(&f.encode())
}

/// Reads one frame whole from a blocking stream; None at a clean end.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len) as usize;
    if !(5..=MAX_FRAME).contains(&n) {
        return Err(invalid(format!("a frame of {n} bytes")));
    }
    let mut rest = vec![0u8; n];
    r.read_exact(&mut rest)?;
    let mut d = Decoder::default();
    d.push(&len);
    d.push(&rest);
    d.next_frame()
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let frames = [
            Frame::msg(
                0,
                &Msg::Kill {
                    signal: 15,
                    all: true,
                },
            ),
            Frame::data(Kind::Stdout, 7, b"hello\n"),
            Frame::data(Kind::StdinEof, 3, b""),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
        for split in 1..bytes.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(split) {
                d.push(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "split every {split} bytes");
        }
        let mut r = &bytes[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), frames[0]);
        assert_eq!(
            read_frame(&mut r)
                .unwrap()
                .unwrap()
                .message()
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_bad_stream_is_an_error_not_a_panic() {
        for bad in [
            &[0u8, 0, 0, 0][..],           // too short to hold a header
            &[255, 255, 255, 255],         // larger than any frame
            &[5, 0, 0, 0, 99, 0, 0, 0, 0], // unknown kind
        ] {
            let mut d = Decoder::default();
            d.push(bad);
            assert!(d.next_frame().is_err(), "{bad:?}");
        }
        let f = Frame::data(Kind::Msg, 0, b"{\"op\":\"explode\"}");
        assert!(f.message().unwrap_err().to_string().contains("bad message"));
    }
}
