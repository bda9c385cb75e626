//! Reading CRI log files, for `berth logs`: the rotated files oldest
//! first, then the current one; `--tail N`, `--since T`, and following,
//! which waits for new lines and notices rotation.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::crilog::{Stream, rotated};
use crate::error::{Error, Result};
use crate::timefmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: SystemTime,
    pub stream: Stream,
    /// `P`: the line goes on in the next record of the stream.
    pub partial: bool,
    pub msg: Vec<u8>,
}

/// Parses one line of a CRI log, without its newline.
pub fn parse_line(line: &[u8]) -> std::result::Result<Record, String> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let (Some(ts), Some(stream), Some(tags)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("fewer than three fields".into());
    };
    let msg = parts.next().unwrap_or_default().to_vec();
    let time = std::str::from_utf8(ts)
        .ok()
        .and_then(timefmt::parse)
        .ok_or_else(|| format!("bad timestamp {:?}", String::from_utf8_lossy(ts)))?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => return Err(format!("bad stream {:?}", String::from_utf8_lossy(other))),
    };
    // Tags are ':'-separated; the first says partial or full.
    let partial = match tags.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(format!("bad tag {:?}", String::from_utf8_lossy(tags))),
    };
    Ok(Record {
        time,
        stream,
        partial,
        msg,
    })
}

/// A file being read, and whether it is (as far as we know) the current
/// log rather than a rotated one.
struct Open {
    file: File,
    ino: (u64, u64),
    live: bool,
}

const CHUNK: usize = 64 * 1024;
const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// Rotated files looked for beyond this are not there.
const MAX_ROTATED: u32 = 1000;

pub struct Reader {
    path: PathBuf,
    files: VecDeque<Open>,
    buf: Vec<u8>,
    start: usize,
    follow: bool,
    until: Option<PathBuf>,
    until_seen: bool,
    since: Option<SystemTime>,
    interval: Duration,
    /// The live file did not exist yet (following before the monitor).
    waiting_for_file: bool,
    line_no: u64,
}

impl Reader {
    /// Everything logged so far; the iterator ends at the end of the
    /// current file.
    pub fn open(path: &Path) -> Result<Reader> {
        let files = snapshot(path)?;
        if files.is_empty() {
            return Err(Error::Log {
                path: path.to_path_buf(),
                msg: "no such file".into(),
            });
        }
        Ok(Reader::new(path, files, false))
    }

    /// Everything logged so far, then each new record as it comes; the
    /// iterator waits (it ends only with `until_exists`).
    pub fn follow(path: &Path) -> Result<Reader> {
        let files = snapshot(path)?;
        let mut r = Reader::new(path, files, true);
        r.waiting_for_file = r.files.is_empty();
        Ok(r)
    }

    fn new(path: &Path, files: VecDeque<Open>, follow: bool) -> Reader {
        Reader {
            path: path.to_path_buf(),
            files,
            buf: Vec::new(),
            start: 0,
            follow,
            until: None,
            until_seen: false,
            since: None,
            interval: DEFAULT_INTERVAL,
            waiting_for_file: false,
            line_no: 0,
        }
    }

    /// Following ends once `path` exists (the exit file: the monitor
    /// writes it after the last line) and the log is read to its end.
    pub fn until_exists(mut self, path: &Path) -> Reader {
        self.until = Some(path.to_path_buf());
        self
    }

    /// Only records at or after `t`.
    pub fn since(mut self, t: SystemTime) -> Reader {
        self.since = Some(t);
        self
    }

    /// How often a follower looks for new lines.
    pub fn poll_interval(mut self, d: Duration) -> Reader {
        self.interval = d;
        self
    }

    /// Reads what is logged now and returns the records of its last `n`
    /// lines (a line is its `P` records and the `F` one). A follower goes
    /// on after them.
    pub fn tail(&mut self, n: usize) -> Result<Vec<Record>> {
        let mut ring: VecDeque<Record> = VecDeque::new();
        let mut lines = 0;
        while let Some(rec) = self.next_record(false) {
            let rec = rec?;
            // An unfinished line counts once, with its first record.
            let starts_line = ring
                .back()
                .is_none_or(|r| !r.partial || r.stream != rec.stream);
            if starts_line {
                lines += 1;
            }
            ring.push_back(rec);
            while lines > n {
                while let Some(r) = ring.pop_front() {
                    if !r.partial {
                        break;
                    }
                }
                lines -= 1;
            }
        }
        Ok(ring.into())
    }

