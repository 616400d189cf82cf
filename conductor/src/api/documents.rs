//! The collections Ironic serves as plain documents, one generic implementation driven by a
//! [`Spec`] per kind: volume connectors and targets, deploy templates, runbooks. Create (201
//! with `Location`), list (with [`collection::list`]), show (by UUID, or by name for named
//! kinds), JSON-patch the writable fields, delete; each under the node's lock when the resource
//! belongs to a node.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use http::StatusCode;
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::collection::{self, Listing};
use super::{ApiError, AppState, RequestContext, parse_body};
use crate::model::{NodeRecord, ResourceKind, StoredResource};
use crate::time::now_iso;

/// How a request of a version older than the kind's is refused, as Ironic's controller does.
#[derive(Debug, Clone, Copy)]
pub(super) enum TooOld {
    /// The router does not know the path (404 in the framework's style).
    NoRoute,
    /// The framework's 404 for reads and 405 for writes, with this description.
    Framework(&'static str),
    /// Ironic's own error document: 404 with this message for reads, 405 for writes.
    Handler(&'static str),
}

/// How a resource is named in a path.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ident {
    /// By UUID only; a malformed one is a 400 naming this parameter (`connector_uuid`).
    Uuid(&'static str),
    /// By UUID or name.
    UuidOrName,
}

/// When a resource belongs to a node: it must name an existing one, and (as Ironic's conductor
/// rules for volume resources) changes only while the node is powered off, deletion also while
/// it is enrolled, manageable or failed adoption. `action` names it in the refusal.
#[derive(Debug, Clone, Copy)]
pub(super) struct NodeRule {
    pub action: &'static str,
}

/// One kind's rules.
#[derive(Debug)]
pub(super) struct Spec {
    pub kind: ResourceKind,
    /// Fields in Ironic's order with the minor version that shows them first.
    pub fields: &'static [(&'static str, u32)],
    /// Fields a body must carry.
    pub required: &'static [&'static str],
    /// Fields a client may set or patch (besides `uuid` at creation).
    pub writable: &'static [&'static str],
    pub listing: Listing,
    /// The minor version that added the kind, and how older requests are refused.
    pub since: u32,
    pub too_old: TooOld,
    pub ident: Ident,
    /// The name schema errors give the body (`volume connector`, `template`).
    pub schema_name: &'static str,
    pub node: Option<NodeRule>,
    /// Values of the fields a new resource does not name.
    pub defaults: fn() -> JsonObject,
    /// Check and normalise one writable field's value at the request's minor version; the
    /// error is the schema's reason.
    pub field: fn(u32, &str, &Value) -> Result<Value, String>,
    /// Rules across fields (duplicate steps), checked after every field passed.
    pub whole: fn(&JsonObject) -> Result<(), ApiError>,
    /// What a reader may not see (secrets in step arguments), applied to each shown document.
    pub mask: fn(&mut JsonObject),
    /// Document fields a listing filters by (`?phase=main`), by equality.
    pub filters: &'static [&'static str],
    /// Rules on a change (the document before, after), checked on every patch.
    pub patch_check: fn(&JsonObject, &JsonObject) -> Result<(), ApiError>,
}

/// Nothing to check across fields.
pub(super) fn no_rules(_: &JsonObject) -> Result<(), ApiError> {
    Ok(())
}

/// Nothing to hide.
pub(super) fn no_mask(_: &mut JsonObject) {}

/// Any change is allowed.
pub(super) fn any_change(_: &JsonObject, _: &JsonObject) -> Result<(), ApiError> {
    Ok(())
}

impl Spec {
    fn gate(&self, ctx: &RequestContext, write: bool) -> Result<(), ApiError> {
        if ctx.version.minor >= self.since {
            return Ok(());
        }
        Err(match self.too_old {
            TooOld::NoRoute => ApiError::NoRoute,
            TooOld::Framework(m) if write => ApiError::Framework(StatusCode::METHOD_NOT_ALLOWED, m.into()),
            TooOld::Framework(m) => ApiError::Framework(StatusCode::NOT_FOUND, m.into()),
            TooOld::Handler(_) if write => ApiError::MethodNotAllowed,
            TooOld::Handler(m) => ApiError::NotFound(m.into()),
        })
    }

    pub(super) fn show(&self, ctx: &RequestContext, resource: &StoredResource, fields: Option<&[String]>) -> Value {
        let mut doc = collection::render(resource, self.fields, ctx, self.listing.path, &[], fields);
        if let Some(doc) = doc.as_object_mut() {
            (self.mask)(doc);
        }
        doc
    }

