//! `POST /v1/events` (API 1.54): external events, as Neutron sends them when it binds, unbinds
//! or deletes a port. Ironic checks their shape, logs them and answers 204; its network
//! interfaces act on none yet, and neither do Rivet's (Ironic's `event.py` and its schema).

use axum::Extension;
use axum::body::Bytes;
use http::StatusCode;

use super::{API_NOT_SUPPORTED, ApiError, RequestContext, parse_body};

/// The event types Ironic accepts.
const EVENT_TYPES: &[&str] = &["network.bind_port", "network.unbind_port", "network.delete_port"];

/// The body: `{"events": [{"event", "port_id", "mac_address", "status", ...}, ...]}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Events {
    events: Vec<Event>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    event: String,
    port_id: String,
    mac_address: String,
    status: String,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default, rename = "binding:host_id")]
    host_id: Option<String>,
    #[serde(default, rename = "binding:vnic_type")]
    vnic_type: Option<String>,
}

/// `POST /v1/events`: 204 once every event has a known type, UUIDs and a MAC address; 400
/// otherwise.
pub(super) async fn post(Extension(ctx): Extension<RequestContext>, body: Bytes) -> Result<StatusCode, ApiError> {
    super::require_api(&ctx, 54, API_NOT_SUPPORTED)?;
    let events: Events = parse_body(&body)?;
    if events.events.is_empty() {
        return Err(ApiError::BadRequest("Schema error: [] should be non-empty".into()));
    }
    for e in &events.events {
        if !EVENT_TYPES.contains(&e.event.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "Schema error: '{}' is not one of {EVENT_TYPES:?}",
                e.event
            )));
        }
        let uuids = [Some(&e.port_id), e.device_id.as_ref(), e.host_id.as_ref()];
        if let Some(bad) = uuids.into_iter().flatten().find(|u| uuid::Uuid::parse_str(u).is_err()) {
            return Err(ApiError::BadRequest(format!("Schema error: '{bad}' is not a 'uuid'")));
        }
        if super::normalise_mac(&e.mac_address).is_none() {
            return Err(ApiError::BadRequest(format!(
                "Schema error: '{}' is not a 'mac-address'",
                e.mac_address
            )));
        }
        tracing::debug!(event = %e.event, port = %e.port_id, status = %e.status, vnic_type = ?e.vnic_type, "external event received; no network interface acts on it");
    }
    Ok(StatusCode::NO_CONTENT)
}
