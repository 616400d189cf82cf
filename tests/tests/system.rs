//! System test: one rivet-conductor and several real rivet-agent instances in one process over
//! loopback HTTP (TLS pinned to each agent's own certificate), with a simulated BMC that boots
//! an agent whenever a node powers on from PXE. The agents' hardware manager touches no disk.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use rivet_tests::system::System;
use serde_json::json;

fn position(journal: &[String], entry: &str) -> usize {
    journal
        .iter()
        .position(|e| e == entry)
        .unwrap_or_else(|| panic!("{entry:?} missing from {journal:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_go_from_enroll_to_active_and_back_with_real_agents() {
    let system = System::start(|_| {}).await;
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(system.node(i).await);
    }
    for (uuid, _) in &nodes {
        system.provision(uuid, json!({"target": "manage"})).await;
    }
    for (uuid, _) in &nodes {
        system.wait_state(uuid, "manageable").await;
        system.provision(uuid, json!({"target": "provide"})).await;
    }
    for (uuid, _) in &nodes {
        let node = system.wait_state(uuid, "available").await;
        assert_eq!(
            node["power_state"], "power off",
            "cleaning ends with the ramdisk powered off"
        );
        // In-band and out-of-band steps in priority order: 99 (agent), 50 (BMC), 10 (agent).
        let journal = system.lab.journal_of(uuid);
        let meta = position(&journal, "agent erase_devices_metadata");
        let bmc = position(&journal, "bmc clear_job_queue");
        let erase = position(&journal, "agent erase_devices");
        assert!(meta < bmc && bmc < erase, "{journal:?}");
        assert!(
            !journal.iter().any(|e| e == "agent sim_configure"),
            "priority 0 steps are not automated"
        );
    }
    for (uuid, _) in &nodes {
        system
            .provision(
                uuid,
                json!({"target": "active", "configdrive": {"meta_data": {"hostname": "sim"}}}),
            )
            .await;
    }
    for (uuid, control) in &nodes {
        let node = system.wait_state(uuid, "active").await;
        assert_eq!(node["power_state"], "power on");
        assert_eq!(
            control.instance_boots.load(Ordering::SeqCst),
            1,
            "the instance booted from disk once"
        );
        let journal = system.lab.journal_of(uuid);
        assert!(journal.iter().any(|e| e == "agent write_image"), "{journal:?}");
        let dii = &node["driver_internal_info"];
        // The shape of the deploy-steps documentation: the list and the final index.
        let steps: Vec<&str> = dii["deploy_steps"]
            .as_array()
            .expect("deploy_steps kept")
            .iter()
            .map(|s| s["step"].as_str().expect("step"))
            .collect();
        assert_eq!(
            steps,
            [
                "deploy",
                "write_image",
                "prepare_instance_boot",
                "tear_down_agent",
                "switch_to_tenant_network",
                "boot_instance"
            ]
        );
        assert_eq!(dii["deploy_step_index"], 5);
        for step in dii["deploy_steps"].as_array().expect("list") {
            for key in ["priority", "interface", "step", "argsinfo"] {
                assert!(step.get(key).is_some(), "deploy step lacks {key}: {step}");
            }
        }
        assert_eq!(
            dii["agent_cached_deploy_steps"]["deploy"][0]["step"], "write_image",
            "cached in-band steps: {dii}"
        );
        assert_eq!(
            dii["hardware_manager_version"],
            json!({"sim_hardware": "1.1", "generic_hardware_manager": "1.2"})
        );
        assert!(
            dii.get("agent_secret_token").is_none() && dii.get("agent_url").is_none(),
            "the agent session ended: {dii}"
        );
    }
    for (uuid, _) in &nodes {
        system.provision(uuid, json!({"target": "undeploy"})).await;
    }
    for (uuid, _) in &nodes {
        system.wait_state(uuid, "available").await;
    }
    system.conductor.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_versions_tokens_timeouts_and_manual_cleaning() {
    let system = System::start(|config| config.clean_callback_timeout = Duration::from_secs(2)).await;
    let (upgraded, upgrade) = system.node(1).await;
    let (failing, fail) = system.node(2).await;
    let (silent, dead) = system.node(3).await;
    let (manual, _) = system.node(4).await;
    *upgrade.bump_version_after.lock().expect("lock") = Some("erase_devices_metadata".into());
    *fail.fail_step.lock().expect("lock") = Some("erase_devices".into());
    dead.never_boots.store(true, Ordering::SeqCst);
    for uuid in [&upgraded, &failing, &silent, &manual] {
        system.provision(uuid, json!({"target": "manage"})).await;
        system.wait_state(uuid, "manageable").await;
    }
    for uuid in [&upgraded, &failing, &silent] {
        system.provision(uuid, json!({"target": "provide"})).await;
    }
    system.provision(&manual, json!({"target": "clean", "clean_steps": [{"interface": "deploy", "step": "sim_configure", "args": {"level": "high"}}]})).await;

    // A hardware-manager upgrade mid-cleaning restarts automated cleaning from the first step.
    system.wait_state(&upgraded, "available").await;
    let journal = system.lab.journal_of(&upgraded);
    let runs = journal.iter().filter(|e| *e == "agent erase_devices_metadata").count();
    assert_eq!(
        runs, 2,
        "metadata erased, versions changed, cleaning restarted: {journal:?}"
    );
    let (_, history) = system
        .call(Method::GET, &format!("/v1/nodes/{upgraded}/history"), None)
        .await;
    assert!(
        history.to_string().contains("automated cleaning restarted"),
        "{history}"
    );

    // A failing in-band step: clean failed, with the agent's message.
    let node = system.wait_state(&failing, "clean failed").await;
    let error = node["last_error"].as_str().expect("last_error");
    assert!(
        error.contains("simulated failure: /dev/sda reported a medium error"),
        "{error}"
    );
    assert!(error.contains("erase_devices"), "{error}");
    assert_eq!(
        node["maintenance"], true,
        "a failed clean step puts the node in maintenance, as upstream"
    );
    assert_eq!(node["fault"], "clean failure");

    // A silent agent: the callback timeout fails the node and says what was awaited.
    let node = system.wait_state(&silent, "clean failed").await;
    let error = node["last_error"].as_str().expect("last_error");
    assert!(
        error.contains("Timeout reached while waiting for callback") && error.contains("first heartbeat"),
        "{error}"
    );

    // Manual cleaning with a step and its arguments returns to manageable.
    system.wait_state(&manual, "manageable").await;
    assert!(
        system
            .lab
            .journal_of(&manual)
            .iter()
            .any(|e| e == "agent sim_configure")
    );

    // A heartbeat with a wrong token is refused.
    let (status, body) = system
        .call(
            Method::POST,
            &format!("/v1/heartbeat/{upgraded}"),
            Some(json!({"callback_url": "https://127.0.0.1:1", "agent_token": "stolen", "agent_version": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("Invalid or missing agent token"), "{body}");
    system.conductor.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_lookup_answer_does_not_strand_the_node() {
    let system = System::start(|_| {}).await;
    let (uuid, control) = system.node(1).await;
    let (proxy, lookups, _server) = rivet_tests::proxy::lossy_lookup_proxy(system.conductor.url()).await;
    *control.api_url.lock().expect("lock") = Some(proxy);
    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;
    system.provision(&uuid, json!({"target": "provide"})).await;
    system.wait_state(&uuid, "available").await;
    assert!(
        lookups.load(Ordering::SeqCst) >= 2,
        "the first answer was lost and the agent looked up again"
    );
    // Another host asking for the same node gets the mask, never the token.
    system.provision(&uuid, json!({"target": "active"})).await;
    system.wait_state(&uuid, "active").await;
    system.conductor.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_overrides_reorder_and_disable_clean_steps() {
    let system = System::start(|config| {
        config.clean_step_priority_override = [
            ("deploy.erase_devices".to_owned(), 0),
            ("management.clear_job_queue".to_owned(), 100),
        ]
        .into();
    })
    .await;
    let (uuid, _) = system.node(1).await;
    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;
    system.provision(&uuid, json!({"target": "provide"})).await;
    system.wait_state(&uuid, "available").await;
    let journal = system.lab.journal_of(&uuid);
    assert!(
        position(&journal, "bmc clear_job_queue") < position(&journal, "agent erase_devices_metadata"),
        "{journal:?}"
    );
    assert!(
        !journal.iter().any(|e| e == "agent erase_devices"),
        "a step overridden to 0 is not automated: {journal:?}"
    );
    system.conductor.stop().await.expect("stops");
}

/// `abort` while a step that cannot be interrupted runs: the flow stops after that step, the
/// node fails with the operator's reason and the ramdisk is powered off (the abort was lost on
/// the way to the database before: the node stayed in `clean wait` until the callback timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abort_during_a_running_step_stops_the_flow_after_it() {
    let system = System::start(|_| {}).await;
    let (uuid, control) = system.node(1).await;
    *control.slow_step.lock().expect("lock") = Some(("sim_configure".into(), Duration::from_secs(3)));
    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;
    system
        .provision(
            &uuid,
            json!({"target": "clean", "clean_steps": [
                {"interface": "deploy", "step": "sim_configure", "args": {"level": "high"}},
                {"interface": "deploy", "step": "erase_devices_metadata"},
            ]}),
        )
        .await;
    // Wait until the slow step runs in the agent, then abort.
    system
        .wait_step(&uuid, "clean wait", "clean_step", "sim_configure")
        .await;
    system.provision(&uuid, json!({"target": "abort"})).await;
    let node = system.wait_state(&uuid, "clean failed").await;
    let error = node["last_error"].as_str().expect("last_error");
    assert!(
        error.contains("aborted after the completion of step \"sim_configure\""),
        "{error}"
    );
    assert_eq!(node["power_state"], "power off", "the ramdisk is powered off");
    let journal = system.lab.journal_of(&uuid);
    assert!(
        !journal.iter().any(|e| e == "agent erase_devices_metadata"),
        "no step runs after the abort: {journal:?}"
    );
    system.conductor.stop().await.expect("stops");
}

/// Issue 22's lifecycle resources with real agents: an allocation picks the only node with the
/// trait, the deploy template its instance traits name adds a step the agent runs during
/// deployment, and a runbook gives the steps of a manual cleaning and of a servicing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allocations_deploy_templates_and_runbooks_drive_real_agents() {
    let system = System::start(|_| {}).await;
    let (plain, _) = system.node(1).await;
    let (gold, _) = system.node(2).await;
    for (uuid, traits) in [
        (&plain, json!(["CUSTOM_TUNED"])),
        (&gold, json!(["CUSTOM_GOLD", "CUSTOM_TUNED"])),
    ] {
        let patch = json!([{"op": "replace", "path": "/resource_class", "value": "sim"}]);
        assert_eq!(
            system
                .call(Method::PATCH, &format!("/v1/nodes/{uuid}"), Some(patch))
                .await
                .0,
            200
        );
        let body = json!({"traits": traits});
        assert_eq!(
            system
                .call(Method::PUT, &format!("/v1/nodes/{uuid}/traits"), Some(body))
                .await
                .0,
            204
        );
        system.provision(uuid, json!({"target": "manage"})).await;
        system.wait_state(uuid, "manageable").await;
    }

    // A runbook approved for CUSTOM_TUNED drives a manual cleaning.
    let step =
        |level: &str| json!({"interface": "deploy", "step": "sim_configure", "args": {"level": level}, "order": 0});
    let (status, runbook) = system
        .call(
            Method::POST,
            "/v1/runbooks",
            Some(json!({"name": "tune", "steps": [step("runbook")]})),
        )
        .await;
    assert_eq!(status, 201, "{runbook}");
    let (status, body) = system
        .call(
            Method::PUT,
            "/v1/runbooks/tune/traits",
            Some(json!({"traits": ["CUSTOM_TUNED"]})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    system
        .provision(&plain, json!({"target": "clean", "runbook": "tune"}))
        .await;
    system.wait_state(&plain, "manageable").await;
    assert!(system.lab.journal_of(&plain).iter().any(|e| e == "agent sim_configure"));
    for uuid in [&plain, &gold] {
        system.provision(uuid, json!({"target": "provide"})).await;
        system.wait_state(uuid, "available").await;
    }

    // The allocation takes the gold node; its deploy template adds sim_configure (priority 60).
    let template = json!({"name": "CUSTOM_GOLD", "steps": [
        {"interface": "deploy", "step": "sim_configure", "args": {"level": "template"}, "priority": 60}]});
    assert_eq!(
        system
            .call(Method::POST, "/v1/deploy_templates", Some(template))
            .await
            .0,
        201
    );
    let (status, allocation) = system
        .call(
            Method::POST,
            "/v1/allocations",
            Some(json!({"resource_class": "sim", "traits": ["CUSTOM_GOLD"]})),
        )
        .await;
    assert_eq!(status, 201, "{allocation}");
    let path = format!("/v1/allocations/{}", allocation["uuid"].as_str().expect("uuid"));
    let mut allocation = allocation;
    for _ in 0..100 {
        if allocation["state"] != "allocating" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        allocation = system.call(Method::GET, &path, None).await.1;
    }
    assert_eq!(
        (allocation["state"].as_str(), allocation["node_uuid"].as_str()),
        (Some("active"), Some(gold.as_str()))
    );
    let before = system
        .lab
        .journal_of(&gold)
        .iter()
        .filter(|e| *e == "agent sim_configure")
        .count();
    system.provision(&gold, json!({"target": "active"})).await;
    let node = system.wait_state(&gold, "active").await;
    let steps: Vec<String> = node["driver_internal_info"]["deploy_steps"]
        .as_array()
        .expect("deploy_steps kept")
        .iter()
        .map(|s| format!("{}@{}", s["step"].as_str().unwrap_or_default(), s["priority"]))
        .collect();
    assert!(steps.contains(&"sim_configure@60".to_owned()), "{steps:?}");
    let journal = system.lab.journal_of(&gold);
    assert_eq!(
        journal.iter().filter(|e| *e == "agent sim_configure").count(),
        before + 1,
        "{journal:?}"
    );

    // The same runbook services the deployed node; the plain one was never allocated.
    system
        .provision(&gold, json!({"target": "service", "runbook": "tune"}))
        .await;
    system.wait_state(&gold, "active").await;
    let journal = system.lab.journal_of(&gold);
    assert_eq!(
        journal.iter().filter(|e| *e == "agent sim_configure").count(),
        before + 2,
        "{journal:?}"
    );
    let (_, plain_node) = system.call(Method::GET, &format!("/v1/nodes/{plain}"), None).await;
    assert_eq!(plain_node["allocation_uuid"], serde_json::Value::Null);
    system.conductor.stop().await.expect("stops");
}

/// The reserved flow-control steps with real agents. `hold` stops a manual cleaning, a
/// deployment and a servicing between agent steps until `unhold`, which goes on at once (Ironic
/// 39 drops these steps: docs/compatibility.md); `wait` without seconds goes
/// on at the agent's next heartbeat and with seconds after its pause, cut to
/// `max_conductor_wait_step_seconds` with a warning; `abort` of a hold stops the flow at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_and_wait_steps_pause_flows_until_unhold_or_abort() {
    let system = System::start(|config| config.max_conductor_wait_step_seconds = 1).await;
    let (uuid, _) = system.node(1).await;
    let (aborted, _) = system.node(2).await;
    for node in [&uuid, &aborted] {
        system.provision(node, json!({"target": "manage"})).await;
        system.wait_state(node, "manageable").await;
    }
    let count = |step: &str| {
        let entry = format!("agent {step}");
        system.lab.journal_of(&uuid).iter().filter(|e| **e == entry).count()
    };
    let unhold = async |state: &str, step: &str| {
        let node = system.wait_state(&uuid, state).await;
        let flow = state.split(' ').next().expect("flow");
        assert_eq!(node[format!("{flow}_step")]["step"], "hold", "{node}");
        let before = count(step);
        // Held: heartbeats come and go, nothing runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, node) = system.call(Method::GET, &format!("/v1/nodes/{uuid}"), None).await;
        assert_eq!(node["provision_state"], state);
        assert_eq!(count(step), before, "nothing runs while held");
        system.provision(&uuid, json!({"target": "unhold"})).await;
        before
    };

    system
        .provision(
            &uuid,
            json!({"target": "clean", "clean_steps": [
                {"interface": "deploy", "step": "sim_configure", "args": {"level": "high"}},
                {"interface": "deploy", "step": "hold"},
                {"interface": "deploy", "step": "wait"},
                {"interface": "deploy", "step": "wait", "args": {"seconds": 3600}},
                {"interface": "deploy", "step": "erase_devices_metadata"},
            ]}),
        )
        .await;
    let before = unhold("clean hold", "erase_devices_metadata").await;
    assert_eq!(count("sim_configure"), 1, "the step before the hold ran");
    system.wait_state(&uuid, "manageable").await;
    assert_eq!(
        count("erase_devices_metadata"),
        before + 1,
        "the flow went on after unhold"
    );
    let (_, history) = system
        .call(Method::GET, &format!("/v1/nodes/{uuid}/history"), None)
        .await;
    for text in [
        "Held by step deploy.hold",
        "Released from hold",
        "asked to wait 3600 s; the conductor waits at most 1 s",
    ] {
        assert!(history.to_string().contains(text), "{text}: {history}");
    }

    system.provision(&uuid, json!({"target": "provide"})).await;
    system.wait_state(&uuid, "available").await;
    system
        .provision(
            &uuid,
            json!({"target": "active", "deploy_steps": [{"interface": "deploy", "step": "hold", "priority": 70}]}),
        )
        .await;
    unhold("deploy hold", "sim_configure").await;
    let node = system.wait_state(&uuid, "active").await;
    let deployed: Vec<&str> = node["driver_internal_info"]["deploy_steps"]
        .as_array()
        .expect("deploy_steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    let at = |name: &str| deployed.iter().position(|s| *s == name).unwrap_or(usize::MAX);
    assert!(
        at("write_image") < at("hold") && at("hold") < at("prepare_instance_boot"),
        "{deployed:?}"
    );

    system
        .provision(
            &uuid,
            json!({"target": "service", "service_steps": [
                {"interface": "deploy", "step": "hold"},
                {"interface": "deploy", "step": "sim_configure", "args": {"level": "low"}},
            ]}),
        )
        .await;
    let before = unhold("service hold", "sim_configure").await;
    system.wait_state(&uuid, "active").await;
    assert_eq!(
        count("sim_configure"),
        before + 1,
        "the service step after the hold ran"
    );

    // A bad pause is refused with the request; an abort of a hold stops at once.
    let (status, body) = system
        .call(
            Method::PUT,
            &format!("/v1/nodes/{aborted}/states/provision"),
            Some(json!({"target": "clean", "clean_steps": [{"interface": "deploy", "step": "wait", "args": {"seconds": "soon"}}]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("must be a whole number of seconds"), "{body}");
    system
        .provision(
            &aborted,
            json!({"target": "clean", "clean_steps": [
                {"interface": "deploy", "step": "hold"},
                {"interface": "deploy", "step": "erase_devices_metadata"},
            ]}),
        )
        .await;
    system.wait_state(&aborted, "clean hold").await;
    system.provision(&aborted, json!({"target": "abort"})).await;
    let node = system.wait_state(&aborted, "clean failed").await;
    let error = node["last_error"].as_str().expect("last_error");
    assert!(error.contains("step \"hold\""), "{error}");
    assert_eq!(node["power_state"], "power off", "the ramdisk is powered off");
    assert!(
        !system
            .lab
            .journal_of(&aborted)
            .iter()
            .any(|e| e == "agent erase_devices_metadata"),
        "no step runs after the abort"
    );
    system.conductor.stop().await.expect("stops");
}

/// `abort` of a servicing returns the node to `active` with its instance booted from its disk
/// again, as Ironic's `do_node_service_abort` does: at once from a `service hold`, from `service
/// failed` once the operator has taken the node out of the maintenance its failed step put it in
/// (refused before, 409, as Ironic refuses it), and after a step that cannot be interrupted. It
/// used to leave `service failed` with the machine powered off, or `active` powered off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_servicing_returns_the_instance_to_active() {
    let system = System::start(|_| {}).await;
    let (uuid, control) = system.node(1).await;
    for (target, state) in [("manage", "manageable"), ("provide", "available"), ("active", "active")] {
        system.provision(&uuid, json!({ "target": target })).await;
        system.wait_state(&uuid, state).await;
    }
    let configured = || {
        system
            .lab
            .journal_of(&uuid)
            .iter()
            .filter(|e| *e == "agent sim_configure")
            .count()
    };
    let steps = json!([
        {"interface": "deploy", "step": "hold"},
        {"interface": "deploy", "step": "sim_configure", "args": {"level": "low"}},
    ]);
    system
        .provision(&uuid, json!({"target": "service", "service_steps": steps}))
        .await;
    system.wait_state(&uuid, "service hold").await;
    system.provision(&uuid, json!({"target": "abort"})).await;
    let node = system.wait_state(&uuid, "active").await;
    assert_eq!(
        node["last_error"],
        "By request, the service operation was aborted during or after the completion of step \"deploy.hold\""
    );
    assert_eq!(node["power_state"], "power on", "the instance boots again");
    assert_eq!(node["service_step"], json!({}));
    assert_eq!(configured(), 0, "no step ran after the abort");

    *control.fail_step.lock().expect("lock") = Some("sim_configure".into());
    let steps = json!([{"interface": "deploy", "step": "sim_configure", "args": {"level": "low"}}]);
    system
        .provision(&uuid, json!({"target": "service", "service_steps": steps}))
        .await;
    let node = system.wait_state(&uuid, "service failed").await;
    assert_eq!(node["maintenance"], true, "{node}");
    let abort = json!({"target": "abort"});
    let path = format!("/v1/nodes/{uuid}/states/provision");
    let (status, body) = system.call(Method::PUT, &path, Some(abort.clone())).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("while it is in maintenance mode"), "{body}");
    let (status, body) = system
        .call(Method::DELETE, &format!("/v1/nodes/{uuid}/maintenance"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    system.provision(&uuid, abort).await;
    let node = system.wait_state(&uuid, "active").await;
    assert_eq!(node["last_error"], "By request, the service operation was aborted");
    assert_eq!(node["power_state"], "power on", "the instance boots again");

    // A step that cannot be interrupted: the abort comes once it has ended, to the same place.
    *control.fail_step.lock().expect("lock") = None;
    *control.slow_step.lock().expect("lock") = Some(("sim_configure".into(), Duration::from_secs(2)));
    system
        .provision(&uuid, json!({"target": "service", "service_steps": steps}))
        .await;
    system
        .wait_step(&uuid, "service wait", "service_step", "sim_configure")
        .await;
    system.provision(&uuid, json!({"target": "abort"})).await;
    let node = system.wait_state(&uuid, "active").await;
    assert_eq!(
        node["last_error"],
        "By request, the service operation was aborted during or after the completion of step \"deploy.sim_configure\""
    );
    assert_eq!(node["power_state"], "power on", "the instance boots again");
    system.conductor.stop().await.expect("stops");
}

/// Rescue through real agents (issue 22): an active node is rescued with a password, the agent
/// is handed its hash and stops, the node is `rescue`; unrescue boots the instance again. A
/// ramdisk that never calls back ends in `rescue failed` after the timeout, powered off.
#[tokio::test]
async fn rescue_and_unrescue_drive_real_agents() {
    let system = System::start(|config| {
        config.automated_clean = false;
        config.rescue_callback_timeout = Duration::from_secs(2);
        config.check_provision_state_interval = Duration::from_millis(200);
    })
    .await;
    let (uuid, control) = system.node(1).await;
    let (lost, lost_control) = system.node(2).await;
    for node in [&uuid, &lost] {
        system.provision(node, json!({"target": "manage"})).await;
        system.wait_state(node, "manageable").await;
        system.provision(node, json!({"target": "provide"})).await;
        system.wait_state(node, "available").await;
        system.provision(node, json!({"target": "active"})).await;
        system.wait_state(node, "active").await;
    }

    system
        .provision(&uuid, json!({"target": "rescue", "rescue_password": "s3cret"}))
        .await;
    let node = system.wait_state(&uuid, "rescue").await;
    assert_eq!(node["power_state"], "power on");
    assert!(node["last_error"].is_null(), "{node}");
    let journal = system.lab.journal_of(&uuid);
    assert!(
        journal.iter().any(|e| e == "rescue user set up (hashed true, $6$)"),
        "the agent got the SHA-512 crypt hash, never the password: {journal:?}"
    );
    assert!(!node.to_string().contains("s3cret"), "{node}");
    system.provision(&uuid, json!({"target": "unrescue"})).await;
    let node = system.wait_state(&uuid, "active").await;
    assert_eq!(node["power_state"], "power on");
    assert_eq!(
        control.instance_boots.load(Ordering::SeqCst),
        2,
        "the instance booted again"
    );
    assert!(node["instance_info"].get("hashed_rescue_password").is_none(), "{node}");

    // A rescue ramdisk that never boots: the timeout fails the rescue and powers it off.
    lost_control.never_boots.store(true, Ordering::SeqCst);
    system
        .provision(&lost, json!({"target": "rescue", "rescue_password": "x"}))
        .await;
    let node = system.wait_state(&lost, "rescue failed").await;
    assert_eq!(
        node["last_error"],
        format!("Timeout reached while waiting for rescue ramdisk callback for node {lost}")
    );
    assert_eq!(node["power_state"], "power off");
}

/// Adoption (issue 22): a machine already running its OS becomes `active` without a ramdisk
/// booting or a disk being written, its power state kept.
#[tokio::test]
async fn adoption_reaches_active_without_writing_a_disk() {
    let system = System::start(|_| {}).await;
    let (uuid, control) = system.node(1).await;
    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;
    system.provision(&uuid, json!({"target": "adopt"})).await;
    let node = system.wait_state(&uuid, "active").await;
    assert!(node["last_error"].is_null(), "{node}");
    let journal = system.lab.journal_of(&uuid);
    assert!(
        !journal.iter().any(|e| e.contains("ramdisk booting")),
        "no ramdisk: {journal:?}"
    );
    assert!(
        !journal.iter().any(|e| e.starts_with("agent ")),
        "no agent step ran: {journal:?}"
    );
    assert_eq!(
        control.instance_boots.load(Ordering::SeqCst),
        0,
        "the machine was not rebooted"
    );
    // An adopted node is undeployed like a deployed one.
    system.provision(&uuid, json!({"target": "deleted"})).await;
    system.wait_state(&uuid, "available").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automated_cleaning_runs_the_configured_runbook() {
    // Ironic's [conductor]automated_cleaning_step_source = runbook with a default runbook.
    let system = System::start(|c| {
        c.cleaning_runbooks.source = rivet_conductor::config::CleaningStepSource::Runbook;
        c.cleaning_runbooks.default = Some("CUSTOM_QUICK_WIPE".into());
    })
    .await;
    let (approved, _) = system.node(1).await;
    let (other, _) = system.node(2).await;
    let steps = json!([{"interface": "deploy", "step": "sim_configure", "args": {"level": "wipe"}, "order": 1},
                       {"interface": "deploy", "step": "erase_devices_metadata", "args": {}, "order": 0}]);
    let (status, body) = system
        .call(
            Method::POST,
            "/v1/runbooks",
            Some(json!({"name": "CUSTOM_QUICK_WIPE", "steps": steps})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = system
        .call(
            Method::PUT,
            "/v1/runbooks/CUSTOM_QUICK_WIPE/traits",
            Some(json!({"traits": ["CUSTOM_QUICK_WIPE"]})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = system
        .call(
            Method::PUT,
            &format!("/v1/nodes/{approved}/traits"),
            Some(json!({"traits": ["CUSTOM_QUICK_WIPE"]})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    for uuid in [&approved, &other] {
        system.provision(uuid, json!({"target": "manage"})).await;
        system.wait_state(uuid, "manageable").await;
    }

    // The approved node is cleaned by the runbook's steps, in their order, and nothing else.
    system.provision(&approved, json!({"target": "provide"})).await;
    system.wait_state(&approved, "available").await;
    let journal = system.lab.journal_of(&approved);
    let meta = position(&journal, "agent erase_devices_metadata");
    let configure = position(&journal, "agent sim_configure");
    assert!(meta < configure, "{journal:?}");
    assert!(
        !journal
            .iter()
            .any(|e| e == "agent erase_devices" || e == "bmc clear_job_queue"),
        "only the runbook's steps: {journal:?}"
    );
    let (_, node) = system.call(Method::GET, &format!("/v1/nodes/{approved}"), None).await;
    assert!(
        node["driver_internal_info"].get("automated_cleaning_runbook").is_none(),
        "{node}"
    );

    // A node without the runbook's trait is not provided, and stays where it was (Ironic's words).
    let (status, body) = system
        .call(
            Method::PUT,
            &format!("/v1/nodes/{other}/states/provision"),
            Some(json!({"target": "provide"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("None of the runbook's traits ['CUSTOM_QUICK_WIPE'] match a node trait"),
        "{body}"
    );
    let (_, node) = system.call(Method::GET, &format!("/v1/nodes/{other}"), None).await;
    assert_eq!(node["provision_state"], "manageable");
    system.conductor.stop().await.expect("stops");
}

/// RAID through the `agent` RAID interface with a real agent whose hardware manager is a RAID
/// controller's (the simulated machine's): manual cleaning builds the node's target
/// configuration and the conductor records what was built (`raid_config`, the root volume's
/// size, device hint and RAID level); a deploy step builds the configuration it is given; a
/// deletion clears it; a creation without a target fails, saying so, before the agent is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raid_is_built_deployed_and_deleted_through_the_agents_raid_steps() {
    let system = System::start(|_| {}).await;
    let (uuid, _) = system.node(1).await;
    let path = format!("/v1/nodes/{uuid}");
    let (status, node) = system
        .call(
            Method::PATCH,
            &path,
            Some(json!([{"op": "replace", "path": "/raid_interface", "value": "agent"}])),
        )
        .await;
    assert_eq!(status, 200, "{node}");
    let target = json!({"logical_disks": [
        {"raid_level": "1", "size_gb": 100, "is_root_volume": true},
        {"raid_level": "0", "size_gb": "MAX", "volume_name": "scratch"},
    ]});
    let (status, body) = system
        .call(Method::PUT, &format!("{path}/states/raid"), Some(target))
        .await;
    assert_eq!(status, 204, "{body}");
    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;

    let clean = |step: &str| json!({"target": "clean", "clean_steps": [{"interface": "raid", "step": step}]});
    system.provision(&uuid, clean("create_configuration")).await;
    let node = system.wait_state(&uuid, "manageable").await;
    let built = node["raid_config"]["logical_disks"]
        .as_array()
        .expect("logical disks built");
    assert_eq!(built.len(), 2, "{node}");
    assert!(built.iter().all(|d| d["controller"] == "sim-raid"), "{built:?}");
    assert_eq!(built[0]["volume_name"], "volume-0");
    assert_eq!(built[1]["volume_name"], "scratch");
    assert!(node["raid_config"]["last_updated"].is_string(), "{node}");
    assert_eq!(node["properties"]["local_gb"], 100);
    assert_eq!(node["properties"]["root_device"], json!({"name": "/dev/sdb"}));
    assert_eq!(node["properties"]["capabilities"], "raid_level:1");
    let journal = system.lab.journal_of(&uuid);
    assert!(
        journal.iter().any(|e| e == "agent create_configuration done"),
        "{journal:?}"
    );

    system.provision(&uuid, clean("delete_configuration")).await;
    let node = system.wait_state(&uuid, "manageable").await;
    assert_eq!(node["raid_config"], json!({}), "{node}");
    assert!(node["properties"].get("root_device").is_none(), "{node}");

    // A deploy step builds the configuration given as its argument.
    system.provision(&uuid, json!({"target": "provide"})).await;
    system.wait_state(&uuid, "available").await;
    let apply = json!({"interface": "raid", "step": "apply_configuration", "priority": 90,
        "args": {"raid_config": {"logical_disks": [{"raid_level": "5", "size_gb": 40, "is_root_volume": true}]}}});
    system
        .provision(&uuid, json!({"target": "active", "deploy_steps": [apply]}))
        .await;
    let node = system.wait_state(&uuid, "active").await;
    assert_eq!(node["raid_config"]["logical_disks"][0]["raid_level"], "5", "{node}");
    assert_eq!(node["properties"]["local_gb"], 40);
    assert_eq!(node["properties"]["capabilities"], "raid_level:5");

    // No target: the creation fails before the agent is asked, and says why.
    system.provision(&uuid, json!({"target": "deleted"})).await;
    system.wait_state(&uuid, "available").await;
    system.provision(&uuid, json!({"target": "manage"})).await;
    system.wait_state(&uuid, "manageable").await;
    let (status, body) = system
        .call(Method::PUT, &format!("{path}/states/raid"), Some(json!({})))
        .await;
    assert_eq!(status, 204, "{body}");
    let runs_before = system
        .lab
        .journal_of(&uuid)
        .iter()
        .filter(|e| *e == "agent create_configuration")
        .count();
    system.provision(&uuid, clean("create_configuration")).await;
    let node = system.wait_state(&uuid, "clean failed").await;
    let error = node["last_error"].as_str().expect("last_error");
    assert!(error.contains("has no target RAID configuration"), "{error}");
    let runs_after = system
        .lab
        .journal_of(&uuid)
        .iter()
        .filter(|e| *e == "agent create_configuration")
        .count();
    assert_eq!(runs_before, runs_after, "the agent was not asked");
    system.conductor.stop().await.expect("stops");
}
