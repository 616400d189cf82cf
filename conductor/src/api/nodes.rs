//! `/v1/nodes`: create, list, show, JSON-patch update, delete, states, validation, maintenance,
//! history and vendor passthru.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::node_list::Listing;
use super::{ApiError, AppState, RequestContext, fields_param, parse_body};
use crate::engine::ProvisionRequest;
use crate::model::{
    ATTR_FIELDS, INTERFACE_KINDS, NODE_LIST_FIELDS, NodeRecord, attr_default, node_field_known, shown_provision_state,
};
use crate::states::{PROTECT_ALLOWED, state};
use crate::time::now_iso;

/// Fields a client may set at creation or patch (besides the interfaces).
const WRITABLE: &[&str] = &[
    "name",
    "driver",
    "driver_info",
    "properties",
    "instance_info",
    "extra",
    "maintenance",
    "maintenance_reason",
    "automated_clean",
    "description",
    "owner",
    "lessee",
    "resource_class",
    "conductor_group",
    "protected",
    "protected_reason",
    "retired",
    "retired_reason",
    "network_data",
    "shard",
    "parent_node",
    "chassis_uuid",
    "instance_uuid",
    "instance_name",
    "boot_mode",
    "secure_boot",
    "disable_power_off",
];

/// Fields a JSON patch may touch: Ironic's `PATCH_ALLOWED_FIELDS` (API node controller), the
/// interfaces among them.
const PATCH_ALLOWED: &[&str] = &[
    "automated_clean",
    "chassis_uuid",
    "conductor_group",
    "description",
    "disable_power_off",
    "driver",
    "driver_info",
    "extra",
    "instance_info",
    "instance_name",
    "instance_uuid",
    "lessee",
    "maintenance",
    "name",
    "network_data",
    "owner",
    "properties",
    "protected",
    "protected_reason",
    "resource_class",
    "retired",
    "retired_reason",
    "shard",
    "parent_node",
];

/// Whether `field` is in `list` or is an interface field (`<kind>_interface`).
fn listed_or_interface(list: &[&str], field: &str) -> bool {
    list.contains(&field)
        || field
            .strip_suffix("_interface")
            .is_some_and(|k| INTERFACE_KINDS.contains(&k))
}

/// Ironic's rules for `protected` and `retired` (conductor `_check_update_protected` and
/// `_check_update_retired`): a reason only with its flag, the flag cleared with its reason,
/// protection only for active or rescued nodes, no retiring of an available node.
fn check_protected_and_retired(before: &NodeRecord, after: &mut JsonObject) -> Result<(), ApiError> {
    let flag = |doc: &JsonObject, f: &str| doc.get(f).and_then(Value::as_bool).unwrap_or(false);
    for (field, reason) in [("protected", "protected_reason"), ("retired", "retired_reason")] {
        let was = before.attr(field).as_bool().unwrap_or(false);
        let now = flag(after, field);
        if was != now || before.attr(field) != *after.get(field).unwrap_or(&Value::Null) {
            if !now {
                after.insert(reason.to_owned(), Value::Null);
            } else if field == "protected" && !PROTECT_ALLOWED.contains(&before.provision_state.as_str()) {
                return Err(ApiError::Conflict(format!(
                    "Node {} can only be made protected in provision states 'active' or 'rescue', the current state is '{}'",
                    before.uuid, before.provision_state
                )));
            } else if field == "retired" && before.provision_state == state::AVAILABLE {
                return Err(ApiError::Conflict(format!(
                    "Node {} can not have 'retired' set in provision state 'available', the current state is '{}'",
                    before.uuid, before.provision_state
                )));
            }
        }
        let reason_set = after.get(reason).is_some_and(|r| !r.is_null() && r != "");
        if reason_set && after.get(reason) != Some(&before.attr(reason)) && !now {
            return Err(ApiError::BadRequest(format!(
                "The {reason} field can only be set when {field} is True"
            )));
        }
    }
    Ok(())
}

/// Ironic's logical names: RFC 3986 unreserved characters.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
}

