//! Allocations against a real conductor: the only available node with the trait is picked and
//! marked (allocation_uuid, instance_uuid, instance_info.traits), an allocation nothing fits
//! ends in `error` with Ironic's reason, an allocation deleted while it is processed leaves no
//! node taken, an active node keeps its allocation until it leaves `active`, and undeploying a
//! node removes its allocation, as in Ironic.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestConductor, call, fault, walk};

async fn post(c: &TestConductor, path: &str, body: Value) -> (u16, Value) {
    call(Method::POST, c.url(path), Some(body)).await
}

/// Poll the allocation until it leaves `allocating` (bounded).
async fn settled(c: &TestConductor, uuid: &str) -> Value {
    for _ in 0..100 {
        let (status, doc) = call(Method::GET, c.url(&format!("/v1/allocations/{uuid}")), None).await;
        assert_eq!(status, 200, "{doc}");
        if doc["state"] != "allocating" {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("allocation {uuid} stayed allocating");
}

async fn node(c: &TestConductor, name: &str, traits: &[&str]) -> String {
    let (status, doc) = post(
        c,
        "/v1/nodes",
        json!({"driver": "fake-hardware", "name": name, "resource_class": "baremetal"}),
    )
    .await;
    assert_eq!(status, 201, "{doc}");
    let uuid = doc["uuid"].as_str().expect("uuid").to_owned();
    let (status, doc) = call(
        Method::PUT,
        c.url(&format!("/v1/nodes/{uuid}/traits")),
        Some(json!({"traits": traits})),
    )
    .await;
    assert_eq!(status, 204, "{doc}");
    walk(c, &uuid, &[("manage", "manageable"), ("provide", "available")]).await;
    uuid
}

#[tokio::test]
async fn an_allocation_picks_the_only_node_with_the_trait() {
    let c = TestConductor::start_with(|config| config.automated_clean = false).await;
    let plain = node(&c, "plain", &[]).await;
    let gold = node(&c, "gold", &["CUSTOM_GOLD"]).await;

    let (status, created) = post(
        &c,
        "/v1/allocations",
        json!({"resource_class": "baremetal", "traits": ["CUSTOM_GOLD"], "name": "for-gold"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["state"], "allocating");
    let allocation = settled(&c, created["uuid"].as_str().expect("uuid")).await;
    assert_eq!(allocation["state"], "active", "{allocation}");
    assert_eq!(allocation["node_uuid"], gold);
    let (_, shown) = call(Method::GET, c.url(&format!("/v1/nodes/{gold}")), None).await;
    assert_eq!(shown["allocation_uuid"], allocation["uuid"]);
    assert_eq!(shown["instance_uuid"], allocation["uuid"]);
    assert_eq!(shown["instance_info"]["traits"], json!(["CUSTOM_GOLD"]));
    let (status, of_node) = call(Method::GET, c.url(&format!("/v1/nodes/{gold}/allocation")), None).await;
    assert_eq!((status, of_node["uuid"].clone()), (200, allocation["uuid"].clone()));

    // The gold node is taken: a second request for the trait finds nothing.
    let (_, second) = post(
        &c,
        "/v1/allocations",
        json!({"resource_class": "baremetal", "traits": ["CUSTOM_GOLD"]}),
    )
    .await;
    let second = settled(&c, second["uuid"].as_str().expect("uuid")).await;
    assert_eq!(second["state"], "error");
    assert_eq!(
        second["last_error"],
        format!(
            "Failed to process allocation {}: no suitable nodes have the requested traits CUSTOM_GOLD.",
            second["uuid"].as_str().expect("uuid")
        )
    );
    let (_, third) = post(&c, "/v1/allocations", json!({"resource_class": "large"})).await;
    let third = settled(&c, third["uuid"].as_str().expect("uuid")).await;
    assert!(
        third["last_error"]
            .as_str()
            .is_some_and(|e| e.ends_with("no available nodes match the resource class large.")),
        "{third}"
    );

    // An allocation deleted while it is being processed leaves no node taken, whichever of
    // the deletion and the reservation comes first.
    for _ in 0..5 {
        let (status, doc) = post(&c, "/v1/allocations", json!({"resource_class": "baremetal"})).await;
        assert_eq!(status, 201, "{doc}");
        let uuid = doc["uuid"].as_str().expect("uuid").to_owned();
        let (status, doc) = call(Method::DELETE, c.url(&format!("/v1/allocations/{uuid}")), None).await;
        assert!(status == 204 || status == 409, "{status}: {doc}");
        if status == 409 {
            // Reserved before the deletion and then refused? Only an active node refuses.
            panic!("an available node refused to give its allocation back: {doc}");
        }
    }
    let mut free = false;
    for _ in 0..100 {
        let (_, plain_node) = call(Method::GET, c.url(&format!("/v1/nodes/{plain}")), None).await;
        if plain_node["allocation_uuid"].is_null() && plain_node["instance_uuid"].is_null() {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(free, "a deleted allocation left the plain node taken");

    // Deployed, the node keeps its allocation; undeployed, it loses it.
    walk(&c, &gold, &[("active", "active")]).await;
    let (status, doc) = call(Method::DELETE, c.url(&format!("/v1/nodes/{gold}/allocation")), None).await;
    assert_eq!(status, 409, "{doc}");
    assert!(fault(&doc).contains("because the node is active"), "{doc}");
    walk(&c, &gold, &[("deleted", "available")]).await;
    let (status, _) = call(
        Method::GET,
        c.url(&format!(
            "/v1/allocations/{}",
            allocation["uuid"].as_str().expect("uuid")
        )),
        None,
    )
    .await;
    assert_eq!(status, 404, "the allocation went with the instance");
    let (_, shown) = call(Method::GET, c.url(&format!("/v1/nodes/{gold}")), None).await;
    assert_eq!(
        (shown["allocation_uuid"].clone(), shown["instance_uuid"].clone()),
        (Value::Null, Value::Null)
    );
    c.running.stop().await.expect("stops");
}
