//! Hardware managers through the real API: ranking, fall-through, first result wins, errors,
//! not-found, merge rules, version mismatch, executable managers (a script written here and
//! the documented example), the inventory's shape against IPA's capture, and the device
//! allowlist on a real loop device.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rivet_agent::error::{AgentError, ErrorKind};
use rivet_agent::hardware::{HardwareManager, ManagerError, StepContext, SupportLevel};
use rivet_common::node::{Node, Port};
use rivet_common::steps::{Step, StepType};
use serde_json::{Value, json};

use crate::support::{LoopDevice, PATIENCE, TOKEN, base_settings, command, resolve};

/// A scripted manager: its steps and how it answers each.
#[derive(Debug)]
struct TestManager {
    class: &'static str,
    name: &'static str,
    level: SupportLevel,
    steps: Vec<(&'static str, i64)>,
    answers: Vec<(&'static str, Answer)>,
}

#[derive(Debug, Clone)]
enum Answer {
    Value(Value),
    Incompatible,
    Fail,
    /// Report the devices this manager can see.
    Devices,
}

#[async_trait]
impl HardwareManager for TestManager {
    fn class_name(&self) -> String {
        self.class.into()
    }
    fn name(&self) -> String {
        self.name.into()
    }
    async fn evaluate_hardware_support(&self) -> SupportLevel {
        self.level
    }
    async fn get_steps(&self, step_type: StepType, _: &Node, _: &[Port]) -> Result<Vec<Step>, ManagerError> {
        if step_type != StepType::Clean {
            return Ok(Vec::new());
        }
        Ok(self
            .steps
            .iter()
            .map(|(name, prio)| Step {
                step: (*name).into(),
                priority: Some(*prio),
                interface: "deploy".into(),
                reboot_requested: Some(false),
                ..Default::default()
            })
            .collect())
    }
    async fn execute(&self, name: &str, ctx: StepContext) -> Result<Value, ManagerError> {
        match self.answers.iter().find(|(n, _)| *n == name).map(|(_, a)| a.clone()) {
            None => Err(ManagerError::NotImplemented),
            Some(Answer::Value(v)) => Ok(json!({ "by": self.name, "value": v, "args": ctx.args })),
            Some(Answer::Incompatible) => Err(ManagerError::Incompatible("not this one".into())),
            Some(Answer::Fail) => Err(ManagerError::Failed(AgentError::new(
                ErrorKind::Cleaning,
                format!("{} broke", self.name),
            ))),
            Some(Answer::Devices) => Ok(json!(
                ctx.devices
                    .list_disks()
                    .into_iter()
                    .map(|d| d.disk.name)
                    .collect::<Vec<_>>()
            )),
        }
    }
}

fn managers() -> Vec<Arc<dyn HardwareManager>> {
    vec![
        Arc::new(TestManager {
            class: "ZMainlineManager",
            name: "z_mainline",
            level: SupportLevel::MAINLINE,
            steps: vec![("shared", 90), ("tie", 5)],
            answers: vec![
                ("shared", Answer::Value(json!("mainline"))),
                ("declined", Answer::Value(json!("mainline took it"))),
            ],
        }),
        Arc::new(TestManager {
            class: "VendorManager",
            name: "vendor",
            level: SupportLevel::SERVICE_PROVIDER,
            steps: vec![("shared", 1), ("vendor_only", 0)],
            answers: vec![
                ("shared", Answer::Value(json!("vendor"))),
                ("declined", Answer::Incompatible),
                ("broken", Answer::Fail),
                ("devices", Answer::Devices),
            ],
        }),
        Arc::new(TestManager {
            class: "AMainlineManager",
            name: "a_mainline",
            level: SupportLevel::MAINLINE,
            steps: vec![("tie", 5)],
            answers: vec![("broken", Answer::Value(json!("never reached")))],
        }),
        Arc::new(TestManager {
            class: "AbsentManager",
            name: "absent",
            level: SupportLevel::NONE,
            steps: vec![("ghost", 100)],
            answers: vec![("ghost", Answer::Value(json!("boo")))],
        }),
    ]
}

/// An executable manager written by the test, with steps that misbehave on purpose.
const SCRIPT: &str = r#"#!/bin/sh
req=$(cat)
m=$(printf '%s' "$req" | sed -n 's/.*"method": *"\([a-z_]*\)".*/\1/p')
s=$(printf '%s' "$req" | sed -n 's/.*"step": *"\([a-z_]*\)".*/\1/p')
case "$m" in
  describe) echo '{"name": "script_manager", "version": "0.9"}' ;;
  evaluate) echo '{"support": 5}' ;;
  get_steps) echo '{"steps": [
     {"step": "script_step", "priority": 7, "interface": "deploy", "reboot_requested": false},
     {"step": "script_crash", "priority": 0, "interface": "deploy"},
     {"step": "script_garbage", "priority": 0, "interface": "deploy"},
     {"step": "script_slow", "priority": 0, "interface": "deploy", "timeout": 0.5},
     {"step": "script_errors", "priority": 0, "interface": "deploy"},
     {"step": "script_declines", "priority": 0, "interface": "deploy"},
     {"step": "script_disks", "priority": 0, "interface": "deploy"}]}' ;;
  run_step)
    case "$s" in
      script_step) echo '{"progress": "half way", "done": 1, "total": 2}'; echo '{"progress": "done"}'; echo '{"result": {"ran": "script_step"}}' ;;
      script_crash) echo "disk controller exploded" >&2; exit 3 ;;
      script_garbage) echo "this is not json" ;;
      script_slow) sleep 30; echo '{"result": null}' ;;
      script_errors) echo '{"error": "firmware refused the update"}' ;;
      script_declines) echo '{"incompatible": "no such controller here"}' ;;
      script_disks) printf '{"result": %s}\n' "$(printf '%s' "$req" | sed -n 's/.*"disks": *\(\[[^]]*\]\).*/\1/p')" ;;
    esac ;;
