//! Vendor hardware managers under test: a standalone `rivet-agent` (in this process, on
//! loopback, seeing no disk) over a managers directory of shell scripts, its command API, and a
//! census of the processes a manager left behind.
//!
//! Every script starts by exporting a marker that its children inherit; [`VendorAgent::survivors`]
//! finds every live process carrying it (or running from the managers directory), so a test can
//! assert that nothing a manager started outlives the call.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rivet_agent::config::{AgentConfig, BootParams, Settings};
use rivet_agent::{RunningAgent, StartError};
use serde_json::{Value, json};

/// The agent token of every test agent.
pub const TOKEN: &str = "vendor-token-0123456789abcdefghijklmn";

/// A node as the conductor sends it.
pub fn node() -> Value {
    json!({"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {}, "instance_info": {},
        "driver_info": {}, "driver_internal_info": {}})
}

/// A standalone agent over a managers directory written by the test.
#[derive(Debug)]
pub struct VendorAgent {
    /// The running agent.
    pub agent: RunningAgent,
    /// The temporary directory holding `managers/` (and whatever the scripts write).
    pub dir: tempfile::TempDir,
    marker: String,
    http: reqwest::Client,
}

/// Where a test's managers and marker live, before the agent starts.
#[derive(Debug)]
pub struct Managers {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
    /// The marker every script exports.
    pub marker: String,
}

impl Managers {
    /// A fresh directory with an empty `managers/`.
    pub fn new() -> Managers {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("managers")).expect("managers dir");
        let marker = format!(
            "rivet-vendor-test-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        Managers { dir, marker }
    }

    /// The managers directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("managers")
    }

    /// Install an executable `name` whose body follows a prologue that exports the marker and
    /// reads the request into `$request`, with `$method` and `$step` already extracted.
    pub fn install(&self, name: &str, body: &str) -> PathBuf {
        let text = format!(
            "#!/bin/sh\nexport RIVET_TEST_MARK={}\nrequest=$(cat)\n\
             method=$(printf '%s' \"$request\" | sed -n 's/.*\"method\": *\"\\([a-z_]*\\)\".*/\\1/p')\n\
             step=$(printf '%s' \"$request\" | sed -n 's/.*\"step\": *\"\\([A-Za-z0-9_]*\\)\".*/\\1/p')\n{body}\n",
            self.marker
        );
        self.install_raw(name, &text)
    }

    /// Install an executable `name` with exactly `text`.
    pub fn install_raw(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write manager");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// Start a standalone agent over these managers, with `tune` applied to its configuration
    /// (time limits, allowlist). It sees no disk unless `tune` changes the allowlist.
    pub async fn start(self, tune: impl FnOnce(&mut AgentConfig)) -> Result<VendorAgent, StartError> {
        let settings = Settings {
            listen_host: Some("127.0.0.1".parse().expect("ip")),
            listen_port: Some(0),
            standalone: Some(true),
            agent_token: Some(TOKEN.into()),
            disk_allow: Some("/dev/rivet-vendor-test-no-such-disk*".parse().expect("pattern")),
            hardware_managers_dir: Some(self.path()),
            ..Default::default()
        };
        let mut config = AgentConfig::resolve(settings, BootParams::default(), false).expect("valid settings");
        config.rescue_config_dir = self.dir.path().join("rescue");
        config.rescue_marker = self.dir.path().join("rescued");
        tune(&mut config);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let agent = rivet_agent::start(config).await?;
        Ok(VendorAgent {
            agent,
            dir: self.dir,
            marker: self.marker,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        })
    }
}

impl Default for Managers {
    fn default() -> Self {
        Managers::new()
    }
}

impl VendorAgent {
    /// Run command `name` with `params` and wait for its result (the command document).
    pub async fn command(&self, name: &str, params: Value) -> Value {
        let url = format!(
            "http://{}/v1/commands/?wait=true&agent_token={TOKEN}",
            self.agent.local_addr
        );
        let answer = self
            .http
            .post(url)
            .json(&json!({"name": name, "params": params}))
            .send()
            .await
            .expect("command sent");
        answer.json().await.expect("command answer is JSON")
    }

    /// `clean.execute_clean_step` of `step` with `args`.
    pub async fn run_clean_step(&self, step: &str, args: Value) -> Value {
        self.command(
            "clean.execute_clean_step",
            json!({"step": {"step": step, "priority": 0, "interface": "deploy", "args": args},
                "node": node(), "ports": []}),
        )
        .await
    }

    /// `clean.get_clean_steps`.
    pub async fn clean_steps(&self) -> Value {
        self.command("clean.get_clean_steps", json!({"node": node(), "ports": []}))
            .await
    }

