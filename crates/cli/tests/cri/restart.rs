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
