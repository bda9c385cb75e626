// Relative relocations packed as RELR (glibc ≥ 2.36, binutils ≥ 2.38):
// the loader no longer reads the 800 KB of `.rela.dyn` a PIE of this size
// carries, pages of an idle daemon that stayed resident for nothing.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
