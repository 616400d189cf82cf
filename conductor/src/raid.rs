//! RAID configurations (API 1.12): the logical disk properties one may name, the rules a
//! `target_raid_config` must follow before it is stored, the part of it a step asks for, and
//! what a configuration that was built changes in the node. The rules are those of Ironic's
//! RAID configuration schema (`ironic/drivers/raid_config_schema.json`, checked by
//! `ironic/common/raid.py`); the descriptions are Rivet's own.

use serde_json::{Value, json};

use crate::model::NodeRecord;

/// Each logical disk property with what it means (`GET /v1/drivers/{driver}/raid/
/// logical_disk_properties`).
pub const LOGICAL_DISK_PROPERTIES: &[(&str, &str)] = &[
    (
        "raid_level",
        "Required. The RAID level: JBOD, 0, 1, 2, 5, 6, 1+0, 5+0 or 6+0.",
    ),
    (
        "size_gb",
        "Required. The size in GiB (an integer), or MAX for the space that is left.",
    ),
    (
        "volume_name",
        "Optional. A name for the volume; the driver picks one if absent.",
    ),
    (
        "is_root_volume",
        "Optional. Whether the instance is deployed on this disk (at most one; default false).",
    ),
    (
        "share_physical_disks",
        "Optional. Whether other logical disks may use the same physical disks (default false).",
    ),
    ("disk_type", "Optional. The kind of physical disks to use: hdd or ssd."),
    (
        "interface_type",
        "Optional. The bus of the physical disks to use: sata, scsi or sas.",
    ),
    (
        "number_of_physical_disks",
        "Optional. How many physical disks to use (default: the least the RAID level needs).",
    ),
    (
        "controller",
        "Optional. The RAID controller to use; the driver picks one if absent.",
    ),
    (
        "physical_disks",
        "Optional. The physical disks to use (requires controller); the driver picks if absent.",
    ),
];

const RAID_LEVELS: &[&str] = &["JBOD", "0", "1", "2", "5", "6", "1+0", "5+0", "6+0"];

/// Check a non-empty target RAID configuration: `{"logical_disks": [disk, ...]}` with at least
/// one disk, each disk an object of known properties with `raid_level` and `size_gb`, typed and
/// ranged as Ironic's schema says, and at most one root volume.
///
/// Errors: the first rule broken, as a sentence for the API's 400.
pub fn validate(config: &Value) -> Result<(), String> {
    let fail = |reason: String| Err(format!("RAID config validation error: {reason}"));
    let Some(config) = config.as_object() else {
        return fail(format!("{config} is not of type 'object'"));
    };
    if let Some(other) = config.keys().find(|k| *k != "logical_disks") {
        return fail(format!(
            "Additional properties are not allowed ('{other}' was unexpected)"
        ));
    }
    let disks = match config.get("logical_disks") {
        None => return fail("'logical_disks' is a required property".into()),
        Some(Value::Array(d)) if d.is_empty() => return fail("[] should be non-empty".into()),
        Some(Value::Array(d)) => d,
        Some(other) => return fail(format!("{other} is not of type 'array'")),
    };
    for disk in disks {
        let Some(disk) = disk.as_object() else {
            return fail(format!("{disk} is not of type 'object'"));
        };
        for required in ["raid_level", "size_gb"] {
            if !disk.contains_key(required) {
                return fail(format!("'{required}' is a required property"));
            }
        }
        for (name, value) in disk {
            let ok = match name.as_str() {
                "raid_level" => value.as_str().is_some_and(|l| RAID_LEVELS.contains(&l)),
                "size_gb" => value.as_u64().is_some() || value == "MAX",
                "volume_name" | "controller" => value.is_string(),
                "is_root_volume" | "share_physical_disks" => value.is_boolean(),
                "disk_type" => value == "hdd" || value == "ssd",
                "interface_type" => ["sata", "scsi", "sas"].iter().any(|t| value == t),
                "number_of_physical_disks" => value.as_u64().is_some_and(|n| n > 0),
                "physical_disks" => physical_disks_ok(value),
                other => {
                    return fail(format!(
                        "Additional properties are not allowed ('{other}' was unexpected)"
                    ));
                }
            };
            if !ok {
                return fail(format!("{value} is not valid for {name}"));
            }
        }
        if disk.contains_key("physical_disks") && !disk.contains_key("controller") {
            return fail("'controller' is a dependency of 'physical_disks'".into());
        }
    }
    let roots = disks
        .iter()
        .filter(|d| d.get("is_root_volume") == Some(&Value::Bool(true)))
        .count();
    if roots > 1 {
        return Err(format!(
            "Raid config cannot have more than one root volume. {roots} root volumes were specified"
        ));
    }
    Ok(())
}

