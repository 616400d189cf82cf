//! `/v1/volume` (API 1.32): a node's volume connectors (how it reaches storage: an iSCSI
//! initiator name, a WWPN, an IP address) and volume targets (what it boots from or attaches).
//!
//! Stored and served as Ironic does; Rivet's only storage interface is `noop`, which, like
//! Ironic's, attaches nothing (docs/compatibility.md). Ironic's `volume_connector.py`,
//! `volume_target.py` and its conductor's rules: a connector or target changes only while its
//! node is powered off, and is deleted only then or while the node is enrolled, manageable or
//! failed adoption.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Json};
use http::StatusCode;
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::collection::{self, Listing};
use super::{ApiError, AppState, RequestContext, parse_body};
use crate::model::{StoredResource, ResourceKind};
use crate::time::now_iso;

/// What differs between connectors and targets.
#[derive(Debug)]
struct Spec {
    kind: ResourceKind,
    /// Fields in Ironic's order; all exist from 1.32.
    fields: &'static [&'static str],
    /// Fields a body must carry.
    required: &'static [&'static str],
    /// Fields a client may set or patch (besides `uuid` at creation).
    writable: &'static [&'static str],
    listing: Listing,
    /// The name of the path parameter in messages (`connector_uuid`).
    ident: &'static str,
    /// How conductor messages name it (`volume connector`).
    action: &'static str,
}

const CONNECTORS: Spec = Spec {
    kind: ResourceKind::VolumeConnector,
    fields: &[
        "uuid",
        "node_uuid",
        "type",
        "connector_id",
        "extra",
        "created_at",
        "updated_at",
        "links",
    ],
    required: &["connector_id", "node_uuid", "type"],
    writable: &["connector_id", "extra", "node_uuid", "type"],
    listing: Listing {
        path: "volume/connectors",
        key: "connectors",
        short: &["uuid", "node_uuid", "type", "connector_id"],
        unsortable: &["extra"],
    },
    ident: "connector_uuid",
    action: "volume connector",
};

const TARGETS: Spec = Spec {
    kind: ResourceKind::VolumeTarget,
    fields: &[
        "uuid",
        "node_uuid",
        "volume_type",
        "properties",
        "boot_index",
        "volume_id",
        "extra",
        "created_at",
        "updated_at",
        "links",
    ],
    required: &["boot_index", "node_uuid", "volume_id", "volume_type"],
    writable: &[
        "boot_index",
        "extra",
        "node_uuid",
        "properties",
        "volume_id",
        "volume_type",
    ],
    listing: Listing {
        path: "volume/targets",
        key: "targets",
        short: &["uuid", "node_uuid", "volume_type", "boot_index", "volume_id"],
        unsortable: &["extra", "properties"],
    },
    ident: "target_uuid",
    action: "volume target",
};

impl Spec {
    fn show(&self, ctx: &RequestContext, resource: &StoredResource, fields: Option<&[String]>) -> Value {
        let table: Vec<(&str, u32)> = self.fields.iter().map(|f| (*f, 32)).collect();
        collection::render(resource, &table, ctx, self.listing.path, &[], fields)
    }

    /// Check every field of a body or patched document; store the writable ones.
    fn apply(&self, resource: &mut StoredResource, doc: &JsonObject) -> Result<(), ApiError> {
        for field in self.required {
            if doc.get(*field).is_none_or(Value::is_null) {
                return Err(self.schema_error(format!("'{field}' is a required property")));
            }
        }
        for (field, value) in doc {
            let value = match (field.as_str(), value) {
                ("uuid" | "node_uuid", _) => continue,
                ("extra" | "properties", Value::Null) => json!({}),
                ("extra" | "properties", Value::Object(o)) => Value::Object(o.clone()),
                ("boot_index", Value::Number(n)) if n.is_i64() => value.clone(),
                ("type" | "connector_id" | "volume_id" | "volume_type", Value::String(_)) => value.clone(),
                (f, v) if self.writable.contains(&f) => {
                    return Err(self.schema_error(format!("{v} is not valid for {f}")));
                }
                (f, _) => {
                    return Err(
                        self.schema_error(format!("Additional properties are not allowed ('{f}' was unexpected)"))
                    );
                }
            };
            resource.doc.insert(field.clone(), value);
        }
        Ok(())
    }

    fn schema_error(&self, reason: String) -> ApiError {
        ApiError::BadRequest(format!("Schema error for {}: {reason}", self.action))
    }

