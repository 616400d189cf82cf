//! Ironic's v1 REST API, the subset the `baremetal` CLI and agents use.
//!
//! Every request carries a microversion (`X-OpenStack-Ironic-API-Version`, `latest`, or none =
//! 1.1); answers carry the negotiated version and the supported range. Errors are Ironic's
//! `{"error_message": "<json>"}` documents; bad input is always a 4xx with a message that says
//! what was wrong.

mod allocations;
pub mod auth;
mod boot;
mod chassis;
mod collection;
mod components;
mod conductors;
mod dashboard;
mod documents;
mod drivers;
mod error;
mod events;
mod inspection_rules;
mod management;
mod node_list;
mod nodes;
mod portgroups;
mod ports;
mod ramdisk;
mod root;
mod shards;
mod step_lists;
mod traits;
mod vmedia;
mod volume;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use http::{HeaderMap, HeaderValue};
use rivet_common::version::{ApiVersion, MAX_VERSION_HEADER, MIN_VERSION_HEADER, VERSION_HEADER};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::Conductor;

pub use error::ApiError;
pub use ports::normalise_mac;
pub use traits::traits_of as node_traits;

/// Load an htpasswd file for http_basic.
pub fn auth_users(path: &std::path::Path) -> Result<auth::Users, String> {
    auth::Users::load(path)
}

/// Lowest microversion served.
pub const MIN_VERSION: ApiVersion = ApiVersion::new(1, 1);
/// Highest microversion served (Ironic 39's).
pub const MAX_VERSION: ApiVersion = ApiVersion::new(1, 115);

/// Shared by handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub conductor: Arc<Conductor>,
    /// htpasswd users for http_basic (`None`: noauth).
    pub users: Option<Arc<auth::Users>>,
}

/// The negotiated microversion and the base URL of links, set by the middleware.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Negotiated microversion.
    pub version: ApiVersion,
    /// `http://host:port` for links.
    pub base: String,
}

