//! `/v1/shards` (API 1.82): the shard names nodes carry, with how many nodes each has.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext};

/// `GET /v1/shards`: `{"shards": [{"count": N, "name": "..."}]}`; nodes without a shard count
/// under `"name": null`, as Ironic's grouping query does.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 82, "The API version does not allow shards")?;
    let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for node in state.conductor.db.nodes().await? {
        *counts
            .entry(node.attr("shard").as_str().map(str::to_owned))
            .or_default() += 1;
    }
    let shards: Vec<Value> = counts
        .into_iter()
        .map(|(name, count)| json!({"count": count, "name": name}))
        .collect();
    Ok(Json(json!({"shards": shards})))
}
