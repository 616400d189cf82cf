//! Variable interpolation in rule arguments, as Ironic does it with Python's `str.format`:
//! `"{inventory[cpu][count]}"`, `"{node.properties[cpu_arch]}"`, `"{plugin_data[root_disk][size]}"`,
//! `"{item[path]}"` inside a loop. The result of a formatted string is always a string (Python's
//! `str()` of the value: `4096`, `True`, `None`, `['a', 'b']`), which is why a rule comparing
//! `"{inventory[memory][physical_mb]}"` with the number `4096` finds them different, as in Ironic.
//!
//! Upstream: `ironic/common/inspection_rules/base.py` (`interpolate_variables`). A field that
//! cannot be resolved leaves the whole string as written (Ironic logs a warning and does the
//! same); for the `is-empty` operator a missing key gives `null` instead.

use serde_json::{Map, Value};

/// Keys whose values rules read as `***` (Ironic's `SENSITIVE_FIELDS`), unless the rule is
/// marked sensitive and `mask_secrets` is `sensitive`, or `mask_secrets` is `never`.
pub const SENSITIVE_FIELDS: [&str; 3] = ["password", "auth_token", "bmc_password"];

/// What names a format string may use.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The node as a document (its API fields and the dictionaries).
    pub node: &'a Value,
    /// The inventory the ramdisk sent.
    pub inventory: &'a Value,
    /// The plugin data (collector output, what hooks added).
    pub plugin_data: &'a Value,
    /// The current loop item, inside a loop.
    pub item: Option<&'a Value>,
    /// Whether [`SENSITIVE_FIELDS`] read as `***`.
    pub mask: bool,
}

/// Why a field could not be resolved.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    /// A key or name that is not there (Python's KeyError).
    Key,
    /// Anything else: bad syntax, an index out of range, a format spec.
    Other,
}