/// The API router.
pub fn app(state: AppState) -> Router {
    let nodes = Router::new()
        .route("/v1/nodes", get(nodes::list).post(nodes::create))
        .route("/v1/nodes/", get(nodes::list).post(nodes::create))
        .route("/v1/nodes/detail", get(nodes::list_detail))
        .route(
            "/v1/nodes/{node}",
            get(nodes::show).patch(nodes::update).delete(nodes::delete),
        )
        .route("/v1/nodes/{node}/states", get(nodes::states))
        .route("/v1/nodes/{node}/states/provision", put(nodes::provision))
        .route("/v1/nodes/{node}/states/power", put(nodes::power))
        .route("/v1/nodes/{node}/states/raid", put(nodes::raid))
        .route("/v1/nodes/{node}/validate", get(nodes::validate))
        .route(
            "/v1/nodes/{node}/maintenance",
            put(nodes::maintenance_on).delete(nodes::maintenance_off),
        )
        .route("/v1/nodes/{node}/history", get(nodes::history))
        .route("/v1/nodes/{node}/history/{event}", get(nodes::history_event))
        .route("/v1/nodes/{node}/inventory", get(nodes::inventory))
        .route("/v1/nodes/{node}/ports", get(ports::list_for_node))
        .route("/v1/nodes/{node}/ports/detail", get(ports::list_detail_for_node))
        .route("/v1/nodes/{node}/vendor_passthru/methods", get(nodes::vendor_methods))
        .route(
            "/v1/nodes/{node}/vendor_passthru",
            axum::routing::any(nodes::vendor_call),
        )
        .route(
            "/v1/nodes/{node}/vendor_passthru/{method}",
            axum::routing::any(nodes::vendor_call_path),
        )
        .route(
            "/v1/nodes/{node}/management/boot_device",
            get(management::get).put(management::set),
        )
        .route(
            "/v1/nodes/{node}/management/boot_device/supported",
            get(management::supported),
        )
        .route(
            "/v1/nodes/{node}/traits",
            get(traits::list).put(traits::set).delete(traits::clear),
        )
        .route(
            "/v1/nodes/{node}/traits/{trait}",
            put(traits::add).delete(traits::remove),
        )
        .route(
            "/v1/nodes/{node}/vifs",
            get(components::vifs).post(components::attach_vif),
        )
        .route(
            "/v1/nodes/{node}/vifs/{vif}",
            axum::routing::delete(components::detach_vif),
        )
        .route("/v1/nodes/{node}/bios", get(components::bios))
        .route("/v1/nodes/{node}/bios/{setting}", get(components::bios_setting))
        .route("/v1/nodes/{node}/firmware", get(components::firmware))
        .route("/v1/nodes/{node}/children", get(components::children))
        .route(
            "/v1/nodes/{node}/vmedia",
            get(vmedia::get).post(vmedia::attach).delete(vmedia::detach),
        )
        .route(
            "/v1/nodes/{node}/allocation",
            get(allocations::node_get).delete(allocations::node_delete),
        )
        .route("/v1/nodes/{node}/portgroups", get(portgroups::list_for_node))
        .route(
            "/v1/nodes/{node}/portgroups/detail",
            get(portgroups::list_detail_for_node),
        )
        .route("/v1/nodes/{node}/volume", get(volume::node_root))
        .route("/v1/nodes/{node}/volume/", get(volume::node_root))
        .route("/v1/nodes/{node}/volume/{kind}", get(volume::list_for_node));
    let ports = Router::new()
        .route("/v1/ports", get(ports::list).post(ports::create))
        .route("/v1/ports/", get(ports::list).post(ports::create))
        .route("/v1/ports/detail", get(ports::list_detail))
        .route(
            "/v1/ports/{port}",
            get(ports::show).patch(ports::update).delete(ports::delete),
        )
        .route("/v1/portgroups", get(portgroups::list).post(portgroups::create))
        .route("/v1/portgroups/", get(portgroups::list).post(portgroups::create))
        .route("/v1/portgroups/detail", get(portgroups::list_detail))
        .route(
            "/v1/portgroups/{portgroup}",
            get(portgroups::get_one)
                .patch(portgroups::update)
                .delete(portgroups::delete),
        )
        .route("/v1/portgroups/{portgroup}/ports", get(ports::list_for_portgroup))
        .route(
            "/v1/portgroups/{portgroup}/ports/detail",
            get(ports::list_detail_for_portgroup),
        )
        .route("/v1/volume", get(volume::root))
        .route("/v1/volume/", get(volume::root))
        .merge(documents::routes(&volume::CONNECTORS))
        .merge(documents::routes(&volume::TARGETS))
        .merge(documents::routes(&step_lists::DEPLOY_TEMPLATES))
        .merge(documents::routes(&step_lists::RUNBOOKS))
        .merge(documents::routes(&inspection_rules::INSPECTION_RULES))
        .route(
            "/v1/runbooks/{runbook}/traits",
            get(step_lists::list_traits)
                .put(step_lists::set_traits)
                .delete(step_lists::clear_traits),
        )
        .route(
            "/v1/runbooks/{runbook}/traits/{trait}",
            put(step_lists::add_trait).delete(step_lists::remove_trait),
        )
        .route("/v1/allocations", get(allocations::list).post(allocations::create))
        .route("/v1/allocations/", get(allocations::list).post(allocations::create))
        .route(
            "/v1/allocations/{allocation}",
            get(allocations::get_one)
                .patch(allocations::update)
                .delete(allocations::delete),
        );
    let drivers = Router::new()
        .route("/v1/drivers", get(drivers::list))
        .route("/v1/drivers/", get(drivers::list))
        .route("/v1/drivers/{driver}", get(drivers::show))
        .route("/v1/drivers/{driver}/properties", get(drivers::properties))
        .route(
            "/v1/drivers/{driver}/raid/logical_disk_properties",
            get(drivers::raid_logical_disk_properties),
        )
        .route(
            "/v1/drivers/{driver}/vendor_passthru/methods",
            get(drivers::vendor_methods),
        )
        .route(
            "/v1/drivers/{driver}/vendor_passthru",
            axum::routing::any(drivers::vendor_call),
        )
        .route("/v1/conductors", get(conductors::list))
        .route("/v1/conductors/{hostname}", get(conductors::show))
        .route("/v1/shards", get(shards::list))
        .route("/v1/events", axum::routing::post(events::post))
        .route("/v1/chassis", get(chassis::list).post(chassis::create))
        .route("/v1/chassis/", get(chassis::list).post(chassis::create))
        .route("/v1/chassis/detail", get(chassis::list_detail))
        .route(
            "/v1/chassis/{chassis}",
            get(chassis::show).patch(chassis::update).delete(chassis::delete),
        )
        .route("/v1/chassis/{chassis}/nodes", get(chassis::nodes))
        .route("/v1/lookup", get(ramdisk::lookup))
        .route("/v1/lookup/", get(ramdisk::lookup))
        .route("/v1/heartbeat/{node}", axum::routing::post(ramdisk::heartbeat))
        .route(
            "/v1/continue_inspection",
            axum::routing::post(ramdisk::continue_inspection),
        )
        .route("/boot/ipxe/{name}", get(boot::ipxe_script))
        .route("/httpboot/{file}", get(boot::http_boot));
    Router::new()
        .route("/", get(root::root))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/fleet", get(dashboard::fleet))
        .route("/v1", get(root::v1))
        .route("/v1/", get(root::v1))
        .merge(nodes)
        .merge(ports)
        .merge(drivers)
        .fallback(|| async { ApiError::NoRoute })
        .layer(middleware::from_fn(node_names_need_1_5))
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), negotiate))
        .with_state(state)
}

