//! `/v1/nodes/{node}/vmedia`: virtual media through the node's management interface: attach an
//! image to a drive (`POST`, API 1.89), detach (`DELETE`, 1.89), list the drives (`GET`, 1.93).
//! Ironic's `NodeVmediaController` and its conductor's `attach_virtual_media`; only `redfish`
//! management has virtual media, others answer 400 as Ironic's do.
//!
//! Ironic acts after answering 204 and reports a failure in `last_error`; Rivet acts before it
//! answers, so a failure is in the answer too (and in `last_error`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde_json::Value;

use super::{ApiError, AppState, RequestContext, parse_body};
use crate::drivers::DriverError;
use crate::drivers::bmc::virtual_media::DEVICE_TYPES;
use crate::model::NodeRecord;

/// URL schemes a BMC can fetch media from (Ironic's `VMEDIA_SUPPORTED_URL_SCHEMES`).
const URL_SCHEMES: &[&str] = &["http", "https", "nfs", "cifs", "smb"];

/// Body of `POST .../vmedia`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Attach {
    /// `cdrom`, `floppy` or `disk`.
    device_type: String,
    /// Where the image is.
    image_url: String,
    /// `local` (the default: the conductor downloads the image and serves it from its http
    /// root), `http` (the BMC fetches `image_url` itself) or `swift` (refused: no Object Storage).
    #[serde(default = "local")]
    image_download_source: String,
}

fn local() -> String {
    "local".into()
}

/// The http root file that holds a node's locally served image for `device_type`.
fn published_name(node: &NodeRecord, device_type: &str) -> String {
    format!("vmedia-{}-{device_type}.img", node.uuid)
}

fn driver_error(e: DriverError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// `GET .../vmedia` (API 1.93): the drives, `[{"media_types", "inserted", "image"}, ...]`.
pub(super) async fn get(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 89)?;
    // The path exists from 1.89 (attach, detach); reading it from 1.93.
    super::require_api(&ctx, 93, "The resource could not be found.")?;
    let node = state.conductor.node(&ident).await?;
    let driver = state.conductor.driver(&node)?;
    driver.management.validate(&node).await.map_err(driver_error)?;
    let drives = driver.management.get_virtual_media(&node).await.map_err(driver_error)?;
    Ok(Json(Value::Array(drives)))
}

/// `POST .../vmedia` (API 1.89): insert the image into the drive for `device_type`; 204.
pub(super) async fn attach(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    super::require(&ctx, 89)?;
    let request: Attach = parse_body(&body)?;
    if !DEVICE_TYPES.contains(&request.device_type.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "Schema error: '{}' is not one of {DEVICE_TYPES:?}",
            request.device_type
        )));
    }
    if !["http", "local", "swift"].contains(&request.image_download_source.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "Schema error: '{}' is not one of ['http', 'local', 'swift']",
            request.image_download_source
        )));
    }
    let scheme = request.image_url.split_once("://").map_or("", |(s, _)| s);
    if !URL_SCHEMES.contains(&scheme) {
        return Err(ApiError::BadRequest(format!(
            "Unsupported or missing URL scheme: {scheme}"
        )));
    }
    if request.image_download_source == "swift" {
        return Err(ApiError::BadRequest(
            "image_download_source swift needs OpenStack Object Storage, which Rivet does not use: use local or http"
                .into(),
        ));
    }
    let conductor = &state.conductor;
    let node = conductor.node(&ident).await?;
    let work = async {
        let mut node = conductor.node(&node.uuid).await?;
        let driver = conductor.driver(&node)?;
        driver.management.validate(&node).await.map_err(driver_error)?;
        let outcome = async {
            let url = if request.image_download_source == "local" {
                let name = published_name(&node, &request.device_type);
                crate::drivers::boot::assets::publish(&conductor.settings.boot_files, &name, &request.image_url).await?
            } else {
                request.image_url.clone()
            };
            driver
                .management
                .attach_virtual_media(&node, &request.device_type, &url)
                .await
        }
        .await;
        record(conductor, &mut node, "attaching virtual media", outcome).await
    };
    super::with_node_lock(&state, &node.uuid, work).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../vmedia[?device_types=cdrom,floppy]` (API 1.89): eject those drives, or all; 204.
pub(super) async fn detach(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    super::require(&ctx, 89)?;
    let device_types: Option<Vec<String>> = super::fields_param(query.get("device_types"));
    if let Some(types) = &device_types {
        let invalid: Vec<&str> = types
            .iter()
            .map(String::as_str)
            .filter(|t| !DEVICE_TYPES.contains(t))
            .collect();
        if !invalid.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "Invalid device type(s) {} (valid are {})",
                invalid.join(", "),
                DEVICE_TYPES.join(", ")
            )));
        }
    }
    let conductor = &state.conductor;
    let node = conductor.node(&ident).await?;
    let work = async {
        let mut node = conductor.node(&node.uuid).await?;
        let driver = conductor.driver(&node)?;
        driver.management.validate(&node).await.map_err(driver_error)?;
        let outcome = driver
            .management
            .detach_virtual_media(&node, device_types.as_deref())
            .await;
        if outcome.is_ok() {
            let types: Vec<&str> = match &device_types {
                Some(t) => t.iter().map(String::as_str).collect(),
                None => DEVICE_TYPES.to_vec(),
            };
            for device_type in types {
                let name = published_name(&node, device_type);
                crate::drivers::boot::assets::unpublish(&conductor.settings.boot_files, &name).await;
            }
        }
        record(conductor, &mut node, "detaching virtual media", outcome).await
    };
    super::with_node_lock(&state, &node.uuid, work).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// As Ironic: a new operation clears `last_error`, a failed one sets it. Unsupported requests
/// (the interface has no virtual media) change nothing.
async fn record(
    conductor: &crate::engine::Conductor,
    node: &mut NodeRecord,
    what: &str,
    outcome: Result<(), DriverError>,
) -> Result<(), ApiError> {
    match outcome {
        Err(e @ DriverError::Unsupported(_)) => Err(driver_error(e)),
        Err(e) => {
            node.last_error = Some(format!("Failed {what}: {e}"));
            conductor.save(node).await?;
            Err(driver_error(e))
        }
        Ok(()) => {
            node.last_error = None;
            conductor.save(node).await?;
            Ok(())
        }
    }
}
