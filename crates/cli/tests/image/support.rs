//! Test support for the image commands: a real registry (Debian's
//! docker-registry) per test on a free port, optionally behind htpasswd
//! basic auth and TLS with a test CA; OCI layouts built here and pushed with
//! skopeo; a sandbox with its own store root; a byte-counting proxy that
//! can cut streams. Everything is removed when its owner drops, pass or
//! fail.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::Digest;
use serde_json::{Value, json};

pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[macro_export]
macro_rules! require {
    ($($tool:expr),+) => {
        $(
            if !$crate::support::have($tool) {
                eprintln!("SKIPPED: {} is not installed", $tool);
                return;
            }
        )+
    };
}

/// A port nothing listens on now. Only for what is never listened on (a
/// dead endpoint): a server told to use it may lose it to another test
/// before it binds, so servers go through `Registry::start_with`, which
/// checks that the listener on its port is its own.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`
/// (as /proc/net/tcp and its fds say), so a connection there reaches it
/// and not another test's server that took the port first.
fn listens_on(pid: u32, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    let Ok(tcp) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // State 0A is LISTEN.
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
    })
}

/// A temp dir with a store root; unmounts anything left under it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("berth-img-test-")
            .tempdir()
            .unwrap();
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// berth with this sandbox's root, registries.conf and auth file.
    pub fn cmd(&self) -> Command {
        self.cmd_root(&self.root())
    }

    pub fn cmd_root(&self, root: &Path) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(root);
        c.arg("--registries-conf").arg(self.conf());
        c.arg("--authfile").arg(self.path().join("auth.json"));
        c.arg("--certs-dir").arg(self.path().join("certs.d"));
        c.env("DOCKER_CONFIG", self.path().join("docker"));
        c.stdin(Stdio::null());
        c
    }

    pub fn conf(&self) -> PathBuf {
        let p = self.path().join("registries.conf");
        if !p.exists() {
            fs::write(&p, "").unwrap();
        }
        p
    }

    pub fn write_conf(&self, text: &str) {
        fs::write(self.path().join("registries.conf"), text).unwrap();
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run berth")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth expecting failure (125); returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.fails_with(125, args)
    }

    /// Runs berth expecting exit code `code`; returns stderr.
    pub fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let out = self.berth(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "berth {args:?} should fail with {code}; stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        umount_under(self.dir.path());
    }
}

pub fn umount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

pub struct RegistryOpts {
    pub auth: Option<(String, String)>,
    pub tls: bool,
}

fn dir_ca(o: &RegistryOpts, dir: &tempfile::TempDir) -> Option<PathBuf> {
    o.tls.then(|| dir.path().join("ca.crt"))
}

