//! The one place container lifecycle policy lives. See docs/engine.md.
