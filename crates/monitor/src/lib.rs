//! The per-container monitor (conmon's role). See docs/engine.md.
