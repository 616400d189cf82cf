//! Discovery documents: `/`, `/v1/`, `/v1/status`.

use axum::Json;
use axum::extract::State;
use http::HeaderMap;
use rivet_common::agent_api::{Link, MediaType, RootDoc, StatusDoc, V1Doc, VersionEntry};

use super::shared::AppState;

/// The request's URL root (`http://host:port`), as upstream builds its links.
fn url_root(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| state.agent.config.listen.to_string());
    format!("{}://{host}", state.scheme)
}

pub(super) async fn root(State(state): State<AppState>, headers: HeaderMap) -> Json<RootDoc> {
    let root = url_root(&state, &headers);
    let version = VersionEntry {
        id: "v1".into(),
        links: Link::version_links(&root),
    };
    Json(RootDoc {
        name: "OpenStack Ironic Python Agent API".into(),
        description: "Ironic Python Agent is a provisioning agent for OpenStack Ironic".into(),
        versions: vec![version.clone()],
        default_version: version,
    })
}

pub(super) async fn v1(State(state): State<AppState>, headers: HeaderMap) -> Json<V1Doc> {
    let root = url_root(&state, &headers);
    Json(V1Doc {
        commands: vec![
            Link::new(format!("{root}/v1/commands"), "self"),
            Link::new(format!("{root}/commands"), "bookmark"),
        ],
        status: vec![
            Link::new(format!("{root}/v1/status"), "self"),
            Link::new(format!("{root}/status"), "bookmark"),
        ],
        media_types: vec![MediaType {
            base: "application/json".into(),
            media_type: "application/vnd.openstack.ironic-python-agent.v1+json".into(),
        }],
        id: "v1".into(),
        links: Link::version_links(&root),
    })
}

pub(super) async fn status(State(state): State<AppState>) -> Json<StatusDoc> {
    Json(StatusDoc {
        started_at: Some(state.agent.started_at),
        version: crate::VERSION.into(),
    })
}
