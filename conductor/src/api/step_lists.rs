//! Named step lists: deploy templates (`/v1/deploy_templates`, API 1.55: deploy steps a node's
//! instance traits add to its deployment) and runbooks (`/v1/runbooks`, API 1.92: steps for
//! manual cleaning and servicing), served by [`super::documents`] as Ironic 39 serves them
//! (`deploy_template.py`, `runbook.py`).
//!
//! What they are checked against: a deploy step names an interface, a step, its arguments and a
//! priority; a runbook step an interface, a step, its order and optionally arguments; a list has
//! at least one step and no interface/step pair twice. Priorities and orders given as digit
//! strings are stored as integers. Secrets in step arguments are masked when shown.
//!
//! From API 1.112 a runbook carries traits (`/v1/runbooks/{runbook}/traits`): a node may run it
//! when it has one of them ([`crate::step_lists`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::collection::Listing;
use super::documents::{Ident, Spec, TooOld, any_change};
use super::{ApiError, AppState, RequestContext, nodes, parse_body, traits};
use crate::model::ResourceKind;
use crate::time::now_iso;

/// Deploy templates.
pub(super) static DEPLOY_TEMPLATES: Spec = Spec {
    kind: ResourceKind::DeployTemplate,
    // Ironic 39 stores `description` but does not show it; Rivet does the same (docs/compatibility.md).
    fields: &[
        ("uuid", 55),
        ("name", 55),
        ("steps", 55),
        ("extra", 55),
        ("created_at", 55),
        ("updated_at", 55),
        ("links", 55),
    ],
    required: &["steps", "name"],
    writable: &["extra", "name", "steps", "description"],
    listing: Listing {
        path: "deploy_templates",
        key: "deploy_templates",
        short: &["uuid", "name"],
        unsortable: &["extra", "steps"],
    },
    since: 55,
    too_old: TooOld::Framework("The API version does not allow deploy templates"),
    ident: Ident::UuidOrName,
    schema_name: "template",
    node: None,
    defaults: template_defaults,
    field: template_field,
    whole: no_duplicate_steps,
    mask: mask_step_args,
    filters: &[],
    patch_check: any_change,
};

/// Runbooks.
pub(super) static RUNBOOKS: Spec = Spec {
    kind: ResourceKind::Runbook,
    fields: &[
        ("uuid", 92),
        ("name", 92),
        ("steps", 92),
        ("disable_ramdisk", 92),
        ("extra", 92),
        ("public", 92),
        ("owner", 92),
        ("description", 112),
        ("traits", 112),
        ("created_at", 92),
        ("updated_at", 92),
        ("links", 92),
    ],
    required: &["steps", "name"],
    writable: &[
        "disable_ramdisk",
        "extra",
        "name",
        "owner",
        "public",
        "steps",
        "description",
    ],
    listing: Listing {
        path: "runbooks",
        key: "runbooks",
        short: &["uuid", "name"],
        unsortable: &["extra", "steps"],
    },
    since: 92,
    too_old: TooOld::Framework("The API version does not allow runbooks"),
    ident: Ident::UuidOrName,
    schema_name: "runbook",
    node: None,
    defaults: runbook_defaults,
    field: runbook_field,
    whole: no_duplicate_steps,
    mask: mask_step_args,
    filters: &[],
    patch_check: any_change,
};

/// The interfaces a step may name (Ironic's `DEPLOYING_INTERFACE_PRIORITY`, which cleaning
/// and servicing share).
const STEP_INTERFACES: &[&str] = &["vendor", "power", "management", "firmware", "deploy", "bios", "raid"];

