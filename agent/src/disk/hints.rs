//! Root-device hints (reference §6.9): which disk receives the OS.
//!
//! Hints come from `instance_info.root_device`, else `properties.root_device`. String hints are
//! lower-cased and URL-quoted, with an optional operator (`s==` when none); `size` is in GiB
//! (`==` when no operator; a device of 100.5 GiB does not equal 100); `rotational` is a strict
//! boolean. Operators are those of oslo's `specs_matcher`: numeric `=` (meaning >=), `==`, `!=`,
//! `>=`, `<=`, `>`, `<`; string `s==`, `s!=`, `s<`, `s<=`, `s>`, `s>=`; `<in>` (substring),
//! `<all-in>` (all words), `<or>` (`<or> a <or> b`), `<range-in>` (`<range-in> [ 10 20 )`).
//! Without hints the smallest disk of at least 4 GiB is chosen.

use rivet_common::JsonObject;
use rivet_common::node::Node;
use serde_json::Value;

use super::devices::BlockDevice;
use crate::error::py_repr;
use crate::error::{AgentError, ErrorKind};

/// Disks smaller than this are not chosen without hints.
pub const MIN_ROOT_DISK: u64 = 4 << 30;

const STRING_KEYS: &[&str] = &[
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

fn invalid(msg: String) -> AgentError {
    AgentError::new(
        ErrorKind::InvalidCommandParams,
        format!("invalid root device hints: {msg}"),
    )
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
pub fn parse(doc: &JsonObject) -> Result<Hints, AgentError> {
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

fn device_texts(device: &BlockDevice, key: &str) -> Vec<String> {
    let d = &device.disk;
    let raw: Vec<String> = match key {
        "serial" => device.serials.clone(),
        "wwn" => device.wwns.clone(),
        "model" => d.model.iter().cloned().collect(),
        "vendor" => d.vendor.iter().cloned().collect(),
        "wwn_with_extension" => d.wwn_with_extension.iter().cloned().collect(),
        "wwn_vendor_extension" => d.wwn_vendor_extension.iter().cloned().collect(),
        "name" => vec![d.name.clone()],
        "hctl" => d.hctl.iter().cloned().collect(),
        "by_path" => d.by_path.iter().cloned().collect(),
        "tran" => d.tran.iter().cloned().collect(),
        _ => Vec::new(),
    };
    raw.into_iter()
        .filter(|v| !v.is_empty())
        .map(|v| quote(&v.to_lowercase()))
        .collect()
}

/// True when `device` satisfies every hint.
pub fn matches(device: &BlockDevice, hints: &Hints) -> bool {
    hints.0.iter().all(|hint| match hint {
        Hint::Size(expression) => {
            let gib = device.disk.size as f64 / (1u64 << 30) as f64;
            // Compare like upstream: the float size as text against the expression.
            spec_match(&format_gib(gib), expression)
        }
        Hint::Rotational(want) => device.disk.rotational == *want,
        Hint::Text { key, expression } => device_texts(device, key).iter().any(|v| spec_match(v, expression)),
    })
}

fn format_gib(gib: f64) -> String {
    if gib.fract() == 0.0 {
        format!("{gib:.1}")
    } else {
        gib.to_string()
    }
}

fn root_device_doc(node: &Node) -> Option<&JsonObject> {
    node.instance_info_value("root_device")
        .and_then(Value::as_object)
        .filter(|o| !o.is_empty())
        .or_else(|| {
            node.property("root_device")
                .and_then(Value::as_object)
                .filter(|o| !o.is_empty())
        })
}

/// Choose the disk for the OS from `devices` (in listing order) for `node`.
pub fn choose_root_device(devices: &[BlockDevice], node: Option<&Node>) -> Result<BlockDevice, AgentError> {
    let mut candidates: Vec<&BlockDevice> = devices.iter().collect();
    if let Some(skips) = node
        .and_then(|n| n.property("skip_block_devices"))
        .and_then(Value::as_array)
    {
        for skip in skips.iter().filter_map(Value::as_object) {
            // Entries naming RAID volumes concern software RAID, not whole disks.
            if skip.contains_key("volume_name") {
                continue;
            }
            let hints = parse(skip)?;
            candidates.retain(|d| !matches(d, &hints));
        }
    }
    match node.and_then(root_device_doc) {
        Some(doc) => {
            let hints = parse(doc)?;
            candidates
                .into_iter()
                .find(|d| matches(d, &hints))
                .cloned()
                .ok_or_else(|| {
                    AgentError::new(
                        ErrorKind::DeviceNotFound,
                        format!(
                            "No suitable device was found for deployment using these hints {}",
                            py_repr(&Value::Object(doc.clone()))
                        ),
                    )
                })
        }
        None => {
            let mut big: Vec<&BlockDevice> = candidates
                .into_iter()
                .filter(|d| d.disk.size >= MIN_ROOT_DISK)
                .collect();
            big.sort_by(|a, b| (a.disk.size, &a.disk.name).cmp(&(b.disk.size, &b.disk.name)));
            big.first().map(|d| (*d).clone()).ok_or_else(|| {
                AgentError::new(
                    ErrorKind::DeviceNotFound,
                    format!(
                        "No suitable device was found for deployment - root device hints were not provided and all found block devices are smaller than {MIN_ROOT_DISK}B."
                    ),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivet_common::inventory::Disk;
    use serde_json::json;

    fn device(name: &str, gib: u64, rotational: bool) -> BlockDevice {
        BlockDevice {
            disk: Disk {
                name: format!("/dev/{name}"),
                size: gib << 30,
                rotational,
                model: Some("Samsung SSD 860".into()),
                vendor: Some("ATA".into()),
                wwn: Some("0x5000c500a1b2c3d4".into()),
                wwn_with_extension: Some("0x5000c500a1b2c3d4abcd".into()),
                wwn_vendor_extension: Some("0xabcd".into()),
                serial: Some(format!("S3Z{name}")),
                hctl: Some("1:0:0:0".into()),
                by_path: Some(format!("/dev/disk/by-path/pci-0000:00:17.0-ata-{name}")),
                tran: Some("sata".into()),
                ..Default::default()
            },
            kname: name.into(),
            serials: vec![format!("S3Z{name}"), format!("Samsung_SSD_860_S3Z{name}")],
            wwns: vec!["0x5000c500a1b2c3d4".into()],
        }
    }

    fn hit(hints: Value, dev: &BlockDevice) -> bool {
        matches(dev, &parse(hints.as_object().expect("object")).expect("valid hints"))
    }

    #[test]
    fn every_operator_on_strings() {
        let d = device("sda", 100, false);
        let table = [
            (json!({"model": "samsung ssd 860"}), true),
            (json!({"model": "Samsung SSD 860"}), true),
            (json!({"model": "s== samsung ssd 860"}), true),
            (json!({"model": "s!= samsung ssd 860"}), false),
            (json!({"model": "s!= intel"}), true),
            (json!({"model": "<in> samsung"}), true),
            (json!({"model": "<in> intel"}), false),
            (json!({"model": "<all-in> samsung ssd"}), true),
            (json!({"model": "<all-in> samsung nvme"}), false),
            (json!({"model": "<or> intel <or> samsung ssd 860"}), true),
            (json!({"model": "<or> intel <or> samsung"}), false),
            (json!({"vendor": "<or> hp <or> ata"}), true),
            (json!({"vendor": "<or> hp <or> dell"}), false),
            (json!({"vendor": "s> aaa"}), true),
            (json!({"vendor": "s>= ata"}), true),
            (json!({"vendor": "s< zzz"}), true),
            (json!({"vendor": "s<= ata"}), true),
            (json!({"vendor": "s< ata"}), false),
        ];
        for (hints, want) in table {
            assert_eq!(hit(hints.clone(), &d), want, "{hints}");
        }
    }

    #[test]
    fn every_key() {
        let d = device("sda", 100, true);
        let table = [
            (json!({"name": "/dev/sda"}), true),
            (json!({"name": "sda"}), true),
            (json!({"name": "/dev/sdb"}), false),
            (json!({"serial": "s3zsda"}), true),
            (json!({"serial": "samsung_ssd_860_s3zsda"}), true),
            (json!({"serial": "other"}), false),
            (json!({"wwn": "0x5000C500A1B2C3D4"}), true),
            (json!({"wwn_with_extension": "0x5000c500a1b2c3d4abcd"}), true),
            (json!({"wwn_vendor_extension": "0xabcd"}), true),
            (json!({"vendor": "ata"}), true),
            (json!({"hctl": "1:0:0:0"}), true),
            (json!({"hctl": "2:0:0:0"}), false),
            (json!({"by_path": "/dev/disk/by-path/pci-0000:00:17.0-ata-sda"}), true),
            (json!({"by_path": "pci-0000:00:17.0-ata-sda"}), true),
            (json!({"tran": "sata"}), true),
            (json!({"tran": "nvme"}), false),
            (json!({"rotational": true}), true),
            (json!({"rotational": "false"}), false),
            (json!({"rotational": 1}), true),
            (json!({"size": 100}), true),
            (json!({"size": "100"}), true),
            (json!({"size": 99}), false),
            (
                json!({"model": "<in> samsung", "size": ">= 50", "rotational": true}),
                true,
            ),
            (json!({"model": "<in> samsung", "size": ">= 500"}), false),
        ];
        for (hints, want) in table {
            assert_eq!(hit(hints.clone(), &d), want, "{hints}");
        }
    }

    #[test]
    fn every_numeric_operator_on_size() {
        let d = device("sda", 100, false);
        let table = [
            ("== 100", true),
            ("!= 100", false),
            ("!= 99", true),
            (">= 100", true),
            ("= 100", true),
            ("= 101", false),
            ("<= 100", true),
            ("> 99", true),
            ("> 100", false),
            ("< 101", true),
            ("< 100", false),
            ("<or> 50 <or> 100", true),
            ("<range-in> [ 100 200 )", true),
            ("<range-in> ( 100 200 )", false),
            ("<range-in> ( 50 100 ]", true),
        ];
        for (expr, want) in table {
            assert_eq!(hit(json!({ "size": expr }), &d), want, "size {expr}");
        }
    }

    #[test]
    fn bad_hints_are_clear_errors() {
        for hints in [
            json!({"colour": "red"}),
            json!({"size": "big"}),
            json!({"size": 0}),
            json!({"size": "s== 10"}),
            json!({"rotational": "maybe"}),
            json!({"model": ["a"]}),
        ] {
            let err = parse(hints.as_object().expect("object")).expect_err("invalid");
            assert!(err.details.starts_with("invalid root device hints"), "{hints}: {err}");
        }
    }

    #[test]
    fn choice_without_and_with_hints() {
        let disks = vec![
            device("sda", 200, true),
            device("sdb", 2, false),
            device("sdc", 50, false),
            device("sdd", 50, true),
        ];
        let node = |props: Value, ii: Value| Node {
            uuid: "u".into(),
            properties: props.as_object().cloned(),
            instance_info: ii.as_object().cloned(),
            ..Default::default()
        };
        // No hints: the smallest disk of at least 4 GiB, ties by name.
        assert_eq!(choose_root_device(&disks, None).expect("found").disk.name, "/dev/sdc");
        // Hints: first match in listing order; instance_info wins over properties.
        let n = node(
            json!({"root_device": {"rotational": true}}),
            json!({"root_device": {"size": ">= 100"}}),
        );
        assert_eq!(
            choose_root_device(&disks, Some(&n)).expect("found").disk.name,
            "/dev/sda"
        );
        let n = node(
            json!({"root_device": {"rotational": false, "size": ">= 10"}}),
            json!({}),
        );
        assert_eq!(
            choose_root_device(&disks, Some(&n)).expect("found").disk.name,
            "/dev/sdc"
        );
        // Skip list removes candidates.
        let n = node(json!({"skip_block_devices": [{"name": "/dev/sdc"}]}), json!({}));
        assert_eq!(
            choose_root_device(&disks, Some(&n)).expect("found").disk.name,
            "/dev/sdd"
        );
        // Nothing matches: DeviceNotFound naming the hints.
        let n = node(json!({"root_device": {"model": "intel"}}), json!({}));
        let err = choose_root_device(&disks, Some(&n)).expect_err("none");
        assert_eq!(err.kind, ErrorKind::DeviceNotFound);
        assert!(err.details.contains("{'model': 'intel'}"), "{err}");
        let err = choose_root_device(&[device("sdb", 2, false)], None).expect_err("too small");
        assert!(err.details.contains("smaller than 4294967296B"), "{err}");
    }

    #[test]
    fn quoting_follows_python() {
        assert_eq!(quote("samsung ssd/1"), "samsung%20ssd/1");
        assert_eq!(quote("a:b"), "a%3Ab");
    }
}
