//! `/v1/volume` (API 1.32): a node's volume connectors (how it reaches storage: an iSCSI
//! initiator name, a WWPN, an IP address) and volume targets (what it boots from or attaches),
//! served by [`super::documents`].
//!
//! Stored and served as Ironic does; Rivet's only storage interface is `noop`, which, like
//! Ironic's, attaches nothing (docs/compatibility.md). Ironic's `volume_connector.py`,
//! `volume_target.py` and its conductor's rules: a connector or target changes only while its
//! node is powered off, and is deleted only then or while the node is enrolled, manageable or
//! failed adoption.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::collection::Listing;
use super::documents::{Ident, NodeRule, Spec, TooOld, any_change, no_mask, no_rules};
use super::{ApiError, AppState, RequestContext};
use crate::model::ResourceKind;

/// Volume connectors.
pub(super) static CONNECTORS: Spec = Spec {
    kind: ResourceKind::VolumeConnector,
    fields: &[
        ("uuid", 32),
        ("node_uuid", 32),
        ("type", 32),
        ("connector_id", 32),
        ("extra", 32),
        ("created_at", 32),
        ("updated_at", 32),
        ("links", 32),
    ],
    required: &["connector_id", "node_uuid", "type"],
    writable: &["connector_id", "extra", "type"],
    listing: Listing {
        path: "volume/connectors",
        key: "connectors",
        short: &["uuid", "node_uuid", "type", "connector_id"],
        unsortable: &["extra"],
    },
    since: 32,
    too_old: TooOld::NoRoute,
    ident: Ident::Uuid("connector_uuid"),
    schema_name: "volume connector",
    node: Some(NodeRule {
        action: "volume connector",
    }),
    defaults,
    field,
    whole: no_rules,
    mask: no_mask,
    filters: &[],
    patch_check: any_change,
};

/// Volume targets.
pub(super) static TARGETS: Spec = Spec {
    kind: ResourceKind::VolumeTarget,
    fields: &[
        ("uuid", 32),
        ("node_uuid", 32),
        ("volume_type", 32),
        ("properties", 32),
        ("boot_index", 32),
        ("volume_id", 32),
        ("extra", 32),
        ("created_at", 32),
        ("updated_at", 32),
        ("links", 32),
    ],
    required: &["boot_index", "node_uuid", "volume_id", "volume_type"],
    writable: &["boot_index", "extra", "properties", "volume_id", "volume_type"],
    listing: Listing {
        path: "volume/targets",
        key: "targets",
        short: &["uuid", "node_uuid", "volume_type", "boot_index", "volume_id"],
        unsortable: &["extra", "properties"],
    },
    since: 32,
    too_old: TooOld::NoRoute,
    ident: Ident::Uuid("target_uuid"),
    schema_name: "volume target",
    node: Some(NodeRule {
        action: "volume target",
    }),
    defaults,
    field,
    whole: no_rules,
    mask: no_mask,
    filters: &[],
    patch_check: any_change,
};

/// `extra` (and a target's `properties`) start empty.
fn defaults() -> JsonObject {
    json!({"extra": {}, "properties": {}})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// The types of the writable fields of both kinds.
fn field(_minor: u32, name: &str, value: &Value) -> Result<Value, String> {
    match (name, value) {
        ("extra" | "properties", Value::Null) => Ok(json!({})),
        ("extra" | "properties", Value::Object(_)) => Ok(value.clone()),
        ("boot_index", Value::Number(n)) if n.is_i64() => Ok(value.clone()),
        ("type" | "connector_id" | "volume_id" | "volume_type", Value::String(_)) => Ok(value.clone()),
        (name, value) => Err(format!("{value} is not valid for {name}")),
    }
}

/// `GET /v1/volume` and `GET /v1/nodes/{node}/volume`: links to the connectors and targets.
fn root_links(ctx: &RequestContext, prefix: &str) -> Value {
    let link = |sub: &str| crate::model::links(&ctx.base, &format!("{prefix}{sub}"));
    json!({"links": link(""), "connectors": link("connectors"), "targets": link("targets")})
}

/// `GET /v1/volume` (API 1.32).
pub(super) async fn root(Extension(ctx): Extension<RequestContext>) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 32, super::API_NOT_SUPPORTED)?;
    Ok(Json(root_links(&ctx, "volume/")))
}

/// `GET /v1/nodes/{node}/volume` (API 1.32).
pub(super) async fn node_root(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 32, super::API_NOT_SUPPORTED)?;
    let node = state.conductor.node(&node).await?;
    Ok(Json(root_links(&ctx, &format!("nodes/{}/volume/", node.uuid))))
}

/// `GET /v1/nodes/{node}/volume/{connectors|targets}`.
pub(super) async fn list_for_node(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((node, kind)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let spec = match kind.as_str() {
        "connectors" => &CONNECTORS,
        "targets" => &TARGETS,
        _ => return Err(ApiError::NoRoute),
    };
    spec.list(&state, &ctx, Some(node), &q).await
}