    fn next_record(&mut self, wait: bool) -> Option<Result<Record>> {
        loop {
            if let Some(rec) = self.take_line() {
                match rec {
                    Ok(r) if self.since.is_some_and(|s| r.time < s) => continue,
                    other => return Some(other),
                }
            }
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
            // At the end of the front file.
            let Some(front) = self.files.front() else {
                if self.waiting_for_file {
                    match snapshot(&self.path) {
                        Ok(f) if !f.is_empty() => {
                            self.files = f;
                            self.waiting_for_file = false;
                            continue;
                        }
                        _ => {}
                    }
                }
                if !self.follow || !wait {
                    return None;
                }
                std::thread::sleep(self.interval);
                continue;
            };
            if !front.live {
                // A rotated file is complete; a torn last line is lost.
                self.files.pop_front();
                self.buf.clear();
                self.start = 0;
                continue;
            }
            if self.rotated_away() {
                continue;
            }
            if !self.follow || !wait {
                return None;
            }
            if let Some(until) = &self.until {
                if self.until_seen {
                    return None;
                }
                if until.exists() {
                    // Read to the end once more: lines came before it.
                    self.until_seen = true;
                    continue;
                }
            }
            std::thread::sleep(self.interval);
        }
    }

    /// The next whole line in the buffer, parsed.
    fn take_line(&mut self) -> Option<Result<Record>> {
        let rest = &self.buf[self.start..];
        let i = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..i];
        self.line_no += 1;
        let parsed = parse_line(line).map_err(|msg| Error::Log {
            path: self.path.clone(),
            msg: format!("record {}: {msg}", self.line_no),
        });
        self.start += i + 1;
        Some(parsed)
    }

    /// Reads more of the front file; false at its end.
    fn fill(&mut self) -> Result<bool> {
        let Some(front) = self.files.front_mut() else {
            return Ok(false);
        };
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let got = loop {
            match front.file.read(&mut self.buf[old..]) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let n = *got.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        match got {
            Ok(n) => Ok(n > 0),
            Err(e) => Err(Error::Log {
                path: self.path.clone(),
                msg: format!("read: {e}"),
            }),
        }
    }

    /// At the end of the live file: if the log was rotated since it was
    /// opened, queue the files written after it (they may have rotated
    /// more than once) and the new current one. True when it was.
    fn rotated_away(&mut self) -> bool {
        let Some(front) = self.files.front_mut() else {
            return false;
        };
        let ino = front.ino;
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == ino => return false,
            // Between the rename and the new file: look again later.
            Err(_) => return false,
            Ok(_) => {}
        }
        front.live = false;
        let mut newer = Vec::new();
        for k in 1..=MAX_ROTATED {
            let p = rotated(&self.path, k);
            match std::fs::metadata(&p) {
                Ok(m) if (m.dev(), m.ino()) == ino => break,
                Ok(_) => newer.push(p),
                Err(_) => {
                    // Ours was dropped: no rotated file is known newer.
                    newer.clear();
                    break;
                }
            }
        }
        for p in newer.iter().rev().chain(std::iter::once(&self.path)) {
            if let Ok(o) = open(p, false) {
                self.files.push_back(o);
            }
        }
        if let Some(last) = self.files.back_mut() {
            last.live = true;
        }
        true
    }
}

impl Iterator for Reader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        self.next_record(true)
    }
}

fn open(path: &Path, live: bool) -> std::io::Result<Open> {
    let file = File::open(path)?;
    let m = file.metadata()?;
    Ok(Open {
        file,
        ino: (m.dev(), m.ino()),
        live,
    })
}

