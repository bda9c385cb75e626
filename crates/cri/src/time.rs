//! CRI's times: nanoseconds since the epoch, from the engine's RFC 3339
//! timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// 0 for a missing or unparsable time, as CRI leaves unset times.
pub fn nanos(rfc3339: &str) -> i64 {
    berth_base::time::parse_rfc3339(rfc3339)
        .map(since_epoch)
        .unwrap_or(0)
}

pub fn nanos_opt(t: Option<&String>) -> i64 {
    t.map(|s| nanos(s)).unwrap_or(0)
}

pub fn now() -> i64 {
    since_epoch(SystemTime::now())
}

pub fn since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nanos_round_trip() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(
            super::nanos(&berth_base::time::rfc3339(t)),
            1_700_000_000_123_456_789
        );
        assert_eq!(super::nanos("yesterday"), 0);
    }
}
