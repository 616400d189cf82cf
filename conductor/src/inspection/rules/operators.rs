//! Condition operators, with Python's comparison semantics (Ironic evaluates them in Python):
//! numbers compare with numbers (a boolean is 0 or 1), strings with strings, lists item by
//! item; ordering values of different types is an error, and so fails the inspection.
//!
//! Upstream: `ironic/common/inspection_rules/operators.py`.

use std::cmp::Ordering;
use std::net::IpAddr;

use serde_json::Value;

use super::RuleError;
use super::format::py_str;

/// Every operator: name, required arguments, optional arguments.
pub const OPERATORS: &[(&str, &[&str], &[&str])] = &[
    ("eq", &["values"], &["force_strings"]),
    ("lt", &["values"], &["force_strings"]),
    ("gt", &["values"], &["force_strings"]),
    ("is-empty", &["value"], &[]),
    ("in-net", &["address", "subnet"], &[]),
    ("matches", &["value", "regex"], &[]),
    ("contains", &["value", "regex"], &[]),
    ("one-of", &["value"], &["values"]),
    ("is-none", &["value"], &[]),
    ("is-true", &["value"], &[]),
    ("is-false", &["value"], &[]),
];

/// The arguments an operator formats (all of them inside a loop).
pub fn formatted_args(op: &str) -> &'static [&'static str] {
    match op {
        "eq" | "lt" | "gt" => &["values"],
        "in-net" => &["address", "subnet"],
        _ => &["value"],
    }
}

/// `!op` → (`op`, inverted). More than one `!` is an error, as upstream.
pub fn parse_inverted(op: &str) -> Result<(&str, bool), String> {
    let op = op.trim();
    if op.matches('!').count() > 1 {
        return Err(
            "Multiple exclamation marks are not allowed. To apply the invert of an operation, \
                    simply add an exclamation mark (with an optional space) before the operator, e.g. eq - !eq."
                .into(),
        );
    }
    match op.strip_prefix('!') {
        Some(rest) => Ok((rest.trim(), true)),
        None => Ok((op, false)),
    }
}

/// Evaluate operator `op` (not inverted) on its processed arguments.
pub fn check(op: &str, args: &serde_json::Map<String, Value>) -> Result<bool, RuleError> {
    let arg = |name: &str| args.get(name).cloned().unwrap_or(Value::Null);
    match op {
        "eq" | "lt" | "gt" => {
            let Value::Array(mut values) = arg("values") else {
                return Err(RuleError::condition(format!(
                    "Failed to check condition: '{op}' on values: {}: Expected list for 'values', got: {}",
                    super::format::py_repr(&arg("values")),
                    py_type(&arg("values"))
                )));
            };
            if truthy(&arg("force_strings")) {
                values = values.iter().map(|v| Value::String(py_str(v))).collect();
            }
            for pair in values.windows(2) {
                let holds = match op {
                    "eq" => py_eq(&pair[0], &pair[1]),
                    "lt" => py_order(&pair[0], &pair[1], "<")? == Ordering::Less,
                    _ => py_order(&pair[0], &pair[1], ">")? == Ordering::Greater,
                };
                if !holds {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        "is-empty" => Ok(["", "None", "[]", "{}"].contains(&py_str(&arg("value")).as_str())),
        "in-net" => in_net(&arg("address"), &arg("subnet")),
        "matches" | "contains" => {
            let pattern = py_str(&arg("regex"));
            let anchored = if op == "matches" {
                let tail = if pattern.ends_with('$') { "" } else { "$" };
                format!("^(?:{pattern}{tail})")
            } else {
                pattern.clone()
            };
            let re = regex_lite::Regex::new(&anchored)
                .map_err(|e| RuleError::execution(format!("invalid regular expression: {e}")))?;
            Ok(re.is_match(&py_str(&arg("value"))))
        }
        "one-of" => {
            let value = arg("value");
            Ok(match arg("values") {
                Value::Array(values) => values.iter().any(|v| py_eq(v, &value)),
                Value::String(s) => value.as_str().is_some_and(|v| s.contains(v)),
                Value::Object(map) => value.as_str().is_some_and(|v| map.contains_key(v)),
                _ => false,
            })
        }
        "is-none" => Ok(arg("value").is_null()),
        "is-true" => Ok(match arg("value") {
            Value::Bool(b) => b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => ["yes", "true"].contains(&s.to_lowercase().as_str()),
            _ => false,
        }),
        "is-false" => Ok(match arg("value") {
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f == 0.0),
            Value::String(s) => ["no", "false"].contains(&s.to_lowercase().as_str()),
            Value::Null => true,
            _ => false,
        }),
        other => Err(RuleError::execution(format!("Unsupported operator '{other}'."))),
    }
}

/// Python truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Python's `==` on values `json.loads` made.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, b) {
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q)),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
            }
            _ => a == b,
        },
    }
}

