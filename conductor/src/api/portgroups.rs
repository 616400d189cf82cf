//! `/v1/portgroups` (API 1.23): bonds of a node's ports. Stored and served as Ironic does with
//! its `noop` and `flat` network interfaces, which configure no switch; a port joins a group by
//! its `portgroup_uuid` (Ironic's `api/controllers/v1/portgroup.py`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Json};
use http::StatusCode;
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::collection::{self, Listing};
use super::{API_NOT_SUPPORTED, ApiError, AppState, RequestContext, parse_body};
use crate::model::{ResourceKind, StoredResource};
use crate::states::state;
use crate::time::now_iso;

/// Fields with the minor version that shows them first.
const FIELDS: &[(&str, u32)] = &[
    ("uuid", 23),
    ("address", 23),
    ("name", 23),
    ("node_uuid", 23),
    ("standalone_ports_supported", 23),
    ("internal_info", 23),
    ("extra", 23),
    ("mode", 26),
    ("properties", 26),
    ("physical_network", 102),
    ("category", 103),
    ("dynamic_portgroup", 111),
    ("created_at", 23),
    ("updated_at", 23),
    ("links", 23),
    ("ports", 23),
];

/// Fields a client may set or patch.
const WRITABLE: &[&str] = &[
    "address",
    "extra",
    "mode",
    "name",
    "node_uuid",
    "properties",
    "standalone_ports_supported",
    "physical_network",
    "category",
];

const LISTING: Listing = Listing {
    path: "portgroups",
    key: "portgroups",
    short: &["uuid", "address", "name"],
    unsortable: &["extra", "internal_info", "properties"],
};

/// States in which a port group may move to another node (Ironic's `update_portgroup`).
const NODE_CHANGE_ALLOWED: &[&str] = &[state::ENROLL, state::INSPECTING, state::INSPECTWAIT, state::MANAGEABLE];

fn show(ctx: &RequestContext, portgroup: &StoredResource, fields: Option<&[String]>) -> Value {
    collection::render(portgroup, FIELDS, ctx, "portgroups", &["ports"], fields)
}

/// A port group's identifier in a path must be a UUID or a logical name; Ironic's router
/// refuses anything else before it looks at the version.
pub(super) fn check_ident(ident: &str) -> Result<(), ApiError> {
    if uuid::Uuid::parse_str(ident).is_ok() || super::nodes::valid_name(ident) {
        Ok(())
    } else {
        Err(ApiError::Framework(
            StatusCode::BAD_REQUEST,
            format!("Expected UUID or name for portgroup: {ident}"),
        ))
    }
}

/// The port group `ident` names (UUID or name): 404 when there is none.
pub(super) async fn find(state: &AppState, ident: &str) -> Result<StoredResource, ApiError> {
    state
        .conductor
        .db
        .resource(ResourceKind::Portgroup, ident)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Portgroup {ident} could not be found.")))
}

fn schema_error(reason: String) -> ApiError {
    ApiError::BadRequest(format!("Schema error for portgroup: {reason}"))
}

/// Check `doc`'s writable fields and store them in `portgroup`; a null object field becomes
/// `{}`, a null mode the configured default.
fn apply(
    portgroup: &mut StoredResource,
    doc: &JsonObject,
    default_mode: &str,
    renaming: Option<&str>,
) -> Result<(), ApiError> {
    for (field, value) in doc {
        let value =
            match (field.as_str(), value) {
                ("uuid" | "node_uuid", _) => continue,
                ("address", Value::Null) => Value::Null,
                ("address", Value::String(mac)) => json!(super::normalise_mac(mac).ok_or_else(|| {
                    ApiError::BadRequest(format!("Expected valid MAC address for address: {mac}"))
                })?),
                ("name", Value::Null) => Value::Null,
                ("name", Value::String(name)) if super::nodes::valid_name(name) => json!(name),
                ("name", other) => {
                    let name = other.as_str().map_or_else(|| other.to_string(), str::to_owned);
                    return Err(ApiError::BadRequest(match renaming {
                        Some(ident) => format!("Portgroup {ident}: Cannot change name to invalid name '{name}'"),
                        None => format!("Cannot create portgroup with invalid name '{name}'"),
                    }));
                }
                ("mode", Value::Null) => json!(default_mode),
                ("mode", Value::String(m)) => json!(m),
                ("extra" | "properties", Value::Null) => json!({}),
                ("extra" | "properties", Value::Object(o)) => Value::Object(o.clone()),
                ("standalone_ports_supported", Value::Null) => json!(true),
                ("standalone_ports_supported", v) => json!(collection::boolean(v).ok_or_else(|| {
                    ApiError::BadRequest(format!("Invalid value for standalone_ports_supported: {v}"))
                })?),
                ("physical_network" | "category", Value::Null) => Value::Null,
                ("physical_network", Value::String(s)) if s.chars().count() <= 64 => json!(s),
                ("category", Value::String(s)) if s.chars().count() <= 80 => json!(s),
                (f, v) if WRITABLE.contains(&f) => {
                    return Err(schema_error(format!("{v} is not valid for {f}")));
                }
                (f, _) => {
                    return Err(schema_error(format!(
                        "Additional properties are not allowed ('{f}' was unexpected)"
                    )));
                }
            };
        portgroup.doc.insert(field.clone(), value);
    }
    Ok(())
}

