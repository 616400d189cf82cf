//! The `pci-devices` collector (IPA 13 `inspector.collect_pci_devices_info`): every device of
//! `/sys/bus/pci/devices`, for Ironic's `pci_devices` and `accelerators` hooks.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::inventory::{SysRoot, sorted_entries};

/// One PCI device, as upstream reports it (`data["pci_devices"]` items). Ids are the hex digits
/// after `0x` in sysfs (`8086`, `1572`, class `020000`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    /// Vendor id (`8086`).
    pub vendor_id: String,
    /// Device id.
    pub product_id: String,
    /// Class code (`020000`: Ethernet controller).
    pub class: String,
    /// Revision (`01`), null when sysfs has none or it is unreadable.
    pub revision: Option<String>,
    /// Bus address (`0000:3b:00.0`).
    pub bus: String,
    /// NUMA node as sysfs writes it (`0`, `-1` when unknown), null when absent.
    pub numa_node_id: Option<String>,
}

/// The part after the first `x` of a sysfs id (`0x8086` → `8086`), as upstream's
/// `split('x')[1]`; `None` without an `x`.
fn after_x(text: &str) -> Option<String> {
    text.trim().split('x').nth(1).map(str::to_owned)
}

/// Read one id file; a warning and `None` when unreadable or malformed.
fn read_id(dir: &Path, bus: &str, file: &str) -> Option<String> {
    match fs::read_to_string(dir.join(file)) {
        Ok(text) => {
            let id = after_x(&text);
            if id.is_none() {
                tracing::warn!(device = bus, file, value = text.trim(), "malformed PCI id");
            }
            id
        }
        Err(e) => {
            tracing::warn!(device = bus, file, error = %e, "cannot read PCI id");
            None
        }
    }
}

/// Every PCI device under `root`, by bus address. A device whose vendor, device or class
/// cannot be read is skipped with a warning, as upstream does.
///
/// # Errors
/// The device directory cannot be listed (upstream then reports "Failed to get list of PCI
/// devices" as an inspection failure).
pub fn collect(root: &SysRoot) -> std::io::Result<Vec<PciDevice>> {
    let base = root.0.join("sys/bus/pci/devices");
    fs::read_dir(&base)?;
    let mut out = Vec::new();
    for bus in sorted_entries(&base) {
        let dir = base.join(&bus);
        if !dir.is_dir() {
            continue;
        }
        let (Some(vendor_id), Some(product_id), Some(class)) = (
            read_id(&dir, &bus, "vendor"),
            read_id(&dir, &bus, "device"),
            read_id(&dir, &bus, "class"),
        ) else {
            continue;
        };
        let revision = if dir.join("revision").is_file() {
            read_id(&dir, &bus, "revision")
        } else {
            None
        };
        let numa_node_id = if dir.join("numa_node").is_file() {
            fs::read_to_string(dir.join("numa_node"))
                .inspect_err(|e| tracing::warn!(device = %bus, error = %e, "cannot read the PCI NUMA node"))
                .ok()
                .map(|n| n.trim().to_owned())
        } else {
            None
        };
        out.push(PciDevice {
            vendor_id,
            product_id,
            class,
            revision,
            bus,
            numa_node_id,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspection::tests::write;

    #[test]
    fn devices_read_as_upstream() {
        let dir = tempfile::tempdir().expect("tmp");
        let r = dir.path();
        let nic = "sys/bus/pci/devices/0000:3b:00.0";
        write(r, &format!("{nic}/vendor"), "0x8086\n");
        write(r, &format!("{nic}/device"), "0x1572\n");
        write(r, &format!("{nic}/class"), "0x020000\n");
        write(r, &format!("{nic}/revision"), "0x01\n");
        write(r, &format!("{nic}/numa_node"), "0\n");
        let bridge = "sys/bus/pci/devices/0000:00:00.0";
        write(r, &format!("{bridge}/vendor"), "0x8086\n");
        write(r, &format!("{bridge}/device"), "0x0d57\n");
        write(r, &format!("{bridge}/class"), "0x060000\n");
        let broken = "sys/bus/pci/devices/0000:00:1f.0";
        write(r, &format!("{broken}/vendor"), "8086\n");
        write(r, &format!("{broken}/device"), "0x0001\n");
        write(r, &format!("{broken}/class"), "0x060100\n");
        let devices = collect(&SysRoot(r.to_owned())).expect("listed");
        let json = serde_json::to_value(&devices).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!([
                {"vendor_id": "8086", "product_id": "0d57", "class": "060000", "revision": null,
                 "bus": "0000:00:00.0", "numa_node_id": null},
                {"vendor_id": "8086", "product_id": "1572", "class": "020000", "revision": "01",
                 "bus": "0000:3b:00.0", "numa_node_id": "0"},
            ]),
            "a vendor id without 0x is skipped, as upstream"
        );
        let keys: Vec<&String> = json[0].as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["vendor_id", "product_id", "class", "revision", "bus", "numa_node_id"],
            "upstream's key order"
        );
    }

    #[test]
    fn an_unlistable_bus_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(collect(&SysRoot(dir.path().to_owned())).is_err());
    }
}
