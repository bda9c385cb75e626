//! A reader between the decompressor and the tar crate that refuses
//! extension headers (PAX `x` and `g`, GNU long names `L` and `K`) larger
//! than 1 MiB. tar 0.4 reads such a header's data whole into memory, and a
//! few kilobytes of gzip can declare gigabytes of it; the guard refuses the
//! header block before the tar crate has seen a byte of it.
//!
//! To know where headers are, the guard walks the stream's 512-byte blocks
//! by the same rules as the tar crate, which it must agree with: sizes in
//! octal or base-256, a PAX `size` record replacing the size of the next
//! real entry, GNU sparse headers followed by extension blocks before
//! their data, and the first all-zero block ending the archive.

use std::io::{self, Read};

/// The largest extension header accepted. Real ones hold a long path or a
/// few xattrs; 1 MiB is far above any of them.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

pub struct TarGuard<R> {
    inner: R,
    /// Offset of the next byte handed out.
    pos: u64,
    state: State,
    /// A header or sparse extension block, read whole before it is handed
    /// out in pieces.
    block: [u8; BLOCK],
    block_len: usize,
    served: usize,
    /// The data of the current PAX `x` header, kept for its size record.
    pax: Option<Vec<u8>>,
    /// The size a PAX header gives the next real entry.
    pax_size: Option<u64>,
    refusal: Option<String>,
}

#[derive(Clone, Copy)]
enum State {
    Header,
    /// GNU sparse extension blocks, then `size` bytes of data.
    SparseExt {
        size: u64,
    },
    Data {
        left: u64,
        pad: u64,
    },
    /// After the end marker (or a header the tar crate will refuse itself):
    /// bytes pass through unexamined.
    Ended,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            pos: 0,
            state: State::Header,
            block: [0; BLOCK],
            block_len: 0,
            served: 0,
            pax: None,
            pax_size: None,
            refusal: None,
        }
    }

    /// Why the stream was refused, if it was.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    /// The reader after the archive, with any block read ahead but not
    /// handed out.
    pub fn into_inner(self) -> io::Chain<io::Cursor<Vec<u8>>, R> {
        let rest = self.block[self.served..self.block_len].to_vec();
        io::Cursor::new(rest).chain(self.inner)
    }

    /// Reads the next whole block; a short read is the end of the stream.
    fn fill_block(&mut self) -> io::Result<usize> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut self.block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.block_len = got;
        self.served = 0;
        Ok(got)
    }

    /// Decides what follows the header block just read.
    fn header(&mut self) -> io::Result<State> {
        let b = &self.block;
        if b.iter().all(|&x| x == 0) {
            return Ok(State::Ended);
        }
        let typ = b[156];
        let Some(size) = size_field(&b[124..136]) else {
            // The tar crate fails on the same field.
            return Ok(State::Ended);
        };
        let extension = matches!(typ, b'x' | b'g' | b'L' | b'K');
        if extension && size > MAX_EXTENSION {
            let why = format!(
                "tar header at offset {} (type '{}') declares {size} bytes of extended header data; more than {MAX_EXTENSION} are refused",
                self.pos, typ as char
            );
            self.refusal = Some(why.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        let size = match typ {
            b'x' => {
                self.pax = Some(Vec::with_capacity(size as usize));
                size
            }
            b'L' | b'K' => size,
            // The tar crate hands a global header out as an entry, with the
            // pending PAX records attached to it.
            b'g' => {
                self.pax_size = None;
                size
            }
            _ => self.pax_size.take().unwrap_or(size),
        };
        let gnu = &b[257..265] == b"ustar  \0";
        if typ == b'S' && gnu && b[482] == 1 {
            return Ok(State::SparseExt { size });
        }
        Ok(data(size))
    }

    /// The end of an entry's data.
    fn data_done(&mut self) {
        if let Some(p) = self.pax.take() {
            self.pax_size = pax_size(&p);
        }
    }
}

fn data(size: u64) -> State {
    State::Data {
        left: size,
        pad: (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64,
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.served < self.block_len {
                let n = buf.len().min(self.block_len - self.served);
                buf[..n].copy_from_slice(&self.block[self.served..self.served + n]);
                self.served += n;
                self.pos += n as u64;
                return Ok(n);
            }
            match self.state {
                State::Ended => {
                    let n = self.inner.read(buf)?;
                    self.pos += n as u64;
                    return Ok(n);
                }
                State::Data { left: 0, pad: 0 } => {
                    self.data_done();
                    self.state = State::Header;
                }
                State::Data { left, pad } => {
                    let want = if left > 0 { left } else { pad };
                    let want = want.min(buf.len() as u64) as usize;
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        // Cut short: the tar crate says so.
                        return Ok(0);
                    }
                    self.state = if left > 0 {
                        if let Some(p) = &mut self.pax {
                            p.extend_from_slice(&buf[..n]);
                        }
                        if left == n as u64 {
                            self.data_done();
                        }
                        State::Data {
                            left: left - n as u64,
                            pad,
                        }
                    } else {
                        State::Data {
                            left: 0,
                            pad: pad - n as u64,
                        }
                    };
                    if matches!(self.state, State::Data { left: 0, pad: 0 }) {
                        self.state = State::Header;
                    }
                    self.pos += n as u64;
                    return Ok(n);
                }
                State::Header => {
                    if self.fill_block()? < BLOCK {
                        self.state = State::Ended;
                        if self.block_len == 0 {
                            return Ok(0);
                        }
                        continue;
                    }
                    self.state = self.header()?;
                }
                State::SparseExt { size } => {
                    if self.fill_block()? < BLOCK {
                        self.state = State::Ended;
                        if self.block_len == 0 {
                            return Ok(0);
                        }
                        continue;
                    }
                    if self.block[504] != 1 {
                        self.state = data(size);
                    }
                }
            }
        }
    }
}

