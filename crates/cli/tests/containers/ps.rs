//! `ps` beyond names and states: `--filter ancestor=` following images
//! built on an image, and `--size` / `{{.Size}}` with docker's sizes.

use serde_json::Value;

use crate::env::*;

fn names(env: &Env, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    let mut v: Vec<String> = env.ok(&args).lines().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn ancestor_follows_images_built_on_the_image() {
    let env = Env::new();
    env.run_d(&["--name", "base", "--network", "none"], &["sleep", "1000"]);
    env.run_d(
        &["--name", "maker", "--network", "none"],
        &["sh", "-c", "echo child > /child; sleep 1000"],
    );
    wait_for("maker's file", || {
        env.berth(&["exec", "maker", "cat", "/child"])
            .status
            .success()
    });
    // A child of busybox, and a grandchild of it.
    env.ok(&["commit", "maker", "localhost/child:1"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "kid",
        "--network",
        "none",
        "localhost/child:1",
        "sh",
        "-c",
        "echo g > /grand; sleep 1000",
    ]);
    wait_for("kid's file", || {
        env.berth(&["exec", "kid", "cat", "/grand"])
            .status
            .success()
    });
    env.ok(&["commit", "kid", "localhost/grandchild:1"]);
    env.ok(&[
        "create",
        "--name",
        "grandkid",
        "localhost/grandchild:1",
        "true",
    ]);

    let everyone = ["base", "grandkid", "kid", "maker"];
    // busybox, as the short name, its full reference or its ID: every
    // container of it or of an image built on it.
    assert_eq!(names(&env, &["ancestor=busybox"]), everyone);
    assert_eq!(names(&env, &[&format!("ancestor={}", env.image)]), everyone);
    let busybox_id = env.inspect("base")["Image"].as_str().unwrap().to_string();
    let hex = busybox_id.trim_start_matches("sha256:");
    assert_eq!(
        names(&env, &[&format!("ancestor={}", &hex[..12])]),
        everyone
    );
    // The child: its own container and its child's, not its parent's.
    assert_eq!(
        names(&env, &["ancestor=localhost/child:1"]),
        ["grandkid", "kid"]
    );
    assert_eq!(names(&env, &["ancestor=child:1"]), ["grandkid", "kid"]);
    assert_eq!(names(&env, &["ancestor=grandchild:1"]), ["grandkid"]);
    // A name without a tag is its :latest, which there is none of.
    assert!(names(&env, &["ancestor=grandchild"]).is_empty());
    // Alternatives, and with another key.
    assert_eq!(
        names(
            &env,
            &[
                "ancestor=grandchild:1",
                "ancestor=child:1",
                "status=created"
            ]
        ),
        ["grandkid"]
    );
    assert!(names(&env, &["ancestor=no-such-image"]).is_empty());
}

/// The number and unit of a docker size ("4.27MB" -> 4.27, "MB").
fn split_size(s: &str) -> (f64, String) {
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    (s[..at].parse().unwrap(), s[at..].to_string())
}

#[test]
fn size_shows_the_writable_layer_and_the_virtual_size() {
    let env = Env::new();
    let id = env.run_d(
        &["--name", "sized", "--network", "none"],
        &["sh", "-c", "printf 0123456789ab > /twelve; sleep 1000"],
    );
    wait_for("the 12 bytes", || {
        env.ok(&["exec", &id, "cat", "/twelve"]) == "0123456789ab"
    });
    let image: Value = serde_json::from_str(&env.ok(&["image", "inspect", &env.image])).unwrap();
    let image_size = image[0]["Size"].as_u64().unwrap();

    // The numbers: 12 bytes written, over the image's.
    let ps: Value = serde_json::from_str(&env.ok(&["ps", "-s", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["Size"]["rwSize"], 12, "{ps}");
    assert_eq!(ps[0]["Size"]["rootFsSize"], 12 + image_size, "{ps}");

    // As docker writes them, in the table's last column and in templates
    // (which measure when they read .Size, as docker's do).
    let table = env.ok(&["ps", "--size"]);
    let header = table.lines().next().unwrap();
    assert!(header.trim_end().ends_with("SIZE"), "{table}");
    let row = table.lines().nth(1).unwrap();
    let text = env.ok(&["ps", "--format", "{{.Size}}"]);
    let text = text.trim_end();
    assert!(row.ends_with(text), "{table}\n{text}");
    let virt = text
        .strip_prefix("12B (virtual ")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    let (n, unit) = split_size(virt);
    assert_eq!(unit, "MB", "{text}");
    assert!(
        (n - (12 + image_size) as f64 / 1e6).abs() < 0.006,
        "{text} for {image_size} bytes"
    );
    let (digits, _) = virt.split_at(virt.len() - 2);
    assert!(digits.replace('.', "").len() <= 3, "three digits: {text}");
    assert_eq!(
        env.ok(&["ps", "-s", "--format", "table {{.Names}}\\t{{.Size}}"])
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAMES", "SIZE"]
    );
    // Without -s the table has no SIZE column.
    assert!(!env.ok(&["ps"]).contains("SIZE"));

    // More written, more shown; system df counts the same bytes.
    env.ok(&["exec", &id, "sh", "-c", "head -c 2000 /dev/zero > /more"]);
    assert!(
        env.ok(&["ps", "--format", "{{.Size}}"])
            .starts_with("2.01kB (virtual "),
        "{}",
        env.ok(&["ps", "--format", "{{.Size}}"])
    );
    let df: Value = serde_json::from_str(&env.ok(&["system", "df", "--format", "json"])).unwrap();
    assert_eq!(df["Containers"]["Size"], 2012, "{df}");
}
