//! `/v1/chassis`: groupings of nodes (API 1.1). A node names its chassis in `chassis_uuid`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext, parse_body};
use crate::model::ChassisRecord;
use crate::time::now_iso;

/// Longest description Ironic accepts.
const MAX_DESCRIPTION: usize = 255;

/// Body of `POST /v1/chassis`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChassis {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    extra: Option<JsonObject>,
}

fn check_description(description: Option<&str>) -> Result<(), ApiError> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ApiError::BadRequest(format!(
            "description is longer than {MAX_DESCRIPTION} characters"
        ))),
        _ => Ok(()),
    }
}

async fn find(state: &AppState, ident: &str) -> Result<ChassisRecord, ApiError> {
    if uuid::Uuid::parse_str(ident).is_err() {
        return Err(ApiError::BadRequest(format!(
            "Expected a UUID for chassis_uuid, got {ident}"
        )));
    }
    state
        .conductor
        .db
        .chassis(ident)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Chassis {ident} could not be found.")))
}

/// The chassis a node names, checked: 400 when there is no such chassis.
pub(super) async fn check_exists(state: &AppState, uuid: &str) -> Result<(), ApiError> {
    match state.conductor.db.chassis(uuid).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::BadRequest(format!("Chassis {uuid} could not be found."))),
    }
}

async fn list_chassis(
    state: AppState,
    ctx: RequestContext,
    query: HashMap<String, String>,
    full: bool,
) -> Result<Json<Value>, ApiError> {
    let mut all = state.conductor.db.all_chassis().await?;
    if let Some(marker) = query.get("marker") {
        let pos = all
            .iter()
            .position(|c| &c.uuid == marker)
            .ok_or_else(|| ApiError::NotFound(format!("Marker {marker} could not be found.")))?;
        all.drain(..=pos);
    }
    let mut doc = json!({});
    if let Some(limit) = query.get("limit") {
        let limit: usize = limit
            .parse()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| ApiError::BadRequest("Limit must be positive".into()))?;
        all.truncate(limit);
        if all.len() == limit
            && let Some(last) = all.last()
        {
            doc["next"] = json!(format!(
                "{}/v1/chassis?sort_key=id&sort_dir=asc&limit={limit}&marker={}",
                ctx.base, last.uuid
            ));
        }
    }
    doc["chassis"] = Value::Array(all.iter().map(|c| c.to_api(&ctx.base, full)).collect());
    Ok(Json(doc))
}

/// `GET /v1/chassis[?detail=true]`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let detail = q.get("detail").is_some_and(|d| d.eq_ignore_ascii_case("true"));
    list_chassis(state, ctx, q, detail).await
}

/// `GET /v1/chassis/detail`.
pub(super) async fn list_detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_chassis(state, ctx, q, true).await
}

/// `POST /v1/chassis`: 201 with the new chassis.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewChassis = parse_body(&body)?;
    check_description(new.description.as_deref())?;
    let uuid = super::new_uuid(new.uuid.as_deref())?;
    let chassis = ChassisRecord {
        uuid,
        description: new.description,
        extra: new.extra.unwrap_or_default(),
        created_at: now_iso(),
        updated_at: None,
    };
    state.conductor.db.insert_chassis(&chassis).await?;
    Ok((StatusCode::CREATED, Json(chassis.to_api(&ctx.base, true))).into_response())
}

/// `GET /v1/chassis/{uuid}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(find(&state, &ident).await?.to_api(&ctx.base, true)))
}

/// `PATCH /v1/chassis/{uuid}`: `description` and `extra` may change.
pub(super) async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch = super::writable_patch(&body, &["description", "extra"])?;
    let mut chassis = find(&state, &ident).await?;
    let mut doc = json!({"description": chassis.description, "extra": chassis.extra});
    json_patch::patch(&mut doc, &patch).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
    let description = match doc.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "description must be a string, got {other}"
            )));
        }
    };
    check_description(description.as_deref())?;
    chassis.description = description;
    chassis.extra = match doc.get("extra") {
        None | Some(Value::Null) => JsonObject::new(),
        Some(Value::Object(e)) => e.clone(),
        Some(other) => return Err(ApiError::BadRequest(format!("extra must be an object, got {other}"))),
    };
    chassis.updated_at = Some(now_iso());
    state.conductor.db.update_chassis(&chassis).await?;
    Ok(Json(chassis.to_api(&ctx.base, true)))
}

/// `DELETE /v1/chassis/{uuid}`: 204; 400 while nodes name it.
pub(super) async fn delete(State(state): State<AppState>, Path(ident): Path<String>) -> Result<StatusCode, ApiError> {
    let chassis = find(&state, &ident).await?;
    let in_use = state
        .conductor
        .db
        .nodes()
        .await?
        .iter()
        .any(|n| n.attr("chassis_uuid").as_str() == Some(chassis.uuid.as_str()));
    if in_use {
        return Err(ApiError::BadRequest(format!(
            "Chassis {} contains nodes.",
            chassis.uuid
        )));
    }
    state.conductor.db.delete_chassis(&chassis.uuid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/chassis/{uuid}/nodes`: the node listing, limited to the chassis's nodes.
pub(super) async fn nodes(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let chassis = find(&state, &ident).await?;
    q.insert("chassis_uuid".into(), chassis.uuid);
    super::nodes::list_nodes(state, ctx, q, false).await
}
