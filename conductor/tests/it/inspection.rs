//! In-band inspection against a real conductor: a node with the `agent` inspect interface goes
//! to `inspect wait`; the data a ramdisk posts to `/v1/continue_inspection` (IPA 13's captured
//! inventory) creates the PXE port with its LLDP local link, sets the properties, runs the
//! operator's inspection rules, is stored, and the node is `manageable` again. Failures (a rule's
//! `fail`, the ramdisk's error) end in `inspect failed` with the reason; `abort` too. The rules
//! API follows Ironic's (1.96): short listings, sensitive rules hidden, validation errors.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestConductor, call, call_version, fixture, wait_for, walk};

const PXE_MAC: &str = "02:fc:00:00:00:01";
const BMC: &str = "192.0.2.50";

/// IPA 13's inventory with the boot interface named, a second NIC without an address, and the
/// LLDP TLVs a switch sent on the first (chassis MAC, port "Ethernet1/3", name "sw-rack12").
fn inspection_data() -> Value {
    let mut inventory = fixture("ipa/post_poll_get_hardware_info.json")["body"]["command_result"].clone();
    inventory["boot"]["pxe_interface"] = json!(PXE_MAC);
    // The node has no port yet: it is found by its BMC address, as in Ironic.
    inventory["bmc_address"] = json!(BMC);
    inventory["interfaces"][0]["lldp"] = json!([
        [1, "04885a92ec5459"],
        [2, "0745746865726e6574312f33"],
        [5, "73772d7261636b3132"]
    ]);
    let mut second = inventory["interfaces"][0].clone();
    second["name"] = json!("eth1");
    second["mac_address"] = json!("02:fc:00:00:00:02");
    second["ipv4_address"] = Value::Null;
    second["ipv6_address"] = Value::Null;
    second["lldp"] = Value::Null;
    inventory["interfaces"].as_array_mut().expect("list").push(second);
    let root_disk = inventory["disks"][0].clone();
    json!({"inventory": inventory, "root_disk": root_disk, "boot_interface": PXE_MAC, "logs": "H4sI..."})
}

