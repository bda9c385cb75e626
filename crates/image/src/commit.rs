//! A new image from an image and one more layer (`berth commit`, and a
//! builder's steps): the base's layers and the new one, a config the
//! caller edited from the base's, a manifest of the base's kind (docker
//! schema 2 stays docker where the new layer is gzip; otherwise OCI, the
//! base's docker layer types named by their OCI equivalents, the bytes
//! being the same); recorded under `names`. The layer's blob and directory are already in the store
//! (export.rs); the caller holds the store's shared lock from making the
//! layer until this returns, so no collection takes the layer first.

use serde_json::{Value, json};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest;
use crate::store::{ImageRecord, LayerInfo, Store, now};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The same layer bytes' media type in a docker or an OCI manifest.
fn layer_type(t: &str, docker: bool) -> &str {
    const PAIRS: [(&str, &str); 3] = [
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            manifest::OCI_LAYER_GZIP,
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar",
            manifest::OCI_LAYER,
        ),
    ];
    for (d, o) in PAIRS {
        if docker && t == o {
            return d;
        }
        if !docker && t == d {
            return o;
        }
    }
    t
}

/// The config of `base`, as stored (every field kept, known or not).
pub fn base_config(store: &Store, base: &ImageRecord) -> Result<Value> {
    let raw = store.read_blob(&base.id)?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::invalid(format!("config {}", base.id), e))?;
    if !v.is_object() {
        return Err(Error::invalid(
            format!("config {}", base.id),
            "not a JSON object",
        ));
    }
    Ok(v)
}

/// Records the image of `base`'s layers plus `layer`, with `config` (whose
/// `rootfs` is set here to match the layers). Returns the new record.
pub fn image_with_layer(
    store: &Store,
    base: &ImageRecord,
    layer: LayerInfo,
    config: Value,
    names: &[String],
) -> Result<ImageRecord> {
    let mut layers = base.layers.clone();
    let docker = base.manifest_media_type == manifest::DOCKER_MANIFEST
        && layer.media_type == manifest::OCI_LAYER_GZIP;
    layers.push(layer);
    image_of_layers(store, layers, config, docker, names)
}

/// Records the image of `layers` with `config` (its `rootfs` set here),
/// as a docker schema 2 or an OCI image, under `names`.
pub fn image_of_layers(
    store: &Store,
    layers: Vec<LayerInfo>,
    config: Value,
    docker: bool,
    names: &[String],
) -> Result<ImageRecord> {
    let (mut rec, config_bytes) = unrecorded(layers, config, docker)?;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": rec.manifest_media_type,
        "config": {
            "mediaType": if docker { DOCKER_CONFIG } else { manifest::OCI_CONFIG },
            "digest": rec.id,
            "size": config_bytes.len(),
        },
        "layers": rec.layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&m).expect("json");
    rec.manifest_digest = Digest::of(&manifest_bytes);
    store.put_blob(&config_bytes, &rec.id)?;
    store.put_blob(&manifest_bytes, &rec.manifest_digest)?;
    store.put_image(&rec, names, &[], &[])
}

/// An image that is only its config blob (stored) and its layers, with no
/// manifest and no record: what a builder runs a step's container on. The
/// caller holds the config blob (a lease) until the container is made.
pub fn working_image(store: &Store, layers: Vec<LayerInfo>, config: Value) -> Result<ImageRecord> {
    let (rec, config_bytes) = unrecorded(layers, config, false)?;
    store.put_blob(&config_bytes, &rec.id)?;
    Ok(rec)
}

/// The record of `layers` and `config` (rootfs set to match), and the
/// config's bytes; the manifest digest is the config's until one is made.
fn unrecorded(
    mut layers: Vec<LayerInfo>,
    mut config: Value,
    docker: bool,
) -> Result<(ImageRecord, Vec<u8>)> {
    for l in &mut layers {
        l.media_type = layer_type(&l.media_type, docker).to_string();
    }
    crate::limits::check_layer_count(layers.len(), "the new image")?;
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let id = Digest::of(&config_bytes);
    let rec = ImageRecord {
        manifest_digest: id.clone(),
        id,
        manifest_media_type: if docker {
            manifest::DOCKER_MANIFEST
        } else {
            manifest::OCI_MANIFEST
        }
        .to_string(),
        config_size: config_bytes.len() as u64,
        layers,
        created: config["created"].as_str().map(String::from),
        added: now(),
        extra_blobs: Vec::new(),
        names: Vec::new(),
        repo_digests: Vec::new(),
        digest_names: Vec::new(),
    };
    Ok((rec, config_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_follow_the_manifest_kind() {
        let dgz = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        assert_eq!(layer_type(dgz, false), manifest::OCI_LAYER_GZIP);
        assert_eq!(layer_type(manifest::OCI_LAYER_GZIP, true), dgz);
        assert_eq!(layer_type(dgz, true), dgz);
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        assert_eq!(layer_type(zstd, false), zstd);
    }

    fn layer(media_type: &str, n: u8) -> LayerInfo {
        LayerInfo {
            digest: Digest::of(&[n]),
            size: 1,
            media_type: media_type.into(),
            diff_id: Digest::of(&[n, n]),
            chain_id: Digest::of(&[n, n, n]),
            unpacked: 2,
        }
    }

    #[test]
    fn a_docker_image_stays_docker_unless_the_new_layer_is_zstd() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let dgz = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        let base = ImageRecord {
            id: Digest::of(b"base config"),
            manifest_digest: Digest::of(b"base manifest"),
            manifest_media_type: manifest::DOCKER_MANIFEST.into(),
            config_size: 2,
            layers: vec![layer(dgz, 1)],
            created: None,
            added: 0,
            extra_blobs: Vec::new(),
            names: Vec::new(),
            repo_digests: Vec::new(),
            digest_names: Vec::new(),
        };
        let cfg = json!({"architecture": "amd64", "os": "linux", "config": {}});
        let manifest_of = |rec: &ImageRecord| -> Value {
            serde_json::from_slice(&store.read_blob(&rec.manifest_digest).unwrap()).unwrap()
        };
        let rec = image_with_layer(
            &store,
            &base,
            layer(manifest::OCI_LAYER_GZIP, 2),
            cfg.clone(),
            &["localhost/d:1".into()],
        )
        .unwrap();
        assert_eq!(rec.manifest_media_type, manifest::DOCKER_MANIFEST);
        let m = manifest_of(&rec);
        assert_eq!(m["mediaType"], manifest::DOCKER_MANIFEST);
        assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
        assert_eq!(m["layers"][0]["mediaType"], dgz);
        assert_eq!(m["layers"][1]["mediaType"], dgz);
        let c: Value = serde_json::from_slice(&store.read_blob(&rec.id).unwrap()).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(rec.names, ["localhost/d:1"]);

        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        let rec = image_with_layer(&store, &base, layer(zstd, 3), cfg, &[]).unwrap();
        let m = manifest_of(&rec);
        assert_eq!(m["mediaType"], manifest::OCI_MANIFEST);
        assert_eq!(m["layers"][0]["mediaType"], manifest::OCI_LAYER_GZIP);
        assert_eq!(m["layers"][1]["mediaType"], zstd);
    }
}