/// Python's ordering; a `TypeError` (different types, dictionaries, None) fails the check.
fn py_order(a: &Value, b: &Value, sign: &str) -> Result<Ordering, RuleError> {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x
            .partial_cmp(&y)
            .ok_or_else(|| RuleError::execution("NaN cannot be ordered"));
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return py_order(p, q, sign);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => Err(RuleError::execution(format!(
            "'{sign}' not supported between instances of '{}' and '{}'",
            py_type(a),
            py_type(b)
        ))),
    }
}

/// `address in subnet` (netaddr's rules: a bare address is a /32 or /128 network).
fn in_net(address: &Value, subnet: &Value) -> Result<bool, RuleError> {
    let subnet = py_str(subnet);
    let net = crate::inspection::cidr::Cidr::parse_lenient(&subnet)
        .ok_or_else(|| RuleError::execution(format!("invalid value: invalid IPNetwork {subnet}")))?;
    let address = py_str(address);
    let addr: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| RuleError::execution(format!("failed to detect a valid IP address from '{address}'")))?;
    Ok(net.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(op: &str, args: Value) -> Result<bool, RuleError> {
        check(op, args.as_object().expect("object"))
    }

    #[test]
    fn comparisons_follow_python() {
        assert!(run("eq", json!({"values": [1, 1.0, true]})).expect("eq"));
        assert!(!run("eq", json!({"values": ["4", 4]})).expect("str vs int"));
        assert!(run("eq", json!({"values": ["4", 4], "force_strings": true})).expect("forced"));
        assert!(run("gt", json!({"values": [8, 4, 2]})).expect("chain"));
        assert!(!run("gt", json!({"values": [8, 9]})).expect("gt"));
        assert!(run("lt", json!({"values": ["a", "b"]})).expect("strings"));
        assert!(run("lt", json!({"values": [[1, 2], [1, 3]]})).expect("lists"));
        assert!(
            run("gt", json!({"values": ["4096", 2048]})).is_err(),
            "str > int is a TypeError"
        );
        assert!(run("eq", json!({"values": "x"})).is_err());
        assert!(run("eq", json!({"values": [1]})).expect("one value"));
    }

    #[test]
    fn the_other_operators() {
        for empty in [json!(""), json!(null), json!([]), json!({}), json!("None")] {
            assert!(run("is-empty", json!({ "value": empty })).expect("empty"));
        }
        assert!(!run("is-empty", json!({"value": 0})).expect("0 is not empty"));
        assert!(run("in-net", json!({"address": "10.1.2.3", "subnet": "10.0.0.0/8"})).expect("in"));
        assert!(!run("in-net", json!({"address": "11.1.2.3", "subnet": "10.0.0.0/8"})).expect("out"));
        assert!(run("in-net", json!({"address": "fd00::5", "subnet": "fd00::/64"})).expect("v6"));
        assert!(run("in-net", json!({"address": "10.1.2.3", "subnet": "nonsense"})).is_err());
        assert!(run("matches", json!({"value": "Dell Inc.", "regex": "Dell.*"})).expect("matches"));
        assert!(!run("matches", json!({"value": "A Dell", "regex": "Dell"})).expect("anchored"));
        assert!(run("contains", json!({"value": "A Dell", "regex": "Dell"})).expect("contains"));
        assert!(run("one-of", json!({"value": "x86_64", "values": ["aarch64", "x86_64"]})).expect("one-of"));
        assert!(run("is-true", json!({"value": "Yes"})).expect("yes"));
        assert!(!run("is-true", json!({"value": "1"})).expect("'1' is not true"));
        assert!(run("is-false", json!({"value": null})).expect("None is false"));
        assert!(run("is-none", json!({"value": null})).expect("none"));
        assert!(!run("is-none", json!({"value": "None"})).expect("the string None"));
    }

    #[test]
    fn inversion_parses_once() {
        assert_eq!(parse_inverted(" !eq ").expect("inverted"), ("eq", true));
        assert_eq!(parse_inverted("eq").expect("plain"), ("eq", false));
        assert!(parse_inverted("!!eq").is_err());
    }
}
