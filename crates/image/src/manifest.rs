//! Manifests as registries serve them: OCI manifest and index, Docker v2
//! schema 2 manifest and manifest list. Schema 1 is refused.

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Index,
}

/// What a manifest body is: its mediaType field, else the Content-Type,
/// else its shape.
pub fn classify(body: &[u8], content_type: &str, what: &str) -> Result<(Kind, String)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        #[serde(rename = "fsLayers")]
        fs_layers: Option<serde_json::Value>,
    }
    let h: Head = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(what, format!("not a manifest: {e}")))?;
    if h.schema_version == Some(1)
        || h.fs_layers.is_some()
        || content_type.contains("distribution.manifest.v1")
    {
        return Err(Error::invalid(
            what,
            "Docker schema 1 manifests are not supported (deprecated since 2017): push the image again with a current tool to get a schema 2 or OCI manifest",
        ));
    }
    let mt = h
        .media_type
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| match content_type {
            "" | "application/json" | "text/plain" => {
                if h.manifests.is_some() {
                    OCI_INDEX.into()
                } else {
                    OCI_MANIFEST.into()
                }
            }
            ct => ct.to_string(),
        });
    match mt.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok((Kind::Manifest, mt)),
        OCI_INDEX | DOCKER_LIST => Ok((Kind::Index, mt)),
        other => Err(Error::invalid(
            what,
            format!("unsupported manifest media type {other:?}"),
        )),
    }
}

pub fn parse_manifest(body: &[u8], what: &str) -> Result<ImageManifest> {
    ImageManifest::from_reader(body)
        .map_err(|e| Error::invalid(what, format!("bad image manifest: {e}")))
}

pub fn parse_index(body: &[u8], what: &str) -> Result<ImageIndex> {
    ImageIndex::from_reader(body).map_err(|e| Error::invalid(what, format!("bad image index: {e}")))
}

pub fn parse_config(body: &[u8], what: &str) -> Result<ImageConfiguration> {
    ImageConfiguration::from_reader(body)
        .map_err(|e| Error::invalid(what, format!("bad image config: {e}")))
}

pub fn digest_of(d: &oci_spec::image::Digest, what: &str) -> Result<Digest> {
    d.to_string()
        .parse()
        .map_err(|e: Error| Error::invalid(what, e.to_string()))
}

/// Picks the manifest for `want` from an index: an exact variant match
/// first, then one without a variant.
pub fn choose(index: &ImageIndex, want: &Platform, what: &str) -> Result<(Digest, u64)> {
    let mut best: Option<(&oci_spec::image::Descriptor, bool)> = None;
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let (os, arch, variant) = (
            p.os().to_string(),
            p.architecture().to_string(),
            p.variant().as_deref(),
        );
        if want.matches(&os, &arch, variant) {
            let exact = variant == want.variant.as_deref();
            if best.is_none_or(|(_, e)| !e && exact) {
                best = Some((m, exact));
            }
        }
    }
    let (m, _) = best.ok_or_else(|| {
        let have: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|m| m.platform().as_ref())
            .map(|p| {
                let mut s = format!("{}/{}", p.os(), p.architecture());
                if let Some(v) = p.variant() {
                    s.push('/');
                    s.push_str(v);
                }
                s
            })
            .collect();
        Error::invalid(
            what,
            format!(
                "no image for platform {want} (the index has: {})",
                have.join(", ")
            ),
        )
    })?;
    Ok((digest_of(m.digest(), what)?, m.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema1_is_refused_clearly() {
        let body = br#"{"schemaVersion":1,"name":"x","tag":"latest","fsLayers":[]}"#;
        let err = classify(
            body,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "m",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("schema 1"), "{err}");
    }

    #[test]
    fn classifies_by_field_then_header() {
        let b = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(classify(b, "", "m").unwrap().0, Kind::Index));
        let b = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            classify(b, OCI_INDEX, "m").unwrap().0,
            Kind::Index
        ));
        let b = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert!(matches!(classify(b, "", "m").unwrap().0, Kind::Manifest));
    }
}
