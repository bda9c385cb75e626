//! Caps on what an image may unpack to. A few hundred kilobytes of zstd
//! can decompress to terabytes, and a manifest may list one layer
//! thousands of times; both are refused while the bytes come, not after
//! the disk is full.
//!
//! What is counted is the uncompressed tar stream of each layer: every
//! byte decompression produces, file data including runs of zeros that
//! unpack stores as holes (they cost the same decompression and hashing,
//! and become real bytes in a copy snapshot or an exported image). It is
//! the size `images` shows. GNU sparse entries, whose holes are not in the
//! stream, are counted by their logical size where they are written.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::error::Error;

/// overlayfs stacks at most this many lower layers (OVL_MAX_STACK): an
/// image with more could never run, so it is refused before a blob is
/// fetched.
pub const MAX_LAYERS: usize = 500;

/// The largest layers of real images (CUDA, ML toolchains) unpack to a
/// few GiB; 16 GiB leaves room for them and stops a bomb well before it
/// fills a typical disk.
pub const DEFAULT_MAX_LAYER: u64 = 16 << 30;

/// Four of the largest layers; the biggest real images are tens of GiB.
pub const DEFAULT_MAX_IMAGE: u64 = 64 << 30;

/// Unpacked-size caps, in bytes of uncompressed layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub layer: u64,
    pub image: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            layer: DEFAULT_MAX_LAYER,
            image: DEFAULT_MAX_IMAGE,
        }
    }
}

/// The bytes one image has unpacked so far, across its layers (a pull
/// unpacks them at once).
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limits: Limits) -> Arc<Budget> {
        Arc::new(Budget {
            limits,
            used: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts a layer that is already unpacked (its recorded size).
    pub fn charge_existing(&self, layer: &Digest, bytes: u64) -> Result<(), Error> {
        let total = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.limits.image {
            return Err(image_error(layer, self.limits.image));
        }
        Ok(())
    }
}

/// Counts one layer's bytes against its own cap and its image's. The
/// first refusal is kept: the reader that hit it fails with an I/O error
/// that the tar or decompression code wraps, and the caller reports this
/// one instead.
#[derive(Debug)]
pub struct Meter {
    budget: Arc<Budget>,
    layer: Digest,
    used: AtomicU64,
    refusal: Mutex<Option<Error>>,
}

impl Meter {
    pub fn new(budget: Arc<Budget>, layer: &Digest) -> Arc<Meter> {
        Arc::new(Meter {
            budget,
            layer: layer.clone(),
            used: AtomicU64::new(0),
            refusal: Mutex::new(None),
        })
    }

    pub fn layer_limit(&self) -> u64 {
        self.budget.limits.layer
    }

    /// Adds `n` bytes; an error once either cap is crossed.
    pub fn charge(&self, n: u64) -> std::io::Result<()> {
        let layer = self.used.fetch_add(n, Ordering::Relaxed) + n;
        let image = self.budget.used.fetch_add(n, Ordering::Relaxed) + n;
        let err = if layer > self.budget.limits.layer {
            layer_error(&self.layer, self.budget.limits.layer)
        } else if image > self.budget.limits.image {
            image_error(&self.layer, self.budget.limits.image)
        } else {
            return Ok(());
        };
        let text = err.to_string();
        self.refuse(err);
        Err(std::io::Error::other(text))
    }

    /// Records a refusal found elsewhere (sparse file data) as this
    /// layer's.
    pub fn refuse(&self, err: Error) {
        let mut r = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert(err);
    }

    /// The cap that stopped this layer, if one did.
    pub fn take_refusal(&self) -> Option<Error> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

pub fn layer_error(layer: &Digest, limit: u64) -> Error {
    Error::invalid(
        format!("layer {layer}"),
        format!(
            "unpacks to more than {}, the limit for one layer (--max-layer-size)",
            human(limit)
        ),
    )
}

fn image_error(layer: &Digest, limit: u64) -> Error {
    Error::invalid(
        format!("layer {layer}"),
        format!(
            "the image's layers unpack to more than {}, the limit for one image (--max-image-size)",
            human(limit)
        ),
    )
}

/// Refuses a manifest of more layers than overlayfs can stack.
pub fn check_layer_count(n: usize, what: &str) -> Result<(), Error> {
    if n > MAX_LAYERS {
        return Err(Error::invalid(
            what,
            format!(
                "{n} layers; overlayfs stacks at most {MAX_LAYERS}, so such an image cannot run"
            ),
        ));
    }
    Ok(())
}

/// `16 GiB`, `512 MiB`, `100 bytes`: exact, in the largest unit that
/// divides the number.
pub fn human(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// Reads a size as the flags take it: a number of bytes with an optional
/// binary unit (`16G`, `16GiB`, `512M`, `100k`, `1024`).
pub fn parse_size(s: &str) -> Result<u64, Error> {
    let bad = |why: &str| Error::invalid(format!("size {s:?}"), why);
    let t = s.trim();
    let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(bad("expected a number of bytes, e.g. 512M or 16G"));
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad("number too large"))?;
    let unit = t[digits..].trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad("unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| bad("must be between 1 byte and 16 EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("16G").unwrap(), 16 << 30);
        assert_eq!(parse_size("16GiB").unwrap(), 16 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(16 << 30), "16 GiB");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn a_layer_and_its_image_are_capped_separately() {
        let budget = Budget::new(Limits {
            layer: 100,
            image: 150,
        });
        let d = Digest::of(b"one");
        let a = Meter::new(budget.clone(), &d);
        a.charge(100).unwrap();
        let err = a.charge(1).unwrap_err().to_string();
        assert!(
            err.contains(d.as_str()) && err.contains("100 bytes"),
            "{err}"
        );
        assert!(
            a.take_refusal()
                .unwrap()
                .to_string()
                .contains("--max-layer-size")
        );
        let b = Meter::new(budget, &Digest::of(b"two"));
        let err = b.charge(50).unwrap_err().to_string();
        assert!(err.contains("--max-image-size"), "{err}");
    }
}
