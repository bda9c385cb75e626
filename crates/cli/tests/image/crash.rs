//! Fault injection: `berth pull` killed with SIGKILL at random points of
//! a multi-layer pull, 50 times. Whatever each kill leaves (partial
//! downloads, temporary layer directories, files in tmp/, an image half
//! recorded), the next pull must finish and give a usable image, and
//! `image prune -a` must leave an empty store with nothing mounted.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const KILLS: usize = 50;

/// A xorshift generator, seeded from the clock; the seed is printed so a
/// failing sequence of delays can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn pulls_killed_at_random_points_leave_a_store_the_next_pull_and_prune_can_use() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    // Six layers of incompressible data, so each download takes a while
    // and kills land inside them.
    let layers: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let name: &'static str = Box::leak(format!("data{i}").into_boxed_str());
            layer_tar(&[
                E::Dir("d", 0o755),
                E::File(name, 0o644, noise(768 << 10, i + 1)),
            ])
        })
        .collect();
    push_image(&sb, &reg, "crash/multi:1", &layers, json!({"Cmd": ["sh"]}));
    let image = format!("{}/crash/multi:1", reg.host());
    let pull = ["pull", "-q", "--tls-verify=false", image.as_str()];

    // How long an undisturbed pull takes, so the kills spread over it.
    let start = Instant::now();
    sb.ok(&pull);
    let whole = start.elapsed();
    sb.ok(&["rmi", &image]);
    sb.ok(&["image", "prune", "-a", "-f"]);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("an undisturbed pull took {whole:?}; kill delays from seed {seed}");
    let mut rng = Rng(seed);
    let span = whole.as_micros() as u64 * 12 / 10 + 1;
    let begun = Instant::now();
    let mut finished = 0;
    for _ in 0..KILLS {
        let delay = Duration::from_micros(rng.next() % span);
        let mut child = sb
            .cmd()
            .args(pull)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            // Done before the kill: take the image away again (its data
            // stays only as far as gc keeps it), so the next pull has work.
            finished += 1;
            sb.ok(&["rmi", &image]);
        }
    }
    eprintln!(
        "{KILLS} kills in {:?}; {finished} pulls finished first",
        begun.elapsed()
    );

    sb.ok(&pull);
    let rec = inspect(&sb, &image);
    assert_eq!(rec["Layers"].as_array().map(Vec::len), Some(6), "{rec}");
    for i in 0..6 {
        let f = find_in_layers(&sb.root(), &format!("data{i}"))
            .unwrap_or_else(|| panic!("data{i} is in no layer"));
        assert_eq!(
            std::fs::read(f).unwrap(),
            noise(768 << 10, i as u64 + 1),
            "data{i} unpacked whole"
        );
    }
    // The layers mount: a bundle of the image is made and removed.
    let dir = sb.ok(&["bundle", "create", &image, "crashtest"]);
    assert!(
        std::path::Path::new(dir.trim())
            .join("config.json")
            .exists()
    );
    sb.ok(&["bundle", "rm", "crashtest"]);

    sb.ok(&["rmi", &image]);
    sb.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(sb.store_contents(), Vec::<String>::new(), "store not empty");
    let links: Vec<_> = std::fs::read_dir(sb.root().join("l")).unwrap().collect();
    assert!(links.is_empty(), "short links left: {links:?}");
    let containers: Vec<_> = std::fs::read_dir(sb.root().join("containers"))
        .unwrap()
        .collect();
    assert!(containers.is_empty(), "{containers:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(sb.path().to_str().unwrap()))
        .collect();
    assert!(ours.is_empty(), "mounts left: {ours:#?}");
}