/// Opens the rotated files (oldest first) and the current one, checking
/// afterwards that no rotation moved them meanwhile.
fn snapshot(path: &Path) -> Result<VecDeque<Open>> {
    for _ in 0..10 {
        let mut names = Vec::new();
        for k in 1..=MAX_ROTATED {
            let p = rotated(path, k);
            if !p.exists() {
                break;
            }
            names.push(p);
        }
        names.reverse();
        names.push(path.to_path_buf());
        let mut files = VecDeque::new();
        let mut steady = true;
        for p in &names {
            match open(p, false) {
                Ok(o) => files.push_back(o),
                Err(e) if e.kind() == ErrorKind::NotFound => steady = false,
                Err(e) => {
                    return Err(Error::Log {
                        path: p.clone(),
                        msg: format!("open: {e}"),
                    });
                }
            }
        }
        let still = files
            .iter()
            .zip(&names)
            .all(|(o, p)| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == o.ino));
        if steady && still {
            if let Some(last) = files.back_mut() {
                last.live = true;
            }
            return Ok(files);
        }
        if !path.exists() && names.len() == 1 {
            return Ok(VecDeque::new());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(Error::Log {
        path: path.to_path_buf(),
        msg: "kept rotating while being opened".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crilog::LogWriter;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn msgs(recs: &[Record]) -> Vec<String> {
        recs.iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    if r.stream == Stream::Stderr { "!" } else { "" },
                    String::from_utf8_lossy(&r.msg),
                    if r.partial { "+" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn parses_lines_of_other_writers() {
        let r = parse_line(b"2024-01-01T00:00:00.5+01:00 stderr P a b ").unwrap();
        assert_eq!(r.stream, Stream::Stderr);
        assert!(r.partial);
        assert_eq!(r.msg, b"a b ");
        let r = parse_line(b"2024-01-01T00:00:00Z stdout F").unwrap();
        assert_eq!(r.msg, b"");
        let r = parse_line(b"2024-01-01T00:00:00Z stdout F:x hi").unwrap();
        assert!(!r.partial);
        for (bad, want) in [
            (&b"2024-01-01T00:00:00Z stdout"[..], "fewer than three"),
            (b"yesterday stdout F x", "bad timestamp"),
            (b"2024-01-01T00:00:00Z stdin F x", "bad stream"),
            (b"2024-01-01T00:00:00Z stdout X x", "bad tag"),
        ] {
            let e = parse_line(bad).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn reads_rotated_files_in_order_with_tail_and_since() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&p, 100, 3).unwrap();
        for i in 0..6 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), t(i));
        }
        assert!(rotated(&p, 2).exists());
        let all: Vec<_> = Reader::open(&p).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(
            msgs(&all),
            ["line 0", "line 1", "line 2", "line 3", "line 4", "line 5"]
        );
        let tail = Reader::open(&p).unwrap().tail(2).unwrap();
        assert_eq!(msgs(&tail), ["line 4", "line 5"]);
        let since: Vec<_> = Reader::open(&p)
            .unwrap()
            .since(t(3))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(msgs(&since), ["line 3", "line 4", "line 5"]);
    }

    #[test]
    fn tail_counts_split_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&p, 0, 1).unwrap();
        w.write(Stream::Stdout, b"one\n", t(1));
        w.write(
            Stream::Stdout,
            &vec![b'x'; crate::crilog::MAX_LINE + 1],
            t(2),
        );
        w.write(Stream::Stdout, b"\n", t(2));
        w.write(Stream::Stderr, b"three\n", t(3));
        let tail = Reader::open(&p).unwrap().tail(2).unwrap();
        assert_eq!(tail.len(), 3);
        assert!(tail[0].partial && !tail[1].partial);
        assert_eq!(msgs(&tail[2..]), ["!three"]);
        assert!(Reader::open(&p).unwrap().tail(0).unwrap().is_empty());
    }

    #[test]
    fn follow_sees_new_lines_across_rotations_and_ends_with_the_exit_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let exit = dir.path().join("exit.json");
        let mut w = LogWriter::open(&p, 100, 5).unwrap();
        w.write(Stream::Stdout, b"before\n", t(0));
        let mut f = Reader::follow(&p)
            .unwrap()
            .until_exists(&exit)
            .poll_interval(Duration::from_millis(5));
        assert_eq!(msgs(&f.tail(10).unwrap()), ["before"]);
        let writer = std::thread::spawn(move || {
            for i in 0..9 {
                std::thread::sleep(Duration::from_millis(3));
                w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), t(i));
            }
            std::fs::write(&exit, "{}").unwrap();
        });
        let got: Vec<_> = f.by_ref().map(|r| r.unwrap()).collect();
        writer.join().unwrap();
        let want: Vec<String> = (0..9).map(|i| format!("line {i}")).collect();
        assert_eq!(msgs(&got), want);
    }

    #[test]
    fn missing_log_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let e = Reader::open(&p).err().unwrap().to_string();
        assert!(e.contains("ctr.log") && e.contains("no such file"), "{e}");
    }
}
