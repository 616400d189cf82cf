//! Root-device hints as operators write them (`properties.root_device`,
//! `instance_info.root_device`) and the grammar that matches them against a disk, shared by the
//! agent (choosing the disk to write) and the conductor (the `root-device` inspection hook).
//!
//! String hints are lower-cased and URL-quoted, with an optional operator (`s==` when none);
//! `size` is in GiB (`==` when no operator; a device of 100.5 GiB does not equal 100);
//! `rotational` is a strict boolean. Operators are those of oslo's `specs_matcher`: numeric `=`
//! (meaning >=), `==`, `!=`, `>=`, `<=`, `>`, `<`; string `s==`, `s!=`, `s<`, `s<=`, `s>`,
//! `s>=`; `<in>` (substring), `<all-in>` (all words), `<or>` (`<or> a <or> b`), `<range-in>`
//! (`<range-in> [ 10 20 )`). Upstream: `ironic/common/utils.py` (`parse_root_device_hints`,
//! `find_devices_by_hints`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JsonObject;

/// The hint document, key to raw value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RootDeviceHints(pub JsonObject);

impl RootDeviceHints {
    /// True when no hint is given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub const STRING_KEYS: &[&str] = &[
    "model",
    "wwn",
    "serial",
    "vendor",
    "wwn_with_extension",
    "wwn_vendor_extension",
    "name",
    "hctl",
    "by_path",
    "tran",
];

/// One parsed hint.
#[derive(Debug, Clone, PartialEq)]
pub enum Hint {
    /// A normalised string expression, e.g. `s== samsung`, `<in> ssd`.
    Text { key: String, expression: String },
    /// A size expression in GiB, e.g. `>= 100`.
    Size(String),
    /// Rotational media or not.
    Rotational(bool),
}

/// Parsed hints, in document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hints(pub Vec<Hint>);

fn invalid(msg: String) -> String {
    format!("invalid root device hints: {msg}")
}

/// Strict boolean as upstream's `strutils.bool_from_string(strict=True)`.
pub fn strict_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().and_then(|i| match i {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        }),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Python's `urllib.parse.quote`: keep letters, digits, `_.-~/`; escape the rest.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

const OPERATORS: &[&str] = &[
    "=",
    "==",
    "!=",
    ">=",
    "<=",
    ">",
    "<",
    "s==",
    "s!=",
    "s<",
    "s<=",
    "s>",
    "s>=",
    "<in>",
    "<all-in>",
    "<or>",
    "<range-in>",
];

