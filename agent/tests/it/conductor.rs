//! Lookup and heartbeats against a fake conductor: payloads per API version, version
//! negotiation, retries, token handling and the forced heartbeat after an async command.

use rivet_agent::config::ServerTls;
use serde_json::Value;

use crate::support::{FakeConductor, LookupReply, NODE_UUID, PATIENCE, http};

const ISSUED: &str = "issued-token-0123456789-0123456789-abcdefgh";

fn found(token: Option<&str>) -> LookupReply {
    LookupReply::Found {
        token: token.map(str::to_owned),
        heartbeat_timeout: 3600,
    }
}

fn keys(body: &Value) -> Vec<String> {
    body.as_object().expect("object").keys().cloned().collect()
}

#[tokio::test]
async fn modern_ironic_gets_token_tls_and_every_field() {
    let conductor = FakeConductor::start(Some("1.115"), vec![found(Some(ISSUED))], vec![202]).await;
    let (agent, _) = crate::support::managed(&conductor, ServerTls::Auto)
        .await
        .expect("starts");
    conductor.wait_heartbeats(1).await;
    let recorded = conductor.snapshot();
    let (lookup_version, query) = &recorded.lookups[0];
    assert_eq!(
        lookup_version.as_deref(),
        Some("1.62"),
        "lookup asks for min(server, 1.62)"
    );
    assert!(
        query.as_deref().unwrap_or_default().starts_with("addresses="),
        "{query:?}"
    );
    let (hb_version, body) = &recorded.heartbeats[0];
    assert_eq!(
        hb_version.as_deref(),
        Some("1.72"),
        "heartbeat asks for min(server, 1.72)"
    );
    assert_eq!(
        keys(body),
        ["callback_url", "agent_token", "agent_version", "agent_verify_ca"],
        "no progress message yet"
    );
    assert_eq!(body["agent_token"], ISSUED);
    assert_eq!(body["agent_version"], rivet_agent::VERSION);
    let callback = body["callback_url"].as_str().expect("url");
    assert_eq!(callback, format!("https://127.0.0.1:{}", agent.local_addr.port()));
    assert_eq!(agent.node_uuid.as_deref(), Some(NODE_UUID));
    // The certificate in the heartbeat is the one the API serves: pin it and talk.
    let pem = body["agent_verify_ca"].as_str().expect("pem").to_owned();
    let callback = callback.to_owned();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("ca.pem"), pem).expect("write");
    let tls = rivet_agent::config::ClientTls {
        cafile: Some(dir.path().join("ca.pem")),
        ..Default::default()
    };
    let client =
        rivet_agent::tls::http_client(&tls, rivet_agent::config::TlsMinVersion::Tls13, PATIENCE).expect("client");
    let list = client
        .get(format!("{callback}/v1/commands/?agent_token={ISSUED}"))
        .send()
        .await
        .expect("pinned TLS works");
    assert_eq!(list.status(), 200, "the token from lookup authorises commands");
    agent.shutdown();
}

#[tokio::test]
async fn old_ironic_gets_only_what_its_version_knows() {
    let conductor = FakeConductor::start(Some("1.50"), vec![found(None)], vec![202]).await;
    let (agent, _) = crate::support::managed(&conductor, ServerTls::Auto)
        .await
        .expect("starts");
    conductor.wait_heartbeats(1).await;
    let recorded = conductor.snapshot();
    assert_eq!(recorded.lookups[0].0.as_deref(), Some("1.50"));
    let (version, body) = &recorded.heartbeats[0];
    assert_eq!(version.as_deref(), Some("1.50"));
    assert_eq!(
        keys(body),
        ["callback_url", "agent_version"],
        "no token before 1.62, no certificate before 1.68"
    );
    assert!(
        body["callback_url"].as_str().expect("url").starts_with("http://"),
        "no auto TLS before 1.68"
    );
    agent.shutdown();
}

#[tokio::test]
async fn failed_discovery_falls_back_to_the_minimum_version() {
    let conductor = FakeConductor::start(None, vec![found(None)], vec![202]).await;
    let (agent, _) = crate::support::managed(&conductor, ServerTls::Auto)
        .await
        .expect("starts");
    conductor.wait_heartbeats(1).await;
    let recorded = conductor.snapshot();
    assert_eq!(recorded.lookups[0].0.as_deref(), Some("1.31"));
    assert_eq!(recorded.heartbeats[0].0.as_deref(), Some("1.31"));
    agent.shutdown();
}

#[tokio::test]
async fn lookup_retries_server_errors_and_conflicts() {
    let script = vec![
        LookupReply::Status(503),
        LookupReply::Status(409),
        LookupReply::Status(500),
        found(Some(ISSUED)),
    ];
    let conductor = FakeConductor::start(Some("1.115"), script, vec![202]).await;
    let (agent, _) = crate::support::managed(&conductor, ServerTls::None)
        .await
        .expect("starts after retries");
    assert_eq!(conductor.snapshot().lookups.len(), 4);
    agent.shutdown();
}

