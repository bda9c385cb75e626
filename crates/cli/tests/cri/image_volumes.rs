//! Image volumes (Mount.image): a pulled image's files mounted read-only
//! in the container, held as a read-only snapshot view for the
//! container's life and gone from the snapshot store with it; an image
//! that is not in the store is refused by field.

use berth_cri::api;
use tonic::Code;

use crate::daemon::*;
use crate::errors::code_and_message;

/// The image-volume views in the store of `d`.
fn views(d: &Daemon) -> Vec<String> {
    let store = berth_image::store::Store::open(&d.env.sb.root()).unwrap();
    store
        .snapshots()
        .walk()
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .filter(|k| k.starts_with("image-volumes/"))
        .collect()
}

fn with_image_mount(d: &Daemon, name: &str, image: &str) -> api::ContainerConfig {
    let mut c = container_config(d, name, &["sleep", "300"]);
    c.mounts = vec![api::Mount {
        container_path: "/imgvol".into(),
        image: Some(api::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_volume_is_read_only_and_goes_with_its_container() {
    let d = Daemon::start();
    let (mut rt, _, _) = d.connect().await;
    let pc = pod_config(&d, "imgvol");
    let pod = run_pod(&mut rt, &pc).await;

    let id = start(
        &mut rt,
        &pod,
        with_image_mount(&d, "user", &d.env.image),
        &pc,
    )
    .await;
    assert_eq!(views(&d).len(), 1, "a view while the container lives");
    let (code, out, err) = exec_sync(&mut rt, &id, &["cat", "/imgvol/www/index.html"]).await;
    assert_eq!((code, out.as_str()), (0, "hello from berth\n"), "{err}");
    let (code, _, err) = exec_sync(&mut rt, &id, &["touch", "/imgvol/new"]).await;
    assert_ne!(code, 0, "the image volume is read-only");
    assert!(err.contains("Read-only"), "{err}");
    let (_, mounts, _) = exec_sync(&mut rt, &id, &["grep", " /imgvol ", "/proc/mounts"]).await;
    assert!(
        mounts.contains(" ro,") || mounts.contains(" ro "),
        "{mounts}"
    );

    // An image that is not in the store: NotFound naming the mount.
    let (code, msg) = code_and_message(
        create(
            &mut rt,
            &pod,
            with_image_mount(&d, "bad", "localhost/nosuch:1"),
            &pc,
        )
        .await,
    );
    assert_eq!(code, Code::NotFound, "{msg}");
    assert!(
        msg.contains("config.mounts[0].image") && msg.contains("localhost/nosuch:1"),
        "{msg}"
    );
    assert_eq!(views(&d).len(), 1, "nothing made for the refused one");

    rt.stop_container(api::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    assert_eq!(views(&d).len(), 1, "held while the container exists");
    rt.remove_container(api::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        views(&d),
        Vec::<String>::new(),
        "released with the container"
    );
    stop_pod(&mut rt, &pod).await;
    remove_pod(&mut rt, &pod).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = d.env.sb.root().display().to_string();
    assert!(!mounts.contains(&root), "no mount left under the store");
}
