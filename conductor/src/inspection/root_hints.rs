//! The `root-device` hook's choice of disk: the first disk of the inventory that satisfies the
//! node's root device hints, after the disks `skip_block_devices` names are left out.
//!
//! Upstream: `ironic/drivers/modules/inspector/hooks/root_device.py`; the hint grammar is
//! [`rivet_common::hints`], shared with the agent.

use rivet_common::hints;
use serde_json::Value;

/// The chosen disk (`None` when no disk satisfies the hints); the error says why the hints are
/// invalid.
pub fn choose(hint_doc: &Value, disks: &[Value], skip: Option<&Value>) -> Result<Option<Value>, String> {
    let parsed = parse(hint_doc)?;
    let mut skipped: Vec<&str> = Vec::new();
    for skip_hints in skip.and_then(Value::as_array).into_iter().flatten() {
        let skip_parsed = parse(skip_hints)?;
        for disk in disks.iter().filter(|d| satisfies(d, &skip_parsed)) {
            if let Some(name) = disk.get("name").and_then(Value::as_str) {
                tracing::warn!(disk = name, "root device: skipped as skip_block_devices asks");
                skipped.push(name);
            }
        }
    }
    Ok(disks
        .iter()
        .filter(|d| {
            !d.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| skipped.contains(&n))
        })
        .find(|d| satisfies(d, &parsed))
        .cloned())
}

fn parse(doc: &Value) -> Result<hints::Hints, String> {
    let Value::Object(doc) = doc else {
        return Err(format!("root device hints must be a dictionary, got {doc}"));
    };
    hints::parse(doc)
}

fn satisfies(disk: &Value, parsed: &hints::Hints) -> bool {
    let size = disk.get("size").and_then(Value::as_u64).unwrap_or(0);
    let rotational = disk.get("rotational").and_then(Value::as_bool).unwrap_or(false);
    hints::matches(parsed, size, rotational, |key| hints::inventory_disk_texts(disk, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hints_choose_among_inventory_disks() {
        let disks = json!([
            {"name": "/dev/sda", "size": 10_737_418_240u64, "model": "QEMU HARDDISK", "rotational": true},
            {"name": "/dev/sdb", "size": 107_374_182_400u64, "model": "Samsung SSD", "rotational": false},
        ]);
        let disks = disks.as_array().expect("list");
        let pick = |h: Value| choose(&h, disks, None).expect("valid").map(|d| d["name"].clone());
        assert_eq!(pick(json!({"size": ">= 50"})), Some(json!("/dev/sdb")));
        assert_eq!(pick(json!({"model": "<in> samsung"})), Some(json!("/dev/sdb")));
        assert_eq!(pick(json!({"rotational": true})), Some(json!("/dev/sda")));
        assert_eq!(pick(json!({"name": "sda"})), Some(json!("/dev/sda")));
        assert_eq!(pick(json!({"size": 20})), None);
        let skip = json!([{"name": "/dev/sda"}]);
        assert_eq!(
            choose(&json!({"size": ">= 1"}), disks, Some(&skip))
                .expect("valid")
                .map(|d| d["name"].clone()),
            Some(json!("/dev/sdb"))
        );
        assert!(choose(&json!({"colour": "red"}), disks, None).is_err());
    }
}
