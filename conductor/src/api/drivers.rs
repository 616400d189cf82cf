//! `/v1/drivers` (hardware types), driver vendor passthru, `/v1/conductors`.

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext, parse_body};
use crate::model::{INTERFACE_KINDS, links, node_field_known};

fn driver_doc(state: &AppState, ctx: &RequestContext, name: &str, detail: bool) -> Value {
    let mut doc = json!({
        "name": name,
        "hosts": [state.conductor.locks.host()],
        "links": links(&ctx.base, &format!("drivers/{name}")),
    });
    // Ironic's driver controller: links to the properties from 1.14, the type from 1.30.
    if ctx.version.minor >= 14 {
        doc["properties"] = links(&ctx.base, &format!("drivers/{name}/properties"));
    }
    if ctx.version.minor >= 30 {
        doc["type"] = json!("dynamic");
    }
    if detail && ctx.version.minor >= 30 {
        let registry = &state.conductor.drivers;
        for kind in INTERFACE_KINDS
            .iter()
            .filter(|k| node_field_known(&format!("{k}_interface"), ctx.version))
        {
            doc[format!("default_{kind}_interface")] = json!(registry.default_for(name, kind));
            doc[format!("enabled_{kind}_interfaces")] = json!(registry.usable(name, kind));
        }
    }
    doc
}

fn known(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.conductor.drivers.enabled_types().iter().any(|t| t == name) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "Could not find the following driver(s) or hardware type(s): {name}."
        )))
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let detail = q.get("detail").is_some_and(|d| d.eq_ignore_ascii_case("true"));
    if detail && ctx.version.minor < 30 {
        return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
    }
    let drivers: Vec<Value> = state
        .conductor
        .drivers
        .enabled_types()
        .iter()
        .map(|n| driver_doc(&state, &ctx, n, detail))
        .collect();
    Ok(Json(json!({ "drivers": drivers })))
}

pub(super) async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    known(&state, &name)?;
    Ok(Json(driver_doc(&state, &ctx, &name, true)))
}

pub(super) async fn properties(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    known(&state, &name)?;
    Ok(Json(json!({})))
}

/// `GET /v1/drivers/{driver}/raid/logical_disk_properties` (API 1.12): the properties a
/// target RAID configuration's logical disks may have, each with its meaning.
pub(super) async fn raid_logical_disk_properties(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if ctx.version.minor < 12 {
        return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
    }
    known(&state, &name)?;
    let properties: JsonObject = crate::raid::LOGICAL_DISK_PROPERTIES
        .iter()
        .map(|(name, meaning)| ((*name).to_owned(), json!(meaning)))
        .collect();
    Ok(Json(Value::Object(properties)))
}

pub(super) async fn vendor_methods(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    known(&state, &name)?;
    let methods: JsonObject = state
        .conductor
        .drivers
        .default_vendor(&name)
        .map(|v| {
            v.driver_methods()
                .iter()
                .map(|m| (m.name.to_owned(), m.describe()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(Value::Object(methods)))
}

pub(super) async fn vendor_call(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    http_method: Method,
    body: Bytes,
) -> Result<Response, ApiError> {
    known(&state, &name)?;
    let method = q
        .get("method")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::BadRequest("Method not specified".into()))?;
    let vendor = state
        .conductor
        .drivers
        .default_vendor(&name)
        .ok_or_else(|| ApiError::BadRequest(format!("No handler for method {method}")))?;
    let spec = vendor
        .driver_methods()
        .into_iter()
        .find(|m| m.name == method)
        .ok_or_else(|| ApiError::BadRequest(format!("No handler for method {method}")))?;
    if !spec.http_methods.contains(&http_method.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "The method {method} does not support HTTP {http_method}"
        )));
    }
    let args: Value = if body.is_empty() { json!({}) } else { parse_body(&body)? };
    let value = vendor
        .call_driver(method, http_method.as_str(), args)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((
        StatusCode::OK,
        Json(json!({"return": value, "async": false, "attach": spec.attach})),
    )
        .into_response())
}
