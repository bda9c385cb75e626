//! Kubernetes CRI v1 runtimes side by side, through their unix sockets, as
//! the kubelet drives them: the steps of a pod's lifecycle, N serving pods
//! until the first and the last answers, and the memory the runtime's
//! processes hold. Every runtime gets the same images from the same local
//! registry and the same CNI configuration, one runtime at a time, in one
//! run.
//!
//! Everything the benchmark makes lives under one directory on tmpfs and
//! one cgroup subtree, and goes again when it ends, by failure or Ctrl-C
//! included; a run killed outright is cleaned up by the next one.

mod client;
mod containerd;
mod daemon;
mod host;
mod images;
mod memory;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::watch;

use daemon::{Daemon, Start, Target, Vars};
use report::Outcome;

#[derive(clap::Args)]
pub struct Opts {
    /// Lifecycle runs per runtime (after one warm-up run).
    #[arg(short = 'n', long, default_value_t = 20)]
    runs: usize,
    /// Serving pods to start (0: skip).
    #[arg(long, default_value_t = 105)]
    pods: usize,
    /// Pods being started (and removed) at once; 1 is one after another.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// A runtime to measure: `containerd` (started by the benchmark with
    /// its own configuration) or NAME=SOCKET. Repeat it; runtimes are
    /// measured one at a time in this order, and the first is the one the
    /// ratios compare with. SOCKET may use the placeholders of --start.
    #[arg(long = "runtime", value_name = "NAME[=SOCKET]", default_values_t = ["containerd".to_string()])]
    runtimes: Vec<String>,
    /// Start NAME's daemon with this shell command (use `exec`), stop it
    /// with SIGTERM. Placeholders (and variables): {dir} (BENCH_DIR),
    /// {cni_conf_dir} (CNI_CONF_DIR), {cni_bin_dir} (CNI_BIN_DIR),
    /// {registry} (BENCH_REGISTRY), {image} (BENCH_IMAGE), {pause_image}
    /// (PAUSE_IMAGE). Without it, NAME=SOCKET is a daemon already running.
    #[arg(long = "start", value_name = "NAME=COMMAND")]
    starts: Vec<String>,
    /// StopContainer's grace period, seconds (the container exits on
    /// SIGTERM at once).
    #[arg(long, default_value_t = 10)]
    stop_timeout: i64,
    /// The pod network.
    #[arg(long, default_value = "10.213.0.0/24")]
    subnet: String,
    /// The containerd binary.
    #[arg(long, default_value = "containerd")]
    containerd: PathBuf,
}

/// Where the benchmark keeps everything: tmpfs, one fixed place, so a run
/// killed outright is found and cleaned up by the next.
const BASE: &str = "/dev/shm/berth-bench-cri";

/// How long a daemon may take to answer after its start.
const READY: Duration = Duration::from_secs(30);

pub fn run(opts: Opts) -> Result<()> {
    let targets = daemon::targets(&opts.runtimes, &opts.starts)?;
    // One thread: the benchmark's own work is small and should take as
    // little as it can of the two cores the runtimes are measured on.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(main(opts, targets))
}

/// What every target shares.
struct Env {
    base: PathBuf,
    _registry: crate::pull::Killed,
    registry: String,
    images: images::Images,
    cni_conf: PathBuf,
}

/// Leftovers of an earlier run, or of this one: processes in the cgroup
/// subtree, mounts and files under BASE, the bridge.
fn clean_host() {
    host::sweep_cgroups("");
    host::remove_dir(Path::new(BASE));
    host::delete_bridge();
}

async fn main(opts: Opts, targets: Vec<Target>) -> Result<()> {
    // Ctrl-C or SIGTERM: the target being measured stops where it is and
    // everything is cleaned up before the benchmark exits.
    let (tx, mut stop) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("interrupted: cleaning up");
        let _ = tx.send(true);
    });

    clean_host();
    let result = async {
        let env = setup(&opts)?;
        let mut outs = Vec::new();
        for t in &targets {
            eprintln!("== {}", t.name);
            let out = one_target(t, &env, &opts, &mut stop).await;
            if let Some(e) = &out.error {
                eprintln!("{}: {e}", t.name);
            }
            outs.push(out);
            if *stop.borrow() {
                break;
            }
        }
        report::print(&outs, opts.runs, opts.parallel, opts.stop_timeout);
        if *stop.borrow() {
            bail!("interrupted");
        }
        Ok(())
    }
    .await;
    clean_host();
    result
}

fn setup(opts: &Opts) -> Result<Env> {
    let base = PathBuf::from(BASE);
    std::fs::create_dir_all(&base)?;
    let (registry, port) = crate::pull::start_registry(&base)?;
    eprintln!("building and pushing the images...");
    let images = images::build_and_push(&base.join("image"), port)?;
    let cni_conf = host::write_cni(&base, &opts.subnet)?;
    Ok(Env {
        base,
        _registry: registry,
        registry: format!("127.0.0.1:{port}"),
        images,
        cni_conf,
    })
}

