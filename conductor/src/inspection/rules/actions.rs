//! Rule actions: change the node, its ports, its traits and capabilities, or the plugin data;
//! log; fail the inspection; call a URL.
//!
//! Upstream: `ironic/common/inspection_rules/actions.py`. Paths are `a/b/c` or `a.b.c`; the
//! first part names a node (or port) field, the rest keys inside it.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{RuleError, Subject};
use crate::model::{ATTR_FIELDS, INTERFACE_KINDS, NodeRecord, PortRecord};

/// Every action: name, required arguments, optional arguments. `plugin_data` is required by
/// the plugin-data actions' signatures upstream and filled in by Ironic itself (a rule given as
/// a dictionary is stored with `"plugin_data": {}` added to those actions' arguments).
pub const ACTIONS: &[(&str, &[&str], &[&str])] = &[
    ("fail", &["msg"], &[]),
    ("log", &["msg"], &["level"]),
    ("set-attribute", &["path", "value"], &[]),
    ("extend-attribute", &["path", "value"], &["unique"]),
    ("del-attribute", &["path"], &[]),
    ("set-capability", &["name", "value"], &[]),
    ("unset-capability", &["name"], &[]),
    ("add-trait", &["name"], &[]),
    ("remove-trait", &["name"], &[]),
    ("set-plugin-data", &["path", "value", "plugin_data"], &[]),
    ("extend-plugin-data", &["path", "value", "plugin_data"], &["unique"]),
    ("unset-plugin-data", &["path", "plugin_data"], &[]),
    ("set-port-attribute", &["port_id", "path", "value"], &[]),
    ("extend-port-attribute", &["port_id", "path", "value"], &["unique"]),
    ("del-port-attribute", &["port_id", "path"], &[]),
    (
        "api-call",
        &["url"],
        &["headers", "proxies", "timeout", "retries", "backoff_factor"],
    ),
];

/// Whether an action reads `plugin_data` as an argument.
pub fn requires_plugin_data(op: &str) -> bool {
    op.ends_with("plugin-data")
}

/// The arguments an action formats (all of them inside a loop).
pub fn formatted_args(op: &str) -> &'static [&'static str] {
    match op {
        "log" => &["msg"],
        "api-call" => &["url"],
        "set-attribute"
        | "extend-attribute"
        | "set-capability"
        | "set-plugin-data"
        | "extend-plugin-data"
        | "set-port-attribute"
        | "extend-port-attribute" => &["value"],
        _ => &[],
    }
}

