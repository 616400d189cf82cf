//! Several conductors on one database: the fencing number of node locks, hand-over routing.

use reqwest::Method;
use rivet_conductor::db::DbError;
use serde_json::json;

use crate::support::{TestConductor, call};

async fn node(c: &TestConductor, body: serde_json::Value) -> String {
    let (status, node) = call(Method::POST, c.url("/v1/nodes"), Some(body)).await;
    assert_eq!(status, 201, "{node}");
    node["uuid"].as_str().expect("uuid").to_owned()
}

#[tokio::test]
async fn a_write_with_a_stale_lock_number_is_refused() {
    let c = TestConductor::start().await;
    let uuid = node(&c, json!({"driver": "fake-hardware"})).await;
    let db = &c.running.conductor.db;
    // A conductor locks the node and reads it, then is paused past the dead timeout.
    let paused = db.reserve(&uuid, "paused").await.expect("db").expect("free");
    let stale = db.node(&uuid).await.expect("db").expect("node");
    assert_eq!(stale.lock_token, paused);
    // Its successor breaks the lock, takes its own and saves.
    assert!(db.break_lock(&uuid, "paused", "successor").await.expect("db"));
    assert!(
        !db.break_lock(&uuid, "paused", "successor").await.expect("db"),
        "broken once"
    );
    let successor = db.reserve(&uuid, "successor").await.expect("db").expect("free");
    assert!(successor > paused + 1, "the break itself moved the number on");
    let mut fresh = db.node(&uuid).await.expect("db").expect("node");
    fresh.last_error = Some("the successor's".into());
    db.update_node(&fresh).await.expect("the holder saves");
    // The paused conductor wakes: its save and its release change nothing.
    let mut late = stale.clone();
    late.last_error = Some("stale".into());
    let refused = db.update_node(&late).await;
    assert!(
        matches!(refused, Err(DbError::Fenced { token, .. }) if token == paused),
        "{refused:?}"
    );
    db.release(&uuid, "paused", paused).await.expect("db");
    let now = db.node(&uuid).await.expect("db").expect("node");
    assert_eq!(now.last_error.as_deref(), Some("the successor's"));
    assert_eq!(now.reservation.as_deref(), Some("successor"));
    // Through the API, a write that lost its lock is a 409 naming why.
    let mut api_late = now.clone();
    api_late.lock_token = paused;
    let err = c.running.conductor.save(&mut api_late).await.expect_err("fenced");
    assert!(err.to_string().contains("changed hands"), "{err}");
}

#[tokio::test]
async fn a_verb_for_a_group_without_a_live_conductor_has_no_valid_host() {
    let c = TestConductor::start().await;
    let uuid = node(&c, json!({"driver": "fake-hardware", "conductor_group": "rack-9"})).await;
    let (status, body) = call(
        Method::PUT,
        c.url(&format!("/v1/nodes/{uuid}/states/provision")),
        Some(json!({"target": "manage"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"No valid host was found. Reason: No conductor service registered which supports driver fake-hardware for conductor group \"rack-9\""#),
        "{body}"
    );
    // The node stays where it was.
    let (_, doc) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(doc["provision_state"], "enroll");
}
