//! Vendor managers that cannot hurt the agent (issue 16): for each way an executable can
//! misbehave (bad numbers, hangs, children, floods of output, crashes, exiting early or late),
//! the agent stays up (`GET /v1/status` answers), the error names the manager, and no process
//! of the manager is left. The generated cases are in `manager_fuzz.rs`.

use std::time::Duration;

use rivet_tests::vendor::{Managers, VendorAgent, details};
use serde_json::{Value, json};

const DESCRIBE: &str = r#"describe) echo '{"name": "acme", "version": "1.0"}' ;;
  evaluate) echo '{"support": 5}' ;;"#;

/// A manager named `acme` with one clean step `acme_step` (extra step keys `step_keys`) whose
/// `run_step` is `run`.
fn acme(step_keys: &str, run: &str) -> String {
    format!(
        "case \"$method\" in\n  {DESCRIBE}\n  get_steps) echo '{{\"steps\": [{{\"step\": \"acme_step\", \"priority\": 0, \
         \"interface\": \"management\"{step_keys}}}]}}' ;;\n  run_step) {run} ;;\nesac"
    )
}

async fn start(managers: Managers, query: u64, step: u64) -> VendorAgent {
    managers
        .start(|c| {
            c.manager_timeouts.query = Duration::from_secs(query);
            c.manager_timeouts.step = Duration::from_secs(step);
        })
        .await
        .expect("agent starts")
}

/// The agent is up and nothing of the manager runs.
async fn unharmed(agent: &VendorAgent) {
    assert!(agent.status_answers().await, "GET /v1/status answers");
    assert_eq!(agent.survivors(), Vec::<String>::new(), "processes left behind");
}