esac
"#;

fn install(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

struct Agent {
    agent: rivet_agent::RunningAgent,
    _dir: tempfile::TempDir,
}

async fn agent_with_managers(disk_allow: Option<String>) -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    install(dir.path(), "50-script", SCRIPT);
    install(
        dir.path(),
        "60-acme-bios",
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/managers/acme-bios.sh"))
            .expect("example"),
    );
    install(dir.path(), "70-broken", "#!/bin/sh\necho not json\n");
    install(
        dir.path(),
        "80-unsupported",
        "#!/bin/sh\nread r\ncase \"$r\" in *describe*) echo '{\"name\": \"nope\"}';; *) echo '{\"support\": 0}';; esac\n",
    );
    std::fs::write(dir.path().join("README"), "not executable: ignored").expect("write");
    let mut settings = base_settings();
    settings.standalone = Some(true);
    settings.agent_token = Some(TOKEN.into());
    settings.hardware_managers_dir = Some(dir.path().to_owned());
    settings.disk_allow = disk_allow.map(|d| d.parse().expect("pattern"));
    let agent = rivet_agent::start_with(resolve(settings), rivet_agent::default_registry(), managers())
        .await
        .expect("starts");
    Agent { agent, _dir: dir }
}

fn node() -> Value {
    json!({"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {}, "instance_info": {}, "driver_info": {}, "driver_internal_info": {}})
}

async fn run_step(agent: &rivet_agent::RunningAgent, step: &str, extra: Value) -> Value {
    let mut params = json!({"step": {"step": step, "priority": 0, "interface": "deploy"}, "node": node(), "ports": []});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    command(agent, "clean.execute_clean_step", params).await
}

#[tokio::test]
async fn steps_are_ranked_merged_and_versioned() {
    let a = agent_with_managers(None).await;
    let r = command(&a.agent, "clean.get_clean_steps", json!({"node": node(), "ports": []})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let result = &r["command_result"];
    let groups: Vec<&str> = result["clean_steps"]
        .as_object()
        .expect("groups")
        .keys()
        .map(String::as_str)
        .collect();
    // Manager order = support order: script (5), vendor and acme (3, compiled-in managers load
    // before executables and ties keep load order), the two mainlines (2), generic (1).
    assert_eq!(
        groups,
        [
            "script_manager",
            "VendorManager",
            "acme_bios",
            "ZMainlineManager",
            "AMainlineManager",
            "GenericHardwareManager"
        ]
    );
    let steps_of = |group: &str| -> Vec<String> {
        result["clean_steps"][group]
            .as_array()
            .expect("list")
            .iter()
            .map(|s| s["step"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(
        steps_of("VendorManager"),
        ["shared", "vendor_only"],
        "higher support wins 'shared' despite lower priority"
    );
    assert_eq!(steps_of("ZMainlineManager"), Vec::<String>::new());
    assert_eq!(
        steps_of("AMainlineManager"),
        ["tie"],
        "a tie in support and priority goes to the smaller name"
    );
    assert!(steps_of("GenericHardwareManager").contains(&"erase_pstore".to_owned()));
    assert_eq!(
        result["hardware_manager_version"],
        json!({"script_manager": "0.9", "acme_bios": "1.3", "vendor": "1.0", "z_mainline": "1.0", "a_mainline": "1.0", "generic_hardware_manager": "1.2"}),
        "managers answering NONE (absent, nope) and broken ones are not loaded"
    );
    a.agent.shutdown();
}

#[tokio::test]
async fn dispatch_falls_through_and_first_answer_wins() {
    let a = agent_with_managers(None).await;
    let agent = &a.agent;
    // First manager with the method answers.
    let r = run_step(agent, "shared", json!({})).await;
    assert_eq!(r["command_result"]["clean_result"]["by"], "vendor", "{r}");
    assert_eq!(
        r["command_result"]["clean_step"],
        json!({"step": "shared", "priority": 0, "interface": "deploy"}),
        "the step is echoed"
    );
    // Incompatible passes to the next manager.
    let r = run_step(agent, "declined", json!({})).await;
    assert_eq!(r["command_result"]["clean_result"]["by"], "z_mainline");
    // Any other error fails the step; later managers are not asked.
    let r = run_step(agent, "broken", json!({})).await;
    assert_eq!(r["command_status"], "FAILED");
    assert_eq!(
        r["command_error"],
        json!({"type": "CleaningError", "code": 500, "message": "Clean step failed", "details": "vendor broke"})
    );
    // Nobody implements it.
    let r = run_step(agent, "nobody_has_this", json!({})).await;
    assert_eq!(
        r["command_error"],
        json!({"type": "HardwareManagerMethodNotFound", "code": 500, "message": "No HardwareManager found to handle method", "details": "Could not find method: nobody_has_this"})
    );
    // Step args and extra keyword arguments reach the manager.
    let mut params = json!({"step": {"step": "shared", "priority": 0, "interface": "deploy", "args": {"a": 1}}, "node": node(), "ports": [], "extra": "x"});
    let r = command(agent, "clean.execute_clean_step", params.take()).await;
    assert_eq!(
        r["command_result"]["clean_result"]["args"],
        json!({"extra": "x", "a": 1})
    );
    a.agent.shutdown();
}

#[tokio::test]
async fn version_mismatch_and_malformed_steps_answer_as_upstream() {
    let a = agent_with_managers(None).await;
    let agent = &a.agent;
    let r = run_step(
        agent,
        "shared",
        json!({"clean_version": {"generic_hardware_manager": "0.0"}}),
    )
    .await;
    assert_eq!(r["command_status"], "CLEAN_VERSION_MISMATCH");
    assert_eq!(r["command_result"], Value::Null);
    assert_eq!(r["command_error"]["type"], "VersionMismatch");
    assert_eq!(r["command_error"]["code"], 409);
    let details = r["command_error"]["details"].as_str().expect("details");
    assert!(
        details.starts_with("Current versions: {'generic_hardware_manager': '1.2'")
            || details.starts_with("Current versions: {"),
        "{details}"
    );
    assert!(
        details.ends_with("versions used by ironic: {'generic_hardware_manager': '0.0'}"),
        "{details}"
    );
    // The versions the agent reported are accepted.
    let steps = command(agent, "clean.get_clean_steps", json!({"node": node(), "ports": []})).await;
    let versions = steps["command_result"]["hardware_manager_version"].clone();
    let r = run_step(agent, "shared", json!({"clean_version": versions})).await;
    assert_eq!(r["command_status"], "SUCCEEDED");
    // Deploy and service steps use their own keys and the same status text.
    let r = command(agent, "deploy.execute_deploy_step", json!({"step": {"step": "x", "interface": "deploy"}, "node": node(), "ports": [], "deploy_version": {"x": "1"}})).await;
    assert_eq!(r["command_status"], "CLEAN_VERSION_MISMATCH");
    // Same text as IPA's async_clean_missing_step_key capture.
    let r = command(
        agent,
        "clean.execute_clean_step",
        json!({"step": {"priority": 99, "interface": "deploy"}, "node": node(), "ports": []}),
    )
    .await;
    assert_eq!(r["command_status"], "FAILED");
    assert_eq!(
        r["command_error"],
        json!({"type": "CommandExecutionError", "code": 500, "message": "Command execution failed", "details": "Malformed clean_step, no \"step\" key: {'priority': 99, 'interface': 'deploy'}"})
    );
    a.agent.shutdown();
}

#[tokio::test]
async fn executable_managers_report_progress_and_failures_clearly() {
    let a = agent_with_managers(None).await;
    let agent = &a.agent;
    let r = run_step(agent, "script_step", json!({})).await;
    assert_eq!(
        r["command_result"]["clean_result"],
        json!({"ran": "script_step"}),
        "{r}"
    );
    let cases = [
        ("script_crash", "failed with exit status: 3: disk controller exploded"),
        ("script_garbage", "output that is not JSON"),
        (
            "script_slow",
            "did not finish run_step within 0.5 s; its processes were stopped",
        ),
        ("script_errors", "firmware refused the update"),
    ];
    for (step, text) in cases {
        let r = tokio::time::timeout(PATIENCE, run_step(agent, step, json!({})))
            .await
            .expect("bounded");
        assert_eq!(r["command_status"], "FAILED", "{step}");
        assert_eq!(r["command_error"]["type"], "CleaningError", "{step}");
        let details = r["command_error"]["details"].as_str().expect("details");
        assert!(
            details.contains(text) && details.contains("50-script"),
            "{step}: {details}"
        );
    }
    // "incompatible" passes on; nobody else has the step.
    let r = run_step(agent, "script_declines", json!({})).await;
    assert_eq!(r["command_error"]["type"], "HardwareManagerMethodNotFound");
    // The documented example manager works.
    let r = run_step(agent, "apply_bios_profile", json!({"profile": "performance"})).await;
    assert_eq!(
        r["command_result"]["clean_result"],
        json!({"profile": "performance", "applied": true}),
        "{r}"
    );
    a.agent.shutdown();
}

#[tokio::test]
async fn executable_progress_lines_reach_the_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    install(dir.path(), "m", SCRIPT);
    let manager = rivet_agent::hardware::executable::ExecutableManager::load(&dir.path().join("m"), Default::default())
        .await
        .expect("loads");
    let (progress, seen) = rivet_agent::progress::Progress::recording();
    let ctx = StepContext {
        node: Node::default(),
        ports: Vec::new(),
        args: Default::default(),
        devices: rivet_agent::disk::devices::DeviceView::new(Some(Vec::new()), false),
        progress,
        step_type: Some(StepType::Clean),
        image_writer: None,
        managers: Default::default(),
    };
    let out = manager.execute("script_step", ctx).await.expect("runs");
    assert_eq!(out, json!({"ran": "script_step"}));
    let seen = seen.lock().expect("lock").clone();
    let messages: Vec<&str> = seen.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["half way", "done"]);
    let measure = seen[0].measure.expect("the first line has a measure");
    assert_eq!((measure.done, measure.total), (1, Some(2)));
    assert_eq!(measure.unit, rivet_agent::progress::Unit::Items);
    assert_eq!(seen[1].measure, None);
}

fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(n) if n.is_f64() => json!("float"),
        Value::Number(_) => json!("int"),
        Value::String(_) => json!("str"),
    }
}

/// Key sets equal, and every value that is non-null on both sides has the same JSON type.
fn same_shape(ours: &Value, theirs: &Value, at: &str) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            let (mut sa, mut sb) = (ka.clone(), kb.clone());
            sa.sort();
            sb.sort();
            assert_eq!(sa, sb, "keys differ at {at}");
            for k in ka {
                same_shape(&a[k], &b[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                same_shape(x, y, &format!("{at}[0]"));
            }
        }
        (_, Value::String(t)) | (Value::String(t), _) if t == "null" => {}
        (a, b) => assert_eq!(a, b, "type differs at {at}"),
    }
}

#[tokio::test]
async fn inventory_has_the_shape_of_ipas() {
    let a = agent_with_managers(None).await;
    let r = command(&a.agent, "poll.get_hardware_info", json!({})).await;
    let ours = shape(&r["command_result"]);
    let capture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/upstream/ipa/post_poll_get_hardware_info.json"
        ))
        .expect("fixture"),
    )
    .expect("json");
    let theirs = shape(&capture["body"]["command_result"]);
    // IPA captured one interface and one disk; compare an element of each list only when both
    // sides have one (a build machine may have no NIC with a device link).
    same_shape(&ours, &theirs, "inventory");
    a.agent.shutdown();
}