    /// The node a body names: a UUID (400 otherwise) of an existing node (400 otherwise).
    async fn node_of(&self, state: &AppState, doc: &JsonObject) -> Result<crate::model::NodeRecord, ApiError> {
        let ident = doc.get("node_uuid").and_then(Value::as_str).unwrap_or_default();
        if uuid::Uuid::parse_str(ident).is_err() {
            return Err(ApiError::BadRequest(format!("Expected UUID for node_uuid: {ident}")));
        }
        state.conductor.db.node(ident).await?.ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Invalid input for field/attribute node_uuid. Value: '{ident}'. "
            ))
        })
    }

    async fn find(&self, state: &AppState, ctx: &RequestContext, ident: &str) -> Result<StoredResource, ApiError> {
        super::require(ctx, 32)?;
        if uuid::Uuid::parse_str(ident).is_err() {
            return Err(ApiError::BadRequest(format!(
                "Expected UUID for {}: {ident}",
                self.ident
            )));
        }
        state
            .conductor
            .db
            .resource(self.kind, ident)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("{} {ident} could not be found.", self.kind.label())))
    }

    /// Ironic's conductor refuses to change a connector or target of a node that is not
    /// powered off, and to delete one unless the node is also enrolled, manageable or failed
    /// adoption (`InvalidStateRequested`, 400).
    async fn check_node_state(&self, state: &AppState, node_uuid: &str, deleting: bool) -> Result<(), ApiError> {
        let node = state.conductor.node(node_uuid).await?;
        let power = node.power_state.as_deref();
        if power == Some("power off")
            || deleting && crate::states::DELETE_ALLOWED.contains(&node.provision_state.as_str())
        {
            return Ok(());
        }
        let verb = if deleting { "deletion" } else { "update" };
        Err(ApiError::BadRequest(format!(
            "The requested action \"{} {verb}\" can not be performed on node \"{}\" while it is in state \"{}\".",
            self.action,
            node.uuid,
            power.unwrap_or("None")
        )))
    }

    async fn create(&self, state: &AppState, ctx: &RequestContext, body: &Bytes) -> Result<Response, ApiError> {
        super::require(ctx, 32)?;
        let doc: JsonObject = parse_body(body)?;
        let mut resource = StoredResource {
            kind: self.kind,
            uuid: super::new_uuid(doc.get("uuid").and_then(Value::as_str))?,
            node_uuid: None,
            doc: json!({"extra": {}}).as_object().cloned().unwrap_or_default(),
            created_at: now_iso(),
            updated_at: None,
        };
        if self.kind == ResourceKind::VolumeTarget {
            resource.doc.insert("properties".into(), json!({}));
        }
        self.apply(&mut resource, &doc)?;
        resource.node_uuid = Some(self.node_of(state, &doc).await?.uuid);
        state.conductor.db.insert_resource(&resource).await?;
        Ok(super::created(
            ctx,
            &format!("{}/{}", self.listing.path, resource.uuid),
            self.show(ctx, &resource, None),
        ))
    }

    async fn list(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        node: Option<String>,
        query: &HashMap<String, String>,
    ) -> Result<Json<Value>, ApiError> {
        super::require(ctx, 32)?;
        let node_uuid = match node.or_else(|| query.get("node").cloned()) {
            Some(ident) => Some(state.conductor.node(&ident).await?.uuid),
            None => None,
        };
        let all = state.conductor.db.resources(self.kind, node_uuid.as_deref()).await?;
        let doc = collection::list(ctx, &self.listing, self.kind.label(), all, query, false, |r, f| {
            self.show(ctx, r, f)
        })?;
        Ok(Json(doc))
    }

    async fn get_one(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        ident: &str,
        query: &HashMap<String, String>,
    ) -> Result<Json<Value>, ApiError> {
        let resource = self.find(state, ctx, ident).await?;
        let mut fields = super::fields_param(query.get("fields"));
        if let Some(wanted) = &mut fields {
            if let Some(bad) = wanted.iter().find(|f| !self.fields.contains(&f.as_str())) {
                return Err(ApiError::BadRequest(format!("Field(s) \"{bad}\" are not valid")));
            }
            wanted.push("links".into());
        }
        Ok(Json(self.show(ctx, &resource, fields.as_deref())))
    }

    async fn update(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        ident: &str,
        body: &Bytes,
    ) -> Result<Json<Value>, ApiError> {
        let mut resource = self.find(state, ctx, ident).await?;
        let ops: Vec<Value> = parse_body(body)
            .map_err(|_| ApiError::BadRequest("The patch must be a JSON array of operations (RFC 6902).".into()))?;
        for op in &ops {
            let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
            let root = path.trim_start_matches('/').split('/').next().unwrap_or_default();
            if !self.writable.contains(&root) {
                return Err(ApiError::BadRequest(format!(
                    "Cannot patch {path}. Only the following can be updated: {}",
                    self.writable.join(", ")
                )));
            }
        }
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
            .map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
        let node_before = resource.node().to_owned();
        let work = async {
            let mut doc = resource.doc.clone();
            doc.insert("node_uuid".into(), json!(resource.node()));
            let mut value = Value::Object(doc);
            json_patch::patch(&mut value, &patch).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
            let mut doc = value.as_object().cloned().unwrap_or_default();
            for field in ["extra", "properties"] {
                if self.fields.contains(&field) {
                    doc.entry(field).or_insert(Value::Null);
                }
            }
            let node = self.node_of(state, &doc).await?;
            self.apply(&mut resource, &doc)?;
            self.check_node_state(state, &node_before, false).await?;
            resource.node_uuid = Some(node.uuid);
            resource.updated_at = Some(now_iso());
            state.conductor.db.update_resource(&resource).await?;
            Ok(())
        };
        super::with_node_lock(state, &node_before, work).await?;
        Ok(Json(self.show(ctx, &resource, None)))
    }

    async fn delete(&self, state: &AppState, ctx: &RequestContext, ident: &str) -> Result<StatusCode, ApiError> {
        let resource = self.find(state, ctx, ident).await?;
        let work = async {
            self.check_node_state(state, resource.node(), true).await?;
            state.conductor.db.delete_resource(&resource.uuid).await?;
            Ok(())
        };
        super::with_node_lock(state, resource.node(), work).await?;
        Ok(StatusCode::NO_CONTENT)
    }
}

