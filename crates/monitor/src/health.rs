//! Healthchecks, run by the monitor itself: the check is an exec session
//! it starts on its own timer, so no daemon and no systemd timer (podman's
//! way) is needed. The state (docker's `State.Health`: status, failing
//! streak, the last results) is written to a file the engine reads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::protocol::ExecRequest;

/// What the engine asks to be checked (docker's HEALTHCHECK options).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The process run in the container (a shell's `-c` for CMD-SHELL).
    pub args: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures that make it unhealthy.
    pub retries: u32,
    /// Failures in this first stretch do not count (success does).
    pub start_period_ms: u64,
    /// Where the state is written.
    pub state_file: PathBuf,
}

/// One check's result, as docker's inspect shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// docker's `State.Health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    /// starting, healthy or unhealthy.
    pub status: String,
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: Vec<HealthResult>,
}

/// Results kept in the state, as docker keeps.
const KEEP: usize = 5;
/// Output kept of one check.
const OUTPUT_MAX: usize = 4096;

impl HealthState {
    pub fn read(path: &Path) -> Option<HealthState> {
        let raw = std::fs::read(path).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    fn write(&self, path: &Path) {
        let raw = serde_json::to_vec(self).expect("a health state serializes");
        // Nobody to tell if this fails: the engine shows the last state
        // written.
        let _ = berth_base::fs::atomic_write(path, &raw, 0o600);
    }
}

/// The checks of one container: when the next is due, the one running.
pub struct Checker {
    cfg: HealthConfig,
    first: Instant,
    next: Instant,
    /// The running check's pid and start.
    running: Option<(i32, SystemTime)>,
    output: Vec<u8>,
    state: HealthState,
}

impl Checker {
    pub fn new(cfg: HealthConfig, now: Instant) -> Checker {
        let state = HealthState {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        };
        state.write(&cfg.state_file);
        Checker {
            next: now + Duration::from_millis(cfg.interval_ms),
            first: now,
            cfg,
            running: None,
            output: Vec::new(),
            state,
        }
    }

    /// When the loop must wake for the next check.
    pub fn deadline(&self) -> Option<Instant> {
        self.running.is_none().then_some(self.next)
    }

    /// The check to start now, if one is due.
    pub fn due(&self, now: Instant) -> Option<ExecRequest> {
        if self.running.is_some() || now < self.next {
            return None;
        }
        Some(ExecRequest {
            args: self.cfg.args.clone(),
            timeout_ms: Some(self.cfg.timeout_ms),
            ..Default::default()
        })
    }

    pub fn started(&mut self, pid: i32) {
        self.running = Some((pid, SystemTime::now()));
        self.output.clear();
    }

    /// A check that could not even start counts as a failed one.
    pub fn failed_to_start(&mut self, why: &str, now: Instant) -> Option<&str> {
        self.running = Some((0, SystemTime::now()));
        self.output = why.as_bytes().to_vec();
        self.finished(-1, now)
    }

    pub fn is_check(&self, pid: i32) -> bool {
        self.running.is_some_and(|(p, _)| p == pid)
    }

    pub fn output(&mut self, data: &[u8]) {
        let room = OUTPUT_MAX.saturating_sub(self.output.len());
        self.output.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Records the running check's end (a timeout is exit code -1); the
    /// new status when it changed.
    pub fn finished(&mut self, exit_code: i32, now: Instant) -> Option<&str> {
        let (_, began) = self.running.take()?;
        self.next = now + Duration::from_millis(self.cfg.interval_ms);
        let before = self.state.status.clone();
        let in_start_period = now < self.first + Duration::from_millis(self.cfg.start_period_ms);
        if exit_code == 0 {
            self.state.status = "healthy".into();
            self.state.failing_streak = 0;
        } else if !in_start_period {
            self.state.failing_streak += 1;
            if self.state.failing_streak >= self.cfg.retries.max(1) {
                self.state.status = "unhealthy".into();
            }
        }
        self.state.log.push(HealthResult {
            start: berth_base::time::rfc3339(began),
            end: berth_base::time::rfc3339(SystemTime::now()),
            exit_code,
            output: String::from_utf8_lossy(&self.output).into_owned(),
        });
        if self.state.log.len() > KEEP {
            self.state.log.remove(0);
        }
        self.state.write(&self.cfg.state_file);
        (self.state.status != before).then_some(self.state.status.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(retries: u32, start_period_ms: u64) -> (Checker, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let cfg = HealthConfig {
            args: vec!["true".into()],
            interval_ms: 1000,
            timeout_ms: 500,
            retries,
            start_period_ms,
            state_file: d.path().join("health.json"),
        };
        (Checker::new(cfg, Instant::now()), d)
    }

    #[test]
    fn failures_in_a_row_make_it_unhealthy_and_a_success_healthy() {
        let (mut c, d) = checker(2, 0);
        let t0 = Instant::now();
        assert!(c.due(t0).is_none(), "the first check waits an interval");
        let t1 = t0 + Duration::from_millis(1001);
        assert!(c.due(t1).is_some());
        c.started(10);
        assert!(c.due(t1).is_none(), "one check at a time");
        c.output(b"no");
        assert_eq!(c.finished(1, t1), None);
        c.started(11);
        assert_eq!(c.finished(1, t1), Some("unhealthy"));
        c.started(12);
        assert_eq!(c.finished(0, t1), Some("healthy"));
        let s = HealthState::read(&d.path().join("health.json")).unwrap();
        assert_eq!(
            (s.status.as_str(), s.failing_streak, s.log.len()),
            ("healthy", 0, 3)
        );
        assert_eq!(s.log[0].output, "no");
    }

    #[test]
    fn the_start_period_forgives_failures_and_the_log_keeps_five() {
        let (mut c, d) = checker(1, 60_000);
        for pid in 0..7 {
            c.started(pid);
            assert_eq!(c.finished(1, Instant::now()), None);
        }
        let s = HealthState::read(&d.path().join("health.json")).unwrap();
        assert_eq!((s.status.as_str(), s.failing_streak), ("starting", 0));
        assert_eq!(s.log.len(), KEEP);
    }
}
