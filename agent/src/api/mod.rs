//! The agent's command API, route for route what ironic-python-agent serves (reference §4).
//!
//! Every route answers with and without the trailing slash and without the `/v1` prefix
//! (upstream redirects some of these with 308; serving them directly is compatible). Every
//! 4xx/5xx body is a `{faultcode, faultstring}` document with upstream's texts. Handlers parse
//! the request, hand a typed call to the [`Executor`](crate::commands::Executor) and map the
//! outcome to a status in one place ([`ApiError`]).

mod commands;
mod docs;
mod error;
mod shared;

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{CONTENT_TYPE, SERVER};
use http::{HeaderValue, StatusCode};

pub use error::ApiError;
pub use shared::AppState;

/// The agent API router.
pub fn app(state: AppState) -> Router {
    let list = get(commands::list).post(commands::run);
    let one = get(commands::show);
    let status = get(docs::status);
    let v1 = get(docs::v1);
    Router::new()
        .route("/", get(docs::root))
        .route("/v1", v1.clone())
        .route("/v1/", v1)
        .route("/v1/status", status.clone())
        .route("/v1/status/", status.clone())
        .route("/status", status.clone())
        .route("/status/", status)
        .route("/v1/commands", list.clone())
        .route("/v1/commands/", list.clone())
        .route("/commands", list.clone())
        .route("/commands/", list)
        .route("/v1/commands/{id}", one.clone())
        .route("/v1/commands/{id}/", one.clone())
        .route("/commands/{id}", one.clone())
        .route("/commands/{id}/", one)
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(fault_for_method_not_allowed))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// `GET /metrics`: the agent's metrics in Prometheus's text format ([`crate::metrics`]).
async fn metrics() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static(prometheus::TEXT_FORMAT))],
        crate::metrics::metrics().render(),
    )
        .into_response()
}

/// axum answers a wrong method with an empty 405 (and an `Allow` header); give it a fault body.
async fn fault_for_method_not_allowed(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED && !response.headers().contains_key(CONTENT_TYPE) {
        let allow = response.headers().get(http::header::ALLOW).cloned();
        let mut replaced = ApiError::MethodNotAllowed.into_response();
        if let Some(allow) = allow {
            replaced.headers_mut().insert(http::header::ALLOW, allow);
        }
        return replaced;
    }
    response
}

/// One line per request. The query string is never logged: it carries `agent_token`.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(SERVER, HeaderValue::from_static("rivet-agent"));
    tracing::info!(
        peer = peer.as_deref().unwrap_or("-"),
        %method,
        path,
        route = route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "api request"
    );
    response
}