/// `GET /v1/volume` and `GET /v1/nodes/{node}/volume`: links to the connectors and targets.
fn root_links(ctx: &RequestContext, prefix: &str) -> Value {
    let link = |sub: &str| crate::model::links(&ctx.base, &format!("{prefix}{sub}"));
    json!({"links": link(""), "connectors": link("connectors"), "targets": link("targets")})
}

/// `GET /v1/volume` (API 1.32).
pub(super) async fn root(Extension(ctx): Extension<RequestContext>) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 32, super::API_NOT_SUPPORTED)?;
    Ok(Json(root_links(&ctx, "volume/")))
}

/// `GET /v1/nodes/{node}/volume` (API 1.32).
pub(super) async fn node_root(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(node): Path<String>,
) -> Result<Json<Value>, ApiError> {
    super::require_api(&ctx, 32, super::API_NOT_SUPPORTED)?;
    let node = state.conductor.node(&node).await?;
    Ok(Json(root_links(&ctx, &format!("nodes/{}/volume/", node.uuid))))
}

/// The two kinds by their path segment (`connectors`, `targets`); other segments are unknown
/// paths.
fn spec(segment: &str) -> Result<&'static Spec, ApiError> {
    match segment {
        "connectors" => Ok(&CONNECTORS),
        "targets" => Ok(&TARGETS),
        _ => Err(ApiError::NoRoute),
    }
}

/// `GET /v1/volume/{connectors|targets}`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    spec(&kind)?.list(&state, &ctx, None, &q).await
}

/// `GET /v1/nodes/{node}/volume/{connectors|targets}`.
pub(super) async fn list_for_node(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((node, kind)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    spec(&kind)?.list(&state, &ctx, Some(node), &q).await
}

/// `POST /v1/volume/{connectors|targets}`: 201 with the new resource.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    spec(&kind)?.create(&state, &ctx, &body).await
}

/// `GET /v1/volume/{connectors|targets}/{uuid}`.
pub(super) async fn get_one(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((kind, ident)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    spec(&kind)?.get_one(&state, &ctx, &ident, &q).await
}

/// `PATCH /v1/volume/{connectors|targets}/{uuid}`.
pub(super) async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((kind, ident)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    spec(&kind)?.update(&state, &ctx, &ident, &body).await
}

/// `DELETE /v1/volume/{connectors|targets}/{uuid}`: 204.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((kind, ident)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    spec(&kind)?.delete(&state, &ctx, &ident).await
}
