//! Healthchecks as docker defines them (HEALTHCHECK in the image, the
//! --health-* flags over it), run by the container's monitor on its own
//! timer (berth_monitor::health); the state it writes read back for `ps`,
//! `inspect` and `healthcheck run`.

use std::time::Duration;

use berth_monitor::health::{HealthConfig, HealthState};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Container, HealthCheck, Status};

/// docker's defaults.
const INTERVAL_MS: u64 = 30_000;
const TIMEOUT_MS: u64 = 30_000;
const RETRIES: u32 = 3;

/// The image's HEALTHCHECK (docker's image config keeps it under
/// `config.Healthcheck`, durations in nanoseconds).
pub fn from_image(config: &serde_json::Value) -> Option<HealthCheck> {
    let h = config.get("config")?.get("Healthcheck")?;
    let ms = |k: &str| h.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) / 1_000_000;
    Some(HealthCheck {
        test: serde_json::from_value(h.get("Test")?.clone()).ok()?,
        interval_ms: ms("Interval"),
        timeout_ms: ms("Timeout"),
        start_period_ms: ms("StartPeriod"),
        retries: h
            .get("Retries")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as u32,
    })
}

/// The flags' healthcheck over the image's: a test given replaces the
/// image's, a duration or count given replaces its; `NONE` turns it off.
pub fn merge(given: Option<HealthCheck>, image: Option<HealthCheck>) -> Option<HealthCheck> {
    let (g, i) = (given.unwrap_or_default(), image.unwrap_or_default());
    let test = if g.test.is_empty() { i.test } else { g.test };
    let pick = |a: u64, b: u64| if a > 0 { a } else { b };
    let h = HealthCheck {
        test,
        interval_ms: pick(g.interval_ms, i.interval_ms),
        timeout_ms: pick(g.timeout_ms, i.timeout_ms),
        start_period_ms: pick(g.start_period_ms, i.start_period_ms),
        retries: if g.retries > 0 { g.retries } else { i.retries },
    };
    (!h.test.is_empty()).then_some(h)
}

/// The process a test runs; None for `NONE` (and for no test).
pub fn args(test: &[String]) -> Result<Option<Vec<String>>> {
    match test.split_first() {
        None => Ok(None),
        Some((kind, rest)) => match (kind.as_str(), rest) {
            ("NONE", _) => Ok(None),
            ("CMD", [_, ..]) => Ok(Some(rest.to_vec())),
            ("CMD-SHELL", [cmd]) => Ok(Some(vec!["/bin/sh".into(), "-c".into(), cmd.clone()])),
            _ => Err(Error::invalid(
                "healthcheck",
                format!(
                    "{test:?}: expected [\"CMD\", args..], [\"CMD-SHELL\", command] or [\"NONE\"]"
                ),
            )),
        },
    }
}

impl Engine {
    /// What the container's monitor is asked to check, if anything.
    pub(crate) fn health_config(&self, c: &Container) -> Result<Option<HealthConfig>> {
        let Some(h) = &c.config.healthcheck else {
            return Ok(None);
        };
        let Some(args) = args(&h.test)? else {
            return Ok(None);
        };
        let or = |v: u64, d: u64| if v > 0 { v } else { d };
        Ok(Some(HealthConfig {
            args,
            interval_ms: or(h.interval_ms, INTERVAL_MS),
            timeout_ms: or(h.timeout_ms, TIMEOUT_MS),
            retries: if h.retries > 0 { h.retries } else { RETRIES },
            start_period_ms: h.start_period_ms,
            state_file: self.health_file(&c.id),
        }))
    }

    fn health_file(&self, id: &str) -> std::path::PathBuf {
        self.userdata(id).join("health.json")
    }

    /// The container's health, while it has a check and has run.
    pub fn health(&self, c: &Container) -> Option<HealthState> {
        let checked = c
            .config
            .healthcheck
            .as_ref()
            .is_some_and(|h| args(&h.test).is_ok_and(|a| a.is_some()));
        if !checked || c.state.status == Status::Created {
            return None;
        }
        HealthState::read(&self.health_file(&c.id))
    }

    /// Runs the check once, now (`healthcheck run`): true when it passed,
    /// with its output.
    pub fn healthcheck_run(&self, key: &str) -> Result<(bool, String)> {
        let c = self.container(key)?;
        let Some(cfg) = self.health_config(&c)? else {
            return Err(Error::invalid(
                format!("container {}", c.name),
                "it has no healthcheck",
            ));
        };
        let r = crate::exec::ExecRequest {
            args: cfg.args,
            timeout: Some(Duration::from_millis(cfg.timeout_ms)),
            ..Default::default()
        };
        let done = self.exec_sync(&c.id, &r)?;
        let mut out = String::from_utf8_lossy(&done.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&done.stderr));
        Ok((done.exit_code == Some(0) && !done.timed_out, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str], interval_ms: u64) -> HealthCheck {
        HealthCheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval_ms,
            ..Default::default()
        }
    }

    #[test]
    fn the_flags_go_over_the_image_and_none_turns_it_off() {
        let image = serde_json::json!({"config": {"Healthcheck": {
            "Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000u64, "Retries": 2}}});
        let i = from_image(&image).unwrap();
        assert_eq!((i.interval_ms, i.retries), (5000, 2));
        let m = merge(Some(hc(&[], 1000)), Some(i.clone())).unwrap();
        assert_eq!(
            (m.test[0].as_str(), m.interval_ms, m.retries),
            ("CMD-SHELL", 1000, 2)
        );
        let off = merge(Some(hc(&["NONE"], 0)), Some(i)).unwrap();
        assert_eq!(args(&off.test).unwrap(), None);
        assert_eq!(merge(None, None), None);
        assert_eq!(
            args(&hc(&["CMD-SHELL", "x"], 0).test).unwrap().unwrap(),
            ["/bin/sh", "-c", "x"]
        );
        assert!(args(&hc(&["CMD-SHELL"], 0).test).is_err());
        assert!(args(&hc(&["SHELL", "x"], 0).test).is_err());
    }
}
