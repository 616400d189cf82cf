//! The same conductor on PostgreSQL: the test starts a private PostgreSQL cluster in a temporary
//! directory on a free loopback port (`.ci/setup` installs the server), and stops it after.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestConductor, call, walk};

#[path = "../../../tests/src/postgres.rs"]
#[allow(dead_code, reason = "the take-over test uses the rest")]
pub(crate) mod cluster;
use cluster::Postgres;

#[tokio::test]
async fn the_conductor_runs_on_postgresql() {
    let pg = Postgres::start();
    let url = pg.url();
    let c = TestConductor::start_with(|config| config.database_url = url).await;
    let (status, node) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(json!({"driver": "fake-hardware", "name": "pg-node"})),
    )
    .await;
    assert_eq!(status, 201, "{node}");
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let (status, _) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": "52:54:00:aa:00:09", "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": "52:54:00:aa:00:09", "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 409, "unique MACs are enforced by PostgreSQL too");
    walk(
        &c,
        &uuid,
        &[("manage", "manageable"), ("provide", "available"), ("active", "active")],
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..12 {
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
        assert_eq!(task.await.expect("task").0, 200);
    }
    let (_, doc) = call(Method::GET, c.url(&format!("/v1/nodes/{uuid}")), None).await;
    assert_eq!(doc["extra"].as_object().map(|e| e.len()), Some(12));
    c.running.stop().await.expect("stops");
}
