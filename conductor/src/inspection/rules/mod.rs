//! Inspection rules (`/v1/inspection_rules`, API 1.96): conditions on the inventory, the plugin
//! data and the node, and actions on the node, its ports and the plugin data, applied after
//! every inspection in priority order (highest first), the operator's rules and the built-in
//! ones from configuration together.
//!
//! A rule, as stored and served: `{"uuid", "description", "priority" (0–9999 for users),
//! "sensitive", "phase" ("main"), "conditions": [{"op", "args", "loop"?, "multiple"?}],
//! "actions": [{"op", "args", "loop"?}]}`. Arguments are a dictionary (a list, deprecated
//! upstream, is read positionally). Upstream: `ironic/common/inspection_rules/` (engine,
//! validation, base).

pub mod actions;
pub mod format;
pub mod operators;

use serde_json::{Map, Value, json};

use crate::model::{NodeRecord, PortRecord};
use format::Context;

/// The phases a rule may run in (Ironic 39 has one).
pub const PHASES: &[&str] = &["main"];

/// How secrets in the inventory and plugin data read to rules (Ironic's
/// `[inspection_rules]mask_secrets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskSecrets {
    /// Always `***` (Ironic's default).
    #[default]
    Always,
    /// Unmasked for rules marked `sensitive`.
    Sensitive,
    /// Never masked.
    Never,
}

/// Why a rule stopped the inspection; the text is Ironic's exception message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// A `fail` action ("Failed to inspect hardware. Reason: …").
    #[error("{0}")]
    Failure(String),
    /// Anything else that went wrong evaluating or applying a rule.
    #[error("{0}")]
    Other(String),
}

impl RuleError {
    fn condition(reason: String) -> Self {
        RuleError::Other(format!("Inspection rule condition check failed. Reason: {reason}"))
    }
    fn action(reason: String) -> Self {
        RuleError::Other(format!("Inspection rule action execution failed. Reason: {reason}"))
    }
    fn execution(reason: impl std::fmt::Display) -> Self {
        RuleError::Other(format!("Inspection rule execution failed. Reason: {reason}"))
    }
}

/// What rules read and change.
#[derive(Debug)]
pub struct Subject<'a> {
    /// The node; actions change it in place (the caller saves it).
    pub node: &'a mut NodeRecord,
    /// The node's ports; actions change them in place (the caller saves what changed).
    pub ports: &'a mut Vec<PortRecord>,
    /// The inventory, read only.
    pub inventory: &'a Value,
    /// The plugin data; stored after the rules ran.
    pub plugin_data: &'a mut Value,
}

