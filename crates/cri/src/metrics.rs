//! Prometheus metrics: per-method CRI latency histograms and error counts,
//! pod start latency, and (at scrape time) pods and containers by state,
//! served as text over a minimal HTTP endpoint.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use tonic::Code;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        // No empty braces for a histogram without labels.
        let set = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{set} {}", self.sum);
        let _ = writeln!(out, "{name}_count{set} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    methods: BTreeMap<&'static str, Histogram>,
    errors: BTreeMap<(&'static str, String), u64>,
    pod_start: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Pods and containers by state, counted when scraped.
#[derive(Debug, Default)]
pub struct Counts {
    pub pods_ready: u64,
    pub pods_not_ready: u64,
    pub containers: BTreeMap<&'static str, u64>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn observe(&self, method: &'static str, took: Duration, error: Option<Code>) {
        let mut m = self.lock();
        m.methods
            .entry(method)
            .or_default()
            .observe(took.as_secs_f64());
        if let Some(code) = error {
            *m.errors.entry((method, format!("{code:?}"))).or_default() += 1;
        }
    }

    /// RunPodSandbox's time until the pod's namespaces and network are up.
    pub fn pod_started(&self, took: Duration) {
        self.lock().pod_start.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self, counts: &Counts) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# HELP berthd_cri_request_duration_seconds Time to answer a CRI call.\n");
        out.push_str("# TYPE berthd_cri_request_duration_seconds histogram\n");
        for (method, h) in &m.methods {
            h.render(
                &mut out,
                "berthd_cri_request_duration_seconds",
                &format!("method=\"{method}\""),
            );
        }
        out.push_str(
            "# HELP berthd_cri_request_errors_total CRI calls that failed, by status code.\n",
        );
        out.push_str("# TYPE berthd_cri_request_errors_total counter\n");
        for ((method, code), n) in &m.errors {
            let _ = writeln!(
                out,
                "berthd_cri_request_errors_total{{method=\"{method}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP berthd_pod_start_duration_seconds Time RunPodSandbox took to make a ready pod.\n");
        out.push_str("# TYPE berthd_pod_start_duration_seconds histogram\n");
        m.pod_start
            .render(&mut out, "berthd_pod_start_duration_seconds", "");
        out.push_str("# HELP berthd_pods Pod sandboxes by state.\n# TYPE berthd_pods gauge\n");
        let _ = writeln!(out, "berthd_pods{{state=\"ready\"}} {}", counts.pods_ready);
        let _ = writeln!(
            out,
            "berthd_pods{{state=\"notready\"}} {}",
            counts.pods_not_ready
        );
        out.push_str(
            "# HELP berthd_containers Containers by state.\n# TYPE berthd_containers gauge\n",
        );
        for (state, n) in &counts.containers {
            let _ = writeln!(out, "berthd_containers{{state=\"{state}\"}} {n}");
        }
        out
    }
}

/// Serves `GET /metrics` (and nothing else) on `listener` until the
/// process ends; `counts` is called per scrape.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    counts: impl Fn() -> Counts + Send + Sync + Clone + 'static,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, counts) = (metrics.clone(), counts.clone());
        tokio::spawn(async move {
            // A request head is small; a client that sends more, or too
            // slowly, is dropped.
            let mut head = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    let n = sock.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let (code, body) = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
                let c = tokio::task::spawn_blocking(counts)
                    .await
                    .unwrap_or_default();
                ("200 OK", metrics.render(&c))
            } else {
                (
                    "404 Not Found",
                    "only /metrics is served here\n".to_string(),
                )
            };
            let reply = format!(
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let m = Metrics::default();
        m.observe("Version", Duration::from_micros(500), None);
        m.observe("Version", Duration::from_millis(20), Some(Code::NotFound));
        let text = m.render(&Counts::default());
        assert!(text.contains(
            "berthd_cri_request_duration_seconds_bucket{method=\"Version\",le=\"0.001\"} 1"
        ));
        assert!(text.contains(
            "berthd_cri_request_duration_seconds_bucket{method=\"Version\",le=\"0.025\"} 2"
        ));
        assert!(text.contains("berthd_cri_request_duration_seconds_count{method=\"Version\"} 2"));
        assert!(
            text.contains(
                "berthd_cri_request_errors_total{method=\"Version\",code=\"NotFound\"} 1"
            )
        );
    }
}
