//! The one place where outcomes become HTTP statuses and fault documents.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rivet_common::error::Fault;

use crate::error::AgentError;

/// Everything the API can answer besides success.
#[derive(Debug)]
pub enum ApiError {
    /// Missing or wrong `agent_token`.
    Unauthorized,
    /// No such route.
    NotFound,
    /// Route exists, method does not.
    MethodNotAllowed,
    /// The body is not JSON.
    BadJson(String),
    /// The body is JSON but not `{"name": str, "params": object}`.
    BadCommandBody,
    /// An agent error (busy, unknown extension, bad parameters, ...).
    Agent(AgentError),
}

impl From<AgentError> for ApiError {
    fn from(err: AgentError) -> Self {
        ApiError::Agent(err)
    }
}

/// `"<code> <Reason>: <description>"`, the form of upstream's routing errors.
fn routing_fault(status: StatusCode, description: &str) -> (StatusCode, Fault) {
    let reason = status.canonical_reason().unwrap_or("Error");
    (
        status,
        Fault::for_status(status.as_u16(), format!("{} {reason}: {description}", status.as_u16())),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, fault) = match self {
            ApiError::Unauthorized => routing_fault(StatusCode::UNAUTHORIZED, "Token invalid."),
            ApiError::NotFound => routing_fault(
                StatusCode::NOT_FOUND,
                "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
            ),
            ApiError::MethodNotAllowed => routing_fault(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for the requested URL.",
            ),
            ApiError::BadJson(reason) => routing_fault(
                StatusCode::BAD_REQUEST,
                &format!("Failed to decode JSON object: {reason}"),
            ),
            ApiError::BadCommandBody => routing_fault(StatusCode::BAD_REQUEST, "Missing or invalid name or params"),
            ApiError::Agent(err) => {
                let status = StatusCode::from_u16(err.kind.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, err.to_fault())
            }
        };
        (status, Json(fault)).into_response()
    }
}
