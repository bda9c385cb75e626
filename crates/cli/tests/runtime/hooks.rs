use serde_json::json;

use crate::support::*;

/// A hook script in the sandbox that appends "<name> <status> <pid>" and
/// its namespace to a log, from the state JSON on stdin.
fn hook(sb: &Sandbox, name: &str, log: &std::path::Path) -> serde_json::Value {
    let script = sb.dir.path().join(format!("hook-{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nstate=$(cat)\nstatus=$(echo \"$state\" | jq -r .status)\nid=$(echo \"$state\" | jq -r .id)\n\
             echo \"{name} $status $id $(readlink /proc/self/ns/mnt) $1\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    json!({"path": script, "args": ["hook", format!("arg-{name}")], "env": ["PATH=/usr/bin:/bin"]})
}

#[test]
fn all_six_hooks_run_in_order_with_the_state() {
    require!(have("jq"), "jq is not installed");
    let sb = Sandbox::new();
    let log = sb.dir.path().join("hooks.log");
    let mut b = sb.bundle(&["true"]);
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        b.set(&format!("/hooks/{kind}"), json!([hook(&sb, kind, &log)]));
    }
    // startContainer runs inside the container: give it the host's tools.
    b.push("/mounts", json!({"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}));
    b.push("/mounts", json!({"destination": "/lib", "type": "bind", "source": "/lib", "options": ["rbind", "ro"]}));
    b.push("/mounts", json!({"destination": "/lib64", "type": "bind", "source": "/lib64", "options": ["rbind", "ro"]}));
    b.push("/mounts", json!({"destination": sb.dir.path(), "type": "bind", "source": sb.dir.path(), "options": ["rbind"]}));
    let id = sb.id("hooks");
    let (code, _, err) = sb.run(&b, &id);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    assert_eq!(
        kinds,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt = host_mnt.to_str().unwrap();
    for l in &lines {
        assert_eq!(l[2], id, "{l:?}");
        assert_eq!(l[4], format!("arg-{}", l[0]), "hook args: {l:?}");
        // Runtime-namespace hooks see the host's mounts; the others the
        // container's.
        let in_host = matches!(
            l[0],
            "prestart" | "createRuntime" | "poststart" | "poststop"
        );
        assert_eq!(l[3] == host_mnt, in_host, "{l:?}");
    }
    assert_eq!(lines[0][1], "creating");
    assert_eq!(lines[4][1], "running");
    assert_eq!(lines[5][1], "stopped");
}

#[test]
fn a_failing_create_hook_fails_create_and_leaves_nothing() {
    let sb = Sandbox::new();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let mut b = sb.bundle(&["true"]);
        b.set(
            &format!("/hooks/{kind}"),
            json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo hook says no >&2; exit 7"]}]),
        );
        b.save();
        let id = sb.id("hookfail");
        let out = sb.rt(&["create", "--bundle", b.path(), &id]);
        assert!(!out.status.success(), "{kind}: create succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(kind) && err.contains("hook says no"),
            "{kind}: {err}"
        );
        assert_gone(&sb, &id);
    }
}

#[test]
fn a_hook_that_outlives_its_timeout_is_killed() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.set(
        "/hooks/createRuntime",
        json!([{"path": "/bin/sleep", "args": ["sleep", "37.123"], "timeout": 1}]),
    );
    b.save();
    let id = sb.id("hooktimeout");
    let t = std::time::Instant::now();
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    assert_gone(&sb, &id);
    assert!(
        processes_with("37.123").is_empty(),
        "the timed-out hook still runs"
    );
}

#[test]
fn a_failing_poststart_hook_only_warns() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.set("/hooks/poststart", json!([{"path": "/bin/false"}]));
    let id = sb.id("poststart");
    let (code, _, err) = sb.run(&b, &id);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("poststart"), "a warning names the hook: {err}");
}

#[test]
fn after_a_failing_poststart_or_poststop_hook_the_others_still_run() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    let mark = |name: &str| {
        let f = sb.dir.path().join(name);
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", f.display())]})
    };
    b.set(
        "/hooks/poststart",
        json!([{"path": "/bin/false"}, mark("after-poststart")]),
    );
    b.set(
        "/hooks/poststop",
        json!([{"path": "/bin/false"}, mark("after-poststop")]),
    );
    let id = sb.id("hooksgoon");
    let (code, _, err) = sb.run(&b, &id);
    assert_eq!(code, 0, "{err}");
    assert!(sb.dir.path().join("after-poststart").exists(), "{err}");
    assert!(sb.dir.path().join("after-poststop").exists(), "{err}");
}

#[test]
fn a_hook_that_never_reads_a_large_state_still_times_out() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    // A state far larger than a pipe holds, for a hook that never reads it.
    b.set("/annotations", json!({"big": "x".repeat(1 << 20)}));
    b.set(
        "/hooks/createRuntime",
        json!([{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]),
    );
    b.save();
    let id = sb.id("bigstate");
    let t = std::time::Instant::now();
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timed out"), "{err}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert_gone(&sb, &id);
}