async fn inspecting_node(c: &TestConductor, name: &str) -> String {
    let (status, doc) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(
            json!({"driver": "fake-hardware", "name": name, "inspect_interface": "agent",
                    "driver_info": {"ipmi_address": BMC}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{doc}");
    let uuid = doc["uuid"].as_str().expect("uuid").to_owned();
    walk(c, &uuid, &[("manage", "manageable"), ("inspect", "inspect wait")]).await;
    uuid
}

async fn post_data(c: &TestConductor, data: Value) -> (u16, Value) {
    call(Method::POST, c.url("/v1/continue_inspection"), Some(data)).await
}

async fn rule(c: &TestConductor, body: Value) -> Value {
    let (status, doc) = call(Method::POST, c.url("/v1/inspection_rules"), Some(body)).await;
    assert_eq!(status, 201, "{doc}");
    doc
}

#[tokio::test]
async fn inspection_data_makes_ports_properties_and_runs_the_rules() {
    let c = TestConductor::start().await;
    rule(
        &c,
        json!({"description": "x86 servers", "priority": 50,
               "conditions": [{"op": "eq", "args": {"values": ["{inventory[cpu][architecture]}", "x86_64"]}},
                              {"op": "!is-empty", "args": {"value": "{plugin_data[root_disk][name]}"}}],
               "actions": [{"op": "add-trait", "args": {"name": "CUSTOM_INSPECTED"}},
                           {"op": "set-attribute", "args": {"path": "/extra/disk", "value": "{plugin_data[root_disk][name]}"}},
                           {"op": "set-capability", "args": {"name": "rack", "value": "12"}}]}),
    )
    .await;
    // A rule whose condition fails does nothing; one that compares a string with a number
    // the way Ironic does (they differ) does nothing either.
    rule(
        &c,
        json!({"conditions": [{"op": "eq", "args": {"values": ["{inventory[cpu][count]}", 2]}}],
                    "actions": [{"op": "add-trait", "args": {"name": "CUSTOM_NEVER"}}]}),
    )
    .await;
    let node = inspecting_node(&c, "inspected").await;

    // From 1.84 the answer is the lookup's, with the agent's token (issued before processing).
    let (status, answer) = post_data(&c, inspection_data()).await;
    assert_eq!(
        (status, answer["node"]["uuid"].as_str()),
        (202, Some(node.as_str())),
        "{answer}"
    );
    assert!(answer["config"]["agent_token"].is_string(), "{answer}");
    let shown = wait_for(&c, &node, "provision_state", "manageable").await;
    let props = &shown["properties"];
    assert_eq!(props["cpu_arch"], "x86_64");
    assert_eq!(props["memory_mb"], 24576);
    assert_eq!(props["cpus"], 2);
    assert_eq!(props["local_gb"], 255, "256 GiB less 1 for partitioning");
    assert_eq!(
        props["capabilities"],
        "boot_mode:bios,cpu_aes:true,cpu_hugepages:true,cpu_hugepages_1g:true,rack:12"
    );
    assert_eq!(shown["traits"], json!(["CUSTOM_INSPECTED"]));
    assert_eq!(shown["extra"]["disk"], "/dev/sda");
    assert!(shown["inspection_finished_at"].is_string(), "{shown}");
    assert!(shown["last_error"].is_null(), "{shown}");

    // add_ports = pxe: only the boot interface gets a port, with the switch it is cabled to.
    let (_, ports) = call(Method::GET, c.url(&format!("/v1/nodes/{node}/ports?detail=True")), None).await;
    let ports = ports["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["address"], PXE_MAC);
    assert_eq!(ports[0]["pxe_enabled"], true);
    assert_eq!(
        ports[0]["local_link_connection"],
        json!({"switch_id": "88:5a:92:ec:54:59", "port_id": "Ethernet1/3", "switch_info": "sw-rack12"})
    );

    let (status, stored) = call(Method::GET, c.url(&format!("/v1/nodes/{node}/inventory")), None).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["inventory"]["cpu"]["architecture"], "x86_64");
    assert_eq!(stored["plugin_data"]["root_disk"]["name"], "/dev/sda");
    assert_eq!(stored["plugin_data"]["macs"], json!([PXE_MAC]));
    assert!(stored["plugin_data"].get("logs").is_none(), "logs are not stored");

    // Data for a node that is not waiting is refused with Ironic's uninformative 404.
    let (status, _) = post_data(&c, inspection_data()).await;
    assert_eq!(status, 404);
    // Inspecting again keeps the port (keep_ports = all) and creates no duplicate.
    // Without a version (IPA and rivet-agent post so), the UUID alone.
    walk(&c, &node, &[("inspect", "inspect wait")]).await;
    let (status, answer) = call_version(
        Method::POST,
        c.url("/v1/continue_inspection"),
        Some(inspection_data()),
        None,
    )
    .await;
    assert_eq!((status, answer), (202, json!({ "uuid": node })));
    wait_for(&c, &node, "provision_state", "manageable").await;
    let (_, ports) = call(Method::GET, c.url(&format!("/v1/nodes/{node}/ports")), None).await;
    assert_eq!(ports["ports"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn failures_end_in_inspect_failed_with_the_reason() {
    let c = TestConductor::start().await;
    // The ramdisk's own error.
    let node = inspecting_node(&c, "broken-ramdisk").await;
    let mut data = inspection_data();
    data["error"] = json!("collector lldp failed");
    let (status, _) = post_data(&c, data).await;
    assert_eq!(status, 202);
    let shown = wait_for(&c, &node, "provision_state", "inspect failed").await;
    let error = shown["last_error"].as_str().expect("last_error");
    assert!(
        error.contains("Ramdisk reported error: collector lldp failed"),
        "{error}"
    );
    assert_eq!(shown["power_state"], "power off");

    // No usable interface.
    walk(&c, &node, &[("inspect", "inspect wait")]).await;
    let mut data = inspection_data();
    for iface in data["inventory"]["interfaces"].as_array_mut().expect("list") {
        iface["mac_address"] = json!("not-a-mac");
    }
    data["inventory"]["bmc_address"] = json!(null);
    let (status, body) = call(
        Method::POST,
        c.url(&format!("/v1/continue_inspection?node_uuid={node}")),
        Some(data),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let shown = wait_for(&c, &node, "provision_state", "inspect failed").await;
    assert!(
        shown["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no valid network interfaces")),
        "{shown}"
    );

    // A rule's fail action.
    rule(
        &c,
        json!({"conditions": [{"op": "lt", "args": {"values": ["{inventory[memory][physical_mb]}", "4096"]}}],
                    "actions": [{"op": "fail", "args": {"msg": "too little memory"}}]}),
    )
    .await;
    walk(&c, &node, &[("inspect", "inspect wait")]).await;
    let (status, _) = post_data(&c, inspection_data()).await;
    assert_eq!(status, 202);
    let shown = wait_for(&c, &node, "provision_state", "inspect failed").await;
    assert_eq!(
        shown["last_error"],
        "Failed to finish inspection: Failed to inspect hardware. Reason: too little memory"
    );
    // Nothing was stored from a failed inspection's rules: no port for it either.
    let (_, ports) = call(Method::GET, c.url(&format!("/v1/nodes/{node}/ports")), None).await;
    assert_eq!(ports["ports"], json!([]));

    // An inspect interface that cannot inspect is refused before anything happens (Ironic's 400).
    let (status, body) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(json!({"driver": "fake-hardware", "name": "no-inspect", "inspect_interface": "no-inspect"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    walk(&c, "no-inspect", &[("manage", "manageable")]).await;
    let (status, body) = call(
        Method::PUT,
        c.url("/v1/nodes/no-inspect/states/provision"),
        Some(json!({"target": "inspect"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, shown) = call(Method::GET, c.url("/v1/nodes/no-inspect"), None).await;
    assert_eq!(shown["provision_state"], "manageable");

    // Abort while waiting.
    walk(&c, &node, &[("inspect", "inspect wait"), ("abort", "inspect failed")]).await;
    let (_, shown) = call(Method::GET, c.url(&format!("/v1/nodes/{node}")), None).await;
    assert_eq!(shown["last_error"], "Inspection was aborted by request.");
}

#[tokio::test]
async fn the_rules_api_follows_ironic() {
    let c = TestConductor::start().await;
    let created = rule(
        &c,
        json!({"actions": [{"op": "set-plugin-data", "args": {"path": "a.b", "value": 1}}], "sensitive": true}),
    )
    .await;
    let uuid = created["uuid"].as_str().expect("uuid");
    assert_eq!(created["priority"], 0);
    assert_eq!(created["phase"], "main");
    assert_eq!(created["actions"], Value::Null, "a sensitive rule hides its actions");

    let (_, list) = call(Method::GET, c.url("/v1/inspection_rules"), None).await;
    let short = &list["inspection_rules"][0];
    let mut keys: Vec<&str> = short.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["description", "links", "phase", "priority", "uuid"]);

    let (status, body) = call(
        Method::PATCH,
        c.url(&format!("/v1/inspection_rules/{uuid}")),
        Some(json!([{"op": "replace", "path": "/sensitive", "value": false}])),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    for (bad, why) in [
        (json!({"actions": []}), "no actions"),
        (json!({"actions": [{"op": "explode", "args": {}}]}), "unknown action"),
        (
            json!({"actions": [{"op": "add-trait", "args": {}}]}),
            "missing argument",
        ),
        (
            json!({"priority": 10000, "actions": [{"op": "log", "args": {"msg": "x"}}]}),
            "priority",
        ),
        (
            json!({"conditions": [{"op": "!!eq", "args": {"values": []}}], "actions": [{"op": "log", "args": {"msg": "x"}}]}),
            "double negation",
        ),
    ] {
        let (status, body) = call(Method::POST, c.url("/v1/inspection_rules"), Some(bad)).await;
        assert_eq!(status, 400, "{why}: {body}");
    }
    let (status, _) = call_version(Method::GET, c.url("/v1/inspection_rules"), None, Some("1.95")).await;
    assert_eq!(status, 404);
    let (status, _) = call(Method::DELETE, c.url(&format!("/v1/inspection_rules/{uuid}")), None).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn auto_discovery_enrolls_an_unknown_machine_and_boots_unknown_macs_into_the_ramdisk() {
    let c = TestConductor::start_with(|config| {
        config.auto_discovery = rivet_conductor::inspection::config::AutoDiscovery {
            enabled: true,
            driver: "fake-hardware".into(),
            deploy_kernel: Some("http://192.0.2.1/rivet.kernel".into()),
            deploy_ramdisk: Some("http://192.0.2.1/rivet.initramfs".into()),
            kernel_append_params: Some("console=ttyS0".into()),
        };
    })
    .await;
    // An unknown machine chain-loading its script gets the ramdisk with the callback.
    let script = crate::support::client()
        .get(c.url("/boot/ipxe/02-fc-00-00-00-01"))
        .send()
        .await
        .expect("script")
        .text()
        .await
        .expect("text");
    assert!(
        script.contains("kernel --name kernel http://192.0.2.1/rivet.kernel"),
        "{script}"
    );
    assert!(script.contains("ipa-inspection-callback-url="), "{script}");
    assert!(script.contains("/v1/continue_inspection"), "{script}");
    assert!(script.contains("console=ttyS0"), "{script}");

    let (status, answer) = post_data(&c, inspection_data()).await;
    assert_eq!(status, 202, "{answer}");
    let uuid = answer["uuid"].as_str().expect("uuid").to_owned();
    let (_, node) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(node["provision_state"], "enroll");
    assert_eq!(node["driver"], "fake-hardware");
    assert_eq!(node["inspect_interface"], "agent");
    assert_eq!(node["properties"]["memory_mb"], 24576);
    assert_eq!(node["driver_info"]["deploy_kernel"], "http://192.0.2.1/rivet.kernel");
    let (_, ports) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}/ports")), None).await;
    assert_eq!(ports["ports"][0]["address"], PXE_MAC);
    let (_, stored) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}/inventory")), None).await;
    assert_eq!(stored["plugin_data"]["auto_discovered"], true);
    // Its MAC is known now: the same machine posting again is the enrolled node, not a new one
    // (and, not waiting, it is refused).
    let (status, _) = post_data(&c, inspection_data()).await;
    assert_eq!(status, 404);
    let (_, nodes) = call(Method::GET, c.url("/v1/nodes"), None).await;
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(1));
    // A machine whose data fails is not left enrolled: every retry would enrol another node.
    let mut broken = inspection_data();
    broken["error"] = json!("the ramdisk broke");
    broken["inventory"]["interfaces"][0]["mac_address"] = json!("02:fc:00:00:00:77");
    broken["inventory"]["bmc_address"] = json!("192.0.2.99");
    for _ in 0..2 {
        let (status, _) = post_data(&c, broken.clone()).await;
        assert_eq!(status, 202);
    }
    let (_, nodes) = call(Method::GET, c.url("/v1/nodes"), None).await;
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(1), "{nodes}");
    // Once managed, it can be inspected in-band like any node.
    walk(&c, &uuid, &[("manage", "manageable"), ("inspect", "inspect wait")]).await;
    let (status, _) = post_data(&c, inspection_data()).await;
    assert_eq!(status, 202);
    wait_for(&c, &uuid, "provision_state", "manageable").await;
}
