//! `/v1/conductors` (API 1.49): the conductors registered in the database.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext};

/// Every registered conductor, `online` meaning alive now: registered, not stopped, and its
/// row refreshed within `heartbeat_timeout` (Ironic's `alive`).
async fn registered(state: &AppState) -> Result<Vec<crate::model::ConductorRecord>, ApiError> {
    let timeout = state.conductor.config.cluster.heartbeat_timeout;
    let now = time::OffsetDateTime::now_utc();
    let mut records = state.conductor.db.conductors().await?;
    for record in &mut records {
        record.online = crate::cluster::membership::is_alive(record, timeout, now);
    }
    Ok(records)
}

/// `GET /v1/conductors[?detail=true]`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 49, super::API_NOT_SUPPORTED)?;
    let detail = q.get("detail").is_some_and(|d| d.eq_ignore_ascii_case("true"));
    let conductors: Vec<Value> = registered(&state)
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
    registered(&state)
        .await?
        .iter()
        .find(|c| c.hostname == hostname)
        .map(|c| Json(c.to_api(&ctx.base, true)))
        .ok_or_else(|| ApiError::NotFound(format!("Conductor {hostname} could not be found.")))
}
