//! Ironic's error documents and the one mapping from outcomes to statuses.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rivet_common::error::IronicError;

use crate::engine::EngineError;

/// Everything the API answers besides success.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    /// No such path at the requested microversion: Ironic's web framework answers these with
    /// `{"code": 404, "title": "Not Found", "description": ""}` inside `error_message`, not a
    /// fault document.
    NoRoute,
    /// The path exists at the requested microversion but not for this method: Ironic's web
    /// framework's 405, in the same style as [`ApiError::NoRoute`].
    NoMethod,
    /// An answer of Ironic's web framework rather than of its handlers (a malformed identifier
    /// in the path, a resource the version does not have), in the same style as
    /// [`ApiError::NoRoute`] with this description.
    Framework(StatusCode, String),
    MethodNotAllowed,
    Conflict(String),
    NotAcceptable(String),
    Internal(String),
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::NotFound(m),
            EngineError::Invalid(m) => ApiError::BadRequest(m),
            EngineError::Conflict(m) => ApiError::Conflict(m),
            EngineError::NotAcceptable(m) => ApiError::NotAcceptable(m),
            EngineError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        EngineError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let routing = match &self {
            ApiError::NoRoute => Some((StatusCode::NOT_FOUND, "Not Found", "")),
            ApiError::NoMethod => Some((StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", "")),
            ApiError::Framework(status, m) => Some((*status, status.canonical_reason().unwrap_or("Error"), m.as_str())),
            _ => None,
        };
        if let Some((status, title, description)) = routing {
            let inner = serde_json::json!({"code": status.as_u16(), "title": title, "description": description});
            let body = IronicError {
                error_message: inner.to_string(),
            };
            return (status, Json(body)).into_response();
        }
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Authentication required".to_owned()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::NoRoute | ApiError::NoMethod | ApiError::Framework(..) => (StatusCode::NOT_FOUND, String::new()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for the requested URL.".to_owned(),
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::NotAcceptable(m) => (StatusCode::NOT_ACCEPTABLE, m),
            ApiError::Internal(m) => {
                // Logged here once; the client gets a generic text, never internals.
                tracing::error!(error = %m, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "An internal error occurred; see the conductor log.".to_owned(),
                )
            }
        };
        let mut response = (status, Json(IronicError::new(status.as_u16(), message))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"rivet\""),
            );
        }
        response
    }
}
