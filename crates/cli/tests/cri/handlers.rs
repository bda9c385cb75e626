//! RuntimeClass handlers (runc beside the builtin runtime), kubelet's
//! concurrent calls on one pod, and the Prometheus metrics.

use std::io::{Read, Write};

use berth_cri::api;

use crate::daemon::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runc_pod_concurrent_creates_and_metrics() {
    let port = crate::support::free_port();
    let d = Daemon::start_with(&format!(
        "metrics = \"127.0.0.1:{port}\"\n[runtimes.runc]\npath = \"runc\"\n"
    ));
    let (mut rt, _, _) = d.connect().await;

    // Status lists the handlers; the default one also under "".
    let st = rt
        .status(api::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<String> = st.runtime_handlers.iter().map(|h| h.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["", "berth", "runc"]);

    // A pod of runc: its containers are in runc's state, under berth's run
    // root.
    let pc = pod_config(&d, "byrunc");
    let pod = run_pod_with(&mut rt, &pc, "runc").await;
    let id = start(
        &mut rt,
        &pod,
        container_config(&d, "c", &["sleep", "300"]),
        &pc,
    )
    .await;
    let (code, out, err) = exec_sync(&mut rt, &id, &["sh", "-c", "echo $WHO"]).await;
    assert_eq!((code, out.as_str()), (0, "c\n"), "{err}");
    let list = std::process::Command::new("runc")
        .arg("--root")
        .arg(d.run_root.join("runtime-runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&id),
        "{list:?}"
    );

    // kubelet's workers call at once: eight containers created and
    // started concurrently in one pod, listed meanwhile.
    let pc2 = pod_config(&d, "busy");
    let pod2 = run_pod(&mut rt, &pc2).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (mut rt, pod2, pc2) = (rt.clone(), pod2.clone(), pc2.clone());
        let cfg = container_config(&d, &format!("c{i}"), &["sleep", "300"]);
        tasks.push(tokio::spawn(async move {
            let id = start(&mut rt, &pod2, cfg, &pc2).await;
            rt.list_containers(api::ListContainersRequest::default())
                .await
                .unwrap();
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    for id in &ids {
        let st = status(&mut rt, id).await;
        assert_eq!(
            st.state,
            api::ContainerState::ContainerRunning as i32,
            "{st:?}"
        );
    }

    // Metrics: latency histograms per method, pods and containers by state.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{text}"
    );
    for want in [
        "berthd_cri_request_duration_seconds_bucket{method=\"CreateContainer\",le=\"+Inf\"} 9",
        "berthd_cri_request_duration_seconds_count{method=\"RunPodSandbox\"} 2",
        "berthd_pod_start_duration_seconds_count 2",
        "berthd_pods{state=\"ready\"} 2",
        "berthd_containers{state=\"running\"} 9",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }

    for p in [pod, pod2] {
        stop_pod(&mut rt, &p).await;
        remove_pod(&mut rt, &p).await;
    }
    let list = std::process::Command::new("runc")
        .arg("--root")
        .arg(d.run_root.join("runtime-runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

/// A RuntimeClass of gVisor, with options: the pod's containers run in
/// gVisor's kernel (not the host's), exec reaches them, and the handler's
/// options reach runsc (its debug log appears where they put it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runsc_pod_runs_in_gvisors_kernel_with_the_handlers_options() {
    if !crate::support::have("runsc") {
        eprintln!("SKIPPED: runsc is not installed");
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(&format!(
        "[runtimes.gvisor]\npath = \"runsc\"\noptions = [\"--debug\", \"--debug-log={}/\"]\n",
        logs.path().display()
    ));
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "sandboxed");
    let pod = run_pod_with(&mut rt, &pc, "gvisor").await;
    let id = start(
        &mut rt,
        &pod,
        container_config(&d, "c", &["sleep", "300"]),
        &pc,
    )
    .await;
    let (code, out, err) = exec_sync(&mut rt, &id, &["sh", "-c", "uname -r"]).await;
    assert_eq!(code, 0, "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(out.trim(), host.trim(), "the host's kernel answered");
    let logged = std::fs::read_dir(logs.path()).unwrap().count();
    assert!(
        logged > 0,
        "runsc wrote no debug log: the options did not reach it"
    );
    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

/// A pod of berth-vm: its containers run in one VM (one QEMU, one guest
/// kernel: the same boot id), under the guest's kernel, sharing the pod's
/// network inside the guest; nothing is left after the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_berth_vm_pod_runs_its_containers_in_one_vm() {
    let Some((vm, agent)) = crate::berth_vm::berth_vm() else {
        return;
    };
    let d = Daemon::start_with(&format!(
        "[runtimes.vm]\npath = {vm:?}\noptions = [\"--{agent}\"]\n"
    ));
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "invm");
    let pod = run_pod_with(&mut rt, &pc, "vm").await;
    let web = start(
        &mut rt,
        &pod,
        container_config(&d, "web", &["httpd", "-f", "-p", "8080", "-h", "/www"]),
        &pc,
    )
    .await;
    let other = start(
        &mut rt,
        &pod,
        container_config(&d, "other", &["sleep", "300"]),
        &pc,
    )
    .await;
    let ask = ["sh", "-c", "uname -r; cat /proc/sys/kernel/random/boot_id"];
    let (code, a, err) = exec_sync(&mut rt, &web, &ask).await;
    assert_eq!(code, 0, "{err}");
    let (code, b, err) = exec_sync(&mut rt, &other, &ask).await;
    assert_eq!(code, 0, "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        !a.starts_with(host.trim()),
        "the host's kernel answered: {a}"
    );
    assert_eq!(a, b, "both containers run under one guest kernel");
    // The pod's network is one inside the guest: a neighbour's server on
    // loopback.
    let fetch = ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"];
    let (code, page, err) = exec_sync(&mut rt, &other, &fetch).await;
    assert_eq!((code, page.as_str()), (0, "hello from berth\n"), "{err}");
    let vms = crate::env::processes_with("qemu-system-x86_64")
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*d.run_root.to_string_lossy()))
        })
        .count();
    assert_eq!(vms, 1, "one VM for the pod");
    // Its containers stopped, the VM ends and gives the pod's namespace
    // back as it was: no tap, no redirect on the pod's interface.
    for c in [&web, &other] {
        rt.stop_container(api::StopContainerRequest {
            container_id: c.to_string(),
            timeout: 1,
        })
        .await
        .unwrap();
    }
    let vm_root = d.run_root.join("runtime-berth-vm");
    crate::env::wait_within(60, "the pod's VM to end", || {
        crate::env::processes_with(&vm_root.to_string_lossy()).is_empty()
    });
    let pins: Vec<_> = std::fs::read_dir(d.run_root.join("netns"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!pins.is_empty(), "the pod's namespace is pinned");
    for ns in pins {
        let inside = |cmd: &[&str]| {
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args(cmd)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let links = inside(&["ip", "-o", "link"]);
        assert!(!links.contains("vmtap"), "a tap is left: {links}");
        let qdiscs = inside(&["tc", "qdisc", "show"]);
        assert!(!qdiscs.contains("ingress"), "a redirect is left: {qdiscs}");
    }
    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}
