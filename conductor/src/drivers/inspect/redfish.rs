//! `redfish` inspection, out of band: no ramdisk boots. The inventory is built from the BMC's
//! ComputerSystem (memory and processor summaries, boot mode, vendor), its Processors,
//! EthernetInterfaces, Storage (drives and volumes) and SimpleStorage, in the shape an agent
//! reports, so the same hooks and rules apply; `memory_mb`, `local_gb` and the `boot_mode`
//! capability are set from it as Ironic sets them.
//!
//! Upstream: `ironic/drivers/modules/redfish/inspect.py` (`inspect_hardware`,
//! `_detect_local_gb`, `_get_processor_info`, `_get_interface_info`, `_get_simple_disks`).

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::drivers::bmc::redfish::{Redfish, check_driver_info};
use crate::drivers::{DriverError, Inspect, InspectStart, Interface, Task};
use crate::model::NodeRecord;

const GIB: f64 = (1u64 << 30) as f64;
/// Disks smaller than this are not counted for `local_gb` (Ironic's 4 GiB).
const MIN_DISK: u64 = 4 << 30;

/// Out-of-band inspection through the node's Redfish BMC.
#[derive(Debug)]
pub struct RedfishInspect;

#[async_trait]
impl Interface for RedfishInspect {
    fn name(&self) -> &'static str {
        "redfish"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        check_driver_info(node)
    }
}

/// The `@odata.id` links of a collection's members.
fn member_links(collection: &Value) -> Vec<String> {
    collection["Members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|l| l["@odata.id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn link<'v>(resource: &'v Value, name: &str) -> Option<&'v str> {
    resource[name]["@odata.id"].as_str()
}

/// The members of the collection `system` links as `name` (none when it has no such link).
async fn members(bmc: &Redfish, resource: &Value, name: &str) -> Result<Vec<Value>, DriverError> {
    let Some(path) = link(resource, name) else {
        return Ok(Vec::new());
    };
    let collection = bmc.get(path).await?;
    let mut out = Vec::new();
    for member in member_links(&collection) {
        out.push(bmc.get(&member).await?);
    }
    Ok(out)
}

/// A count as BMCs write it: a number, or a number in a string (sushy-tools' processors; sushy
/// reads both).
fn count(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Redfish's `InstructionSet` as an inventory architecture (sushy's mapping).
fn architecture(instruction_set: Option<&str>) -> &'static str {
    match instruction_set {
        Some("x86") => "i686",
        Some("x86-64") => "x86_64",
        Some("IA-64") => "ia64",
        Some("ARM-A32") => "arm",
        Some("ARM-A64") => "aarch64",
        Some("MIPS32") => "mips",
        Some("MIPS64") => "mips64",
        _ => "",
    }
}

/// A 48-bit MAC address, lower-case and colon-separated (`None` for anything else).
fn normalise_mac(mac: &str) -> Option<String> {
    crate::api::normalise_mac(mac.trim()).filter(|m| m.len() == 17)
}

/// The first size of at least 4 GiB among sorted `sizes`, or 0.
fn first_usable(mut sizes: Vec<u64>) -> u64 {
    sizes.sort_unstable();
    sizes.into_iter().find(|s| *s >= MIN_DISK).unwrap_or(0)
}