/// Check a rule document as Ironic's `validate_rule` does: operators and actions known, their
/// arguments complete and not unexpected, the phase known, the priority within 0–9999 for a
/// user's rule. Adds `"plugin_data": {}` to the arguments of plugin-data actions, as Ironic
/// stores them. The error is the message of Ironic's 400.
pub fn validate(rule: &mut Map<String, Value>, built_in: bool) -> Result<(), String> {
    let mut errors = Vec::new();
    let phase = rule.get("phase").and_then(Value::as_str).unwrap_or("main");
    if !PHASES.contains(&phase) {
        errors.push(format!(
            "Invalid phase: {phase}. Valid phases are: {}",
            PHASES.join(", ")
        ));
    }
    let priority = rule.get("priority").and_then(Value::as_i64).unwrap_or(0);
    if !built_in && priority < 0 {
        errors.push("Priority cannot be negative for user-defined rules.".into());
    }
    if !built_in && priority > 9999 {
        errors.push("Priority must be between 0 and 9999 for user-defined rules.".into());
    }
    for (list, table) in [("conditions", operators::OPERATORS), ("actions", actions::ACTIONS)] {
        let Some(Value::Array(items)) = rule.get_mut(list) else {
            continue;
        };
        for item in items.iter_mut() {
            let op = item.get("op").and_then(Value::as_str).unwrap_or_default().to_owned();
            let name = if list == "conditions" {
                match operators::parse_inverted(&op) {
                    Ok((name, _)) => name.to_owned(),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
            } else {
                op.clone()
            };
            let Some((_, required, optional)) = table.iter().find(|(n, _, _)| *n == name) else {
                let what = if list == "conditions" { "operator" } else { "action" };
                errors.push(format!("Unsupported {what} '{name}'."));
                continue;
            };
            if let Some(args) = item.get_mut("args").and_then(Value::as_object_mut)
                && list == "actions"
                && actions::requires_plugin_data(&name)
            {
                args.insert("plugin_data".into(), json!({}));
            }
            let args = item.get("args").cloned().unwrap_or_else(|| json!({}));
            if let Err(e) = check_args(
                &args,
                required,
                optional,
                list == "actions" && actions::requires_plugin_data(&name),
            ) {
                errors.push(e);
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(format!("Multiple validation errors occurred: {}", errors.join("; "))),
    }
}

/// Required arguments present, none unexpected (Ironic's `Base.validate`).
fn check_args(args: &Value, required: &[&str], optional: &[&str], plugin_data: bool) -> Result<(), String> {
    let named = match args {
        Value::Array(list) => {
            let mut list = list.clone();
            if plugin_data {
                list.push(json!({}));
            }
            if list.len() < required.len() {
                return Err(format!(
                    "Inspection rule validation failed. Reason: Not enough arguments provided. Missing: {}",
                    required[list.len()..].join(", ")
                ));
            }
            positional(&list, required, optional)
        }
        Value::Object(map) => map.clone(),
        _ => return Err("Inspection rule validation failed. Reason: args must be either a list or dictionary".into()),
    };
    let missing: Vec<&str> = required.iter().copied().filter(|r| !named.contains_key(*r)).collect();
    let unexpected: Vec<&str> = named
        .keys()
        .map(String::as_str)
        .filter(|k| !required.contains(k) && !optional.contains(k))
        .collect();
    let mut msg = Vec::new();
    if !missing.is_empty() {
        msg.push(format!("missing required argument(s): {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        msg.push(format!("unexpected argument(s): {}", unexpected.join(", ")));
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(format!("Inspection rule validation failed. Reason: {}", msg.join("; ")))
    }
}

/// List arguments by position: the required ones, then the optional ones.
fn positional(list: &[Value], required: &[&str], optional: &[&str]) -> Map<String, Value> {
    required
        .iter()
        .chain(optional)
        .zip(list)
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

/// Apply `rules` (in any order: they are sorted by priority, highest first; equal priorities
/// keep their order) to the subject. Stops at the first error, which fails the inspection.
pub async fn apply(rules: &[Value], subject: &mut Subject<'_>, mask: MaskSecrets) -> Result<(), RuleError> {
    let mut ordered: Vec<&Value> = rules.iter().collect();
    ordered.sort_by_key(|r| std::cmp::Reverse(r.get("priority").and_then(Value::as_i64).unwrap_or(0)));
    for rule in ordered {
        let uuid = rule.get("uuid").and_then(Value::as_str).unwrap_or_default();
        let sensitive = rule.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
        let masked = match mask {
            MaskSecrets::Always => true,
            MaskSecrets::Sensitive => !sensitive,
            MaskSecrets::Never => false,
        };
        if !conditions_hold(rule, subject, masked)? {
            tracing::debug!(node = %subject.node.uuid, rule = uuid, "inspection rule skipped: a condition failed");
            continue;
        }
        tracing::info!(node = %subject.node.uuid, rule = uuid, "applying the actions of inspection rule");
        for action in rule.get("actions").and_then(Value::as_array).into_iter().flatten() {
            let op = action.get("op").and_then(Value::as_str).unwrap_or_default();
            match action.get("loop").filter(|l| operators::truthy(l)) {
                Some(Value::Array(items)) => {
                    for item in items {
                        let args = process_args(op, action, subject, masked, Some(item), false)?;
                        actions::execute(op, &args, subject).await?;
                    }
                }
                Some(item) => {
                    let args = process_args(op, action, subject, masked, Some(item), false)?;
                    actions::execute(op, &args, subject).await?;
                }
                None => {
                    let args = process_args(op, action, subject, masked, None, false)?;
                    actions::execute(op, &args, subject).await?;
                }
            }
        }
    }
    Ok(())
}

fn conditions_hold(rule: &Value, subject: &Subject<'_>, masked: bool) -> Result<bool, RuleError> {
    for condition in rule.get("conditions").and_then(Value::as_array).into_iter().flatten() {
        let op = condition.get("op").and_then(Value::as_str).unwrap_or_default();
        let (name, inverted) = operators::parse_inverted(op).map_err(RuleError::execution)?;
        let check = |item: Option<&Value>| -> Result<bool, RuleError> {
            let args = process_args(name, condition, subject, masked, item, true)?;
            Ok(operators::check(name, &args)? != inverted)
        };
        let multiple = condition.get("multiple").and_then(Value::as_str).unwrap_or("any");
        let holds = match condition.get("loop").filter(|l| operators::truthy(l)) {
            Some(Value::Array(items)) => {
                let mut results = Vec::new();
                let mut first_true = false;
                for item in items {
                    let result = check(Some(item))?;
                    if multiple == "first" && result {
                        first_true = true;
                        break;
                    }
                    if multiple == "last" {
                        results.clear();
                    }
                    results.push(result);
                }
                first_true
                    || match multiple {
                        "any" => results.iter().any(|r| *r),
                        "all" => results.iter().all(|r| *r),
                        _ => results.first().copied().unwrap_or(false),
                    }
            }
            Some(item) => check(Some(item))?,
            None => check(None)?,
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An operation's arguments by name, formatted: the operation's formatted arguments, or all of
/// them inside a loop; `force_strings` inside a loop for the comparison operators; the plugin
/// data for the plugin-data actions (they change it through the subject).
fn process_args(
    op: &str,
    operation: &Value,
    subject: &Subject<'_>,
    masked: bool,
    item: Option<&Value>,
    condition: bool,
) -> Result<Map<String, Value>, RuleError> {
    let (required, optional, formatted): (&[&str], &[&str], &[&str]) = if condition {
        let (_, r, o) = operators::OPERATORS
            .iter()
            .find(|(n, _, _)| *n == op)
            .ok_or_else(|| RuleError::execution(format!("Unsupported operator '{op}'.")))?;
        (r, o, operators::formatted_args(op))
    } else {
        let (_, r, o) = actions::ACTIONS
            .iter()
            .find(|(n, _, _)| *n == op)
            .ok_or_else(|| RuleError::execution(format!("Unsupported action '{op}'.")))?;
        (r, o, actions::formatted_args(op))
    };
    let mut args = match operation.get("args") {
        Some(Value::Array(list)) => positional(list, required, optional),
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    args.remove("plugin_data");
    let node = Value::Object(subject.node.raw_fields());
    let ctx = Context {
        node: &node,
        inventory: subject.inventory,
        plugin_data: subject.plugin_data,
        item,
        mask: masked,
    };
    for (name, value) in args.iter_mut() {
        if item.is_some() || formatted.contains(&name.as_str()) {
            *value = format::interpolate(value, &ctx, op == "is-empty");
        }
    }
    if condition && item.is_some() && optional.contains(&"force_strings") {
        args.insert("force_strings".into(), Value::Bool(true));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_ironic() {
        let mut ok = json!({"actions": [{"op": "set-plugin-data", "args": {"path": "a", "value": 1}}],
                            "conditions": [{"op": "!eq", "args": {"values": [1, 2]}}]});
        let doc = ok.as_object_mut().expect("object");
        validate(doc, false).expect("valid");
        assert_eq!(
            doc["actions"][0]["args"]["plugin_data"],
            json!({}),
            "stored as Ironic stores it"
        );
        let mut bad = json!({"priority": 10000, "phase": "late",
                             "actions": [{"op": "add-trait", "args": {"nam": "X"}}]});
        let err = validate(bad.as_object_mut().expect("object"), false).expect_err("invalid");
        assert!(
            err.starts_with("Multiple validation errors occurred: Invalid phase: late"),
            "{err}"
        );
        assert!(
            err.contains("missing required argument(s): name; unexpected argument(s): nam"),
            "{err}"
        );
        let mut built_in = json!({"priority": -5, "actions": [{"op": "log", "args": ["hello", "info"]}]});
        validate(built_in.as_object_mut().expect("object"), true).expect("built-in rules may be negative");
    }
}
