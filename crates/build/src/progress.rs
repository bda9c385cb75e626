//! What a build tells its user as it goes, BuildKit's way: numbered steps,
//! each CACHED or with its output and time.

use std::time::Duration;

pub trait Progress: Sync {
    /// Step `n` begins: `title` is `[stage k/N] INSTRUCTION ...`.
    fn step(&self, n: usize, title: &str);
    /// It was taken from the cache.
    fn cached(&self, n: usize);
    /// Output of its process.
    fn output(&self, n: usize, data: &[u8]);
    /// A line about it (pulling an image, a warning).
    fn note(&self, n: usize, line: &str);
    /// It finished after `took`.
    fn done(&self, n: usize, took: Duration);
}

/// Says nothing (`-q`).
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: usize, _: &str) {}
    fn cached(&self, _: usize) {}
    fn output(&self, _: usize, _: &[u8]) {}
    fn note(&self, _: usize, _: &str) {}
    fn done(&self, _: usize, _: Duration) {}
}