fn template_defaults() -> JsonObject {
    json!({"extra": {}, "description": null})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn runbook_defaults() -> JsonObject {
    json!({"disable_ramdisk": false, "extra": {}, "public": false, "owner": null, "description": null, "traits": []})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// A trait-shaped name (`CUSTOM_...` or a standard trait).
fn trait_name(value: &Value) -> Result<Value, String> {
    match value.as_str() {
        Some(name) if traits::valid_trait(name) => Ok(value.clone()),
        _ => Err(format!(
            "{value} is not valid under any of the given schemas. Possible root cause: {value} does not match '^CUSTOM_[A-Z0-9_]+$'"
        )),
    }
}

fn template_field(_minor: u32, name: &str, value: &Value) -> Result<Value, String> {
    match (name, value) {
        ("name", _) => trait_name(value),
        ("steps", _) => steps(value, "priority"),
        ("extra", Value::Null) => Ok(json!({})),
        ("extra", Value::Object(_)) => Ok(value.clone()),
        ("description", Value::Null) => Ok(Value::Null),
        ("description", Value::String(d)) if d.chars().count() <= 255 => Ok(value.clone()),
        (name, value) => Err(format!("{value} is not valid for {name}")),
    }
}

fn runbook_field(minor: u32, name: &str, value: &Value) -> Result<Value, String> {
    match (name, value) {
        // From 1.112 a runbook's name is any logical name; before, a trait.
        ("name", Value::String(n)) if minor >= 112 && nodes::valid_name(n) => Ok(value.clone()),
        ("name", _) if minor >= 112 => Err(format!("{value} does not match '^[A-Za-z0-9\\-._~]+$'")),
        ("name", _) => trait_name(value),
        ("steps", _) => steps(value, "order"),
        ("extra", Value::Null) => Ok(json!({})),
        ("extra", Value::Object(_)) => Ok(value.clone()),
        ("disable_ramdisk" | "public", Value::Null) => Ok(json!(false)),
        ("disable_ramdisk" | "public", Value::Bool(_)) => Ok(value.clone()),
        ("owner" | "description", Value::Null) => Ok(Value::Null),
        ("owner" | "description", Value::String(s)) if s.chars().count() <= 255 => Ok(value.clone()),
        (name, value) => Err(format!("{value} is not valid for {name}")),
    }
}

/// A non-empty list of steps, each with `interface`, `step`, `args` and `key` (`priority` for
/// deploy steps, `order` for runbook steps, where `args` may be left out), the key a
/// non-negative integer or a string of digits (stored as the integer).
fn steps(value: &Value, key: &str) -> Result<Value, String> {
    let list = match value {
        Value::Array(list) if list.is_empty() => return Err("[] should be non-empty".into()),
        Value::Array(list) => list,
        other => return Err(format!("{other} is not of type 'array'")),
    };
    let args_required = key == "priority";
    let mut out = Vec::new();
    for step in list {
        let Some(step) = step.as_object() else {
            return Err(format!("{step} is not of type 'object'"));
        };
        for required in ["interface", "step", key]
            .into_iter()
            .chain(args_required.then_some("args"))
        {
            if !step.contains_key(required) {
                return Err(format!("'{required}' is a required property"));
            }
        }
        if let Some(other) = step
            .keys()
            .find(|k| !["interface", "step", "args", key].contains(&k.as_str()))
        {
            return Err(format!(
                "Additional properties are not allowed ('{other}' was unexpected)"
            ));
        }
        let interface = step["interface"].as_str().filter(|i| STEP_INTERFACES.contains(i));
        let Some(interface) = interface else {
            return Err(format!("{} is not one of {STEP_INTERFACES:?}", step["interface"]));
        };
        let name = step["step"].as_str().filter(|s| !s.is_empty());
        let Some(name) = name else {
            return Err(format!("{} is not a non-empty string", step["step"]));
        };
        let args = match step.get("args") {
            None => json!({}),
            Some(Value::Object(a)) => Value::Object(a.clone()),
            Some(other) => return Err(format!("{other} is not of type 'object'")),
        };
        let rank = match &step[key] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("{} is not valid under any of the given schemas", step[key]))?;
        out.push(json!({"interface": interface, "step": name, "args": args, key: rank}));
    }
    Ok(Value::Array(out))
}

/// Ironic's `duplicate_steps`: an interface/step pair appears once.
fn no_duplicate_steps(doc: &JsonObject) -> Result<(), ApiError> {
    let Some(Value::Array(steps)) = doc.get("steps") else {
        return Ok(());
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut duplicates = std::collections::BTreeSet::new();
    for step in steps {
        let pair = (
            step["interface"].as_str().unwrap_or_default(),
            step["step"].as_str().unwrap_or_default(),
        );
        if !seen.insert(pair) {
            duplicates.insert(format!("interface: {}, step: {}", pair.0, pair.1));
        }
    }
    if duplicates.is_empty() {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "Deploy template invalid: Duplicate deploy steps. A template cannot have multiple deploy steps with the same interface and step. Duplicates: {}.",
        duplicates.into_iter().collect::<Vec<_>>().join("; ")
    )))
}

/// Secrets in the steps' arguments become `******`.
fn mask_step_args(doc: &mut JsonObject) {
    if let Some(Value::Array(steps)) = doc.get_mut("steps") {
        for step in steps {
            if let Some(Value::Object(args)) = step.get_mut("args") {
                *args = crate::model::mask_secrets(args);
            }
        }
    }
}

/// The runbook a `/v1/runbooks/{runbook}/traits` path names, from API 1.112.
async fn runbook(
    state: &AppState,
    ctx: &RequestContext,
    ident: &str,
) -> Result<crate::model::StoredResource, ApiError> {
    super::require(ctx, 112)?;
    RUNBOOKS.find(state, ctx, ident).await
}

