//! The platform berth builds for: this host's (others would need an
//! emulator to RUN anything), and the automatic platform ARGs BuildKit
//! gives every Dockerfile.

/// This host, as OCI names architectures.
pub fn host() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    ("linux", arch)
}

pub fn host_string() -> String {
    let (os, arch) = host();
    format!("{os}/{arch}")
}

/// Whether `p` (`linux/amd64`, `linux/amd64/v2`) is this host's platform.
pub fn is_host(p: &str) -> bool {
    let (os, arch) = host();
    let mut parts = p.split('/');
    parts.next() == Some(os) && parts.next() == Some(arch)
}

/// TARGETPLATFORM, BUILDPLATFORM and their parts: ARGs every build has in
/// the global scope, and a stage has when it declares them.
pub fn automatic_args() -> Vec<(String, String)> {
    let (os, arch) = host();
    let mut out = Vec::new();
    for side in ["TARGET", "BUILD"] {
        out.push((format!("{side}PLATFORM"), format!("{os}/{arch}")));
        out.push((format!("{side}OS"), os.to_string()));
        out.push((format!("{side}ARCH"), arch.to_string()));
        out.push((format!("{side}VARIANT"), String::new()));
    }
    out
}

/// Build args any RUN sees without an ARG (BuildKit's predefined ones),
/// when the user gives them; they stay out of the image.
pub const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];
