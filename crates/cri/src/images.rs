//! CRI's ImageService over berth's image store: the store the `berth` CLI
//! uses, so an image pulled by either is seen by both.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_image::auth::Credentials;
use berth_image::client::Token;
use berth_image::pull::PullOptions;
use berth_image::store::{ImageRecord, Store};
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::image_service_server::ImageService;
use crate::runtime::find_image;
use crate::service::Cri;
use crate::stats::disk_usage;
use crate::status::{from_image, invalid, required};
use crate::time;

/// How long a measured disk usage is reused (kubelet asks every few
/// seconds; walking the store each time would cost more than it tells).
const USAGE_TTL: Duration = Duration::from_secs(10);

/// The last ImageFsInfo figures and when they were taken.
#[derive(Default)]
pub struct UsageCache(Mutex<Option<(Instant, api::ImageFsInfoResponse)>>);

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        r: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let wanted = r
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .unwrap_or_default();
        self.call("ListImages", move |cri| {
            let images = if wanted.is_empty() {
                cri.engine.images.images().map_err(from_image)?
            } else {
                find_image(cri, &wanted)?.into_iter().collect()
            };
            Ok(api::ListImagesResponse {
                images: images.iter().map(|i| image(cri, i)).collect(),
            })
        })
        .await
    }

    async fn image_status(
        &self,
        r: Request<api::ImageStatusRequest>,
    ) -> Result<Response<api::ImageStatusResponse>, Status> {
        let r = r.into_inner();
        self.call("ImageStatus", move |cri| {
            let name = r.image.map(|i| i.image).unwrap_or_default();
            if name.is_empty() {
                return Err(required("image.image"));
            }
            // A missing image is an empty answer, not an error (kubelet
            // then pulls it).
            let Some(found) = find_image(cri, &name)? else {
                return Ok(api::ImageStatusResponse::default());
            };
            let mut info = std::collections::HashMap::new();
            if r.verbose {
                let config = berth_image::bundle::image_config(&cri.engine.images, &found)
                    .map_err(from_image)?;
                info.insert(
                    "info".to_string(),
                    serde_json::json!({ "record": found, "config": config }).to_string(),
                );
            }
            Ok(api::ImageStatusResponse {
                image: Some(image(cri, &found)),
                info,
            })
        })
        .await
    }

    async fn pull_image(
        &self,
        r: Request<api::PullImageRequest>,
    ) -> Result<Response<api::PullImageResponse>, Status> {
        let start = Instant::now();
        let r = r.into_inner();
        let res = self.pull(r).await;
        self.finish("PullImage", start, res)
    }

    async fn remove_image(
        &self,
        r: Request<api::RemoveImageRequest>,
    ) -> Result<Response<api::RemoveImageResponse>, Status> {
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.call("RemoveImage", move |cri| {
            if name.is_empty() {
                return Err(required("image.image"));
            }
            // Idempotent: an image that is not there is removed.
            let Some(found) = find_image(cri, &name)? else {
                return Ok(api::RemoveImageResponse {});
            };
            match berth_image::images::remove(
                &cri.engine.images,
                &found.id.to_string(),
                true,
                &cri.registries,
            ) {
                Ok(_) | Err(berth_image::Error::NotFound(_)) => Ok(api::RemoveImageResponse {}),
                Err(e) => Err(from_image(e)),
            }
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _r: Request<api::ImageFsInfoRequest>,
    ) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        self.call("ImageFsInfo", move |cri| Ok(fs_info(cri))).await
    }
}

impl Cri {
    async fn pull(&self, r: api::PullImageRequest) -> Result<api::PullImageResponse, Status> {
        let name = r.image.map(|i| i.image).unwrap_or_default();
        if name.is_empty() {
            return Err(required("image.image"));
        }
        berth_image::reference::parse(&name).map_err(|e| invalid("image.image", e))?;
        let mut opts = PullOptions {
            registries: (*self.registries).clone(),
            ..PullOptions::default()
        };
        opts.transport.creds_override = credentials(r.auth.as_ref())?;
        opts.transport.token = token(r.auth.as_ref())?;
        let store = Arc::new(Store::open(&self.engine.root).map_err(from_image)?);
        let rec = berth_image::pull::pull(store, &name, &opts)
            .await
            .map_err(from_image)?;
        tracing::info!(image = name, id = %rec.id, "pulled");
        Ok(api::PullImageResponse {
            image_ref: rec.id.to_string(),
        })
    }
}

