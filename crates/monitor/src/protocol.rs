//! What a client asks the monitor for, in the HELLO frame that opens every
//! connection, and the monitor's REPLY (both JSON). The version lets a
//! client tell a monitor too old for its request from a refusal.
//!
//! - `attach`: the container's output from now on (and its stdin, when it
//!   has one), then its exit code.
//! - `exec`: a new process in the container, with pipes or a pty of its
//!   own; its output, then its exit code (TIMED_OUT first when it ran past
//!   `timeout_ms` and was killed). `detach` starts it and ends the
//!   session at once.
//! - `reopen-log`: the log file is opened anew (after a rotator moved it).

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Attach,
    Exec(ExecRequest),
    ReopenLog,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// NAME=VALUE, over the container's own environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// Numeric `uid[:gid]` (names are resolved by the caller, in the
    /// container's files).
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the container's process's sets.
    pub caps: Vec<String>,
    pub tty: bool,
    /// The client sends stdin; without it the process reads /dev/null.
    pub stdin: bool,
    /// Start it and end the session: no stdio, nothing waited for.
    pub detach: bool,
    /// Killed (SIGKILL) after this long.
    pub timeout_ms: Option<u64>,
    /// The pty's first size.
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reply {
    pub version: u32,
    /// The exec'd process's pid (host namespace).
    pub pid: Option<i32>,
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(pid: Option<i32>) -> Reply {
        Reply {
            version: VERSION,
            pid,
            error: None,
        }
    }

    pub fn error(msg: impl Into<String>) -> Reply {
        Reply {
            version: VERSION,
            pid: None,
            error: Some(msg.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_on_the_wire() {
        let h = Hello {
            version: VERSION,
            request: Request::Exec(ExecRequest {
                args: vec!["ls".into()],
                tty: true,
                ..Default::default()
            }),
        };
        let raw = serde_json::to_string(&h).unwrap();
        assert!(raw.contains(r#""op":"exec""#), "{raw}");
        assert_eq!(serde_json::from_str::<Hello>(&raw).unwrap(), h);
        let a: Hello = serde_json::from_str(r#"{"version":1,"op":"attach"}"#).unwrap();
        assert_eq!(a.request, Request::Attach);
        assert!(serde_json::from_str::<Hello>(r#"{"version":1,"op":"format-disk"}"#).is_err());
    }
}