fn object_field(doc: &JsonObject, field: &str) -> Result<JsonObject, ApiError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(JsonObject::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Invalid value for {field}: expected an object, got {other}"
        ))),
    }
}

fn optional_string(doc: &JsonObject, field: &str) -> Result<Option<String>, ApiError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Invalid value for {field}: expected a string, got {other}"
        ))),
    }
}

/// Write the writable fields of an API document into a record, checking types and names.
fn apply_fields(
    state: &AppState,
    node: &mut NodeRecord,
    doc: &JsonObject,
    interfaces_given: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    node.name = optional_string(doc, "name")?;
    if let Some(name) = &node.name
        && !valid_name(name)
    {
        return Err(ApiError::BadRequest(format!(
            "Expected a logical name but received {name:?}: use letters, digits and -._~"
        )));
    }
    node.driver = optional_string(doc, "driver")?
        .ok_or_else(|| ApiError::BadRequest("Mandatory field missing: driver".into()))?;
    node.driver_info = object_field(doc, "driver_info")?;
    node.properties = object_field(doc, "properties")?;
    node.instance_info = object_field(doc, "instance_info")?;
    node.extra = object_field(doc, "extra")?;
    node.maintenance = match doc.get("maintenance") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Invalid value for maintenance: expected a boolean, got {other}"
            )));
        }
    };
    node.maintenance_reason = optional_string(doc, "maintenance_reason")?;
    for field in ATTR_FIELDS {
        if let Some(value) = doc.get(*field)
            && WRITABLE.contains(field)
        {
            match (*field, value) {
                (
                    "automated_clean" | "protected" | "retired" | "secure_boot" | "disable_power_off",
                    Value::Bool(_) | Value::Null,
                ) => {}
                ("automated_clean" | "protected" | "retired" | "secure_boot" | "disable_power_off", other) => {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid value for {field}: expected a boolean, got {other}"
                    )));
                }
                ("network_data", Value::Object(_)) => {}
                ("network_data", other) => {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid value for network_data: expected an object, got {other}"
                    )));
                }
                (_, Value::String(_) | Value::Null) => {}
                (_, other) => {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid value for {field}: expected a string, got {other}"
                    )));
                }
            }
            node.attrs.insert((*field).to_owned(), value.clone());
        }
    }
    node.interfaces = state
        .conductor
        .drivers
        .resolve(&node.driver, interfaces_given)
        .map_err(ApiError::BadRequest)?;
    Ok(())
}

fn node_doc(state: &AppState, ctx: &RequestContext, node: &NodeRecord, fields: Option<&[String]>) -> Value {
    node.to_api(ctx.version, &ctx.base, state.conductor.locks.host(), fields)
}

fn check_fields(ctx: &RequestContext, fields: Option<&[String]>) -> Result<(), ApiError> {
    match fields
        .unwrap_or_default()
        .iter()
        .find(|f| !node_field_known(f, ctx.version))
    {
        Some(f) => Err(super::node_list::field_refused(f)),
        None => Ok(()),
    }
}

/// The node listing for `/v1/nodes` (`detail_path` false) and `/v1/nodes/detail`.
pub(super) async fn list_nodes(
    state: AppState,
    ctx: RequestContext,
    query: HashMap<String, String>,
    detail_path: bool,
) -> Result<Json<Value>, ApiError> {
    let listing = Listing::parse(&ctx, query, detail_path)?;
    let short: Vec<String> = NODE_LIST_FIELDS.iter().map(|s| s.to_string()).collect();
    let shown = if listing.detail {
        None
    } else {
        Some(listing.fields.clone().unwrap_or(short))
    };
    let nodes = state.conductor.db.nodes().await?;
    let page = listing.select(nodes, |n| node_doc(&state, &ctx, n, None))?;
    let mut doc = json!({
        "nodes": page
            .iter()
            .map(|n| node_doc(&state, &ctx, n, shown.as_deref()))
            .collect::<Vec<_>>(),
    });
    let path = if detail_path { "nodes/detail" } else { "nodes" };
    if let Some(next) = listing.next_link(&ctx, path, &page) {
        doc["next"] = json!(next);
    }
    Ok(Json(doc))
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_nodes(state, ctx, q, false).await
}

