//! The work every runtime is given through the CRI, as the kubelet would
//! ask for it: pods with their own network namespace (CNI) and one
//! container each that serves HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_cri::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::Cri;

/// The label every pod of one benchmark run carries: what the clean-up
/// lists and removes.
pub const LABEL: &str = "berth-bench";

/// What the pods and containers are made of, for one target.
pub struct Spec {
    /// The value of LABEL for this run.
    pub run_id: String,
    pub image: String,
    /// Pod logs go below this directory.
    pub log_root: PathBuf,
    /// Each pod's cgroup parent is `<cgroup_root>/<pod name>`.
    pub cgroup_root: String,
    /// StopContainer's grace period.
    pub stop_timeout: i64,
}

/// The serving container's command. busybox httpd stands in for nginx. As
/// PID 1 of its PID namespace, a process receives SIGTERM only if it
/// handles it, and httpd does not: the shell traps it and exits, so
/// StopContainer measures the runtime rather than its grace period.
const SERVE: &str = "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait";

fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        // The kubelet's default: a PID namespace per container.
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

impl Spec {
    pub fn pod(&self, name: &str) -> Result<cri::PodSandboxConfig> {
        let log_directory = self.log_root.join(name);
        std::fs::create_dir_all(&log_directory)?;
        Ok(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("{}-{name}", self.run_id),
                namespace: "berth-bench".into(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: log_directory.display().to_string(),
            labels: HashMap::from([(LABEL.to_string(), self.run_id.clone())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/{name}", self.cgroup_root),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn container(&self) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "web".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: vec!["sh".into(), "-c".into(), SERVE.into()],
            log_path: "web.log".into(),
            labels: HashMap::from([(LABEL.to_string(), self.run_id.clone())]),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The lifecycle steps, in order, as rows of the report.
pub const STEPS: &[&str] = &[
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer (until running)",
    "pod + container until running",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
    "whole lifecycle",
];

/// Starts a pod and its container; returns (pod id, container id) and the
/// time each of RunPodSandbox, CreateContainer and StartContainer took.
async fn start_pod(
    c: &mut Cri,
    spec: &Spec,
    name: &str,
    wait_running: bool,
) -> Result<(String, String, [Duration; 3])> {
    let config = spec.pod(name)?;
    let t = Instant::now();
    let pod =
        c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .with_context(|| format!("RunPodSandbox {name}"))?
        .into_inner()
        .pod_sandbox_id;
    let run = t.elapsed();
    let t = Instant::now();
    let ctr =
        c.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(spec.container()),
            sandbox_config: Some(config),
        })
        .await
        .with_context(|| format!("CreateContainer in {name}"))?
        .into_inner()
        .container_id;
    let create = t.elapsed();
    let t = Instant::now();
    c.rt.start_container(cri::StartContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .with_context(|| format!("StartContainer in {name}"))?;
    if wait_running {
        wait_running_state(c, &ctr).await?;
    }
    Ok((pod, ctr, [run, create, t.elapsed()]))
}

/// Polls ContainerStatus until the container is running: StartContainer
/// may answer before (the CRI does not say it must not).
async fn wait_running_state(c: &mut Cri, id: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let st =
            c.rt.container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .context("ContainerStatus")?
            .into_inner()
            .status
            .context("ContainerStatus without a status")?;
        match cri::ContainerState::try_from(st.state) {
            Ok(cri::ContainerState::ContainerRunning) => return Ok(()),
            Ok(cri::ContainerState::ContainerExited) => {
                bail!("container {id} exited ({}): {}", st.exit_code, st.message)
            }
            _ if t0.elapsed() > Duration::from_secs(30) => {
                bail!("container {id} not running after 30 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// One whole lifecycle; returns the time of each of STEPS.
pub async fn lifecycle(c: &mut Cri, spec: &Spec, name: &str) -> Result<Vec<Duration>> {
    let t0 = Instant::now();
    let (pod, ctr, [run, create, start]) = start_pod(c, spec, name, true).await?;
    let up = t0.elapsed();
    let t = Instant::now();
    c.rt.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: spec.stop_timeout,
    })
    .await
    .context("StopContainer")?;
    let stop = t.elapsed();
    let t = Instant::now();
    c.rt.remove_container(cri::RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .context("RemoveContainer")?;
    let remove = t.elapsed();
    let t = Instant::now();
    c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .context("StopPodSandbox")?;
    let stop_pod = t.elapsed();
    let t = Instant::now();
    c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .context("RemovePodSandbox")?;
    let remove_pod = t.elapsed();
    Ok(vec![
        run,
        create,
        start,
        up,
        stop,
        remove,
        stop_pod,
        remove_pod,
        t0.elapsed(),
    ])
}

/// Whether the pod at `ip` serves the page: one GET from the host.
async fn answers(ip: &str) -> bool {
    let Ok(addr) = format!("{ip}:80").parse::<std::net::SocketAddr>() else {
        return false;
    };
    let dial = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::net::TcpStream::connect(addr),
    );
    let Ok(Ok(mut s)) = dial.await else {
        return false;
    };
    if s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut out));
    matches!(read.await, Ok(Ok(_))) && out.windows(5).any(|w| w == b"hello")
}

/// The serving test's figures.
#[derive(Debug, Clone, Default)]
pub struct Serve {
    pub pods: usize,
    /// From the first RunPodSandbox until the first and the last pod
    /// answers on its IP.
    pub first: Duration,
    pub last: Duration,
    /// Until every StartContainer has returned.
    pub started: Duration,
    /// StopContainer + StopPodSandbox + RemovePodSandbox of them all.
    pub removed: Duration,
}

/// One pod of the serving test.
pub struct Started {
    pub pod: String,
    pub container: String,
}

/// Starts `n` serving pods, `parallel` at a time, each one's IP polled
/// from the host as soon as PodSandboxStatus gives it. Returns when every
/// one answers, with the pods (for the memory reading and the removal).
/// `pods` receives each pod as it is made, so a failure or an interrupt
/// leaves nothing unaccounted for.
pub async fn serve(
    c: &Cri,
    spec: &std::sync::Arc<Spec>,
    n: usize,
    parallel: usize,
    pods: &mut Vec<Started>,
) -> Result<Serve> {
    let t0 = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..n {
        let (mut c, spec, limit) = (c.clone(), spec.clone(), limit.clone());
        starts.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let name = format!("web-{i}");
            let (pod, ctr, _) = start_pod(&mut c, &spec, &name, false).await?;
            let ip = pod_ip(&mut c, &pod).await;
            // The pod is handed back even without an address, to be
            // removed.
            anyhow::Ok((pod, ctr, ip))
        });
    }
    let mut polls = tokio::task::JoinSet::new();
    let mut failure = None;
    while let Some(r) = starts.join_next().await {
        match r.context("pod task")? {
            Ok((pod, ctr, ip)) => {
                pods.push(Started {
                    pod,
                    container: ctr,
                });
                match ip {
                    Ok(ip) => {
                        polls.spawn(async move {
                            while t0.elapsed() < Duration::from_secs(600) {
                                if answers(&ip).await {
                                    return Some(t0.elapsed());
                                }
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            None
                        });
                    }
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let started = t0.elapsed();
    let mut times = Vec::new();
    while let Some(r) = polls.join_next().await {
        times.push(r.context("poll task")?);
    }
    let Some(times) = times.into_iter().collect::<Option<Vec<_>>>() else {
        bail!("some pods never answered HTTP in 600 s");
    };
    Ok(Serve {
        pods: n,
        first: times.iter().min().copied().unwrap_or_default(),
        last: times.iter().max().copied().unwrap_or_default(),
        started,
        removed: Duration::ZERO,
    })
}

/// The pod's IP from PodSandboxStatus, where the kubelet reads it.
async fn pod_ip(c: &mut Cri, pod: &str) -> Result<String> {
    let st =
        c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.to_string(),
            verbose: false,
        })
        .await
        .context("PodSandboxStatus")?
        .into_inner();
    let ip = st
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    if ip.is_empty() {
        bail!("pod {pod} has no IP in PodSandboxStatus");
    }
    Ok(ip)
}

/// Removes pods as the kubelet does: stop the container (its grace
/// period), stop the sandbox, remove it (which removes its containers);
/// `parallel` pods at a time.
pub async fn remove(
    c: &Cri,
    pods: &[Started],
    stop_timeout: i64,
    parallel: usize,
) -> Result<Duration> {
    let t0 = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for p in pods {
        let (mut c, limit) = (c.clone(), limit.clone());
        let (pod, ctr) = (p.pod.clone(), p.container.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            c.rt.stop_container(cri::StopContainerRequest {
                container_id: ctr,
                timeout: stop_timeout,
            })
            .await
            .context("StopContainer")?;
            c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .context("StopPodSandbox")?;
            c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .context("RemovePodSandbox")?;
            anyhow::Ok(())
        });
    }
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r) {
            first_err = first_err.or(Some(e));
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(t0.elapsed()),
    }
}

/// Stops and removes every pod of this run the runtime still lists: the
/// clean-up after a failure or an interrupt. Returns how many there were.
pub async fn remove_leftovers(c: &mut Cri, run_id: &str) -> Result<usize> {
    let items =
        c.rt.list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: HashMap::from([(LABEL.to_string(), run_id.to_string())]),
                ..Default::default()
            }),
        })
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items;
    for p in &items {
        let _ =
            c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await;
        let _ =
            c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await;
    }
    Ok(items.len())
}

/// Where a target's pod logs go.
pub fn log_root(dir: &Path) -> PathBuf {
    dir.join("pod-logs")
}