/// The node's `target_raid_config` with the root volume left out unless `create_root_volume`,
/// and the other volumes unless `create_nonroot_volumes` (the arguments of a
/// `raid.create_configuration` clean step; Ironic's `filter_target_raid_config`).
///
/// Errors: the node has no target configuration, or none is left after the filtering (Ironic's
/// messages, for `last_error`).
pub fn filter_target(
    node: &NodeRecord,
    create_root_volume: bool,
    create_nonroot_volumes: bool,
) -> Result<Value, String> {
    let target = node.attr("target_raid_config");
    let Some(config) = target.as_object().filter(|c| !c.is_empty()) else {
        return Err(format!("Node {} has no target RAID configuration.", node.uuid));
    };
    let mut config = config.clone();
    let mut skipped = Vec::new();
    let is_root = |d: &Value| d.get("is_root_volume").and_then(Value::as_bool).unwrap_or(false);
    let mut disks: Vec<Value> = config
        .get("logical_disks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !create_root_volume {
        disks.retain(|d| !is_root(d));
        skipped.push("skipping root volume");
    }
    if !create_nonroot_volumes {
        disks.retain(is_root);
        skipped.push("skipping non-root volumes");
    }
    if disks.is_empty() {
        return Err(format!(
            "Node {} has empty target RAID configuration after {}.",
            node.uuid,
            skipped.join(" and ")
        ));
    }
    config.insert("logical_disks".into(), Value::Array(disks));
    Ok(Value::Object(config))
}