/// Run action `op` with its processed arguments.
pub async fn execute(op: &str, args: &Map<String, Value>, subject: &mut Subject<'_>) -> Result<(), RuleError> {
    let arg = |name: &str| args.get(name).cloned().unwrap_or(Value::Null);
    let text = |name: &str| super::format::py_str(&arg(name));
    let unique = super::operators::truthy(&arg("unique"));
    let failed = RuleError::action;
    match op {
        "fail" => Err(RuleError::Failure(format!(
            "Failed to inspect hardware. Reason: {}",
            text("msg")
        ))),
        "log" => {
            let msg = text("msg");
            let node = subject.node.uuid.as_str();
            match arg("level")
                .as_str()
                .map(str::to_lowercase)
                .as_deref()
                .unwrap_or("info")
            {
                "debug" => tracing::debug!(node, "{msg}"),
                "info" => tracing::info!(node, "{msg}"),
                "warning" => tracing::warn!(node, "{msg}"),
                "error" | "critical" => tracing::error!(node, "{msg}"),
                other => {
                    return Err(RuleError::execution(format!(
                        "Invalid log level: {other}. Choose from debug, info, warning, error, critical"
                    )));
                }
            }
            Ok(())
        }
        "set-attribute" | "extend-attribute" | "del-attribute" => {
            let path = text("path");
            let mut doc = subject.node.raw_fields();
            edit(&mut doc, op, &path, arg("value"), unique)
                .and_then(|()| write_node(subject.node, &doc, &path))
                .map_err(|e| failed(attribute_failure(op, &path, &arg("value"), &e)))
        }
        "set-capability" => {
            let new = format!("{}:{}", text("name"), text("value"));
            let caps = match subject.node.properties.get("capabilities").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => format!("{c},{new}"),
                _ => new,
            };
            subject
                .node
                .properties
                .insert("capabilities".into(), Value::String(caps));
            Ok(())
        }
        "unset-capability" => {
            let prefix = format!("{}:", text("name"));
            let caps = subject
                .node
                .properties
                .get("capabilities")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(',')
                .filter(|c| !c.starts_with(&prefix))
                .collect::<Vec<_>>()
                .join(",");
            subject
                .node
                .properties
                .insert("capabilities".into(), Value::String(caps));
            Ok(())
        }
        "add-trait" | "remove-trait" => {
            let name = text("name");
            let mut traits: Vec<Value> = subject.node.attr("traits").as_array().cloned().unwrap_or_default();
            let present = traits.iter().any(|t| t.as_str() == Some(name.as_str()));
            if op == "add-trait" && !present {
                traits.push(Value::String(name));
            } else if op == "remove-trait" {
                if !present {
                    tracing::warn!(node = %subject.node.uuid, trait_name = %name, "rule: no such trait to remove");
                }
                traits.retain(|t| t.as_str() != Some(name.as_str()));
            }
            // Kept sorted, as the traits API keeps them (Ironic's order).
            traits.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            subject.node.attrs.insert("traits".into(), Value::Array(traits));
            Ok(())
        }
        "set-plugin-data" | "extend-plugin-data" | "unset-plugin-data" => {
            let path = text("path");
            let keys: Vec<&str> = path.split('.').collect();
            let data = &mut *subject.plugin_data;
            match op {
                "set-plugin-data" => set_nested(data, &keys, arg("value")),
                "extend-plugin-data" => {
                    let mut current = get_nested(data, &keys).cloned().filter(super::operators::truthy);
                    let mut list = match current.take() {
                        Some(Value::Array(list)) => list,
                        None => Vec::new(),
                        Some(other) => {
                            return Err(failed(format!(
                                "Failed to extend plugin data at {path}: '{}' object has no attribute 'append'",
                                super::format::py_repr(&other)
                            )));
                        }
                    };
                    let value = arg("value");
                    if !unique || !list.iter().any(|v| super::operators::py_eq(v, &value)) {
                        list.push(value);
                    }
                    set_nested(data, &keys, Value::Array(list))
                }
                _ => {
                    if !unset_nested(data, &keys) {
                        tracing::warn!(node = %subject.node.uuid, %path, "rule: plugin data path not found");
                    }
                    Ok(())
                }
            }
            .map_err(|e| failed(format!("Failed to set plugin data at {path}: {e}")))
        }
        "set-port-attribute" | "extend-port-attribute" | "del-port-attribute" => {
            let port_id = text("port_id");
            let path = text("path");
            let Some(port) = subject.ports.iter_mut().find(|p| p.uuid == port_id) else {
                return Err(RuleError::execution(format!("Port {port_id} could not be found.")));
            };
            let mut doc = port_fields(port);
            let kind = op.replace("-port", "");
            edit(&mut doc, &kind, &path, arg("value"), unique)
                .and_then(|()| write_port(port, &doc))
                .map_err(|e| {
                    failed(match op {
                        "set-port-attribute" => format!("Failed to set attribute {path} for port {port_id}: {e}"),
                        "extend-port-attribute" => {
                            format!("Failed to extend attribute {path} for port {port_id}: {e}")
                        }
                        _ => format!("Failed to delete attribute {path} for port {port_id}: {e}"),
                    })
                })
        }
        "api-call" => api_call(args).await,
        other => Err(RuleError::execution(format!("Unsupported action '{other}'."))),
    }
}

fn attribute_failure(op: &str, path: &str, value: &Value, e: &str) -> String {
    match op {
        "set-attribute" => format!(
            "Failed to set attribute {path} with value {}: {e}",
            super::format::py_str(value)
        ),
        "extend-attribute" => format!("Failed to extend attribute {path}: {e}"),
        _ => format!("Failed to delete attribute at {path}: {e}"),
    }
}

/// Ironic's `normalize_path`: `/a/b` or `a.b` → `[a, b]`.
fn path_parts(path: &str) -> Vec<&str> {
    if path.contains('/') {
        path.trim_matches('/').split('/').collect()
    } else {
        path.split('.').collect()
    }
}