#[tokio::test]
async fn lookup_gives_up_with_a_clear_error() {
    let conductor = FakeConductor::start(Some("1.115"), vec![LookupReply::Status(404)], vec![202]).await;
    let mut settings = crate::support::base_settings();
    settings.api_url = Some(conductor.url().parse().expect("url"));
    let mut config = crate::support::resolve(settings);
    config.lookup.total = std::time::Duration::from_millis(300);
    let err = rivet_agent::start(config).await.expect_err("gives up");
    let text = err.to_string();
    assert!(
        text.contains("could not look up the node") && text.contains("404"),
        "{text}"
    );
    assert!(conductor.snapshot().lookups.len() > 1, "it retried first");
}

/// Issue 15: with a 25 s budget the agent quit at 17.9 s, because it gave up as soon as the next
/// backoff would cross the deadline. A backoff longer than the whole budget must still leave
/// one more attempt, at the deadline.
#[tokio::test]
async fn lookup_uses_its_whole_budget() {
    let conductor = FakeConductor::start(Some("1.115"), vec![LookupReply::Status(404)], vec![202]).await;
    let mut settings = crate::support::base_settings();
    settings.api_url = Some(conductor.url().parse().expect("url"));
    let mut config = crate::support::resolve(settings);
    config.lookup.total = std::time::Duration::from_secs(2);
    config.lookup.interval = std::time::Duration::from_secs(60);
    config.lookup.max_backoff = std::time::Duration::from_secs(60);
    rivet_agent::start(config).await.expect_err("gives up");
    assert_eq!(
        conductor.snapshot().lookups.len(),
        2,
        "the first attempt, then one at the deadline instead of giving up early"
    );
}

#[tokio::test]
async fn masked_token_without_a_token_is_a_clear_failure() {
    let conductor = FakeConductor::start(Some("1.115"), vec![found(Some("******"))], vec![202]).await;
    let mut settings = crate::support::base_settings();
    settings.api_url = Some(conductor.url().parse().expect("url"));
    let mut config = crate::support::resolve(settings);
    config.lookup.total = std::time::Duration::from_millis(200);
    let err = rivet_agent::start(config).await.expect_err("cannot authenticate");
    assert!(err.to_string().contains("masked token"), "{err}");
    // With a pre-shared token (virtual media), the masked answer is fine.
    let mut settings = crate::support::base_settings();
    settings.api_url = Some(conductor.url().parse().expect("url"));
    settings.agent_token = Some("pre-shared".into());
    let agent = rivet_agent::start(crate::support::resolve(settings))
        .await
        .expect("starts");
    conductor.wait_heartbeats(1).await;
    assert_eq!(conductor.snapshot().heartbeats[0].1["agent_token"], "pre-shared");
    agent.shutdown();
}

#[tokio::test]
async fn failed_heartbeats_are_retried() {
    let conductor = FakeConductor::start(Some("1.115"), vec![found(Some(ISSUED))], vec![500, 409, 202]).await;
    let (agent, _) = crate::support::managed(&conductor, ServerTls::None)
        .await
        .expect("starts");
    // heartbeat_timeout is an hour: only the short error retries can produce three heartbeats.
    conductor.wait_heartbeats(3).await;
    agent.shutdown();
}

#[tokio::test]
async fn an_async_command_forces_a_heartbeat() {
    let conductor = FakeConductor::start(Some("1.115"), vec![found(Some(ISSUED))], vec![202]).await;
    let (agent, gate) = crate::support::managed(&conductor, ServerTls::None)
        .await
        .expect("starts");
    conductor.wait_heartbeats(1).await;
    // The next regular heartbeat is at least 18 minutes away (3600 s × 0.3).
    let url = format!("http://{}/v1/commands/?agent_token={ISSUED}", agent.local_addr);
    let r: Value = http()
        .post(&url)
        .body(r#"{"name": "test.block", "params": {}}"#)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(r["command_status"], "RUNNING");
    // A synchronous command does not force one.
    let sync_url = format!(
        "http://{}/v1/commands/?wait=true&agent_token={ISSUED}",
        agent.local_addr
    );
    let busy = http()
        .post(&sync_url)
        .body(r#"{"name": "test.echo", "params": {}}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(busy.status(), 409);
    assert_eq!(conductor.heartbeat_count(), 1);
    gate.release();
    conductor.wait_heartbeats(2).await;
    agent.shutdown();
}

#[tokio::test]
async fn advertise_host_overrides_detection() {
    let conductor = FakeConductor::start(Some("1.115"), vec![found(Some(ISSUED))], vec![202]).await;
    let mut settings = crate::support::base_settings();
    settings.api_url = Some(conductor.url().parse().expect("url"));
    settings.advertise_host = Some("127.0.0.2".into());
    settings.advertise_port = Some(443);
    let mut config = crate::support::resolve(settings);
    config.server_tls = ServerTls::None;
    let agent = rivet_agent::start(config).await.expect("starts");
    conductor.wait_heartbeats(1).await;
    assert_eq!(
        conductor.snapshot().heartbeats[0].1["callback_url"],
        "http://127.0.0.2:443"
    );
    agent.shutdown();
}
