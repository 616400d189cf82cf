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
    if let Err(e) = state.conductor.heartbeat(&node, hb, ctx.version).await {
        // The agent only sees a status; the operator should see why.
        tracing::warn!(node = %node, error = %e, "heartbeat refused");
        return Err(e.into());
    }
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1/continue_inspection`: an agent posts its inventory (IPA does at start-up when
/// `inspection_callback_url` is set). The node is found by the inventory's MAC addresses and
/// must be booting the ramdisk; the inventory is kept for `GET /v1/nodes/{node}/inventory`.
pub(super) async fn continue_inspection(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let mut data: Value = parse_body(&body)?;
    let Some(inventory) = data
        .as_object_mut()
        .and_then(|d| d.remove("inventory"))
        .filter(Value::is_object)
    else {
        return Err(ApiError::BadRequest(
            "The inventory is missing from the inspection data".into(),
        ));
    };
    let macs: Vec<String> = inventory
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|i| i.get("mac_address").and_then(Value::as_str))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let db = &state.conductor.db;
    let nodes = db.nodes_by_macs(&macs).await.map_err(ApiError::from)?;
    let [uuid] = nodes.as_slice() else {
        return Err(ApiError::NotFound(format!(
            "no single node matches the inspected MAC addresses {}",
            macs.join(", ")
        )));
    };
    let node = state.conductor.node(uuid).await?;
    if !crate::states::INSPECTION_ACCEPTED.contains(&node.provision_state.as_str()) {
        return Err(ApiError::Conflict(format!(
            "Node {uuid} is in state {}, not booting the ramdisk: inspection data refused",
            node.provision_state
        )));
    }
    let plugin_data = Value::Object(data.as_object().cloned().unwrap_or_default());
    db.put_inventory(uuid, &inventory.to_string(), &plugin_data.to_string())
        .await
        .map_err(ApiError::from)?;
    tracing::info!(node = %uuid, "inventory stored from the agent's inspection data");
    Ok(Json(serde_json::json!({ "uuid": uuid })))
}
