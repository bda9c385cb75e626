//! `berth logs`: a container's recorded output, the last lines (--tail),
//! from a time on (--since), and with -f as it comes.

use anyhow::Result;
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
    until: Option<&str>,
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
        reader = reader.since(crate::events::parse_time("--since", s)?);
    }
    let until = until
        .map(|u| crate::events::parse_time("--until", u))
        .transpose()?;
    // Records are in time order: the first past --until ends the output.
    let before_until = |r: &berth_monitor::logs::Record| until.is_none_or(|u| r.time <= u);
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
        for r in reader.tail(n)?.into_iter().take_while(before_until) {
            print(r);
        }
        if !follow || !live {
            return Ok(());
        }
    }
    for r in reader {
        let r = r?;
        if !before_until(&r) {
            break;
        }
        print(r);
    }
    Ok(())
}
