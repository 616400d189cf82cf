//! Config drives given with a deployment (`configdrive` in `PUT …/states/provision`).
//!
//! Ironic accepts three forms: a URL the agent downloads, the image itself (gzipped, then
//! base64), and since API 1.56 an object of `meta_data`, `network_data`, `user_data` and
//! `vendor_data` that the conductor builds into an image (Ironic's
//! `configdrive_utils.build_configdrive`, openstacksdk's `configdrive.build`). [`validate`] runs
//! while the API caller waits, so a broken value is a 400 and never a deployment that fails in
//! the ramdisk; [`for_agent`] builds an object into the image when the image is written. Ironic
//! 39 accepts any string that is not broken JSON (plain text and base64 of anything reach the
//! agent and fail there); Rivet refuses them at once (docs/compatibility.md).

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::drivers::DriverError;
use crate::model::NodeRecord;

/// Keys of the object form.
const KEYS: &[&str] = &["meta_data", "network_data", "user_data", "vendor_data"];
/// Longest `xorriso` may take to pack a config drive.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// A valid `configdrive`, in the form the node keeps: `None` for none, a string (URL or
/// base64 of gzip) as given, an object (also when given as JSON text) as given.
///
/// Errors: a sentence starting "Invalid configdrive format:" for the API's 400.
pub fn validate(value: &Value) -> Result<Option<Value>, String> {
    let invalid = |why: String| format!("Invalid configdrive format: {why}");
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            url::Url::parse(s).map_err(|e| invalid(format!("{s:?} is not a URL: {e}")))?;
            Ok(Some(value.clone()))
        }
        Value::String(s) if s.trim_start().starts_with('{') => {
            let parsed: Value =
                serde_json::from_str(s).map_err(|e| invalid(format!("it starts as JSON but does not parse: {e}")))?;
            validate_object(&parsed).map_err(invalid)?;
            Ok(Some(parsed))
        }
        Value::String(s) => {
            let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| {
                invalid(format!(
                    "it is neither a URL, nor a JSON object, nor base64 of a gzipped image ({e})"
                ))
            })?;
            if !bytes.starts_with(&[0x1f, 0x8b]) {
                return Err(invalid(
                    "it is base64, but what it holds is not gzipped; send the image gzipped, then base64".into(),
                ));
            }
            Ok(Some(value.clone()))
        }
        Value::Object(_) => {
            validate_object(value).map_err(invalid)?;
            Ok(Some(value.clone()))
        }
        other => Err(invalid(format!(
            "expected a string or an object, got {}",
            rivet_common::json_type(other)
        ))),
    }
}

fn validate_object(value: &Value) -> Result<(), String> {
    let Value::Object(map) = value else {
        return Err("the JSON is not an object".into());
    };
    for (key, v) in map {
        match (key.as_str(), v) {
            (k, _) if !KEYS.contains(&k) => {
                return Err(format!("unexpected key {k:?}; the keys are {}", KEYS.join(", ")));
            }
            (_, Value::Null) | ("meta_data" | "network_data" | "vendor_data", Value::Object(_)) => {}
            ("user_data", Value::Object(_) | Value::Array(_) | Value::String(_)) => {}
            ("user_data", other) => {
                return Err(format!(
                    "user_data must be a string, an object or an array, got {}",
                    rivet_common::json_type(other)
                ));
            }
            (k, other) => {
                return Err(format!("{k} must be an object, got {}", rivet_common::json_type(other)));
            }
        }
    }
    Ok(())
}

/// What the agent is sent as `configdrive`: the node's value as it is, or for the object form
/// the built image (gzipped, base64).
pub async fn for_agent(node: &NodeRecord) -> Result<Value, DriverError> {
    match node.instance_info.get("configdrive") {
        Some(Value::Object(parts)) => Ok(Value::String(build(node, parts).await?)),
        Some(other) => Ok(other.clone()),
        None => Ok(Value::Null),
    }
}

