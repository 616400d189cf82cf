//! `/v1/allocations` (API 1.52) and `/v1/nodes/{node}/allocation`: ask for a node by resource
//! class, traits and candidates ([`crate::allocation`] picks it in the background), or record
//! that a deployed node is taken (backfilling, 1.58). Ironic's `allocation.py`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Json};
use http::StatusCode;
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::collection::{self, Listing};
use super::{ApiError, AppState, RequestContext, parse_body};
use crate::allocation::{ACTIVE, ALLOCATING, ERROR};
use crate::engine::Conductor;
use crate::model::{ResourceKind, StoredResource};
use crate::time::now_iso;

const FIELDS: &[(&str, u32)] = &[
    ("uuid", 52),
    ("name", 52),
    ("node_uuid", 52),
    ("state", 52),
    ("last_error", 52),
    ("resource_class", 52),
    ("traits", 52),
    ("candidate_nodes", 52),
    ("extra", 52),
    ("owner", 60),
    ("created_at", 52),
    ("updated_at", 52),
    ("links", 52),
];

const LISTING: Listing = Listing {
    path: "allocations",
    key: "allocations",
    // Ironic lists every field unless asked for some.
    short: &[],
    unsortable: &["extra", "candidate_nodes", "traits"],
};

const TOO_OLD: &str = "The API version does not allow allocations";

/// Before 1.52 Ironic answers reads with a 404 fault and writes with a 405 fault.
fn gate(ctx: &RequestContext) -> Result<(), ApiError> {
    super::require_api(ctx, 52, TOO_OLD)
}

fn gate_write(ctx: &RequestContext) -> Result<(), ApiError> {
    if ctx.version.minor < 52 {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(())
}

/// `/v1/nodes/{node}/allocation` before 1.52: the framework's 404.
fn gate_node(ctx: &RequestContext) -> Result<(), ApiError> {
    if ctx.version.minor < 52 {
        return Err(ApiError::Framework(StatusCode::NOT_FOUND, TOO_OLD.into()));
    }
    Ok(())
}

fn show(ctx: &RequestContext, allocation: &StoredResource, fields: Option<&[String]>) -> Value {
    collection::render(allocation, FIELDS, ctx, "allocations", &[], fields)
}

async fn find(state: &AppState, ident: &str) -> Result<StoredResource, ApiError> {
    state
        .conductor
        .db
        .resource(ResourceKind::Allocation, ident)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Allocation {ident} could not be found.")))
}

fn schema_error(reason: String) -> ApiError {
    ApiError::BadRequest(format!("Schema error for allocation: {reason}"))
}

fn string_list(doc: &JsonObject, field: &str) -> Result<Vec<String>, ApiError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| schema_error(format!("{i} is not of type 'string'")))
            })
            .collect(),
        Some(other) => Err(schema_error(format!("{other} is not of type 'array'"))),
    }
}

fn check_name(name: &Value, verb: &str) -> Result<(), ApiError> {
    match name {
        Value::Null => Ok(()),
        Value::String(n) if super::nodes::valid_name(n) => Ok(()),
        other => Err(ApiError::BadRequest(format!(
            "Cannot {verb} allocation with invalid name '{}'",
            other.as_str().map_or_else(|| other.to_string(), str::to_owned)
        ))),
    }
}

