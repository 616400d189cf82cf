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

/// Enroll one simulated machine at `base`: a `fake-hardware` node with the `direct` deploy
/// interface and a whole-disk image nobody downloads, and its port `mac`; `uuid` chooses the
/// node's UUID (else the conductor picks one). The node's UUID.
pub async fn enroll_simulated(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    mac: &str,
    uuid: Option<&str>,
    retry_for: Duration,
) -> String {
    let mut body = serde_json::json!({
        "driver": "fake-hardware", "deploy_interface": "direct", "name": name,
        "instance_info": {"image_source": "http://127.0.0.1:9/images/disk.raw",
            "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64), "image_disk_format": "raw"},
    });
    if let Some(uuid) = uuid {
        body["uuid"] = uuid.into();
    }
    let (status, node) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/v1/nodes"),
        Some(&body),
        retry_for,
    )
    .await;
    assert_eq!(status, 201, "{node}");
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let port = serde_json::json!({"address": mac, "node_uuid": uuid});
    let (status, port) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/v1/ports"),
        Some(&port),
        retry_for,
    )
    .await;
    assert_eq!(status, 201, "{port}");
    uuid
}
