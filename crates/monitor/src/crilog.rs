//! The CRI log writer: `<RFC3339Nano UTC> <stdout|stderr> <P|F> <msg>\n`,
//! one record per line of output, lines longer than 16 KiB split into
//! `P` records, and size-based rotation. Each stream keeps at most one
//! unfinished line (up to 16 KiB), so memory stays bounded whatever the
//! container writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Context, Result};
use crate::timefmt;

/// The longest message of one record: kubelet's and containerd's limit.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// The unfinished line of each stream.
    pending: [Vec<u8>; 2],
    /// One record being composed, so it reaches the file in one write.
    record: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`; `max_size` 0 never rotates.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<LogWriter> {
        let file = open_log(path).ctx(|| format!("open the log {}", path.display()))?;
        let size = file
            .metadata()
            .ctx(|| format!("stat the log {}", path.display()))?
            .len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max_size,
            max_files,
            pending: [Vec::new(), Vec::new()],
            record: Vec::new(),
        })
    }

    /// Opens the log path anew (appending, or creating it): after a log
    /// rotator (kubelet's) renamed the file away, output goes to a new one.
    pub fn reopen(&mut self) -> Result<()> {
        let file =
            open_log(&self.path).ctx(|| format!("reopen the log {}", self.path.display()))?;
        self.size = file
            .metadata()
            .ctx(|| format!("stat the log {}", self.path.display()))?
            .len();
        self.file = Some(file);
        Ok(())
    }

    /// Adds output read from `stream` at time `now`.
    pub fn write(&mut self, stream: Stream, mut data: &[u8], now: SystemTime) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.complete(stream, &data[..i], now);
                    data = &data[i + 1..];
                }
                None => {
                    self.partial(stream, data, now);
                    break;
                }
            }
        }
    }

    /// The stream ended: an unfinished line is written as a full one, as
    /// containerd does when its reader hits EOF.
    pub fn close_stream(&mut self, stream: Stream, now: SystemTime) {
        if !self.pending[stream.index()].is_empty() {
            self.complete(stream, &[], now);
        }
    }

    /// A line ended with `tail`: everything pending plus `tail` goes out,
    /// in 16 KiB `P` records and a last `F` one.
    fn complete(&mut self, stream: Stream, mut tail: &[u8], now: SystemTime) {
        // A terminal ends lines with CRLF; CRI readers expect the
        // end-of-line bytes gone, as containerd strips them.
        if let [rest @ .., b'\r'] = tail {
            tail = rest;
        } else if tail.is_empty() && self.pending[stream.index()].last() == Some(&b'\r') {
            self.pending[stream.index()].pop();
        }
        loop {
            let room = MAX_LINE - self.pending[stream.index()].len();
            if tail.len() <= room {
                self.emit(stream, b'F', tail, now);
                return;
            }
            self.emit(stream, b'P', &tail[..room], now);
            tail = &tail[room..];
        }
    }

    /// Output without a newline yet: kept until the line ends, except that
    /// a full 16 KiB with more following goes out as a `P` record.
    fn partial(&mut self, stream: Stream, mut data: &[u8], now: SystemTime) {
        loop {
            let room = MAX_LINE - self.pending[stream.index()].len();
            if data.len() <= room {
                self.pending[stream.index()].extend_from_slice(data);
                return;
            }
            self.emit(stream, b'P', &data[..room], now);
            data = &data[room..];
        }
    }

    /// Writes one record of the pending bytes followed by `tail`, and
    /// clears the pending bytes.
    fn emit(&mut self, stream: Stream, tag: u8, tail: &[u8], now: SystemTime) {
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        let mut rec = std::mem::take(&mut self.record);
        rec.clear();
        rec.extend_from_slice(&timefmt::format(now));
        rec.push(b' ');
        rec.extend_from_slice(stream.as_str().as_bytes());
        rec.extend_from_slice(&[b' ', tag, b' ']);
        rec.extend_from_slice(&pending);
        rec.extend_from_slice(tail);
        rec.push(b'\n');
        self.append(&rec);
        self.record = rec;
        // Keep the allocation: the stream's next line reuses it.
        let mut pending = pending;
        pending.clear();
        self.pending[stream.index()] = pending;
    }

    fn append(&mut self, rec: &[u8]) {
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate();
        }
        if self.file.is_none() {
            // A failed rotation or reopen: try again rather than lose
            // every later line.
            self.file = open_log(&self.path).ok();
            self.size = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
        }
        let Some(f) = self.file.as_mut() else { return };
        // A full disk loses this record; the container must not wait on it.
        if f.write_all(rec).is_ok() {
            self.size += rec.len() as u64;
        }
    }

    /// `.1` is the newest old file; each shifts up one, the oldest beyond
    /// `max_files` is overwritten by the rename.
    fn rotate(&mut self) {
        self.file = None;
        if self.max_files == 0 {
            let _ = fs::remove_file(&self.path);
        } else {
            for i in (1..self.max_files).rev() {
                let _ = fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            let _ = fs::rename(&self.path, rotated(&self.path, 1));
        }
        self.file = open_log(&self.path).ok();
        self.size = 0;
    }
}

/// The name of the `n`th rotated file of the log at `path`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const T: &str = "1970-01-01T00:00:01.000000000Z";

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1)
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| l.strip_prefix(T).expect("timestamp").to_string())
            .collect()
    }

    #[test]
    fn lines_across_writes_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&p, 0, 1).unwrap();
        w.write(Stream::Stdout, b"hel", t());
        w.write(Stream::Stderr, b"oops\n", t());
        w.write(Stream::Stdout, b"lo\nworld\r\n\nlast", t());
        w.close_stream(Stream::Stdout, t());
        w.close_stream(Stream::Stderr, t());
        assert_eq!(
            lines(&p),
            [
                " stderr F oops",
                " stdout F hello",
                " stdout F world",
                " stdout F ",
                " stdout F last"
            ]
        );
    }

    #[test]
    fn long_lines_split_at_16k() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&p, 0, 1).unwrap();
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        // In pieces, as pipe reads come.
        for chunk in long.chunks(4096) {
            w.write(Stream::Stdout, chunk, t());
        }
        w.write(Stream::Stdout, b"\n", t());
        let exact = vec![b'b'; MAX_LINE];
        w.write(Stream::Stdout, &exact, t());
        w.write(Stream::Stdout, b"\n", t());
        let got = lines(&p);
        let a16 = "a".repeat(MAX_LINE);
        assert_eq!(
            got,
            [
                format!(" stdout P {a16}"),
                format!(" stdout P {a16}"),
                " stdout F aaaaaaaaaa".to_string(),
                format!(" stdout F {}", "b".repeat(MAX_LINE)),
            ]
        );
    }

    #[test]
    fn rotation_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        // Each record is 30 + 10 + 5 + 1 = 46 bytes: two fit in 100.
        let mut w = LogWriter::open(&p, 100, 2).unwrap();
        for i in 0..7 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), t());
        }
        assert_eq!(lines(&p), [" stdout F line 6"]);
        assert_eq!(
            lines(&rotated(&p, 1)),
            [" stdout F line 4", " stdout F line 5"]
        );
        assert_eq!(
            lines(&rotated(&p, 2)),
            [" stdout F line 2", " stdout F line 3"]
        );
        assert!(!rotated(&p, 3).exists());
    }

    #[test]
    fn rotation_without_kept_files_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&p, 100, 0).unwrap();
        for i in 0..3 {
            w.write(Stream::Stderr, format!("line {i}\n").as_bytes(), t());
        }
        assert_eq!(lines(&p), [" stderr F line 2"]);
        assert!(!rotated(&p, 1).exists());
    }
}
