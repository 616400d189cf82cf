//! `/v1/conductors` (API 1.49): the conductors registered in the database.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext};

/// `GET /v1/conductors[?detail=true]`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 49, super::API_NOT_SUPPORTED)?;
    let detail = q.get("detail").is_some_and(|d| d.eq_ignore_ascii_case("true"));
    let conductors: Vec<Value> = state
        .conductor
        .db
        .conductors()
        .await?
        .iter()
        .map(|c| c.to_api(&ctx.base, detail))
        .collect();
    Ok(Json(json!({"conductors": conductors})))
}

/// `GET /v1/conductors/{hostname}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(hostname): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 49, super::API_NOT_SUPPORTED)?;
    state
        .conductor
        .db
        .conductors()
        .await?
        .iter()
        .find(|c| c.hostname == hostname)
        .map(|c| Json(c.to_api(&ctx.base, true)))
        .ok_or_else(|| ApiError::NotFound(format!("Conductor {hostname} could not be found.")))
}
