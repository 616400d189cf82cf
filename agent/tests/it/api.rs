//! The command API over real HTTP: routes, documents, token rules, busy, wait, errors and the
//! history bound, compared with what ironic-python-agent 13.0.0 answered (tests/fixtures/upstream/ipa).

use std::path::PathBuf;

use reqwest::StatusCode;
use rivet_agent::Exit;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TOKEN, base, http, standalone};

fn fixture(name: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/upstream/ipa");
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Fixture body with the captured agent's address replaced by ours.
fn fixture_body(name: &str, base: &str) -> Value {
    let text = fixture(name)["body"].to_string().replace("http://127.0.0.1:9999", base);
    serde_json::from_str(&text).expect("still JSON")
}

async fn send(method: reqwest::Method, url: String, body: Option<&str>) -> (StatusCode, Value) {
    let mut req = http().request(method, url);
    if let Some(body) = body {
        req = req.body(body.to_owned());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn post(base: &str, query: &str, body: &str) -> (StatusCode, Value) {
    send(
        reqwest::Method::POST,
        format!("{base}/v1/commands/?{query}"),
        Some(body),
    )
    .await
}

fn five_fields(result: &Value) {
    let keys: Vec<&str> = result.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "command_name",
            "command_status",
            "command_error",
            "command_result"
        ]
    );
}

#[tokio::test]
async fn discovery_documents_match_upstream_on_every_route() {
    let (agent, _) = standalone(8).await;
    let base = base(&agent);
    for (path, fixture_name) in [
        ("/", "get_root"),
        ("/v1", "get_v1"),
        ("/v1/", "get_v1"),
        ("/v1/status", "get_v1_status"),
        ("/v1/status/", "get_v1_status"),
        ("/status", "get_v1_status"),
        ("/status/", "get_v1_status"),
    ] {
        let (status, body) = send(reqwest::Method::GET, format!("{base}{path}"), None).await;
        assert_eq!(status, 200, "{path}");
        if fixture_name == "get_v1_status" {
            assert!(body["started_at"].as_f64().is_some_and(|t| t > 1.7e9), "{path}: {body}");
            assert_eq!(body["version"], rivet_agent::VERSION);
            assert_eq!(body.as_object().expect("object").len(), 2);
        } else {
            assert_eq!(body, fixture_body(fixture_name, &base), "{path}");
        }
    }
    agent.shutdown();
}

#[tokio::test]
async fn commands_routes_need_the_token() {
    let (agent, _) = standalone(8).await;
    let base = base(&agent);
    let unauthorized = fixture("err_get_v1_commands_no_token")["body"].clone();
    for path in ["/v1/commands/", "/v1/commands", "/commands/", "/commands"] {
        let (status, body) = send(reqwest::Method::GET, format!("{base}{path}"), None).await;
        assert_eq!(
            (status, &body),
            (StatusCode::UNAUTHORIZED, &unauthorized),
            "{path} without token"
        );
        let (status, body) = send(reqwest::Method::GET, format!("{base}{path}?agent_token=wrong"), None).await;
        assert_eq!(
            (status, &body),
            (StatusCode::UNAUTHORIZED, &unauthorized),
            "{path} wrong token"
        );
        let (status, body) = send(reqwest::Method::GET, format!("{base}{path}?agent_token={TOKEN}"), None).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"commands": []})),
            "{path} right token"
        );
    }
    // POST checks the token before the body; a bad body gets 401, not 400.
    let (status, body) = post(&base, "wait=true", "{not json").await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, unauthorized.clone()));
    // A token that is a prefix of the right one is wrong.
    let (status, _) = post(
        &base,
        &format!("agent_token={}", &TOKEN[..10]),
        r#"{"name":"test.echo","params":{}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Show by id, with and without the /v1 prefix and slash.
    let (_, result) = post(
        &base,
        &format!("agent_token={TOKEN}"),
        r#"{"name":"test.echo","params":{"value":1}}"#,
    )
    .await;
    let id = result["id"].as_str().expect("id");
    for path in [
        format!("/v1/commands/{id}"),
        format!("/v1/commands/{id}/"),
        format!("/commands/{id}"),
    ] {
        let (status, _) = send(reqwest::Method::GET, format!("{base}{path}"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, body) = send(reqwest::Method::GET, format!("{base}{path}?agent_token={TOKEN}"), None).await;
        assert_eq!((status, &body), (StatusCode::OK, &result), "{path}");
    }
    agent.shutdown();
}

#[tokio::test]
async fn bad_requests_get_upstream_faults_and_lose_nothing() {
    let (agent, _) = standalone(8).await;
    let base = base(&agent);
    let q = format!("wait=true&agent_token={TOKEN}");
    // Same status and text as upstream.
    for (body, fixture_name) in [
        ("[1,2]", "err_body_is_list"),
        (r#"{"params": {}}"#, "err_missing_name_key"),
        (r#"{"name": "clean.get_clean_steps"}"#, "err_missing_params_key"),
        (
            r#"{"name": "clean.get_clean_steps", "params": []}"#,
            "err_params_not_dict",
        ),
        (r#"{"name": "get_clean_steps", "params": {}}"#, "err_name_without_dot"),
        (
            r#"{"name": "nosuchext.do_thing", "params": {}}"#,
            "err_unknown_extension",
        ),
        (
            r#"{"name": "poll.no_such_command", "params": {}}"#,
            "err_unknown_command_known_ext",
        ),
        (
            r#"{"name": "poll.set_node_info", "params": {"node_info": {}}}"#,
            "err_set_node_info_not_standalone",
        ),
    ] {
        let want = fixture(fixture_name);
        let (status, got) = post(&base, &q, body).await;
        let want_body = if fixture_name == "err_unknown_command_known_ext" {
            json!({"faultcode": "Client", "faultstring": "Invalid command: Unknown command: no_such_command"})
        } else {
            want["body"].clone()
        };
        if fixture_name == "err_set_node_info_not_standalone" {
            // Standalone agents accept set_node_info; a malformed node_info is a 400 instead.
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            continue;
        }
        assert_eq!(
            status.as_u16() as u64,
            want["status"].as_u64().expect("status"),
            "{body}"
        );
        assert_eq!(got, want_body, "{body}");
    }
    // Undecodable JSON: upstream's prefix, serde's reason.
    for body in ["{\"name\": \"clean.get_clean_steps\", ", ""] {
        let (status, got) = post(&base, &q, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            got["faultstring"]
                .as_str()
                .expect("text")
                .starts_with("400 Bad Request: Failed to decode JSON object: "),
            "{got}"
        );
    }
    // Upstream answers an unexpected argument with HTTP 500 and poisons GET /v1/commands/
    // (fixtures err_unexpected_param, get_v1_commands_after). Rivet answers 400 and keeps serving.
    let (status, got) = post(&base, &q, r#"{"name": "test.echo", "params": {"bogus": 1}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        got["faultstring"]
            .as_str()
            .expect("text")
            .starts_with("Invalid command parameters: unknown field `bogus`"),
        "{got}"
    );
    let (status, list) = send(
        reqwest::Method::GET,
        format!("{base}/v1/commands/?agent_token={TOKEN}"),
        None,
    )
    .await;
    assert_eq!(
        (status, list),
        (StatusCode::OK, json!({"commands": []})),
        "rejected requests are not recorded"
    );
    // Unknown id, path, method.
    let (status, got) = send(
        reqwest::Method::GET,
        format!("{base}/v1/commands/00000000-0000-0000-0000-000000000000?agent_token={TOKEN}"),
        None,
    )
    .await;
    assert_eq!(
        (status, got),
        (StatusCode::NOT_FOUND, fixture("err_unknown_command_id")["body"].clone())
    );
    let (status, got) = send(reqwest::Method::GET, format!("{base}/v2/nothing"), None).await;
    assert_eq!(
        (status, got),
        (StatusCode::NOT_FOUND, fixture("err_unknown_path")["body"].clone())
    );
    for (method, path, fixture_name) in [
        (reqwest::Method::DELETE, "/v1/status", "err_wrong_method_delete_status"),
        (reqwest::Method::PUT, "/v1/commands/", "err_wrong_method_put_commands"),
    ] {
        let resp = http()
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        let allow = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(allow.contains("GET"), "{path}: Allow {allow:?}");
        let got: Value = resp.json().await.expect("json");
        assert_eq!(got, fixture(fixture_name)["body"]);
    }
    agent.shutdown();
}

#[tokio::test]
async fn sync_commands_record_results_and_failures() {
    let (agent, _) = standalone(8).await;
    let base = base(&agent);
    let q = format!("wait=true&agent_token={TOKEN}");
    let (status, ok) = post(&base, &q, r#"{"name": "test.echo", "params": {"value": [1, 2]}}"#).await;
    assert_eq!(status, StatusCode::OK);
    five_fields(&ok);
    assert_eq!(
        (ok["command_name"].as_str(), ok["command_status"].as_str()),
        (Some("echo"), Some("SUCCEEDED"))
    );
    assert_eq!(ok["command_result"], json!({"echo": [1, 2]}));
    // A failing sync command is still HTTP 200, recorded as FAILED with a serialisable error.
    let (status, failed) = post(&base, &q, r#"{"name": "test.fail", "params": {}}"#).await;
    assert_eq!(status, StatusCode::OK);
    five_fields(&failed);
    assert_eq!(failed["command_status"], "FAILED");
    assert_eq!(
        failed["command_error"],
        json!({"type": "CommandExecutionError", "code": 500, "message": "Command execution failed", "details": "it broke"})
    );
    let (_, list) = send(
        reqwest::Method::GET,
        format!("{base}/v1/commands/?agent_token={TOKEN}"),
        None,
    )
    .await;
    assert_eq!(list["commands"], json!([ok, failed]));
    agent.shutdown();
}

#[tokio::test]
async fn async_commands_busy_and_wait() {
    let (agent, gate) = standalone(8).await;
    let base = base(&agent);
    let auth = format!("agent_token={TOKEN}");
    let (status, running) = post(&base, &auth, r#"{"name": "test.block", "params": {}}"#).await;
    assert_eq!(status, StatusCode::OK);
    five_fields(&running);
    assert_eq!(running["command_status"], "RUNNING");
    assert_eq!(running["command_result"], Value::Null);
    let id = running["id"].as_str().expect("id").to_owned();
    // Every command is refused while the last one runs, sync or not.
    let (status, busy) = post(
        &base,
        &format!("wait=true&{auth}"),
        r#"{"name": "test.echo", "params": {}}"#,
    )
    .await;
    assert_eq!(
        (status, busy),
        (
            StatusCode::CONFLICT,
            json!({"faultcode": "Client", "faultstring": "Agent is busy: executing command block"})
        )
    );
    // A waiting GET returns once the command has finished.
    let waiter = tokio::spawn({
        let url = format!("{base}/v1/commands/{id}?wait=true&{auth}");
        async move { send(reqwest::Method::GET, url, None).await }
    });
    let (_, still) = send(reqwest::Method::GET, format!("{base}/v1/commands/{id}?{auth}"), None).await;
    assert_eq!(still["command_status"], "RUNNING");
    gate.release();
    let (status, done) = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("wait returns")
        .expect("task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(done["command_status"], "SUCCEEDED");
    assert_eq!(
        done["command_result"],
        json!({"result": "block: done"}),
        "async string results carry the command name"
    );
    // POST with wait=true on an async command answers with the final result.
    let post_wait = tokio::spawn({
        let base = base.clone();
        let auth = auth.clone();
        async move {
            post(
                &base,
                &format!("wait=TRUE&{auth}"),
                r#"{"name": "test.block", "params": {}}"#,
            )
            .await
        }
    });
    // Release once the command is running (the gate stores one permit, so order does not matter).
    gate.release();
    let (status, done) = tokio::time::timeout(PATIENCE, post_wait)
        .await
        .expect("post returns")
        .expect("task");
    assert_eq!(
        (status, done["command_status"].as_str()),
        (StatusCode::OK, Some("SUCCEEDED"))
    );
    agent.shutdown();
}

#[tokio::test]
async fn history_is_bounded() {
    let (agent, _) = standalone(3).await;
    let base = base(&agent);
    let mut ids = Vec::new();
    for i in 0..7 {
        let (_, r) = post(
            &base,
            &format!("agent_token={TOKEN}"),
            &format!(r#"{{"name": "test.echo", "params": {{"value": {i}}}}}"#),
        )
        .await;
        ids.push(r["id"].as_str().expect("id").to_owned());
    }
    let (_, list) = send(
        reqwest::Method::GET,
        format!("{base}/v1/commands/?agent_token={TOKEN}"),
        None,
    )
    .await;
    let kept: Vec<&str> = list["commands"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        kept,
        ids[4..].iter().map(String::as_str).collect::<Vec<_>>(),
        "the newest three, oldest first"
    );
    let (status, _) = send(
        reqwest::Method::GET,
        format!("{base}/v1/commands/{}?agent_token={TOKEN}", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "evicted results are gone");
    agent.shutdown();
}

#[tokio::test]
async fn built_in_commands_answer_safely() {
    let (agent, _) = standalone(8).await;
    let base = base(&agent);
    let q = format!("wait=true&agent_token={TOKEN}");
    // Inventory keys as upstream.
    let (_, inv) = post(&base, &q, r#"{"name": "poll.get_hardware_info", "params": {}}"#).await;
    assert_eq!(inv["command_status"], "SUCCEEDED", "{inv}");
    for key in [
        "interfaces",
        "cpu",
        "disks",
        "memory",
        "bmc_address",
        "bmc_v6address",
        "system_vendor",
        "boot",
        "hostname",
    ] {
        assert!(inv["command_result"].get(key).is_some(), "inventory lacks {key}");
    }
    // Power actions refuse outside a ramdisk, and the machine stays up to tell.
    for name in ["standby.power_off", "standby.run_image"] {
        let (_, r) = post(&base, &q, &format!(r#"{{"name": "{name}", "params": {{}}}}"#)).await;
        assert_eq!(r["command_status"], "FAILED");
        assert_eq!(r["command_error"]["type"], "SystemRebootError");
        assert!(
            r["command_error"]["details"]
                .as_str()
                .expect("details")
                .contains("not running in a ramdisk")
        );
    }
    let (_, r) = post(&base, &q, r#"{"name": "standby.sync", "params": {}}"#).await;
    assert_eq!(
        (r["command_status"].as_str(), &r["command_result"]),
        (Some("SUCCEEDED"), &Value::Null)
    );
    let (_, r) = post(&base, &q, r#"{"name": "standby.get_partition_uuids", "params": {}}"#).await;
    assert_eq!(r["command_result"], json!({}));
    // Logs: a base64 gzip tarball.
    let (_, r) = post(&base, &q, r#"{"name": "log.collect_system_logs", "params": {}}"#).await;
    let b64 = r["command_result"]["system_logs"].as_str().expect("system_logs");
    use base64::Engine;
    let gz = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
    let names: Vec<String> = archive
        .entries()
        .expect("tar")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    assert!(!names.is_empty(), "some logs are collected");
    agent.shutdown();
}

#[tokio::test]
async fn lockdown_stops_the_api() {
    let (agent, _) = standalone(8).await;
    let base = base(&agent);
    let (status, r) = post(
        &base,
        &format!("wait=true&agent_token={TOKEN}"),
        r#"{"name": "system.lockdown", "params": {}}"#,
    )
    .await;
    assert_eq!(
        (status, r["command_status"].as_str()),
        (StatusCode::OK, Some("SUCCEEDED"))
    );
    let exit = tokio::time::timeout(PATIENCE, agent.wait())
        .await
        .expect("stops")
        .expect("clean stop");
    assert_eq!(exit, Exit::Lockdown);
    assert!(
        http().get(format!("{base}/v1/status")).send().await.is_err(),
        "nothing listens any more"
    );
}

#[tokio::test]
async fn rescue_writes_the_password_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = crate::support::base_settings();
    settings.standalone = Some(true);
    settings.agent_token = Some(TOKEN.into());
    settings.rescue_config_dir = Some(dir.path().to_owned());
    let mut config = crate::support::resolve(settings);
    config.rescue_marker = dir.path().join(".rescued");
    let agent = rivet_agent::start(config).await.expect("starts");
    let base = base(&agent);
    let (_, r) = post(
        &base,
        &format!("wait=true&agent_token={TOKEN}"),
        r#"{"name": "rescue.finalize_rescue", "params": {"rescue_password": "s3cret"}}"#,
    )
    .await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let hash = std::fs::read_to_string(dir.path().join("ipa-rescue-password")).expect("written");
    assert!(hash.starts_with("$6$") && !hash.contains("s3cret"), "{hash}");
    assert!(dir.path().join(".rescued").exists());
    assert_eq!(
        tokio::time::timeout(PATIENCE, agent.wait())
            .await
            .expect("stops")
            .expect("ok"),
        Exit::Rescued
    );
}

#[tokio::test]
async fn static_tls_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rivet_agent::tls::generate_self_signed("127.0.0.1".parse().expect("ip"), "test").expect("cert");
    std::fs::write(dir.path().join("c.pem"), &key.cert_pem).expect("write");
    std::fs::write(dir.path().join("k.pem"), &key.key_pem).expect("write");
    let mut settings = crate::support::base_settings();
    settings.standalone = Some(true);
    settings.tls_cert_file = Some(dir.path().join("c.pem"));
    settings.tls_key_file = Some(dir.path().join("k.pem"));
    let agent = rivet_agent::start(crate::support::resolve(settings))
        .await
        .expect("starts");
    // A client that trusts exactly this certificate (as a conductor pins agent_verify_ca).
    let tls = rivet_agent::config::ClientTls {
        cafile: Some(dir.path().join("c.pem")),
        ..Default::default()
    };
    let client =
        rivet_agent::tls::http_client(&tls, rivet_agent::config::TlsMinVersion::Tls12, PATIENCE).expect("client");
    let resp = client
        .get(format!("https://127.0.0.1:{}/v1/status", agent.local_addr.port()))
        .send()
        .await
        .expect("https works");
    assert_eq!(resp.status(), StatusCode::OK);
    // Plain HTTP to a TLS port fails.
    assert!(
        http()
            .get(format!("http://127.0.0.1:{}/v1/status", agent.local_addr.port()))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
    agent.shutdown();
}
