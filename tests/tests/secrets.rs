//! Secrets reach no log line and no API document (issue 15). A clean, a deploy with a config
//! drive and a failed clean run with known secret values: BMC passwords, agent tokens (read
//! from the database while the flows run), a temporary image URL's signature and basic-auth
//! password, and config-drive contents. Every line the process logs, at every level of Rivet's
//! crates, is kept; every API document about the nodes is read; none may hold a secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use rivet_tests::system::System;
use serde_json::{Value, json};

const BMC_PASSWORD: &str = "bmc-pw-7e2c19aa";
const IMAGE_SIGNATURE: &str = "sig-93bd44c1";
const IMAGE_PASSWORD: &str = "img-pw-51e0d7";
const CONFIG_SECRET: &str = "cd-secret-5a61f0";

/// Every log line, kept for the search at the end.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Agent tokens as the conductor stores them, collected while the flows run.
async fn tokens_of(system: &System, uuids: &[String], into: &mut Vec<String>) {
    for uuid in uuids {
        if let Ok(Some(node)) = system.conductor.conductor.db.node(uuid).await
            && let Some(token) = node
                .driver_internal_info
                .get("agent_secret_token")
                .and_then(Value::as_str)
            && token != "******"
            && !into.iter().any(|t| t == token)
        {
            into.push(token.to_owned());
        }
    }
}

