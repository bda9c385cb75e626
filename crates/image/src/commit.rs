//! A new image from an image and one more layer (`berth commit`, and a
//! builder's steps): the base's layers and the new one, a config the
//! caller edited from the base's, an OCI manifest; recorded under
//! `names`. The layer's blob and directory are already in the store
//! (export.rs); the caller holds the store's shared lock from making the
//! layer until this returns, so no collection takes the layer first.

use serde_json::{Value, json};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest;
use crate::store::{ImageRecord, LayerInfo, Store, now};

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
    mut config: Value,
    names: &[String],
) -> Result<ImageRecord> {
    let mut layers = base.layers.clone();
    layers.push(layer);
    crate::limits::check_layer_count(layers.len(), &format!("image {}", base.id))?;
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = Digest::of(&config_bytes);
    let m = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {
            "mediaType": manifest::OCI_CONFIG,
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&m).expect("json");
    let manifest_digest = Digest::of(&manifest_bytes);
    store.put_blob(&config_bytes, &config_digest)?;
    store.put_blob(&manifest_bytes, &manifest_digest)?;
    let rec = ImageRecord {
        id: config_digest,
        manifest_digest,
        manifest_media_type: manifest::OCI_MANIFEST.to_string(),
        config_size: config_bytes.len() as u64,
        layers,
        created: config["created"].as_str().map(String::from),
        added: now(),
        extra_blobs: Vec::new(),
        names: Vec::new(),
        repo_digests: Vec::new(),
        digest_names: Vec::new(),
    };
    store.put_image(&rec, names, &[], &[])
}
