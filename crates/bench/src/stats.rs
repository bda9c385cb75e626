//! Wall and CPU time of child processes, and medians.

use std::time::{Duration, Instant};

/// CPU time (user + system) of all reaped children so far.
pub fn children_cpu() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid out-pointer for the call.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One measured run: wall time and the CPU time its processes used.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
}

pub fn measure(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Sample> {
    let (cpu0, t0) = (children_cpu(), Instant::now());
    f()?;
    Ok(Sample {
        wall: t0.elapsed(),
        cpu: children_cpu() - cpu0,
    })
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