/// `POST /v1/allocations`: 201 with the allocation in `allocating` (a node is picked in the
/// background), or, backfilling a deployed `node`, `active` at once.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Bytes,
) -> Result<Response, ApiError> {
    gate_write(&ctx)?;
    let doc: JsonObject = parse_body(&body)?;
    let mut allowed = vec!["uuid", "name", "resource_class", "traits", "candidate_nodes", "extra"];
    if ctx.version.minor >= 58 {
        allowed.push("node");
    }
    if ctx.version.minor >= 60 {
        allowed.push("owner");
    }
    if let Some(other) = doc.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(schema_error(format!(
            "Additional properties are not allowed ('{other}' was unexpected)"
        )));
    }
    let name = doc.get("name").cloned().unwrap_or(Value::Null);
    check_name(&name, "create")?;
    let conductor = &state.conductor;
    let backfill = match doc.get("node").and_then(Value::as_str) {
        Some(ident) => Some(
            conductor
                .db
                .node_by_ident(ident)
                .await?
                .ok_or_else(|| ApiError::BadRequest(format!("Node {ident} could not be found.")))?,
        ),
        None => None,
    };
    let resource_class = match (doc.get("resource_class"), &backfill) {
        (Some(Value::String(rc)), _) if !rc.is_empty() => json!(rc),
        (None | Some(Value::Null), Some(node)) => node.attr("resource_class"),
        (Some(other), _) if !other.is_null() && !other.is_string() => {
            return Err(schema_error(format!("{other} is not of type 'string'")));
        }
        _ => {
            return Err(ApiError::BadRequest(
                "The resource_class field is mandatory when not backfilling".into(),
            ));
        }
    };
    let traits = string_list(&doc, "traits")?;
    if let Some(bad) = traits.iter().find(|t| !super::traits::valid_trait(t)) {
        return Err(schema_error(format!("'{bad}' is not a valid trait")));
    }
    let mut candidates = Vec::new();
    let mut missing = Vec::new();
    for ident in string_list(&doc, "candidate_nodes")? {
        match conductor.db.node_by_ident(&ident).await? {
            Some(node) => candidates.push(node.uuid),
            None => missing.push(ident),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Nodes cannot be found: {}",
            missing.join(", ")
        )));
    }
    let extra = match doc.get("extra") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(e)) => Value::Object(e.clone()),
        Some(other) => return Err(schema_error(format!("{other} is not of type 'object'"))),
    };
    let given_uuid = doc.get("uuid").and_then(Value::as_str).map(str::to_owned).or_else(|| {
        backfill
            .as_ref()
            .and_then(|n| n.attr("instance_uuid").as_str().map(str::to_owned))
    });
    let mut allocation = StoredResource {
        kind: ResourceKind::Allocation,
        uuid: super::new_uuid(given_uuid.as_deref())?,
        node_uuid: None,
        doc: json!({
            "name": name, "state": ALLOCATING, "last_error": null, "resource_class": resource_class,
            "traits": traits, "candidate_nodes": candidates, "extra": extra,
            "owner": doc.get("owner").cloned().unwrap_or(Value::Null),
            "conductor_affinity": conductor.locks.host(),
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
        created_at: now_iso(),
        updated_at: None,
    };
    conductor.db.insert_resource(&allocation).await?;
    match backfill {
        Some(node) => {
            backfill_node(&state, &mut allocation, &node.uuid).await?;
        }
        None => conductor.spawn_allocation(allocation.uuid.clone()),
    }
    Ok(super::created(
        &ctx,
        &format!("allocations/{}", allocation.uuid),
        show(&ctx, &allocation, None),
    ))
}

/// Record a deployed node as taken by `allocation` (Ironic's `backfill_allocation`): the node
/// must be active and match the allocation; else the allocation is deleted again and the
/// request refused (400).
async fn backfill_node(state: &AppState, allocation: &mut StoredResource, node_uuid: &str) -> Result<(), ApiError> {
    let conductor = &state.conductor;
    let work = async {
        let mut node = conductor.node(node_uuid).await?;
        let mut errors = Vec::new();
        if node.provision_state != crate::states::state::ACTIVE {
            errors.push(format!(
                "Node must be in the \"active\" state, but the current state is \"{}\"",
                node.provision_state
            ));
        }
        if node.attr("resource_class") != allocation.get("resource_class") {
            errors.push(format!(
                "Resource class {} does not match the allocation's {}",
                node.attr("resource_class"),
                allocation.get("resource_class")
            ));
        }
        let has = super::node_traits(&node);
        let wanted: Vec<String> = serde_json::from_value(allocation.get("traits")).unwrap_or_default();
        if !wanted.iter().all(|t| has.contains(t)) {
            errors.push(format!(
                "List of traits {has:?} does not match the allocation's {wanted:?}"
            ));
        }
        let candidates: Vec<String> = serde_json::from_value(allocation.get("candidate_nodes")).unwrap_or_default();
        if !candidates.is_empty() && !candidates.contains(&node.uuid) {
            errors.push("Candidate nodes must be empty or contain the target node".into());
        }
        if node.attr("allocation_uuid").as_str().is_some_and(|a| !a.is_empty()) {
            errors.push("the node already has an allocation".into());
        }
        if !errors.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "Failed to process allocation {}: Cannot backfill an allocation for node {}: {}.",
                allocation.uuid,
                node.uuid,
                errors.join("; ")
            )));
        }
        crate::allocation::take(&mut node, allocation);
        conductor.save(&mut node).await?;
        Ok(())
    };
    if let Err(e) = super::with_node_lock(state, node_uuid, work).await {
        conductor.db.delete_resource(&allocation.uuid).await?;
        return Err(e);
    }
    allocation.node_uuid = Some(node_uuid.to_owned());
    allocation.doc.insert("state".into(), json!(ACTIVE));
    allocation.updated_at = Some(now_iso());
    conductor.db.update_resource(allocation).await?;
    Ok(())
}

/// `GET /v1/allocations`: filters `node`, `resource_class`, `state`, `owner` (1.60).
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    gate(&ctx)?;
    if q.contains_key("owner") && ctx.version.minor < 60 {
        return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
    }
    let node = match q.get("node") {
        Some(ident) => Some(state.conductor.node(ident).await?.uuid),
        None => None,
    };
    let mut all = state
        .conductor
        .db
        .resources(ResourceKind::Allocation, node.as_deref())
        .await?;
    for filter in ["resource_class", "state", "owner"] {
        if let Some(want) = q.get(filter) {
            all.retain(|a| a.get(filter).as_str() == Some(want.as_str()));
        }
    }
    if let Some(state_filter) = q.get("state")
        && ![ALLOCATING, ACTIVE, ERROR].contains(&state_filter.as_str())
    {
        return Err(ApiError::BadRequest(format!("Invalid allocation state {state_filter}")));
    }
    let doc = collection::list(&ctx, &LISTING, "Allocation", all, &q, false, |a, f| show(&ctx, a, f))?;
    Ok(Json(doc))
}