pub(super) async fn list_detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_nodes(state, ctx, q, true).await
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let doc: JsonObject = parse_body(&body)?;
    for key in doc.keys() {
        if key != "uuid" && !listed_or_interface(WRITABLE, key) {
            return Err(ApiError::BadRequest(format!(
                "Unknown or read-only attribute for a new node: {key}"
            )));
        }
        if !node_field_known(key, ctx.version) {
            return Err(ApiError::NotAcceptable(format!(
                "Field {key} needs a newer API version than {}",
                ctx.version
            )));
        }
    }
    let uuid = super::new_uuid(optional_string(&doc, "uuid")?.as_deref())?;
    let mut interfaces = BTreeMap::new();
    for kind in INTERFACE_KINDS {
        if let Some(name) = optional_string(&doc, &format!("{kind}_interface"))? {
            interfaces.insert((*kind).to_owned(), name);
        }
    }
    // Before 1.11 a new node was ready at once (Ironic's node controller).
    let initial = if ctx.version.minor < 11 {
        state::AVAILABLE
    } else {
        state::ENROLL
    };
    let mut node = NodeRecord {
        uuid,
        provision_state: initial.into(),
        created_at: now_iso(),
        ..Default::default()
    };
    apply_fields(&state, &mut node, &doc, &interfaces)?;
    if let Some(chassis) = node.attr("chassis_uuid").as_str() {
        super::chassis::check_exists(&state, chassis).await?;
    }
    state.conductor.db.insert_node(&node).await?;
    tracing::info!(node = %node.uuid, driver = %node.driver, "node created");
    let location = format!("{}/v1/nodes/{}", ctx.base, node.uuid);
    let mut response = (StatusCode::CREATED, Json(node_doc(&state, &ctx, &node, None))).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        response.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(response)
}

pub(super) async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let fields = fields_param(q.get("fields"));
    if fields.is_some() && ctx.version.minor < 8 {
        return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
    }
    check_fields(&ctx, fields.as_deref())?;
    let node = state.conductor.node(&ident).await?;
    Ok(Json(node_doc(&state, &ctx, &node, fields.as_deref())))
}

