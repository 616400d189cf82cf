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
use crate::ramdisk::Heartbeat;

pub(super) async fn lookup(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<Value>, ApiError> {
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

#[derive(Debug, serde::Deserialize)]
struct HeartbeatBody {
    callback_url: String,
    #[serde(default)]
    agent_token: Option<String>,
    #[serde(default)]
    agent_version: Option<String>,
    #[serde(default)]
    agent_verify_ca: Option<String>,
    #[serde(default)]
    agent_status: Option<String>,
    #[serde(default)]
    agent_status_message: Option<String>,
}

pub(super) async fn heartbeat(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let body: HeartbeatBody = parse_body(&body)?;
    let hb = Heartbeat {
        callback_url: body.callback_url,
        agent_token: body.agent_token,
        agent_version: body.agent_version,
        agent_verify_ca: body.agent_verify_ca,
        agent_status: body.agent_status,
        agent_status_message: body.agent_status_message,
    };
    state.conductor.heartbeat(&node, hb, ctx.version).await?;
    Ok(StatusCode::ACCEPTED)
}