/// Set, extend or delete `path` in a document of fields.
fn edit(doc: &mut Map<String, Value>, op: &str, path: &str, value: Value, unique: bool) -> Result<(), String> {
    let parts = path_parts(path);
    let (last, parents) = parts.split_last().ok_or("empty path")?;
    let mut current = doc;
    for (i, part) in parents.iter().enumerate() {
        let next = if op == "del-attribute" {
            current.get_mut(*part).ok_or_else(|| format!("'{part}'"))?
        } else if i == 0 {
            current.get_mut(*part).ok_or_else(|| format!("no attribute '{part}'"))?
        } else {
            current
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
        };
        current = next
            .as_object_mut()
            .ok_or_else(|| format!("'{part}' is not a dictionary"))?;
    }
    match op {
        "set-attribute" => {
            if parents.is_empty() && !current.contains_key(*last) {
                return Err(format!("no attribute '{last}'"));
            }
            current.insert((*last).to_owned(), value);
        }
        "extend-attribute" => {
            let slot = current
                .entry((*last).to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if slot.is_null() && parents.is_empty() {
                *slot = Value::Array(Vec::new());
            }
            let Value::Array(list) = slot else {
                return Err(format!(
                    "Cannot extend non-list attribute {path} with value {}",
                    super::format::py_str(&value)
                ));
            };
            if !unique || !list.iter().any(|v| super::operators::py_eq(v, &value)) {
                list.push(value);
            }
        }
        _ => {
            if parents.is_empty() {
                // Python's delattr on a node field resets it (the object's default).
                if !current.contains_key(*last) {
                    return Err(format!("no attribute '{last}'"));
                }
                current.insert((*last).to_owned(), Value::Null);
            } else if current.remove(*last).is_none() {
                return Err(format!("'{last}'"));
            }
        }
    }
    Ok(())
}

/// Write the field `path` names back into the node.
fn write_node(node: &mut NodeRecord, doc: &Map<String, Value>, path: &str) -> Result<(), String> {
    let field = path_parts(path).first().copied().unwrap_or_default().to_owned();
    let value = doc.get(&field).cloned().unwrap_or(Value::Null);
    let dict = |v: &Value| match v {
        Value::Object(o) => Ok(o.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(format!("{field} must be a dictionary")),
    };
    match field.as_str() {
        "driver_info" => node.driver_info = dict(&value)?,
        "driver_internal_info" => node.driver_internal_info = dict(&value)?,
        "properties" => node.properties = dict(&value)?,
        "instance_info" => node.instance_info = dict(&value)?,
        "extra" => node.extra = dict(&value)?,
        "name" => node.name = value.as_str().map(str::to_owned),
        "driver" => node.driver = value.as_str().ok_or("driver must be a string")?.to_owned(),
        f if f.ends_with("_interface") && INTERFACE_KINDS.contains(&f.trim_end_matches("_interface")) => {
            let kind = f.trim_end_matches("_interface").to_owned();
            match value.as_str() {
                Some(name) => node.interfaces.insert(kind, name.to_owned()),
                None => node.interfaces.remove(&kind),
            };
        }
        f if ATTR_FIELDS.contains(&f) => {
            node.attrs.insert(f.to_owned(), value);
        }
        f => return Err(format!("the node field {f} cannot be changed by a rule")),
    }
    Ok(())
}

fn port_fields(port: &PortRecord) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("address".into(), Value::String(port.address.clone()));
    doc.insert("pxe_enabled".into(), Value::Bool(port.pxe_enabled));
    for field in crate::model::PORT_ATTR_FIELDS {
        let value = port
            .attrs
            .get(*field)
            .cloned()
            .unwrap_or_else(|| crate::model::port_attr_default(field));
        doc.insert((*field).to_owned(), value);
    }
    doc
}

fn write_port(port: &mut PortRecord, doc: &Map<String, Value>) -> Result<(), String> {
    for (field, value) in doc {
        match field.as_str() {
            "address" => port.address = value.as_str().ok_or("address must be a string")?.to_lowercase(),
            "pxe_enabled" => port.pxe_enabled = super::operators::truthy(value),
            f => {
                port.attrs.insert(f.to_owned(), value.clone());
            }
        }
    }
    Ok(())
}

fn get_nested<'v>(data: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().try_fold(data, |cur, k| cur.get(*k))
}

