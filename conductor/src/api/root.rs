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
    // Ironic's VERSIONED_CONTROLLERS: each link from the version that added its resource, and
    // only for resources Rivet serves.
    let versioned = [
        ("portgroups", 23),
        ("volume", 32),
        ("lookup", 22),
        ("heartbeat", 22),
        ("conductors", 49),
        ("allocations", 52),
        ("events", 54),
        ("deploy_templates", 55),
        ("runbooks", 92),
        ("shards", 82),
        ("continue_inspection", 84),
        ("inspection_rules", 96),
    ];
    for (name, minor) in versioned {
        if ctx.version.minor >= minor {
            doc[name] = resource(name);
        }
    }
    Json(doc)
}