/// `GET /metrics`: the conductor's metrics in Prometheus's text format ([`crate::metrics`]).
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Result<Response, ApiError> {
    let text = crate::metrics::metrics()
        .render(&state.conductor.db)
        .await
        .map_err(|e| match e {
            crate::metrics::RenderError::Database(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// Nodes are found by logical name from API 1.5; before, a name is an unknown node (Ironic's
/// `get_rpc_node` answers 404 without looking).
async fn node_names_need_1_5(request: Request, next: Next) -> Response {
    let old = request
        .extensions()
        .get::<RequestContext>()
        .is_some_and(|ctx| ctx.version.minor < 5);
    if old
        && let Some(ident) = request
            .uri()
            .path()
            .strip_prefix("/v1/nodes/")
            .map(|rest| rest.split('/').next().unwrap_or_default())
        && !ident.is_empty()
        && ident != "detail"
        && uuid::Uuid::parse_str(ident).is_err()
    {
        return ApiError::NotFound(format!("Node {ident} could not be found.")).into_response();
    }
    next.run(request).await
}

fn requested_version(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(v) = headers.get(VERSION_HEADER) {
        return Ok(Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Invalid API version header".into()))?
                .trim()
                .to_owned(),
        ));
    }
    if let Some(v) = headers.get("OpenStack-API-Version") {
        let text = v
            .to_str()
            .map_err(|_| ApiError::BadRequest("Invalid API version header".into()))?;
        if let Some(rest) = text.trim().strip_prefix("baremetal") {
            return Ok(Some(rest.trim().to_owned()));
        }
    }
    Ok(None)
}

/// Negotiate the microversion, remember the base URL, and stamp the version headers.
async fn negotiate(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let version = match requested_version(request.headers()) {
        Err(e) => return with_version_headers(e.into_response(), MIN_VERSION),
        Ok(None) => MIN_VERSION,
        Ok(Some(text)) if text == "latest" => MAX_VERSION,
        Ok(Some(text)) => match text.parse::<ApiVersion>() {
            Ok(v) if v.major == 1 && (MIN_VERSION..=MAX_VERSION).contains(&v) => v,
            Ok(v) => {
                let err = ApiError::NotAcceptable(format!(
                    "Version {v} was requested but the minor version is not supported by this service. The supported version range is: [{MIN_VERSION}, {MAX_VERSION}]."
                ));
                return with_version_headers(err.into_response(), MIN_VERSION);
            }
            Err(_) => {
                let err = ApiError::BadRequest(format!(
                    "Invalid value for X-OpenStack-Ironic-API-Version header: {text:?}"
                ));
                return with_version_headers(err.into_response(), MIN_VERSION);
            }
        },
    };
    let base = state
        .conductor
        .config
        .public_endpoint
        .clone()
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| {
            let host = request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        });
    request.extensions_mut().insert(RequestContext { version, base });
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Every line logged while the request is handled carries its id (the span's field), and
    // the answer names it in the header Ironic's API sets (oslo.middleware's request_id).
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let span = tracing::info_span!("api", request_id = %request_id);
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    crate::metrics::metrics().api_request(method.as_str(), response.status().as_u16());
    span.in_scope(|| {
        tracing::info!(%method, path, status = response.status().as_u16(), version = %version, ms = started.elapsed().as_secs_f64() * 1000.0, "api request");
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    with_version_headers(response, version)
}

/// The response header that names the request's id (`req-<uuid>`), as Ironic's API sets it.
pub const REQUEST_ID_HEADER: &str = "x-openstack-request-id";

fn with_version_headers(mut response: Response, version: ApiVersion) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (MIN_VERSION_HEADER, MIN_VERSION),
        (MAX_VERSION_HEADER, MAX_VERSION),
        (VERSION_HEADER, version),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, v);
        }
    }
    headers.insert(http::header::SERVER, HeaderValue::from_static("rivet-conductor"));
    response
}

/// A path that exists from API `1.<minor>`: below it Ironic's router does not know it
/// ([`ApiError::NoRoute`]).
pub fn require(ctx: &RequestContext, minor: u32) -> Result<(), ApiError> {
    if ctx.version.minor < minor {
        return Err(ApiError::NoRoute);
    }
    Ok(())
}

/// An API that exists from `1.<minor>`, checked by Ironic's handler rather than its router:
/// below it a 404 fault document with `message` (Ironic's default is "The API is not
/// supported for this version").
pub fn require_api(ctx: &RequestContext, minor: u32, message: &str) -> Result<(), ApiError> {
    if ctx.version.minor < minor {
        return Err(ApiError::NotFound(message.to_owned()));
    }
    Ok(())
}

/// Ironic's default text for [`require_api`].
pub const API_NOT_SUPPORTED: &str = "The API is not supported for this version";

/// The UUID of a new resource: the one the client gave (checked), else a fresh one.
pub fn new_uuid(given: Option<&str>) -> Result<String, ApiError> {
    match given {
        Some(u) => uuid::Uuid::parse_str(u)
            .map(|u| u.to_string())
            .map_err(|_| ApiError::BadRequest(format!("Expected a UUID but received {u}."))),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// Parse a JSON body into `T`; malformed or mistyped bodies are 400 with serde's reason.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("The request body is not valid JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("Invalid request body: {e}")))
}

/// `?fields=a,b` as a list.
pub fn fields_param(raw: Option<&String>) -> Option<Vec<String>> {
    raw.map(|f| {
        f.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// Run `work` under `node`'s lock, as Ironic changes a node's ports, port groups and volume
/// resources: 409 when the lock stays taken past the lock policy.
pub(super) async fn with_node_lock<T>(
    state: &AppState,
    node: &str,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let lock = state
        .conductor
        .locks
        .acquire(node)
        .await
        .map_err(crate::engine::EngineError::from)?;
    let result = work.await;
    lock.release().await?;
    result
}

/// A `201 Created` answer with `doc` and a `Location` header naming `/v1/<path>`.
pub(super) fn created(ctx: &RequestContext, path: &str, doc: Value) -> Response {
    let mut response = (http::StatusCode::CREATED, axum::Json(doc)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/v1/{path}", ctx.base)) {
        response.headers_mut().insert(http::header::LOCATION, v);
    }
    response
}

/// A JSON patch (RFC 6902) every path of which starts with one of `writable`: 400 for a body
/// that is not a patch, and Ironic's "Cannot patch <path>. Only the following can be updated:
/// ..." for a path outside them.
pub(super) fn writable_patch(body: &Bytes, writable: &[&str]) -> Result<json_patch::Patch, ApiError> {
    let ops: Vec<Value> = parse_body(body)
        .map_err(|_| ApiError::BadRequest("The patch must be a JSON array of operations (RFC 6902).".into()))?;
    for op in &ops {
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let root = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        if !writable.contains(&root) {
            return Err(ApiError::BadRequest(format!(
                "Cannot patch {path}. Only the following can be updated: {}",
                writable.join(", ")
            )));
        }
    }
    serde_json::from_value(Value::Array(ops)).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))
}

/// The fields a single-resource `GET` asks for (`?fields=`), each one `full` (the resource
/// with every field) has, plus `links`, which Ironic always shows; `None` for every field.
/// An unknown field is a 400.
pub(super) fn shown_fields(raw: Option<&String>, full: &Value) -> Result<Option<Vec<String>>, ApiError> {
    let Some(mut fields) = fields_param(raw) else {
        return Ok(None);
    };
    if let Some(bad) = fields.iter().find(|f| full.get(f.as_str()).is_none()) {
        return Err(ApiError::BadRequest(format!("Field(s) \"{bad}\" are not valid")));
    }
    fields.push("links".into());
    Ok(Some(fields))
}
