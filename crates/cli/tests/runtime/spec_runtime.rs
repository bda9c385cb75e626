//! The runtime-spec's runtime.md (state, lifecycle, operations): the
//! MUST/SHOULD rules that the other files do not already cover (state
//! fields, created/running/stopped, a second start, delete of a running
//! container, kill of a stopped one: lifecycle.rs; hooks in order and
//! their failures: hooks.rs; failed creates leaving nothing: hostile.rs).

use serde_json::json;

use crate::lifecycle::wait_for;
use crate::support::*;

#[test]
fn config_changes_after_create_do_not_affect_the_container() {
    // Lifecycle step 2: "Any updates to config.json after this step MUST
    // NOT affect the container."
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "echo $GREETING > /tmp/out; hostname >> /tmp/out",
    ]);
    b.set("/process/env", json!(["GREETING=first"]));
    b.set("/hostname", json!("before"));
    b.save();
    let id = sb.id("frozen");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    b.set("/process/env", json!(["GREETING=second"]));
    b.set("/hostname", json!("after"));
    b.set("/process/args", json!(["false"]));
    b.save();
    sb.ok(&["start", &id]);
    wait_for(|| sb.state(&id)["status"] == "stopped");
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("tmp/out")).unwrap(),
        "first\nbefore\n"
    );
    sb.ok(&["delete", &id]);
}

#[test]
fn operations_on_missing_duplicate_and_stopped_containers_fail_without_effect() {
    let sb = Sandbox::new();
    let missing = sb.id("missing");
    // Query state, start, kill and delete of a container that does not
    // exist: each an error.
    for op in [
        vec!["state", missing.as_str()],
        vec!["start", missing.as_str()],
        vec!["kill", missing.as_str(), "KILL"],
        vec!["delete", missing.as_str()],
    ] {
        let out = sb.rt(&op);
        assert!(!out.status.success(), "{op:?} succeeded");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist"),
            "{op:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Create with an id in use: an error, and the first container is as
    // it was (same process, still created).
    let b = sb.bundle(&["sleep", "1000"]);
    b.save();
    let id = sb.id("dup");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    let st = sb.state(&id);
    assert_eq!(
        (st["status"].as_str(), st["pid"].as_i64()),
        (Some("created"), Some(pid))
    );
    // Kill: a created container may be signalled (it then stops).
    sb.ok(&["kill", &id, "KILL"]);
    wait_for(|| sb.state(&id)["status"] == "stopped");
    // Start and kill of a stopped container: errors, and it stays stopped.
    for op in [
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "TERM"],
    ] {
        let out = sb.rt(&op);
        assert!(!out.status.success(), "{op:?} succeeded");
        assert_eq!(sb.state(&id)["status"], "stopped", "{op:?}");
    }
    sb.ok(&["delete", &id]);
    assert_gone(&sb, &id);
    // Once deleted, the id may be used again.
    sb.ok(&["create", "--bundle", b.path(), &id]);
    sb.ok(&["delete", "--force", &id]);
}

#[test]
fn a_failing_start_container_hook_fails_start_and_stops_the_container() {
    // Lifecycle step 7: if a startContainer hook fails, the runtime MUST
    // generate an error, stop the container and go on with delete.
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["touch", "/tmp/ran"]);
    b.set(
        "/hooks",
        json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}),
    );
    b.save();
    let id = sb.id("starthook");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let out = sb.rt(&["start", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "start succeeded");
    assert!(err.contains("startContainer"), "{err}");
    wait_for(|| sb.state(&id)["status"] == "stopped");
    assert!(!b.rootfs().join("tmp/ran").exists(), "the program ran");
    sb.ok(&["delete", &id]);
    assert_gone(&sb, &id);
}
