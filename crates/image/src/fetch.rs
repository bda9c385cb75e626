//! A file from an HTTP(S) URL (a Dockerfile's `ADD https://...`), into a
//! file, hashed as it comes; bounded in size and time, with the same TLS
//! settings as registries (certs.d, --tls-verify).

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::client::TransportOptions;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// What came.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub digest: Digest,
    pub size: u64,
    /// The server's Last-Modified, if it sent one.
    pub modified: Option<SystemTime>,
}

/// Downloads `url` into `dest` (a new file); at most `limit` bytes.
pub fn fetch(url: &str, dest: &Path, opts: &TransportOptions, limit: u64) -> Result<Fetched> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(url, format!("start the async runtime: {e}")))?;
    rt.block_on(fetch_async(url, dest, opts, limit))
}

async fn fetch_async(
    url: &str,
    dest: &Path,
    opts: &TransportOptions,
    limit: u64,
) -> Result<Fetched> {
    let bad = |why: String| Error::invalid(url, why);
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https URLs are fetched".into()));
    }
    let host = parsed.host_str().unwrap_or_default().to_string();
    let tls = crate::tls::client_config(&host, &opts.certs_dir, opts.tls_verify.unwrap_or(true))?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(opts.timeouts.connect)
        .read_timeout(opts.timeouts.idle)
        .no_proxy()
        .build()
        .map_err(|e| bad(format!("HTTP client: {e}")))?;
    let mut resp = http
        .get(parsed)
        .send()
        .await
        .map_err(|e| bad(crate::client::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(bad(format!("the server answered {}", resp.status())));
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            humantime::parse_rfc3339_weak(v)
                .ok()
                .or_else(|| http_date(v))
        });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| bad(format!("create {}: {e}", dest.display())))?;
    let mut h = Hasher::default();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| bad(crate::client::error_chain(&e)))?
    {
        h.update(&chunk);
        if h.len > limit {
            return Err(bad(format!("larger than {limit} bytes")));
        }
        f.write_all(&chunk)
            .map_err(|e| bad(format!("write {}: {e}", dest.display())))?;
    }
    let size = h.len;
    Ok(Fetched {
        digest: h.finish(),
        size,
        modified,
    })
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), the form
/// Last-Modified takes.
fn http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? + 1;
    let stamp = format!(
        "{}-{:02}-{:02}T{}Z",
        parts[3],
        month,
        parts[1].parse::<u32>().ok()?,
        parts[4]
    );
    humantime::parse_rfc3339(&stamp).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        let t = http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784111777
        );
        assert!(http_date("yesterday").is_none());
    }
}
