//! Text for people: tables padded to their widest cell, SI sizes and
//! ages ("3 hours ago", in docker's words) from RFC 3339 times.

/// Prints rows under a header, columns padded to their widest cell.
pub fn table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) {
    let mut all: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    all.extend(rows.iter().map(|r| r.as_ref().to_vec()));
    let widths: Vec<usize> = (0..header.len())
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in all {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c + 1 == r.len() {
                    s.clone()
                } else {
                    let pad = widths[c] - s.chars().count();
                    format!("{s}{}", " ".repeat(pad))
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// "3 minutes" since an RFC 3339 time.
pub fn since(t: Option<&str>) -> String {
    ago(t).trim_end_matches(" ago").to_string()
}

/// podman's SI sizes: "4.87 MB".
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", units[u]).replace(".000", "")
    }
}

/// docker's sizes (go-units' HumanSizeWithPrecision(n, 3), as `ps -s`
/// shows them): SI units, three significant digits, no space: "12B",
/// "4.26MB", "1e+03kB" where Go's %.3g rounds up to a thousand.
pub fn docker_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{}{}", go_g3(v), units[u])
}

/// Go's `%.3g` of a value in [0, 1000]: three significant digits without
/// trailing zeros, or Go's exponent form when rounding reaches 1000.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    // Rust's exponent form rounds exactly as Go's does (on the binary
    // value): "4.26e0".
    let e = format!("{v:.2e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if !(-4..3).contains(&exp) {
        let m = trim(format!("{}.{}", &digits[..1], &digits[1..]));
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    if exp >= 0 {
        let point = exp as usize + 1;
        trim(format!("{}.{}", &digits[..point], &digits[point..]))
    } else {
        let zeros = "0".repeat((-exp - 1) as usize);
        trim(format!("0.{zeros}{digits}"))
    }
}

/// "3 hours ago" from an RFC 3339 time.
pub fn ago(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else {
        return "unknown".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!("{} ago", duration((now - t).max(0)))
}

/// An age in docker's words (go-units' HumanDuration, which podman and
/// scripts reading `ps` know): "Less than a second", "About a minute",
/// "3 hours", "2 weeks".
pub fn duration(secs: i64) -> String {
    let minutes = secs / 60;
    // Hours are rounded (docker's "About an hour" from 30 minutes on
    // would be wrong: minutes come first, so this is from 60).
    let hours = (secs as f64 / 3600.0).round() as i64;
    match secs {
        ..1 => "Less than a second".into(),
        1 => "1 second".into(),
        2..60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

/// An RFC 3339 time as docker's templates print one (Go's time.Time):
/// "2026-12-04 21:40:05 +0000 UTC"; the text as it is if it is not one.
pub fn docker_time(t: &str) -> String {
    let (Some(date), Some(clock)) = (t.get(0..10), t.get(11..19)) else {
        return t.to_string();
    };
    let rest = &t[19..];
    // Fractions of a second go; the zone is what follows them.
    let zone = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let zone = match zone {
        "Z" | "" => "+0000 UTC".to_string(),
        z => {
            let z = z.replace(':', "");
            format!("{z} {z}")
        }
    };
    format!("{date} {clock} {zone}")
}

#[cfg(test)]
mod tests {
    use super::docker_size;

    /// What Go's fmt gives for units.HumanSizeWithPrecision(n, 3).
    #[test]
    fn sizes_as_docker_prints_them() {
        for (n, want) in [
            (0, "0B"),
            (12, "12B"),
            (999, "999B"),
            (1000, "1kB"),
            (1234, "1.23kB"),
            (4_265_984, "4.27MB"),
            (4_300_000, "4.3MB"),
            (10_000_000, "10MB"),
            (123_456_789, "123MB"),
            (999_600, "1e+03kB"),
            (2_500_000_000, "2.5GB"),
        ] {
            assert_eq!(docker_size(n), want, "{n}");
        }
    }

    #[test]
    fn ages_are_dockers_words() {
        for (secs, want) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86400, "2 weeks"),
            (60 * 86400, "2 months"),
            (730 * 86400, "2 years"),
        ] {
            assert_eq!(super::duration(secs), want, "{secs} s");
        }
    }
}