/// docker-registry serving on 127.0.0.1 from its own storage dir.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// With TLS: the CA certificate to trust.
    pub ca: Option<PathBuf>,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(RegistryOpts {
            auth: None,
            tls: false,
        })
    }

    pub fn start_with(o: RegistryOpts) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        // The port is free when chosen, and may be taken before the
        // registry binds it: then it exits (or another server answers
        // there), and it starts again on another port.
        for _ in 0..10 {
            let port = free_port();
            let mut child = Self::spawn(&o, dir.path(), port);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if listens_on(child.id(), port) {
                    let ca = dir_ca(&o, &dir);
                    return Registry {
                        child,
                        port,
                        dir,
                        ca,
                    };
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "docker-registry did not start: {}",
            fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// Writes the config (TLS material and htpasswd once) and starts
    /// docker-registry on `port`.
    fn spawn(o: &RegistryOpts, dir: &Path, port: u16) -> Child {
        let mut conf = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if o.tls {
            if !dir.join("ca.crt").exists() {
                make_tls(dir);
            }
            conf.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            ));
        }
        if let Some((u, p)) = &o.auth {
            let htpasswd = dir.join("htpasswd");
            if !htpasswd.exists() {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", u, p])
                    .output()
                    .expect("htpasswd (apache2-utils)");
                assert!(out.status.success());
                fs::write(&htpasswd, &out.stdout).unwrap();
            }
            conf.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let cfg = dir.join("config.yml");
        fs::write(&cfg, conf).unwrap();
        Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("start docker-registry")
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI layout (`dir:tag`) with skopeo; `format` "oci" or "v2s2".
    pub fn push_layout(&self, layout: &Path, tag: &str, dest: &str, format: &str, all: bool) {
        let mut c = Command::new("skopeo");
        c.arg("copy").arg("--quiet").arg("--dest-tls-verify=false");
        if self.auth_of().is_some() {
            c.arg("--dest-creds").arg("tester:secret");
        }
        if all {
            c.arg("--all");
        } else {
            c.arg("--format").arg(format);
        }
        c.arg(format!("oci:{}:{tag}", layout.display()));
        c.arg(format!("docker://{}/{dest}", self.host()));
        let out = c.output().expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}\nthe registry (pid {}) {}; its log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.child.id(),
            if listens_on(self.child.id(), self.port) {
                "still listens"
            } else {
                "no longer listens"
            },
            fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    fn auth_of(&self) -> Option<()> {
        self.dir.path().join("htpasswd").exists().then_some(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

// ---------------------------------------------------------------- layers

/// One tar entry of a test layer.
pub enum E {
    Dir(&'static str, u32),
    File(&'static str, u32, Vec<u8>),
    /// A file with owner and PAX xattrs.
    FileX(
        &'static str,
        u32,
        (u64, u64),
        Vec<(&'static str, Vec<u8>)>,
        Vec<u8>,
    ),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Fifo(&'static str),
    Char(&'static str, u32, u32),
    /// A raw name (no checks), for hostile layers.
    Raw(Vec<u8>, tar::EntryType, Vec<u8>, Option<Vec<u8>>),
    /// A regular file whose PAX header declares `size`.
    PaxSize(&'static str, u64),
}

pub const MTIME: u64 = 1_600_000_000;

pub fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, m, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data.as_slice()).unwrap();
            }
            E::FileX(p, m, (uid, gid), xattrs, data) => {
                let pax: Vec<(String, Vec<u8>)> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
                    .collect();
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data.as_slice()).unwrap();
            }
            E::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hardlink(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o640);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Char(p, ma, mi) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_size(0);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Raw(name, et, data, link) => {
                // Written by hand: the builder refuses such names.
                let mut h = tar::Header::new_old();
                h.set_mtime(MTIME);
                h.set_mode(0o644);
                h.set_entry_type(*et);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(data.len() as u64);
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                if let Some(l) = link {
                    h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
                }
                h.set_cksum();
                b.append(&h, data.as_slice()).unwrap();
            }
            E::PaxSize(p, size) => {
                let s = size.to_string();
                b.append_pax_extensions([("size", s.as_bytes())]).unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Incompressible bytes (for streams that must be long on the wire).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An OCI layout under construction.
pub struct Layout {
    pub dir: PathBuf,
    manifests: Vec<Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        }
    }

    pub fn blob(&self, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        fs::write(self.dir.join("blobs/sha256").join(d.hex()), data).unwrap();
        d
    }

    /// Adds an image of `layers` (uncompressed tars; gzipped when `gz`).
    /// Returns (manifest descriptor, config digest).
    pub fn image(
        &mut self,
        layers: &[Vec<u8>],
        gz: bool,
        arch: &str,
        config: Value,
    ) -> (Value, Digest) {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for l in layers {
            diff_ids.push(Digest::of(l).to_string());
            let (data, mt) = if gz {
                (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (l.clone(), "application/vnd.oci.image.layer.v1.tar")
            };
            let d = self.blob(&data);
            descs.push(json!({ "mediaType": mt, "digest": d, "size": data.len() }));
        }
        // One history entry per layer, as real images have (buildah
        // refuses a base whose history and layers disagree).
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({"created": "2024-01-02T03:04:05Z", "created_by": format!("layer {i}")}))
            .collect();
        let cfg = json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": arch,
            "os": "linux",
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let cd = self.blob(&cfg);
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len() },
            "layers": descs,
        });
        let m = serde_json::to_vec(&m).unwrap();
        let md = self.blob(&m);
        let desc = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": m.len(),
            "platform": { "os": "linux", "architecture": arch },
        });
        (desc, cd)
    }

    /// Names a single manifest in index.json.
    pub fn tag(&mut self, desc: Value, tag: &str) {
        let mut d = desc;
        d["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        self.manifests.push(d);
        self.write_index();
    }

    /// Names an index of several manifests.
    pub fn tag_index(&mut self, descs: Vec<Value>, tag: &str) {
        let idx = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs });
        let idx = serde_json::to_vec(&idx).unwrap();
        let d = self.blob(&idx);
        self.manifests.push(json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": idx.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }));
        self.write_index();
    }

    fn write_index(&self) {
        let idx = json!({ "schemaVersion": 2, "manifests": self.manifests });
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }
}

/// A one-off image pushed to `reg` as `repo:tag`; returns its config digest.
pub fn push_image(
    sb: &Sandbox,
    reg: &Registry,
    repo_tag: &str,
    layers: &[Vec<u8>],
    config: Value,
) -> Digest {
    let dir = sb
        .path()
        .join(format!("layout-{}", repo_tag.replace(['/', ':'], "_")));
    let mut l = Layout::new(&dir);
    let (desc, cd) = l.image(layers, true, "amd64", config);
    l.tag(desc, "t");
    reg.push_layout(&dir, "t", repo_tag, "oci", false);
    cd
}

// ---------------------------------------------------------------- proxy

/// A TCP proxy in front of the registry that logs each request line (with
/// its Range header) and counts blob body bytes; it can cut a blob
/// response after some bytes and then refuse connections.
pub struct Proxy {
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
    pub blob_bytes: Arc<AtomicU64>,
    pub cut_after: Arc<Mutex<Option<u64>>>,
    pub refuse: Arc<AtomicBool>,
    /// What is done to one blob's responses.
    pub fault: Arc<Mutex<Option<Fault>>>,
    /// Token authentication in front of the registry, when set.
    pub gate: Arc<Mutex<Option<Gate>>>,
    stop: Arc<AtomicBool>,
}

/// Docker's token authentication, as a registry with a token server does
/// it: a request without `Bearer <access>` gets a 401 naming the realm
/// (this proxy's /token), which trades `identity` (an OAuth2 refresh
/// token, grant_type=refresh_token) for `access`.
#[derive(Clone)]
pub struct Gate {
    pub access: String,
    pub identity: String,
}

/// A misbehaviour of the registry, for the responses to GETs of the blob
/// whose digest is `digest`.
#[derive(Clone)]
pub struct Fault {
    pub digest: String,
    pub kind: FaultKind,
}

#[derive(Clone)]
pub enum FaultKind {
    /// Each response sends `after` body bytes, then nothing more, with the
    /// connection open, until the proxy goes.
    Stall { after: u64 },
    /// A whole-blob response gets these bytes appended, its
    /// Content-Length raised to match.
    Append(Vec<u8>),
    /// A whole-blob response has the byte at this offset inverted.
    Flip(u64),
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let p = Proxy {
            port,
            log: Default::default(),
            blob_bytes: Default::default(),
            cut_after: Default::default(),
            refuse: Default::default(),
            fault: Default::default(),
            gate: Default::default(),
            stop: Default::default(),
        };
        let shared = Shared {
            upstream,
            port,
            log: p.log.clone(),
            bytes: p.blob_bytes.clone(),
            cut: p.cut_after.clone(),
            refuse: p.refuse.clone(),
            fault: p.fault.clone(),
            gate: p.gate.clone(),
            stop: p.stop.clone(),
        };
        std::thread::spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        if shared.refuse.load(Ordering::Relaxed) {
                            drop(c);
                            continue;
                        }
                        let shared = shared.clone();
                        std::thread::spawn(move || serve(c, shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        p
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One client connection, one request at a time (HTTP/1.1 keep-alive):
/// forwards the request, then the response, counting and maybe cutting a
/// blob body.
/// After a cut, every new connection is refused until the test says.
/// What every connection of a proxy shares with it.
#[derive(Clone)]
struct Shared {
    upstream: u16,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    bytes: Arc<AtomicU64>,
    cut: Arc<Mutex<Option<u64>>>,
    refuse: Arc<AtomicBool>,
    fault: Arc<Mutex<Option<Fault>>>,
    gate: Arc<Mutex<Option<Gate>>>,
    stop: Arc<AtomicBool>,
}

fn serve(mut c: TcpStream, sh: Shared) {
    let Shared {
        upstream,
        port,
        log,
        bytes,
        cut,
        refuse,
        fault,
        gate,
        stop,
    } = sh;
    let Ok(mut u) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    // A TLS hello gets what Go's HTTP server answers: a plain 400.
    let mut first = [0u8; 1];
    if c.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == 0x16 {
        let _ = c.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        );
        return;
    }
    loop {
        let Some((head, body)) = read_message(&mut c, true) else {
            return;
        };
        // After a cut, connections opened before it fail too: the client
        // must not finish the pull by retrying on a kept-alive one.
        if refuse.load(Ordering::Relaxed) {
            return;
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let line = text.lines().next().unwrap_or("").to_string();
        let range = header_of(&text, "range")
            .map(|r| format!(" range={r}"))
            .unwrap_or_default();
        log.lock().unwrap().push(format!("{line}{range}"));
        let g = gate.lock().unwrap().clone();
        if let Some(answer) = g.and_then(|g| gatekeep(&g, port, &line, &text, &body)) {
            if c.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let is_blob_get = line.starts_with("GET ") && line.contains("/blobs/sha256:");
        if u.write_all(&head).and_then(|_| u.write_all(&body)).is_err() {
            return;
        }
        // Response head.
        let Some((rhead, _)) = read_message(&mut u, false) else {
            return;
        };
        let rtext = String::from_utf8_lossy(&rhead).into_owned();
        let len: u64 = header_of(&rtext, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let fault = fault
            .lock()
            .unwrap()
            .clone()
            .filter(|f| is_blob_get && line.contains(&f.digest))
            .map(|f| f.kind);
        if let Some(kind) = fault {
            faulty_body(&mut c, &mut u, &rtext, len, kind, &stop);
            return;
        }
        if c.write_all(&rhead).is_err() {
            return;
        }
        let no_body = line.starts_with("HEAD ")
            || rtext.starts_with("HTTP/1.1 204")
            || rtext.starts_with("HTTP/1.1 304");
        if no_body {
            continue;
        }
        let mut left = len;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = match u.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut n = n;
            if is_blob_get {
                let mut g = cut.lock().unwrap();
                if let Some(limit) = *g {
                    let sent = bytes.load(Ordering::Relaxed);
                    if sent + n as u64 >= limit {
                        n = (limit - sent.min(limit)) as usize;
                        let _ = c.write_all(&buf[..n]);
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                        *g = None;
                        refuse.store(true, Ordering::Relaxed);
                        let _ = c.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            if c.write_all(&buf[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    }
}

/// The gate's answer to a request it does not let through: the token
/// endpoint's, or a 401 with the challenge.
fn gatekeep(g: &Gate, port: u16, line: &str, head: &str, body: &[u8]) -> Option<String> {
    let reply = |status: &str, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    if line.starts_with("POST /token ") {
        let form = String::from_utf8_lossy(body);
        let field = |k: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
        };
        let ok = field("grant_type").as_deref() == Some("refresh_token")
            && field("refresh_token").as_deref() == Some(g.identity.as_str());
        return Some(if ok {
            reply(
                "200 OK",
                "",
                &format!("{{\"access_token\":\"{}\"}}", g.access),
            )
        } else {
            reply("401 Unauthorized", "", "{}")
        });
    }
    if header_of(head, "authorization").as_deref() == Some(&format!("Bearer {}", g.access)) {
        return None;
    }
    Some(reply(
        "401 Unauthorized",
        &format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"gate\"\r\n"
        ),
        "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
    ))
}

/// Forwards one blob response with `kind` done to it; the connection is
/// closed after it.
fn faulty_body(
    c: &mut TcpStream,
    u: &mut TcpStream,
    head: &str,
    len: u64,
    kind: FaultKind,
    stop: &AtomicBool,
) {
    let whole = head.starts_with("HTTP/1.1 200");
    let mut body = vec![0u8; len as usize];
    if u.read_exact(&mut body).is_err() {
        return;
    }
    let mut head = head.to_string();
    match kind {
        FaultKind::Stall { after } => {
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&body[..(after as usize).min(body.len())]);
            let _ = c.flush();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        FaultKind::Append(extra) if whole => {
            body.extend_from_slice(&extra);
            head = set_header(&head, "content-length", &body.len().to_string());
        }
        FaultKind::Flip(at) if whole && (at as usize) < body.len() => body[at as usize] ^= 0xff,
        _ => {}
    }
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(&body);
}

/// `head` (ending in CRLFCRLF) with header `name` set to `value`.
fn set_header(head: &str, name: &str, value: &str) -> String {
    let mut out = String::new();
    for l in head.trim_end_matches("\r\n").split("\r\n") {
        match l.split_once(':') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case(name) => {
                out.push_str(&format!("{k}: {value}\r\n"))
            }
            _ => out.push_str(&format!("{l}\r\n")),
        }
    }
    out.push_str("\r\n");
    out
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Reads a head (to CRLFCRLF); for requests also a Content-Length body.
fn read_message(s: &mut TcpStream, with_body: bool) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    let mut body = Vec::new();
    if with_body {
        let text = String::from_utf8_lossy(&head).into_owned();
        let len: usize = header_of(&text, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        body.resize(len, 0);
        s.read_exact(&mut body).ok()?;
    }
    Some((head, body))
}

/// Files under a layer of the store, by chain ID order: the dirs in layers/.
pub fn layer_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join("layers"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The unpacked dir of the layer that holds `rel`.
pub fn find_in_layers(root: &Path, rel: &str) -> Option<PathBuf> {
    layer_dirs(root)
        .into_iter()
        .map(|d| d.join("diff").join(rel))
        .find(|p| p.symlink_metadata().is_ok())
}

pub fn inspect(sb: &Sandbox, image: &str) -> Value {
    let v: Value = serde_json::from_str(&sb.ok(&["image", "inspect", image])).unwrap();
    v[0].clone()
}

pub fn image_list(sb: &Sandbox) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(&sb.ok(&["images", "--format", "json"])).unwrap()
}

pub fn count<K: std::hash::Hash + Eq>(items: impl IntoIterator<Item = K>) -> HashMap<K, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------- fixtures

/// A file or directory under tests/image/fixtures (see fixtures/make.py).
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/image/fixtures")
        .join(rel)
}

/// Copies a fixture directory (or file) into `dest`, so a test may change
/// its copy.
pub fn copy_fixture(rel: &str, dest: &Path) {
    let src = fixture(rel);
    let out = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(dest)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp {}: {out:?}", src.display());
}

impl Sandbox {
    /// Runs berth, killing it if it has not finished within `limit`: a
    /// hang is a failure with its own message, not a stuck suite. Returns
    /// the output and how long it took.
    pub fn berth_within(&self, args: &[&str], limit: Duration) -> (Output, Duration) {
        let mut c = self.cmd();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        run_within(c, limit, &format!("berth {args:?}"))
    }

    /// `berth_within`, expecting berth's failure (125); returns stderr.
    pub fn fails_within(&self, args: &[&str], limit: Duration) -> String {
        let (out, _) = self.berth_within(args, limit);
        assert_eq!(
            out.status.code(),
            Some(125),
            "berth {args:?} should fail with 125; stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Every file and directory under the store's blobs/, ingest/, tmp/
    /// and layers/: what a failed command must not have added.
    pub fn store_contents(&self) -> Vec<String> {
        let mut v = Vec::new();
        for d in ["blobs/sha256", "ingest", "tmp", "layers"] {
            if let Ok(rd) = fs::read_dir(self.root().join(d)) {
                for e in rd.flatten() {
                    v.push(format!("{d}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        v.sort();
        v
    }
}

/// Runs `c` (with piped output) and kills it after `limit`.
pub fn run_within(mut c: Command, limit: Duration, what: &str) -> (Output, Duration) {
    let start = Instant::now();
    let child = c.spawn().expect("spawn");
    let out = wait_within(child, start, limit, what);
    (out, start.elapsed())
}

/// Waits for `child` (piped output) until `start + limit`, then kills it
/// and panics.
fn wait_within(mut child: Child, start: Instant, limit: Duration, what: &str) -> Output {
    // Drain the pipes on threads, so a chatty child cannot block on them.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs the shell command `line` on a terminal (script(1)), typing `keys`
/// after `delay` (by when the program reads its terminal); its input is
/// kept open until it is done, since an early EOF could end the session
/// first. Returns what the terminal showed and the exit status; a run
/// longer than 10 s is killed and fails the test.
pub fn on_a_terminal(line: &str, keys: &[u8], delay: Duration) -> Output {
    let start = Instant::now();
    let mut child = Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(delay);
    stdin.write_all(keys).unwrap();
    stdin.flush().unwrap();
    let out = wait_within(child, start, Duration::from_secs(10), line);
    drop(stdin);
    out
}

// ---------------------------------------------------------------- raw pushes

/// One HTTP/1.1 request to 127.0.0.1:`port` on its own connection;
/// returns the status, the head and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, resp[split + 4..].to_vec())
}

impl Registry {
    /// Uploads a blob with the distribution API (POST, then PUT with its
    /// digest): for content skopeo would be slow or unwilling to push.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let (status, head, _) = http(
            self.port,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        );
        assert_eq!(status, 202, "{head}");
        let loc = header_of(&head, "location").expect("upload location");
        let path = loc
            .split_once("://")
            .map_or(loc.as_str(), |(_, rest)| &rest[rest.find('/').unwrap()..])
            .to_string();
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, head, _) = http(
            self.port,
            "PUT",
            &format!("{path}{sep}digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(status, 201, "{head}");
        d
    }

    /// Puts a manifest under `tag`.
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) {
        let (status, head, text) = http(
            self.port,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", media_type)],
            body,
        );
        assert_eq!(status, 201, "{head}\n{}", String::from_utf8_lossy(&text));
    }

    /// Pushes every blob of an OCI layout fixture and its (single) image
    /// manifest as `repo:tag`, each blob once.
    pub fn put_layout(&self, layout: &Path, repo: &str, tag: &str) {
        let index: Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let desc = &index["manifests"][0];
        for e in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            self.put_blob(repo, &fs::read(e.unwrap().path()).unwrap());
        }
        let md = desc["digest"].as_str().unwrap();
        let body = fs::read(layout.join("blobs/sha256").join(&md[7..])).unwrap();
        self.put_manifest(repo, tag, desc["mediaType"].as_str().unwrap(), &body);
    }
}
