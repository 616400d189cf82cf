//! Target RAID configurations (API 1.12): the logical disk properties one may name, and the
//! rules a `target_raid_config` must follow before it is stored. The rules are those of Ironic's
//! RAID configuration schema (`ironic/drivers/raid_config_schema.json`, checked by
//! `ironic/common/raid.py`); the descriptions are Rivet's own.

use serde_json::Value;

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
}