/// Record a RAID configuration that was built (`current`: `{"logical_disks": [...]}` as the
/// agent reports it) in the node, as Ironic's `update_raid_info` does: `raid_config` becomes
/// `current` plus `last_updated`; a root volume sets `properties.local_gb` (unless its size is
/// `MAX`), `properties.root_device` (from its `root_device_hint`) and the `raid_level`
/// capability.
///
/// Errors: `current` is not an object, names more than one root volume, or the node's
/// capabilities string is malformed; the node is then unchanged.
pub fn update_raid_info(node: &mut NodeRecord, current: &Value) -> Result<(), String> {
    let Some(config) = current.as_object() else {
        return Err(format!("the RAID configuration built is not an object: {current}"));
    };
    let disks = config
        .get("logical_disks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let roots: Vec<&Value> = disks
        .iter()
        .filter(|d| d.get("is_root_volume").and_then(Value::as_bool) == Some(true))
        .collect();
    if roots.len() > 1 {
        return Err(format!(
            "Raid config cannot have more than one root volume. {} root volumes were specified",
            roots.len()
        ));
    }
    let mut updated = node.clone();
    let mut config = config.clone();
    config.insert("last_updated".into(), json!(crate::time::now_python_str()));
    updated.attrs.insert("raid_config".into(), Value::Object(config));
    if let Some(root) = roots.first() {
        match root.get("size_gb") {
            Some(Value::String(max)) if max == "MAX" => {}
            Some(size) => {
                let gb = size
                    .as_u64()
                    .or_else(|| size.as_str()?.parse().ok())
                    .ok_or_else(|| format!("the root volume's size_gb is not a number: {size}"))?;
                updated.properties.insert("local_gb".into(), json!(gb));
            }
            None => {}
        }
        if let Some(hint) = root.get("root_device_hint") {
            updated.properties.insert("root_device".into(), hint.clone());
        }
        let level = match root.get("raid_level") {
            Some(Value::String(level)) => level.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        updated.update_capabilities(&[("raid_level".into(), level)])?;
    }
    *node = updated;
    Ok(())
}

/// A RAID configuration was deleted: no `raid_config`, no `properties.root_device` (Ironic's
/// `_delete_configuration_final`).
pub fn clear_raid_info(node: &mut NodeRecord) {
    node.properties.remove("root_device");
    node.attrs.insert("raid_config".into(), json!({}));
}

/// A list of disk names, or of at least two disk descriptions (objects).
fn physical_disks_ok(value: &Value) -> bool {
    match value.as_array() {
        Some(items) => items.iter().all(Value::is_string) || items.len() >= 2 && items.iter().all(Value::is_object),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_what_ironic_accepts() {
        let good = json!({"logical_disks": [
            {"raid_level": "1", "size_gb": 100, "is_root_volume": true},
            {"raid_level": "5", "size_gb": "MAX", "controller": "RAID.Integrated.1-1",
             "physical_disks": ["Disk.Bay.0", "Disk.Bay.1", "Disk.Bay.2"]},
            {"raid_level": "JBOD", "size_gb": 0, "disk_type": "ssd", "interface_type": "sas",
             "number_of_physical_disks": 1, "share_physical_disks": false, "volume_name": "scratch"},
        ]});
        assert_eq!(validate(&good), Ok(()));
    }

    #[test]
    fn refuses_each_broken_rule_by_name() {
        let cases = [
            (json!({}), "'logical_disks' is a required property"),
            (json!({"logical_disks": []}), "should be non-empty"),
            (
                json!({"logical_disks": [{"size_gb": 1}]}),
                "'raid_level' is a required property",
            ),
            (
                json!({"logical_disks": [{"raid_level": "7", "size_gb": 1}]}),
                "not valid for raid_level",
            ),
            (
                json!({"logical_disks": [{"raid_level": "1", "size_gb": -1}]}),
                "not valid for size_gb",
            ),
            (
                json!({"logical_disks": [{"raid_level": "1", "size_gb": "ALL"}]}),
                "not valid for size_gb",
            ),
            (
                json!({"logical_disks": [{"raid_level": "1", "size_gb": 1, "number_of_physical_disks": 0}]}),
                "not valid for number_of_physical_disks",
            ),
            (
                json!({"logical_disks": [{"raid_level": "1", "size_gb": 1, "physical_disks": ["a"]}]}),
                "'controller' is a dependency",
            ),
            (
                json!({"logical_disks": [{"raid_level": "1", "size_gb": 1, "bogus": 1}]}),
                "'bogus' was unexpected",
            ),
            (json!({"logical_disks": [], "extra": 1}), "'extra' was unexpected"),
            (
                json!({"logical_disks": [
                    {"raid_level": "1", "size_gb": 1, "is_root_volume": true},
                    {"raid_level": "1", "size_gb": 1, "is_root_volume": true}]}),
                "2 root volumes were specified",
            ),
        ];
        for (config, want) in cases {
            let err = validate(&config).expect_err("must be refused");
            assert!(err.contains(want), "{config}: {err} does not say {want:?}");
        }
    }

    fn node_with_target(target: Value) -> NodeRecord {
        let mut node = NodeRecord {
            uuid: "n1".into(),
            ..Default::default()
        };
        node.attrs.insert("target_raid_config".into(), target);
        node
    }

    #[test]
    fn the_target_is_filtered_by_root_and_other_volumes() {
        let node = node_with_target(json!({"logical_disks": [
            {"raid_level": "1", "size_gb": 10, "is_root_volume": true},
            {"raid_level": "0", "size_gb": "MAX"},
        ]}));
        let names = |v: Value| -> Vec<Value> {
            v["logical_disks"]
                .as_array()
                .expect("as expected")
                .iter()
                .map(|d| d["raid_level"].clone())
                .collect()
        };
        assert_eq!(
            names(filter_target(&node, true, true).expect("as expected")),
            [json!("1"), json!("0")]
        );
        assert_eq!(
            names(filter_target(&node, false, true).expect("as expected")),
            [json!("0")]
        );
        assert_eq!(
            names(filter_target(&node, true, false).expect("as expected")),
            [json!("1")]
        );
        assert_eq!(
            filter_target(&node, false, false).expect_err("refused"),
            "Node n1 has empty target RAID configuration after skipping root volume and skipping non-root volumes."
        );
        assert_eq!(
            filter_target(&node_with_target(json!({})), true, true).expect_err("refused"),
            "Node n1 has no target RAID configuration."
        );
    }

    #[test]
    fn a_built_root_volume_sets_size_hint_and_capability() {
        let mut node = node_with_target(json!({}));
        node.properties.insert("capabilities".into(), json!("boot_mode:uefi"));
        let built = json!({"logical_disks": [
            {"raid_level": "1", "size_gb": 10, "is_root_volume": true, "controller": "software",
             "root_device_hint": {"name": "/dev/md0"}},
            {"raid_level": "0", "size_gb": "MAX", "controller": "software"},
        ]});
        update_raid_info(&mut node, &built).expect("as expected");
        assert_eq!(node.properties["local_gb"], json!(10));
        assert_eq!(node.properties["root_device"], json!({"name": "/dev/md0"}));
        assert_eq!(node.properties["capabilities"], json!("boot_mode:uefi,raid_level:1"));
        let stored = node.attr("raid_config");
        assert_eq!(stored["logical_disks"], built["logical_disks"]);
        assert!(stored["last_updated"].as_str().is_some_and(|t| t.contains(' ')));

        clear_raid_info(&mut node);
        assert_eq!(node.attr("raid_config"), json!({}));
        assert!(!node.properties.contains_key("root_device"));
        assert_eq!(
            node.properties["local_gb"],
            json!(10),
            "deleting leaves the size as Ironic does"
        );
    }

    #[test]
    fn a_built_configuration_that_breaks_the_rules_changes_nothing() {
        let mut node = node_with_target(json!({}));
        let two_roots = json!({"logical_disks": [
            {"raid_level": "1", "size_gb": 10, "is_root_volume": true},
            {"raid_level": "1", "size_gb": 10, "is_root_volume": true},
        ]});
        let before = node.clone();
        assert!(
            update_raid_info(&mut node, &two_roots)
                .expect_err("refused")
                .contains("more than one root volume")
        );
        assert!(update_raid_info(&mut node, &json!("none")).is_err());
        node.properties.insert("capabilities".into(), json!("broken"));
        let one_root = json!({"logical_disks": [{"raid_level": "1", "size_gb": 10, "is_root_volume": true}]});
        assert!(
            update_raid_info(&mut node, &one_root)
                .expect_err("refused")
                .contains("Invalid capabilities")
        );
        node.properties.remove("capabilities");
        assert_eq!(node, before);
    }
}
