//! Signal names and numbers, as `kill -s` and `--stop-signal` take them.

use crate::error::{Error, Result};

pub fn parse(s: &str) -> Result<i32> {
    berth_runtime::signals::parse(s)
        .ok_or_else(|| Error::invalid(format!("signal {s:?}"), "no such signal"))
}
