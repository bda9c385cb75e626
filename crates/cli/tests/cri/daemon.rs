//! A test's own berthd: its own store root (with busybox pulled from its
//! own registry), run root, CRI socket and log directory. Dropping it stops
//! berthd and removes every pod, container and network it made, through
//! the berth CLI, pass or fail.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_cri::api;
use berth_cri::api::image_service_client::ImageServiceClient;
use berth_cri::api::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::env::Env;
use crate::support::{berth_bin, umount_under};

pub type Rt = RuntimeServiceClient<Channel>;
pub type Img = ImageServiceClient<Channel>;

pub fn berthd_bin() -> PathBuf {
    Path::new(berth_bin()).with_file_name("berthd")
}

pub struct Daemon {
    child: Option<Child>,
    pub sock: PathBuf,
    pub run_root: PathBuf,
    pub logs: PathBuf,
    config: PathBuf,
    // Last: dropped after berthd's pods are gone.
    pub env: Env,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// With more lines of berthd.toml (top-level keys only).
    pub fn start_with(extra: &str) -> Daemon {
        let env = Env::new();
        let dir = env.sb.path().to_path_buf();
        let config = dir.join("berthd.toml");
        let (sock, run_root, logs) = (dir.join("cri.sock"), dir.join("run"), dir.join("logs"));
        fs::write(
            &config,
            format!(
                "listen = {:?}\nroot = {:?}\nrun_root = {:?}\nlog_level = \"debug\"\n{extra}\n",
                sock.to_str().unwrap(),
                env.sb.root().to_str().unwrap(),
                run_root.to_str().unwrap(),
            ),
        )
        .unwrap();
        let mut d = Daemon {
            child: None,
            sock,
            run_root,
            logs,
            config,
            env,
        };
        d.spawn();
        d
    }

    /// Starts berthd (again); its log is appended to berthd.log.
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.env.sb.path().join("berthd.log"))
            .unwrap();
        let child = Command::new(berthd_bin())
            .arg("--config")
            .arg(&self.config)
            .env(
                "BERTH_MONITOR",
                Path::new(berth_bin()).with_file_name("berth-monitor"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berthd (cargo build --workspace --bins)");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.env.sb.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `sig` to berthd and waits for it to exit; its status.
    pub fn signal(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("berthd runs");
        // SAFETY: kill(2) with a pid this test spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, sig) };
        child.wait().unwrap()
    }

    /// Clients on the CRI socket, once berthd answers Version (10 s at
    /// most); also how long that took.
    pub async fn connect(&self) -> (Rt, Img, Duration) {
        let start = Instant::now();
        loop {
            if let Ok(ch) = channel(&self.sock).await {
                let mut rt = RuntimeServiceClient::new(ch.clone());
                if rt.version(api::VersionRequest::default()).await.is_ok() {
                    return (rt, ImageServiceClient::new(ch), start.elapsed());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "berthd did not answer in 10 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// berth with this daemon's root and run root.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.env
            .sb
            .cmd()
            .arg("--runroot")
            .arg(&self.run_root)
            .args(args)
            .output()
            .unwrap()
    }

    fn listed(&self, args: &[&str]) -> Vec<String> {
        String::from_utf8_lossy(&self.berth(args).stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    /// What berthd left of itself on the host: pins, mounts and network
    /// namespaces under the run root, and container and pod records.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = self.listed(&["ps", "-a", "-q", "--no-trunc"]);
        left.extend(self.listed(&["pod", "ps", "-q"]));
        for dir in ["pins", "netns"] {
            if let Ok(rd) = fs::read_dir(self.run_root.join(dir)) {
                left.extend(rd.flatten().map(|e| e.path().display().to_string()));
            }
        }
        // The pin directory stays a mount point of its own (for
        // propagation), as /run/netns does.
        let pins = self.run_root.join("netns").display().to_string();
        left.extend(
            crate::env::mounts_under(&self.run_root)
                .into_iter()
                .filter(|m| *m != pins),
        );
        left
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) with a pid this test spawned and has not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
        for id in self.listed(&["ps", "-a", "-q", "--no-trunc"]) {
            let _ = self.berth(&["rm", "-f", &id]);
        }
        for (what, list) in [("pod", "ps"), ("network", "ls")] {
            for name in self.listed(&[what, list, "-q"]) {
                let _ = self.berth(&[what, "rm", "-f", &name]);
            }
        }
        umount_under(&self.run_root);
    }
}

async fn channel(sock: &Path) -> Result<Channel, tonic::transport::Error> {
    let sock = sock.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
}

/// A pod of its own name, uid and log directory, with a pod-wide network
/// and ipc namespace and a pid namespace per container (kubelet's
/// defaults).
pub fn pod_config(d: &Daemon, name: &str) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "berth-test".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: d.logs.join(name).display().to_string(),
        labels: HashMap::from([("app".into(), name.into())]),
        annotations: HashMap::from([("note".into(), "a test pod".into())]),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Pod as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(d: &Daemon, name: &str, command: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: d.env.image.clone(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        envs: vec![api::KeyValue {
            key: "WHO".into(),
            value: name.into(),
        }],
        log_path: format!("{name}.log"),
        labels: HashMap::from([("name".into(), name.into())]),
        ..Default::default()
    }
}

pub async fn run_pod(rt: &mut Rt, config: &api::PodSandboxConfig) -> String {
    run_pod_with(rt, config, "").await
}

/// A pod of RuntimeClass handler `handler`.
pub async fn run_pod_with(rt: &mut Rt, config: &api::PodSandboxConfig, handler: &str) -> String {
    rt.run_pod_sandbox(api::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: handler.into(),
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
}

pub async fn pod_status(rt: &mut Rt, pod: &str) -> api::PodSandboxStatusResponse {
    rt.pod_sandbox_status(api::PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: false,
    })
    .await
    .expect("PodSandboxStatus")
    .into_inner()
}

pub async fn stop_pod(rt: &mut Rt, pod: &str) {
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("StopPodSandbox");
}

pub async fn remove_pod(rt: &mut Rt, pod: &str) {
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("RemovePodSandbox");
}

pub async fn create(
    rt: &mut Rt,
    pod: &str,
    config: api::ContainerConfig,
    pod_config: &api::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    Ok(rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await?
        .into_inner()
        .container_id)
}

/// Creates and starts a container; its id.
pub async fn start(
    rt: &mut Rt,
    pod: &str,
    config: api::ContainerConfig,
    pod_config: &api::PodSandboxConfig,
) -> String {
    let id = create(rt, pod, config, pod_config)
        .await
        .expect("CreateContainer");
    rt.start_container(api::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

pub async fn exec_sync(rt: &mut Rt, id: &str, cmd: &[&str]) -> (i32, String, String) {
    let r = rt
        .exec_sync(api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

pub async fn status(rt: &mut Rt, id: &str) -> api::ContainerStatus {
    rt.container_status(api::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .unwrap()
}

/// Waits up to 10 s for container `id` to reach `state`.
pub async fn wait_state(rt: &mut Rt, id: &str, state: api::ContainerState) -> api::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(rt, id).await;
        if s.state == state as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached {state:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to 10 s for `path` to hold `needle`; its contents.
pub async fn wait_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {needle:?}: {text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