/// Split `"<op> v1 <op> v2"` into its operator and values: the values are the text between
/// occurrences of the operator (so they may contain spaces), as upstream splits them.
fn split_operator(expression: &str) -> (Option<&'static str>, Vec<String>) {
    let trimmed = expression.trim();
    let first = trimmed.split_whitespace().next();
    match first.and_then(|w| OPERATORS.iter().find(|op| **op == w)) {
        Some(op) => (
            Some(op),
            trimmed
                .split(op)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        None => (None, vec![trimmed.to_owned()]),
    }
}

fn normalise_text(key: &str, raw: &str) -> String {
    let lowered = raw.to_lowercase();
    let (op, values) = split_operator(&lowered);
    let op = op.unwrap_or("s==");
    let values: Vec<String> = values
        .into_iter()
        .map(|v| match key {
            "name" if !v.starts_with("/dev/") => format!("/dev/{v}"),
            "by_path" if !v.starts_with("/dev/disk/by-path/") => format!("/dev/disk/by-path/{v}"),
            _ => v,
        })
        .map(|v| if op == "<range-in>" { v } else { quote(&v) })
        .collect();
    match op {
        "<or>" => values.iter().map(|v| format!("<or> {v}")).collect::<Vec<_>>().join(" "),
        _ => format!("{op} {}", values.join(" ")),
    }
}

/// Parse a hint document; unknown keys and malformed values are errors.
pub fn parse(doc: &JsonObject) -> Result<Hints, String> {
    let mut out = Vec::new();
    for (key, value) in doc {
        let hint = match key.as_str() {
            "size" => {
                let text = match value {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    other => return Err(invalid(format!("size must be an integer or a string, got {other}"))),
                };
                let (op, values) = split_operator(&text);
                if op == Some("<range-in>") {
                    // "[ 10 20 )": an opening bracket, two bounds, a closing bracket.
                    let words: Vec<&str> = values.iter().flat_map(|v| v.split_whitespace()).collect();
                    let shaped = words.len() == 4
                        && ["[", "("].contains(&words[0])
                        && ["]", ")"].contains(&words[3])
                        && words[1].parse::<u64>().is_ok()
                        && words[2].parse::<u64>().is_ok();
                    if !shaped {
                        return Err(invalid(format!(
                            "size range must look like \"<range-in> [ 10 20 )\", got {text:?}"
                        )));
                    }
                }
                let numbers: &[String] = if op == Some("<range-in>") { &[] } else { &values };
                for v in numbers {
                    if !v.parse::<u64>().is_ok_and(|n| n > 0) {
                        return Err(invalid(format!("size must be a positive integer (GiB), got {v:?}")));
                    }
                }
                let op = op.unwrap_or("==");
                if !["=", "==", "!=", ">=", "<=", ">", "<", "<or>", "<range-in>"].contains(&op) {
                    return Err(invalid(format!("operator {op} does not apply to size")));
                }
                Hint::Size(if op == "<or>" {
                    values.iter().map(|v| format!("<or> {v}")).collect::<Vec<_>>().join(" ")
                } else {
                    format!("{op} {}", values.join(" "))
                })
            }
            "rotational" => Hint::Rotational(
                strict_bool(value).ok_or_else(|| invalid(format!("rotational must be a boolean, got {value}")))?,
            ),
            k if STRING_KEYS.contains(&k) => match value {
                Value::String(s) => Hint::Text {
                    key: k.to_owned(),
                    expression: normalise_text(k, s),
                },
                Value::Number(n) => Hint::Text {
                    key: k.to_owned(),
                    expression: normalise_text(k, &n.to_string()),
                },
                other => return Err(invalid(format!("{k} must be a string, got {other}"))),
            },
            other => return Err(invalid(format!("no such hint named {other:?}"))),
        };
        out.push(hint);
    }
    Ok(Hints(out))
}

/// oslo `specs_matcher.match` for one value.
pub fn spec_match(value: &str, expression: &str) -> bool {
    let words: Vec<&str> = expression.split_whitespace().collect();
    let Some(&op) = words.first() else {
        return value.is_empty();
    };
    let arg = words.get(1).copied().unwrap_or("");
    let num = |s: &str| s.parse::<f64>().ok();
    match op {
        // Sizes compare as numbers (`100` equals a device of 100.0 GiB), strings as text.
        "<or>" => words.iter().skip(1).step_by(2).any(|w| match (num(w), num(value)) {
            (Some(a), Some(b)) => a == b,
            _ => *w == value,
        }),
        "<in>" => value.contains(arg),
        "<all-in>" => words[1..].iter().all(|w| value.contains(w)),
        "<range-in>" => {
            // "<range-in> [ 10 20 )": bracket kinds make the bounds inclusive or exclusive.
            let (Some(lo_b), Some(lo), Some(hi), Some(hi_b), Some(v)) = (
                words.get(1),
                words.get(2).and_then(|w| num(w)),
                words.get(3).and_then(|w| num(w)),
                words.get(4),
                num(value),
            ) else {
                return false;
            };
            let lower = if *lo_b == "[" { v >= lo } else { v > lo };
            let upper = if *hi_b == "]" { v <= hi } else { v < hi };
            lower && upper
        }
        "=" | "==" | "!=" | ">=" | "<=" | ">" | "<" => {
            let (Some(v), Some(a)) = (num(value), num(arg)) else {
                return false;
            };
            match op {
                "=" | ">=" => v >= a,
                "==" => v == a,
                "!=" => v != a,
                "<=" => v <= a,
                ">" => v > a,
                _ => v < a,
            }
        }
        "s==" => value == arg,
        "s!=" => value != arg,
        "s<" => value < arg,
        "s<=" => value <= arg,
        "s>" => value > arg,
        "s>=" => value >= arg,
        _ => value == expression,
    }
}

pub fn format_gib(gib: f64) -> String {
    if gib.fract() == 0.0 {
        format!("{gib:.1}")
    } else {
        gib.to_string()
    }
}

/// True when a disk satisfies every hint: `size` in bytes, `rotational`, and `texts(key)` the
/// disk's values for a string hint (several for serials and WWNs that have variants), already
/// lower-cased and quoted with [`quote`].
pub fn matches(hints: &Hints, size: u64, rotational: bool, texts: impl Fn(&str) -> Vec<String>) -> bool {
    hints.0.iter().all(|hint| match hint {
        Hint::Size(expression) => {
            let gib = size as f64 / (1u64 << 30) as f64;
            // Compare like upstream: the float size as text against the expression.
            spec_match(&format_gib(gib), expression)
        }
        Hint::Rotational(want) => rotational == *want,
        Hint::Text { key, expression } => texts(key).iter().any(|v| spec_match(v, expression)),
    })
}

/// The values of an inventory disk (`{"name", "model", "serial", ...}`) for a string hint, as
/// [`matches`] reads them.
pub fn inventory_disk_texts(disk: &Value, key: &str) -> Vec<String> {
    disk.get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(|v| vec![quote(&v.to_lowercase())])
        .unwrap_or_default()
}
