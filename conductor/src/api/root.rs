//! `GET /` and `GET /v1/`.

use axum::Extension;
use axum::Json;
use serde_json::{Value, json};

use super::{MAX_VERSION, MIN_VERSION, RequestContext};

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "status": "CURRENT",
        "min_version": MIN_VERSION.to_string(),
        "version": MAX_VERSION.to_string(),
    })
}

pub(super) async fn root(Extension(ctx): Extension<RequestContext>) -> Json<Value> {
    Json(json!({
        "name": "OpenStack Ironic API",
        "description": "Ironic is an OpenStack project which enables the provision and management of baremetal machines.",
        "default_version": version_doc(&ctx.base),
        "versions": [version_doc(&ctx.base)],
    }))
}

pub(super) async fn v1(Extension(ctx): Extension<RequestContext>) -> Json<Value> {
    let base = &ctx.base;
    let resource = |name: &str| json!([{"href": format!("{base}/v1/{name}/"), "rel": "self"}, {"href": format!("{base}/{name}/"), "rel": "bookmark"}]);
    let mut doc = json!({
        "id": "v1",
        "links": [
            {"href": format!("{base}/v1/"), "rel": "self"},
            {"href": "https://docs.openstack.org//ironic/latest/contributor//webapi.html", "rel": "describedby", "type": "text/html"}
        ],
        "media_types": {"base": "application/json", "type": "application/vnd.openstack.ironic.v1+json"},
        "chassis": resource("chassis"),
        "nodes": resource("nodes"),
        "ports": resource("ports"),
        "drivers": resource("drivers"),
        "version": version_doc(base),
    });
    if ctx.version.minor >= 22 {
        doc["lookup"] = resource("lookup");
        doc["heartbeat"] = resource("heartbeat");
    }
    if ctx.version.minor >= 49 {
        doc["conductors"] = resource("conductors");
    }
    Json(doc)
}