/// Ironic's `update_nested_dict`: intermediate dictionaries are made as needed.
fn set_nested(data: &mut Value, keys: &[&str], value: Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty path")?;
    let mut current = data;
    for key in parents {
        let map = current
            .as_object_mut()
            .ok_or_else(|| format!("'{key}' is not a dictionary"))?;
        current = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    current
        .as_object_mut()
        .ok_or_else(|| format!("'{last}' is not a dictionary"))?
        .insert((*last).to_owned(), value);
    Ok(())
}

/// Ironic's `_unset_nested_dict`: removing the only key of a dictionary removes the dictionary.
fn unset_nested(data: &mut Value, keys: &[&str]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let Some(holder) = get_nested(data, parents).and_then(Value::as_object) else {
        return false;
    };
    if !holder.contains_key(*last) {
        return false;
    }
    if holder.len() == 1 && !parents.is_empty() {
        let (parent_key, grand) = parents.split_last().unwrap_or((&"", &[]));
        let mut cur = &mut *data;
        for k in grand {
            let Some(next) = cur.get_mut(*k) else { return false };
            cur = next;
        }
        if let Some(map) = cur.as_object_mut() {
            map.remove(*parent_key);
        }
    } else {
        let mut cur = &mut *data;
        for k in parents {
            let Some(next) = cur.get_mut(*k) else { return false };
            cur = next;
        }
        if let Some(map) = cur.as_object_mut() {
            map.remove(*last);
        }
    }
    true
}

/// `api-call`: a GET to `url`, retried on 429/500/502/503/504 with exponential back-off.
async fn api_call(args: &Map<String, Value>) -> Result<(), RuleError> {
    let invalid = |e: String| RuleError::action(format!("Invalid parameter: {e}"));
    let number = |name: &str, default: f64| -> Result<f64, RuleError> {
        match args.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => n.as_f64().ok_or_else(|| invalid(format!("{name} is not a number"))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| invalid(format!("could not convert string to float: '{s}'"))),
            Some(other) => Err(invalid(format!("{name}: {other}"))),
        }
    };
    let url = super::format::py_str(args.get("url").unwrap_or(&Value::Null));
    let timeout = number("timeout", 5.0)?;
    if timeout <= 0.0 || !timeout.is_finite() {
        return Err(invalid("timeout must be greater than zero".into()));
    }
    let retries = number("retries", 3.0)?.max(0.0) as u32;
    let backoff = number("backoff_factor", 0.3)?.max(0.0);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(Value::Object(h)) = args.get("headers") {
        for (k, v) in h {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let value = reqwest::header::HeaderValue::from_str(&super::format::py_str(v))
                .map_err(|e| invalid(e.to_string()))?;
            headers.insert(name, value);
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(timeout))
        .default_headers(headers)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let failed = |e: String| RuleError::action(format!("Request to {url} failed: {e}"));
    let mut attempt = 0u32;
    loop {
        let retryable = match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if [429, 500, 502, 503, 504].contains(&resp.status().as_u16()) => {
                format!("{} for url: {url}", resp.status())
            }
            Ok(resp) => return Err(failed(format!("{} for url: {url}", resp.status()))),
            Err(e) if e.is_builder() => return Err(failed(e.to_string())),
            Err(e) => e.to_string(),
        };
        if attempt >= retries {
            return Err(failed(retryable));
        }
        // urllib3's back-off: factor × 2^(n-1), none before the first retry.
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs_f64(
                (backoff * f64::from(1u32 << attempt.min(10))) / 2.0,
            ))
            .await;
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugin_data_paths_nest_and_unset_removes_lonely_dictionaries() {
        let mut data = json!({});
        set_nested(&mut data, &["a", "b"], json!(1)).expect("set");
        assert_eq!(data, json!({"a": {"b": 1}}));
        assert!(unset_nested(&mut data, &["a", "b"]));
        assert_eq!(data, json!({}), "the dictionary holding only b goes too");
        assert!(!unset_nested(&mut data, &["a", "b"]));
    }

    #[test]
    fn node_attribute_edits() {
        let mut doc = json!({"properties": {}, "extra": {"tags": ["a"]}, "name": null})
            .as_object()
            .cloned()
            .expect("object");
        edit(&mut doc, "set-attribute", "properties/x/y", json!("v"), false).expect("nested set");
        assert_eq!(doc["properties"], json!({"x": {"y": "v"}}));
        edit(&mut doc, "extend-attribute", "extra.tags", json!("a"), true).expect("unique");
        edit(&mut doc, "extend-attribute", "extra.tags", json!("b"), true).expect("extend");
        assert_eq!(doc["extra"]["tags"], json!(["a", "b"]));
        assert!(edit(&mut doc, "extend-attribute", "properties/x", json!(1), false).is_err());
        assert!(edit(&mut doc, "del-attribute", "properties/nope", Value::Null, false).is_err());
        assert!(edit(&mut doc, "set-attribute", "bogus/x", json!(1), false).is_err());
    }
}