pub(super) async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ops: Vec<Value> = parse_body(&body)
        .map_err(|_| ApiError::BadRequest("The patch must be a JSON array of operations (RFC 6902).".into()))?;
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.clone()))
        .map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
    let mut touched_interfaces = Vec::new();
    for op in &ops {
        for key in ["path", "from"] {
            let Some(path) = op.get(key).and_then(Value::as_str) else {
                continue;
            };
            let root = path.trim_start_matches('/').split('/').next().unwrap_or_default();
            if !listed_or_interface(PATCH_ALLOWED, root) {
                return Err(ApiError::BadRequest(format!(
                    "Cannot patch {path}. Only the following can be updated: {}",
                    PATCH_ALLOWED.join(", ")
                )));
            }
            if !node_field_known(root, ctx.version) {
                return Err(ApiError::NotAcceptable(format!(
                    "Field {root} needs a newer API version than {}",
                    ctx.version
                )));
            }
            if let Some(kind) = root.strip_suffix("_interface") {
                touched_interfaces.push(kind.to_owned());
            }
        }
    }
    let conductor = &state.conductor;
    let node = conductor.node(&ident).await?;
    let lock = conductor
        .locks
        .acquire(&node.uuid)
        .await
        .map_err(crate::engine::EngineError::from)?;
    let result = async {
        let mut node = conductor.node(&node.uuid).await?;
        let mut doc = Value::Object(node.raw_fields());
        json_patch::patch(&mut doc, &patch).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
        let mut doc = doc.as_object().cloned().unwrap_or_default();
        // A removed field takes its default, the value a new node has (Ironic sets None, which
        // its node object turns into the default; for `conductor_group` and `automated_clean`
        // Ironic 39 answers 500 instead, see docs/compatibility.md). Leaving it out would keep
        // the old value.
        for field in PATCH_ALLOWED.iter().filter(|f| ATTR_FIELDS.contains(f)) {
            doc.entry(*field).or_insert_with(|| attr_default(field));
        }
        check_protected_and_retired(&node, &mut doc)?;
        // A change of instance_info names the instance after its display_name, when it has no
        // name yet (Ironic's node controller).
        let instance_info_changed = doc.get("instance_info") != Some(&Value::Object(node.instance_info.clone()));
        let unnamed = doc
            .get("instance_name")
            .is_none_or(|n| n.is_null() || n.as_str() == Some(""));
        if instance_info_changed
            && unnamed
            && let Some(name) = doc
                .get("instance_info")
                .and_then(|ii| ii.get("display_name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        {
            doc.insert("instance_name".into(), json!(name));
        }
        let driver_changed = doc.get("driver").and_then(Value::as_str) != Some(node.driver.as_str());
        let mut interfaces = BTreeMap::new();
        for kind in INTERFACE_KINDS {
            // A new driver resets the interfaces the patch does not name to its defaults.
            if driver_changed && !touched_interfaces.iter().any(|t| t == kind) {
                continue;
            }
            if let Some(name) = optional_string(&doc, &format!("{kind}_interface"))?.filter(|n| !n.is_empty()) {
                interfaces.insert((*kind).to_owned(), name);
            }
        }
        let chassis_before = node.attr("chassis_uuid");
        apply_fields(&state, &mut node, &doc, &interfaces)?;
        if let Some(chassis) = node
            .attr("chassis_uuid")
            .as_str()
            .filter(|c| chassis_before.as_str() != Some(*c))
        {
            super::chassis::check_exists(&state, chassis).await?;
        }
        conductor.save(&mut node).await?;
        Ok::<_, ApiError>(node)
    }
    .await;
    lock.release().await?;
    let node = result?;
    Ok(Json(node_doc(&state, &ctx, &node, None)))
}

