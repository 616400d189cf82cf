//! `/v1/ports`: a node's NICs (lookup matches agents by their MAC addresses).

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext, fields_param, parse_body};
use crate::model::{PORT_ATTR_FIELDS, PortRecord, port_attr_default};
use crate::states::{PORT_CONNECTIVITY_UPDATE_ALLOWED, state};
use crate::time::now_iso;

/// Normalise a MAC (6 bytes Ethernet, 20 bytes InfiniBand) to lower-case colon form.
pub fn normalise_mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if !(parts.len() == 6 || parts.len() == 20)
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

fn apply(port: &mut PortRecord, doc: &JsonObject) -> Result<(), ApiError> {
    let address = doc
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("Mandatory field missing: address".into()))?;
    port.address = normalise_mac(address)
        .ok_or_else(|| ApiError::BadRequest(format!("Expected a MAC address but received {address}.")))?;
    port.pxe_enabled = match doc.get("pxe_enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Invalid value for pxe_enabled: expected a boolean, got {other}"
            )));
        }
    };
    for field in PORT_ATTR_FIELDS {
        if let Some(value) = doc.get(*field) {
            let ok = match *field {
                "extra" | "internal_info" | "local_link_connection" => value.is_object(),
                "is_smartnic" | "available_for_dynamic_portgroup" => value.is_boolean(),
                _ => value.is_string() || value.is_null(),
            };
            if !ok {
                return Err(ApiError::BadRequest(format!("Invalid value for {field}: {value}")));
            }
            port.attrs.insert((*field).to_owned(), value.clone());
        }
    }
    Ok(())
}

async fn resolve_node(state: &AppState, doc: &JsonObject) -> Result<String, ApiError> {
    let ident = doc
        .get("node_uuid")
        .or_else(|| doc.get("node_ident"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("Mandatory field missing: node_uuid".into()))?;
    let node = state
        .conductor
        .db
        .node_by_ident(ident)
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("Node {ident} could not be found.")))?;
    Ok(node.uuid)
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let doc: JsonObject = parse_body(&body)?;
    for key in doc.keys() {
        if !["uuid", "address", "node_uuid", "node_ident", "pxe_enabled"].contains(&key.as_str())
            && !PORT_ATTR_FIELDS.contains(&key.as_str())
        {
            return Err(ApiError::BadRequest(format!("Unknown attribute for a new port: {key}")));
        }
    }
    // Ironic checks the values' types before the fields' versions.
    if let Some(Value::String(group)) = doc.get("portgroup_uuid")
        && uuid::Uuid::parse_str(group).is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "Expected UUID for portgroup_uuid: {group}"
        )));
    }
    check_field_versions(&ctx, doc.keys().map(String::as_str))?;
    let uuid = super::new_uuid(doc.get("uuid").and_then(Value::as_str))?;
    let node_uuid = resolve_node(&state, &doc).await?;
    let mut port = PortRecord {
        uuid,
        node_uuid,
        created_at: now_iso(),
        ..Default::default()
    };
    apply(&mut port, &doc)?;
    check_portgroup(&state, &mut port).await?;
    state.conductor.db.insert_port(&port).await?;
    let mut response = (StatusCode::CREATED, Json(port.to_api(ctx.version, &ctx.base, None))).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&format!("{}/v1/ports/{}", ctx.base, port.uuid)) {
        response.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(response)
}

/// The ports of a node or of a port group (given by the path or by `?node=`, `?portgroup=`).
#[derive(Debug, Default)]
struct Owner {
    node: Option<String>,
    portgroup: Option<String>,
}

