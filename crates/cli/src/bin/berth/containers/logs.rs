//! `berth logs`: a container's recorded output, the last lines (--tail),
//! from a time on (--since), and with -f as it comes.

use anyhow::{Context, Result};
use berth_engine::Engine;
use berth_engine::model::Status;

/// Prints the container's log records, stdout's to stdout and stderr's
/// to stderr.
pub fn logs(
    e: &Engine,
    key: &str,
    follow: bool,
    tail: Option<usize>,
    since: Option<&str>,
    stamps: bool,
) -> Result<()> {
    use berth_monitor::logs::Reader;
    let c = e.container(key)?;
    let path = e.log_path(&c);
    let live = matches!(
        c.state.status,
        Status::Running | Status::Paused | Status::Created
    );
    let mut reader = if follow && live {
        Reader::follow(&path)?.until_exists(&e.exit_file(&c.id))
    } else {
        match Reader::open(&path) {
            Ok(r) => r,
            // Never started: nothing was logged.
            Err(_) if !path.exists() => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    };
    if let Some(s) = since {
        let t = humantime::parse_rfc3339_weak(s)
            .or_else(|_| humantime::parse_duration(s).map(|d| std::time::SystemTime::now() - d))
            .with_context(|| format!("--since {s}: a time (RFC 3339) or a duration (10m)"))?;
        reader = reader.since(t);
    }
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut print = |r: berth_monitor::logs::Record| {
        use std::io::Write;
        let w: &mut dyn Write = match r.stream {
            berth_monitor::Stream::Stdout => &mut out,
            berth_monitor::Stream::Stderr => &mut err,
        };
        if stamps {
            let _ = write!(w, "{} ", humantime::format_rfc3339_nanos(r.time));
        }
        let _ = w.write_all(&r.msg);
        if !r.partial {
            let _ = w.write_all(b"\n");
        }
        let _ = w.flush();
    };
    if let Some(n) = tail {
        for r in reader.tail(n)? {
            print(r);
        }
        if !follow || !live {
            return Ok(());
        }
    }
    for r in reader {
        print(r?);
    }
    Ok(())
}
