//! CDI devices, by `cdi_devices` and by kubelet's `cdi.k8s.io/*`
//! annotations, from spec files (JSON and YAML) in berthd's configured
//! directories: the device node and the env they give are the
//! container's; an unknown device is refused by field; a broken spec file
//! is skipped with a warning naming it.

use std::collections::HashMap;

use berth_cri::api;
use tonic::Code;

use crate::daemon::*;
use crate::errors::code_and_message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdi_devices_give_their_nodes_and_env_and_unknown_ones_are_named() {
    let specs = tempfile::tempdir().unwrap();
    std::fs::write(
        specs.path().join("vendor.json"),
        r#"{
            "cdiVersion": "0.6.0",
            "kind": "vendor.example/dev",
            "containerEdits": {"env": ["VENDOR_SPEC=1"]},
            "devices": [
                {"name": "dev0", "containerEdits": {
                    "env": ["VENDOR_DEVICE=dev0"],
                    "deviceNodes": [{"path": "/dev/vendor0", "hostPath": "/dev/null"}]
                }}
            ]
        }"#,
    )
    .unwrap();
    std::fs::write(
        specs.path().join("other.yaml"),
        "cdiVersion: 0.6.0\nkind: other.example/acc\ndevices:\n  - name: acc1\n    containerEdits:\n      env: [ACC=acc1]\n      deviceNodes:\n        - path: /dev/acc1\n          hostPath: /dev/zero\n          permissions: r\n",
    )
    .unwrap();
    std::fs::write(specs.path().join("broken.json"), "{ not json").unwrap();
    let d = Daemon::start_with(&format!(
        "cdi_spec_dirs = [{:?}]",
        specs.path().to_str().unwrap()
    ));
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "devices");
    let pod = run_pod(&mut rt, &pc).await;

    let mut cfg = container_config(&d, "user", &["sleep", "300"]);
    cfg.cdi_devices = vec![api::CdiDevice {
        name: "vendor.example/dev=dev0".into(),
    }];
    cfg.annotations = HashMap::from([(
        "cdi.k8s.io/acc-plugin".to_string(),
        "other.example/acc=acc1".to_string(),
    )]);
    let id = start(&mut rt, &pod, cfg, &pc).await;
    let (code, out, err) = exec_sync(
        &mut rt,
        &id,
        &[
            "sh",
            "-c",
            "echo $VENDOR_SPEC $VENDOR_DEVICE $ACC; stat -c '%t:%T' /dev/vendor0 /dev/acc1; \
             echo hi > /dev/vendor0 && echo written; head -c 4 /dev/acc1 | wc -c",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1 dev0 acc1\n1:3\n1:5\nwritten\n4\n");
    assert!(
        d.log().contains("broken.json"),
        "the broken spec is named:\n{}",
        d.log()
    );

    // Unknown devices, by either way of naming them: nothing is made.
    let mut bad = container_config(&d, "bad", &["true"]);
    bad.cdi_devices = vec![api::CdiDevice {
        name: "vendor.example/dev=nosuch".into(),
    }];
    let (code, msg) = code_and_message(create(&mut rt, &pod, bad, &pc).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains("config.cdi_devices[0]") && msg.contains("vendor.example/dev=nosuch"),
        "{msg}"
    );
    let mut bad = container_config(&d, "bad", &["true"]);
    bad.annotations = HashMap::from([(
        "cdi.k8s.io/x".to_string(),
        "unknown.example/k=z".to_string(),
    )]);
    let (code, msg) = code_and_message(create(&mut rt, &pod, bad, &pc).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains("cdi.k8s.io/x") && msg.contains("unknown.example/k"),
        "{msg}"
    );
    let all = rt
        .list_containers(api::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(all.len(), 1, "{all:?}");

    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}