async fn list_ports(
    state: AppState,
    ctx: RequestContext,
    owner: Owner,
    query: HashMap<String, String>,
    detail: bool,
) -> Result<Json<Value>, ApiError> {
    let node_uuid = match owner
        .node
        .or_else(|| query.get("node").cloned())
        .or_else(|| query.get("node_uuid").cloned())
    {
        Some(ident) => Some(state.conductor.node(&ident).await?.uuid),
        None => None,
    };
    if query.contains_key("portgroup") && ctx.version.minor < 24 {
        return Err(ApiError::BadRequest(
            "Invalid query parameter portgroup: filtering by port group needs API 1.24".into(),
        ));
    }
    let portgroup_uuid = match owner.portgroup.or_else(|| query.get("portgroup").cloned()) {
        Some(ident) => Some(super::portgroups::find(&state, &ident).await?.uuid),
        None => None,
    };
    let mut ports = state.conductor.db.ports(node_uuid.as_deref()).await?;
    if let Some(portgroup) = &portgroup_uuid {
        ports.retain(|p| p.attr("portgroup_uuid").as_str() == Some(portgroup.as_str()));
    }
    if let Some(address) = query.get("address").and_then(|a| normalise_mac(a)) {
        ports.retain(|p| p.address == address);
    }
    let fields = fields_param(query.get("fields"));
    let shown: Option<Vec<String>> = if detail || query.get("detail").is_some_and(|d| d.eq_ignore_ascii_case("true")) {
        None
    } else {
        Some(fields.unwrap_or_else(|| vec!["uuid".into(), "address".into(), "links".into()]))
    };
    Ok(Json(
        json!({ "ports": ports.iter().map(|p| p.to_api(ctx.version, &ctx.base, shown.as_deref())).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_ports(state, ctx, Owner::default(), q, false).await
}

pub(super) async fn list_detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_ports(state, ctx, Owner::default(), q, true).await
}

pub(super) async fn list_for_node(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_ports(
        state,
        ctx,
        Owner {
            node: Some(node),
            portgroup: None,
        },
        q,
        false,
    )
    .await
}

pub(super) async fn list_detail_for_node(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    list_ports(
        state,
        ctx,
        Owner {
            node: Some(node),
            portgroup: None,
        },
        q,
        true,
    )
    .await
}

/// `GET /v1/portgroups/{portgroup}/ports` (API 1.24).
pub(super) async fn list_for_portgroup(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(portgroup): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    super::portgroups::check_ident(&portgroup)?;
    super::require(&ctx, 24)?;
    let owner = Owner {
        node: None,
        portgroup: Some(portgroup),
    };
    list_ports(state, ctx, owner, q, false).await
}

/// `GET /v1/portgroups/{portgroup}/ports/detail` (API 1.24).
pub(super) async fn list_detail_for_portgroup(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(portgroup): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    super::portgroups::check_ident(&portgroup)?;
    super::require(&ctx, 24)?;
    let owner = Owner {
        node: None,
        portgroup: Some(portgroup),
    };
    list_ports(state, ctx, owner, q, true).await
}

/// A port may join only an existing port group of its own node; the group is stored by UUID.
async fn check_portgroup(state: &AppState, port: &mut PortRecord) -> Result<(), ApiError> {
    let Some(ident) = port
        .attrs
        .get("portgroup_uuid")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(());
    };
    let portgroup = state
        .conductor
        .db
        .resource(crate::model::ResourceKind::Portgroup, &ident)
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("Portgroup {ident} could not be found.")))?;
    if portgroup.node() != port.node_uuid {
        return Err(ApiError::BadRequest(
            "Port can not be added to a portgroup belonging to a different node.".into(),
        ));
    }
    port.attrs.insert("portgroup_uuid".into(), json!(portgroup.uuid));
    Ok(())
}

/// Ironic's check of a port named in a path: a UUID or a logical name (`port_ident`), or a
/// UUID only (`port_uuid`, for deletion); 400 otherwise.
fn check_ident(ident: &str, uuid_only: bool) -> Result<(), ApiError> {
    let is_uuid = uuid::Uuid::parse_str(ident).is_ok();
    if uuid_only && !is_uuid {
        return Err(ApiError::BadRequest(format!("Expected UUID for port_uuid: {ident}")));
    }
    if !is_uuid && !super::nodes::valid_name(ident) {
        return Err(ApiError::BadRequest(format!(
            "Expected UUID or name for port_ident: {ident}"
        )));
    }
    Ok(())
}

/// A field the request's microversion does not have yet: 406, as Ironic answers.
fn check_field_versions<'a>(ctx: &RequestContext, fields: impl IntoIterator<Item = &'a str>) -> Result<(), ApiError> {
    for field in fields {
        let alias = if field == "node_ident" { "node_uuid" } else { field };
        if crate::model::port_field_minor(alias).is_some_and(|minor| ctx.version.minor < minor) {
            return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
        }
    }
    Ok(())
}

async fn find(state: &AppState, ident: &str) -> Result<PortRecord, ApiError> {
    state
        .conductor
        .db
        .port(ident)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Port {ident} could not be found.")))
}

pub(super) async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    check_ident(&ident, false)?;
    let port = find(&state, &ident).await?;
    Ok(Json(port.to_api(
        ctx.version,
        &ctx.base,
        fields_param(q.get("fields")).as_deref(),
    )))
}

