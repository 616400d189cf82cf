//! The fleet dashboard: one page, served by the conductor behind the API's authentication, that
//! reads the API itself (nodes, their history) and the fleet's counts over time.
//!
//! `GET /dashboard`: the page (HTML with its CSS and script inline: no CDN, works offline).
//! `GET /dashboard/fleet`: `{"interval_seconds": 60, "samples": [{"at", "provision_state":
//! {state: count}, "power_state": {state: count}}, ...]}`, oldest first (see
//! `periodic::spawn_fleet_sampler`).

use axum::Json;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /dashboard`.
pub(super) async fn page() -> Response {
    // The page's script is inline: no other origin may run code in it.
    (
        [(
            http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        )],
        Html(PAGE),
    )
        .into_response()
}

/// `GET /dashboard/fleet`.
pub(super) async fn fleet(State(state): State<AppState>) -> Result<Response, ApiError> {
    let conductor = &state.conductor;
    let samples = conductor.db.fleet_samples().await.map_err(ApiError::from)?;
    Ok(Json(json!({
        "interval_seconds": conductor.config.fleet_sample_interval.as_secs(),
        "samples": samples,
    }))
    .into_response())
}
