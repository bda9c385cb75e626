//! Bad and repeated requests: the status code kubelet acts on, a message
//! naming the field, idempotent stops and removals, nothing half-made.

use std::time::{Duration, Instant};

use berth_cri::api;
use tonic::Code;

use crate::daemon::*;

pub(crate) fn code_and_message<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("the request fails");
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_leave_nothing() {
    let allowed = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(&format!(
        "allowed_host_paths = [{:?}]",
        allowed.path().to_str().unwrap()
    ));
    let (mut rt, _, _) = d.connect().await;

    // A pod without metadata, with a bad sysctl, a port without a host
    // port's protocol.
    let mut pc = pod_config(&d, "bad");
    pc.metadata = None;
    let (code, msg) = code_and_message(
        rt.run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(pc),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("metadata"), "{msg}");
    let pc = pod_config(&d, "bad");
    let (code, msg) = code_and_message(
        rt.run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: "nosuch".into(),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains("runtime_handler") && msg.contains("nosuch"),
        "{msg}"
    );

    // The same pod twice: the second names the first.
    let pod = run_pod(&mut rt, &pc).await;
    let (code, msg) = code_and_message(
        rt.run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(code, Code::AlreadyExists, "{msg}");
    assert!(msg.contains(&pod), "{msg}");

    // Containers: an unknown pod, a missing image, a relative mount
    // target, a host path outside the allowed ones (also through a
    // symlink inside them), a user namespace.
    let cfg = || container_config(&d, "c", &["true"]);
    let (code, msg) = code_and_message(create(&mut rt, &"0".repeat(64), cfg(), &pc).await);
    assert_eq!(code, Code::NotFound, "{msg}");
    let mut c = cfg();
    c.image.as_mut().unwrap().image = "localhost/nosuch:1".into();
    let (code, msg) = code_and_message(create(&mut rt, &pod, c, &pc).await);
    assert_eq!(code, Code::NotFound, "{msg}");
    assert!(msg.contains("localhost/nosuch:1"), "{msg}");
    let mount = |container: &str, host: &str| {
        let mut c = cfg();
        c.mounts = vec![api::Mount {
            container_path: container.into(),
            host_path: host.into(),
            ..Default::default()
        }];
        c
    };
    let (code, msg) = code_and_message(create(&mut rt, &pod, mount("data", "/tmp"), &pc).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("mounts[0].container_path"), "{msg}");
    std::os::unix::fs::symlink("/etc", allowed.path().join("etc")).unwrap();
    let outside = format!("{}/made-by-a-test", d.env.sb.path().display());
    for host in [
        "/etc",
        &format!("{}/etc", allowed.path().display()),
        &outside,
    ] {
        let (code, msg) = code_and_message(create(&mut rt, &pod, mount("/data", host), &pc).await);
        assert_eq!(code, Code::InvalidArgument, "{host}: {msg}");
        assert!(msg.contains("outside the allowed host paths"), "{msg}");
    }
    assert!(
        !std::path::Path::new(&outside).exists(),
        "nothing made outside"
    );
    // Inside: a missing directory is made, as kubelet's DirectoryOrCreate.
    let inside = allowed.path().join("new/dir");
    let id = create(&mut rt, &pod, mount("/data", inside.to_str().unwrap()), &pc)
        .await
        .unwrap();
    assert!(inside.is_dir());
    let mut c = cfg();
    c.linux = Some(api::LinuxContainerConfig {
        security_context: Some(api::LinuxContainerSecurityContext {
            namespace_options: Some(api::NamespaceOption {
                userns_options: Some(api::UserNamespace {
                    mode: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (code, msg) = code_and_message(create(&mut rt, &pod, c, &pc).await);
    assert!(
        matches!(code, Code::Unimplemented | Code::InvalidArgument),
        "{code:?} {msg}"
    );

    // Only the one good container was made; a duplicate name names it.
    let list = rt
        .list_containers(api::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(
        list.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&id)
    );
    let (code, msg) = code_and_message(create(&mut rt, &pod, cfg(), &pc).await);
    assert_eq!(code, Code::AlreadyExists, "{msg}");
    assert!(msg.contains(&id), "{msg}");

    // Starting twice.
    rt.start_container(api::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    wait_state(&mut rt, &id, api::ContainerState::ContainerExited).await;
    // An exit is cleaned up after by berthd (the monitors run no exit
    // command for it): the runtime's state of the container goes.
    let state = d.run_root.join("runtime").join(&id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.exists() {
        assert!(Instant::now() < deadline, "{} remains", state.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, msg) = code_and_message(
        rt.start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{msg}");

    // Unknown and malformed ids.
    for bad in [
        "0123456789abcdef".repeat(4),
        "../../etc".into(),
        String::new(),
    ] {
        let (code, msg) = code_and_message(
            rt.container_status(api::ContainerStatusRequest {
                container_id: bad.clone(),
                verbose: false,
            })
            .await,
        );
        assert!(
            matches!(code, Code::NotFound | Code::InvalidArgument),
            "{bad}: {code:?} {msg}"
        );
    }

    // Stops and removals of what is gone succeed, as kubelet retries them.
    let gone = "ab".repeat(32);
    rt.stop_container(api::StopContainerRequest {
        container_id: gone.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(api::RemoveContainerRequest {
        container_id: gone.clone(),
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: gone.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: gone,
    })
    .await
    .unwrap();
    for _ in 0..2 {
        rt.stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    }
    // A stopped pod takes no new containers.
    let mut c = cfg();
    c.metadata.as_mut().unwrap().name = "late".into();
    let (code, msg) = code_and_message(create(&mut rt, &pod, c, &pc).await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    for _ in 0..2 {
        rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    }
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_reports_exit_codes_and_times_out() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "exec");
    let pod = run_pod(&mut rt, &pc).await;
    let id = start(
        &mut rt,
        &pod,
        container_config(&d, "c", &["sleep", "300"]),
        &pc,
    )
    .await;

    let (code, out, err) = exec_sync(
        &mut rt,
        &id,
        &["sh", "-c", "echo $WHO; echo oops >&2; exit 3"],
    )
    .await;
    assert_eq!((code, out.as_str(), err.as_str()), (3, "c\n", "oops\n"));
    // A missing program fails the call or exits non-zero, as runc's 127.
    match rt
        .exec_sync(api::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["/no/such/program".into()],
            timeout: 5,
        })
        .await
    {
        Ok(r) => assert_ne!(r.into_inner().exit_code, 0),
        Err(s) => assert!(s.message().contains("/no/such/program"), "{s:?}"),
    }

    let started = Instant::now();
    let (code, msg) = code_and_message(
        rt.exec_sync(api::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "31".into()],
            timeout: 1,
        })
        .await,
    );
    assert_eq!(code, Code::DeadlineExceeded, "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The timed-out process is gone from the container.
    let (_, ps, _) = exec_sync(&mut rt, &id, &["ps", "-o", "args"]).await;
    assert!(!ps.contains("sleep 31"), "{ps}");

    // Large output arrives whole.
    let (code, out, _) = exec_sync(&mut rt, &id, &["sh", "-c", "seq 1 200000"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 200_000);
    assert!(out.ends_with("200000\n"));
}
