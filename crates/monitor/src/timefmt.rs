//! RFC 3339 timestamps in UTC with nanoseconds, the CRI log's clock, made
//! and read without a calendar crate. Reading accepts what other CRI
//! writers produce too: any number of fraction digits and any offset.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
pub const LEN: usize = 30;

/// Formats `t` with a fixed nine-digit fraction, so that lines sort as text.
pub fn format(t: SystemTime) -> [u8; LEN] {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    };
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut out = [0u8; LEN];
    let mut w = Digits {
        buf: &mut out,
        at: 0,
    };
    w.num(y.clamp(0, 9999) as u64, 4);
    w.ch(b'-');
    w.num(mo as u64, 2);
    w.ch(b'-');
    w.num(d as u64, 2);
    w.ch(b'T');
    w.num((sod / 3600) as u64, 2);
    w.ch(b':');
    w.num((sod / 60 % 60) as u64, 2);
    w.ch(b':');
    w.num((sod % 60) as u64, 2);
    w.ch(b'.');
    w.num(nanos as u64, 9);
    w.ch(b'Z');
    out
}

/// The same as `format`, as a String.
pub fn format_string(t: SystemTime) -> String {
    String::from_utf8_lossy(&format(t)).into_owned()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let y = num(&b[0..4])? as i64;
    let mo = num(&b[5..7])?;
    let d = num(&b[8..10])?;
    let h = num(&b[11..13])? as i64;
    let mi = num(&b[14..16])? as i64;
    let sec = num(&b[17..19])? as i64;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
        return None;
    }
    // 60: a leap second, which Unix time folds into the next one.
    if sec > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos: u64 = 0;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, c) in tail[..n].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u64::from(c - b'0');
            }
        }
        for _ in n..9 {
            nanos *= 10;
        }
        rest = &tail[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh @ ..] if oh.len() == 5 && oh[2] == b':' => {
            let v = num(&oh[0..2])? as i64 * 3600 + num(&oh[3..5])? as i64 * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(Duration::from_nanos(nanos))
}

struct Digits<'a> {
    buf: &'a mut [u8; LEN],
    at: usize,
}

impl Digits<'_> {
    fn num(&mut self, mut v: u64, width: usize) {
        for i in (0..width).rev() {
            self.buf[self.at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.at += width;
    }
    fn ch(&mut self, c: u8) {
        self.buf[self.at] = c;
        self.at += 1;
    }
}

fn num(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// The calendar arithmetic counts years from March, so that the leap day is
// the last day of the counted year and months have a regular pattern.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(&format(at(0, 0)), b"1970-01-01T00:00:00.000000000Z");
        // 2024-02-29 12:34:56.000000789 UTC, a leap day.
        assert_eq!(
            &format(at(1_709_210_096, 789)),
            b"2024-02-29T12:34:56.000000789Z"
        );
        assert_eq!(
            &format(at(4_102_444_799, 999_999_999)),
            b"2099-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn parse_inverts_format_over_many_days() {
        for day in (0..80_000u64).step_by(37) {
            let t = at(
                day * 86_400 + day * 13 % 86_400,
                (day * 7919 % 1_000_000_000) as u32,
            );
            let s = format_string(t);
            assert_eq!(parse(&s), Some(t), "{s}");
        }
    }

    #[test]
    fn parses_other_writers_forms() {
        let t = at(1_709_210_096, 0);
        assert_eq!(parse("2024-02-29T12:34:56Z"), Some(t));
        assert_eq!(parse("2024-02-29T13:34:56+01:00"), Some(t));
        assert_eq!(parse("2024-02-29T10:04:56-02:30"), Some(t));
        assert_eq!(
            parse("2024-02-29T12:34:56.5Z"),
            Some(at(1_709_210_096, 500_000_000))
        );
        assert_eq!(
            parse("2024-02-29T12:34:56.1234567891Z"),
            Some(at(1_709_210_096, 123_456_789))
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01X00:00:00Z",
            "2024-0a-01T00:00:00Z",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
    }
}
