//! `/v1/nodes/{node}/management/boot_device` (API 1.1): the next boot device through the node's
//! management interface.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext, parse_body};
use crate::engine::EngineError;

/// Body of `PUT .../management/boot_device`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBootDevice {
    boot_device: String,
    #[serde(default)]
    persistent: bool,
}

/// `GET .../management/boot_device`: `{"boot_device": ..., "persistent": ...}`.
pub(super) async fn get(State(state): State<AppState>, Path(ident): Path<String>) -> Result<Json<Value>, ApiError> {
    let node = state.conductor.node(&ident).await?;
    let driver = state.conductor.driver(&node)?;
    let (device, persistent) = driver
        .management
        .get_boot_device(&node)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(json!({"boot_device": device, "persistent": persistent})))
}

/// `GET .../management/boot_device/supported`.
pub(super) async fn supported(
    State(state): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = state.conductor.node(&ident).await?;
    let driver = state.conductor.driver(&node)?;
    Ok(Json(
        json!({"supported_boot_devices": driver.management.supported_boot_devices()}),
    ))
}

/// `PUT .../management/boot_device`: set it under the node's lock; 204.
pub(super) async fn set(
    State(state): State<AppState>,
    Extension(_ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: SetBootDevice = parse_body(&body)?;
    let conductor = &state.conductor;
    let node = conductor.node(&ident).await?;
    let lock = conductor.locks.acquire(&node.uuid).await.map_err(EngineError::from)?;
    let outcome = async {
        let mut node = conductor.node(&node.uuid).await?;
        let driver = conductor.driver(&node)?;
        driver
            .management
            .set_boot_device(&mut node, &request.boot_device, request.persistent)
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        conductor.save(&mut node).await?;
        Ok::<_, ApiError>(())
    }
    .await;
    lock.release().await?;
    outcome.map(|()| StatusCode::NO_CONTENT)
}
