//! Just enough D-Bus to ask systemd for transient units: the EXTERNAL auth
//! handshake, method calls with the few types systemd's Manager needs, and
//! reading the reply. The private socket of systemd needs no bus daemon.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A value for a method argument or a unit property.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    ArrayU32(Vec<u32>),
    /// a(sv): unit properties.
    Props(Vec<(String, Value)>),
    /// a(sa(sv)): auxiliary units (always empty here).
    EmptyAux,
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Str(_) => "s",
            Value::Bool(_) => "b",
            Value::ArrayU32(_) => "au",
            Value::Props(_) => "a(sv)",
            Value::EmptyAux => "a(sa(sv))",
        }
    }
}

/// A message under construction; offsets are from the message start.
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn align(&mut self, n: usize) {
        while !self.0.len().is_multiple_of(n) {
            self.0.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    /// Writes an array: length placeholder, element padding, elements.
    fn array(&mut self, elem_align: usize, body: impl FnOnce(&mut Buf)) {
        self.align(4);
        let len_at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        self.align(elem_align);
        let start = self.0.len();
        body(self);
        let len = (self.0.len() - start) as u32;
        self.0[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Str(s) => self.str(s),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::ArrayU32(items) => self.array(4, |b| items.iter().for_each(|i| b.u32(*i))),
            Value::Props(props) => self.array(8, |b| {
                for (name, val) in props {
                    b.align(8);
                    b.str(name);
                    b.sig(val.signature());
                    b.value(val);
                }
            }),
            Value::EmptyAux => self.array(8, |_| {}),
        }
    }
}

pub struct Conn {
    stream: BufReader<UnixStream>,
    serial: u32,
    /// Connected through the bus daemon (Destination headers matter).
    via_bus: bool,
}

#[derive(Debug)]
pub struct CallError {
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

fn proto(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Conn {
    /// Connects to systemd: its private socket when we may use it (root),
    /// else the system bus.
    pub fn systemd(timeout: Duration) -> io::Result<Conn> {
        let private = Path::new("/run/systemd/private");
        match UnixStream::connect(private) {
            Ok(s) => Conn::handshake(s, false, timeout),
            Err(_) => {
                let s = UnixStream::connect("/run/dbus/system_bus_socket")?;
                let mut c = Conn::handshake(s, true, timeout)?;
                c.call(
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "Hello",
                    &[],
                )
                .map_err(|e| io::Error::other(e.to_string()))?;
                Ok(c)
            }
        }
    }

    fn handshake(stream: UnixStream, via_bus: bool, timeout: Duration) -> io::Result<Conn> {
        stream.set_read_timeout(Some(timeout))?;
        let mut stream = BufReader::new(stream);
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() }.to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        stream
            .get_mut()
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut line = String::new();
        stream.read_line(&mut line)?;
        if !line.starts_with("OK ") {
            return Err(proto(&format!("authentication refused: {}", line.trim())));
        }
        stream.get_mut().write_all(b"BEGIN\r\n")?;
        Ok(Conn {
            stream,
            serial: 0,
            via_bus,
        })
    }

    /// Calls a method and waits for its reply; returns the reply's body.
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
    ) -> Result<Vec<u8>, CallError> {
        let io_err = |e: io::Error| CallError {
            name: "io".into(),
            message: e.to_string(),
        };
        self.serial += 1;
        let serial = self.serial;
        let mut body = Buf::default();
        let signature: String = args.iter().map(Value::signature).collect();
        for a in args {
            body.value(a);
        }
        let mut m = Buf::default();
        m.u8(b'l');
        m.u8(1); // METHOD_CALL
        m.u8(0);
        m.u8(1); // protocol version
        m.u32(body.0.len() as u32);
        m.u32(serial);
        m.array(8, |b| {
            let field = |b: &mut Buf, code: u8, sig: &str, write: &dyn Fn(&mut Buf)| {
                b.align(8);
                b.u8(code);
                b.sig(sig);
                write(b);
            };
            field(b, 1, "o", &|b| b.str(path));
            field(b, 2, "s", &|b| b.str(iface));
            field(b, 3, "s", &|b| b.str(member));
            if self.via_bus {
                field(b, 6, "s", &|b| b.str(dest));
            }
            if !signature.is_empty() {
                field(b, 8, "g", &|b| b.sig(&signature));
            }
        });
        m.align(8);
        m.0.extend_from_slice(&body.0);
        self.stream.get_mut().write_all(&m.0).map_err(io_err)?;
        loop {
            let msg = self.read_message().map_err(io_err)?;

            if msg.reply_serial != Some(serial) {
                continue; // a signal or someone else's reply
            }
            return match msg.kind {
                2 => Ok(msg.body),
                3 => Err(CallError {
                    name: msg.error_name.unwrap_or_default(),
                    message: read_string(&msg.body, 0).unwrap_or_default(),
                }),
                _ => Err(CallError {
                    name: "protocol".into(),
                    message: "unexpected reply".into(),
                }),
            };
        }
    }

    fn read_message(&mut self) -> io::Result<Incoming> {
        let mut fixed = [0u8; 16];
        self.stream.read_exact(&mut fixed)?;
        if fixed[0] != b'l' {
            return Err(proto("big-endian messages are not supported"));
        }
        let body_len = u32::from_le_bytes(fixed[4..8].try_into().unwrap()) as usize;
        let fields_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap()) as usize;
        if fields_len > 1 << 20 || body_len > 1 << 26 {
            return Err(proto("message too large"));
        }
        let padded = (16 + fields_len).div_ceil(8) * 8 - 16;
        let mut fields = vec![0u8; padded];
        self.stream.read_exact(&mut fields)?;
        let mut body = vec![0u8; body_len];
        self.stream.read_exact(&mut body)?;

        // Walk the header fields; offsets in `fields` are message offset - 16.
        let mut msg = Incoming {
            kind: fixed[1],
            reply_serial: None,
            error_name: None,
            body,
        };
        let mut pos = 0usize;
        let at = |p: usize, n: usize| (p + 16).div_ceil(n) * n - 16;
        while pos < fields_len {
            pos = at(pos, 8);
            let code = fields[pos];
            let sig_len = fields[pos + 1] as usize;
            let sig = std::str::from_utf8(&fields[pos + 2..pos + 2 + sig_len]).unwrap_or("");
            pos += 3 + sig_len;
            match sig {
                "u" => {
                    pos = at(pos, 4);
                    let v = u32::from_le_bytes(fields[pos..pos + 4].try_into().unwrap());
                    if code == 5 {
                        msg.reply_serial = Some(v);
                    }
                    pos += 4;
                }
                "s" | "o" => {
                    pos = at(pos, 4);
                    let len = u32::from_le_bytes(fields[pos..pos + 4].try_into().unwrap()) as usize;
                    let s = String::from_utf8_lossy(&fields[pos + 4..pos + 4 + len]).into_owned();
                    if code == 4 {
                        msg.error_name = Some(s);
                    }
                    pos += 5 + len;
                }
                "g" => {
                    let len = fields[pos] as usize;
                    pos += 2 + len;
                }
                _ => return Err(proto("unexpected header field type")),
            }
        }
        Ok(msg)
    }
}

struct Incoming {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    body: Vec<u8>,
}

fn read_string(body: &[u8], pos: usize) -> Option<String> {
    let len = u32::from_le_bytes(body.get(pos..pos + 4)?.try_into().ok()?) as usize;
    Some(String::from_utf8_lossy(body.get(pos + 4..pos + 4 + len)?).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshals_properties_with_alignment() {
        let mut b = Buf::default();
        b.value(&Value::Props(vec![
            ("Delegate".into(), Value::Bool(true)),
            ("PIDs".into(), Value::ArrayU32(vec![7])),
        ]));
        let d = &b.0;
        // array length, then the first struct at offset 8.
        let len = u32::from_le_bytes(d[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, d.len() - 8);
        assert_eq!(&d[8..12], &8u32.to_le_bytes()); // "Delegate" length
        assert_eq!(&d[12..20], b"Delegate");
        assert_eq!(d[21], 1); // signature "b"
        assert_eq!(d[22], b'b');
        assert_eq!(&d[24..28], &1u32.to_le_bytes()); // true, aligned to 4
        // second struct starts 8-aligned
        assert_eq!(&d[32..36], &4u32.to_le_bytes());
        assert_eq!(&d[36..40], b"PIDs");
    }
}
