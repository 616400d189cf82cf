//! Network boot endpoints, public like the ramdisk API (firmware has no credentials):
//! `GET /boot/ipxe/boot.ipxe`, `GET /boot/ipxe/{mac}` (the node's iPXE script, see
//! [`crate::drivers::boot::ipxe`]) and `GET /httpboot/{file}` (files of `--http-root`, streamed).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use super::{ApiError, AppState};
use crate::drivers::boot::ipxe;

fn script(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

pub(super) async fn ipxe_script(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    if name == "boot.ipxe" {
        return Ok(script(ipxe::ENTRY_SCRIPT.to_owned()));
    }
    let mac = name.to_ascii_lowercase().replace('-', ":");
    let db = &state.conductor.db;
    let nodes = db
        .nodes_by_macs(std::slice::from_ref(&mac))
        .await
        .map_err(ApiError::from)?;
    let node = match nodes.first() {
        Some(uuid) => db.node(uuid).await.map_err(ApiError::from)?,
        None => None,
    };
    Ok(match node {
        Some(node) => {
            tracing::info!(node = %node.uuid, mac, "iPXE script requested");
            script(ipxe::script_for(&node))
        }
        // Unknown: the discovery ramdisk when auto-discovery is on, else the firmware's next
        // boot device.
        None => match state.conductor.discovery_script() {
            Some(discovery) => {
                tracing::info!(mac, "iPXE script for an unknown machine: the auto-discovery ramdisk");
                script(discovery)
            }
            None => script("#!ipxe\necho Rivet: no node has this MAC\nexit 0\n".to_owned()),
        },
    })
}

pub(super) async fn http_boot(State(state): State<AppState>, Path(file): Path<String>) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("{file} is not in the http root"));
    let Some(root) = &state.conductor.config.http_root else {
        return Err(not_found());
    };
    if file.contains('/') || file.starts_with('.') {
        return Err(not_found());
    }
    let opened = tokio::fs::File::open(root.join(&file)).await.map_err(|_| not_found())?;
    let len = opened.metadata().await.map(|m| m.len()).map_err(|_| not_found())?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(opened, 256 << 10));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}