/// Format `value` as Ironic does for one argument: strings are formatted (twice inside a loop:
/// a loop item's own placeholders are filled too), dictionaries have their keys formatted and
/// their values formatted recursively, lists their items. `is_empty` gives a missing key as
/// `null`.
pub fn interpolate(value: &Value, ctx: &Context<'_>, is_empty: bool) -> Value {
    match value {
        Value::String(s) => {
            let once = format_str(s, ctx, is_empty);
            match (&once, ctx.item.is_some()) {
                (Value::String(s), true) => format_str(s, ctx, is_empty),
                _ => once,
            }
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match format_str(k, ctx, is_empty) {
                    Value::String(s) => s,
                    _ => k.clone(),
                };
                out.insert(key, interpolate(v, ctx, is_empty));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => format_str(s, ctx, is_empty),
                    other => interpolate(other, ctx, is_empty),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One `str.format` call: the string with every `{field}` replaced, `{{`/`}}` unescaped; the
/// string unchanged when a field cannot be resolved; `null` for a missing key when `is_empty`.
fn format_str(s: &str, ctx: &Context<'_>, is_empty: bool) -> Value {
    match try_format(s, ctx) {
        Ok(out) => Value::String(out),
        Err(Miss::Key) if is_empty => Value::Null,
        Err(miss) => {
            tracing::warn!(value = %s, ?miss, "inspection rule: interpolation failed, the value is used as written");
            Value::String(s.to_owned())
        }
    }
}

fn try_format(s: &str, ctx: &Context<'_>) -> Result<String, Miss> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(Miss::Other),
            '{' => {
                let mut field = String::new();
                let mut depth = 0usize;
                loop {
                    match chars.next() {
                        None => return Err(Miss::Other),
                        Some('[') => {
                            depth += 1;
                            field.push('[');
                        }
                        Some(']') => {
                            depth = depth.saturating_sub(1);
                            field.push(']');
                        }
                        Some('}') if depth == 0 => break,
                        Some(c) => field.push(c),
                    }
                }
                out.push_str(&py_str(&resolve(&field, ctx)?));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The value a field names: `name(.attr|[key])*` with an optional `!s`/`!r` conversion
/// (attributes only on `node`, as on Ironic's node object; keys in dictionaries, digits index
/// lists). A format spec (`{x:>5}`) is not supported: the string is left as written.
fn resolve(field: &str, ctx: &Context<'_>) -> Result<Value, Miss> {
    let mut depth = 0usize;
    let split = field.char_indices().find(|&(_, c)| {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        depth == 0 && (c == '!' || c == ':')
    });
    let (field, conversion) = match split {
        Some((i, _)) => {
            let (name, tail) = field.split_at(i);
            let (conversion, spec) = match tail.strip_prefix('!') {
                Some(t) => t.split_once(':').map_or((Some(t), ""), |(c, s)| (Some(c), s)),
                None => (None, &tail[1..]),
            };
            if !spec.is_empty() {
                return Err(Miss::Other);
            }
            (name, conversion)
        }
        None => (field, None),
    };
    let end = field.find(['.', '[']).unwrap_or(field.len());
    let (name, mut rest) = field.split_at(end);
    let masking = ctx.mask && name != "node";
    let mut current = match name {
        "node" => ctx.node,
        "inventory" => ctx.inventory,
        "plugin_data" => ctx.plugin_data,
        "item" => ctx.item.ok_or(Miss::Key)?,
        _ => return Err(Miss::Key),
    };
    let mut masked = false;
    while !rest.is_empty() {
        let at_node = std::ptr::eq(current, ctx.node);
        let (key, index, tail) = if let Some(r) = rest.strip_prefix('.') {
            if !at_node {
                return Err(Miss::Other);
            }
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], false, &r[end..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or(Miss::Other)?;
            (&r[..end], true, &r[end + 1..])
        } else {
            return Err(Miss::Other);
        };
        if key.is_empty() {
            return Err(Miss::Other);
        }
        current = match current {
            Value::Object(map) => {
                if masking && SENSITIVE_FIELDS.contains(&key) && map.contains_key(key) {
                    masked = true;
                }
                map.get(key).ok_or(Miss::Key)?
            }
            Value::Array(items) if index && key.bytes().all(|b| b.is_ascii_digit()) => {
                let i: usize = key.parse().map_err(|_| Miss::Other)?;
                items.get(i).ok_or(Miss::Other)?
            }
            _ => return Err(if index { Miss::Key } else { Miss::Other }),
        };
        if masked {
            return Ok(Value::String("***".into()));
        }
        rest = tail;
    }
    let value = if masking { mask_nested(current) } else { current.clone() };
    Ok(match conversion {
        Some("r") => Value::String(py_repr(&value)),
        Some("s") | None => value,
        Some(_) => return Err(Miss::Other),
    })
}

/// A copy of `value` with every [`SENSITIVE_FIELDS`] key's value read as `***`, at any depth.
fn mask_nested(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if SENSITIVE_FIELDS.contains(&k.as_str()) {
                        Value::String("***".into())
                    } else {
                        mask_nested(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_nested).collect()),
        other => other.clone(),
    }
}

/// Python's `str()` of a JSON value: strings as they are, everything else as [`py_repr`].
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a JSON value as `json.loads` would have made it: `None`, `True`,
/// `'text'`, `[1, 'a']`, `{'k': 'v'}`.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => py_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => py_repr_str(s),
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's float repr for the common cases (`1.0`, `0.5`, `1e+16`).
fn py_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else if f.is_finite() && f.abs() >= 1e16 {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            _ => s,
        }
    } else {
        f.to_string()
    }
}

/// Python's repr of a string: single quotes unless the text has one and no double quote.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx<'a>(node: &'a Value, inventory: &'a Value, plugin: &'a Value, item: Option<&'a Value>) -> Context<'a> {
        Context {
            node,
            inventory,
            plugin_data: plugin,
            item,
            mask: true,
        }
    }

    #[test]
    fn fields_resolve_to_python_strings() {
        let node =
            json!({"properties": {"cpu_arch": "x86_64"}, "driver_info": {"ipmi_password": "s", "password": "x"}});
        let inv = json!({"cpu": {"count": 4, "flags": ["vmx", "aes"]}, "interfaces": [{"name": "eth0"}], "ok": true});
        let plugin = json!({"root_disk": {"size": 1.5}, "none": null});
        let c = ctx(&node, &inv, &plugin, None);
        let f = |s: &str| interpolate(&json!(s), &c, false);
        assert_eq!(f("{inventory[cpu][count]}"), json!("4"));
        assert_eq!(
            f("{node.properties[cpu_arch]}-{inventory[interfaces][0][name]}"),
            json!("x86_64-eth0")
        );
        assert_eq!(f("{inventory[cpu][flags]}"), json!("['vmx', 'aes']"));
        assert_eq!(
            f("{inventory[ok]} {plugin_data[none]} {plugin_data[root_disk]}"),
            json!("True None {'size': 1.5}")
        );
        assert_eq!(f("{{literal}} {inventory[cpu][count]!r}"), json!("{literal} 4"));
        assert_eq!(
            f("{node.driver_info[password]}"),
            json!("x"),
            "the node is not masked, as in Ironic"
        );
    }

    #[test]
    fn secrets_of_the_inventory_and_plugin_data_are_masked_at_any_depth() {
        let node = json!({});
        let inv = json!({"bmc": {"bmc_password": "p", "user": "u"}, "auth_token": "t", "ipmi_password": "i"});
        let plugin = json!({"list": [{"password": "p"}]});
        let c = ctx(&node, &inv, &plugin, None);
        let f = |s: &str| interpolate(&json!(s), &c, false);
        assert_eq!(f("{inventory[auth_token]}"), json!("***"));
        assert_eq!(f("{inventory[bmc]}"), json!("{'bmc_password': '***', 'user': 'u'}"));
        assert_eq!(f("{plugin_data[list]!r}"), json!("[{'password': '***'}]"));
        assert_eq!(
            f("{inventory[ipmi_password]}"),
            json!("i"),
            "only Ironic's three names are"
        );
    }

    #[test]
    fn unresolvable_fields_leave_the_text_and_is_empty_reads_null() {
        let v = json!({});
        let c = ctx(&v, &v, &v, None);
        assert_eq!(
            interpolate(&json!("{inventory[nope]}"), &c, false),
            json!("{inventory[nope]}")
        );
        assert_eq!(interpolate(&json!("{inventory[nope]}"), &c, true), Value::Null);
        assert_eq!(interpolate(&json!("{unknown}"), &c, false), json!("{unknown}"));
        assert_eq!(interpolate(&json!("{inventory"), &c, false), json!("{inventory"));
        assert_eq!(interpolate(&json!(4), &c, false), json!(4), "non-strings are kept");
    }

    #[test]
    fn loops_format_twice_and_recurse_into_containers() {
        let node = json!({});
        let inv = json!({"bmc_address": "10.0.0.5"});
        let item = json!({"path": "driver_info/ipmi_address", "value": "{inventory[bmc_address]}"});
        let c = ctx(&node, &inv, &node, Some(&item));
        assert_eq!(interpolate(&json!("{item[value]}"), &c, false), json!("10.0.0.5"));
        // A string directly under a dictionary is formatted twice, a list's items once (as in
        // Python's `interpolate_variables`).
        assert_eq!(
            interpolate(
                &json!({"{item[path]}": "{item[value]}", "l": ["{item[value]}", 3]}),
                &c,
                false
            ),
            json!({"driver_info/ipmi_address": "10.0.0.5", "l": ["{inventory[bmc_address]}", 3]})
        );
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
        assert_eq!(py_repr(&json!("a'b\"c")), "'a\\'b\"c'");
        assert_eq!(py_repr(&json!([1, 2.0, null, false])), "[1, 2.0, None, False]");
        assert_eq!(py_repr(&json!(1e16)), "1e+16");
    }
}
