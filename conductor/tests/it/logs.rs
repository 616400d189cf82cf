//! `--log-format json` on the real binary: every line is one JSON object, and the lines of an API
//! request carry the request id its answer names in `X-OpenStack-Request-Id`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The conductor process, killed (SIGKILL) and reaped however the test ends.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn json_log_lines_carry_the_request_id_of_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = dir.path().join("conductor.log");
    let child = Command::new(env!("CARGO_BIN_EXE_rivet-conductor"))
        .args([
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
            "--log-format",
            "json",
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}/rivet.sqlite", dir.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("rivet-conductor starts");
    let child = Stopped(child);
    let http = crate::support::client();
    let url = format!("http://127.0.0.1:{port}/v1/nodes/no-such-node");
    let until = Instant::now() + Duration::from_secs(60);
    let response = loop {
        match http
            .get(&url)
            .header("X-OpenStack-Ironic-API-Version", "latest")
            .send()
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < until, "the conductor did not answer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(response.status(), 404);
    let id = response
        .headers()
        .get("x-openstack-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a request id header")
        .to_owned();
    assert!(
        id.starts_with("req-") && uuid::Uuid::parse_str(&id[4..]).is_ok(),
        "{id}"
    );
    // The line is written after the answer: give the writer a moment, bounded.
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log)
            .expect("log")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if lines.iter().any(|l| l["path"] == "/v1/nodes/no-such-node") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(child);
    let line = lines
        .iter()
        .find(|l| l["path"] == "/v1/nodes/no-such-node")
        .unwrap_or_else(|| panic!("no line for the request: {lines:#?}"));
    assert_eq!(line["message"], "api request", "{line}");
    assert_eq!(line["status"], 404, "{line}");
    assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
    for key in ["timestamp", "level", "target"] {
        assert!(line.get(key).is_some(), "{key} missing: {line}");
    }
}
