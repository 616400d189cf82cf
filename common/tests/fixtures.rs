//! Wire test: every JSON body captured from upstream Ironic 39 and IPA 13.0.0 in
//! `tests/fixtures/upstream/` parses into a `rivet-common` type and serialises back to an equal JSON
//! value. A fixture file this test does not know fails the test, so new captures are never
//! silently skipped.

use std::path::{Path, PathBuf};

use rivet_common::agent_api::{RootDoc, StatusDoc, V1Doc};
use rivet_common::command::{CommandList, CommandRequest, CommandResult};
use rivet_common::error::{Fault, IronicError};
use rivet_common::image::ImageInfo;
use rivet_common::inventory::Inventory;
use rivet_common::ironic_api::{IronicRootDoc, IronicV1Doc};
use rivet_common::node::{HistoryEvent, Node, Port};
use rivet_common::ramdisk::{HeartbeatRequest, LookupResponse};
use rivet_common::steps::{Step, StepType, StepsResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/upstream")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Parse `value` as `T`, serialise it again and demand the same JSON value.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value, what: &str) -> T {
    let parsed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: does not parse: {e}"));
    let back = serde_json::to_value(&parsed).unwrap_or_else(|e| panic!("{what}: does not serialise: {e}"));
    assert_eq!(&back, value, "{what}: serialises to a different document");
    parsed
}

/// The typed checks every command result gets, whatever file it came from.
fn check_command_result(result: &CommandResult, what: &str) {
    let Some(answer) = &result.command_result else {
        return;
    };
    match result.command_name.as_str() {
        "get_clean_steps" | "get_deploy_steps" | "get_service_steps" => {
            let kind: StepType = result.command_name["get_".len()..result.command_name.len() - "_steps".len()]
                .parse()
                .expect("known step type");
            let steps = StepsResult::from_value(kind, answer).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                &steps.to_value(kind),
                answer,
                "{what}: steps result changes on the way back"
            );
        }
        "get_hardware_info" => {
            let inventory: Inventory = round_trip(answer, &format!("{what} inventory"));
            assert!(
                inventory.extra.is_empty(),
                "{what}: inventory keys unknown to Rivet: {:?}",
                inventory.extra.keys()
            );
        }
        "execute_clean_step" | "execute_deploy_step" | "execute_service_step" => {
            let kind = &result.command_name["execute_".len()..result.command_name.len() - "_step".len()];
            let step = &answer[format!("{kind}_step")];
            check_step(step, what);
        }
        _ => {}
    }
}

fn check_step(step: &Value, what: &str) {
    let step: Step = round_trip(step, &format!("{what} step"));
    if let Some(info) = step.args.as_ref().and_then(|a| a.get("image_info")) {
        round_trip::<ImageInfo>(info, &format!("{what} image_info"));
    }
}

fn check_command_request(body: &Value, what: &str) {
    let request: CommandRequest = round_trip(body, &format!("{what} request"));
    if let Some(step) = request.params.get("step").filter(|s| s.get("step").is_some()) {
        check_step(step, what);
    }
    if let Some(node) = request.params.get("node") {
        round_trip::<Node>(node, &format!("{what} node"));
    }
    if let Some(ports) = request.params.get("ports") {
        round_trip::<Vec<Port>>(ports, &format!("{what} ports"));
    }
}

fn check_ipa(name: &str, doc: &Value) {
    let request = &doc["request"];
    // Malformed bodies are inputs of the agent's error tests, not documents to round-trip.
    let well_formed = |b: &&Value| b["name"].is_string() && b["params"].is_object();
    if let Some(body) = request.get("body").filter(well_formed) {
        check_command_request(body, name);
    }
    let status = doc["status"].as_u64().expect("status");
    let body = &doc["body"];
    let path = request.get("path").and_then(Value::as_str).unwrap_or("");
    if status == 308 {
        // Werkzeug's HTML redirect page; Rivet serves these paths directly (see the agent tests).
        assert!(body.is_string(), "{name}: a redirect body is HTML text");
        return;
    }
    if status >= 400 {
        round_trip::<Fault>(body, name);
        return;
    }
    match path {
        "/" => drop(round_trip::<RootDoc>(body, name)),
        "/v1/" => drop(round_trip::<V1Doc>(body, name)),
        "/v1/status" | "/status" => drop(round_trip::<StatusDoc>(body, name)),
        p if p.starts_with("/v1/commands/?") && request["method"] == "GET" => {
            let list: CommandList = round_trip(body, name);
            for result in &list.commands {
                check_command_result(result, name);
            }
        }
        _ => {
            let result: CommandResult = round_trip(body, name);
            check_command_result(&result, name);
        }
    }
}

