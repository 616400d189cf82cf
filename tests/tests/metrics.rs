//! Metrics (issue 21): the conductor's `/metrics` passes `promtool check metrics` (Debian's
//! Prometheus, unpacked into .venv/bin by deps/install), and its counters, and the in-process
//! agents', move while a node is cleaned and deployed by real agents.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::Method;
use rivet_tests::system::System;
use serde_json::{Value, json};

/// `promtool check metrics` on `text`: panics with promtool's words unless it accepts it.
fn promtool_accepts(what: &str, text: &str) {
    let promtool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/promtool");
    assert!(
        promtool.exists(),
        "{} is missing: run bash deps/install",
        promtool.display()
    );
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("metrics to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics refused the {what} metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample named `name` whose labels include every `labels` pair (0 if none).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels.iter().all(|(k, v)| {
                    rest.split(',')
                        .any(|pair| pair.trim_end_matches('}') == format!("{k}=\"{v}\""))
                })
        })
        .map(|(_, value)| value.parse::<f64>().expect("a number"))
        .sum()
}

async fn scrape(system: &System) -> String {
    let (status, body) = system.call(Method::GET, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    match body {
        Value::String(text) => text,
        other => panic!("metrics are text, not {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_counters_move_during_a_clean_and_a_deploy_and_promtool_accepts_them() {
    let system = System::start(|_| {}).await;
    let (uuid, _) = system.node(1).await;
    let before = scrape(&system).await;
    promtool_accepts("conductor", &before);
    let agent_before = rivet_agent::metrics::metrics().render();
    assert_eq!(
        sample(&before, "rivet_conductor_nodes", &[("provision_state", "enroll")]),
        1.0,
        "{before}"
    );

    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;
    system.provision(&uuid, json!({"target": "provide"})).await;
    system.wait_state(&uuid, "available").await;
    system.provision(&uuid, json!({"target": "active"})).await;
    system.wait_state(&uuid, "active").await;

    let after = scrape(&system).await;
    promtool_accepts("conductor", &after);
    assert_eq!(
        sample(
            &after,
            "rivet_conductor_nodes",
            &[("provision_state", "active"), ("power_state", "power on")]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "rivet_conductor_flows_running", &[]),
        0.0,
        "no flow runs on an active node: {after}"
    );
    let moved = |name: &str, labels: &[(&str, &str)]| {
        let (was, is) = (sample(&before, name, labels), sample(&after, name, labels));
        assert!(is > was, "{name} {labels:?} did not move: {was} then {is}\n{after}");
    };
    moved("rivet_conductor_heartbeat_duration_seconds_count", &[]);
    moved("rivet_conductor_lock_wait_seconds_count", &[]);
    moved(
        "rivet_conductor_api_requests_total",
        &[("method", "PUT"), ("status", "202")],
    );
    for step in [
        "deploy.erase_devices_metadata",
        "deploy.write_image",
        "deploy.boot_instance",
    ] {
        moved(
            "rivet_conductor_step_duration_seconds_count",
            &[("step", step), ("result", "done")],
        );
    }
    assert!(
        after.contains("rivet_conductor_db_connections{state=\"idle\"}"),
        "{after}"
    );

    // The agents run in this process: their counters are the process's.
    let agent_after = rivet_agent::metrics::metrics().render();
    for command in ["get_clean_steps", "execute_clean_step", "execute_deploy_step"] {
        let labels = [("command", command), ("result", "succeeded")];
        let (was, is) = (
            sample(&agent_before, "rivet_agent_commands_total", &labels),
            sample(&agent_after, "rivet_agent_commands_total", &labels),
        );
        assert!(is > was, "{command}: {was} then {is}\n{agent_after}");
    }
    promtool_accepts("agent", &agent_after);
    system.conductor.stop().await.expect("stops");
}