/// The node a body names in `node_uuid`: a UUID of an existing node (400 otherwise).
async fn node_of(state: &AppState, doc: &JsonObject) -> Result<String, ApiError> {
    let ident = match doc.get("node_uuid") {
        Some(Value::String(s)) => s,
        Some(other) => return Err(schema_error(format!("{other} is not of type 'string'"))),
        None => return Err(schema_error("'node_uuid' is a required property".into())),
    };
    if uuid::Uuid::parse_str(ident).is_err() {
        return Err(ApiError::BadRequest(format!("Expected UUID for node_uuid: {ident}")));
    }
    match state.conductor.db.node(ident).await? {
        Some(node) => Ok(node.uuid),
        None => Err(ApiError::BadRequest(format!("Node {ident} could not be found."))),
    }
}

/// `mode` and `properties` exist from API 1.26: 406 below it.
fn check_mode_version(ctx: &RequestContext, touched: impl Fn(&str) -> bool) -> Result<(), ApiError> {
    if ctx.version.minor < 26 && (touched("mode") || touched("properties")) {
        return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
    }
    Ok(())
}

/// `POST /v1/portgroups`: 201 with the new port group.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Bytes,
) -> Result<Response, ApiError> {
    super::require_api(&ctx, 23, API_NOT_SUPPORTED)?;
    let doc: JsonObject = parse_body(&body)?;
    check_mode_version(&ctx, |f| doc.get(f).is_some_and(|v| !v.is_null()))?;
    let uuid = super::new_uuid(doc.get("uuid").and_then(Value::as_str))?;
    let node_uuid = node_of(&state, &doc).await?;
    let mut portgroup = StoredResource {
        kind: ResourceKind::Portgroup,
        uuid,
        node_uuid: Some(node_uuid),
        doc: JsonObject::new(),
        created_at: now_iso(),
        updated_at: None,
    };
    let defaults = json!({
        "address": null, "name": null, "standalone_ports_supported": true, "internal_info": {},
        "extra": {}, "mode": state.conductor.config.default_portgroup_mode, "properties": {},
        "physical_network": null, "category": null, "dynamic_portgroup": false,
    });
    portgroup.doc = defaults.as_object().cloned().unwrap_or_default();
    apply(
        &mut portgroup,
        &doc,
        &state.conductor.config.default_portgroup_mode,
        None,
    )?;
    state.conductor.db.insert_resource(&portgroup).await?;
    Ok(super::created(
        &ctx,
        &format!("portgroups/{}", portgroup.uuid),
        show(&ctx, &portgroup, None),
    ))
}

/// The listing of port groups, of one node when `node` is given.
async fn list_portgroups(
    state: AppState,
    ctx: RequestContext,
    node: Option<String>,
    query: HashMap<String, String>,
    detail_path: bool,
) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 23, API_NOT_SUPPORTED)?;
    let node = node.or_else(|| query.get("node").cloned());
    let address = query.get("address");
    if node.is_some() && address.is_some() {
        return Err(ApiError::BadRequest(
            "Filtering by node, address, or shard simultaneously is not supported.".into(),
        ));
    }
    let node_uuid = match node {
        Some(ident) => Some(state.conductor.node(&ident).await?.uuid),
        None => None,
    };
    let mut all = state
        .conductor
        .db
        .resources(ResourceKind::Portgroup, node_uuid.as_deref())
        .await?;
    if let Some(address) = address {
        let wanted = super::normalise_mac(address);
        all.retain(|p| p.get("address").as_str().is_some_and(|a| Some(a) == wanted.as_deref()));
    }
    let doc = collection::list(&ctx, &LISTING, "Portgroup", all, &query, detail_path, |p, f| {
        show(&ctx, p, f)
    })?;
    Ok(Json(doc))
}

/// `GET /v1/portgroups`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_portgroups(state, ctx, None, q, false).await
}

/// `GET /v1/portgroups/detail`.
pub(super) async fn list_detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_portgroups(state, ctx, None, q, true).await
}

/// `GET /v1/nodes/{node}/portgroups` (API 1.24).
pub(super) async fn list_for_node(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 24)?;
    list_portgroups(state, ctx, Some(node), q, false).await
}

/// `GET /v1/nodes/{node}/portgroups/detail` (API 1.24).
pub(super) async fn list_detail_for_node(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 24)?;
    list_portgroups(state, ctx, Some(node), q, true).await
}

/// `GET /v1/portgroups/{portgroup}` by UUID or name.
pub(super) async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    check_ident(&ident)?;
    super::require_api(&ctx, 23, API_NOT_SUPPORTED)?;
    let portgroup = find(&state, &ident).await?;
    let fields = super::shown_fields(q.get("fields"), &show(&ctx, &portgroup, None))?;
    Ok(Json(show(&ctx, &portgroup, fields.as_deref())))
}