pub(super) async fn delete(State(state): State<AppState>, Path(ident): Path<String>) -> Result<StatusCode, ApiError> {
    let conductor = &state.conductor;
    let node = conductor.node(&ident).await?;
    let lock = conductor
        .locks
        .acquire(&node.uuid)
        .await
        .map_err(crate::engine::EngineError::from)?;
    let node = conductor.node(&node.uuid).await?;
    let mut allowed: Vec<&str> = crate::states::DELETE_ALLOWED.to_vec();
    if conductor.config.allow_deleting_available_nodes {
        allowed.push(state::AVAILABLE);
    }
    let outcome = if node.attr("protected").as_bool() == Some(true) {
        Err(ApiError::Forbidden(format!(
            "Node {} is protected and cannot be deleted.",
            node.uuid
        )))
    } else if !allowed.contains(&node.provision_state.as_str()) {
        Err(ApiError::Conflict(format!(
            "Can not delete node \"{}\" while it is in provision state \"{}\". Valid provision states to start deletion are: {}",
            node.uuid,
            node.provision_state,
            allowed.join(", ")
        )))
    } else {
        conductor.db.delete_node(&node.uuid).await.map_err(ApiError::from)
    };
    if outcome.is_err() {
        lock.release().await?;
    }
    outcome?;
    tracing::info!(node = %node.uuid, "node deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn states(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = state.conductor.node(&ident).await?;
    let mut doc = json!({
        "console_enabled": node.attr("console_enabled"),
        "last_error": node.last_error,
        "power_state": node.power_state,
        "provision_state": shown_provision_state(&node.provision_state, ctx.version),
        "provision_updated_at": node.provision_updated_at,
        "target_power_state": node.target_power_state,
        "target_provision_state": node.target_provision_state,
    });
    if ctx.version.minor >= 12 {
        doc["raid_config"] = node.attr("raid_config");
        doc["target_raid_config"] = node.attr("target_raid_config");
    }
    if ctx.version.minor >= 75 {
        doc["boot_mode"] = node.attr("boot_mode");
        doc["secure_boot"] = node.attr("secure_boot");
    }
    Ok(Json(doc))
}

pub(super) async fn provision(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ProvisionRequest = parse_body(&body)?;
    let node = state.conductor.node(&ident).await?;
    state.conductor.provision(&node.uuid, request, ctx.version).await?;
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = http::HeaderValue::from_str(&format!("{}/v1/nodes/{}/states", ctx.base, node.uuid)) {
        response.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(response)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerRequest {
    target: String,
    #[serde(default)]
    timeout: Option<u64>,
}

pub(super) async fn power(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: PowerRequest = parse_body(&body)?;
    if request.timeout == Some(0) {
        return Err(ApiError::BadRequest(
            "timeout must be a positive number of seconds".into(),
        ));
    }
    state.conductor.set_power(&ident, &request.target).await?;
    Ok(StatusCode::ACCEPTED)
}

pub(super) async fn validate(
    State(state): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.conductor.validate(&ident).await?))
}

/// `PUT /v1/nodes/{node}/states/raid` (API 1.12): store `target_raid_config` (an empty
/// object clears it); 204. 404 when the node's RAID interface is `no-raid` (Ironic turns its
/// "unsupported" into 404 here), 400 for a configuration that breaks the schema.
pub(super) async fn raid(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let conductor = &state.conductor;
    let node = conductor.node(&ident).await?;
    if ctx.version.minor < 12 {
        return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
    }
    let config: Value = parse_body(&body)?;
    let work = async {
        let mut node = conductor.node(&node.uuid).await?;
        let empty = config.as_object().is_some_and(|c| c.is_empty());
        if !empty {
            if node.interface("raid") == "no-raid" {
                return Err(ApiError::NotFound(format!(
                    "Driver {} does not support raid (disabled or not implemented).",
                    node.driver
                )));
            }
            crate::raid::validate(&config).map_err(ApiError::BadRequest)?;
        }
        node.attrs.insert("target_raid_config".into(), config.clone());
        conductor.save(&mut node).await?;
        Ok(())
    };
    super::with_node_lock(&state, &node.uuid, work).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_maintenance(
    state: &AppState,
    ident: &str,
    on: bool,
    reason: Option<String>,
) -> Result<StatusCode, ApiError> {
    let conductor = &state.conductor;
    let node = conductor.node(ident).await?;
    let lock = conductor
        .locks
        .acquire(&node.uuid)
        .await
        .map_err(crate::engine::EngineError::from)?;
    let result = async {
        let mut node = conductor.node(&node.uuid).await?;
        node.maintenance = on;
        node.maintenance_reason = if on { reason } else { None };
        if !on {
            node.fault = None;
        }
        conductor.save(&mut node).await
    }
    .await;
    lock.release().await?;
    result?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceRequest {
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn maintenance_on(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: MaintenanceRequest = if body.is_empty() {
        MaintenanceRequest::default()
    } else {
        parse_body(&body)?
    };
    set_maintenance(&state, &ident, true, request.reason).await
}

pub(super) async fn maintenance_off(
    State(state): State<AppState>,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_maintenance(&state, &ident, false, None).await
}

/// One history event as Ironic's `NodeHistoryController` shows it: `uuid`, `created_at`,
/// `severity`, `event` (cut to 255 characters) and a self link; with `detail` also
/// `event_type`, `conductor`, `user`, `project` (1.113), `state`, `target_provision_state` and
/// `duration_seconds` (1.115), and the whole event.
fn history_entry(ctx: &RequestContext, node: &str, event: &crate::model::HistoryEvent, detail: bool) -> Value {
    let mut entry = serde_json::Map::new();
    entry.insert("uuid".into(), json!(event.uuid));
    entry.insert("created_at".into(), json!(event.created_at));
    entry.insert("severity".into(), json!(event.severity));
    if detail {
        entry.insert("event_type".into(), json!(event.event_type));
        entry.insert("event".into(), json!(event.event));
        entry.insert("conductor".into(), json!(event.conductor));
        entry.insert("user".into(), json!(event.user));
        if ctx.version.minor >= 113 {
            entry.insert("project".into(), json!(event.project));
        }
        if ctx.version.minor >= 115 {
            entry.insert("state".into(), json!(event.state));
            entry.insert("target_provision_state".into(), json!(event.target_provision_state));
            entry.insert("duration_seconds".into(), json!(event.duration_seconds));
        }
    } else {
        let text = if event.event.chars().count() > 255 {
            format!("{}...", event.event.chars().take(251).collect::<String>())
        } else {
            event.event.clone()
        };
        entry.insert("event".into(), json!(text));
    }
    entry.insert(
        "links".into(),
        json!([{"href": format!("{}/v1/nodes/{node}/history/{}", ctx.base, event.uuid), "rel": "self"}]),
    );
    Value::Object(entry)
}

/// What history may be sorted by: the event's fields (`id`, Ironic's row number, is the order
/// of recording).
const HISTORY_SORT_KEYS: &[&str] = &[
    "id",
    "created_at",
    "uuid",
    "severity",
    "event",
    "event_type",
    "conductor",
    "user",
    "project",
    "state",
    "target_provision_state",
    "duration_seconds",
];

/// The value of `event` that `sort_key` (one of [`HISTORY_SORT_KEYS`]) sorts history by.
fn history_sort_value(event: &crate::model::HistoryEvent, sort_key: &str) -> Value {
    match sort_key {
        "uuid" => json!(event.uuid),
        "severity" => json!(event.severity),
        "event" => json!(event.event),
        "event_type" => json!(event.event_type),
        "conductor" => json!(event.conductor),
        "user" => json!(event.user),
        "project" => json!(event.project),
        "state" => json!(event.state),
        "target_provision_state" => json!(event.target_provision_state),
        "duration_seconds" => json!(event.duration_seconds),
        _ => json!(event.created_at),
    }
}

/// `GET /v1/nodes/{node}/history[?detail=true]` (API 1.78): the node's events, oldest first
/// (at most `node_history_max_size` are kept), paged as Ironic pages them: `limit`, `marker`
/// (an event's UUID), `sort_key` (an event field, `created_at` by default) and `sort_dir`, with
/// a `next` link when a page is full. Errors: 400 for a bad detail, limit, sort key or
/// direction; 404 for an unknown node or marker.
pub(super) async fn history(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 78)?;
    let detail = match q.get("detail") {
        None => false,
        Some(text) => super::collection::boolean(&json!(text))
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid value for detail: {text}")))?,
    };
    let sort_key = q.get("sort_key").map_or("created_at", String::as_str);
    let sort_dir = super::collection::sort_dir(&q)?;
    let limit = super::collection::limit(&q)?;
    if !HISTORY_SORT_KEYS.contains(&sort_key) {
        return Err(ApiError::BadRequest(format!(
            "The sort_key value {sort_key} is an invalid field for sorting"
        )));
    }
    let node = state.conductor.node(&ident).await?;
    let events = state.conductor.db.history(&node.uuid).await?;
    let mut keyed: Vec<_> = events
        .into_iter()
        .map(|e| (history_sort_value(&e, sort_key), e))
        .collect();
    // Stable: events with the same key stay in the order they were recorded.
    keyed.sort_by(|a, b| super::node_list::compare(&a.0, &b.0));
    let mut events: Vec<_> = keyed.into_iter().map(|(_, e)| e).collect();
    if sort_dir == "desc" {
        events.reverse();
    }
    if let Some(marker) = q.get("marker") {
        let at = events
            .iter()
            .position(|e| &e.uuid == marker)
            .ok_or_else(|| ApiError::NotFound(format!("Node history record {marker} could not be found.")))?;
        events.drain(..=at);
    }
    if let Some(limit) = limit {
        events.truncate(limit);
    }
    let entries: Vec<Value> = events
        .iter()
        .map(|e| history_entry(&ctx, &node.uuid, e, detail))
        .collect();
    let mut doc = json!({ "history": entries });
    if let (Some(limit), Some(last)) = (limit, events.last())
        && events.len() == limit
    {
        // A link that works: Ironic 39's repeats `marker` (`marker=None&...&marker=<uuid>`).
        doc["next"] = json!(format!(
            "{}/v1/nodes/{ident}/history?{}sort_key={sort_key}&sort_dir={sort_dir}&limit={limit}&marker={}",
            ctx.base,
            if detail { "detail=True&" } else { "" },
            last.uuid
        ));
    }
    Ok(Json(doc))
}

/// `GET /v1/nodes/{node}/history/{event}` (API 1.78): one event, in detail.
pub(super) async fn history_event(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, event)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 78)?;
    let node = state.conductor.node(&ident).await?;
    let found = state
        .conductor
        .db
        .history_event(&node.uuid, &event)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Node history record {event} could not be found.")))?;
    Ok(Json(history_entry(&ctx, &node.uuid, &found, true)))
}

/// `GET /v1/nodes/{node}/inventory` (API 1.81): the inventory the node's agent posted.
pub(super) async fn inventory(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 81)?;
    let node = state.conductor.node(&ident).await?;
    let Some((inventory, plugin_data)) = state.conductor.db.inventory(&node.uuid).await? else {
        return Err(ApiError::NotFound(format!(
            "Node {} inventory could not be found.",
            node.uuid
        )));
    };
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    Ok(Json(
        json!({ "inventory": parse(&inventory), "plugin_data": parse(&plugin_data) }),
    ))
}

