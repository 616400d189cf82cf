//! A conductor and the simulated lab in one process, driven through the API: what the system
//! tests (tests/tests/) share.

use std::time::Duration;

use reqwest::Method;
use rivet_conductor::config::ConductorConfig;
use serde_json::{Value, json};

use crate::lab::Lab;

/// Upper bound for anything a system test waits for.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A conductor (SQLite in a temporary directory) and the simulated lab its nodes live in.
#[derive(Debug)]
pub struct System {
    /// The conductor under test.
    pub conductor: rivet_conductor::RunningConductor,
    /// The machines, their BMCs and their agents.
    pub lab: Lab,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The conductor configuration system tests start from: sim-hardware, short timeouts.
fn config(dir: &tempfile::TempDir) -> ConductorConfig {
    let mut config = ConductorConfig::for_tests(format!("sqlite://{}/rivet.sqlite", dir.path().display()));
    config.enabled_hardware_types = vec!["sim-hardware".into(), "fake-hardware".into()];
    config.ramdisk_heartbeat_timeout = 2;
    config.power_off_polls = (2, Duration::from_millis(50));
    config.check_provision_state_interval = Duration::from_millis(200);
    config
}

impl System {
    /// Start a conductor with `tweak` applied to its configuration.
    pub async fn start(tweak: impl FnOnce(&mut ConductorConfig)) -> System {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = Lab::default();
        let mut config = config(&dir);
        tweak(&mut config);
        let conductor = rivet_conductor::start_with(config, lab.extensions())
            .await
            .expect("conductor starts");
        *lab.api_url.lock().expect("lock") = conductor.url();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        System {
            conductor,
            lab,
            http,
            _dir: dir,
        }
    }

    /// Call the API at the latest microversion: status and JSON (or text) body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.conductor.url()))
            .header("X-OpenStack-Ironic-API-Version", "latest");
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A node with one port, a simulated machine behind it, and an image to deploy.
    pub async fn node(&self, index: u8) -> (String, std::sync::Arc<rivet_fleet::machine::MachineControl>) {
        let mac = format!("52:54:00:00:00:{index:02x}");
        let (status, node) = self
            .call(
                Method::POST,
                "/v1/nodes",
                Some(json!({
                    "driver": "sim-hardware",
                    "name": format!("sim-{index}"),
                    "instance_info": {"image_source": "http://127.0.0.1:9/images/disk.raw", "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64), "image_disk_format": "raw"},
                })),
            )
            .await;
        assert_eq!(status, 201, "{node}");
        let uuid = node["uuid"].as_str().expect("uuid").to_owned();
        let control = self.lab.add_machine(&uuid, &mac);
        let (status, port) = self
            .call(
                Method::POST,
                "/v1/ports",
                Some(json!({"address": mac, "node_uuid": uuid})),
            )
            .await;
        assert_eq!(status, 201, "{port}");
        (uuid, control)
    }

    /// A provision verb the API accepts (202).
    pub async fn provision(&self, uuid: &str, body: Value) {
        let (status, answer) = self
            .call(
                Method::PUT,
                &format!("/v1/nodes/{uuid}/states/provision"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 202, "{body}: {answer}");
    }

    /// Wait (bounded) until the node is in `state` running `step` of its flow (`flow_step`:
    /// `clean_step`, `deploy_step`, `service_step`), as an agent runs it; answers the node.
    pub async fn wait_step(&self, uuid: &str, state: &str, flow_step: &str, step: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, node) = self.call(Method::GET, &format!("/v1/nodes/{uuid}"), None).await;
            if node["provision_state"] == state && node[flow_step]["step"] == step {
                return node;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {uuid} never ran {step} in {state}: {node}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (bounded) for a provision state; fail early on a failure state.
    pub async fn wait_state(&self, uuid: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, node) = self.call(Method::GET, &format!("/v1/nodes/{uuid}"), None).await;
            let state = node["provision_state"].as_str().unwrap_or_default().to_owned();
            if state == want {
                return node;
            }
            if state.ends_with("failed") && !want.ends_with("failed") {
                panic!(
                    "node {uuid} failed while waiting for {want}: {}\njournal: {:?}",
                    node["last_error"],
                    self.lab.journal_of(uuid)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {uuid} stuck in {state} waiting for {want}; journal: {:?}",
                self.lab.journal_of(uuid)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
