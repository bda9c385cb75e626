//! `hostUsers: false`: a pod in a user namespace of its own, as kubelet
//! asks for it: the maps in the pod's and each container's namespace
//! options, and kubelet's volumes id-mapped with the same maps.

use std::os::unix::fs::MetadataExt;

use berth_cri::api;

use crate::daemon::*;

fn namespaces(userns: &api::UserNamespace, pid: api::NamespaceMode) -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Pod as i32,
        pid: pid as i32,
        ipc: api::NamespaceMode::Pod as i32,
        userns_options: Some(userns.clone()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_in_a_user_namespace_of_its_own() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let st = rt
        .status(api::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let builtin = st
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .unwrap();
    assert!(builtin.features.as_ref().unwrap().user_namespaces, "{st:?}");

    let map = vec![api::IdMapping {
        host_id: 300000,
        container_id: 0,
        length: 65536,
    }];
    let userns = api::UserNamespace {
        mode: api::NamespaceMode::Pod as i32,
        uids: map.clone(),
        gids: map.clone(),
    };
    let mut pc = pod_config(&d, "userns");
    let sc = pc
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options = Some(namespaces(&userns, api::NamespaceMode::Container));
    let pod = run_pod(&mut rt, &pc).await;

    let vol = d.env.sb.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "x").unwrap();
    let volume = api::Mount {
        container_path: "/data".into(),
        host_path: vol.display().to_string(),
        uid_mappings: map.clone(),
        gid_mappings: map.clone(),
        ..Default::default()
    };
    let config = |name: &str, mounts: Vec<api::Mount>| {
        let mut c = container_config(&d, name, &["sleep", "300"]);
        c.mounts = mounts;
        c.linux = Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(&userns, api::NamespaceMode::Container)),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let id = start(&mut rt, &pod, config("c", vec![volume.clone()]), &pc).await;
    let (code, out, err) = exec_sync(
        &mut rt,
        &id,
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; touch /made /data/new && stat -c %u /etc/passwd /made /data/f /data/new",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out} {err}");
    let l: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(l[0], "0", "{out}");
    assert_eq!(
        l[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "300000", "65536"],
        "{out}"
    );
    assert_eq!(&l[2..], ["0", "0", "0", "0"], "{out}");
    // On the host: the volume's file is written with the volume's ids.
    assert_eq!(std::fs::metadata(vol.join("new")).unwrap().uid(), 0);

    // A mount mapped otherwise than the container, or mapped in a
    // container of the host's user namespace: refused, the field named.
    let mut other = volume.clone();
    other.uid_mappings[0].host_id = 400000;
    let e = create(&mut rt, &pod, config("other", vec![other]), &pc)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("config.mounts[0].uid_mappings"),
        "{e:?}"
    );
    let mut host = container_config(&d, "host", &["true"]);
    host.mounts = vec![volume.clone()];
    let e = create(&mut rt, &pod, host, &pc).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("user namespace"), "{e:?}");

    // A pod sharing one pid namespace cannot have its own user namespace;
    // nor can a map without the container's root.
    let mut shared = pod_config(&d, "shared");
    let sc = shared
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options = Some(namespaces(&userns, api::NamespaceMode::Pod));
    let e = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(shared),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("userns_options"), "{e:?}");
    let mut rootless_map = pod_config(&d, "noroot");
    let mut bad = userns.clone();
    bad.uids[0].container_id = 1;
    let sc = rootless_map
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options = Some(namespaces(&bad, api::NamespaceMode::Container));
    let e = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(rootless_map),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("userns_options.uids"), "{e:?}");

    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}
