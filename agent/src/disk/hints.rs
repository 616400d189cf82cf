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
pub use rivet_common::hints::{Hint, Hints, quote, spec_match, strict_bool};

/// Disks smaller than this are not chosen without hints.
pub const MIN_ROOT_DISK: u64 = 4 << 30;

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
    rivet_common::hints::matches(hints, device.disk.size, device.disk.rotational, |key| {
        device_texts(device, key)
    })
}

/// Parse a hint document; unknown keys and malformed values are errors.
pub fn parse(doc: &JsonObject) -> Result<Hints, AgentError> {
    rivet_common::hints::parse(doc).map_err(|e| AgentError::new(ErrorKind::InvalidCommandParams, e))
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
