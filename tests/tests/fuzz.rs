//! Fuzzing both HTTP APIs with generated requests (issue 15): the conductor's operator and
//! ramdisk APIs, with nodes in several states behind them, and the agent's command API. Fixed
//! seeds and counts, so every run sends the same requests. Each run must get no 5xx and no
//! crash, the server must still answer `GET /` afterwards, and (conductor) no node may stay
//! locked. The agent sees no disk (its allowlist matches nothing) and runs outside a ramdisk, so
//! no generated command can touch this machine; rescue and lockdown, which end the agent's API
//! by design, are not among the seeds.

use std::time::Duration;

use reqwest::Method;
use rivet_agent::config::{AgentConfig, BootParams, Settings};
use rivet_tests::fuzz::{self, Surface, Tally};
use rivet_tests::system::{PATIENCE, System};
use serde_json::{Value, json};

/// Requests per API; the figures go in BENCHMARKS.md.
const COUNT: usize = 10_000;
const TOKEN: &str = "fuzz-token-0123456789abcdefghijklmnop";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        // A fresh connection per request: a server may close a connection after answering a
        // request whose body it did not read, and a pooled client would blame the next request.
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Send the generated requests for `surface` to `base`; no answer may be a 5xx.
async fn fuzz_api(api: &str, http: &reqwest::Client, base: &str, surface: &Surface, seed: [u8; 32]) {
    let mut tally = Tally::default();
    for request in &fuzz::requests(surface, seed, COUNT) {
        let (status, answer) = fuzz::send(http, base, request).await;
        tally.add(request, status, &answer);
    }
    // The counts go in BENCHMARKS.md: shown with `cargo test --test fuzz -- --nocapture`.
    #[allow(clippy::print_stdout)]
    {
        println!("fuzz: {api} API: {tally}");
    }
    assert!(
        tally.server_errors.is_empty(),
        "5xx answers from the {api} API:\n{}",
        tally.server_errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conductor_api_answers_generated_requests_without_5xx() {
    let system = System::start(|_| {}).await;
    let mut idents = strings(&["fake-hardware", "sim-hardware", "52:54:00:00:00:01", "sim-1", "sim-2"]);
    for (i, steps) in [(1u8, 0usize), (2, 1), (3, 2)] {
        let (uuid, _) = system.node(i).await;
        for (target, reached) in [("manage", "manageable"), ("provide", "available")].iter().take(steps) {
            system.provision(&uuid, json!({"target": target})).await;
            system.wait_state(&uuid, reached).await;
        }
        idents.push(uuid);
    }
    let (_, ports) = system.call(Method::GET, "/v1/ports", None).await;
    for port in ports["ports"].as_array().expect("ports") {
        idents.push(port["uuid"].as_str().expect("uuid").to_owned());
    }
    let node = idents[5].clone();
    let surface = Surface {
        paths: strings(&[
            "/",
            "/v1",
            "/v1/",
            "/v1/nodes",
            "/v1/nodes/",
            "/v1/nodes/detail",
            "/v1/nodes/{ident}",
            "/v1/nodes/{ident}/states",
            "/v1/nodes/{ident}/states/provision",
            "/v1/nodes/{ident}/states/power",
            "/v1/nodes/{ident}/validate",
            "/v1/nodes/{ident}/maintenance",
            "/v1/nodes/{ident}/history",
            "/v1/nodes/{ident}/inventory",
            "/v1/nodes/{ident}/ports",
            "/v1/nodes/{ident}/ports/detail",
            "/v1/nodes/{ident}/vendor_passthru/methods",
            "/v1/nodes/{ident}/vendor_passthru?method={ident}",
            "/v1/ports",
            "/v1/ports/detail",
            "/v1/ports/{ident}",
            "/v1/nodes/{ident}/states/raid",
            "/v1/nodes/{ident}/portgroups",
            "/v1/nodes/{ident}/volume",
            "/v1/nodes/{ident}/volume/{ident}",
            "/v1/portgroups",
            "/v1/portgroups/detail",
            "/v1/portgroups/{ident}",
            "/v1/portgroups/{ident}/ports",
            "/v1/volume",
            "/v1/volume/connectors",
            "/v1/volume/targets",
            "/v1/volume/{ident}",
            "/v1/volume/connectors/{ident}",
            "/v1/volume/targets/{ident}",
            "/v1/events",
            "/v1/drivers",
            "/v1/drivers/{ident}",
            "/v1/drivers/{ident}/raid/logical_disk_properties",
            "/v1/drivers/{ident}/properties",
            "/v1/conductors",
            "/v1/lookup",
            "/v1/lookup?addresses={ident}",
            "/v1/heartbeat/{ident}",
            "/v1/continue_inspection",
            "/boot/ipxe/{ident}",
            "/httpboot/{ident}",
            "/v1/{ident}",
            "/{ident}",
        ]),
        idents,
        bodies: vec![
            json!({"driver": "fake-hardware", "name": "fz", "driver_info": {"ipmi_address": "127.0.0.1"}, "properties": {"cpus": 1}}),
            json!({"target": "manage"}),
            json!({"target": "provide"}),
            json!({"target": "active", "configdrive": {"meta_data": {"hostname": "h"}, "user_data": "#cloud-config"}}),
            json!({"target": "clean", "clean_steps": [{"interface": "deploy", "step": "erase_devices_metadata", "args": {}}]}),
            json!({"target": "service", "service_steps": [{"interface": "deploy", "step": "sim_configure", "args": {"level": 1}}]}),
            json!({"target": "deleted"}),
            json!({"target": "power on"}),
            json!({"target": "rebooting", "timeout": 10}),
            json!({"address": "52:54:00:aa:bb:cc", "node_uuid": node, "pxe_enabled": true, "local_link_connection": {"switch_id": "x"}}),
            json!({"callback_url": "http://127.0.0.1:9", "agent_token": TOKEN, "agent_version": "13.0.0", "agent_status_message": "m"}),
            json!({"reason": "fuzz"}),
            json!({"node_uuid": node, "name": "fz-pg", "address": "52:54:00:aa:bb:cd", "mode": "802.3ad"}),
            json!({"node_uuid": node, "type": "iqn", "connector_id": "iqn.fz"}),
            json!({"node_uuid": node, "volume_type": "iscsi", "boot_index": 0, "volume_id": "v"}),
            json!({"logical_disks": [{"raid_level": "1", "size_gb": "MAX"}]}),
            json!({"events": [{"event": "network.bind_port", "port_id": node, "mac_address": "52:54:00:aa:bb:cc", "status": "up"}]}),
            json!({"inventory": {"interfaces": [{"mac_address": "52:54:00:00:00:01"}], "cpu": {}, "memory": {}}}),
            json!([{"op": "replace", "path": "/name", "value": "renamed"}]),
            json!([{"op": "add", "path": "/instance_info", "value": {"image_source": "http://127.0.0.1:9/i", "image_checksum": "0"}}]),
            json!([{"op": "remove", "path": "/description"}]),
        ],
        query_keys: strings(&[
            "fields",
            "limit",
            "marker",
            "sort_key",
            "sort_dir",
            "detail",
            "addresses",
            "node_uuid",
            "associated",
            "provision_state",
            "driver",
            "maintenance",
            "fault",
            "resource_class",
            "conductor_group",
            "instance_uuid",
            "owner",
            "lessee",
            "node",
            "address",
            "method",
        ]),
        version_header: Some((
            "X-OpenStack-Ironic-API-Version".into(),
            strings(&[
                "1.1",
                "1.10",
                "1.31",
                "1.68",
                "1.115",
                "latest",
                "1.116",
                "2.0",
                "abc",
                "",
                "1.99999999999",
                "99999999999999999999.1",
                " 1.2 ",
                "1.",
                ".1",
            ]),
        )),
    };
    let http = http();
    let base = system.conductor.url();
    fuzz_api("conductor", &http, &base, &surface, [7; 32]).await;
    let (status, _) = system.call(Method::GET, "/", None).await;
    assert_eq!(status, 200, "the API still answers");
    // Verbs run on after their 202; every lock must be released once they settle.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, nodes) = system
            .call(Method::GET, "/v1/nodes?fields=uuid,reservation", None)
            .await;
        let locked: Vec<&Value> = nodes["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| !n["reservation"].is_null())
            .collect();
        if locked.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nodes left locked: {locked:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_api_answers_generated_requests_without_5xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        listen_host: Some("127.0.0.1".parse().expect("ip")),
        listen_port: Some(0),
        standalone: Some(true),
        agent_token: Some(TOKEN.into()),
        disk_allow: Some("/dev/rivet-fuzz-no-such-disk*".parse().expect("pattern")),
        hardware_managers_dir: Some(dir.path().join("managers")),
        ..Default::default()
    };
    let mut config = AgentConfig::resolve(settings, BootParams::default(), false).expect("valid settings");
    config.rescue_config_dir = dir.path().join("rescue");
    config.rescue_marker = dir.path().join("rescued");
    let agent = rivet_agent::start(config).await.expect("agent starts");
    let node = json!({"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {}, "instance_info": {},
        "driver_internal_info": {}});
    let surface = Surface {
        paths: strings(&[
            "/",
            "/v1",
            "/v1/",
            "/v1/status",
            "/status",
            "/v1/commands",
            "/v1/commands/",
            "/commands",
            "/v1/commands/{ident}",
            "/v1/commands/?agent_token={ident}",
            &format!("/v1/commands/?wait=true&agent_token={TOKEN}"),
            &format!("/v1/commands/?wait=false&agent_token={TOKEN}"),
            &format!("/v1/commands/?wait={{ident}}&agent_token={TOKEN}"),
            &format!("/v1/commands/{{ident}}?wait=true&agent_token={TOKEN}"),
            "/v1/{ident}",
        ]),
        idents: strings(&[TOKEN, "00000000-0000-0000-0000-000000000000", "true", "false"]),
        bodies: vec![
            json!({"name": "poll.get_hardware_info", "params": {}}),
            json!({"name": "poll.set_node_info", "params": {"node_info": {"node": node, "config": {}}}}),
            json!({"name": "clean.get_clean_steps", "params": {"node": node, "ports": []}}),
            json!({"name": "deploy.get_deploy_steps", "params": {"node": node, "ports": []}}),
            json!({"name": "service.get_service_steps", "params": {"node": node, "ports": []}}),
            json!({"name": "clean.execute_clean_step", "params": {"step": {"step": "erase_devices_metadata",
                "interface": "deploy", "priority": 99, "args": {}}, "node": node, "ports": [], "clean_version": {}}}),
            json!({"name": "deploy.execute_deploy_step", "params": {"step": {"step": "write_image", "interface": "deploy",
                "args": {"image_info": {"id": "i", "urls": ["http://127.0.0.1:9/i"], "os_hash_algo": "sha256",
                "os_hash_value": "00"}, "configdrive": null}}, "node": node, "ports": []}}),
            json!({"name": "standby.prepare_image", "params": {"image_info": {"id": "i", "urls": ["http://127.0.0.1:9/i"],
                "checksum": "0".repeat(32), "disk_format": "raw"}, "configdrive": "aGVsbG8="}}),
            json!({"name": "standby.get_partition_uuids", "params": {}}),
            json!({"name": "standby.sync", "params": {}}),
            json!({"name": "standby.power_off", "params": {}}),
            json!({"name": "image.install_bootloader", "params": {"root_uuid": "0x12345678", "target_boot_mode": "bios"}}),
        ],
        query_keys: strings(&["wait", "agent_token"]),
        version_header: None,
    };
    let http = http();
    let base = format!("http://{}", agent.local_addr);
    fuzz_api("agent", &http, &base, &surface, [11; 32]).await;
    let (status, _) = fuzz::send(
        &http,
        &base,
        &fuzz::Request {
            method: Method::GET,
            path: "/".into(),
            headers: Vec::new(),
            body: None,
        },
    )
    .await;
    assert_eq!(status, 200, "the API still answers");
    agent.shutdown();
}
