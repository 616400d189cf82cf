//! Helpers: agents on loopback, a test extension whose commands the test controls, and a fake
//! conductor that records what the agent sends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rivet_agent::RunningAgent;
use rivet_agent::commands::{Command, Registry};
use rivet_agent::config::{AgentConfig, BootParams, HeartbeatTiming, LookupPolicy, ServerTls, Settings};
use rivet_agent::error::{AgentError, ErrorKind};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const TOKEN: &str = "test-token-0123456789-abcdefghijklmnop";

/// Upper bound for anything a test waits for; reaching it is a failure, not a timing claim.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Config for an agent on 127.0.0.1 with an ephemeral port.
pub fn base_settings() -> Settings {
    Settings {
        listen_host: Some("127.0.0.1".parse().expect("ip")),
        listen_port: Some(0),
        ..Default::default()
    }
}

pub fn resolve(settings: Settings) -> AgentConfig {
    let mut config = AgentConfig::resolve(settings, BootParams::default(), false).expect("valid settings");
    config.lookup = LookupPolicy {
        total: Duration::from_secs(10),
        interval: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        conflict_pauses: vec![Duration::from_millis(20)],
    };
    config.heartbeat = HeartbeatTiming {
        error_retry: (Duration::from_millis(20), Duration::from_millis(40)),
        forced_min_gap: Duration::from_millis(50),
    };
    config
}

/// Controls the `test.block` command: it runs until released.
#[derive(Debug, Default)]
pub struct Gate(Notify);