fn runbook_traits(runbook: &crate::model::StoredResource) -> Vec<String> {
    serde_json::from_value(runbook.get("traits")).unwrap_or_default()
}

/// Replace a runbook's traits (checked, sorted, without duplicates) and save it over the
/// runbook as it was read (409 when another request changed it meanwhile).
async fn save_traits(
    state: &AppState,
    mut runbook: crate::model::StoredResource,
    traits: Vec<String>,
) -> Result<StatusCode, ApiError> {
    if let Some(bad) = traits.iter().find(|t| !traits::valid_trait(t)) {
        return Err(ApiError::BadRequest(format!("Invalid trait {bad:?}")));
    }
    let mut traits = traits;
    traits.sort();
    traits.dedup();
    let read_at = runbook.updated_at.clone();
    runbook.doc.insert("traits".into(), json!(traits));
    runbook.updated_at = Some(now_iso());
    if !state
        .conductor
        .db
        .replace_resource(&runbook, read_at.as_deref())
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "Runbook {} was changed by another request meanwhile; try again",
            runbook.uuid
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/runbooks/{runbook}/traits`: `{"traits": [...]}`.
pub(super) async fn list_traits(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let runbook = runbook(&state, &ctx, &ident).await?;
    Ok(Json(json!({"traits": runbook_traits(&runbook)})))
}

/// Body of `PUT /v1/runbooks/{runbook}/traits`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TraitList {
    traits: Vec<String>,
}

/// `PUT /v1/runbooks/{runbook}/traits`: replace them; 204.
pub(super) async fn set_traits(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let runbook = runbook(&state, &ctx, &ident).await?;
    let list: TraitList = parse_body(&body)?;
    save_traits(&state, runbook, list.traits).await
}

/// `DELETE /v1/runbooks/{runbook}/traits`: remove them all; 204.
pub(super) async fn clear_traits(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    let runbook = runbook(&state, &ctx, &ident).await?;
    save_traits(&state, runbook, Vec::new()).await
}

/// `PUT /v1/runbooks/{runbook}/traits/{trait}`: add one; 204.
pub(super) async fn add_trait(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let runbook = runbook(&state, &ctx, &ident).await?;
    let mut list = runbook_traits(&runbook);
    list.push(name);
    save_traits(&state, runbook, list).await
}

/// `DELETE /v1/runbooks/{runbook}/traits/{trait}`: remove one (404 when it has not); 204.
pub(super) async fn remove_trait(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let runbook = runbook(&state, &ctx, &ident).await?;
    let mut list = runbook_traits(&runbook);
    let before = list.len();
    list.retain(|t| *t != name);
    if list.len() == before {
        return Err(ApiError::NotFound(format!(
            "Runbook {} has no trait {name}",
            runbook.uuid
        )));
    }
    save_traits(&state, runbook, list).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_checked_and_their_ranks_become_integers() {
        let given = json!([{"interface": "deploy", "step": "write_image", "args": {}, "priority": "50"}]);
        assert_eq!(
            steps(&given, "priority"),
            Ok(json!([{"interface": "deploy", "step": "write_image", "args": {}, "priority": 50}]))
        );
        let runbook = json!([{"interface": "deploy", "step": "erase_devices", "order": 1}]);
        assert_eq!(
            steps(&runbook, "order"),
            Ok(json!([{"interface": "deploy", "step": "erase_devices", "args": {}, "order": 1}]))
        );
        for bad in [
            json!([]),
            json!([{"interface": "deploy", "step": "x", "priority": 1}]),
            json!([{"interface": "nope", "step": "x", "args": {}, "priority": 1}]),
            json!([{"interface": "deploy", "step": "", "args": {}, "priority": 1}]),
            json!([{"interface": "deploy", "step": "x", "args": {}, "priority": -1}]),
            json!([{"interface": "deploy", "step": "x", "args": {}, "priority": "1a"}]),
            json!([{"interface": "deploy", "step": "x", "args": {}, "priority": 1, "order": 2}]),
        ] {
            assert!(steps(&bad, "priority").is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn a_step_appears_once_and_secrets_are_masked() {
        let step = json!({"interface": "deploy", "step": "x", "args": {"password": "p", "k": 1}, "priority": 1});
        let doc = json!({"steps": [step.clone(), step]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(no_duplicate_steps(&doc).is_err());
        let mut shown = json!({"steps": [{"args": {"password": "p", "k": 1}}]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        mask_step_args(&mut shown);
        assert_eq!(shown["steps"], json!([{"args": {"password": "******", "k": 1}}]));
    }
}
