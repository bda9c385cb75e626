//! runc-compatible logging: `--log FILE` in text (logrus style) or json,
//! one entry per line; containerd reads the last "error" entry from it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

struct Sink {
    file: Option<File>,
    json: bool,
    debug: bool,
}

pub fn init(path: Option<&Path>, json: bool, debug: bool) -> std::io::Result<()> {
    let file = match path {
        Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    *SINK.lock().unwrap() = Some(Sink { file, json, debug });
    berth_runtime::set_warning_sink(|m| entry("warning", m));
    Ok(())
}

fn format(level: &str, msg: &str, json: bool) -> String {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!("time={time:?} level={level} msg={msg:?}")
    }
}

fn entry(level: &str, msg: &str) {
    let guard = SINK.lock().unwrap();
    let Some(sink) = guard.as_ref() else {
        eprintln!("berth-runtime: {msg}");
        return;
    };
    if level == "debug" && !sink.debug {
        return;
    }
    match &sink.file {
        Some(f) => {
            let mut f: &File = f;
            let _ = writeln!(f, "{}", format(level, msg, sink.json));
        }
        None if level == "error" => eprintln!("berth-runtime: {msg}"),
        None => eprintln!("berth-runtime: {level}: {msg}"),
    }
}

pub fn debug(msg: &str) {
    entry("debug", msg);
}

/// Reports a fatal error: to the log, and as a plain line on stderr, which
/// is what conmon hands to podman.
pub fn error(msg: &str) {
    let to_file = SINK
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|s| s.file.is_some());
    entry("error", msg);
    if to_file {
        eprintln!("berth-runtime: {msg}");
    }
}