/// What the BMC reports, as an inventory, and the properties Ironic sets directly.
pub async fn collect(bmc: &Redfish) -> Result<(Value, Map<String, Value>), DriverError> {
    let (_, system) = bmc.system().await?;
    let mut inventory = Map::new();
    let mut props = Map::new();
    if let Some(gib) = system["MemorySummary"]["TotalSystemMemoryGiB"]
        .as_f64()
        .filter(|g| *g > 0.0)
    {
        let mb = if gib.fract() == 0.0 {
            json!(gib as u64 * 1024)
        } else {
            json!(gib * 1024.0)
        };
        props.insert("memory_mb".into(), mb.clone());
        inventory.insert("memory".into(), json!({"physical_mb": mb}));
    }
    let mut cpu = json!({"count": 0, "architecture": ""});
    let processors = members(bmc, &system, "Processors").await?;
    if let Some(first) = processors.first() {
        let threads: u64 = processors.iter().filter_map(|p| count(&p["TotalThreads"])).sum();
        cpu["count"] = json!(threads);
        if let Some(model) = first["Model"].as_str() {
            cpu["model_name"] = json!(model);
        }
        if !first["MaxSpeedMHz"].is_null() {
            cpu["frequency"] = first["MaxSpeedMHz"].clone();
        }
        cpu["architecture"] = json!(architecture(first["InstructionSet"].as_str()));
    }
    inventory.insert("cpu".into(), cpu);

    // Disks and local_gb: Storage's drives and volumes, SimpleStorage's enabled devices.
    let storages = members(bmc, &system, "Storage").await?;
    let mut disks = Vec::new();
    let (mut drive_sizes, mut volume_sizes) = (Vec::new(), Vec::new());
    for storage in &storages {
        for drive in storage["Drives"].as_array().into_iter().flatten() {
            let Some(path) = drive["@odata.id"].as_str() else {
                continue;
            };
            let drive = bmc.get(path).await?;
            if let Some(size) = drive["CapacityBytes"].as_u64() {
                drive_sizes.push(size);
            }
            let mut disk = json!({"name": drive["Name"], "size": drive["CapacityBytes"], "vendor": drive["Manufacturer"],
                                  "model": drive["Model"], "serial": drive["SerialNumber"]});
            if let Some(media) = drive["MediaType"].as_str() {
                disk["rotational"] = json!(media == "HDD");
            }
            disks.push(disk);
        }
        for volume in members(bmc, storage, "Volumes").await? {
            if let Some(size) = volume["CapacityBytes"].as_u64() {
                volume_sizes.push(size);
            }
        }
    }
    let mut simple_sizes = Vec::new();
    for simple in members(bmc, &system, "SimpleStorage").await? {
        for device in simple["Devices"].as_array().into_iter().flatten() {
            let size = device["CapacityBytes"].as_u64();
            if storages.is_empty() {
                disks.push(json!({"name": device["Name"], "size": device["CapacityBytes"]}));
            }
            if device["Status"]["State"].as_str() == Some("Enabled")
                && let Some(size) = size
            {
                simple_sizes.push(size);
            }
        }
    }
    let simple = first_usable(simple_sizes);
    let mut storage = first_usable(volume_sizes);
    if storage == 0 {
        storage = first_usable(drive_sizes);
    }
    let chosen = if simple > 0 && storage > 0 {
        simple.min(storage)
    } else {
        simple.max(storage)
    };
    let local_gb = ((chosen as f64 / GIB) - 1.0).max(0.0) as u64;
    props.insert("local_gb".into(), json!(local_gb));
    if !disks.is_empty() {
        inventory.insert("disks".into(), Value::Array(disks));
    }

    let mut interfaces = Vec::new();
    for eth in members(bmc, &system, "EthernetInterfaces").await? {
        let Some(mac) = eth["MACAddress"].as_str().and_then(normalise_mac) else {
            tracing::warn!(interface = %eth["Id"], "Redfish inspection: a NIC without a valid MAC is ignored");
            continue;
        };
        let mut iface = json!({"mac_address": mac, "name": eth["Id"]});
        if let Some(speed) = eth["SpeedMbps"].as_u64() {
            iface["speed_mbps"] = json!(speed);
        }
        interfaces.push(iface);
    }
    inventory.insert("interfaces".into(), Value::Array(interfaces));

    let mut vendor = Map::new();
    for (key, field) in [
        ("product_name", "Model"),
        ("serial_number", "SerialNumber"),
        ("manufacturer", "Manufacturer"),
        ("system_uuid", "UUID"),
    ] {
        if let Some(v) = system[field].as_str().filter(|v| !v.is_empty()) {
            vendor.insert(key.into(), json!(v));
        }
    }
    if !vendor.is_empty() {
        inventory.insert("system_vendor".into(), Value::Object(vendor));
    }
    let mode = match system["Boot"]["BootSourceOverrideMode"].as_str() {
        Some("UEFI") => Some("uefi"),
        Some("Legacy") => Some("bios"),
        _ => None,
    };
    if let Some(mode) = mode {
        inventory.insert("boot".into(), json!({"current_boot_mode": mode}));
        props.insert("boot_mode".into(), json!(mode));
    }
    Ok((Value::Object(inventory), props))
}

#[async_trait]
impl Inspect for RedfishInspect {
    async fn inspect_hardware(&self, task: &mut Task) -> Result<InspectStart, DriverError> {
        let bmc = Redfish::for_node(&task.node)?;
        let (inventory, mut found) = collect(&bmc).await?;
        let props = &mut task.node.properties;
        for key in ["memory_mb", "local_gb"] {
            if let Some(value) = found.remove(key) {
                props.insert(key.into(), value);
            }
        }
        if let Some(mode) = found.remove("boot_mode").and_then(|m| m.as_str().map(str::to_owned)) {
            // Ironic adds the capability only when the node has none yet.
            let caps = props
                .get("capabilities")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if !caps.split(',').any(|c| c.starts_with("boot_mode:")) {
                let joined = if caps.is_empty() {
                    format!("boot_mode:{mode}")
                } else {
                    format!("{caps},boot_mode:{mode}")
                };
                props.insert("capabilities".into(), json!(joined));
            }
        }
        Ok(InspectStart::Done(Some((inventory, json!({})))))
    }

    fn hooks<'c>(&self, config: &'c crate::inspection::config::InspectorConfig) -> &'c [String] {
        &config.redfish_hooks
    }

    fn essential_properties(&self) -> &'static [&'static str] {
        &["memory_mb", "local_gb", "cpu_arch"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_may_be_written_as_strings() {
        assert_eq!(count(&json!(4)), Some(4));
        assert_eq!(
            count(&json!("2")),
            Some(2),
            "sushy-tools writes TotalThreads as a string"
        );
        assert_eq!(count(&json!("two")), None);
        assert_eq!(count(&Value::Null), None);
    }
}
