//! A proxy in front of the conductor that loses the answer to the first lookup: the conductor
//! processes the request (and mints a token), the agent gets a gateway error instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    lookups: Arc<AtomicU32>,
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut outgoing = state
        .client
        .request(parts.method.clone(), format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.body(body.to_vec()).send().await;
    let is_lookup = parts.uri.path().starts_with("/v1/lookup");
    if is_lookup && state.lookups.fetch_add(1, Ordering::SeqCst) == 0 {
        // The conductor answered; the answer is lost on the way back.
        return (StatusCode::GATEWAY_TIMEOUT, "lookup answer lost by the test proxy").into_response();
    }
    match answer {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes: Bytes = resp.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    out.headers_mut().insert(name, value.clone());
                }
            }
            out
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Start the proxy; returns its URL and the number of lookups it has seen.
pub async fn lossy_lookup_proxy(upstream: String) -> (String, Arc<AtomicU32>, tokio::task::JoinHandle<()>) {
    let lookups = Arc::new(AtomicU32::new(0));
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
        .build()
        .expect("client");
    let app = axum::Router::new().fallback(forward).with_state(ProxyState {
        upstream,
        client,
        lookups: Arc::clone(&lookups),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, lookups, server)
}