#[tokio::test]
async fn an_allowlist_hides_the_machines_own_disks_from_every_manager() {
    let loopdev = LoopDevice::new(64 << 20);
    let path = loopdev.path.clone();
    let a = agent_with_managers(Some(path.clone())).await;
    let agent = &a.agent;
    let inv = command(agent, "poll.get_hardware_info", json!({})).await;
    let disks: Vec<&str> = inv["command_result"]["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .map(|d| d["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        disks,
        [path.as_str()],
        "the inventory lists only the allowed loop device"
    );
    assert_eq!(inv["command_result"]["disks"][0]["size"], 64 << 20);
    // A compiled-in manager sees only it.
    let r = run_step(agent, "devices", json!({})).await;
    assert_eq!(r["command_result"]["clean_result"], json!([path]), "{r}");
    // An executable manager is handed only it.
    let r = run_step(agent, "script_disks", json!({})).await;
    let names: Vec<&str> = r["command_result"]["clean_result"]
        .as_array()
        .expect("disks")
        .iter()
        .map(|d| d["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, [path.as_str()], "{r}");
    a.agent.shutdown();
}

#[tokio::test]
async fn generic_steps_are_ipas_own_definitions() {
    let a = agent_with_managers(None).await;
    for (kind, fixture) in [
        ("clean", "post_clean_get_clean_steps"),
        ("deploy", "post_deploy_get_deploy_steps"),
        ("service", "post_service_get_service_steps"),
    ] {
        let ours = command(
            &a.agent,
            &format!("{kind}.get_{kind}_steps"),
            json!({"node": node(), "ports": []}),
        )
        .await;
        let path = format!(
            "{}/../tests/fixtures/upstream/ipa/{fixture}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let capture: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
        let theirs = capture["body"]["command_result"][format!("{kind}_steps")]["GenericHardwareManager"]
            .as_array()
            .expect("steps")
            .clone();
        let ours = ours["command_result"][format!("{kind}_steps")]["GenericHardwareManager"]
            .as_array()
            .expect("steps")
            .clone();
        assert!(!ours.is_empty(), "{kind}");
        for step in &ours {
            let same = theirs.iter().find(|t| t["step"] == step["step"]);
            assert_eq!(Some(step), same, "{kind} step {} differs from IPA's", step["step"]);
        }
    }
    a.agent.shutdown();
}

/// The Rust example of docs/vendor-guide.md, built by `cargo test` and run as its own process
/// with the same flags as `rivet-agent`: its manager's step answers through the real API.
#[tokio::test]
async fn the_rust_example_manager_runs_as_an_agent() {
    let exe = std::env::current_exe().expect("test binary");
    let example = exe
        .parent()
        .and_then(Path::parent)
        .map(|debug| debug.join("examples/vendor_manager"))
        .expect("target dir");
    assert!(example.exists(), "cargo test builds {}", example.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let empty = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(&example)
        .args([
            "--standalone",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .args([
            "--agent-token",
            TOKEN,
            "--kernel-cmdline",
            "/dev/null",
            "--disk-allow",
            "/dev/rivet-no-disk*",
        ])
        .arg("--hardware-managers-dir")
        .arg(empty.path())
        .kill_on_drop(true)
        .spawn()
        .expect("example starts");
    let url = format!("http://127.0.0.1:{port}/v1/commands/?wait=true&agent_token={TOKEN}");
    let body = json!({"name": "clean.execute_clean_step", "params": {"step": {"step": "reset_controller",
        "interface": "raid", "priority": 0, "args": {}}, "node": node(), "ports": []}});
    let http = crate::support::http();
    let mut answer = None;
    for _ in 0..200 {
        if let Ok(r) = http.post(&url).json(&body).send().await {
            answer = Some(r.json::<Value>().await.expect("JSON"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let answer = answer.expect("the example agent answered");
    assert_eq!(answer["command_status"], "SUCCEEDED", "{answer}");
    assert!(!answer["command_result"]["clean_result"].is_null(), "{answer}");
}