/// Everything about one target: its directory and cgroups, its daemon,
/// its connection.
struct Run {
    name: String,
    dir: PathBuf,
    socket: PathBuf,
    daemon: Option<Daemon>,
    cri: Option<client::Cri>,
    spec: Arc<workload::Spec>,
    /// The daemon's cgroup, from the hierarchy's root, when the benchmark
    /// started it.
    daemon_cg: Option<String>,
    /// The pods' cgroups are below this one.
    pods_cg: String,
}

async fn one_target(
    t: &Target,
    env: &Env,
    opts: &Opts,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut out = Outcome {
        name: t.name.clone(),
        ..Default::default()
    };
    let dir = env.base.join("targets").join(&t.name);
    let vars = Vars(vec![
        ("dir", "BENCH_DIR", dir.display().to_string()),
        (
            "cni_conf_dir",
            "CNI_CONF_DIR",
            env.cni_conf.display().to_string(),
        ),
        ("cni_bin_dir", "CNI_BIN_DIR", host::CNI_BIN_DIR.to_string()),
        ("registry", "BENCH_REGISTRY", env.registry.clone()),
        ("image", "BENCH_IMAGE", env.images.app.clone()),
        ("pause_image", "PAUSE_IMAGE", env.images.pause.clone()),
    ]);
    let pods_cg = format!("/{}/{}/pods", host::CGROUP, t.name);
    let mut run = Run {
        name: t.name.clone(),
        socket: PathBuf::from(vars.fill(&t.socket)),
        dir: dir.clone(),
        daemon: None,
        cri: None,
        spec: Arc::new(workload::Spec {
            run_id: format!("{}-{}", std::process::id(), t.name),
            image: env.images.app.clone(),
            log_root: workload::log_root(&dir),
            cgroup_root: pods_cg.clone(),
            stop_timeout: opts.stop_timeout,
        }),
        daemon_cg: None,
        pods_cg,
    };
    let result = tokio::select! {
        r = measure(t, env, opts, &vars, &mut run, &mut out) => r,
        _ = stop.wait_for(|s| *s) => Err(anyhow!("interrupted")),
    };
    if let Err(e) = result {
        let mut msg = format!("{e:#}");
        if let Some(d) = &run.daemon {
            let tail = d.log_tail(5);
            if !tail.is_empty() {
                msg += &format!("\n  its log ends:\n{tail}");
            }
        }
        out.error = Some(msg);
    }
    clean_target(&mut run).await;
    out
}

/// Starts the target (unless it runs already), connects, and measures.
async fn measure(
    t: &Target,
    env: &Env,
    opts: &Opts,
    vars: &Vars,
    run: &mut Run,
    out: &mut Outcome,
) -> Result<()> {
    std::fs::create_dir_all(&run.dir)?;
    if !matches!(t.start, Start::External) {
        start_daemon(t, env, opts, vars, run)?;
    }
    let (cri, version) = ready(run).await?;
    out.version = format!(
        "{} {} (CRI {})",
        version.runtime_name, version.runtime_version, version.runtime_api_version
    );
    if matches!(t.start, Start::Containerd) {
        out.version += &format!("; {}", containerd::version(&opts.containerd));
    }
    eprintln!("{}: {}", t.name, out.version);
    run.cri = Some(cri.clone());
    let mut cri = cri;

    // Idle: settled after start-up, before any image or pod.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let daemon_pid =
        memory::listener_pid(&run.socket).or(run.daemon.as_ref().and_then(|d| d.pid()));
    out.idle = daemon_pid.and_then(memory::usage);

    cri.pull(&env.images.app).await?;
    cri.pull(&env.images.pause).await?;

    eprintln!("{}: {} lifecycle runs", t.name, opts.runs);
    workload::lifecycle(&mut cri, &run.spec, "lc-warm").await?;
    for i in 0..opts.runs {
        let steps = workload::lifecycle(&mut cri, &run.spec, &format!("lc-{i}")).await?;
        out.runs.push(steps);
    }

    if opts.pods > 0 {
        eprintln!("{}: {} serving pods", t.name, opts.pods);
        let mut pods = Vec::new();
        let mut serve =
            workload::serve(&cri, &run.spec, opts.pods, opts.parallel, &mut pods).await?;
        // What the runtime holds once all serve; the page cache of the
        // first requests settled.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let containers: Vec<String> = pods.iter().map(|p| p.container.clone()).collect();
        out.loaded = Some(memory::snapshot(
            &host::hierarchy(),
            daemon_pid,
            run.daemon_cg.as_deref(),
            &run.pods_cg,
            &containers,
        ));
        out.serve = Some(serve.clone());
        if run.daemon.is_some() {
            eprintln!("{}: SIGKILL and a restart with {} pods", t.name, pods.len());
            out.restart = Some(restart(t, env, opts, vars, run, pods.len()).await?);
        }
        let cri = run.cri.clone().expect("connected");
        serve.removed = workload::remove(&cri, &pods, opts.stop_timeout, opts.parallel).await?;
        out.serve = Some(serve);
    }
    Ok(())
}

