//! Calls to a conductor's API from tests that run it as a separate process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `rivet-conductor` binary `cargo test` built beside the running test binary.
pub fn conductor_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|debug| debug.join("rivet-conductor"))
        .expect("target dir");
    assert!(binary.exists(), "cargo test builds {}", binary.display());
    binary
}

/// An API call at the latest microversion: status and JSON body (a string if not JSON),
/// retried while nothing answers for up to `retry_for`, then a panic naming the URL.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    retry_for: Duration,
) -> (u16, Value) {
    let until = Instant::now() + retry_for;
    loop {
        let mut request = http
            .request(method.clone(), url)
            .header("X-OpenStack-Ironic-API-Version", "1.115");
        if let Some(body) = body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap_or_default();
                return (status, serde_json::from_str(&text).unwrap_or(Value::String(text)));
            }
            Err(e) if Instant::now() < until => {
                tracing::debug!(error = %e, "not answering yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{url}: {e}"),
        }
    }
}
