//! The ramdisk API under faults real networks produce: a heartbeat whose agent cannot be
//! reached yet (its network blinks as it comes up) is retried on the next heartbeat, and no
//! error text carries the agent's token.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestConductor, call, call_version, wait_unlocked, walk};

const MAC: &str = "52:54:00:7a:00:01";

/// A loopback port nothing listens on: connections to it are refused.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn node_in_clean_wait(c: &TestConductor) -> String {
    let (status, node) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(json!({"name": "blink", "driver": "fake-hardware", "deploy_interface": "direct"})),
    )
    .await;
    assert_eq!(status, 201, "{node}");
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let (status, port) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": MAC, "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 201, "{port}");
    walk(c, &uuid, &[("manage", "manageable"), ("provide", "clean wait")]).await;
    wait_unlocked(c, &uuid).await;
    uuid
}

/// Heartbeat as IPA does, then wait until the conductor has handled it (lock released).
async fn heartbeat(c: &TestConductor, uuid: &str, token: &str, callback: &str) -> Value {
    let body = json!({"callback_url": callback, "agent_token": token, "agent_version": "13.0.0"});
    heartbeat_with(c, uuid, body, "1.68").await
}

/// Send `body` as a heartbeat at `version`, then wait until the conductor has handled it.
async fn heartbeat_with(c: &TestConductor, uuid: &str, body: Value, version: &str) -> Value {
    let before = node(c, uuid).await["driver_internal_info"]["agent_last_heartbeat"].clone();
    let (status, body) = call_version(
        Method::POST,
        c.url(&format!("/v1/heartbeat/{uuid}")),
        Some(body),
        Some(version),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let doc = node(c, uuid).await;
        let seen = doc["driver_internal_info"]["agent_last_heartbeat"] != before;
        if seen && doc["reservation"].is_null() {
            return doc;
        }
        assert!(tokio::time::Instant::now() < deadline, "heartbeat never handled: {doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Look the node up by its MAC at `version` as an agent does: the token the answer issues.
async fn lookup_token(c: &TestConductor, version: &str) -> String {
    let (status, found) = call_version(
        Method::GET,
        c.url(&format!("/v1/lookup?addresses={MAC}")),
        None,
        Some(version),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    found["config"]["agent_token"]
        .as_str()
        .expect("token issued")
        .to_owned()
}

async fn node(c: &TestConductor, uuid: &str) -> Value {
    call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await.1
}

/// Issue 15: one valid heartbeat whose callback URL refused connections took the node to
/// `clean failed` within 3 s, though an unreachable agent is meant to be retried.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_not_reachable_yet_is_retried_on_its_next_heartbeat() {
    let c = TestConductor::start_with(|c| c.require_tls = false).await;
    let uuid = node_in_clean_wait(&c).await;
    let token = lookup_token(&c, "1.68").await;
    let callback = format!("http://127.0.0.1:{}", refused_port());
    for _ in 0..2 {
        let doc = heartbeat(&c, &uuid, &token, &callback).await;
        assert_eq!(doc["provision_state"], "clean wait", "{doc}");
        assert_eq!(doc["last_error"], Value::Null, "{doc}");
        assert!(
            !doc.to_string().contains(&token),
            "the token appears nowhere in the node: {doc}"
        );
    }
}

/// The lookup answer is built from `rivet_common::ramdisk::LookupResponse`, the type the agent
/// parses, and carries exactly the keys Ironic 39 sends (captured in the fixture).
#[tokio::test(flavor = "multi_thread")]
async fn the_lookup_answer_has_ironic_s_keys_and_parses_as_the_common_type() {
    let c = TestConductor::start_with(|c| c.require_tls = false).await;
    node_in_clean_wait(&c).await;
    let (status, found) = call_version(
        Method::GET,
        c.url(&format!("/v1/lookup?addresses={MAC}")),
        None,
        Some("1.62"),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/upstream/ironic/flow/conductor_lookup_200.json"
    ))
    .expect("fixture");
    let keys = |doc: &Value| -> Vec<String> {
        let mut keys: Vec<String> = doc.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    let upstream = &fixture["body"];
    assert_eq!(keys(&found), keys(upstream));
    assert_eq!(keys(&found["node"]), keys(&upstream["node"]));
    // One key of Rivet's own: the offer to take measured progress (IPA ignores it).
    let mut config = found["config"].clone();
    let offer = config
        .as_object_mut()
        .expect("config")
        .remove(rivet_common::ramdisk::STEP_PROGRESS_CONFIG_KEY);
    assert_eq!(offer, Some(json!(true)));
    assert_eq!(keys(&config), keys(&upstream["config"]));
    for key in ["metrics", "metrics_statsd", "agent_containers"] {
        assert_eq!(found["config"][key], upstream["config"][key], "{key}");
    }
    let parsed: rivet_common::ramdisk::LookupResponse = serde_json::from_value(found.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&parsed).expect("serialises"), found);
}

/// Issue 21: the measured progress rivet-agent sends lands in the node document with what needs
/// the conductor's clock (percent, ETA, since when), and goes when the agent stops sending it.
#[tokio::test(flavor = "multi_thread")]
async fn measured_progress_is_in_the_node_while_the_agent_reports_it() {
    let c = TestConductor::start_with(|c| c.require_tls = false).await;
    let uuid = node_in_clean_wait(&c).await;
    let token = lookup_token(&c, "1.72").await;
    let callback = format!("http://127.0.0.1:{}", refused_port());
    let message = "erasing /dev/vdb: pass 1/1 (zeros), 256 of 1024 MiB (25%), 64 MiB/s";
    let body = json!({
        "callback_url": callback, "agent_token": token, "agent_version": "0.1.0",
        "agent_status_message": message,
        "agent_step_progress": {"message": message, "done": 268435456u64, "total": 1073741824u64,
            "unit": "bytes", "rate": 67108864.0, "elapsed_seconds": 4.0},
    });
    let doc = heartbeat_with(&c, &uuid, body, "1.72").await;
    let progress = &doc["driver_internal_info"]["step_progress"];
    assert_eq!(progress["message"], message, "{doc}");
    assert_eq!(progress["percent"], 25.0, "{progress}");
    assert_eq!(progress["eta_seconds"], 12.0, "{progress}");
    assert_eq!(progress["unit"], "bytes", "{progress}");
    for key in ["since", "updated_at"] {
        let at = progress[key].as_str().expect("a time");
        assert!(at.ends_with("+00:00"), "{key}: {at}");
    }
    assert_eq!(doc["driver_internal_info"]["agent_status_message"], message);
    let body = json!({"callback_url": callback, "agent_token": token, "agent_version": "0.1.0"});
    let doc = heartbeat_with(&c, &uuid, body, "1.72").await;
    let dii = &doc["driver_internal_info"];
    assert!(
        dii.get("step_progress").is_none() && dii.get("agent_status_message").is_none(),
        "{dii}"
    );
}
