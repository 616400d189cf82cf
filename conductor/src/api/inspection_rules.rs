//! `/v1/inspection_rules` (API 1.96): the operator's rules, stored as documents and applied
//! after every inspection ([`crate::inspection::rules`]). A rule marked `sensitive` shows its
//! conditions and actions as `null` and may not be unmarked.
//!
//! Upstream: `ironic/api/controllers/v1/inspection_rule.py`, `ironic/api/schemas/v1/inspection_rule.py`.

use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::ApiError;
use super::collection::Listing;
use super::documents::{Ident, Spec, TooOld};
use crate::inspection::rules::{self, actions, operators};
use crate::model::ResourceKind;

pub(super) static INSPECTION_RULES: Spec = Spec {
    kind: ResourceKind::InspectionRule,
    fields: &[
        ("uuid", 96),
        ("description", 96),
        ("priority", 96),
        ("sensitive", 96),
        ("phase", 96),
        ("conditions", 96),
        ("actions", 96),
        ("created_at", 96),
        ("updated_at", 96),
        ("links", 96),
    ],
    required: &["actions"],
    writable: &["description", "priority", "sensitive", "phase", "conditions", "actions"],
    listing: Listing {
        path: "inspection_rules",
        key: "inspection_rules",
        short: &["uuid", "priority", "phase", "description"],
        unsortable: &["actions", "conditions"],
    },
    since: 96,
    too_old: TooOld::Handler("The API version does not allow inspection rules"),
    ident: Ident::Uuid("inspection_rule_uuid"),
    schema_name: "inspection_rule",
    node: None,
    defaults: rule_defaults,
    field: rule_field,
    whole: whole_rule,
    mask: show_rule,
    filters: &["phase"],
    patch_check: sensitive_stays,
};

fn rule_defaults() -> JsonObject {
    json!({"description": null, "priority": 0, "sensitive": false, "phase": "main", "conditions": []})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// The schema's checks of one field; plugin-data actions get `"plugin_data": {}` in their
/// arguments, as Ironic stores them.
fn rule_field(_minor: u32, name: &str, value: &Value) -> Result<Value, String> {
    match (name, value) {
        ("description", Value::Null) => Ok(Value::Null),
        ("description", Value::String(d)) if d.chars().count() <= 255 => Ok(value.clone()),
        ("phase", Value::Null) => Ok(json!("main")),
        ("phase", Value::String(p)) if p.chars().count() <= 16 => Ok(value.clone()),
        ("priority", Value::Number(n)) if n.as_i64().is_some_and(|p| p >= 0) => Ok(value.clone()),
        ("priority", _) => Err(format!(
            "{value} is not valid under the schema: an integer of at least 0"
        )),
        ("sensitive", Value::Null) => Ok(json!(false)),
        ("sensitive", Value::Bool(_)) => Ok(value.clone()),
        ("conditions", _) => operations(value, false),
        ("actions", _) => operations(value, true),
        (name, value) => Err(format!("{value} is not valid for {name}")),
    }
}

/// A list of `{"op", "args", "loop"?, "multiple"?}` with a known operator or action.
fn operations(value: &Value, actions_list: bool) -> Result<Value, String> {
    let Value::Array(list) = value else {
        return Err(format!("{value} is not of type 'array'"));
    };
    if actions_list && list.is_empty() {
        return Err("[] should be non-empty".into());
    }
    let mut out = Vec::new();
    for item in list {
        let Some(item) = item.as_object() else {
            return Err(format!("{item} is not of type 'object'"));
        };
        for required in ["op", "args"] {
            if !item.contains_key(required) {
                return Err(format!("'{required}' is a required property"));
            }
        }
        let op = item["op"].as_str().unwrap_or_default();
        let known = if actions_list {
            actions::ACTIONS.iter().any(|(n, _, _)| *n == op)
        } else {
            operators::parse_inverted(op).is_ok_and(|(n, _)| operators::OPERATORS.iter().any(|(o, _, _)| *o == n))
                && !op.starts_with(' ')
        };
        if !known {
            return Err(format!(
                "'{op}' is not one of the {}",
                if actions_list { "actions" } else { "operators" }
            ));
        }
        if !matches!(item["args"], Value::Array(_) | Value::Object(_)) {
            return Err(format!("{} is not of type 'array', 'object'", item["args"]));
        }
        if let Some(l) = item.get("loop")
            && !matches!(l, Value::Array(_) | Value::Object(_))
        {
            return Err(format!("{l} is not of type 'array', 'object'"));
        }
        if let Some(m) = item.get("multiple")
            && !actions_list
            && !["any", "all", "first", "last"].contains(&m.as_str().unwrap_or_default())
        {
            return Err(format!("{m} is not one of ['any', 'all', 'first', 'last']"));
        }
        let mut item = item.clone();
        if actions_list
            && actions::requires_plugin_data(op)
            && let Some(args) = item.get_mut("args").and_then(Value::as_object_mut)
        {
            args.insert("plugin_data".into(), json!({}));
        }
        out.push(Value::Object(item));
    }
    Ok(Value::Array(out))
}

/// Ironic's `validate_rule` over the whole rule (phase, priority range, each operation's
/// arguments): 400 with its message.
fn whole_rule(doc: &JsonObject) -> Result<(), ApiError> {
    let mut rule = doc.clone();
    rules::validate(&mut rule, false).map_err(ApiError::BadRequest)
}

/// As Ironic shows a rule: each operation's `op`, `args`, `loop` (when set) and `multiple`
/// (conditions with a loop, `any` by default); a sensitive rule's conditions and actions hidden.
fn show_rule(doc: &mut JsonObject) {
    let sensitive = doc.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
    for (list, conditions) in [("conditions", true), ("actions", false)] {
        let shown = doc.get(list).and_then(Value::as_array).map(|items| {
            items
                .iter()
                .map(|item| {
                    let mut out = json!({"op": item.get("op"), "args": item.get("args")});
                    if let Some(l) = item.get("loop").filter(|l| operators::truthy(l)) {
                        out["loop"] = l.clone();
                        if conditions {
                            out["multiple"] = item.get("multiple").cloned().unwrap_or(json!("any"));
                        }
                    }
                    out
                })
                .collect::<Vec<_>>()
        });
        if let Some(shown) = shown
            && doc.contains_key(list)
        {
            doc.insert(list.into(), if sensitive { Value::Null } else { Value::Array(shown) });
        }
    }
}

/// A sensitive rule stays sensitive.
fn sensitive_stays(before: &JsonObject, after: &JsonObject) -> Result<(), ApiError> {
    let was = before.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
    let now = after.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
    if was && !now {
        return Err(ApiError::BadRequest(
            "Inspection rules cannot have the sensitive flag unset.".into(),
        ));
    }
    Ok(())
}
