//! A pod's life through the CRI as kubelet drives it: sandbox, containers
//! sharing its namespaces, logs in the CRI format, status and listing
//! filters, stop with a grace period, removal without a trace.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use berth_cri::api;
use berth_cri::api::ContainerState as S;

use crate::daemon::*;

fn ns_inode(kind: &str) -> String {
    std::fs::metadata(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .ino()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_containers_share_its_namespaces_and_log_in_the_cri_format() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "web");
    let pod = run_pod(&mut rt, &pc).await;

    let server = start(
        &mut rt,
        &pod,
        container_config(&d, "server", &["httpd", "-f", "-p", "8080", "-h", "/www"]),
        &pc,
    )
    .await;
    let client_cfg = container_config(
        &d,
        "client",
        &[
            "sh",
            "-c",
            "echo out-$WHO; echo err-$WHO >&2; trap 'exit 7' TERM; while true; do sleep 0.1; done",
        ],
    );
    let client = start(&mut rt, &pod, client_cfg, &pc).await;

    // The log is in the CRI format: time, stream, tag, line.
    let log = wait_file(&d.logs.join("web/client.log"), "err-client").await;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let mut streams = Vec::new();
    for l in &lines {
        let f: Vec<&str> = l.splitn(4, ' ').collect();
        assert!(
            f[0].ends_with('Z') && f[0].contains('T') && f[0].len() >= 20,
            "{l}"
        );
        assert_eq!(f[2], "F", "{l}");
        streams.push((f[1], f[3]));
    }
    streams.sort();
    assert_eq!(
        streams,
        [("stderr", "err-client"), ("stdout", "out-client")]
    );

    // One network, ipc and uts namespace for the pod, none of them the
    // host's; a pid namespace per container.
    let mut seen = Vec::new();
    for id in [&server, &client] {
        let (code, out, err) = exec_sync(
            &mut rt,
            id,
            &[
                "sh",
                "-c",
                "for n in net ipc uts pid; do stat -L -c %i /proc/self/ns/$n; done; hostname",
            ],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        seen.push(out.lines().map(String::from).collect::<Vec<_>>());
    }
    let (s, c) = (&seen[0], &seen[1]);
    assert_eq!(s[..3], c[..3], "net, ipc and uts are shared: {seen:?}");
    assert_ne!(s[3], c[3], "pid namespaces are the containers' own");
    for (i, kind) in ["net", "ipc", "uts", "pid"].iter().enumerate() {
        assert_ne!(s[i], ns_inode(kind), "{kind} is not the host's");
    }
    assert_eq!(s[4], "web", "the pod's hostname");

    // Over the shared network, at localhost.
    let (code, out, err) = exec_sync(
        &mut rt,
        &client,
        &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "hello from berth\n"), "{err}");

    // Status and filters.
    let st = status(&mut rt, &client).await;
    assert_eq!(st.state, S::ContainerRunning as i32);
    assert!(st.started_at > st.created_at && st.created_at > 0, "{st:?}");
    assert_eq!(
        st.log_path,
        d.logs.join("web/client.log").display().to_string()
    );
    assert_eq!(st.metadata.as_ref().unwrap().name, "client");
    assert_eq!(st.labels.get("name").map(String::as_str), Some("client"));
    assert!(st.image_ref.starts_with("sha256:"), "{st:?}");
    let lister = rt.clone();
    let list = move |filter: api::ContainerFilter| {
        let mut rt = lister.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_containers(api::ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![server.clone(), client.clone()];
    both.sort();
    let by_pod = api::ContainerFilter {
        pod_sandbox_id: pod.clone(),
        ..Default::default()
    };
    assert_eq!(list(by_pod).await, both);
    let by_label = api::ContainerFilter {
        label_selector: HashMap::from([("name".into(), "server".into())]),
        ..Default::default()
    };
    assert_eq!(list(by_label).await, std::slice::from_ref(&server));
    let exited = api::ContainerFilter {
        state: Some(api::ContainerStateValue {
            state: S::ContainerExited as i32,
        }),
        ..Default::default()
    };
    assert!(list(exited.clone()).await.is_empty());
    // An id prefix finds the container, as crictl passes them.
    let by_prefix = api::ContainerFilter {
        id: client[..12].into(),
        ..Default::default()
    };
    assert_eq!(list(by_prefix).await, std::slice::from_ref(&client));

    let ps = pod_status(&mut rt, &pod).await;
    let st = ps.status.unwrap();
    assert_eq!(st.state, api::PodSandboxState::SandboxReady as i32);
    let ip = st.network.unwrap().ip;
    assert!(ip.starts_with("10.77."), "{ip}");
    assert_eq!(st.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(ps.containers_statuses.len(), 2);
    // The pod's address is reached from the host.
    let mut conn = std::net::TcpStream::connect((ip.as_str(), 8080)).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("hello from berth\n"), "{reply}");

    // Stop: SIGTERM, which the client traps, within its grace period.
    rt.stop_container(api::StopContainerRequest {
        container_id: client.clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    let st = status(&mut rt, &client).await;
    assert_eq!(
        (st.state, st.exit_code),
        (S::ContainerExited as i32, 7),
        "{st:?}"
    );
    assert_eq!(st.reason, "Error");
    assert!(st.finished_at >= st.started_at);
    // Released at the stop, as a shim deletes its task.
    assert!(!d.run_root.join("runtime").join(&client).exists());
    assert_eq!(list(exited).await, std::slice::from_ref(&client));

    // Stopping the pod kills what still runs; removing it removes its
    // containers and leaves nothing on the host.
    stop_pod(&mut rt, &pod).await;
    let st = status(&mut rt, &server).await;
    assert_eq!(st.state, S::ContainerExited as i32);
    let ps = pod_status(&mut rt, &pod).await;
    assert_eq!(
        ps.status.unwrap().state,
        api::PodSandboxState::SandboxNotready as i32
    );
    rt.remove_container(api::RemoveContainerRequest {
        container_id: client.clone(),
    })
    .await
    .unwrap();
    remove_pod(&mut rt, &pod).await;
    let pods = rt
        .list_pod_sandbox(api::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    assert!(list(api::ContainerFilter::default()).await.is_empty());
    assert_eq!(d.leftovers(), Vec::<String>::new());
    // The logs stay: kubelet removes them.
    assert!(d.logs.join("web/client.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_reaches_the_pod_and_goes_with_it() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let port = crate::support::free_port();
    let mut pc = pod_config(&d, "ported");
    pc.port_mappings = vec![api::PortMapping {
        protocol: api::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: port as i32,
        host_ip: String::new(),
    }];
    let pod = run_pod(&mut rt, &pc).await;
    start(
        &mut rt,
        &pod,
        container_config(&d, "server", &["httpd", "-f", "-p", "8080", "-h", "/www"]),
        &pc,
    )
    .await;
    let get = || -> std::io::Result<String> {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply)?;
        Ok(reply)
    };
    let mut reply = String::new();
    for _ in 0..100 {
        match get() {
            Ok(r) if r.contains("hello from berth") => {
                reply = r;
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    assert!(reply.ends_with("hello from berth\n"), "{reply}");
    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    let rules = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(&format!("--dport {port} ")), "{rules}");
    assert!(get().is_err(), "the port is closed");
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

/// The memory limit as the container sees it, on cgroup v1 or v2.
const LIMIT: &str =
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stats_and_resource_updates() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let mut events = rt
        .get_container_events(api::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let pc = pod_config(&d, "watched");
    let pod = run_pod(&mut rt, &pc).await;
    let mut cfg = container_config(&d, "busy", &["sh", "-c", "while true; do :; done"]);
    cfg.linux = Some(api::LinuxContainerConfig {
        resources: Some(api::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = start(&mut rt, &pod, cfg, &pc).await;

    // The limits are the container's, and can be changed while it runs.
    let (reader, limited) = (rt.clone(), id.clone());
    let limit = move || {
        let mut rt = reader.clone();
        let id = limited.clone();
        async move { exec_sync(&mut rt, &id, &["sh", "-c", LIMIT]).await.1 }
    };
    assert_eq!(limit().await.trim(), (64u64 << 20).to_string());
    rt.update_container_resources(api::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(api::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(limit().await.trim(), (96u64 << 20).to_string());
    let st = rt
        .container_status(api::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let res = st.resources.unwrap().linux.unwrap();
    assert_eq!(res.memory_limit_in_bytes, 96 << 20);

    // Stats: the busy loop uses CPU, the container memory.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stats = rt
        .container_stats(api::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let cpu = stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value;
    assert!(cpu > 100_000_000, "{cpu} ns of CPU");
    let mem = stats.memory.unwrap().working_set_bytes.unwrap().value;
    assert!(mem > 0 && mem < 96 << 20, "{mem}");
    let all = rt
        .list_container_stats(api::ListContainerStatsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(all.len(), 1);
    let ps = rt
        .pod_sandbox_stats(api::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = ps.linux.unwrap();
    assert_eq!(linux.containers.len(), 1);
    assert!(linux.network.is_some(), "the pod's interface counters");

    rt.stop_container(api::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(api::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();

    use api::ContainerEventType as T;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), events.message())
            .await
            .unwrap_or_else(|_| panic!("events arrive: {seen:?}\n{}", d.log()))
            .unwrap()
            .unwrap();
        if e.container_id == id {
            seen.push(T::try_from(e.container_event_type).unwrap());
            assert!(e.created_at > 0);
            assert_eq!(e.pod_sandbox_status.unwrap().id, pod);
        }
    }
    assert_eq!(
        seen,
        [
            T::ContainerCreatedEvent,
            T::ContainerStartedEvent,
            T::ContainerStoppedEvent,
            T::ContainerDeletedEvent
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambient_capabilities_reach_a_non_root_process() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "ambient");
    let pod = run_pod(&mut rt, &pc).await;
    let mut c = container_config(&d, "c", &["sleep", "300"]);
    c.linux = Some(api::LinuxContainerConfig {
        security_context: Some(api::LinuxContainerSecurityContext {
            run_as_user: Some(api::Int64Value { value: 1000 }),
            capabilities: Some(api::Capability {
                add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = start(&mut rt, &pod, c, &pc).await;
    let (code, out, err) = exec_sync(
        &mut rt,
        &id,
        &["grep", "-E", "^Cap(Inh|Amb|Eff)", "/proc/self/status"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // NET_BIND_SERVICE is bit 10: inheritable, ambient, and (through the
    // ambient set) effective for uid 1000.
    for l in out.lines() {
        let v = u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(v, 1 << 10, "{out}");
    }
    // An unknown one is refused by field.
    let mut bad = container_config(&d, "bad", &["true"]);
    bad.linux = Some(api::LinuxContainerConfig {
        security_context: Some(api::LinuxContainerSecurityContext {
            capabilities: Some(api::Capability {
                add_ambient_capabilities: vec!["CAP_NOPE".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = create(&mut rt, &pod, bad, &pc).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("NOPE"), "{e:?}");
    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}