/// `GET /v1/allocations/{allocation}` by UUID or name.
pub(super) async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    gate(&ctx)?;
    let allocation = find(&state, &ident).await?;
    let fields = super::shown_fields(q.get("fields"), &show(&ctx, &allocation, None))?;
    Ok(Json(show(&ctx, &allocation, fields.as_deref())))
}

/// `PATCH /v1/allocations/{allocation}` (1.57): `name` and `extra`, as Ironic allows.
pub(super) async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    gate_write(&ctx)?;
    if ctx.version.minor < 57 {
        return Err(ApiError::MethodNotAllowed);
    }
    let patch = super::writable_patch(&body, &["name", "extra"])?;
    // Written only over the allocation as it was read: a conductor recording its outcome
    // meanwhile is not overwritten (the patch is applied again to the fresh one).
    for _ in 0..5 {
        let mut allocation = find(&state, &ident).await?;
        let read_at = allocation.updated_at.clone();
        let mut doc = json!({"name": allocation.get("name"), "extra": allocation.get("extra")});
        json_patch::patch(&mut doc, &patch).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
        let name = doc.get("name").cloned().unwrap_or(Value::Null);
        check_name(&name, "update")?;
        let extra = match doc.get("extra") {
            None | Some(Value::Null) => json!({}),
            Some(Value::Object(e)) => Value::Object(e.clone()),
            Some(other) => return Err(schema_error(format!("{other} is not of type 'object'"))),
        };
        allocation.doc.insert("name".into(), name);
        allocation.doc.insert("extra".into(), extra);
        allocation.updated_at = Some(now_iso());
        if state
            .conductor
            .db
            .replace_resource(&allocation, read_at.as_deref())
            .await?
        {
            return Ok(Json(show(&ctx, &allocation, None)));
        }
    }
    Err(ApiError::Conflict(format!(
        "Allocation {ident} is being changed by another request; try again"
    )))
}

/// Delete an allocation, giving its node back when it has one (409 while the node is active
/// or busy, unless in maintenance). An allocation still being processed is deleted only as it
/// was read: when its conductor records a node meanwhile, the node is given back first.
async fn remove(state: &AppState, mut allocation: StoredResource) -> Result<StatusCode, ApiError> {
    let conductor: &Conductor = &state.conductor;
    for _ in 0..5 {
        let read_at = allocation.updated_at.clone();
        let removed = match allocation.node_uuid.clone() {
            None => {
                conductor
                    .db
                    .delete_resource_if(&allocation.uuid, read_at.as_deref())
                    .await?
            }
            Some(node_uuid) => {
                let work = async {
                    let mut node = conductor.node(&node_uuid).await?;
                    Conductor::check_deallocation(&node, &allocation.uuid)?;
                    if crate::allocation::give_back(&mut node, &allocation.uuid) {
                        conductor.save(&mut node).await?;
                    }
                    Ok(conductor
                        .db
                        .delete_resource_if(&allocation.uuid, read_at.as_deref())
                        .await?)
                };
                super::with_node_lock(state, &node_uuid, work).await?
            }
        };
        if removed {
            return Ok(StatusCode::NO_CONTENT);
        }
        // Changed meanwhile (its node recorded): read it again and give that node back.
        match conductor
            .db
            .resource(ResourceKind::Allocation, &allocation.uuid)
            .await?
        {
            Some(fresh) => allocation = fresh,
            None => return Ok(StatusCode::NO_CONTENT),
        }
    }
    Err(ApiError::Conflict(format!(
        "Allocation {} is being changed by another request; try again",
        allocation.uuid
    )))
}

/// `DELETE /v1/allocations/{allocation}`: 204.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    gate_write(&ctx)?;
    let allocation = find(&state, &ident).await?;
    remove(&state, allocation).await
}

/// The allocation of a node: 404 when it has none.
async fn of_node(state: &AppState, ident: &str) -> Result<StoredResource, ApiError> {
    let node = state.conductor.node(ident).await?;
    let missing = || ApiError::NotFound(format!("Allocation for node {} was not found", node.uuid));
    let Some(uuid) = node.attr("allocation_uuid").as_str().map(str::to_owned) else {
        return Err(missing());
    };
    state
        .conductor
        .db
        .resource(ResourceKind::Allocation, &uuid)
        .await?
        .ok_or_else(missing)
}

/// `GET /v1/nodes/{node}/allocation`.
pub(super) async fn node_get(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    gate_node(&ctx)?;
    let allocation = of_node(&state, &ident).await?;
    let fields = super::shown_fields(q.get("fields"), &show(&ctx, &allocation, None))?;
    Ok(Json(show(&ctx, &allocation, fields.as_deref())))
}

/// `DELETE /v1/nodes/{node}/allocation`: 204.
pub(super) async fn node_delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    gate_node(&ctx)?;
    let allocation = of_node(&state, &ident).await?;
    remove(&state, allocation).await
}
