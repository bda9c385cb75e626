//! `--cache-to` and `--cache-from` a registry: each built stage goes to
//! the registry as an image of its layers whose config carries its steps'
//! cache keys (a label), the target stage under the reference's own tag,
//! stage N under `TAG-stage-N`; importing pulls those images and records
//! their layers in the local cache under the same keys. BuildKit's inline
//! cache, for every stage (its mode=max) rather than the target alone.

use std::sync::Arc;

use berth_engine::PullPolicy;
use berth_image::leases::Resource;
use berth_image::reference;
use serde_json::json;

use crate::build::{Builder, StageOut};
use crate::error::{Error, Result};
use crate::stage::CacheKey;

/// The label that carries the keys.
const LABEL: &str = "io.berth.build.cache.v1";

/// The reference stage `i` goes to (None: the target).
fn stage_ref(base: &str, stage: Option<usize>) -> Result<String> {
    let p = reference::parse(base)?;
    if !p.qualified {
        return Err(Error::invalid(
            format!("cache reference {base}"),
            "it must name a registry",
        ));
    }
    let tag = p.reference.tag.clone().unwrap_or_else(|| "latest".into());
    let repo = p.reference.name();
    Ok(match stage {
        None => format!("{repo}:{tag}"),
        Some(i) => format!("{repo}:{tag}-stage-{i}"),
    })
}

impl Builder<'_> {
    /// Records what the `--cache-from` images hold in the local cache.
    pub(crate) fn import_cache(&self) -> Result<()> {
        for base in &self.opts.cache_from {
            let n = self.next_step(&format!("[internal] importing cache from {base}"));
            let mut refs = vec![stage_ref(base, None)?];
            for i in 0..self.df.stages.len() {
                refs.push(stage_ref(base, Some(i))?);
            }
            let mut found = 0;
            for r in refs {
                let img = match self.engine.image_for(
                    &r,
                    PullPolicy::Always,
                    &self.opts.pull_options,
                    &mut |_| {},
                ) {
                    Ok(img) => img,
                    // A stage that was not exported, or a first build.
                    Err(e) => {
                        tracing::debug!("cache {r}: {e}");
                        continue;
                    }
                };
                let config = berth_image::commit::base_config(&self.engine.images, &img)?;
                let keys: Vec<CacheKey> = config["config"]["Labels"][LABEL]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default();
                for k in &keys {
                    if let Some(layer) = img.layers.get(k.layer) {
                        self.remember(&k.key, layer, &k.created)?;
                        found += 1;
                    }
                }
                // The cache holds the layers now; the image goes.
                let _ = berth_image::images::remove(
                    &self.engine.images,
                    &img.id.to_string(),
                    true,
                    &self.opts.pull_options.registries,
                );
            }
            self.progress.note(n, &format!("{found} cached steps"));
            self.progress.done(n, std::time::Duration::ZERO);
        }
        Ok(())
    }

    /// Pushes every built stage, with its keys, to `--cache-to`.
    pub(crate) fn export_cache(&self, target: usize, stages: &[(usize, StageOut)]) -> Result<()> {
        let Some(base) = &self.opts.cache_to else {
            return Ok(());
        };
        let n = self.next_step(&format!("[internal] exporting cache to {base}"));
        let store = &self.engine.images;
        let push = berth_image::push::PushOptions {
            transport: self.opts.pull_options.transport.clone(),
            registries: self.opts.pull_options.registries.clone(),
            progress: Arc::new(berth_image::progress::Quiet),
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::io("start the async runtime"))?;
        for (i, out) in stages {
            if out.keys.is_empty() {
                continue;
            }
            let dest = stage_ref(base, (*i != target).then_some(*i))?;
            let mut config = out.config.clone();
            crate::stage::object_at(&mut config, "Labels").insert(
                LABEL.into(),
                json!(serde_json::to_string(&out.keys).expect("keys serialise")),
            );
            let img = {
                let _l = store.lock_shared()?;
                let img = berth_image::commit::image_of_layers(
                    store,
                    out.layers.clone(),
                    config,
                    false,
                    &[],
                )?;
                store.lease_add(&self.lease, &Resource::Image(img.id.clone()))?;
                img
            };
            let pushed = rt.block_on(berth_image::push::push(store, &img, &dest, &push));
            // The record was only the vehicle; the lease keeps it until
            // the push is done.
            let _ = store.delete_image(&img.id);
            let d = pushed?;
            self.progress.note(n, &format!("{dest}@{d}"));
        }
        self.progress.done(n, std::time::Duration::ZERO);
        Ok(())
    }
}