/// Starts the target's daemon in its cgroup (again, after a restart).
fn start_daemon(t: &Target, env: &Env, opts: &Opts, vars: &Vars, run: &mut Run) -> Result<()> {
    let procs = host::daemon_cgroup(&t.name)?;
    run.daemon_cg = Some(format!("/{}/{}/daemon", host::CGROUP, t.name));
    run.daemon = Some(match &t.start {
        Start::Containerd => {
            let config = containerd::write_config(
                &run.dir,
                &run.socket,
                &env.registry,
                &env.images.pause,
                &env.cni_conf,
                host::CNI_BIN_DIR,
            )?;
            containerd::start(&opts.containerd, &config, &procs, &run.dir)?
        }
        Start::Command(c) => daemon::spawn_command(&t.name, c, vars, &procs, &run.dir)?,
        Start::External => unreachable!("an external daemon is not started"),
    });
    Ok(())
}

/// The daemon killed with SIGKILL (alone: its shims or monitors live on)
/// with every pod serving, and started again: how long until it answers,
/// and until it lists every pod ready and every container running.
async fn restart(
    t: &Target,
    env: &Env,
    opts: &Opts,
    vars: &Vars,
    run: &mut Run,
    pods: usize,
) -> Result<report::Restart> {
    run.daemon.as_mut().expect("started").kill_daemon_only();
    run.cri = None;
    let t0 = std::time::Instant::now();
    start_daemon(t, env, opts, vars, run)?;
    let (mut cri, _) = ready(run).await?;
    let answered = t0.elapsed();
    loop {
        let ready = cri
            .rt
            .list_pod_sandbox(k8s_cri::v1::ListPodSandboxRequest::default())
            .await?
            .into_inner()
            .items
            .iter()
            .filter(|p| p.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32)
            .count();
        let running = cri
            .rt
            .list_containers(k8s_cri::v1::ListContainersRequest::default())
            .await?
            .into_inner()
            .containers
            .iter()
            .filter(|c| c.state == k8s_cri::v1::ContainerState::ContainerRunning as i32)
            .count();
        if ready >= pods && running >= pods {
            break;
        }
        if t0.elapsed() > READY {
            bail!(
                "after the restart only {ready} pods are ready and {running} containers running of {pods}"
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listed = t0.elapsed();
    run.cri = Some(cri);
    Ok(report::Restart { answered, listed })
}

/// Waits for the runtime to answer Version, failing early if the daemon
/// the benchmark started has exited.
async fn ready(run: &mut Run) -> Result<(client::Cri, k8s_cri::v1::VersionResponse)> {
    let Some(daemon) = run.daemon.as_mut() else {
        // A daemon the benchmark did not start is either there or not.
        return client::wait_ready(&run.socket, Duration::ZERO)
            .await
            .context("no runtime answers there");
    };
    let t0 = std::time::Instant::now();
    loop {
        match client::wait_ready(&run.socket, Duration::from_millis(500)).await {
            Ok(r) => return Ok(r),
            Err(e) => {
                if let Some(status) = daemon.exited() {
                    bail!("the daemon exited ({status}) before it served");
                }
                if t0.elapsed() > READY {
                    return Err(e);
                }
            }
        }
    }
}

/// Takes down what the target made, whether its run went through or not:
/// its pods (through the CRI, as long as the runtime answers), its daemon,
/// then whatever is left in its cgroups, mounts and files, the bridge and
/// the IPAM records.
async fn clean_target(run: &mut Run) {
    if let Some(mut cri) = run.cri.take() {
        match tokio::time::timeout(
            Duration::from_secs(300),
            workload::remove_leftovers(&mut cri, &run.spec.run_id),
        )
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => eprintln!("{}: removed {n} pods left over", run.name),
            Ok(Err(e)) => eprintln!("{}: listing its pods failed: {e:#}", run.name),
            Err(_) => eprintln!("{}: removing its pods timed out", run.name),
        }
    }
    if let Some(mut d) = run.daemon.take() {
        d.stop(Duration::from_secs(10)).await;
    }
    host::sweep_cgroups(&run.name);
    host::remove_dir(&run.dir);
    host::delete_bridge();
    let _ = std::fs::remove_dir_all(Path::new(BASE).join("cni/ipam"));
}