fn listed(steps: &Value, manager: &str) -> Vec<String> {
    steps["command_result"]["clean_steps"][manager]
        .as_array()
        .map(|l| l.iter().filter_map(|s| s["step"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_step_timeout_outside_its_range_is_refused_naming_manager_field_and_value() {
    for bad in ["-1", "1e300", "0", "\"60\"", "604801"] {
        let managers = Managers::new();
        managers.install(
            "50-acme",
            &acme(&format!(", \"timeout\": {bad}"), "echo '{\"result\": 1}'"),
        );
        let agent = start(managers, 10, 10).await;
        let steps = agent.clean_steps().await;
        assert_eq!(steps["command_status"], "SUCCEEDED", "{bad}: {steps}");
        assert!(
            listed(&steps, "acme").is_empty(),
            "{bad}: the broken listing is left out: {steps}"
        );
        assert!(
            listed(&steps, "GenericHardwareManager").contains(&"erase_devices_metadata".to_owned()),
            "{bad}: the other managers' steps stay: {steps}"
        );
        let run = agent.run_clean_step("acme_step", json!({})).await;
        assert_eq!(run["command_status"], "FAILED", "{bad}: {run}");
        let text = details(&run);
        // serde_json writes 1e300 back as 1e+300.
        let value = bad.replace("1e300", "1e+300");
        assert!(
            text.contains("hardware manager acme") && text.contains(&format!("steps[0].timeout {value}")),
            "{bad}: {text}"
        );
        unharmed(&agent).await;
        agent.shutdown();
    }
}

#[tokio::test]
async fn a_timeout_stops_every_process_the_step_started() {
    let managers = Managers::new();
    managers.install("50-acme", &acme(", \"timeout\": 1", "sleep 600 & sleep 600"));
    let agent = start(managers, 10, 10).await;
    let run = agent.run_clean_step("acme_step", json!({})).await;
    assert_eq!(run["command_status"], "FAILED", "{run}");
    let text = details(&run);
    assert!(
        text.contains("hardware manager acme")
            && text.contains("did not finish run_step within 1 s; its processes were stopped"),
        "{text}"
    );
    unharmed(&agent).await;
    agent.shutdown();
}

#[tokio::test]
async fn a_step_ends_when_its_last_process_ends_not_when_it_answers() {
    let managers = Managers::new();
    let flag = managers.dir.path().join("flashed");
    managers.install(
        "50-acme",
        &acme(
            "",
            &format!(
                "(sleep 1; echo done > {}) >/dev/null 2>&1 </dev/null & echo '{{\"result\": \"started\"}}'",
                flag.display()
            ),
        ),
    );
    let agent = start(managers, 10, 60).await;
    let run = agent.run_clean_step("acme_step", json!({})).await;
    assert_eq!(run["command_status"], "SUCCEEDED", "{run}");
    assert!(
        flag.exists(),
        "the background flash finished before the step was reported done"
    );
    unharmed(&agent).await;
    agent.shutdown();
}

#[tokio::test]
async fn a_hanging_evaluate_costs_its_time_limit_and_leaves_nothing() {
    let managers = Managers::new();
    managers.install(
        "50-hang",
        "case \"$method\" in\n  describe) echo '{\"name\": \"hang\"}' ;;\n  evaluate) sleep 600 & sleep 600 ;;\nesac",
    );
    let agent = start(managers, 1, 10).await;
    let steps = agent.clean_steps().await;
    assert!(
        steps["command_result"]["hardware_manager_version"]
            .get("hang")
            .is_none(),
        "not loaded: {steps}"
    );
    unharmed(&agent).await;
    agent.shutdown();
}

#[tokio::test]
async fn a_crashing_get_steps_costs_only_its_own_steps() {
    let managers = Managers::new();
    managers.install(
        "50-crash",
        &format!("case \"$method\" in\n  {DESCRIBE}\n  get_steps|run_step) kill -SEGV $$ ;;\nesac"),
    );
    let agent = start(managers, 10, 10).await;
    let steps = agent.clean_steps().await;
    assert_eq!(steps["command_status"], "SUCCEEDED", "{steps}");
    assert!(!listed(&steps, "GenericHardwareManager").is_empty(), "{steps}");
    // The generic step answers with its own error, not with the vendor's crash.
    let run = agent
        .run_clean_step("clean_uefi_nvram", json!({"match_patterns": 5}))
        .await;
    assert_eq!(run["command_error"]["type"], "InvalidCommandParamsError", "{run}");
    assert!(
        details(&run).contains("match_patterns must be a list of strings"),
        "{run}"
    );
    // The vendor's own step: its listing failure is the reason given.
    let run = agent.run_clean_step("acme_step", json!({})).await;
    assert_eq!(run["command_error"]["type"], "HardwareManagerMethodNotFound", "{run}");
    assert!(
        details(&run).contains("hardware manager acme") && details(&run).contains("get_steps failed"),
        "{run}"
    );
    unharmed(&agent).await;
    agent.shutdown();
}

#[tokio::test]
async fn a_manager_is_told_what_it_may_write() {
    let managers = Managers::new();
    managers.install("50-acme", &acme("", "printf '{\"result\": %s}\\n' \"$request\""));
    let agent = start(managers, 10, 10).await;
    let run = agent.run_clean_step("acme_step", json!({})).await;
    assert_eq!(run["command_status"], "SUCCEEDED", "{run}");
    let request = &run["command_result"]["clean_result"];
    // Outside a ramdisk, with an allowlist that matches nothing: no disk, no machine change.
    assert_eq!(
        request["destructive"],
        json!({"disks": [], "machine": false}),
        "{request}"
    );
    assert_eq!(request["disks"], json!([]), "{request}");
    unharmed(&agent).await;
    agent.shutdown();
}

#[tokio::test]
async fn two_managers_with_one_name_are_refused_naming_both_files() {
    let managers = Managers::new();
    let first = managers.install("50-acme", &acme("", "echo '{\"result\": 1}'"));
    let second = managers.install("60-acme-again", &acme("", "echo '{\"result\": 2}'"));
    let err = managers.start(|_| {}).await.expect_err("refused at start").to_string();
    assert!(
        err.contains("\"acme\"")
            && err.contains(&first.display().to_string())
            && err.contains(&second.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn floods_of_output_are_cut_off() {
    let cases = [
        (
            "head -c 100000000 /dev/zero | tr '\\0' x",
            "wrote a JSON object longer than 4194304 bytes for run_step",
        ),
        (
            "while :; do echo '{\"progress\": \"still going\"}'; done",
            "wrote more than 67108864 bytes of output for run_step",
        ),
        (
            "head -c 100000000 /dev/zero | tr '\\0' e >&2; exit 1",
            "run_step failed with exit status: 1: eeee",
        ),
    ];
    for (run, expected) in cases {
        let managers = Managers::new();
        managers.install("50-acme", &acme("", run));
        let agent = start(managers, 10, 60).await;
        let result = agent.run_clean_step("acme_step", json!({})).await;
        assert_eq!(result["command_status"], "FAILED", "{run}: {result}");
        let text = details(&result);
        assert!(
            text.contains("hardware manager acme") && text.contains(expected),
            "{run}: {text:.300}"
        );
        assert!(text.len() < 6000, "{run}: the error quotes only the end of stderr");
        unharmed(&agent).await;
        agent.shutdown();
    }
}

#[tokio::test]
async fn exiting_early_or_late_is_a_clear_error() {
    let cases = [
        ("exit 0", "gave no answer to run_step"),
        ("echo '{\"result\": 1}'; exit 7", "run_step failed with exit status: 7"),
        ("exec >&-; sleep 600", "did not finish run_step within 1 s"),
        (
            "echo '{\"result\": 1, \"error\": \"x\"}'",
            "does not hold exactly one of result, error or incompatible",
        ),
        ("echo '{\"error\": 5}'", "error 5: is not a string"),
        ("echo '{\"result\":'", "incomplete JSON"),
    ];
    for (run, expected) in cases {
        let managers = Managers::new();
        managers.install("50-acme", &acme(", \"timeout\": 1", run));
        let agent = start(managers, 10, 10).await;
        let result = agent.run_clean_step("acme_step", json!({})).await;
        assert_eq!(result["command_status"], "FAILED", "{run}: {result}");
        let text = details(&result);
        assert!(
            text.contains("hardware manager acme") && text.contains(expected),
            "{run}: {text}"
        );
        unharmed(&agent).await;
        agent.shutdown();
    }
}

/// The guide's shell example in the ramdisk's userland: a root holding only the static busybox
/// (Debian's busybox-static, as imagebuild puts in the ramdisk) and its applets, entered with
/// chroot; the agent calls it through a one-line wrapper.
#[tokio::test]
async fn the_shell_example_runs_with_busybox_alone() {
    let managers = Managers::new();
    let root = managers.dir.path().join("busybox-root");
    std::fs::create_dir_all(root.join("bin")).expect("root");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static is installed (deps/debian-packages)");
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    let installed = std::process::Command::new("chroot")
        .arg(&root)
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .status()
        .expect("chroot runs (as root)");
    assert!(installed.success(), "busybox --install in the chroot");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/examples/managers/acme-bios.sh");
    std::fs::copy(example, root.join("acme-bios")).expect("copy example");
    managers.install_raw(
        "60-acme-bios",
        &format!("#!/bin/sh\nexec chroot {} /bin/sh /acme-bios\n", root.display()),
    );
    let agent = start(managers, 10, 10).await;
    let steps = agent.clean_steps().await;
    assert_eq!(listed(&steps, "acme_bios"), ["apply_bios_profile"], "{steps}");
    let run = agent
        .run_clean_step("apply_bios_profile", json!({"profile": "performance"}))
        .await;
    assert_eq!(
        run["command_result"]["clean_result"],
        json!({"profile": "performance", "applied": true}),
        "{run}"
    );
    let run = agent.run_clean_step("apply_bios_profile", json!({})).await;
    assert!(
        details(&run).ends_with("step apply_bios_profile: argument profile is required"),
        "{run}"
    );
    unharmed(&agent).await;
    agent.shutdown();
}

/// IPA's other hooks, taken on by naming them in `describe`: inventory additions (a standard
/// key is not overwritten), system-log members, and the install device.
#[tokio::test]
async fn an_executable_takes_on_the_hooks_it_names() {
    let managers = Managers::new();
    managers.install(
        "50-acme",
        r#"case "$RIVET_MANAGER_METHOD" in
  describe) echo '{"name": "acme", "hooks": ["inventory_additions", "collect_system_logs", "get_os_install_device"]}' ;;
  evaluate) echo '{"support": 5}' ;;
  get_steps) echo '{"steps": []}' ;;
  inventory_additions) echo '{"result": {"acme_raid": {"controllers": 2}, "cpu": "overwritten?"}}' ;;
  collect_system_logs) echo '{"result": {"raid-controller.log": "controller 0: optimal"}}' ;;
  get_os_install_device) echo '{"result": "/dev/sdz"}' ;;
  *) echo "called for $RIVET_MANAGER_METHOD" >&2; exit 9 ;;
esac"#,
    );
    let agent = start(managers, 10, 10).await;
    let info = agent.command("poll.get_hardware_info", json!({})).await;
    let inventory = &info["command_result"];
    assert_eq!(inventory["acme_raid"], json!({"controllers": 2}), "{info}");
    assert!(
        inventory["cpu"].is_object(),
        "the standard key stays: {}",
        inventory["cpu"]
    );

    let logs = agent.command("log.collect_system_logs", json!({})).await;
    let archive = logs["command_result"]["system_logs"].as_str().expect("system_logs");
    let members = rivet_tests::vendor::tar_members(archive);
    assert_eq!(
        members.get("managers/acme/raid-controller.log").map(String::as_str),
        Some("controller 0: optimal"),
        "{:?}",
        members.keys().collect::<Vec<_>>()
    );

    let image_info = json!({"id": "img", "urls": ["http://127.0.0.1:9/img"], "disk_format": "raw",
        "os_hash_algo": "sha256", "os_hash_value": "0".repeat(64)});
    let run = agent
        .command(
            "standby.prepare_image",
            json!({"image_info": image_info, "configdrive": null}),
        )
        .await;
    assert_eq!(run["command_error"]["type"], "DeviceNotFound", "{run}");
    assert!(
        details(&run).contains("a hardware manager chose /dev/sdz to install the OS on"),
        "{run}"
    );
    unharmed(&agent).await;
    agent.shutdown();
}
