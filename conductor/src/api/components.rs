//! What a node reports about its parts: BIOS settings (`/bios`, API 1.40), firmware components
//! (`/firmware`, 1.86), child nodes (`/children`, 1.83) and VIFs (`/vifs`, 1.28).
//!
//! Rivet's interfaces keep no BIOS settings or firmware components yet, so those lists are
//! empty, as Ironic's are for a node whose interfaces are `no-bios` / `no-firmware` or `fake`.
//! VIFs are recorded by the node's network interface ([`crate::drivers::network`]): `noop`
//! records nothing, `flat` records each on a port or port group.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext, parse_body};
use crate::drivers::network::{self, PortLike, VifError};
use crate::model::{PortRecord, ResourceKind, StoredResource};
use crate::time::now_iso;

/// `GET .../bios`: `{"bios": []}`.
pub(super) async fn bios(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 40)?;
    state.conductor.node(&ident).await?;
    Ok(Json(json!({"bios": []})))
}

/// `GET .../bios/{setting}`: no setting is known.
pub(super) async fn bios_setting(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, setting)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 40)?;
    let node = state.conductor.node(&ident).await?;
    Err(ApiError::NotFound(format!(
        "Node {} doesn't have a BIOS setting '{setting}'",
        node.uuid
    )))
}

/// `GET .../firmware`: `{"firmware": []}`.
pub(super) async fn firmware(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 86)?;
    state.conductor.node(&ident).await?;
    Ok(Json(json!({"firmware": []})))
}

/// `GET .../children`: the UUIDs of nodes whose `parent_node` is this one, and the link that
/// lists them.
pub(super) async fn children(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 83)?;
    let node = state.conductor.node(&ident).await?;
    let children: Vec<String> = state
        .conductor
        .db
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.attr("parent_node").as_str() == Some(node.uuid.as_str()))
        .map(|n| n.uuid)
        .collect();
    Ok(Json(json!({
        "children": children,
        "links": {"href": format!("{}/v1/nodes?parent_node={}", ctx.base, node.uuid), "rel": "children"},
    })))
}

/// `GET .../vifs`: `{"vifs": [{"id": ...}, ...]}`; always empty with `noop`.
pub(super) async fn vifs(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require(&ctx, 28)?;
    let node = state.conductor.node(&ident).await?;
    let (ports, groups) = port_likes(&state, &node.uuid).await?;
    let vifs: Vec<Value> = network::attached(&ports, &groups)
        .into_iter()
        .map(|id| json!({"id": id}))
        .collect();
    Ok(Json(json!({ "vifs": vifs })))
}

/// A node's ports and port groups.
async fn port_likes(state: &AppState, node: &str) -> Result<(Vec<PortRecord>, Vec<StoredResource>), ApiError> {
    let db = &state.conductor.db;
    Ok((
        db.ports(Some(node)).await?,
        db.resources(ResourceKind::Portgroup, Some(node)).await?,
    ))
}

/// Body of `POST .../vifs`: the VIF's `id`, and from API 1.67 the port or port group to use.
#[derive(Debug, serde::Deserialize)]
struct VifInfo {
    id: String,
    #[serde(default)]
    port_uuid: Option<String>,
    #[serde(default)]
    portgroup_uuid: Option<String>,
}

fn vif_error(e: VifError) -> ApiError {
    match e {
        VifError::AlreadyAttached { .. } => ApiError::Conflict(e.to_string()),
        VifError::NoFreePorts { .. } | VifError::NotAttached { .. } => ApiError::BadRequest(e.to_string()),
    }
}

/// Set or clear (`None`) the VIF recorded on a port or port group.
async fn record_vif(state: &AppState, on: &PortLike, vif: Option<&str>) -> Result<(), ApiError> {
    let set = |info: &mut Value| {
        if let Some(info) = info.as_object_mut() {
            match vif {
                Some(v) => info.insert(network::VIF_KEY.into(), json!(v)),
                None => info.remove(network::VIF_KEY),
            };
        }
    };
    let db = &state.conductor.db;
    match on {
        PortLike::Port(uuid) => {
            let mut port = db
                .port(uuid)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Port {uuid} could not be found.")))?;
            let mut info = port.attr("internal_info");
            set(&mut info);
            port.attrs.insert("internal_info".into(), info);
            if vif.is_none()
                && let Some(Value::Object(extra)) = port.attrs.get_mut("extra")
            {
                extra.remove("vif_port_id");
            }
            port.updated_at = Some(now_iso());
            db.update_port(&port).await?;
        }
        PortLike::Portgroup(uuid) => {
            let mut group = db
                .resource(ResourceKind::Portgroup, uuid)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Portgroup {uuid} could not be found.")))?;
            let mut info = group.get("internal_info");
            set(&mut info);
            group.doc.insert("internal_info".into(), info);
            if vif.is_none()
                && let Some(Value::Object(extra)) = group.doc.get_mut("extra")
            {
                extra.remove("vif_port_id");
            }
            group.updated_at = Some(now_iso());
            db.update_resource(&group).await?;
        }
    }
    Ok(())
}

/// `POST .../vifs`: 204. `noop` records nothing; `flat` records the VIF on the best free port
/// or port group (409 when the node has it already, 400 when nothing is free).
pub(super) async fn attach_vif(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    super::require(&ctx, 28)?;
    let vif: VifInfo = parse_body(&body)?;
    let node = state.conductor.node(&ident).await?;
    let (mut port_uuid, mut portgroup_uuid) = (vif.port_uuid.as_deref(), vif.portgroup_uuid.as_deref());
    if ctx.version.minor >= 67 {
        if port_uuid.is_some() && portgroup_uuid.is_some() {
            return Err(ApiError::BadRequest(
                "Cannot specify both port_uuid and portgroup_uuid".into(),
            ));
        }
    } else {
        (port_uuid, portgroup_uuid) = (None, None);
    }
    if node.interface("network") != "flat" {
        tracing::info!(node = %node.uuid, vif = %vif.id, "VIF attach: the noop network interface attaches nothing");
        return Ok(StatusCode::NO_CONTENT);
    }
    let work = async {
        let (ports, groups) = port_likes(&state, &node.uuid).await?;
        let on = network::choose(&ports, &groups, &vif.id, port_uuid, portgroup_uuid).map_err(vif_error)?;
        record_vif(&state, &on, Some(&vif.id)).await?;
        tracing::info!(node = %node.uuid, vif = %vif.id, on = ?on, "VIF attached");
        Ok(())
    };
    super::with_node_lock(&state, &node.uuid, work).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../vifs/{vif}`: 204; with `flat`, 400 when the node does not have it.
pub(super) async fn detach_vif(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, vif)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::require(&ctx, 28)?;
    let node = state.conductor.node(&ident).await?;
    if node.interface("network") != "flat" {
        return Ok(StatusCode::NO_CONTENT);
    }
    let work = async {
        let (ports, groups) = port_likes(&state, &node.uuid).await?;
        let on = network::holder(&ports, &groups, &vif).ok_or_else(|| {
            vif_error(VifError::NotAttached {
                vif: vif.clone(),
                node: node.uuid.clone(),
            })
        })?;
        record_vif(&state, &on, None).await?;
        tracing::info!(node = %node.uuid, vif = %vif, "VIF detached");
        Ok(())
    };
    super::with_node_lock(&state, &node.uuid, work).await?;
    Ok(StatusCode::NO_CONTENT)
}
