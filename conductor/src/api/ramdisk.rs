//! `GET /v1/lookup` and `POST /v1/heartbeat/{node}`: the endpoints agents call. Public (agents
//! have no credentials); the agent token authenticates heartbeats.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use http::StatusCode;
use serde_json::Value;

use super::{ApiError, AppState, RequestContext, parse_body};
use rivet_common::ramdisk::{HeartbeatRequest, LookupResponse};

pub(super) async fn lookup(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<LookupResponse>, ApiError> {
    let addresses: Vec<String> = q
        .get("addresses")
        .map(|a| a.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    let answer = state
        .conductor
        .lookup(
            &addresses,
            q.get("node_uuid").map(String::as_str),
            ctx.version,
            Some(peer.ip()),
        )
        .await?;
    Ok(Json(answer))
}

pub(super) async fn heartbeat(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let hb: HeartbeatRequest = parse_body(&body)?;
    let started = std::time::Instant::now();
    let handled = state.conductor.heartbeat(&node, hb, ctx.version).await;
    crate::metrics::metrics().heartbeat_handled(started.elapsed());
    if let Err(e) = handled {
        // The agent only sees a status; the operator should see why.
        tracing::warn!(node = %node, error = %e, "heartbeat refused");
        return Err(e.into());
    }
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1/continue_inspection[?node_uuid=]`: an agent posts its inventory and collector data
/// (IPA does at start-up when `ipa-inspection-callback-url` is set). The node is found by the
/// inventory's MAC and BMC addresses (or `node_uuid`, from 1.84) and must be waiting in
/// `inspect wait`; the data is processed at once ([`crate::inspection`]). 202 with the node's
/// UUID (`{"uuid"}`), or from 1.84 the lookup answer (`{"node", "config"}`, Ironic's
/// `get_node_with_token`); 404 (Ironic's words, which tell nothing) when no waiting node
/// matches.
pub(super) async fn continue_inspection(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let node_uuid = q.get("node_uuid").map(String::as_str);
    if node_uuid.is_some() && ctx.version.minor < 84 {
        return Err(ApiError::NotFound("API version 1.84 or newer is required".into()));
    }
    if let Some(uuid) = node_uuid
        && uuid::Uuid::parse_str(uuid).is_err()
    {
        return Err(ApiError::BadRequest(format!("Expected a UUID but received {uuid}.")));
    }
    let data: Value = parse_body(&body)?;
    if data
        .get("inventory")
        .and_then(|i| i.get("interfaces"))
        .and_then(Value::as_array)
        .is_none()
    {
        return Err(ApiError::BadRequest(
            "Invalid inspection data: the inventory and its interfaces are required".into(),
        ));
    }
    // From 1.84 the answer is the lookup's (node and config with the agent token), issued
    // before processing as Ironic does; before, the UUID alone.
    let session = (ctx.version.minor >= 84).then_some((ctx.version, Some(peer.ip())));
    let (uuid, lookup) = state.conductor.continue_inspection(data, node_uuid, session).await?;
    let answer = match lookup {
        Some(answer) => serde_json::to_value(answer).map_err(|e| ApiError::Internal(e.to_string()))?,
        None => serde_json::json!({ "uuid": uuid }),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}