/// Build the config drive image: `openstack/{2012-08-10,latest}/` with `meta_data.json` (the
/// node's uuid and name by default), `network_data.json`, `vendor_data2.json` and `user_data`,
/// on an ISO 9660 file system labelled `config-2`, gzipped and base64-encoded.
async fn build(node: &NodeRecord, parts: &serde_json::Map<String, Value>) -> Result<String, DriverError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| DriverError::Failed(format!("building the config drive: {what}: {e}"));
    let mut meta = parts
        .get("meta_data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    meta.entry("uuid").or_insert_with(|| Value::String(node.uuid.clone()));
    if let Some(name) = &node.name {
        meta.entry("name").or_insert_with(|| Value::String(name.clone()));
    }
    let user_data = match parts.get("user_data") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone().into_bytes()),
        Some(v @ (Value::Object(_) | Value::Array(_))) => Some(v.to_string().into_bytes()),
        _ => None,
    };
    // The tree to pack, and the image beside it (xorriso must not pack its own output).
    let dir = tempfile::tempdir().map_err(|e| failed("a temporary directory", &e))?;
    let tree = dir.path().join("tree");
    for version in ["2012-08-10", "latest"] {
        let sub = tree.join("openstack").join(version);
        std::fs::create_dir_all(&sub).map_err(|e| failed("a directory", &e))?;
        let write = |name: &str, bytes: &[u8]| std::fs::write(sub.join(name), bytes).map_err(|e| failed(name, &e));
        write("meta_data.json", Value::Object(meta.clone()).to_string().as_bytes())?;
        for (key, file) in [
            ("network_data", "network_data.json"),
            ("vendor_data", "vendor_data2.json"),
        ] {
            if let Some(v) = parts.get(key).filter(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
                write(file, v.to_string().as_bytes())?;
            }
        }
        if let Some(data) = &user_data {
            write("user_data", data)?;
        }
    }
    let iso = dir.path().join("config-2.iso");
    let mut cmd = tokio::process::Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-o"])
        .arg(&iso)
        .args([
            "-ldots",
            "-allow-lowercase",
            "-allow-multidot",
            "-l",
            "-publisher",
            "rivet",
        ])
        .args(["-quiet", "-J", "-r", "-V", "config-2"])
        .arg(&tree);
    crate::drivers::tool::output(
        cmd,
        "packing the config drive with xorriso",
        BUILD_TIMEOUT,
        " (install xorriso)",
    )
    .await?;
    let image = std::fs::read(&iso).map_err(|e| failed("reading the image", &e))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&image).map_err(|e| failed("gzip", &e))?;
    let gzipped = gz.finish().map_err(|e| failed("gzip", &e))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(gzipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_forms_are_accepted_and_everything_else_refused() {
        use base64::Engine;
        let gzipped = {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(b"an image").expect("gzip");
            base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))
        };
        let ok = [
            (json!(null), None),
            (json!(""), None),
            (
                json!("http://127.0.0.1/cd.iso.gz"),
                Some(json!("http://127.0.0.1/cd.iso.gz")),
            ),
            (json!(gzipped), Some(json!(gzipped))),
            (
                json!({"meta_data": {"hostname": "h"}}),
                Some(json!({"meta_data": {"hostname": "h"}})),
            ),
            (
                json!("{\"user_data\": \"#!/bin/sh\"}"),
                Some(json!({"user_data": "#!/bin/sh"})),
            ),
            (
                json!({"user_data": ["a"], "vendor_data": {}, "network_data": null}),
                Some(json!({"user_data": ["a"], "vendor_data": {}, "network_data": null})),
            ),
        ];
        for (value, want) in ok {
            assert_eq!(validate(&value), Ok(want), "{value}");
        }
        let refused = [
            (json!("{\"meta_data\": {"), "starts as JSON but does not parse"),
            (json!("hello"), "neither a URL, nor a JSON object, nor base64"),
            (json!("aGVsbG8="), "not gzipped"),
            (json!("http://"), "is not a URL"),
            (json!({"bogus": {}}), "unexpected key \"bogus\""),
            (
                json!({"user_data": 5}),
                "user_data must be a string, an object or an array, got a number",
            ),
            (json!({"meta_data": "x"}), "meta_data must be an object, got a string"),
            (json!("[1]"), "neither a URL"),
            (json!(5), "expected a string or an object, got a number"),
            (json!([]), "expected a string or an object, got an array"),
        ];
        for (value, want) in refused {
            let err = validate(&value).expect_err("refused");
            assert!(
                err.starts_with("Invalid configdrive format: ") && err.contains(want),
                "{value}: {err}"
            );
        }
    }
}