pub(super) async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_ident(&ident, false)?;
    let ops: Vec<Value> = parse_body(&body)?;
    let roots: Vec<String> = ops
        .iter()
        .filter_map(|op| op.get("path").and_then(Value::as_str))
        .map(|p| {
            p.trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    check_field_versions(&ctx, roots.iter().map(String::as_str))?;
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
    let mut port = find(&state, &ident).await?;
    let node_uuid = port.node_uuid.clone();
    // Ports change under their node's lock, like Ironic.
    let work = async {
        // Read again under the lock: a VIF attached meanwhile must not be written away.
        port = find(&state, &port.uuid).await?;
        let mut doc = port.to_api(crate::api::MAX_VERSION, &ctx.base, None);
        json_patch::patch(&mut doc, &patch).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
        let mut doc = doc.as_object().cloned().unwrap_or_default();
        // A removed field takes its default; leaving it out would keep the old value.
        for field in PORT_ATTR_FIELDS {
            doc.entry(*field).or_insert_with(|| port_attr_default(field));
        }
        if doc.get("uuid").and_then(Value::as_str) != Some(port.uuid.as_str()) {
            return Err(ApiError::BadRequest(
                "'/uuid' is a read-only attribute and can not be updated".into(),
            ));
        }
        let before = port.clone();
        port.node_uuid = resolve_node(&state, &doc).await?;
        apply(&mut port, &doc)?;
        check_portgroup(&state, &mut port).await?;
        check_update_allowed(&state, &before, &port).await?;
        port.updated_at = Some(now_iso());
        state.conductor.db.update_port(&port).await?;
        Ok(())
    };
    super::with_node_lock(&state, &node_uuid, work).await?;
    Ok(Json(port.to_api(ctx.version, &ctx.base, None)))
}

/// Ironic's rules for changing a port (conductor `update_port`): its address not while the node
/// is active or has an instance, its connectivity only while the node is enrolled, inspected or
/// manageable; maintenance mode lifts both.
async fn check_update_allowed(state: &AppState, before: &PortRecord, after: &PortRecord) -> Result<(), ApiError> {
    let node = state.conductor.node(&before.node_uuid).await?;
    if node.maintenance {
        return Ok(());
    }
    let has_instance = node.attr("instance_uuid").as_str().is_some_and(|u| !u.is_empty());
    if before.address != after.address && (node.provision_state == state::ACTIVE || has_instance) {
        return Err(ApiError::Conflict(format!(
            "Cannot update hardware address for port {} as node {} is active or has instance UUID assigned",
            before.uuid, node.uuid
        )));
    }
    const CONNECTIVITY: [&str; 4] = [
        "portgroup_uuid",
        "pxe_enabled",
        "local_link_connection",
        "physical_network",
    ];
    let value = |p: &PortRecord, f: &str| {
        if f == "pxe_enabled" {
            json!(p.pxe_enabled)
        } else {
            p.attr(f)
        }
    };
    let changed = CONNECTIVITY.iter().any(|f| value(before, f) != value(after, f));
    if changed && !PORT_CONNECTIVITY_UPDATE_ALLOWED.contains(&node.provision_state.as_str()) {
        return Err(ApiError::Conflict(format!(
            "Port {} can not have any connectivity attributes ({}) updated unless node {} is in a {} state or in maintenance mode. The current state is {}.",
            before.uuid,
            CONNECTIVITY.join(", "),
            node.uuid,
            PORT_CONNECTIVITY_UPDATE_ALLOWED.join(", "),
            node.provision_state
        )));
    }
    Ok(())
}

pub(super) async fn delete(State(state): State<AppState>, Path(ident): Path<String>) -> Result<StatusCode, ApiError> {
    check_ident(&ident, true)?;
    let port = find(&state, &ident).await?;
    let work = async { Ok(state.conductor.db.delete_port(&port.uuid).await?) };
    super::with_node_lock(&state, &port.node_uuid, work).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_normalised() {
        assert_eq!(normalise_mac("52:54:00:AA:00:01").as_deref(), Some("52:54:00:aa:00:01"));
        assert_eq!(normalise_mac("52-54-00-aa-00-01").as_deref(), Some("52:54:00:aa:00:01"));
        assert_eq!(normalise_mac("52:54:00:aa:00"), None);
        assert_eq!(normalise_mac("zz:54:00:aa:00:01"), None);
    }
}
