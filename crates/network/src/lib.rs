//! Container networking: pinned network namespaces, CNI plugin invocation
//! (ADD/CHECK/DEL, conflists, prevResult chaining) and port mappings.
//! See docs/engine.md.
