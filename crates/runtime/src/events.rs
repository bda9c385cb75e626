//! `events`: resource statistics at an interval, and OOM kills as they
//! happen, as one JSON object per line.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;

use crate::cgroups::{Cgroup, stats};
use crate::container::Runtime;
use crate::error::{Context, Result};
use crate::state::Status;

#[derive(Serialize)]
pub struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// Something that wakes up when the container's cgroup records an OOM kill.
enum OomWatch {
    /// v1: an eventfd registered for memory.oom_control.
    V1(OwnedFd),
    /// v2: inotify on memory.events, with the last oom_kill count.
    V2 {
        inotify: OwnedFd,
        dir: std::path::PathBuf,
        kills: u64,
    },
}

fn oom_kills(dir: &std::path::Path) -> u64 {
    fs::read_to_string(dir.join("memory.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

fn watch(cg: &Cgroup) -> Result<Option<OomWatch>> {
    let Some(d) = cg.dir_of("memory") else {
        return Ok(None);
    };
    if d.v2 {
        let ino = rustix::fs::inotify::init(rustix::fs::inotify::CreateFlags::CLOEXEC)
            .ctx(|| "inotify_init")?;
        rustix::fs::inotify::add_watch(
            &ino,
            d.path.join("memory.events"),
            rustix::fs::inotify::WatchFlags::MODIFY,
        )
        .ctx(|| "watch memory.events")?;
        return Ok(Some(OomWatch::V2 {
            inotify: ino,
            dir: d.path.clone(),
            kills: oom_kills(&d.path),
        }));
    }
    // SAFETY: eventfd takes integers only.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(crate::error::Error::os(
            "eventfd",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: eventfd returned a new fd that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    let ctl =
        fs::File::open(d.path.join("memory.oom_control")).ctx(|| "open memory.oom_control")?;
    fs::write(
        d.path.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd()),
    )
    .ctx(|| "register for OOM notifications")?;
    Ok(Some(OomWatch::V1(efd)))
}

impl Runtime {
    /// Prints events until the container stops: a stats event every
    /// `interval` and an oom event on each OOM kill. With `once`, prints one
    /// stats event and returns.
    pub fn events(
        &self,
        id: &str,
        interval: Duration,
        once: bool,
        out: &mut dyn FnMut(String),
    ) -> Result<()> {
        let st = self.load(id)?;
        let cg = Cgroup::from_record(st.cgroup.clone());
        let stats_event = |cg: &Cgroup| {
            serde_json::to_string(&Event {
                kind: "stats",
                id,
                data: Some(stats::collect(cg)),
            })
            .expect("serializes")
        };
        if self.status(&st) == Status::Stopped {
            return Err(crate::error::Error::BadState {
                id: id.into(),
                status: "stopped",
                why: "container not running".into(),
            });
        }
        if once {
            out(stats_event(&cg));
            return Ok(());
        }
        let mut oom = watch(&cg)?;
        loop {
            let ts = rustix::time::Timespec {
                tv_sec: interval.as_secs() as i64,
                tv_nsec: interval.subsec_nanos() as i64,
            };
            let fired = match &oom {
                Some(OomWatch::V1(fd)) | Some(OomWatch::V2 { inotify: fd, .. }) => {
                    let mut p = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                    rustix::event::poll(&mut p, Some(&ts)).unwrap_or(0) > 0
                }
                None => {
                    std::thread::sleep(interval);
                    false
                }
            };
            // An OOM kill that stopped the container is reported before the
            // stream ends: so `fired` comes first.
            if fired {
                let mut killed = false;
                match &mut oom {
                    Some(OomWatch::V1(fd)) => {
                        let mut buf = [0u8; 8];
                        let _ = rustix::io::read(fd.as_fd(), &mut buf);
                        // v1 signals the cgroup's removal the same way.
                        killed = cg.dir_of("memory").is_some_and(|d| d.path.exists());
                    }
                    Some(OomWatch::V2 {
                        inotify,
                        dir,
                        kills,
                    }) => {
                        let mut buf = [0u8; 4096];
                        let _ = rustix::io::read(inotify.as_fd(), &mut buf);
                        let now = oom_kills(dir);
                        killed = now > *kills;
                        *kills = now;
                    }
                    None => {}
                }
                if killed {
                    out(serde_json::to_string(&Event::<()> {
                        kind: "oom",
                        id,
                        data: None,
                    })
                    .expect("serializes"));
                }
                continue;
            }
            if !self.store.dir(id).exists() || self.status(&st) == Status::Stopped {
                return Ok(());
            }
            out(stats_event(&cg));
        }
    }
}