/// A header's size field as the tar crate reads it: base-256 when the top
/// bit is set (the last 8 bytes), else octal up to the first NUL.
fn size_field(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        return Some(
            f[f.len() - 8..]
                .iter()
                .fold(0u64, |v, &b| (v << 8) | b as u64),
        );
    }
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    let s = std::str::from_utf8(&f[..end]).ok()?;
    u64::from_str_radix(s.trim(), 8).ok()
}

/// The first `size` record of PAX data, as the tar crate takes it.
fn pax_size(data: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(typ: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(typ);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_path("f").unwrap();
        h.set_cksum();
        h
    }

    /// Everything the tar crate reads through the guard, entry by entry.
    /// Each entry's path and body.
    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn entries(data: &[u8]) -> Result<Entries, String> {
        let mut a = tar::Archive::new(TarGuard::new(data));
        let mut out = Vec::new();
        let res: io::Result<()> = (|| {
            for e in a.entries()? {
                let mut e = e?;
                let mut body = Vec::new();
                e.read_to_end(&mut body)?;
                out.push((e.path_bytes().into_owned(), body));
            }
            Ok(())
        })();
        match (a.into_inner().refusal(), res) {
            (Some(why), _) => Err(why.to_string()),
            (None, Err(e)) => Err(format!("tar: {e}")),
            (None, Ok(())) => Ok(out),
        }
    }

    #[test]
    fn refuses_large_extension_headers_of_every_kind() {
        for typ in [b'x', b'g', b'L', b'K'] {
            let mut t = Vec::new();
            t.extend_from_slice(header(tar::EntryType::new(typ), MAX_EXTENSION + 1).as_bytes());
            // No data follows: the header alone is refused.
            let err = entries(&t).unwrap_err();
            assert!(
                err.contains("offset 0") && err.contains(&format!("type '{}'", typ as char)),
                "{err}"
            );
        }
    }

    #[test]
    fn base256_sizes_are_read() {
        let mut h = header(tar::EntryType::XHeader, 0);
        let f = &mut h.as_old_mut().size;
        f.fill(0);
        f[0] = 0x80;
        f[4..].copy_from_slice(&(64u64 << 20).to_be_bytes());
        h.set_cksum();
        let err = entries(h.as_bytes()).unwrap_err();
        assert!(err.contains(&(64u64 << 20).to_string()), "{err}");
    }

    #[test]
    fn long_names_pax_sizes_and_sparse_files_keep_their_place() {
        let mut b = tar::Builder::new(Vec::new());
        // A GNU long name (an `L` header), and PAX records.
        let long = format!("{}/file", "d".repeat(300));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        b.append_pax_extensions([("size", &b"5"[..]), ("mtime", &b"1"[..])])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 0);
        h.set_cksum();
        b.append(&h, &b"hello"[..]).unwrap();
        let mut t = b.into_inner().unwrap();
        // The PAX size (5) replaced the header's (0): "hello" is data.
        t.truncate(t.len() - 1024);
        // A GNU sparse entry with an extension block: 600 bytes of data
        // after the extension block, none of which is a header.
        let mut s = tar::Header::new_gnu();
        s.set_entry_type(tar::EntryType::GNUSparse);
        s.set_path("sparse").unwrap();
        s.set_mode(0o644);
        s.set_size(600);
        let g = s.as_gnu_mut().unwrap();
        g.realsize = octal12(2000);
        g.isextended[0] = 1;
        g.sparse[0].offset = octal12(0);
        g.sparse[0].numbytes = octal12(512);
        s.set_cksum();
        t.extend_from_slice(s.as_bytes());
        let mut ext = [0u8; 512];
        ext[..12].copy_from_slice(&octal12(1400));
        ext[12..24].copy_from_slice(&octal12(88));
        // A hole up to the real size.
        ext[24..36].copy_from_slice(&octal12(2000));
        ext[36..48].copy_from_slice(&octal12(0));
        t.extend_from_slice(&ext);
        // Data that would be a huge `x` header if read as one.
        let mut data = vec![0xaau8; 1024];
        data[..512].copy_from_slice(header(tar::EntryType::XHeader, 1 << 40).as_bytes());
        data.truncate(600);
        data.resize(1024, 0);
        t.extend_from_slice(&data);
        t.extend_from_slice(&[0u8; 1024]);
        let got = entries(&t).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(names, [long.as_str(), "f", "sparse"]);
        assert_eq!(got[1].1, b"hello");
        assert_eq!(got[2].1.len(), 2000);
    }

    fn octal12(v: u64) -> [u8; 12] {
        let mut h = tar::Header::new_gnu();
        h.set_size(v);
        h.as_old().size
    }

    #[test]
    fn what_follows_the_end_marker_is_not_examined() {
        let mut t = vec![0u8; 1024];
        t.extend_from_slice(header(tar::EntryType::XHeader, 1 << 40).as_bytes());
        let mut g = TarGuard::new(&t[..]);
        let mut a = tar::Archive::new(&mut g);
        assert_eq!(a.entries().unwrap().count(), 0);
        let mut rest = Vec::new();
        g.into_inner().read_to_end(&mut rest).unwrap();
        assert!(rest.len() >= 512);
    }
}