/// `PATCH /v1/portgroups/{portgroup}`: the writable fields, under the node's lock.
pub(super) async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_ident(&ident)?;
    super::require_api(&ctx, 23, API_NOT_SUPPORTED)?;
    let ops: Vec<Value> = parse_body(&body)
        .map_err(|_| ApiError::BadRequest("The patch must be a JSON array of operations (RFC 6902).".into()))?;
    let paths: Vec<String> = ops
        .iter()
        .map(|op| op.get("path").and_then(Value::as_str).unwrap_or_default().to_owned())
        .collect();
    let root = |path: &str| {
        path.trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    check_mode_version(&ctx, |f| paths.iter().any(|p| root(p) == f))?;
    if let Some(bad) = paths
        .iter()
        .find(|p| !WRITABLE.contains(&root(p).as_str()) || root(p) == "node_uuid" && p.matches('/').count() > 1)
    {
        return Err(ApiError::BadRequest(format!(
            "Cannot patch {bad}. Only the following can be updated: {}",
            WRITABLE.join(", ")
        )));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
    let mut portgroup = find(&state, &ident).await?;
    let node_before = portgroup.node().to_owned();
    let work = async {
        // Read again under the lock: a VIF attached meanwhile must not be written away.
        portgroup = find(&state, &portgroup.uuid).await?;
        let mut doc = portgroup.doc.clone();
        doc.insert("node_uuid".into(), json!(portgroup.node()));
        let mut value = Value::Object(doc);
        json_patch::patch(&mut value, &patch).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
        let mut doc = value.as_object().cloned().unwrap_or_default();
        if !doc.contains_key("mode") {
            return Err(ApiError::BadRequest(
                "'mode' is a mandatory attribute and can not be removed".into(),
            ));
        }
        // Only what a client may write is checked and stored again; the rest stays as it was.
        doc.retain(|field, _| WRITABLE.contains(&field.as_str()));
        // A removed field takes its default.
        for field in [
            "address",
            "name",
            "extra",
            "properties",
            "standalone_ports_supported",
            "physical_network",
            "category",
        ] {
            doc.entry(field).or_insert(Value::Null);
        }
        let node_uuid = node_of(&state, &doc).await?;
        if node_uuid != portgroup.node() {
            check_node_change(&state, &portgroup, &node_uuid).await?;
        }
        apply(
            &mut portgroup,
            &doc,
            &state.conductor.config.default_portgroup_mode,
            Some(&ident),
        )?;
        portgroup.node_uuid = Some(node_uuid);
        portgroup.updated_at = Some(now_iso());
        state.conductor.db.update_resource(&portgroup).await?;
        Ok(())
    };
    super::with_node_lock(&state, &node_before, work).await?;
    Ok(Json(show(&ctx, &portgroup, None)))
}

/// Ironic's rules for moving a port group to another node: not while ports are in it, and only
/// while the node is enrolled, inspected or manageable, or in maintenance.
async fn check_node_change(state: &AppState, portgroup: &StoredResource, to: &str) -> Result<(), ApiError> {
    if !members(state, portgroup).await?.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Portgroup {} can not be associated with node {to} because there are ports associated with this portgroup.",
            portgroup.uuid
        )));
    }
    let node = state.conductor.node(to).await?;
    if !node.maintenance && !NODE_CHANGE_ALLOWED.contains(&node.provision_state.as_str()) {
        return Err(ApiError::Conflict(format!(
            "Portgroup {} can not be associated with node {to} unless the node is in a {} state or in maintenance mode. Current state is '{}'.",
            portgroup.uuid,
            NODE_CHANGE_ALLOWED.join(", "),
            node.provision_state
        )));
    }
    Ok(())
}

/// The UUIDs of the ports in a port group (all on its node: a port joins only a group of its
/// own node).
pub(super) async fn members(state: &AppState, portgroup: &StoredResource) -> Result<Vec<String>, ApiError> {
    Ok(state
        .conductor
        .db
        .ports(Some(portgroup.node()))
        .await?
        .into_iter()
        .filter(|p| p.attr("portgroup_uuid").as_str() == Some(portgroup.uuid.as_str()))
        .map(|p| p.uuid)
        .collect())
}

/// `DELETE /v1/portgroups/{portgroup}`: 204; 400 while ports are in it.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_ident(&ident)?;
    super::require_api(&ctx, 23, API_NOT_SUPPORTED)?;
    let portgroup = find(&state, &ident).await?;
    let work = async {
        if !members(&state, &portgroup).await?.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "Cannot complete the requested action because portgroup {} contains ports.",
                portgroup.uuid
            )));
        }
        state.conductor.db.delete_resource(&portgroup.uuid).await?;
        Ok(())
    };
    super::with_node_lock(&state, portgroup.node(), work).await?;
    Ok(StatusCode::NO_CONTENT)
}