    /// The writable fields the request's version has.
    fn writable_at(&self, ctx: &RequestContext) -> Vec<&'static str> {
        self.writable
            .iter()
            .copied()
            .filter(|w| {
                self.fields
                    .iter()
                    .find(|(f, _)| f == w)
                    .is_none_or(|(_, minor)| ctx.version.minor >= *minor)
            })
            .collect()
    }

    fn schema_error(&self, reason: String) -> ApiError {
        ApiError::BadRequest(format!("Schema error for {}: {reason}", self.schema_name))
    }

    /// Check every field of a body or patched document and store the writable ones.
    fn apply(&self, ctx: &RequestContext, resource: &mut StoredResource, doc: &JsonObject) -> Result<(), ApiError> {
        for field in self.required {
            if doc.get(*field).is_none_or(Value::is_null) {
                return Err(self.schema_error(format!("'{field}' is a required property")));
            }
        }
        let mut checked = JsonObject::new();
        for (field, value) in doc {
            if field == "uuid" || field == "node_uuid" {
                continue;
            }
            if !self.writable_at(ctx).contains(&field.as_str()) {
                return Err(self.schema_error(format!(
                    "Additional properties are not allowed ('{field}' was unexpected)"
                )));
            }
            let value = (self.field)(ctx.version.minor, field, value).map_err(|reason| self.schema_error(reason))?;
            checked.insert(field.clone(), value);
        }
        (self.whole)(&checked)?;
        resource.doc.extend(checked);
        Ok(())
    }

    /// The node a body names: a UUID (400 otherwise) of an existing node (400 otherwise).
    async fn node_of(&self, state: &AppState, doc: &JsonObject) -> Result<NodeRecord, ApiError> {
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

    pub(super) async fn find(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        ident: &str,
    ) -> Result<StoredResource, ApiError> {
        self.gate(ctx, false)?;
        match self.ident {
            Ident::Uuid(name) if uuid::Uuid::parse_str(ident).is_err() => {
                return Err(ApiError::BadRequest(format!("Expected UUID for {name}: {ident}")));
            }
            _ => {}
        }
        state
            .conductor
            .db
            .resource(self.kind, ident)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("{} {ident} could not be found.", self.kind.label())))
    }

    /// Ironic's conductor refuses to change a node's volume resource unless the node is powered
    /// off, and to delete one unless it is also enrolled, manageable or failed adoption
    /// (`InvalidStateRequested`, 400).
    async fn check_node_state(&self, state: &AppState, node_uuid: &str, deleting: bool) -> Result<(), ApiError> {
        let Some(rule) = self.node else {
            return Ok(());
        };
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
            rule.action,
            node.uuid,
            power.unwrap_or("None")
        )))
    }

    /// Run `work` under the resource's node's lock, or plainly when it has no node.
    async fn locked<T>(
        &self,
        state: &AppState,
        node: &str,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        if node.is_empty() {
            work.await
        } else {
            super::with_node_lock(state, node, work).await
        }
    }

    pub(super) async fn create(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        body: &Bytes,
    ) -> Result<Response, ApiError> {
        self.gate(ctx, true)?;
        let doc: JsonObject = parse_body(body)?;
        let mut resource = StoredResource {
            kind: self.kind,
            uuid: super::new_uuid(doc.get("uuid").and_then(Value::as_str))?,
            node_uuid: None,
            doc: (self.defaults)(),
            created_at: now_iso(),
            updated_at: None,
        };
        self.apply(ctx, &mut resource, &doc)?;
        if self.node.is_some() {
            resource.node_uuid = Some(self.node_of(state, &doc).await?.uuid);
        }
        state.conductor.db.insert_resource(&resource).await?;
        Ok(super::created(
            ctx,
            &format!("{}/{}", self.listing.path, resource.uuid),
            self.show(ctx, &resource, None),
        ))
    }

    pub(super) async fn list(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        node: Option<String>,
        query: &HashMap<String, String>,
    ) -> Result<Json<Value>, ApiError> {
        self.gate(ctx, false)?;
        let node_uuid = match node.or_else(|| query.get("node").cloned()) {
            Some(ident) if self.node.is_some() => Some(state.conductor.node(&ident).await?.uuid),
            _ => None,
        };
        let mut all = state.conductor.db.resources(self.kind, node_uuid.as_deref()).await?;
        for field in self.filters {
            if let Some(wanted) = query.get(*field) {
                all.retain(|r| r.doc.get(*field).and_then(Value::as_str) == Some(wanted.as_str()));
            }
        }
        let doc = collection::list(ctx, &self.listing, self.kind.label(), all, query, false, |r, f| {
            self.show(ctx, r, f)
        })?;
        Ok(Json(doc))
    }

    pub(super) async fn get_one(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        ident: &str,
        query: &HashMap<String, String>,
    ) -> Result<Json<Value>, ApiError> {
        let resource = self.find(state, ctx, ident).await?;
        let fields = super::shown_fields(query.get("fields"), &self.show(ctx, &resource, None))?;
        Ok(Json(self.show(ctx, &resource, fields.as_deref())))
    }

    pub(super) async fn update(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        ident: &str,
        body: &Bytes,
    ) -> Result<Json<Value>, ApiError> {
        self.gate(ctx, true)?;
        let mut resource = self.find(state, ctx, ident).await?;
        let patchable: Vec<&str> = self
            .writable_at(ctx)
            .into_iter()
            .chain(self.node.map(|_| "node_uuid"))
            .collect();
        let patch = super::writable_patch(body, &patchable)?;
        let node_before = resource.node().to_owned();
        let work = async {
            // Read again (under the node's lock when it has one): the write replaces the
            // resource as it was read, and fails with 409 if it changed meanwhile.
            resource = self.find(state, ctx, &resource.uuid).await?;
            let read_at = resource.updated_at.clone();
            let mut doc: JsonObject = resource
                .doc
                .iter()
                .filter(|(k, _)| self.writable_at(ctx).contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if self.node.is_some() {
                doc.insert("node_uuid".into(), json!(resource.node()));
            }
            let mut value = Value::Object(doc);
            json_patch::patch(&mut value, &patch).map_err(|e| ApiError::BadRequest(format!("Invalid patch: {e}")))?;
            let mut doc = value.as_object().cloned().unwrap_or_default();
            // A removed field takes its default.
            for (field, default) in (self.defaults)() {
                if self.writable_at(ctx).contains(&field.as_str()) {
                    doc.entry(field).or_insert(default);
                }
            }
            let node = match self.node {
                Some(_) => Some(self.node_of(state, &doc).await?.uuid),
                None => None,
            };
            let before = resource.doc.clone();
            self.apply(ctx, &mut resource, &doc)?;
            (self.patch_check)(&before, &resource.doc)?;
            self.check_node_state(state, &node_before, false).await?;
            if let Some(to) = node.as_deref().filter(|to| *to != node_before) {
                // Moving to another node: that node must allow the change too.
                self.check_node_state(state, to, false).await?;
            }
            resource.node_uuid = node.or(resource.node_uuid.take());
            resource.updated_at = Some(now_iso());
            if !state
                .conductor
                .db
                .replace_resource(&resource, read_at.as_deref())
                .await?
            {
                return Err(ApiError::Conflict(format!(
                    "{} {} was changed by another request meanwhile; try again",
                    self.kind.label(),
                    resource.uuid
                )));
            }
            Ok(())
        };
        self.locked(state, &node_before, work).await?;
        Ok(Json(self.show(ctx, &resource, None)))
    }

    pub(super) async fn delete(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        ident: &str,
    ) -> Result<StatusCode, ApiError> {
        self.gate(ctx, true)?;
        let resource = self.find(state, ctx, ident).await?;
        let work = async {
            self.check_node_state(state, resource.node(), true).await?;
            state.conductor.db.delete_resource(&resource.uuid).await?;
            Ok(())
        };
        self.locked(state, resource.node(), work).await?;
        Ok(StatusCode::NO_CONTENT)
    }
}