pub(super) async fn vendor_methods(
    State(state): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = state.conductor.node(&ident).await?;
    let driver = state.conductor.driver(&node)?;
    let methods: JsonObject = driver
        .vendor
        .methods()
        .iter()
        .map(|m| (m.name.to_owned(), m.describe()))
        .collect();
    Ok(Json(Value::Object(methods)))
}

async fn call_vendor(
    state: AppState,
    ident: String,
    method: Option<String>,
    http_method: Method,
    body: Bytes,
) -> Result<Response, ApiError> {
    let method = method
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::BadRequest("Method not specified".into()))?;
    let args: Value = if body.is_empty() { json!({}) } else { parse_body(&body)? };
    let conductor = &state.conductor;
    let node = conductor.node(&ident).await?;
    let driver = conductor.driver(&node)?;
    let spec = driver
        .vendor
        .methods()
        .into_iter()
        .find(|m| m.name == method)
        .ok_or_else(|| ApiError::BadRequest(format!("No handler for method {method}")))?;
    if !spec.http_methods.contains(&http_method.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "The method {method} does not support HTTP {http_method}; supported: {}",
            spec.http_methods.join(", ")
        )));
    }
    let lock = conductor
        .locks
        .acquire(&node.uuid)
        .await
        .map_err(crate::engine::EngineError::from)?;
    let mut node = conductor.node(&node.uuid).await?;
    let vendor = driver.vendor.clone();
    let http_method = http_method.to_string();
    if spec.is_async {
        let conductor = conductor.clone();
        tokio::spawn(async move {
            match vendor.call(&mut node, &method, &http_method, args).await {
                Ok(_) => {
                    let _ = conductor.save(&mut node).await;
                }
                Err(e) => tracing::error!(node = %node.uuid, method, error = %e, "vendor passthru failed"),
            }
            let _ = lock.release().await;
        });
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"return": null, "async": true, "attach": false})),
        )
            .into_response());
    }
    let outcome = vendor.call(&mut node, &method, &http_method, args).await;
    let saved = match &outcome {
        Ok(_) => conductor.save(&mut node).await.map_err(ApiError::from),
        Err(_) => Ok(()),
    };
    lock.release().await?;
    saved?;
    let value = outcome.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((
        StatusCode::OK,
        Json(json!({"return": value, "async": false, "attach": spec.attach})),
    )
        .into_response())
}

pub(super) async fn vendor_call(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    method: Method,
    body: Bytes,
) -> Result<Response, ApiError> {
    call_vendor(state, ident, q.get("method").cloned(), method, body).await
}

pub(super) async fn vendor_call_path(
    State(state): State<AppState>,
    Path((ident, name)): Path<(String, String)>,
    method: Method,
    body: Bytes,
) -> Result<Response, ApiError> {
    call_vendor(state, ident, Some(name), method, body).await
}
