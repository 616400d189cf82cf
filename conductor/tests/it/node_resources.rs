//! Port groups, volume connectors and targets, target RAID configurations and the `flat`
//! network interface's VIFs, on SQLite and on PostgreSQL: the uniqueness rules each kind has
//! (enforced by the database, named in the answer), a port joining a group, VIFs recorded on
//! the group before free ports, and a deleted node taking its resources with it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::postgres::cluster;
use crate::support::{TestConductor, call, fault};

async fn post(c: &TestConductor, path: &str, body: Value) -> (u16, Value) {
    call(Method::POST, c.url(path), Some(body)).await
}

async fn count(c: &TestConductor, path: &str, key: &str) -> usize {
    let (status, doc) = call(Method::GET, c.url(path), None).await;
    assert_eq!(status, 200, "{path}: {doc}");
    doc[key].as_array().map_or(0, Vec::len)
}

/// The whole story on one conductor, whatever its database.
async fn exercise(c: &TestConductor) {
    let (status, node) = post(c, "/v1/nodes", json!({"driver": "fake-hardware", "name": "bonded"})).await;
    assert_eq!(status, 201, "{node}");
    let node = node["uuid"].as_str().expect("uuid").to_owned();
    let (_, other) = post(c, "/v1/nodes", json!({"driver": "fake-hardware", "name": "plain"})).await;
    let other = other["uuid"].as_str().expect("uuid").to_owned();

    // Port groups: defaults, and both uniqueness rules named in the 409.
    let (status, bond) = post(
        c,
        "/v1/portgroups",
        json!({"node_uuid": node, "name": "bond0", "address": "52:54:00:AB:00:01"}),
    )
    .await;
    assert_eq!(status, 201, "{bond}");
    assert_eq!(bond["mode"], "active-backup", "Ironic's default_portgroup_mode");
    assert_eq!(bond["address"], "52:54:00:ab:00:01", "MACs are stored normalised");
    assert_eq!(bond["standalone_ports_supported"], true);
    let bond_uuid = bond["uuid"].as_str().expect("uuid").to_owned();
    let (status, doc) = post(
        c,
        "/v1/portgroups",
        json!({"node_uuid": other, "address": "52:54:00:ab:00:01"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        fault(&doc),
        "A portgroup with MAC address 52:54:00:ab:00:01 already exists."
    );
    let (status, doc) = post(c, "/v1/portgroups", json!({"node_uuid": other, "name": "bond0"})).await;
    assert_eq!(status, 409);
    assert_eq!(fault(&doc), "A portgroup with name bond0 already exists.");
    // Groups without address or name do not collide with each other.
    for _ in 0..2 {
        let (status, doc) = post(c, "/v1/portgroups", json!({"node_uuid": other})).await;
        assert_eq!(status, 201, "{doc}");
    }

    // A port joins the group; the group refuses to go while it has members.
    let (status, port) = post(
        c,
        "/v1/ports",
        json!({"node_uuid": node, "address": "52:54:00:ab:01:01", "portgroup_uuid": bond_uuid}),
    )
    .await;
    assert_eq!(status, 201, "{port}");
    let (status, doc) = post(
        c,
        "/v1/ports",
        json!({"node_uuid": other, "address": "52:54:00:ab:01:02", "portgroup_uuid": bond_uuid}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        fault(&doc),
        "Port can not be added to a portgroup belonging to a different node."
    );
    assert_eq!(count(c, "/v1/portgroups/bond0/ports", "ports").await, 1);
    let (status, doc) = call(Method::DELETE, c.url(&format!("/v1/portgroups/{bond_uuid}")), None).await;
    assert_eq!(status, 400);
    assert!(fault(&doc).contains("contains ports"), "{doc}");
    let (status, doc) = call(
        Method::PATCH,
        c.url("/v1/portgroups/bond0"),
        Some(json!([{"op": "replace", "path": "/mode", "value": "802.3ad"}, {"op": "add", "path": "/properties/miimon", "value": "100"}])),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["mode"], "802.3ad");
    assert_eq!(doc["properties"], json!({"miimon": "100"}));

    // Volume connectors (unique type and id) and targets (unique boot index per node).
    let connector = json!({"node_uuid": node, "type": "iqn", "connector_id": "iqn.2026-12.org.rivet:bonded"});
    assert_eq!(post(c, "/v1/volume/connectors", connector.clone()).await.0, 201);
    let (status, doc) = post(c, "/v1/volume/connectors", connector).await;
    assert_eq!(status, 409);
    assert_eq!(
        fault(&doc),
        "A volume connector with type iqn and connector ID iqn.2026-12.org.rivet:bonded already exists."
    );
    let target = |node: &str, volume: &str| json!({"node_uuid": node, "volume_type": "iscsi", "boot_index": 0, "volume_id": volume});
    assert_eq!(post(c, "/v1/volume/targets", target(&node, "vol-a")).await.0, 201);
    let (status, doc) = post(c, "/v1/volume/targets", target(&node, "vol-b")).await;
    assert_eq!(status, 409);
    assert_eq!(
        fault(&doc),
        "A volume target with boot index '0' for the same node already exists."
    );
    assert_eq!(
        post(c, "/v1/volume/targets", target(&other, "vol-b")).await.0,
        201,
        "another node's boot index 0"
    );

    // A target RAID configuration is checked, stored, and cleared by an empty one.
    let raid = c.url(&format!("/v1/nodes/{node}/states/raid"));
    let config = json!({"logical_disks": [{"raid_level": "1", "size_gb": 100, "is_root_volume": true}]});
    assert_eq!(call(Method::PUT, raid.clone(), Some(config.clone())).await.0, 204);
    let (_, shown) = call(Method::GET, c.url(&format!("/v1/nodes/{node}")), None).await;
    assert_eq!(shown["target_raid_config"], config);
    let (status, doc) = call(
        Method::PUT,
        raid.clone(),
        Some(json!({"logical_disks": [{"raid_level": "7", "size_gb": 1}]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(fault(&doc).starts_with("RAID config validation error"), "{doc}");
    assert_eq!(call(Method::PUT, raid, Some(json!({}))).await.0, 204);

    // The flat network interface records VIFs on the group first, then on free ports.
    let patch = json!([{"op": "replace", "path": "/network_interface", "value": "flat"}]);
    let (status, doc) = call(Method::PATCH, c.url(&format!("/v1/nodes/{node}")), Some(patch)).await;
    assert_eq!(status, 200, "{doc}");
    let (status, _) = post(
        c,
        "/v1/ports",
        json!({"node_uuid": node, "address": "52:54:00:ab:01:03"}),
    )
    .await;
    assert_eq!(status, 201);
    let vifs = c.url(&format!("/v1/nodes/{node}/vifs"));
    for vif in ["vif-a", "vif-b"] {
        let (status, doc) = call(Method::POST, vifs.clone(), Some(json!({"id": vif}))).await;
        assert_eq!(status, 204, "{vif}: {doc}");
    }
    let (_, group) = call(Method::GET, c.url("/v1/portgroups/bond0"), None).await;
    assert_eq!(group["internal_info"]["tenant_vif_port_id"], "vif-a", "{group}");
    let (status, doc) = call(Method::POST, vifs.clone(), Some(json!({"id": "vif-c"}))).await;
    assert_eq!(status, 400, "every port is taken: {doc}");
    assert_eq!(
        fault(&doc),
        "Unable to attach VIF vif-c, not enough free physical ports."
    );
    let (status, doc) = call(Method::POST, vifs.clone(), Some(json!({"id": "vif-a"}))).await;
    assert_eq!(status, 409, "{doc}");
    let (_, listed) = call(Method::GET, vifs.clone(), None).await;
    assert_eq!(listed, json!({"vifs": [{"id": "vif-b"}, {"id": "vif-a"}]}));
    let (status, doc) = call(Method::DELETE, format!("{vifs}/vif-z"), None).await;
    assert_eq!(status, 400, "{doc}");
    assert_eq!(call(Method::DELETE, format!("{vifs}/vif-a"), None).await.0, 204);
    let (_, listed) = call(Method::GET, vifs, None).await;
    assert_eq!(listed, json!({"vifs": [{"id": "vif-b"}]}));

    // Deleting the node deletes what belongs to it, and nothing of the other node.
    let (status, doc) = call(Method::DELETE, c.url(&format!("/v1/nodes/{node}")), None).await;
    assert_eq!(status, 204, "{doc}");
    assert_eq!(count(c, "/v1/portgroups", "portgroups").await, 2);
    assert_eq!(count(c, "/v1/volume/connectors", "connectors").await, 0);
    assert_eq!(count(c, "/v1/volume/targets", "targets").await, 1);
    let (status, _) = call(Method::GET, c.url("/v1/portgroups/bond0"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn portgroups_and_volumes_on_sqlite() {
    let c = TestConductor::start().await;
    exercise(&c).await;
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn portgroups_and_volumes_on_postgresql() {
    let pg = cluster::Postgres::start();
    let url = pg.url();
    let c = TestConductor::start_with(|config| config.database_url = url).await;
    exercise(&c).await;
    c.running.stop().await.expect("stops");
}
