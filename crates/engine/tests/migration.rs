//! A database written by the berth before records had a schema version
//! (fixtures/engine-v1.db: made by that berth with `create --name web -e
//! A=1 -l k=v -p 127.0.0.1:8080:80`, `run --name done ... sh -c 'exit 3'`,
//! `pod create --name p1`, `volume create vol1`, `network create net1`)
//! opens with every record intact, and keeps working.

use berth_engine::db::{Db, Found, SCHEMA_VERSION};
use berth_engine::model::Status;

#[test]
fn a_version_1_database_is_migrated_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/engine-v1.db"),
        &path,
    )
    .unwrap();
    let (db, found) = Db::open(&path).unwrap();
    assert_eq!(found, Found::Existing);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);

    let web = db.find_container("web").unwrap();
    assert_eq!(web.config.env, ["A=1"]);
    assert_eq!(web.config.labels, [("k".to_string(), "v".to_string())]);
    assert_eq!(web.config.ports.len(), 1);
    assert_eq!(web.config.ports[0].host_port, 8080);
    assert_eq!(web.command, ["sleep", "100"]);
    assert_eq!(web.state.status, Status::Created);
    let done = db.find_container("done").unwrap();
    assert_eq!(done.state.status, Status::Exited);
    assert_eq!(done.state.exit_code, Some(3));
    assert_eq!(db.containers().unwrap().len(), 2);
    assert_eq!(db.pods().unwrap()[0].name, "p1");
    assert_eq!(db.volumes().unwrap()[0].name, "vol1");
    let nets: Vec<serde_json::Value> = db.networks().unwrap();
    assert_eq!(nets[0]["name"], "net1");

    // Migrated records take state changes and renames as new ones do.
    let mut web = web;
    web.state.exit_code = Some(0);
    db.update_container(&mut web).unwrap();
    db.rename_container(&mut web, "www").unwrap();
    let mut stale = db.find_container("www").unwrap();
    stale.version -= 1;
    assert!(
        db.update_container(&mut stale).is_err(),
        "an older read loses"
    );
    drop(db);
    // And open again without migrating twice.
    let (db, found) = Db::open(&path).unwrap();
    assert_eq!(found, Found::Existing);
    assert_eq!(db.find_container("www").unwrap().state.exit_code, Some(0));
}
