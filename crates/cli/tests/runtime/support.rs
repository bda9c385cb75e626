//! Test support: a sandbox per test (its own state root and bundles under a
//! temp dir), busybox bundles, and a runner for the berth-runtime binary.
//! Everything a test makes is removed when its sandbox drops, pass or fail.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// berth-runtime, a package of its own, built beside berth
/// (`cargo build --workspace --bins`, as scripts/test.sh does).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let p = Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("berth-runtime");
        assert!(
            p.exists(),
            "{}: build it with cargo build --workspace --bins",
            p.display()
        );
        p.to_str().expect("utf-8 path").to_string()
    })
}

/// Skips a test that needs a tool this machine lacks, saying so.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            eprintln!("SKIPPED: {}", $why);
            return;
        }
    };
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("state");
        Sandbox {
            dir,
            root,
            ids: Default::default(),
        }
    }

    /// A fresh container id, deleted (forcibly) when the sandbox drops.
    pub fn id(&self, name: &str) -> String {
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// A bundle with a busybox rootfs and the `spec` template, adjusted for
    /// tests: no terminal, `args` as given.
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        let dir = self
            .dir
            .path()
            .join(format!("bundle{}", SEQ.fetch_add(1, Ordering::Relaxed)));
        make_rootfs(&dir.join("rootfs"));
        let mut config = berth_template();
        config["process"]["terminal"] = json!(false);
        config["root"]["readonly"] = json!(false);

        config["process"]["args"] = json!(args);
        Bundle { dir, config }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(&self.root);
        c
    }

    /// Runs berth-runtime with `args`; stdin is /dev/null. Its output goes
    /// through files, not pipes: a container it leaves running keeps the
    /// runtime's stdio open, and reading a pipe to its end would hang.
    pub fn rt(&self, args: &[&str]) -> Output {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let (out_path, err_path) = (
            self.dir.path().join(format!("out{n}")),
            self.dir.path().join(format!("err{n}")),
        );
        let status = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .status()
            .expect("run berth-runtime");
        let out = Output {
            status,
            stdout: fs::read(&out_path).unwrap(),
            stderr: fs::read(&err_path).unwrap(),
        };
        let _ = fs::remove_file(out_path);
        let _ = fs::remove_file(err_path);
        out
    }

    /// Like `rt`, and fails the test if the command fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.rt(args);
        assert!(
            out.status.success(),
            "berth-runtime {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the bundle in the foreground; returns (exit code, stdout, stderr).
    pub fn run(&self, bundle: &Bundle, id: &str) -> (i32, String, String) {
        bundle.save();
        let out = self.rt(&["run", "--bundle", bundle.path(), id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the bundle and returns its stdout, failing the test on a
    /// non-zero exit.
    pub fn output(&self, bundle: &Bundle, name: &str) -> String {
        let id = self.id(name);
        let (code, out, err) = self.run(bundle, &id);
        assert_eq!(
            code, 0,
            "container exited {code}; stdout:\n{out}\nstderr:\n{err}"
        );
        out
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    /// Creates and starts a detached container.
    pub fn start(&self, bundle: &Bundle, id: &str) {
        bundle.save();
        self.ok(&["run", "--detach", "--bundle", bundle.path(), id]);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.rt(&["delete", "--force", id]);
        }
        umount_under(self.dir.path());
    }
}

pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn path(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Sets a value at a JSON pointer, creating objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        for p in pointer.trim_start_matches('/').split('/') {
            cur = match cur {
                Value::Array(a) => &mut a[p.parse::<usize>().expect("array index")],
                other => {
                    if !other.is_object() {
                        *other = json!({});
                    }
                    other
                        .as_object_mut()
                        .unwrap()
                        .entry(p)
                        .or_insert(Value::Null)
                }
            };
        }
        *cur = value;
        self
    }

    pub fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        let arr = self.config.pointer_mut(pointer).expect("array exists");
        arr.as_array_mut().expect("is an array").push(value);
        self
    }

    /// Joins an existing namespace (by path) instead of making one; adds
    /// the entry if the template had none of that type.
    pub fn join_ns(&mut self, typ: &str, path: &str) -> &mut Self {
        let list = self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        list.retain(|n| n["type"] != typ);
        list.push(json!({"type": typ, "path": path}));
        self
    }

    /// Grants a capability (bounding, effective and permitted sets).
    pub fn add_cap(&mut self, cap: &str) -> &mut Self {
        for set in ["bounding", "effective", "permitted"] {
            self.push(&format!("/process/capabilities/{set}"), json!(cap));
        }
        self
    }

    pub fn save(&self) {
        fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .expect("write config.json");
    }
}

/// The `spec` template of the binary under test.
pub fn berth_template() -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "spec failed");
    serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap()
}

/// A rootfs of Debian's static busybox: the binary, a link per applet,
/// /etc/passwd and /etc/group.
pub fn make_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    for applet in applets() {
        if applet != "busybox" {
            let _ = symlink("busybox", dir.join("bin").join(applet));
        }
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\ntester:x:1000:1000:t:/home/tester:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\ntester:x:1000:\n",
    )
    .unwrap();
}

fn applets() -> &'static [String] {
    static LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        let out = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    })
}

/// Unmounts everything mounted below `dir` (deepest first), so a failed
/// test cannot leave mounts behind.
pub fn umount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: c is a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Directories named `id` anywhere in the cgroup hierarchies.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, id: &str, found: &mut Vec<PathBuf>, depth: usize) {
        if depth > 6 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
                let p = e.path();
                if e.file_name().to_string_lossy() == id {
                    found.push(p.clone());
                }
                walk(&p, id, found, depth + 1);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), id, &mut found, 0);
    found
}

/// Pids of live processes whose command line mentions `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Creates a container from the bundle, expecting failure: asserts that
/// nothing is left of it and that the error is one line, and returns it.
pub fn create_fails(sb: &Sandbox, b: &Bundle, name: &str) -> String {
    b.save();
    let id = sb.id(name);
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success(), "create succeeded");
    assert_gone(sb, &id);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    err
}

/// Asserts that nothing of container `id` is left on the host.
pub fn assert_gone(sb: &Sandbox, id: &str) {
    assert!(!sb.root.join(id).exists(), "state dir of {id} remains");
    let dirs = cgroup_dirs(id);
    assert!(dirs.is_empty(), "cgroups of {id} remain: {dirs:?}");
}