/// A token kubelet passes from the pod's image pull secrets (a registry's
/// bearer token, or an identity token to exchange for one).
fn token(a: Option<&api::AuthConfig>) -> Result<Option<Token>, Status> {
    let Some(a) = a else { return Ok(None) };
    match (a.registry_token.is_empty(), a.identity_token.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Ok(Some(Token::Registry(a.registry_token.clone()))),
        (true, false) => Ok(Some(Token::Identity(a.identity_token.clone()))),
        (false, false) => Err(invalid(
            "auth.registry_token",
            "give a registry token or an identity token, not both",
        )),
    }
}

/// The credentials kubelet passes from the pod's image pull secrets.
fn credentials(a: Option<&api::AuthConfig>) -> Result<Option<Credentials>, Status> {
    let Some(a) = a else { return Ok(None) };
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(Some(Credentials {
            username: a.username.clone(),
            password: a.password.clone(),
        }));
    }
    if a.auth.is_empty() {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.auth.trim())
        .map_err(|e| invalid("auth.auth", format!("not base64: {e}")))?;
    let text = String::from_utf8(raw).map_err(|_| invalid("auth.auth", "not UTF-8"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| invalid("auth.auth", "not user:password"))?;
    Ok(Some(Credentials {
        username: username.into(),
        password: password.into(),
    }))
}

/// The image as CRI lists it: id, names, size and user.
fn image(cri: &Cri, i: &ImageRecord) -> api::Image {
    let user = berth_image::bundle::image_config(&cri.engine.images, i)
        .ok()
        .and_then(|c| c.config().as_ref()?.user().clone())
        .unwrap_or_default();
    // CRI's uid when the image's user is numeric, its name otherwise.
    let name_part = user.split(':').next().unwrap_or("");
    let (uid, username) = match name_part.parse::<i64>() {
        Ok(n) => (Some(api::Int64Value { value: n }), String::new()),
        Err(_) if name_part.is_empty() => (Some(api::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, name_part.to_string()),
    };
    api::Image {
        id: i.id.to_string(),
        repo_tags: i.names.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size(),
        uid,
        username,
        spec: Some(api::ImageSpec {
            image: i.id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// Disk used by the image store (blobs and unpacked layers) and by the
/// containers' writable layers, measured at most every USAGE_TTL.
fn fs_info(cri: &Cri) -> api::ImageFsInfoResponse {
    let mut cache = cri.usage.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, v)) = cache.as_ref()
        && at.elapsed() < USAGE_TTL
    {
        return v.clone();
    }
    let root = &cri.engine.root;
    let usage = |dirs: &[&str]| {
        let (mut b, mut n) = (0, 0);
        for d in dirs {
            let (x, y) = disk_usage(&root.join(d));
            b += x;
            n += y;
        }
        api::FilesystemUsage {
            timestamp: time::now(),
            fs_id: Some(api::FilesystemIdentifier {
                mountpoint: root.to_string_lossy().into_owned(),
            }),
            used_bytes: Some(api::UInt64Value { value: b }),
            inodes_used: Some(api::UInt64Value { value: n }),
        }
    };
    let v = api::ImageFsInfoResponse {
        image_filesystems: vec![usage(&["blobs", "layers", "l"])],
        container_filesystems: vec![usage(&["containers"])],
    };
    *cache = Some((Instant::now(), v.clone()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_in_every_form() {
        let a = api::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:x"),
            ..Default::default()
        };
        let c = credentials(Some(&a)).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:x"));
        let a = api::AuthConfig {
            auth: "%%%".into(),
            ..Default::default()
        };
        assert!(
            credentials(Some(&a))
                .unwrap_err()
                .message()
                .contains("auth.auth")
        );
        assert!(credentials(None).unwrap().is_none());
        let a = api::AuthConfig {
            registry_token: "t".into(),
            ..Default::default()
        };
        assert_eq!(token(Some(&a)).unwrap(), Some(Token::Registry("t".into())));
        let a = api::AuthConfig {
            identity_token: "i".into(),
            ..Default::default()
        };
        assert_eq!(token(Some(&a)).unwrap(), Some(Token::Identity("i".into())));
        let a = api::AuthConfig {
            identity_token: "i".into(),
            registry_token: "t".into(),
            ..Default::default()
        };
        assert_eq!(
            token(Some(&a)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