impl Gate {
    pub fn release(&self) {
        self.0.notify_one();
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoArgs {
    #[serde(default)]
    value: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// Built-in commands plus `test.echo` (sync), `test.fail` (sync, fails), `test.block` (async,
/// waits for the gate).
pub fn registry(gate: Arc<Gate>) -> Registry {
    let mut registry = rivet_agent::default_registry();
    registry.register(
        "test",
        "echo",
        Command::sync(|_, args: EchoArgs| async move { Ok(json!({ "echo": args.value })) }),
    );
    registry.register(
        "test",
        "fail",
        Command::sync(|_, _: Empty| async { Err(AgentError::new(ErrorKind::CommandExecution, "it broke")) }),
    );
    registry.register(
        "test",
        "block",
        Command::asynchronous(move |_, _: Empty| {
            let gate = Arc::clone(&gate);
            async move {
                gate.0.notified().await;
                Ok(Value::String("done".into()))
            }
        }),
    );
    registry
}

/// A standalone agent holding [`TOKEN`].
pub async fn standalone(history_limit: usize) -> (RunningAgent, Arc<Gate>) {
    let mut settings = base_settings();
    settings.standalone = Some(true);
    settings.agent_token = Some(TOKEN.into());
    settings.command_history_limit = Some(history_limit);
    let gate = Arc::new(Gate::default());
    let agent = rivet_agent::start_with(resolve(settings), registry(Arc::clone(&gate)), Vec::new())
        .await
        .expect("agent starts");
    (agent, gate)
}

/// A plain client built like the agent's own (explicit ring provider, no process default).
pub fn http() -> reqwest::Client {
    rivet_agent::tls::http_client(&Default::default(), rivet_agent::config::TlsMinVersion::Tls12, PATIENCE)
        .expect("client")
}

/// Run agent command `name` with `params`, waiting for its result, as a conductor does.
pub async fn command(agent: &RunningAgent, name: &str, params: Value) -> Value {
    let url = format!("http://{}/v1/commands/?wait=true&agent_token={TOKEN}", agent.local_addr);
    let resp = http()
        .post(url)
        .json(&json!({"name": name, "params": params}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200, "{name}");
    resp.json().await.expect("json")
}

pub fn base(agent: &RunningAgent) -> String {
    format!("http://{}", agent.local_addr)
}

/// What the fake conductor answers to lookups, in order; the last one repeats.
#[derive(Debug, Clone)]
pub enum LookupReply {
    Status(u16),
    Found {
        token: Option<String>,
        heartbeat_timeout: u64,
    },
}

#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub lookups: Vec<(Option<String>, Option<String>)>,
    pub heartbeats: Vec<(Option<String>, Value)>,
    /// Inspection posts: the request headers and the body.
    pub inspections: Vec<(HeaderMap, Value)>,
}

#[derive(Debug)]
pub struct FakeConductor {
    pub addr: SocketAddr,
    pub recorded: Arc<Mutex<Recorded>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeConductor {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct FakeState {
    max_version: Option<String>,
    lookups: Arc<Mutex<Vec<LookupReply>>>,
    heartbeat_statuses: Arc<Mutex<Vec<u16>>>,
    inspection_statuses: Arc<Mutex<Vec<u16>>>,
    recorded: Arc<Mutex<Recorded>>,
}

pub const NODE_UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

fn next<T: Clone>(script: &Mutex<Vec<T>>) -> Option<T> {
    let mut s = script.lock().expect("lock");
    if s.len() > 1 {
        Some(s.remove(0))
    } else {
        s.first().cloned()
    }
}

async fn root(State(st): State<FakeState>) -> axum::response::Response {
    match &st.max_version {
        Some(v) => Json(json!({
            "name": "OpenStack Ironic API", "description": "fake",
            "default_version": {"id": "v1", "links": [], "status": "CURRENT", "min_version": "1.1", "version": v},
            "versions": []
        }))
        .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn ironic_error(status: u16, text: &str) -> axum::response::Response {
    let inner = json!({"faultcode": "Client", "faultstring": text, "debuginfo": null}).to_string();
    (
        StatusCode::from_u16(status).expect("status"),
        Json(json!({ "error_message": inner })),
    )
        .into_response()
}

async fn lookup(State(st): State<FakeState>, headers: HeaderMap, RawQuery(q): RawQuery) -> axum::response::Response {
    let version = headers
        .get("X-OpenStack-Ironic-API-Version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    st.recorded.lock().expect("lock").lookups.push((version, q));
    match next(&st.lookups).expect("lookup script") {
        LookupReply::Status(code) => ironic_error(code, "scripted failure"),
        LookupReply::Found {
            token,
            heartbeat_timeout,
        } => {
            let mut config = json!({ "heartbeat_timeout": heartbeat_timeout, "agent_token_required": true });
            if let Some(t) = token {
                config["agent_token"] = json!(t);
            }
            Json(json!({ "node": { "uuid": NODE_UUID, "properties": {}, "instance_info": {}, "driver_internal_info": {} }, "config": config })).into_response()
        }
    }
}

async fn heartbeat(
    State(st): State<FakeState>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    assert_eq!(uuid, NODE_UUID);
    let version = headers
        .get("X-OpenStack-Ironic-API-Version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    st.recorded.lock().expect("lock").heartbeats.push((version, body));
    let code = next(&st.heartbeat_statuses).unwrap_or(202);
    if code == 202 {
        StatusCode::ACCEPTED.into_response()
    } else {
        ironic_error(code, "scripted heartbeat failure")
    }
}

/// `POST /v1/continue_inspection` as Ironic 39 answers an agent that sends no version header:
/// 202 with `{"uuid": ...}`, or the scripted error.
async fn continue_inspection(
    State(st): State<FakeState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    st.recorded.lock().expect("lock").inspections.push((headers, body));
    match next(&st.inspection_statuses).unwrap_or(202) {
        202 => (StatusCode::ACCEPTED, Json(json!({ "uuid": NODE_UUID }))).into_response(),
        code => ironic_error(code, "scripted inspection failure"),
    }
}

impl FakeConductor {
    pub async fn start(max_version: Option<&str>, lookups: Vec<LookupReply>, heartbeat_statuses: Vec<u16>) -> Self {
        Self::start_with_inspection(max_version, lookups, heartbeat_statuses, vec![202]).await
    }

    /// A fake conductor that also takes inspection data, answering `inspection_statuses` in
    /// order (the last repeats).
    pub async fn start_with_inspection(
        max_version: Option<&str>,
        lookups: Vec<LookupReply>,
        heartbeat_statuses: Vec<u16>,
        inspection_statuses: Vec<u16>,
    ) -> Self {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let state = FakeState {
            max_version: max_version.map(str::to_owned),
            lookups: Arc::new(Mutex::new(lookups)),
            heartbeat_statuses: Arc::new(Mutex::new(heartbeat_statuses)),
            inspection_statuses: Arc::new(Mutex::new(inspection_statuses)),
            recorded: Arc::clone(&recorded),
        };
        let app = axum::Router::new()
            .route("/", get(root))
            .route("/v1/lookup", get(lookup))
            .route("/v1/heartbeat/{uuid}", post(heartbeat))
            .route("/v1/continue_inspection", post(continue_inspection))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake conductor serves");
        });
        FakeConductor { addr, recorded, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Recorded {
        self.recorded.lock().expect("lock").clone()
    }

    pub fn heartbeat_count(&self) -> usize {
        self.recorded.lock().expect("lock").heartbeats.len()
    }

    /// Wait (bounded) until at least `n` heartbeats arrived.
    pub async fn wait_heartbeats(&self, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.heartbeat_count() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("expected {n} heartbeats, got {}", self.heartbeat_count()));
    }
}

/// An agent that looks itself up at `conductor`.
pub async fn managed(
    conductor: &FakeConductor,
    tls: ServerTls,
) -> Result<(RunningAgent, Arc<Gate>), rivet_agent::StartError> {
    let mut settings = base_settings();
    settings.api_url = Some(conductor.url().parse().expect("url"));
    let mut config = resolve(settings);
    config.server_tls = tls;
    let gate = Arc::new(Gate::default());
    let agent = rivet_agent::start_with(config, registry(Arc::clone(&gate)), Vec::new()).await?;
    Ok((agent, gate))
}

/// Run a tool a test needs (util-linux, e2fsprogs, dosfstools, qemu-img); its stdout. The test
/// fails with the tool's stderr when it does.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} runs: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device over a sparse file, made by the test and detached when dropped.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: String,
    _file: tempfile::NamedTempFile,
}

impl LoopDevice {
    /// A new loop device of `size` bytes. Needs root (CI runs as root); fails loudly otherwise.
    pub fn new(size: u64) -> Self {
        Self::with_content(size, None, false)
    }

    /// A loop device whose kernel partitions appear as `/dev/loopNpM`, over `content` (or a
    /// sparse file).
    pub fn with_content(size: u64, fill: Option<u8>, partscan: bool) -> Self {
        let extra: &[&str] = if partscan { &["--partscan"] } else { &[] };
        Self::with_losetup_args(size, fill, extra)
    }

    /// A read-only loop device (`losetup -r`), as BMC virtual media and install media are.
    pub fn read_only(size: u64, fill: Option<u8>) -> Self {
        Self::with_losetup_args(size, fill, &["--read-only"])
    }

    /// A loop device with `sector` -byte logical sectors (`losetup --sector-size`), as 4Kn disks.
    pub fn with_sector_size(size: u64, sector: u32) -> Self {
        Self::with_losetup_args(size, None, &["--sector-size", &sector.to_string(), "--partscan"])
    }

    fn with_losetup_args(size: u64, fill: Option<u8>, extra: &[&str]) -> Self {
        let file = tempfile::NamedTempFile::new().expect("backing file");
        match fill {
            Some(byte) => std::fs::write(file.path(), vec![byte; size as usize]).expect("fill"),
            None => file.as_file().set_len(size).expect("sparse size"),
        }
        let mut args = vec!["--find", "--show"];
        args.extend_from_slice(extra);
        let out = std::process::Command::new("losetup")
            .args(&args)
            .arg(file.path())
            .output()
            .expect("losetup runs (util-linux)");
        assert!(
            out.status.success(),
            "losetup failed (device tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(path.starts_with("/dev/loop"), "unexpected loop device {path:?}");
        LoopDevice { path, _file: file }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Partitions added with BLKPG outlive the loop device in some kernels: drop them first
        // so the next test to get this device does not inherit them.
        let _ = std::process::Command::new("partx")
            .args(["-d", &self.path])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("losetup").args(["-d", &self.path]).status();
    }
}
