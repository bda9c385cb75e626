//! Healthchecks run by each container's monitor (no daemon, no systemd
//! timer): the state seen by ps, inspect and events, `healthcheck run`,
//! the image's HEALTHCHECK and the flags over it.

use serde_json::{Value, json};

use crate::env::*;
use crate::support::Layout;

fn health(env: &Env, id: &str) -> Value {
    env.inspect(id)["State"]["Health"].clone()
}

fn status(env: &Env, id: &str) -> String {
    health(env, id)["Status"].as_str().unwrap_or("").to_string()
}

#[test]
fn the_monitor_checks_health_and_every_view_shows_it() {
    let env = Env::new();
    let id = env.run_d(
        &[
            "--health-cmd",
            "echo checked; test -f /tmp/ok",
            "--health-interval",
            "150ms",
            "--health-retries",
            "2",
        ],
        &["sleep", "1000"],
    );
    assert_eq!(status(&env, &id), "starting");
    wait_for("unhealthy after two failures", || {
        status(&env, &id) == "unhealthy"
    });
    let h = health(&env, &id);
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 1, "{h}");
    assert_eq!(h["Log"][0]["Output"], "checked\n", "{h}");
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("(unhealthy)"), "{ps}");
    let (out, _) = env.code(1, &["healthcheck", "run", &id]);
    assert!(out.ends_with("unhealthy\n"), "{out}");

    env.ok(&["exec", &id, "touch", "/tmp/ok"]);
    wait_for("healthy again", || status(&env, &id) == "healthy");
    assert_eq!(health(&env, &id)["FailingStreak"], 0);
    assert!(env.ok(&["ps"]).contains("(healthy)"));
    let out = env.ok(&["healthcheck", "run", &id]);
    assert!(out.ends_with("healthy\n"), "{out}");
    let events = env.ok(&[
        "events",
        "--since",
        "1m",
        "--until",
        "0s",
        "--format",
        "json",
        "--filter",
        "event=health_status",
    ]);
    let seen: Vec<String> = events
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["Actor"]["Attributes"]["healthStatus"]
                .as_str()
                .or_else(|| v["actor"]["attributes"]["healthStatus"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(seen, ["unhealthy", "healthy"], "{events}");

    // A check that runs past its timeout fails (exit code -1) and is
    // killed.
    let slow = env.run_d(
        &[
            "--health-cmd",
            "sleep 7",
            "--health-timeout",
            "200ms",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
        ],
        &["sleep", "1000"],
    );
    wait_for("unhealthy by timeout", || {
        status(&env, &slow) == "unhealthy"
    });
    assert_eq!(health(&env, &slow)["Log"][0]["ExitCode"], -1);
    // An unknown container, and one without a check.
    let (_, err) = env.code(125, &["healthcheck", "run", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    let (_, err) = env.code(
        125,
        &["healthcheck", "run", &env.run_d(&[], &["sleep", "1000"])],
    );
    assert!(err.contains("no healthcheck"), "{err}");
    for c in env.ids() {
        env.ok(&["rm", "-f", &c]);
    }
}

#[test]
fn the_images_healthcheck_runs_unless_the_flags_say_otherwise() {
    let env = Env::new();
    let dir = env.sb.path().join("layout-hc");
    let mut l = Layout::new(&dir);
    let (desc, _) = l.image(
        &[busybox_layer()],
        true,
        "amd64",
        json!({"Cmd": ["sleep", "1000"], "Env": ["PATH=/bin"],
               "Healthcheck": {"Test": ["CMD", "true"], "Interval": 100_000_000u64}}),
    );
    l.tag(desc, "latest");
    env.reg
        .push_layout(&dir, "latest", "hc:latest", "oci", false);
    let image = format!("{}/hc:latest", env.reg.host());
    env.ok(&["pull", "-q", "--tls-verify=false", &image]);

    let id = env.ok(&["run", "-d", &image]).trim().to_string();
    wait_for("the image's check passing", || {
        status(&env, &id) == "healthy"
    });
    let off = env
        .ok(&["run", "-d", "--no-healthcheck", &image])
        .trim()
        .to_string();
    let over = env
        .ok(&[
            "run",
            "-d",
            "--health-cmd",
            "exit 3",
            "--health-retries",
            "1",
            &image,
        ])
        .trim()
        .to_string();
    wait_for("the flags' check failing", || {
        status(&env, &over) == "unhealthy"
    });
    assert_eq!(health(&env, &off), Value::Null);
    for c in [&id, &off, &over] {
        env.ok(&["rm", "-f", c]);
    }
}
