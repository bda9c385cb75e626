//! What a long operation reports as it goes; the CLI draws it.

use crate::digest::Digest;

pub trait Progress: Send + Sync {
    /// A line of text (resolving, writing manifest...).
    fn message(&self, _text: &str) {}
    /// A layer blob is about to be transferred; `size` in bytes.
    fn layer_start(&self, _digest: &Digest, _size: u64) {}
    /// `done` bytes of it so far.
    fn layer_bytes(&self, _digest: &Digest, _done: u64) {}
    /// Finished; `skipped` when nothing had to move (already present).
    fn layer_done(&self, _digest: &Digest, _skipped: bool) {}
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {}