    /// Whether `GET /v1/status` answers 200.
    pub async fn status_answers(&self) -> bool {
        let url = format!("http://{}/v1/status", self.agent.local_addr);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// Live processes a manager of this agent started (see the module doc).
    pub fn survivors(&self) -> Vec<String> {
        survivors(&self.marker, &self.dir.path().join("managers"))
    }

    /// Stop the agent.
    pub fn shutdown(&self) {
        self.agent.shutdown();
    }
}

/// Live (not zombie) processes whose environment holds `RIVET_TEST_MARK=<marker>` or whose
/// command line runs a file of `dir`: `pid command-line` each.
pub fn survivors(marker: &str, dir: &Path) -> Vec<String> {
    let needle = format!("RIVET_TEST_MARK={marker}");
    let dir = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let proc = entry.path();
        let zombie = std::fs::read_to_string(proc.join("stat"))
            .ok()
            .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
            .unwrap_or(true);
        if zombie {
            continue;
        }
        let environ = std::fs::read(proc.join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
        let has = |bytes: &[u8], text: &str| bytes.split(|b| *b == 0).any(|part| part == text.as_bytes());
        let runs_from_dir = cmdline
            .split(|b| *b == 0)
            .any(|part| String::from_utf8_lossy(part).starts_with(&dir));
        if has(&environ, &needle) || runs_from_dir {
            found.push(format!(
                "{name} {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// The command's error details (empty when it has none).
pub fn details(command: &Value) -> String {
    command["command_error"]["details"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Shell text that prints `value` as one line of JSON.
fn print_json(value: &Value) -> String {
    format!("printf '%s\\n' '{}'", value.to_string().replace('\'', "'\\''"))
}

/// Things a program can do instead of answering well.
fn misbehaviour() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just("kill -SEGV $$".to_owned()),
        Just("kill -KILL $$".to_owned()),
        (0u8..=255).prop_map(|code| format!("exit {code}")),
        Just("sleep 600 & sleep 600".to_owned()),
        Just("exec >&-; sleep 600".to_owned()),
        Just("(sleep 600 &) ; echo '{\"result\": 1}'".to_owned()),
        Just(":".to_owned()),
        Just("echo 'Segmentation fault (core dumped)'".to_owned()),
        Just("printf '{\"steps\": ['".to_owned()),
        Just("head -c 5000000 /dev/zero | tr '\\0' x".to_owned()),
        Just("head -c 5000000 /dev/zero | tr '\\0' e >&2".to_owned()),
        Just("yes '{\"progress\": \"x\"}' | head -n 100000".to_owned()),
    ]
}

/// A step as a program might list it: the fields the agent reads, with generated values.
fn generated_step() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let number = prop_oneof![
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(0.5)),
        Just(json!(1)),
        Just(json!(1e300)),
        Just(json!(u64::MAX)),
        Just(json!("60")),
        Just(Value::Null),
        crate::fuzz::json_value(),
    ];
    // Mostly well-formed, so that generated answers reach `run_step` too.
    (
        prop_oneof![4 => Just(json!("fuzz_step")), 1 => "[a-z_.0-9 ]{0,12}".prop_map(Value::String)],
        prop_oneof![4 => Just(json!("management")), 1 => Just(json!("deploy")), 1 => Just(json!("bogus")), 1 => Just(json!(3))],
        prop_oneof![4 => (0u32..100).prop_map(|p| json!(p)), 1 => number.clone()],
        prop_oneof![3 => Just(None), 2 => Just(Some(json!(1))), 1 => number.prop_map(Some)],
        prop_oneof![4 => Just(None), 1 => crate::fuzz::json_value().prop_map(Some)],
    )
        .prop_map(|(step, interface, priority, timeout, argsinfo)| {
            let mut s = json!({"step": step, "interface": interface, "priority": priority});
            if let Some(t) = timeout {
                s["timeout"] = t;
            }
            if let Some(a) = argsinfo {
                s["argsinfo"] = a;
            }
            s
        })
}

/// What a generated manager does for `get_steps` and for `run_step` (shell text each).
#[derive(Debug, Clone)]
pub struct GeneratedManager {
    /// The `get_steps` branch.
    pub get_steps: String,
    /// The `run_step` branch.
    pub run_step: String,
}

impl GeneratedManager {
    /// The whole script body (after [`Managers::install`]'s prologue): named `fuzz`, support 5.
    pub fn body(&self) -> String {
        format!(
            "case \"$method\" in\n  describe) echo '{{\"name\": \"fuzz\"}}' ;;\n  evaluate) echo '{{\"support\": 5}}' ;;\n  \
             get_steps) {} ;;\n  run_step) {} ;;\nesac",
            self.get_steps, self.run_step
        )
    }
}

/// `count` generated managers, the same for the same `seed`: listings of generated steps or raw
/// generated JSON or a misbehaviour; answers of generated JSON, progress floods, or misbehaviours.
pub fn generated_managers(seed: [u8; 32], count: usize) -> Vec<GeneratedManager> {
    use proptest::prelude::*;
    let get_steps = prop_oneof![
        4 => prop::collection::vec(generated_step(), 1..2).prop_map(|steps| print_json(&json!({ "steps": steps }))),
        1 => crate::fuzz::json_value().prop_map(|v| print_json(&v)),
        2 => misbehaviour(),
    ];
    let run_step = prop_oneof![
        1 => crate::fuzz::json_value().prop_map(|v| print_json(&json!({ "result": v }))),
        1 => crate::fuzz::json_value().prop_map(|v| print_json(&json!({ "error": v }))),
        1 => crate::fuzz::json_value().prop_map(|v| print_json(&json!({ "incompatible": v }))),
        1 => crate::fuzz::json_value().prop_map(|v| print_json(&v)),
        1 => crate::fuzz::json_value().prop_map(|v| format!("{}; {}", print_json(&json!({ "progress": v })), print_json(&json!({"result": 1})))),
        3 => misbehaviour(),
    ];
    let strategy = (get_steps, run_step).prop_map(|(get_steps, run_step)| GeneratedManager { get_steps, run_step });
    crate::fuzz::sample(&strategy, seed, count)
}

/// The members of a base64 gzip tarball (`log.collect_system_logs`): name → text.
pub fn tar_members(base64_archive: &str) -> std::collections::BTreeMap<String, String> {
    use base64::Engine;
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_archive)
        .expect("base64");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut out = std::collections::BTreeMap::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut text = String::new();
        let _ = entry.read_to_string(&mut text);
        out.insert(name, text);
    }
    out
}
