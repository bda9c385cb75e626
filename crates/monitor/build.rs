//! berth-monitor runs once per container, so its private memory counts per
//! container. As a position-independent executable, the loader would
//! relocate (and so dirty, privately, in every monitor) each page of
//! pointer data in it: ~250 KiB. Linked at a fixed address, those pages
//! stay clean and are shared by all monitors. (The library code inside is
//! still position-independent; only the link differs.)
fn main() {
    println!("cargo:rustc-link-arg-bin=berth-monitor=-no-pie");
}
