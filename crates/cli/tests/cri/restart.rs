//! berthd holds no container: monitors do. Killed with SIGKILL and started
//! again, it serves at once and finds every pod and container as they are,
//! including exits that happened while it was down.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use berth_cri::api;
use berth_cri::api::ContainerState as S;

use crate::daemon::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_berthd_restarts_and_finds_its_pods_as_they_are() {
    let mut d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "survivor");
    let pod = run_pod(&mut rt, &pc).await;
    let long = start(
        &mut rt,
        &pod,
        container_config(&d, "long", &["sleep", "300"]),
        &pc,
    )
    .await;
    let short = start(
        &mut rt,
        &pod,
        container_config(&d, "short", &["sleep", "300"]),
        &pc,
    )
    .await;
    let pid_before = exec_sync(&mut rt, &long, &["cat", "/proc/1/stat"]).await.1;

    assert_eq!(d.signal(libc::SIGKILL).signal(), Some(libc::SIGKILL));
    drop(rt);
    // While berthd is down, one container exits (its monitor records it).
    let killed = d.berth(&["kill", "-s", "KILL", &short]);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The stale socket is replaced; the daemon answers at once.
    assert!(d.sock.exists());
    d.spawn();
    let (mut rt, _, took) = d.connect().await;
    eprintln!("berthd answered {took:?} after its restart");

    let ps = pod_status(&mut rt, &pod).await;
    assert_eq!(
        ps.status.unwrap().state,
        api::PodSandboxState::SandboxReady as i32
    );
    let st = status(&mut rt, &long).await;
    assert_eq!(st.state, S::ContainerRunning as i32);
    assert_eq!(
        exec_sync(&mut rt, &long, &["cat", "/proc/1/stat"]).await.1,
        pid_before
    );
    let st = wait_state(&mut rt, &short, S::ContainerExited).await;
    assert_eq!(st.exit_code, 137, "{st:?}");

    // SIGTERM: berthd stops serving and removes its socket; the containers
    // go on.
    let status = d.signal(libc::SIGTERM);
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(!d.sock.exists());
    let ps = d.berth(&["ps", "-q", "--no-trunc"]);
    assert!(String::from_utf8_lossy(&ps.stdout).contains(&long));
    d.spawn();
    let (mut rt, _, _) = d.connect().await;
    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_berthd_on_a_live_socket_refuses_to_start() {
    let d = Daemon::start();
    let _ = d.connect().await;
    let out = std::process::Command::new(berthd_bin())
        .arg("--config")
        .arg(d.env.sb.path().join("berthd.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&d.sock.display().to_string()), "{err}");
    // The first still serves.
    let _ = d.connect().await;
}

/// kubelet's calls in flight when berthd is killed: every container is
/// afterwards either there (and works) or not there at all, and removing
/// the pods through the restarted berthd leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_load_loses_nothing_and_leaks_nothing() {
    let mut d = Daemon::start();
    let (rt, _, _) = d.connect().await;
    let mut pods = Vec::new();
    let mut tasks = Vec::new();
    for p in 0..3 {
        let pc = pod_config(&d, &format!("load{p}"));
        let pod = run_pod(&mut rt.clone(), &pc).await;
        pods.push(pod.clone());
        for c in 0..4 {
            let (mut rt, pod, pc) = (rt.clone(), pod.clone(), pc.clone());
            let cfg = container_config(&d, &format!("c{c}"), &["sleep", "300"]);
            tasks.push(tokio::spawn(async move {
                // Errors are expected once berthd is gone.
                if let Ok(id) = create(&mut rt, &pod, cfg, &pc).await {
                    let _ = rt
                        .start_container(api::StartContainerRequest { container_id: id })
                        .await;
                }
            }));
        }
    }
    // Killed while those calls run.
    tokio::time::sleep(Duration::from_millis(60)).await;
    d.signal(libc::SIGKILL);
    for t in tasks {
        let _ = t.await;
    }
    drop(rt);
    d.spawn();
    let (mut rt, _, _) = d.connect().await;

    // What berthd lists is whole: created or running, and usable.
    let listed = rt
        .list_containers(api::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    for c in &listed {
        match S::try_from(c.state).unwrap() {
            S::ContainerRunning => {
                let (code, out, err) = exec_sync(&mut rt, &c.id, &["echo", "ok"]).await;
                assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
            }
            S::ContainerCreated => {
                rt.start_container(api::StartContainerRequest {
                    container_id: c.id.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("start {} after the restart: {e:?}\n{}", c.id, d.log()));
                wait_state(&mut rt, &c.id, S::ContainerRunning).await;
            }
            other => panic!("{} is {other:?} after the restart", c.id),
        }
    }
    // Containers berthd does not list do not exist for the CLI either.
    let cli = d.berth(&["ps", "-a", "-q", "--no-trunc"]);
    let cli = String::from_utf8_lossy(&cli.stdout);
    assert_eq!(cli.lines().count(), listed.len(), "{cli}");
    for pod in &pods {
        stop_pod(&mut rt, pod).await;
        remove_pod(&mut rt, pod).await;
    }
    assert_eq!(d.leftovers(), Vec::<String>::new());
    let mounts = crate::env::mounts_under(&d.env.sb.root());
    assert!(mounts.is_empty(), "{mounts:?}");
}
