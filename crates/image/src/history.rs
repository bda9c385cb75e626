//! `history`: an image's build steps, from its config's `history`, newest
//! first as docker and podman print them, each step that made a layer
//! paired with that layer's size.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::store::{ImageRecord, Store};

/// One step of an image's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The image's ID on the newest step; older steps have no image of
    /// their own here (docker's `<missing>`).
    pub image: Option<String>,
    pub created: Option<String>,
    pub created_by: String,
    /// Unpacked bytes of the step's layer; 0 for a step without one.
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    history: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    created: Option<String>,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    empty_layer: bool,
}

/// The image's history, newest step first. An image whose config has no
/// history (some importers write none) gets one step per layer, so each
/// layer is still shown with its size.
pub fn history(store: &Store, rec: &ImageRecord) -> Result<Vec<Step>> {
    let what = || format!("image {} config", rec.id.short());
    let config: Config = serde_json::from_slice(&store.read_blob(&rec.id)?)
        .map_err(|e| Error::invalid(what(), e))?;
    let mut layers = rec.layers.iter();
    let mut steps: Vec<Step> = if config.history.is_empty() {
        rec.layers
            .iter()
            .map(|l| Step {
                image: None,
                created: None,
                created_by: String::new(),
                size: l.unpacked,
                comment: String::new(),
                empty_layer: false,
            })
            .collect()
    } else {
        let mut v = Vec::with_capacity(config.history.len());
        for h in config.history {
            // Steps that made a layer take the layers in order; a history
            // claiming more layers than the image has is malformed.
            let size = if h.empty_layer {
                0
            } else {
                layers
                    .next()
                    .ok_or_else(|| {
                        Error::invalid(what(), "history names more layers than the image has")
                    })?
                    .unpacked
            };
            v.push(Step {
                image: None,
                created: h.created,
                created_by: h.created_by,
                size,
                comment: h.comment,
                empty_layer: h.empty_layer,
            });
        }
        v
    };
    steps.reverse();
    if let Some(top) = steps.first_mut() {
        top.image = Some(rec.id.hex().to_string());
    }
    Ok(steps)
}