/// The routes of a collection at `/v1/<spec.listing.path>`: list and create, and show, patch
/// and delete one.
pub(super) fn routes(spec: &'static Spec) -> Router<AppState> {
    let collection = format!("/v1/{}", spec.listing.path);
    let item = format!("{collection}/{{ident}}");
    let list = move |State(state): State<AppState>,
                     Extension(ctx): Extension<RequestContext>,
                     Query(q): Query<HashMap<String, String>>| async move {
        spec.list(&state, &ctx, None, &q).await.into_response()
    };
    let create = move |State(state): State<AppState>, Extension(ctx): Extension<RequestContext>, body: Bytes| async move {
        spec.create(&state, &ctx, &body).await.into_response()
    };
    let show = move |State(state): State<AppState>,
                     Extension(ctx): Extension<RequestContext>,
                     Path(ident): Path<String>,
                     Query(q): Query<HashMap<String, String>>| async move {
        spec.get_one(&state, &ctx, &ident, &q).await.into_response()
    };
    let update =
        move |State(state): State<AppState>,
              Extension(ctx): Extension<RequestContext>,
              Path(ident): Path<String>,
              body: Bytes| async move { spec.update(&state, &ctx, &ident, &body).await.into_response() };
    let delete = move |State(state): State<AppState>,
                       Extension(ctx): Extension<RequestContext>,
                       Path(ident): Path<String>| async move {
        spec.delete(&state, &ctx, &ident).await.into_response()
    };
    Router::new()
        .route(&collection, get(list).post(create))
        .route(&format!("{collection}/"), get(list).post(create))
        .route(&item, get(show).patch(update).delete(delete))
}