/// Wait for `want` as `System::wait_state` does, collecting tokens meanwhile.
async fn wait_collecting(system: &System, uuid: &str, want: &str, all: &[String], tokens: &mut Vec<String>) -> Value {
    let deadline = tokio::time::Instant::now() + rivet_tests::system::PATIENCE;
    loop {
        tokens_of(system, all, tokens).await;
        let (_, node) = system.call(Method::GET, &format!("/v1/nodes/{uuid}"), None).await;
        if node["provision_state"] == want {
            return node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {uuid} never reached {want}: {node}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A node in `clean wait` whose agent (looked up here, so its token is known) heartbeats with a
/// callback URL that refuses connections: the conductor's failed calls carry the URL, whose
/// query once held the token. Returns the token.
async fn unreachable_agent(system: &System) -> String {
    const MAC: &str = "52:54:00:00:00:99";
    let (status, node) = system
        .call(
            Method::POST,
            "/v1/nodes",
            Some(
                json!({"name": "unreachable", "driver": "fake-hardware", "deploy_interface": "direct",
                "driver_info": {"ipmi_password": BMC_PASSWORD}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{node}");
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let (status, port) = system
        .call(
            Method::POST,
            "/v1/ports",
            Some(json!({"address": MAC, "node_uuid": uuid})),
        )
        .await;
    assert_eq!(status, 201, "{port}");
    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;
    system.provision(&uuid, json!({"target": "provide"})).await;
    system.wait_state(&uuid, "clean wait").await;
    let (status, found) = system
        .call(Method::GET, &format!("/v1/lookup?addresses={MAC}"), None)
        .await;
    assert_eq!(status, 200, "{found}");
    let token = found["config"]["agent_token"].as_str().expect("token").to_owned();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (status, body) = system
        .call(
            Method::POST,
            &format!("/v1/heartbeat/{uuid}"),
            Some(
                json!({"callback_url": format!("http://127.0.0.1:{refused}"), "agent_token": token,
                "agent_version": "13.0.0"}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Handled when the node's lock is free again and the heartbeat is recorded.
    let deadline = tokio::time::Instant::now() + rivet_tests::system::PATIENCE;
    loop {
        let (_, doc) = system.call(Method::GET, &format!("/v1/nodes/{uuid}"), None).await;
        if doc["reservation"].is_null() && !doc["driver_internal_info"]["agent_last_heartbeat"].is_null() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "heartbeat never handled: {doc}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_reach_no_log_line_and_no_api_document() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "rivet_agent=trace,rivet_conductor=trace,rivet_tests=trace,info",
        ))
        .with_ansi(false)
        .with_writer(logs.clone())
        .init();
    let system = System::start(|c| c.require_tls = false).await;
    let (good, _) = system.node(1).await;
    let (bad, bad_control) = system.node(2).await;
    let uuids = vec![good.clone(), bad.clone()];
    let image = format!(
        "http://glance:{IMAGE_PASSWORD}@127.0.0.1:9/v1/AUTH_x/images/disk.raw?temp_url_sig={IMAGE_SIGNATURE}&temp_url_expires=1"
    );
    for uuid in &uuids {
        let (status, doc) = system
            .call(
                Method::PATCH,
                &format!("/v1/nodes/{uuid}"),
                Some(json!([
                    {"op": "add", "path": "/driver_info/ipmi_password", "value": BMC_PASSWORD},
                    {"op": "add", "path": "/driver_info/redfish_password", "value": BMC_PASSWORD},
                    {"op": "add", "path": "/instance_info/image_url", "value": image},
                ])),
            )
            .await;
        assert_eq!(status, 200, "{doc}");
        system.provision(uuid, json!({"target": "manage"})).await;
    }
    *bad_control.fail_step.lock().expect("lock") = Some("erase_devices".into());
    let mut tokens = Vec::new();
    for uuid in &uuids {
        wait_collecting(&system, uuid, "manageable", &uuids, &mut tokens).await;
        system.provision(uuid, json!({"target": "provide"})).await;
    }
    wait_collecting(&system, &good, "available", &uuids, &mut tokens).await;
    let failed = wait_collecting(&system, &bad, "clean failed", &uuids, &mut tokens).await;
    assert!(failed["last_error"].is_string(), "the failure is reported: {failed}");
    let configdrive = json!({
        "meta_data": {"public_keys": {"0": format!("ssh-ed25519 {CONFIG_SECRET}")}},
        "user_data": format!("#cloud-config\npassword: {CONFIG_SECRET}\n"),
    });
    system
        .provision(&good, json!({"target": "active", "configdrive": configdrive}))
        .await;
    wait_collecting(&system, &good, "active", &uuids, &mut tokens).await;
    assert!(!tokens.is_empty(), "agent tokens were issued and seen in the database");
    tokens.push(unreachable_agent(&system).await);

    // Every API document about the nodes.
    let mut documents = Vec::new();
    for path in ["/v1/nodes/detail", "/v1/ports/detail"] {
        documents.push(system.call(Method::GET, path, None).await.1);
    }
    for uuid in &uuids {
        for sub in ["", "/states", "/history", "/ports", "/validate", "/inventory"] {
            documents.push(
                system
                    .call(Method::GET, &format!("/v1/nodes/{uuid}{sub}"), None)
                    .await
                    .1,
            );
        }
    }
    let documents: String = documents.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("lock")).into_owned();
    assert!(logs.contains("image"), "the logs were captured");
    let unreachable = logs
        .lines()
        .find(|l| l.contains("not reachable"))
        .expect("the unreachable agent's failed calls were logged (and are searched)");
    // Issue 15: client errors said "error sending request for url …" without the cause.
    assert!(
        unreachable.contains("Connection refused"),
        "the cause is said: {unreachable}"
    );
    let mut secrets: Vec<(&str, String)> = vec![
        ("BMC password", BMC_PASSWORD.into()),
        ("image URL signature", IMAGE_SIGNATURE.into()),
        ("image URL password", IMAGE_PASSWORD.into()),
        ("config-drive contents", CONFIG_SECRET.into()),
    ];
    secrets.extend(tokens.iter().map(|t| ("agent token", t.clone())));
    for (what, secret) in &secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("the {what} is in a log line: {line}");
        }
        if let Some(at) = documents.find(secret.as_str()) {
            let from = at.saturating_sub(200);
            panic!(
                "the {what} is in an API document: …{}…",
                &documents[from..(at + 100).min(documents.len())]
            );
        }
    }
}