fn check_ironic(name: &str, doc: &Value) {
    match name {
        "http_get_root.json" => drop(round_trip::<IronicRootDoc>(doc, name)),
        "http_get_v1.json" | "http_get_v1_latest.json" => drop(round_trip::<IronicV1Doc>(doc, name)),
        "http_get_node_ports_latest.json" => drop(round_trip::<Vec<Port>>(&doc["ports"], name)),
        n if n.starts_with("http_get_node_") => drop(round_trip::<Node>(doc, name)),
        n if n.starts_with("http_lookup_") || n.starts_with("http_heartbeat_") => {
            let err: IronicError = round_trip(doc, name);
            assert!(!err.faultstring().is_empty());
        }
        "cli_node_create.json" | "cli_node_show_manageable.json" | "cli_node_show_active.json" => {
            drop(round_trip::<Node>(doc, name))
        }
        "cli_port_create.json" => drop(round_trip::<Port>(doc, name)),
        "cli_port_list.json" => drop(round_trip::<Vec<Port>>(doc, name)),
        "cli_node_history.json" => drop(round_trip::<Vec<HistoryEvent>>(doc, name)),
        // The CLI's own table rendering of `node validate` (capitalised column names), not an
        // HTTP body; the conductor tests compare the API answer the CLI turned into this.
        "cli_node_validate_enroll.json" => {}
        other => panic!("unclassified Ironic fixture {other}: teach tests/fixtures.rs about it"),
    }
}

fn check_flow(name: &str, doc: &Value) {
    let request = &doc["request"];
    let status = doc["status"].as_u64().expect("status");
    let body = &doc["body"];
    if name.starts_with("agent_POST_") {
        check_command_request(&request["body"], name);
        let result: CommandResult = round_trip(body, name);
        check_command_result(&result, name);
    } else if name.starts_with("agent_GET_commands") {
        let list: CommandList = round_trip(body, name);
        for result in &list.commands {
            check_command_result(result, name);
        }
    } else if name.starts_with("conductor_lookup_") {
        if status == 200 {
            round_trip::<LookupResponse>(body, name);
        } else {
            round_trip::<IronicError>(body, name);
        }
    } else if name.starts_with("conductor_heartbeat_") {
        round_trip::<HeartbeatRequest>(&request["body"], name);
        if status == 202 {
            assert_eq!(body, "", "{name}: 202 has an empty body");
        } else {
            round_trip::<IronicError>(body, name);
        }
    } else {
        panic!("unclassified flow fixture {name}: teach tests/fixtures.rs about it");
    }
}

fn json_files(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            out.push((name, load(&path)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn ipa_fixtures_round_trip() {
    let files = json_files(&fixtures_dir().join("ipa"));
    assert!(files.len() >= 40, "expected the IPA captures, found {}", files.len());
    for (name, doc) in &files {
        check_ipa(name, doc);
    }
}

#[test]
fn ironic_fixtures_round_trip() {
    let files = json_files(&fixtures_dir().join("ironic"));
    assert!(files.len() >= 15, "expected the Ironic captures, found {}", files.len());
    for (name, doc) in &files {
        check_ironic(name, doc);
    }
}

#[test]
fn ironic_flow_fixtures_round_trip() {
    let files = json_files(&fixtures_dir().join("ironic/flow"));
    assert!(files.len() >= 15, "expected the flow captures, found {}", files.len());
    for (name, doc) in &files {
        check_flow(name, doc);
    }
}
