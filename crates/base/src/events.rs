//! The lifecycle event log: one JSON line per event (docker's event
//! shape), appended by whichever berth process (or container monitor) made
//! the change, read back and followed by `berth events` and a daemon's
//! subscribers. Appends are single O_APPEND writes, so concurrent writers
//! never interleave within a line; the file is rotated to `.1` past
//! MAX_LOG bytes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "events.log";
/// Past this size the log is rotated (one old file kept).
pub const MAX_LOG: u64 = 1 << 20;

/// An event, in docker's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// container, pod, image, volume, network.
    #[serde(rename = "Type")]
    pub kind: String,
    /// create, start, die, stop, kill, destroy, pause, unpause, rename,
    /// oom, exec_start...
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    pub fn new(kind: &str, action: &str, id: &str) -> Event {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes: BTreeMap::new(),
            },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        }
    }

    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Event {
        self.actor.attributes.insert(k.into(), v.into());
        self
    }

    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.time_nano.max(0) as u64)
    }

    /// docker's text form: `TIME TYPE ACTION ID (k=v, ...)`.
    pub fn text(&self) -> String {
        let attrs: Vec<String> = self
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} {} {} {} ({})",
            crate::time::rfc3339(self.at()),
            self.kind,
            self.action,
            self.actor.id,
            attrs.join(", ")
        )
    }
}

/// Appends `e` to the log in `dir`; rotates it first when it is too big.
pub fn append(dir: &Path, e: &Event) -> io::Result<()> {
    let path = dir.join(FILE);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG) {
        rotate(dir)?;
    }
    let mut line = serde_json::to_vec(e).expect("events serialize");
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&path)?;
    f.write_all(&line)
}

fn rotate(dir: &Path) -> io::Result<()> {
    use crate::lock::{Flock, Kind, Wait};
    let _l = Flock::acquire(
        &dir.join("events.lock"),
        Kind::Exclusive,
        Wait::For(Duration::from_secs(5)),
    )?;
    let path = dir.join(FILE);
    // Another writer may have rotated it meanwhile.
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG) {
        std::fs::rename(&path, dir.join(format!("{FILE}.1")))?;
    }
    Ok(())
}

/// Every event in the log from `since` on, oldest first (the rotated
/// file first). Lines that do not parse are skipped.
pub fn read(dir: &Path, since: Option<SystemTime>) -> Vec<Event> {
    let mut out = Vec::new();
    for p in [dir.join(format!("{FILE}.1")), dir.join(FILE)] {
        let Ok(f) = File::open(&p) else { continue };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            if let Ok(e) = serde_json::from_str::<Event>(&line)
                && since.is_none_or(|s| e.at() >= s)
            {
                out.push(e);
            }
        }
    }
    out
}

/// The events appended from now on, as they come (across rotations).
pub struct Follow {
    dir: PathBuf,
    file: Option<(File, u64)>,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<Event>,
}

impl Follow {
    /// Starts at the log's current end.
    pub fn from_now(dir: &Path) -> Follow {
        let file = File::open(dir.join(FILE)).ok().and_then(|mut f| {
            f.seek(SeekFrom::End(0)).ok()?;
            let ino = std::os::unix::fs::MetadataExt::ino(&f.metadata().ok()?);
            Some((f, ino))
        });
        Follow {
            dir: dir.to_path_buf(),
            file,
            buf: Vec::new(),
            pending: Default::default(),
        }
    }

    /// The next event, waiting at most until `deadline` (None: forever);
    /// None at the deadline.
    pub fn next_before(&mut self, deadline: Option<Instant>) -> Option<Event> {
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            self.poll();
            if !self.pending.is_empty() {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            let nap = match deadline {
                Some(d) => pause.min(d.saturating_duration_since(Instant::now())),
                None => pause,
            };
            std::thread::sleep(nap);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Reads what was appended; moves to a new file after a rotation.
    fn poll(&mut self) {
        use std::io::Read;
        let path = self.dir.join(FILE);
        let current = std::fs::metadata(&path)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if let Some((f, ino)) = &mut self.file {
            let mut chunk = Vec::new();
            let _ = f.read_to_end(&mut chunk);
            self.buf.extend_from_slice(&chunk);
            if current != Some(*ino) {
                // Rotated (or removed): what the old file had is read.
                self.file = None;
            }
        }
        if self.file.is_none()
            && let Ok(f) = File::open(&path)
            && let Ok(m) = f.metadata()
        {
            self.file = Some((f, std::os::unix::fs::MetadataExt::ino(&m)));
            let (f, _) = self.file.as_mut().expect("just set");
            let mut chunk = Vec::new();
            let _ = f.read_to_end(&mut chunk);
            self.buf.extend_from_slice(&chunk);
        }
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            if let Ok(e) = serde_json::from_slice::<Event>(&line) {
                self.pending.push_back(e);
            }
        }
    }
}

impl Iterator for Follow {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.next_before(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_events_are_read_and_followed_across_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        append(
            d.path(),
            &Event::new("container", "create", "a").attr("name", "x"),
        )
        .unwrap();
        let mut follow = Follow::from_now(d.path());
        append(d.path(), &Event::new("container", "start", "a")).unwrap();
        let e = follow
            .next_before(Some(Instant::now() + Duration::from_secs(2)))
            .unwrap();
        assert_eq!((e.action.as_str(), e.actor.id.as_str()), ("start", "a"));
        // Past the size limit the file rotates; the follower goes on.
        let big = Event::new("container", "die", "b").attr("pad", "p".repeat(MAX_LOG as usize));
        append(d.path(), &big).unwrap();
        append(d.path(), &Event::new("container", "destroy", "b")).unwrap();
        assert!(d.path().join(format!("{FILE}.1")).exists());
        let got: Vec<String> = (0..2)
            .map(|_| {
                follow
                    .next_before(Some(Instant::now() + Duration::from_secs(2)))
                    .unwrap()
                    .action
            })
            .collect();
        assert_eq!(got, ["die", "destroy"]);
        let all: Vec<String> = read(d.path(), None).into_iter().map(|e| e.action).collect();
        assert_eq!(all, ["create", "start", "die", "destroy"]);
        assert!(
            follow
                .next_before(Some(Instant::now() + Duration::from_millis(50)))
                .is_none()
        );
        let text = Event::new("container", "die", "abc")
            .attr("exitCode", "3")
            .text();
        assert!(text.ends_with("container die abc (exitCode=3)"), "{text}");
    }
}
