//! A container joining another's pid namespace (TARGET), as `kubectl
//! debug --target` asks: it sees the target's processes; a target that is
//! unknown, in another pod or not running is refused by field.

use berth_cri::api;
use tonic::Code;

use crate::daemon::*;
use crate::errors::code_and_message;

/// A config joining the pid namespace of `target`.
fn debugger(d: &Daemon, name: &str, target: &str) -> api::ContainerConfig {
    let mut c = container_config(d, name, &["sleep", "300"]);
    c.linux = Some(api::LinuxContainerConfig {
        security_context: Some(api::LinuxContainerSecurityContext {
            namespace_options: Some(api::NamespaceOption {
                pid: api::NamespaceMode::Target as i32,
                target_id: target.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_container_sees_its_targets_processes() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "debugged");
    let pod = run_pod(&mut rt, &pc).await;
    let target = start(
        &mut rt,
        &pod,
        container_config(&d, "app", &["sleep", "31337"]),
        &pc,
    )
    .await;
    let other = start(
        &mut rt,
        &pod,
        container_config(&d, "other", &["sleep", "4242"]),
        &pc,
    )
    .await;
    let dbg = start(&mut rt, &pod, debugger(&d, "dbg", &target), &pc).await;

    // The target's processes, and its pid 1, are the debugger's to see;
    // the pod's other container, with a namespace of its own, is not.
    let (code, ps, err) = exec_sync(&mut rt, &dbg, &["ps", "-o", "pid,args"]).await;
    assert_eq!(code, 0, "{err}");
    let init = ps
        .lines()
        .find(|l| l.contains("sleep 31337"))
        .unwrap_or_else(|| panic!("the target's process is seen: {ps}"));
    assert_eq!(init.split_whitespace().next(), Some("1"), "{ps}");
    assert!(ps.contains("sleep 300"), "{ps}");
    assert!(!ps.contains("sleep 4242"), "{ps}");
    let (_, cmdline, _) = exec_sync(&mut rt, &dbg, &["cat", "/proc/1/cmdline"]).await;
    assert_eq!(cmdline, "sleep\u{0}31337\u{0}");
    let ns = |id: String| {
        let mut rt = rt.clone();
        async move {
            let (code, out, err) = exec_sync(
                &mut rt,
                &id,
                &["stat", "-L", "-c", "%i", "/proc/self/ns/pid"],
            )
            .await;
            assert_eq!(code, 0, "{err}");
            out
        }
    };
    assert_eq!(ns(dbg.clone()).await, ns(target.clone()).await);
    assert_ne!(ns(other.clone()).await, ns(target.clone()).await);
    // The target sees the debugger too.
    let (_, ps, _) = exec_sync(&mut rt, &target, &["ps", "-o", "args"]).await;
    assert!(ps.contains("sleep 300"), "{ps}");

    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pid_target_is_refused_by_field_and_nothing_is_made() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "one");
    let pod = run_pod(&mut rt, &pc).await;
    let pc2 = pod_config(&d, "two");
    let pod2 = run_pod(&mut rt, &pc2).await;
    let elsewhere = start(
        &mut rt,
        &pod2,
        container_config(&d, "app", &["sleep", "300"]),
        &pc2,
    )
    .await;
    let stopped = create(&mut rt, &pod, container_config(&d, "idle", &["true"]), &pc)
        .await
        .unwrap();

    const FIELD: &str = "namespace_options.target_id";
    for (target, want) in [
        (String::new(), Code::InvalidArgument),
        ("not-an-id".to_string(), Code::InvalidArgument),
        ("ab".repeat(32), Code::NotFound),
        (elsewhere.clone(), Code::InvalidArgument),
        (stopped.clone(), Code::FailedPrecondition),
    ] {
        let (code, msg) =
            code_and_message(create(&mut rt, &pod, debugger(&d, "dbg", &target), &pc).await);
        assert_eq!(code, want, "{target:?}: {msg}");
        assert!(msg.contains(FIELD), "{target:?}: {msg}");
    }
    // Only the two containers of the setup exist.
    let all = rt
        .list_containers(api::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(all.len(), 2, "{all:?}");

    for p in [&pod, &pod2] {
        stop_pod(&mut rt, p).await;
        remove_pod(&mut rt, p).await;
    }
    assert_eq!(d.leftovers(), Vec::<String>::new());
}
