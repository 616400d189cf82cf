//! What a node reports about its parts: BIOS settings (`/bios`, API 1.40), firmware components
//! (`/firmware`, 1.86), child nodes (`/children`, 1.83) and VIFs (`/vifs`, 1.28).
//!
//! Rivet's interfaces keep no BIOS settings or firmware components yet, so those lists are
//! empty, as Ironic's are for a node whose interfaces are `no-bios` / `no-firmware` or `fake`.
//! The only network interface is `noop`, which, as in Ironic, attaches nothing: attaching a VIF
//! succeeds and the list stays empty (docs/compatibility.md).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext, parse_body};

/// `GET .../bios`: `{"bios": []}`.
pub(super) async fn bios(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 40)?;
    state.conductor.node(&ident).await?;
    Ok(Json(json!({"bios": []})))
}

/// `GET .../bios/{setting}`: no setting is known.
pub(super) async fn bios_setting(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, setting)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 40)?;
    let node = state.conductor.node(&ident).await?;
    Err(ApiError::NotFound(format!(
        "Node {} doesn't have a BIOS setting '{setting}'",
        node.uuid
    )))
}

/// `GET .../firmware`: `{"firmware": []}`.
pub(super) async fn firmware(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 86)?;
    state.conductor.node(&ident).await?;
    Ok(Json(json!({"firmware": []})))
}

/// `GET .../children`: the UUIDs of nodes whose `parent_node` is this one, and the link that
/// lists them.
pub(super) async fn children(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 83)?;
    let node = state.conductor.node(&ident).await?;
    let children: Vec<String> = state
        .conductor
        .db
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.attr("parent_node").as_str() == Some(node.uuid.as_str()))
        .map(|n| n.uuid)
        .collect();
    Ok(Json(json!({
        "children": children,
        "links": {"href": format!("{}/v1/nodes?parent_node={}", ctx.base, node.uuid), "rel": "children"},
    })))
}

/// `GET .../vifs`: the `noop` network interface attaches nothing.
pub(super) async fn vifs(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 28)?;
    state.conductor.node(&ident).await?;
    Ok(Json(json!({"vifs": []})))
}

/// Body of `POST .../vifs`: the VIF's `id` and whatever else the caller sends.
#[derive(Debug, serde::Deserialize)]
struct VifInfo {
    id: String,
}

/// `POST .../vifs`: accepted and ignored by `noop`; 204.
pub(super) async fn attach_vif(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    super::require(&ctx, 28)?;
    let vif: VifInfo = parse_body(&body)?;
    let node = state.conductor.node(&ident).await?;
    tracing::info!(node = %node.uuid, vif = %vif.id, "VIF attach: the noop network interface attaches nothing");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../vifs/{vif}`: nothing to detach with `noop`; 204.
pub(super) async fn detach_vif(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, _vif)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::require(&ctx, 28)?;
    state.conductor.node(&ident).await?;
    Ok(StatusCode::NO_CONTENT)
}
