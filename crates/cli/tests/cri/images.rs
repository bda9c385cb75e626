//! The ImageService: pulls from a registry (with credentials kubelet passes
//! from a pull secret), listing, status, removal, the image filesystem.

use berth_cri::api;
use tonic::Code;

use crate::daemon::*;
use crate::support::{E, Registry, RegistryOpts, layer_tar};

fn spec(image: &str) -> Option<api::ImageSpec> {
    Some(api::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_listed_and_removed() {
    let authed = Registry::start_with(RegistryOpts {
        auth: Some(("tester".into(), "secret".into())),
        tls: false,
    });
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        conf.path(),
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            authed.host()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(&format!(
        "registries_conf = {:?}",
        conf.path().to_str().unwrap()
    ));
    let (_, mut img, _) = d.connect().await;

    // An image only the registry behind basic auth has.
    let extra = d.env.image_with(
        "extra",
        layer_tar(&[E::File("extra.txt", 0o644, b"extra\n".to_vec())]),
    );
    let pushed = format!("{}/extra:1", authed.host());
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(["--dest-creds", "tester:secret"])
        .arg(format!("docker://{extra}"))
        .arg(format!("docker://{pushed}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pull = |auth: Option<api::AuthConfig>| {
        let mut img = img.clone();
        let pushed = pushed.clone();
        async move {
            img.pull_image(api::PullImageRequest {
                image: spec(&pushed),
                auth,
                sandbox_config: None,
            })
            .await
        }
    };
    let err = pull(None).await.unwrap_err();
    assert!(err.message().contains(&authed.host()), "{err:?}");
    let wrong = api::AuthConfig {
        username: "tester".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    assert!(pull(Some(wrong)).await.is_err());
    // The pull secret's "auth" field: base64 of user:password.
    let good = api::AuthConfig {
        auth: "dGVzdGVyOnNlY3JldA==".into(),
        ..Default::default()
    };
    let image_ref = pull(Some(good)).await.unwrap().into_inner().image_ref;
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");

    let list = img
        .list_images(api::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    let got = list.iter().find(|i| i.id == image_ref).expect("listed");
    assert!(got.repo_tags.contains(&pushed), "{got:?}");
    assert!(got.size > 0);
    assert!(list.iter().any(|i| i.repo_tags.contains(&d.env.image)));

    let st = img
        .image_status(api::ImageStatusRequest {
            image: spec(&pushed),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.image.unwrap().id, image_ref);
    assert!(st.info["info"].contains("\"config\""));
    // By id too, as kubelet asks after a pull.
    let st = img
        .image_status(api::ImageStatusRequest {
            image: spec(&image_ref),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.image.unwrap().id, image_ref);

    let fs = img
        .image_fs_info(api::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert!(usage.used_bytes.as_ref().unwrap().value > 0);
    assert!(
        usage
            .fs_id
            .as_ref()
            .unwrap()
            .mountpoint
            .starts_with(d.env.sb.root().to_str().unwrap())
    );

    // Removal is idempotent; the status of a missing image is empty.
    for _ in 0..2 {
        img.remove_image(api::RemoveImageRequest {
            image: spec(&pushed),
        })
        .await
        .unwrap();
    }
    let st = img
        .image_status(api::ImageStatusRequest {
            image: spec(&pushed),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_none());

    let bad = img
        .pull_image(api::PullImageRequest {
            image: spec("UPPER/case:bad tag"),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_pull_secret_open_a_token_authenticated_registry() {
    let reg = Registry::start();
    let proxy = crate::support::Proxy::start(reg.port);
    *proxy.gate.lock().unwrap() = Some(crate::support::Gate {
        access: "access-42".into(),
        identity: "refresh-7".into(),
    });
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        conf.path(),
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            proxy.host()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(&format!(
        "registries_conf = {:?}",
        conf.path().to_str().unwrap()
    ));
    let (_, img, _) = d.connect().await;
    // The image reaches the registry behind the gate's back.
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{}", d.env.image))
        .arg(format!("docker://{}/gated:1", reg.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gated = format!("{}/gated:1", proxy.host());
    let pull = |auth: api::AuthConfig| {
        let mut img = img.clone();
        let gated = gated.clone();
        async move {
            img.pull_image(api::PullImageRequest {
                image: spec(&gated),
                auth: Some(auth),
                sandbox_config: None,
            })
            .await
        }
    };
    let remove = |id: String| {
        let mut img = img.clone();
        async move {
            img.remove_image(api::RemoveImageRequest { image: spec(&id) })
                .await
                .unwrap();
        }
    };
    // A registry token is sent as it is; a wrong one is refused.
    let bad = pull(api::AuthConfig {
        registry_token: "nope".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(bad.message().contains("401"), "{bad:?}");
    let id = pull(api::AuthConfig {
        registry_token: "access-42".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .image_ref;
    remove(id).await;
    // An identity token is traded at the realm for the access token.
    let id = pull(api::AuthConfig {
        identity_token: "refresh-7".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .image_ref;
    assert!(id.starts_with("sha256:"), "{id}");
    let posts = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST /token "))
        .count();
    assert!(posts >= 1, "{:?}", proxy.requests());
    let bad = pull(api::AuthConfig {
        identity_token: "stale".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(bad.message().contains("token"), "{bad:?}");
    // Both at once is a request kubelet never makes: refused by field.
    let both = pull(api::AuthConfig {
        identity_token: "refresh-7".into(),
        registry_token: "access-42".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    assert!(both.message().contains("auth.registry_token"), "{both:?}");
}
