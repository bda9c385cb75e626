//! The figures of every target as markdown tables, in the style of
//! docs/benchmarks.md: medians, and ratios against the first target.

use std::time::Duration;

use super::memory::{Snapshot, Usage};
use super::workload::{STEPS, Serve};
use crate::stats::{median, ms};

/// What one target gave; whatever it got through before a failure.
#[derive(Default)]
pub struct Outcome {
    pub name: String,
    pub version: String,
    pub error: Option<String>,
    /// One entry per lifecycle run, one duration per step.
    pub runs: Vec<Vec<Duration>>,
    /// The daemon's memory after start-up, before any work.
    pub idle: Option<Usage>,
    pub serve: Option<Serve>,
    /// Memory with every serving pod up.
    pub loaded: Option<Snapshot>,
    pub restart: Option<Restart>,
}

/// A SIGKILL of the daemon with every serving pod up, and its restart.
#[derive(Clone)]
pub struct Restart {
    /// From the restart until it answers Version.
    pub answered: Duration,
    /// Until it lists every pod ready and every container running.
    pub listed: Duration,
}

impl Outcome {
    fn step(&self, i: usize) -> Option<Duration> {
        (!self.runs.is_empty()).then(|| median(self.runs.iter().map(|r| r[i]).collect()))
    }
}

fn ratio(x: Option<f64>, base: Option<f64>) -> String {
    match (x, base) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:.2}x", x / b),
        _ => "-".into(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

pub fn print(outs: &[Outcome], runs: usize, parallel: usize, stop_timeout: i64) {
    let Some(base) = outs.first() else {
        return;
    };
    let others = &outs[1..];
    println!(
        "CRI v1 over a unix socket: each pod with its own network namespace (CNI bridge, host-local IPAM, the same conflist for every runtime) and one busybox container from a local registry, stores on tmpfs; {runs} runs each after one warm-up (median)\n"
    );
    let mut head = String::from("| step |");
    let mut rule = String::from("|---|");
    for o in outs {
        head += &format!(" {} ms |", o.name);
        rule += "---:|";
    }
    for o in others {
        head += &format!(" {} vs {} |", o.name, base.name);
        rule += "---:|";
    }
    println!("{head}\n{rule}");
    for (i, step) in STEPS.iter().enumerate() {
        let label = if *step == "StopContainer" {
            format!("StopContainer ({stop_timeout} s grace; exits on SIGTERM)")
        } else {
            step.to_string()
        };
        let mut line = format!("| {label} |");
        for o in outs {
            line += &format!(" {} |", o.step(i).map(ms).unwrap_or("-".into()));
        }
        for o in others {
            let s = |o: &Outcome| o.step(i).map(|d| d.as_secs_f64());
            line += &format!(" {} |", ratio(s(o), s(base)));
        }
        println!("{line}");
    }
    println!();
    for o in outs {
        let version = if o.version.is_empty() {
            String::new()
        } else {
            format!(" {};", o.version)
        };
        match &o.error {
            Some(e) => println!("- {}:{version} failed: {e}", o.name),
            None => println!("- {}:{}", o.name, version.trim_end_matches(';')),
        }
    }

    let n = outs
        .iter()
        .find_map(|o| o.serve.as_ref().map(|s| s.pods))
        .unwrap_or(0);
    if n > 0 {
        let how = if parallel <= 1 {
            "one after another".to_string()
        } else {
            format!("{parallel} at a time")
        };
        println!(
            "\n{n} pods, one busybox `httpd` container each (the image pulled before; pods started {how}): time from the first RunPodSandbox until the first and the last pod answers HTTP on its pod IP, polled from the host\n"
        );
        println!(
            "| runtime | first answers, s | last answers, s | last vs {} | all started, s | all removed, s |\n|---|---:|---:|---:|---:|---:|",
            base.name
        );
        let last = |o: &Outcome| o.serve.as_ref().map(|s| s.last.as_secs_f64());
        for o in outs {
            match &o.serve {
                Some(s) => println!(
                    "| {} | {:.2} | {:.2} | {} | {:.2} | {} |",
                    o.name,
                    s.first.as_secs_f64(),
                    s.last.as_secs_f64(),
                    ratio(last(o), last(base)),
                    s.started.as_secs_f64(),
                    if s.removed.is_zero() {
                        "-".to_string()
                    } else {
                        format!("{:.2}", s.removed.as_secs_f64())
                    }
                ),
                None => println!("| {} | - | - | - | - | - |", o.name),
            }
        }
    }

    if outs.iter().any(|o| o.restart.is_some()) {
        println!(
            "\nThe daemon killed with SIGKILL with the {n} pods serving, and started again: time until it answers Version, and until it lists every pod ready and every container running\n"
        );
        println!(
            "| runtime | answers, ms | lists all, ms | lists all vs {} |\n|---|---:|---:|---:|",
            base.name
        );
        let listed = |o: &Outcome| o.restart.as_ref().map(|r| r.listed.as_secs_f64());
        for o in outs {
            match &o.restart {
                Some(r) => println!(
                    "| {} | {} | {} | {} |",
                    o.name,
                    ms(r.answered),
                    ms(r.listed),
                    ratio(listed(o), listed(base))
                ),
                None => println!("| {} | - | - | - |", o.name),
            }
        }
    }

    println!(
        "\nMemory: the daemon's RSS after start-up (no image, no pod) and with {n} pods; per pod, the PSS of every process the runtime started (daemon, shims or monitors, pause or infra processes; not the containers' own processes), summed and divided by the pods\n"
    );
    println!(
        "| runtime | daemon RSS idle, MiB | daemon RSS with pods, MiB | runtime PSS per pod, KiB | vs {} | of which not the daemon, KiB | runtime processes per pod |\n|---|---:|---:|---:|---:|---:|---:|",
        base.name
    );
    let per_pod = |o: &Outcome| -> Option<f64> {
        let (l, s) = (o.loaded.as_ref()?, o.serve.as_ref()?);
        Some(l.runtime.pss_kib as f64 / s.pods.max(1) as f64)
    };
    for o in outs {
        let idle = o
            .idle
            .as_ref()
            .map(|u| mib(u.rss_kib))
            .unwrap_or("-".into());
        let loaded = o.loaded.as_ref();
        let procs = match (loaded, &o.serve) {
            // The daemon is not the pods'.
            (Some(l), Some(s)) => format!(
                "{:.2}",
                l.runtime_procs.saturating_sub(1) as f64 / s.pods.max(1) as f64
            ),
            _ => "-".into(),
        };
        // Shims or monitors and infra processes: what each pod adds
        // besides the daemon's own growth.
        let beside = match (loaded, &o.serve) {
            (Some(l), Some(s)) => format!(
                "{:.0}",
                l.runtime.pss_kib.saturating_sub(l.daemon.pss_kib) as f64 / s.pods.max(1) as f64
            ),
            _ => "-".into(),
        };
        println!(
            "| {} | {idle} | {} | {} | {} | {beside} | {procs} |",
            o.name,
            loaded.map(|l| mib(l.daemon.rss_kib)).unwrap_or("-".into()),
            per_pod(o).map(|k| format!("{k:.0}")).unwrap_or("-".into()),
            ratio(per_pod(o), per_pod(base)),
        );
    }
}
