//! The operator API over real HTTP: documents against Ironic 39's captures, microversions,
//! bad input (always 4xx, never 5xx), illegal transitions, locks, concurrent updates, the state
//! walk with fake hardware, ports, vendor passthru, authentication, and recovery at start.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestConductor, call, call_version, client, fault, fixture, wait_for};

fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

async fn create_node(c: &TestConductor, body: Value) -> Value {
    let (status, node) = call(Method::POST, c.url("/v1/nodes"), Some(body)).await;
    assert_eq!(status, 201, "{node}");
    node
}

async fn provision(c: &TestConductor, node: &str, body: Value) -> (u16, Value) {
    call(
        Method::PUT,
        c.url(&format!("/v1/nodes/{node}/states/provision")),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn discovery_documents_and_microversions() {
    let c = TestConductor::start().await;
    let resp = client().get(c.url("/")).send().await.expect("get /");
    let headers = resp.headers().clone();
    assert_eq!(headers["x-openstack-ironic-api-minimum-version"], "1.1");
    assert_eq!(headers["x-openstack-ironic-api-maximum-version"], "1.115");
    assert_eq!(
        headers["x-openstack-ironic-api-version"], "1.1",
        "no header means the minimum"
    );
    let root: Value = resp.json().await.expect("json");
    let want = fixture("ironic/http_get_root.json");
    assert_eq!(keys(&root), keys(&want));
    assert_eq!(root["default_version"]["version"], want["default_version"]["version"]);
    let (_, v1) = call(Method::GET, c.url("/v1/"), None).await;
    for key in keys(&fixture("ironic/http_get_v1.json")) {
        assert!(v1.get(&key).is_some(), "v1 document lacks {key}");
    }
    // Out-of-range and malformed versions.
    let (status, body) = call_version(Method::GET, c.url("/v1/nodes"), None, Some("1.500")).await;
    assert_eq!(status, 406);
    assert!(fault(&body).contains("[1.1, 1.115]"), "{body}");
    let (status, _) = call_version(Method::GET, c.url("/v1/nodes"), None, Some("one.two")).await;
    assert_eq!(status, 400);
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn node_documents_have_ironics_fields_per_version() {
    let c = TestConductor::start().await;
    let node = create_node(&c, json!({"driver": "fake-hardware", "name": "capture-node-0", "driver_info": {"ipmi_password": "p", "ipmi_username": "u"}})).await;
    let uuid = node["uuid"].as_str().expect("uuid");
    assert_eq!(node["provision_state"], "enroll");
    assert_eq!(
        node["driver_info"],
        json!({"ipmi_password": "******", "ipmi_username": "u"}),
        "secrets are masked"
    );
    let (_, latest) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(
        keys(&latest),
        keys(&fixture("ironic/http_get_node_latest.json")),
        "field set and order of Ironic 39 at latest"
    );
    let (_, old) = call_version(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None, None).await;
    assert_eq!(
        keys(&old),
        keys(&fixture("ironic/http_get_node_default_version.json")),
        "field set of Ironic 39 at 1.1"
    );
    // Show by name, list, fields.
    // Links come with any choice of fields, as Ironic 39 sends them.
    let (status, by_name) = call(Method::GET, c.url("/v1/nodes/capture-node-0?fields=uuid,name"), None).await;
    assert_eq!(
        (status, keys(&by_name)),
        (200, vec!["uuid".to_owned(), "name".to_owned(), "links".to_owned()])
    );
    let (_, list) = call(Method::GET, c.url("/v1/nodes"), None).await;
    let mut short = keys(&list["nodes"][0]);
    short.sort();
    assert_eq!(
        short,
        [
            "instance_uuid",
            "links",
            "maintenance",
            "name",
            "power_state",
            "provision_state",
            "uuid"
        ]
    );
    let (_, detail) = call(Method::GET, c.url("/v1/nodes/detail"), None).await;
    assert_eq!(keys(&detail["nodes"][0]), keys(&latest));
    let (status, _) = call(Method::GET, c.url("/v1/nodes?fields=nonsense"), None).await;
    assert_eq!(status, 400);
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let c = TestConductor::start().await;
    let node = create_node(&c, json!({"driver": "fake-hardware", "name": "n1"})).await;
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let raw = |method: Method, path: &str, body: &str| {
        let req = client()
            .request(method, c.url(path))
            .header("X-OpenStack-Ironic-API-Version", "latest")
            .body(body.to_owned());
        async move {
            let resp = req.send().await.expect("send");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.expect("json error body"),
            )
        }
    };
    let cases: Vec<(u16, Value, &str)> = vec![
        {
            let (s, b) = raw(Method::POST, "/v1/nodes", "{not json").await;
            (s, b, "not valid JSON")
        },
        {
            let (s, b) = call(Method::POST, c.url("/v1/nodes"), Some(json!({"name": "x"}))).await;
            (s, b, "Mandatory field missing: driver")
        },
        {
            let (s, b) = call(
                Method::POST,
                c.url("/v1/nodes"),
                Some(json!({"driver": "no-such-driver"})),
            )
            .await;
            (s, b, "no-such-driver")
        },
        {
            let (s, b) = call(
                Method::POST,
                c.url("/v1/nodes"),
                Some(json!({"driver": "fake-hardware", "colour": "red"})),
            )
            .await;
            (s, b, "colour")
        },
        {
            let (s, b) = call(
                Method::POST,
                c.url("/v1/nodes"),
                Some(json!({"driver": "fake-hardware", "name": "bad name!"})),
            )
            .await;
            (s, b, "logical name")
        },
        {
            let (s, b) = call(
                Method::POST,
                c.url("/v1/nodes"),
                Some(json!({"driver": "fake-hardware", "power_interface": "ipmitool"})),
            )
            .await;
            (s, b, "power interface")
        },
        {
            let (s, b) = call(
                Method::POST,
                c.url("/v1/nodes"),
                Some(json!({"driver": "fake-hardware", "driver_info": "text"})),
            )
            .await;
            (s, b, "expected an object")
        },
        {
            let (s, b) = raw(Method::PATCH, &format!("/v1/nodes/{uuid}"), "{\"op\": \"add\"}").await;
            (s, b, "JSON array")
        },
        {
            let (s, b) = call(
                Method::PATCH,
                c.url(&format!("/v1/nodes/{uuid}")),
                Some(json!([{"op": "replace", "path": "/provision_state", "value": "active"}])),
            )
            .await;
            (s, b, "Cannot patch /provision_state. Only the following can be updated")
        },
        {
            let (s, b) = call(
                Method::PATCH,
                c.url(&format!("/v1/nodes/{uuid}")),
                Some(json!([{"op": "remove", "path": "/extra/missing"}])),
            )
            .await;
            (s, b, "Invalid patch")
        },
        {
            let (s, b) = call(
                Method::PATCH,
                c.url(&format!("/v1/nodes/{uuid}")),
                Some(json!([{"op": "frobnicate", "path": "/extra/a"}])),
            )
            .await;
            (s, b, "Invalid patch")
        },
        {
            let (s, b) = call(
                Method::PUT,
                c.url(&format!("/v1/nodes/{uuid}/states/provision")),
                Some(json!({"target": "fly"})),
            )
            .await;
            (s, b, "not a valid provision target")
        },
        {
            let (s, b) = call(
                Method::PUT,
                c.url(&format!("/v1/nodes/{uuid}/states/power")),
                Some(json!({"target": "sideways"})),
            )
            .await;
            (s, b, "not supported")
        },
        {
            let (s, b) = call(
                Method::POST,
                c.url("/v1/ports"),
                Some(json!({"address": "nonsense", "node_uuid": uuid})),
            )
            .await;
            (s, b, "MAC address")
        },
        {
            let (s, b) = call(
                Method::POST,
                c.url("/v1/ports"),
                Some(json!({"address": "52:54:00:00:00:09", "node_uuid": "no-such-node"})),
            )
            .await;
            (s, b, "could not be found")
        },
    ];
    for (status, body, text) in cases {
        assert_eq!(status, 400, "{text}: {body}");
        assert!(fault(&body).contains(text), "expected {text:?} in {}", fault(&body));
    }
    // Unknown things are 404; the node is unchanged by all of the above.
    for path in [
        "/v1/nodes/no-such-node",
        "/v1/nodes/no-such-node/states",
        "/v1/ports/no-such-port",
    ] {
        let (status, body) = call(Method::GET, c.url(path), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        fault(&body);
    }
    // A path the API does not have is answered as Ironic's router answers it.
    let (status, body) = call(Method::GET, c.url("/v1/nowhere"), None).await;
    assert_eq!(status, 404, "{body}");
    let inner: Value = serde_json::from_str(body["error_message"].as_str().expect("error_message")).expect("JSON");
    assert_eq!(inner, json!({"code": 404, "title": "Not Found", "description": ""}));
    let (_, after) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(
        (after["provision_state"].as_str(), &after["extra"]),
        (Some("enroll"), &json!({}))
    );
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn illegal_transitions_name_the_state_and_the_verb() {
    let c = TestConductor::start().await;
    let node = create_node(&c, json!({"driver": "fake-hardware"})).await;
    let uuid = node["uuid"].as_str().expect("uuid");
    for verb in ["active", "provide", "deleted", "rescue", "unhold"] {
        let (status, body) = provision(&c, uuid, json!({"target": verb})).await;
        assert_eq!(status, 400, "{verb}: {body}");
        let text = fault(&body);
        assert!(
            text.contains(&format!("\"{verb}\"")) && text.contains("\"enroll\""),
            "{text}"
        );
    }
    // A verb newer than the requested microversion.
    let (status, _) = call_version(
        Method::PUT,
        c.url(&format!("/v1/nodes/{uuid}/states/provision")),
        Some(json!({"target": "manage"})),
        Some("1.3"),
    )
    .await;
    assert_eq!(status, 406);
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn the_state_walk_with_fake_hardware() {
    let c = TestConductor::start().await;
    let node = create_node(&c, json!({"driver": "fake-hardware", "name": "walker"})).await;
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let step = |verb: &'static str, body: Value| {
        let c = &c;
        let uuid = uuid.clone();
        async move {
            let (status, answer) = provision(c, &uuid, body).await;
            assert_eq!(status, 202, "{verb}: {answer}");
        }
    };
    step("manage", json!({"target": "manage"})).await;
    let doc = wait_for(&c, &uuid, "provision_state", "manageable").await;
    assert_eq!(doc["power_state"], "power off", "verification reads the power state");
    // Manual cleaning with a step and its arguments; bad steps are refused up front.
    let (status, body) = provision(
        &c,
        &uuid,
        json!({"target": "clean", "clean_steps": [{"interface": "bios", "step": "apply_configuration"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(fault(&body).contains("required argument \"settings\""), "{body}");
    step("clean", json!({"target": "clean", "clean_steps": [{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"name": "a", "value": "1"}]}}]})).await;
    let doc = wait_for(&c, &uuid, "provision_state", "manageable").await;
    assert_eq!(
        doc["driver_internal_info"]["fake_bios_apply_configuration"],
        json!({"settings": [{"name": "a", "value": "1"}]})
    );
    step("provide", json!({"target": "provide"})).await;
    wait_for(&c, &uuid, "provision_state", "available").await;
    step("deploy", json!({"target": "active", "configdrive": {"meta_data": {}}})).await;
    let doc = wait_for(&c, &uuid, "provision_state", "active").await;
    assert_eq!(
        (doc["power_state"].as_str(), doc["target_provision_state"].as_str()),
        (Some("power on"), None)
    );
    // `no-rescue` refuses the verb and leaves the node active (it once "rescued" at once).
    let interface = |name: &str| json!([{"op": "replace", "path": "/rescue_interface", "value": name}]);
    let (status, _) = call(
        Method::PATCH,
        c.url(&format!("/v1/nodes/{uuid}")),
        Some(interface("no-rescue")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = provision(&c, &uuid, json!({"target": "rescue", "rescue_password": "pw"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        fault(&body).contains("Validation failed: Driver fake-hardware does not support rescue"),
        "{body}"
    );
    let (_, doc) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(doc["provision_state"], "active");
    let (status, _) = call(
        Method::PATCH,
        c.url(&format!("/v1/nodes/{uuid}")),
        Some(interface("fake")),
    )
    .await;
    assert_eq!(status, 200);
    step("rescue", json!({"target": "rescue", "rescue_password": "pw"})).await;
    wait_for(&c, &uuid, "provision_state", "rescue").await;
    step("unrescue", json!({"target": "unrescue"})).await;
    wait_for(&c, &uuid, "provision_state", "active").await;
    step(
        "service",
        json!({"target": "service", "service_steps": [{"interface": "bios", "step": "factory_reset"}]}),
    )
    .await;
    wait_for(&c, &uuid, "provision_state", "active").await;
    step("undeploy", json!({"target": "undeploy"})).await;
    let doc = wait_for(&c, &uuid, "provision_state", "available").await;
    assert_eq!(doc["power_state"], "power off");
    let (_, history) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}/history")), None).await;
    let events: Vec<&str> = history["history"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Deployment completed successfully")),
        "{events:?}"
    );
    // Every state change but a flow's working/waiting back and forth, with the time in the
    // state left.
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Provision state changed from available to deploying (deploy) after ")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Provision state changed from deploying to active (done)")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("(wait)") || e.contains("(resume)")),
        "{events:?}"
    );
    // Each step's start and end, with its place in the flow and its time.
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Step deploy.deploy started (deploy step 1 of ")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Step deploy.deploy finished in ") && e.ends_with(" s")),
        "{events:?}"
    );
    let short = &history["history"][0];
    let keys: Vec<&str> = short.as_object().expect("event").keys().map(String::as_str).collect();
    assert_eq!(keys, ["uuid", "created_at", "severity", "event", "links"], "{short}");
    // In detail (1.115): the kind of activity, the conductor, and the node's state then.
    let (_, detail) = call(
        Method::GET,
        c.url(&format!("/v1/nodes/{uuid}/history?detail=true")),
        None,
    )
    .await;
    let done = detail["history"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| {
            e["event"]
                .as_str()
                .is_some_and(|t| t.starts_with("Deployment completed"))
        })
        .expect("the deployment's event")
        .clone();
    assert_eq!(done["event_type"], "deploying", "{done}");
    assert_eq!(done["conductor"], "test-conductor", "{done}");
    assert_eq!(done["state"], "deploying", "{done}");
    assert_eq!(done["target_provision_state"], "active", "{done}");
    assert!(done["duration_seconds"].as_i64().is_some_and(|s| s >= 0), "{done}");
    let (_, at_112) = call_version(
        Method::GET,
        c.url(&format!("/v1/nodes/{uuid}/history?detail=true")),
        None,
        Some("1.112"),
    )
    .await;
    let old = &at_112["history"][0];
    assert!(
        old.get("project").is_none() && old.get("state").is_none() && old.get("event_type").is_some(),
        "{old}"
    );
    // One event by its link.
    let href = done["links"][0]["href"].as_str().expect("self link");
    assert!(href.ends_with(&format!(
        "/v1/nodes/{uuid}/history/{}",
        done["uuid"].as_str().expect("uuid")
    )));
    let (status, one) = call(Method::GET, href.to_owned(), None).await;
    assert_eq!((status, &one), (200, &done));
    let (status, body) = call(
        Method::GET,
        c.url(&format!(
            "/v1/nodes/{uuid}/history/00000000-0000-4000-8000-000000000000"
        )),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        fault(&body),
        "Node history record 00000000-0000-4000-8000-000000000000 could not be found."
    );
    // Power through the API.
    let (status, _) = call(
        Method::PUT,
        c.url(&format!("/v1/nodes/{uuid}/states/power")),
        Some(json!({"target": "power on"})),
    )
    .await;
    assert_eq!(status, 202);
    wait_for(&c, &uuid, "power_state", "power on").await;
    let (_, states) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}/states")), None).await;
    assert_eq!(states["provision_state"], "available");
    // Deletion: refused while the node works, allowed while available (Ironic's default of
    // allow_deleting_available_nodes).
    step("active", json!({"target": "active"})).await;
    wait_for(&c, &uuid, "provision_state", "active").await;
    let (status, _) = call(Method::DELETE, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(status, 409);
    step("deleted", json!({"target": "deleted"})).await;
    wait_for(&c, &uuid, "provision_state", "available").await;
    let (status, _) = call(Method::DELETE, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(status, 204);
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn concurrent_updates_lose_nothing() {
    let c = TestConductor::start().await;
    let node = create_node(&c, json!({"driver": "fake-hardware"})).await;
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = c.url(&format!("/v1/nodes/{uuid}"));
        tasks.push(tokio::spawn(async move {
            call(
                Method::PATCH,
                url,
                Some(json!([{"op": "add", "path": format!("/extra/k{i}"), "value": i}])),
            )
            .await
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
    }
    let (_, doc) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(
        doc["extra"].as_object().expect("extra").len(),
        24,
        "every concurrent patch survived: {}",
        doc["extra"]
    );
    // A node held by another conductor is locked: writers get 409 naming the holder, readers work.
    let held = c
        .running
        .conductor
        .db
        .reserve(&uuid, "other-conductor")
        .await
        .expect("db");
    assert!(held.is_some());
    let (status, body) = call(
        Method::PATCH,
        c.url(&format!("/v1/nodes/{uuid}")),
        Some(json!([{"op": "add", "path": "/extra/late", "value": 1}])),
    )
    .await;
    assert_eq!(status, 409);
    assert!(fault(&body).contains("locked by host other-conductor"), "{body}");
    let (status, _) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(status, 200);
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn ports_and_vendor_passthru() {
    let c = TestConductor::start().await;
    let node = create_node(&c, json!({"driver": "fake-hardware", "name": "vp"})).await;
    let uuid = node["uuid"].as_str().expect("uuid");
    let (status, port) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": "52:54:00:AA:00:01", "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 201, "{port}");
    assert_eq!(
        keys(&port),
        keys(&fixture("ironic/http_get_node_ports_latest.json")["ports"][0]),
        "port fields as Ironic 39"
    );
    assert_eq!(port["address"], "52:54:00:aa:00:01");
    let (status, body) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": "52:54:00:aa:00:01", "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 409, "duplicate MAC: {body}");
    let (_, list) = call(Method::GET, c.url("/v1/nodes/vp/ports"), None).await;
    assert_eq!(list["ports"].as_array().map(Vec::len), Some(1));
    // Vendor passthru: listing, a sync call, an async call, wrong method and unknown name.
    let (_, methods) = call(Method::GET, c.url("/v1/nodes/vp/vendor_passthru/methods"), None).await;
    assert_eq!(
        methods["second_method"],
        json!({"http_methods": ["GET", "POST"], "async": false, "description": "Echoes its arguments.", "attach": false, "require_exclusive_lock": false})
    );
    let (status, answer) = call(
        Method::POST,
        c.url("/v1/nodes/vp/vendor_passthru?method=second_method"),
        Some(json!({"x": 1})),
    )
    .await;
    assert_eq!((status, &answer["return"]["args"]), (200, &json!({"x": 1})));
    let (status, answer) = call(
        Method::POST,
        c.url("/v1/nodes/vp/vendor_passthru?method=first_method"),
        Some(json!({"y": 2})),
    )
    .await;
    assert_eq!((status, answer["async"].as_bool()), (202, Some(true)));
    let (status, _) = call(
        Method::DELETE,
        c.url("/v1/nodes/vp/vendor_passthru?method=first_method"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        Method::POST,
        c.url("/v1/nodes/vp/vendor_passthru?method=nope"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400);
    let (_, methods) = call(
        Method::GET,
        c.url("/v1/drivers/fake-hardware/vendor_passthru/methods"),
        None,
    )
    .await;
    assert!(methods.get("driver_method").is_some());
    let (status, answer) = call(
        Method::GET,
        c.url("/v1/drivers/fake-hardware/vendor_passthru?method=driver_method"),
        None,
    )
    .await;
    assert_eq!(
        (status, answer["return"]["method"].as_str()),
        (200, Some("driver_method"))
    );
    let (_, drivers) = call(Method::GET, c.url("/v1/drivers"), None).await;
    assert_eq!(drivers["drivers"][0]["name"], "fake-hardware");
    let (status, _) = call(
        Method::DELETE,
        c.url(&format!("/v1/ports/{}", port["uuid"].as_str().expect("uuid"))),
        None,
    )
    .await;
    assert_eq!(status, 204);
    c.running.stop().await.expect("stops");
}

#[tokio::test]
async fn http_basic_auth_guards_the_api_but_not_discovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    std::fs::write(&file, format!("# users\nadmin:{hash}\n")).expect("write");
    let c = TestConductor::start_with(|config| {
        config.auth_strategy = rivet_conductor::config::AuthStrategy::HttpBasic;
        config.htpasswd = Some(file.clone());
    })
    .await;
    let (status, _) = call(Method::GET, c.url("/"), None).await;
    assert_eq!(status, 200, "discovery stays public");
    let resp = client().get(c.url("/v1/nodes")).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let resp = client()
        .get(c.url("/v1/nodes"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(c.url("/v1/nodes"))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    // The dashboard and its data are the API's: the same credentials, or a prompt for them.
    for path in ["/dashboard", "/dashboard/fleet"] {
        let resp = client().get(c.url(path)).send().await.expect("send");
        assert_eq!(resp.status(), 401, "{path}");
        assert!(resp.headers().get("www-authenticate").is_some(), "{path}");
        let resp = client()
            .get(c.url(path))
            .basic_auth("admin", Some("s3cret"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "{path}");
    }
    c.running.stop().await.expect("stops");
    // And off: the same request needs nothing.
    let open = TestConductor::start().await;
    assert_eq!(
        client().get(open.url("/v1/nodes")).send().await.expect("send").status(),
        200
    );
    open.running.stop().await.expect("stops");
}

/// Leave node records as a conductor killed mid-flow would, restart, and see each resume.
#[tokio::test]
async fn a_restarted_conductor_releases_its_locks_and_resumes_abandoned_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/rivet.sqlite", dir.path().display());
    let first = rivet_conductor::start(rivet_conductor::config::ConductorConfig::for_tests(url.clone()))
        .await
        .expect("starts");
    let base = first.url();
    let mut uuids = Vec::new();
    for name in ["before-first-step", "in-band", "unsafe", "crash-loop"] {
        let (_, node) = call(
            Method::POST,
            format!("{base}/v1/nodes"),
            Some(json!({"driver": "fake-hardware", "name": name})),
        )
        .await;
        uuids.push(node["uuid"].as_str().expect("uuid").to_owned());
    }
    let db = first.conductor.db.clone();
    let crash = |uuid: &str, state: &str, step: Option<(&'static str, Value)>| {
        let (db, uuid, state) = (db.clone(), uuid.to_owned(), state.to_owned());
        async move {
            let mut record = db.node(&uuid).await.expect("db").expect("node");
            record.provision_state = state;
            record.target_provision_state = Some(
                if record.provision_state == "deploying" {
                    "active"
                } else {
                    "available"
                }
                .into(),
            );
            if let Some((key, step)) = step {
                let doc = step.as_object().cloned().expect("step object");
                match key {
                    "deploy" => record.deploy_step = doc,
                    _ => record.clean_step = doc,
                }
                record
                    .driver_internal_info
                    .insert(format!("{key}_step_index"), json!(0));
                record
                    .driver_internal_info
                    .insert(format!("{key}_steps"), json!([step]));
            }
            db.update_node(&record).await.expect("db");
            assert!(db.reserve(&uuid, "test-conductor").await.expect("db").is_some());
        }
    };
    // Killed while booting the agent for cleaning: no step yet.
    crash(&uuids[0], "cleaning", None).await;
    // Killed between saving write_image and the agent's answer.
    crash(
        &uuids[1],
        "deploying",
        Some((
            "deploy",
            json!({"step": "write_image", "interface": "deploy", "priority": 80}),
        )),
    )
    .await;
    // Killed during an out-of-band BIOS step of a real (not fake) interface.
    crash(
        &uuids[2],
        "cleaning",
        Some((
            "clean",
            json!({"step": "apply_configuration", "interface": "bios", "priority": 10}),
        )),
    )
    .await;
    let mut record = db.node(&uuids[2]).await.expect("db").expect("node");
    record.interfaces.insert("bios".into(), "no-bios".into());
    db.update_node(&record).await.expect("db");
    // A power step is safe to repeat, but three restarts already found it running: the fourth
    // does not resume it.
    crash(
        &uuids[3],
        "cleaning",
        Some((
            "clean",
            json!({"step": "reboot", "interface": "management", "priority": 10}),
        )),
    )
    .await;
    let mut record = db.node(&uuids[3]).await.expect("db").expect("node");
    record
        .driver_internal_info
        .insert("clean_step_restarts".into(), json!(3));
    db.update_node(&record).await.expect("db");
    // Whether a step runs in the agent is the deploy interface's answer: `direct` sends
    // write_image to the agent.
    let mut record = db.node(&uuids[1]).await.expect("db").expect("node");
    record.interfaces.insert("deploy".into(), "direct".into());
    db.update_node(&record).await.expect("db");
    first.stop().await.expect("stops");

    let second = rivet_conductor::start(rivet_conductor::config::ConductorConfig::for_tests(url))
        .await
        .expect("restarts");
    let db = second.conductor.db.clone();
    let settled = |uuid: String, want: &'static str| {
        let db = db.clone();
        async move {
            for _ in 0..200 {
                let record = db.node(&uuid).await.expect("db").expect("node");
                if record.provision_state == want && record.reservation.is_none() {
                    return record;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("{uuid} did not reach {want}: {:?}", db.node(&uuid).await);
        }
    };
    // Cleaning starts again and, with the fake deploy interface, finishes.
    let record = settled(uuids[0].clone(), "available").await;
    assert_eq!(record.last_error, None);
    // The in-band step waits for the agent's next heartbeat to show whether it has it.
    let record = settled(uuids[1].clone(), "wait call-back").await;
    assert_eq!(
        record.driver_internal_info.get("resume_deploy_step"),
        Some(&json!(true))
    );
    assert_eq!(record.deploy_step.get("step"), Some(&json!("write_image")));
    // A BIOS change may have half-happened: the node fails, saying why.
    let record = settled(uuids[2].clone(), "clean failed").await;
    let error = record.last_error.unwrap_or_default();
    assert!(
        error.contains("stopped during clean step bios.apply_configuration, which is not safe to repeat"),
        "{error}"
    );
    let record = settled(uuids[3].clone(), "clean failed").await;
    let error = record.last_error.unwrap_or_default();
    assert!(
        error.contains("stopped 4 times during clean step management.reboot; not resuming it again"),
        "{error}"
    );
    let (_, history) = call(
        Method::GET,
        format!("{}/v1/nodes/{}/history", second.url(), uuids[0]),
        None,
    )
    .await;
    assert!(history.to_string().contains("stopped during cleaning"), "{history}");
    second.stop().await.expect("stops");
}

#[tokio::test]
async fn inspection_data_is_refused_unless_the_node_waits_for_it() {
    let c = TestConductor::start().await;
    let node = create_node(&c, json!({"driver": "fake-hardware", "name": "inspected"})).await;
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let (status, _) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": "52:54:00:00:00:aa", "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 201);
    let data = json!({"inventory": {"interfaces": [{"name": "eth0", "mac_address": "52:54:00:00:00:AA"}],
        "cpu": {"count": 4}}, "root_disk": {"name": "/dev/sda"}});
    let post = |body: Value| call(Method::POST, c.url("/v1/continue_inspection"), Some(body));
    // Enrolled, not inspecting: Ironic's 404 that tells nothing, and nothing stored.
    let (status, body) = post(data.clone()).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = call_version(Method::GET, c.url("/v1/nodes/inspected/inventory"), None, Some("1.81")).await;
    assert_eq!(status, 404);
    // Unknown MACs and missing inventories are clear 4xx.
    let (status, _) = post(json!({"inventory": {"interfaces": [{"mac_address": "00:00:00:00:00:01"}]}})).await;
    assert_eq!(status, 404);
    let (status, _) = post(json!({"root_disk": {}})).await;
    assert_eq!(status, 400);
    let (status, _) = post(json!({"inventory": {"interfaces": []}})).await;
    assert_eq!(status, 400, "no lookup information");
}

/// Issue 19's examples and their siblings, as Ironic 39 answers them (the conformance script
/// compares the same against the real Ironic; these keep the answers without it).
#[tokio::test]
async fn microversion_semantics_and_the_small_resources_answer_as_ironic_39() {
    let c = TestConductor::start().await;
    let create = |version: &'static str| {
        let url = c.url("/v1/nodes");
        async move {
            call_version(
                Method::POST,
                url,
                Some(json!({"driver": "fake-hardware"})),
                Some(version),
            )
            .await
        }
    };
    // Before 1.11 a new node is available at once; before 1.2 `available` reads as null.
    let (status, old) = create("1.10").await;
    assert_eq!((status, &old["provision_state"]), (201, &json!("available")));
    let (_, oldest) = create("1.1").await;
    assert_eq!(oldest["provision_state"], Value::Null);
    let (_, new) = create("1.11").await;
    assert_eq!(new["provision_state"], "enroll");
    let uuid = new["uuid"].as_str().expect("uuid").to_owned();
    // A display_name names the instance, and the listing filters on it (1.104).
    let (status, patched) = call(
        Method::PATCH,
        c.url(&format!("/v1/nodes/{uuid}")),
        Some(json!([{"op": "add", "path": "/instance_info", "value": {"display_name": "vm-1"}}])),
    )
    .await;
    assert_eq!((status, &patched["instance_name"]), (200, &json!("vm-1")));
    let (_, found) = call(Method::GET, c.url("/v1/nodes/detail?instance_name=vm-1"), None).await;
    let found: Vec<&str> = found["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["uuid"].as_str())
        .collect();
    assert_eq!(found, [uuid.as_str()]);
    let (status, _) = call_version(Method::GET, c.url("/v1/nodes?instance_name=vm-1"), None, Some("1.103")).await;
    assert_eq!(status, 406);
    // Retiring an available node is a conflict.
    let available = old["uuid"].as_str().expect("uuid");
    let (status, _) = call(
        Method::PATCH,
        c.url(&format!("/v1/nodes/{available}")),
        Some(json!([{"op": "replace", "path": "/retired", "value": true}])),
    )
    .await;
    assert_eq!(status, 409);
    // Paging names Ironic's parameters in Ironic's order.
    let (_, page) = call(Method::GET, c.url("/v1/nodes?limit=1"), None).await;
    let next = page["next"].as_str().expect("next link");
    assert!(
        next.contains("/v1/nodes?sort_key=id&sort_dir=asc&fields=instance_uuid,maintenance,power_state,provision_state,uuid,name&limit=1&marker="),
        "{next}"
    );
    // The smaller resources.
    for (path, want) in [
        (format!("/v1/nodes/{uuid}/firmware"), json!({"firmware": []})),
        (format!("/v1/nodes/{uuid}/bios"), json!({"bios": []})),
        (format!("/v1/nodes/{uuid}/vifs"), json!({"vifs": []})),
        (format!("/v1/nodes/{uuid}/traits"), json!({"traits": []})),
        (
            format!("/v1/nodes/{uuid}/management/boot_device"),
            json!({"boot_device": "pxe", "persistent": false}),
        ),
    ] {
        let (status, body) = call(Method::GET, c.url(&path), None).await;
        assert_eq!((status, body), (200, want), "{path}");
    }
    let (status, conductor) = call(Method::GET, c.url("/v1/conductors/test-conductor"), None).await;
    assert_eq!(status, 200, "{conductor}");
    assert_eq!(conductor["hostname"], "test-conductor");
    // Below their microversion, these paths do not exist.
    let (status, _) = call_version(
        Method::GET,
        c.url(&format!("/v1/nodes/{uuid}/history")),
        None,
        Some("1.77"),
    )
    .await;
    assert_eq!(status, 404);
    c.running.stop().await.expect("stops");
}

/// Chassis: create, show, patch, the nodes that name one, and delete only when empty.
#[tokio::test]
async fn chassis_group_nodes_and_are_deleted_only_when_empty() {
    let c = TestConductor::start().await;
    let (status, chassis) = call(
        Method::POST,
        c.url("/v1/chassis"),
        Some(json!({"description": "rack 1"})),
    )
    .await;
    assert_eq!(status, 201, "{chassis}");
    let uuid = chassis["uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(chassis["extra"], json!({}));
    let (status, _) = call(Method::POST, c.url("/v1/chassis"), Some(json!({"colour": "red"}))).await;
    assert_eq!(status, 400);
    let (status, _) = call(
        Method::POST,
        c.url("/v1/chassis"),
        Some(json!({"description": "x".repeat(256)})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, patched) = call(
        Method::PATCH,
        c.url(&format!("/v1/chassis/{uuid}")),
        Some(json!([{"op": "replace", "path": "/description", "value": "rack 2"}])),
    )
    .await;
    assert_eq!((status, &patched["description"]), (200, &json!("rack 2")));
    // A node names it; an unknown chassis is refused.
    let (status, _) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(json!({"driver": "fake-hardware", "chassis_uuid": "4a0f2c63-67a6-4d56-9f36-3f0e8fd7c0aa"})),
    )
    .await;
    assert_eq!(status, 400);
    let node = create_node(&c, json!({"driver": "fake-hardware", "chassis_uuid": uuid})).await;
    let (_, nodes) = call(Method::GET, c.url(&format!("/v1/chassis/{uuid}/nodes")), None).await;
    assert_eq!(nodes["nodes"][0]["uuid"], node["uuid"], "{nodes}");
    let (status, _) = call(Method::DELETE, c.url(&format!("/v1/chassis/{uuid}")), None).await;
    assert_eq!(status, 400, "a chassis with nodes stays");
    let (status, _) = call(
        Method::DELETE,
        c.url(&format!("/v1/nodes/{}", node["uuid"].as_str().expect("uuid"))),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(Method::DELETE, c.url(&format!("/v1/chassis/{uuid}")), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(Method::GET, c.url(&format!("/v1/chassis/{uuid}")), None).await;
    assert_eq!(status, 404);
    c.running.stop().await.expect("stops");
}

/// Issue 21: the dashboard is one self-contained page (nothing from another origin), and its
/// chart's series holds the fleet's counts, sampled at start and then every interval.
#[tokio::test]
async fn the_dashboard_is_self_contained_and_its_series_counts_the_fleet() {
    let c = TestConductor::start_with(|config| config.fleet_sample_interval = Duration::from_secs(1)).await;
    for name in ["d1", "d2"] {
        let (status, _) = call(
            Method::POST,
            c.url("/v1/nodes"),
            Some(json!({"driver": "fake-hardware", "name": name})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let resp = client().get(c.url("/dashboard")).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("text/html")
    );
    let page = resp.text().await.expect("body");
    assert!(page.contains("/v1/nodes/detail") && page.contains("/dashboard/fleet"));
    for outside in ["src=\"", "href=\"http", "url(", "@import", "fetch(\"http"] {
        assert!(
            !page.contains(outside),
            "the page loads nothing from elsewhere: {outside}"
        );
    }
    // The first sample is taken at start (no nodes yet); a later one counts both.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let samples = loop {
        let (status, fleet) = call(Method::GET, c.url("/dashboard/fleet"), None).await;
        assert_eq!(status, 200, "{fleet}");
        assert_eq!(fleet["interval_seconds"], 1);
        let samples = fleet["samples"].as_array().expect("samples").clone();
        if samples.last().is_some_and(|s| s["provision_state"]["enroll"] == 2) {
            break samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sample counted the nodes: {fleet}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(samples.len() >= 2, "{samples:?}");
    let last = samples.last().expect("a sample");
    assert!(last["at"].as_str().is_some_and(|t| t.ends_with("+00:00")), "{last}");
    assert_eq!(last["power_state"]["none"], 2, "{last}");
    c.running.stop().await.expect("stops");
}

/// Issue 21: a node's history is paged as Ironic pages it (limit, marker, sort_key, sort_dir)
/// with a `next` link that leads to the next page.
#[tokio::test]
async fn node_history_is_paged_with_a_next_link_that_works() {
    let c = TestConductor::start().await;
    let (_, node) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(json!({"driver": "fake-hardware", "name": "paged"})),
    )
    .await;
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    for i in 0..5 {
        c.running
            .conductor
            .db
            .add_history(&uuid, "INFO", &format!("event {i}"))
            .await
            .expect("recorded");
    }
    let texts = |doc: &Value| -> Vec<String> {
        doc["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|e| e["event"].as_str().expect("event").to_owned())
            .collect()
    };
    let (status, first) = call(Method::GET, c.url("/v1/nodes/paged/history?limit=2"), None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(texts(&first), ["event 0", "event 1"]);
    let mut seen = texts(&first);
    let mut next = first["next"].as_str().map(str::to_owned);
    let mut pages = 1;
    while let Some(link) = next {
        assert!(link.starts_with(&c.url("/v1/nodes/paged/history?")), "{link}");
        let (status, page) = call(Method::GET, link, None).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(texts(&page));
        next = page["next"].as_str().map(str::to_owned);
        pages += 1;
        assert!(pages <= 5, "the links end");
    }
    assert_eq!(seen, ["event 0", "event 1", "event 2", "event 3", "event 4"]);
    let (_, newest) = call(
        Method::GET,
        c.url("/v1/nodes/paged/history?sort_dir=desc&limit=1&detail=true"),
        None,
    )
    .await;
    assert_eq!(texts(&newest), ["event 4"]);
    assert!(
        newest["next"].as_str().is_some_and(|l| l.contains("detail=True")),
        "{newest}"
    );
    for (query, status, text) in [
        ("limit=0", 400, "Limit must be positive"),
        (
            "sort_key=colour",
            400,
            "The sort_key value colour is an invalid field for sorting",
        ),
        (
            "sort_dir=up",
            400,
            "Invalid sort direction: up. Acceptable values are 'asc' or 'desc'",
        ),
        (
            "marker=00000000-0000-4000-8000-000000000000",
            404,
            "Node history record 00000000-0000-4000-8000-000000000000 could not be found.",
        ),
    ] {
        let (got, body) = call(Method::GET, c.url(&format!("/v1/nodes/paged/history?{query}")), None).await;
        assert_eq!((got, fault(&body)), (status, text.to_owned()), "{query}");
    }
    c.running.stop().await.expect("stops");
}
