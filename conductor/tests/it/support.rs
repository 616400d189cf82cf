//! A conductor on loopback over a fresh SQLite file, and an HTTP client for it.

use std::sync::Once;
use std::time::Duration;

use rivet_conductor::RunningConductor;
use rivet_conductor::config::ConductorConfig;
use serde_json::Value;

/// Upper bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct TestConductor {
    pub running: RunningConductor,
    /// Holds the database file for the test's lifetime.
    _dir: tempfile::TempDir,
}

impl TestConductor {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ConductorConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ConductorConfig::for_tests(format!("sqlite://{}/rivet.sqlite", dir.path().display()));
        tweak(&mut config);
        let running = rivet_conductor::start(config).await.expect("conductor starts");
        TestConductor { running, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }
}

pub fn client() -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().timeout(PATIENCE).build().expect("client")
}

/// Send a request with the latest microversion; answer status and JSON (or text) body.
pub async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    call_version(method, url, body, Some("latest")).await
}

pub async fn call_version(
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    version: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method, url);
    if let Some(v) = version {
        req = req.header("X-OpenStack-Ironic-API-Version", v);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The faultstring inside an Ironic error document.
pub fn fault(body: &Value) -> String {
    let inner = body["error_message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an Ironic error document: {body}"));
    let doc: Value = serde_json::from_str(inner).expect("error_message is JSON");
    doc["faultstring"].as_str().expect("faultstring").to_owned()
}

/// Poll a node until `field` equals `want` (bounded).
pub async fn wait_for(c: &TestConductor, node: &str, field: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, doc) = call(reqwest::Method::GET, c.url(&format!("/v1/nodes/{node}")), None).await;
        if doc[field] == want {
            return doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {node}: {field} never became {want}: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll a node until no conductor holds its lock (bounded): a state is saved before the flow
/// that reached it lets the lock go, and an agent's lookup in that moment is told to retry.
pub async fn wait_unlocked(c: &TestConductor, node: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, doc) = call(reqwest::Method::GET, c.url(&format!("/v1/nodes/{node}")), None).await;
        if doc["reservation"].is_null() {
            return doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {node} stayed locked: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Walk a node as an operator does: send each provision target (202) and wait for the state it
/// leads to.
pub async fn walk(c: &TestConductor, node: &str, steps: &[(&str, &str)]) {
    for (target, reached) in steps {
        let (status, body) = call(
            reqwest::Method::PUT,
            c.url(&format!("/v1/nodes/{node}/states/provision")),
            Some(serde_json::json!({"target": target})),
        )
        .await;
        assert_eq!(status, 202, "{target}: {body}");
        wait_for(c, node, "provision_state", reached).await;
    }
}

pub fn fixture(rel: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/upstream")
        .join(rel);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}
