//! Inspection hooks: what the conductor makes of the data a ramdisk sends, each named as in
//! Ironic (`[inspector]hooks`). Every hook's `preprocess` runs first (in the configured order),
//! then every hook's main part.
//!
//! Upstream: `ironic/drivers/modules/inspector/hooks/*.py`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::config::{AddPorts, InspectorConfig, KeepPorts};
use super::lldp;
use crate::model::{NodeRecord, PortRecord};

/// Every hook Rivet has, in a valid order.
pub const HOOKS: &[&str] = &[
    "ramdisk-error",
    "validate-interfaces",
    "ports",
    "architecture",
    "memory",
    "cpus",
    "root-device",
    "boot-mode",
    "cpu-capabilities",
    "local-link-connection",
    "pci-devices",
    "physical-network",
];

/// Hooks that do nothing until configured (`pci_device_alias`, `physical_network_cidr_map`):
/// not in the default list.
pub const OPTIONAL: &[&str] = &["pci-devices", "physical-network"];

/// Hooks that need another hook earlier in the list (Ironic's `dependencies`).
pub fn dependency(hook: &str) -> Option<&'static str> {
    match hook {
        "ports" | "local-link-connection" | "physical-network" => Some("validate-interfaces"),
        _ => None,
    }
}

/// What the hooks change besides the node: the node's ports.
#[derive(Debug, Default)]
pub struct PortChanges {
    /// Ports to create.
    pub created: Vec<PortRecord>,
    /// Existing ports changed (saved whole).
    pub updated: Vec<PortRecord>,
    /// Ports to delete (UUIDs).
    pub deleted: Vec<String>,
}

/// Data the hooks work on.
#[derive(Debug)]
pub struct HookInput<'a> {
    /// The inventory, read only.
    pub inventory: &'a Value,
    /// The plugin data; hooks add `all_interfaces`, `valid_interfaces`, `macs`, `local_gb`.
    pub plugin_data: &'a mut Value,
    /// The node's ports as they are.
    pub ports: &'a [PortRecord],
    /// MAC addresses that belong to a port of another node.
    pub foreign_macs: &'a BTreeSet<String>,
}

/// Run `hooks` (the inspect interface's configured list) on the node. The error is the inspection's failure reason.
pub fn run(
    config: &InspectorConfig,
    hooks: &[String],
    node: &mut NodeRecord,
    input: HookInput<'_>,
) -> Result<PortChanges, String> {
    for hook in hooks {
        match hook.as_str() {
            "ramdisk-error" => {
                if let Some(error) = input
                    .plugin_data
                    .get("error")
                    .filter(|e| super::rules::operators::truthy(e))
                {
                    return Err(format!(
                        "Failed to inspect hardware. Reason: Ramdisk reported error: {}",
                        super::rules::format::py_str(error)
                    ));
                }
            }
            "validate-interfaces" => validate_interfaces(config, node, input.inventory, input.plugin_data)?,
            _ => {}
        }
    }
    let mut changes = PortChanges::default();
    let mut ports: Vec<PortRecord> = input.ports.to_vec();
    for hook in hooks {
        match hook.as_str() {
            "ports" => ports_hook(
                config,
                node,
                input.plugin_data,
                &mut ports,
                input.foreign_macs,
                &mut changes,
            ),
            "architecture" => {
                let arch = input.inventory.pointer("/cpu/architecture").filter(|a| a.is_string());
                let Some(arch) = arch else {
                    return Err(invalid_inventory(
                        node,
                        &format!(
                            "Inventory has malformed or missing CPU architecture information: {} for node {}.",
                            super::rules::format::py_repr(input.inventory.get("cpu").unwrap_or(&Value::Null)),
                            node.uuid
                        ),
                    ));
                };
                node.properties.insert("cpu_arch".into(), arch.clone());
            }
            "memory" => {
                let Some(mb) = input.inventory.pointer("/memory/physical_mb").filter(|m| m.is_number()) else {
                    return Err(invalid_inventory(
                        node,
                        &format!(
                            "Inventory has missing memory information: {} for node {}.",
                            super::rules::format::py_repr(input.inventory.get("memory").unwrap_or(&Value::Null)),
                            node.uuid
                        ),
                    ));
                };
                node.properties.insert("memory_mb".into(), mb.clone());
            }
            "cpus" => match input.inventory.pointer("/cpu/count").and_then(Value::as_u64) {
                Some(n) if n > 0 => {
                    node.properties.insert("cpus".into(), json!(n));
                }
                _ => tracing::warn!(node = %node.uuid, "no CPU count in the inventory"),
            },
            "root-device" => root_device(config, node, input.inventory, input.plugin_data)?,
            "boot-mode" => match input
                .inventory
                .pointer("/boot/current_boot_mode")
                .and_then(Value::as_str)
            {
                Some(mode) => node.update_capabilities(&[("boot_mode".into(), mode.to_owned())])?,
                None => tracing::warn!(node = %node.uuid, "no boot mode in the inventory"),
            },
            "cpu-capabilities" => {
                let flags: BTreeSet<&str> = input
                    .inventory
                    .pointer("/cpu/flags")
                    .and_then(Value::as_array)
                    .map(|f| f.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if flags.is_empty() {
                    tracing::warn!(node = %node.uuid, "no CPU flags in the inventory");
                } else {
                    let caps: Vec<(String, String)> = config
                        .cpu_capabilities
                        .iter()
                        .filter(|(flag, _)| flags.contains(flag.as_str()))
                        .map(|(_, name)| (name.clone(), "true".to_owned()))
                        .collect();
                    node.update_capabilities(&caps)?;
                }
            }
            "local-link-connection" => {
                local_link_connection(node, input.inventory, input.plugin_data, &mut ports, &mut changes)
            }
            "pci-devices" => pci_devices(config, node, input.plugin_data)?,
            "physical-network" => {
                physical_network(config, input.inventory, input.plugin_data, &mut ports, &mut changes)
            }
            _ => {}
        }
    }
    Ok(changes)
}

fn invalid_inventory(node: &NodeRecord, reason: &str) -> String {
    format!("Inventory for node {} is invalid: {reason}", node.uuid)
}

/// The PXE interface's MAC from the inventory (`boot.pxe_interface`, also as pxelinux's
/// `01-aa-bb-…`), normalised.
fn pxe_mac(inventory: &Value) -> Option<String> {
    let raw = inventory.pointer("/boot/pxe_interface").and_then(Value::as_str)?;
    let mac = match raw.split_once('-') {
        Some((_, rest)) => rest.replace('-', ":"),
        None => raw.to_owned(),
    };
    Some(mac.to_lowercase()).filter(|m| !m.is_empty())
}

/// A lower-case, colon-separated 48-bit MAC address, as the ports API writes them.
fn valid_mac(mac: &str) -> bool {
    crate::api::normalise_mac(mac).is_some_and(|m| m.len() == 17 && m == mac)
}

fn validate_interfaces(
    config: &InspectorConfig,
    node: &NodeRecord,
    inventory: &Value,
    plugin_data: &mut Value,
) -> Result<(), String> {
    let Some(list) = inventory.get("interfaces").and_then(Value::as_array) else {
        return Err(invalid_inventory(node, "no interfaces present in inventory"));
    };
    let pxe = pxe_mac(inventory);
    let mut all = Map::new();
    for iface in list {
        let name = iface.get("name").and_then(Value::as_str).unwrap_or_default();
        let Some(mac) = iface
            .get("mac_address")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        else {
            continue;
        };
        let mac = mac.to_lowercase();
        if name.is_empty() || !valid_mac(&mac) {
            tracing::warn!(node = %node.uuid, interface = name, "interface skipped: no name or an invalid MAC address");
            continue;
        }
        let mut entry = iface.as_object().cloned().unwrap_or_default();
        let v6 = iface
            .get("ipv6_address")
            .and_then(Value::as_str)
            .map(|a| a.split('%').next().unwrap_or_default().to_owned());
        entry.insert("mac_address".into(), json!(mac));
        entry.insert("pxe_enabled".into(), json!(pxe.as_deref() == Some(mac.as_str())));
        entry.insert("ipv6_address".into(), json!(v6));
        all.insert(name.to_owned(), Value::Object(entry));
    }
    if all.is_empty() {
        return Err(invalid_inventory(node, "no valid network interfaces"));
    }
    let mut valid = Map::new();
    for (name, iface) in &all {
        let ip = iface
            .get("ipv4_address")
            .and_then(Value::as_str)
            .or_else(|| iface.get("ipv6_address").and_then(Value::as_str))
            .filter(|ip| !ip.is_empty());
        let loopback = ip
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if name == "lo" || loopback {
            continue;
        }
        let is_pxe = iface.get("pxe_enabled").and_then(Value::as_bool).unwrap_or(true);
        if config.add_ports == AddPorts::Pxe && pxe.is_some() && !is_pxe {
            continue;
        }
        if config.add_ports == AddPorts::Active && ip.is_none() {
            continue;
        }
        valid.insert(name.clone(), iface.clone());
    }
    if valid.is_empty() {
        return Err(invalid_inventory(
            node,
            &format!(
                "no network interfaces match the configuration (add_ports set to \"{}\")",
                config.add_ports.as_str()
            ),
        ));
    }
    let macs: Vec<Value> = valid.values().filter_map(|i| i.get("mac_address").cloned()).collect();
    if let Some(data) = plugin_data.as_object_mut() {
        data.insert("all_interfaces".into(), Value::Object(all));
        data.insert("valid_interfaces".into(), Value::Object(valid));
        data.insert("macs".into(), Value::Array(macs));
    }
    Ok(())
}

fn interfaces<'v>(plugin_data: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    plugin_data
        .get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
}

fn mac_of(iface: &Value) -> String {
    iface
        .get("mac_address")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The `ports` hook: create ports for the valid interfaces (unless `add_ports` is disabled),
/// then bring the node's ports in line: delete those `keep_ports` does not keep, set
/// `pxe_enabled` from the inventory, record DHCP client ids.
fn ports_hook(
    config: &InspectorConfig,
    node: &NodeRecord,
    plugin_data: &Value,
    ports: &mut Vec<PortRecord>,
    foreign: &BTreeSet<String>,
    changes: &mut PortChanges,
) {
    if config.add_ports != AddPorts::Disabled {
        for iface in interfaces(plugin_data, "valid_interfaces") {
            let mac = mac_of(iface);
            if ports.iter().any(|p| p.address == mac) || foreign.contains(&mac) {
                tracing::info!(node = %node.uuid, %mac, "a port already exists for this MAC address");
                continue;
            }
            let mut extra = Map::new();
            if let Some(id) = iface.get("client_id").and_then(Value::as_str).filter(|c| !c.is_empty()) {
                extra.insert("client-id".into(), json!(id));
            }
            let pxe = iface.get("pxe_enabled").and_then(Value::as_bool).unwrap_or(false);
            let mut attrs = Map::new();
            attrs.insert("extra".into(), Value::Object(extra));
            let port = PortRecord {
                uuid: uuid::Uuid::new_v4().to_string(),
                address: mac.clone(),
                node_uuid: node.uuid.clone(),
                pxe_enabled: pxe,
                attrs,
                created_at: crate::time::now_iso(),
                updated_at: None,
            };
            tracing::info!(node = %node.uuid, %mac, pxe, "port created from inspection");
            changes.created.push(port.clone());
            ports.push(port);
        }
    }
    let all: Vec<&Value> = interfaces(plugin_data, "all_interfaces").collect();
    let expected: Option<BTreeSet<String>> = match config.keep_ports {
        KeepPorts::All => None,
        KeepPorts::Present => Some(all.iter().map(|i| mac_of(i)).collect()),
        KeepPorts::Added => Some(
            plugin_data
                .get("macs")
                .and_then(Value::as_array)
                .map(|m| m.iter().filter_map(Value::as_str).map(str::to_lowercase).collect())
                .unwrap_or_default(),
        ),
    };
    let pxe_macs: BTreeSet<String> = all
        .iter()
        .filter(|i| i.get("pxe_enabled").and_then(Value::as_bool) == Some(true))
        .map(|i| mac_of(i))
        .collect();
    let client_ids: BTreeMap<String, String> = all
        .iter()
        .filter_map(|i| Some((mac_of(i), i.get("client_id")?.as_str()?.to_owned())))
        .filter(|(_, id)| !id.is_empty())
        .collect();
    let created: BTreeSet<String> = changes.created.iter().map(|p| p.uuid.clone()).collect();
    let mut kept = Vec::new();
    for mut port in ports.drain(..) {
        if let Some(expected) = &expected
            && !expected.is_empty()
            && !expected.contains(&port.address)
        {
            tracing::info!(node = %node.uuid, port = %port.uuid, mac = %port.address, "port deleted: its MAC is not in the inventory");
            if created.contains(&port.uuid) {
                changes.created.retain(|p| p.uuid != port.uuid);
            } else {
                changes.deleted.push(port.uuid);
            }
            continue;
        }
        let mut changed = false;
        if config.update_pxe_enabled {
            let pxe = pxe_macs.contains(&port.address);
            if pxe != port.pxe_enabled {
                port.pxe_enabled = pxe;
                changed = true;
            }
        }
        if let Some(id) = client_ids.get(&port.address)
            && port
                .attrs
                .get("extra")
                .and_then(|e| e.get("client-id"))
                .and_then(Value::as_str)
                != Some(id.as_str())
        {
            let extra = port.attrs.entry("extra").or_insert_with(|| json!({}));
            if let Some(extra) = extra.as_object_mut() {
                extra.insert("client-id".into(), json!(id));
            }
            changed = true;
        }
        if changed {
            record_change(changes, &created, &port);
        }
        kept.push(port);
    }
    *ports = kept;
}

fn record_change(changes: &mut PortChanges, created: &BTreeSet<String>, port: &PortRecord) {
    if created.contains(&port.uuid) {
        if let Some(p) = changes.created.iter_mut().find(|p| p.uuid == port.uuid) {
            *p = port.clone();
        }
    } else if let Some(p) = changes.updated.iter_mut().find(|p| p.uuid == port.uuid) {
        *p = port.clone();
    } else {
        changes.updated.push(port.clone());
    }
}

/// The `root-device` hook: `local_gb` from the root disk the ramdisk chose (`root_disk`), less
/// 1 GiB for partitioning (`disk_partitioning_spacing`); 0 for a diskless node.
fn root_device(
    config: &InspectorConfig,
    node: &mut NodeRecord,
    inventory: &Value,
    plugin_data: &mut Value,
) -> Result<(), String> {
    let hints = node
        .properties
        .get("root_device")
        .filter(|h| super::rules::operators::truthy(h));
    if let Some(hints) = hints {
        let disks = inventory
            .get("disks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let chosen = super::root_hints::choose(hints, &disks, node.properties.get("skip_block_devices")).map_err(|e| {
            format!(
                "Failed to inspect hardware. Reason: No disks could be found using root device hints {} for node {} because they failed to validate. Error: {e}",
                super::rules::format::py_repr(hints),
                node.uuid
            )
        })?;
        let Some(disk) = chosen else {
            return Err(format!(
                "Failed to inspect hardware. Reason: No disks satisfied root device hints for node {}",
                node.uuid
            ));
        };
        if let Some(data) = plugin_data.as_object_mut() {
            data.insert("root_disk".into(), disk);
        }
    }
    const GIB: u64 = 1 << 30;
    let size = plugin_data.pointer("/root_disk/size").and_then(Value::as_u64);
    let mut local_gb = size.map(|s| s / GIB).unwrap_or(0);
    if size.is_some() && local_gb == 0 {
        tracing::warn!(node = %node.uuid, "the root disk is smaller than 1 GiB or its size is unknown");
    } else if local_gb > 0 && config.disk_partitioning_spacing {
        local_gb -= 1;
    }
    if size.is_none() {
        tracing::info!(node = %node.uuid, "no root device found: the node is taken as diskless");
    }
    if let Some(data) = plugin_data.as_object_mut() {
        data.insert("local_gb".into(), json!(local_gb));
    }
    node.properties.insert("local_gb".into(), json!(local_gb));
    Ok(())
}

/// The inventory's interfaces that `validate-interfaces` kept (`plugin_data.all_interfaces`)
/// and that have a port, each with the index of its port in `ports`.
fn interfaces_with_ports<'i>(
    inventory: &'i Value,
    plugin_data: &Value,
    ports: &[PortRecord],
) -> Vec<(&'i Value, usize)> {
    let all = plugin_data.get("all_interfaces").and_then(Value::as_object);
    inventory
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|iface| {
            let name = iface.get("name").and_then(Value::as_str).unwrap_or_default();
            all.is_some_and(|a| a.contains_key(name))
        })
        .filter_map(|iface| {
            let mac = mac_of(iface).to_lowercase();
            ports.iter().position(|p| p.address == mac).map(|at| (iface, at))
        })
        .collect()
}

/// The `pci-devices` hook: for each configured alias, how many of the PCI devices the agent
/// listed (`plugin_data.pci_devices`, from its `pci-devices` collector) have its vendor and
/// product IDs, as the capability `name:count` (only aliases found).
fn pci_devices(config: &InspectorConfig, node: &mut NodeRecord, plugin_data: &Value) -> Result<(), String> {
    let Some(devices) = plugin_data.get("pci_devices").and_then(Value::as_array) else {
        if !config.pci_device_alias.is_empty() {
            tracing::warn!(node = %node.uuid, "no PCI devices in the inspection data (is the pci-devices collector on?)");
        }
        return Ok(());
    };
    let mut counts: Vec<(String, u64)> = Vec::new();
    for device in devices {
        let ids = (
            device.get("vendor_id").and_then(Value::as_str),
            device.get("product_id").and_then(Value::as_str),
        );
        let Some(alias) = config
            .pci_device_alias
            .iter()
            .find(|a| ids == (Some(a.vendor_id.as_str()), Some(a.product_id.as_str())))
        else {
            continue;
        };
        match counts.iter_mut().find(|(name, _)| *name == alias.name) {
            Some(slot) => slot.1 += 1,
            None => counts.push((alias.name.clone(), 1)),
        }
    }
    if counts.is_empty() {
        return Ok(());
    }
    tracing::info!(node = %node.uuid, ?counts, "PCI devices found");
    let caps: Vec<(String, String)> = counts.into_iter().map(|(name, n)| (name, n.to_string())).collect();
    node.update_capabilities(&caps)
}

/// The `physical-network` hook: each port whose interface has an address (IPv4 first, then
/// IPv6) in a network of `physical_network_cidr_map` gets that network's physical network.
fn physical_network(
    config: &InspectorConfig,
    inventory: &Value,
    plugin_data: &Value,
    ports: &mut [PortRecord],
    changes: &mut PortChanges,
) {
    if config.physical_network_cidr_map.is_empty() {
        return;
    }
    let created: BTreeSet<String> = changes.created.iter().map(|p| p.uuid.clone()).collect();
    for (iface, at) in interfaces_with_ports(inventory, plugin_data, ports) {
        let port = &mut ports[at];
        let found = ["ipv4_address", "ipv6_address"]
            .iter()
            .filter_map(|key| iface.get(*key).and_then(Value::as_str))
            .filter_map(|text| text.parse::<std::net::IpAddr>().ok())
            .find_map(|ip| {
                config
                    .physical_network_cidr_map
                    .iter()
                    .find(|(cidr, _)| cidr.contains(ip))
                    .map(|(_, network)| network.clone())
            });
        let Some(network) = found else {
            continue;
        };
        if port.attrs.get("physical_network").and_then(Value::as_str) != Some(network.as_str()) {
            port.attrs.insert("physical_network".into(), json!(network));
            record_change(changes, &created, port);
        }
    }
}

/// The `local-link-connection` hook: a port's `switch_id` (chassis ID when it is a MAC),
/// `port_id` and `switch_info` (system name) from the LLDP TLVs its interface received, where
/// the port does not have them yet.
fn local_link_connection(
    node: &NodeRecord,
    inventory: &Value,
    plugin_data: &Value,
    ports: &mut [PortRecord],
    changes: &mut PortChanges,
) {
    let created: BTreeSet<String> = changes.created.iter().map(|p| p.uuid.clone()).collect();
    for (iface, at) in interfaces_with_ports(inventory, plugin_data, ports) {
        let port = &mut ports[at];
        let tlvs = plugin_data
            .get("lldp_raw")
            .and_then(|r| r.get(iface.get("name").and_then(Value::as_str).unwrap_or_default()))
            .filter(|t| !t.is_null())
            .or_else(|| iface.get("lldp").filter(|t| !t.is_null()));
        let Some(tlvs) = tlvs.and_then(Value::as_array) else {
            tracing::warn!(node = %node.uuid, mac = %port.address, "no LLDP data for this interface");
            continue;
        };
        let Some(found) = lldp::local_link(tlvs) else {
            tracing::warn!(node = %node.uuid, mac = %port.address, "LLDP data could not be parsed");
            continue;
        };
        let llc = port.attrs.entry("local_link_connection").or_insert_with(|| json!({}));
        let Some(llc) = llc.as_object_mut() else { continue };
        let mut changed = false;
        for (key, value) in found {
            if !llc.contains_key(key) {
                llc.insert(key.to_owned(), json!(value));
                changed = true;
            }
        }
        if changed {
            record_change(changes, &created, port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspection::config::{InspectorFile, PciAlias};

    fn config(file: InspectorFile) -> InspectorConfig {
        InspectorConfig::resolve(file).expect("a valid configuration")
    }

    fn port(mac: &str) -> PortRecord {
        PortRecord {
            uuid: format!("port-{mac}"),
            address: mac.into(),
            ..Default::default()
        }
    }

    fn inventory() -> Value {
        json!({"interfaces": [
            {"name": "eth0", "mac_address": "52:54:00:00:00:01", "ipv4_address": "192.0.2.10"},
            {"name": "eth1", "mac_address": "52:54:00:00:00:02", "ipv4_address": null, "ipv6_address": "2001:db8::7"},
            {"name": "eth2", "mac_address": "52:54:00:00:00:03", "ipv4_address": "198.51.100.1"},
        ]})
    }

    #[test]
    fn pci_devices_are_counted_by_alias_into_capabilities() {
        let config = config(InspectorFile {
            pci_device_alias: Some(vec![PciAlias {
                vendor_id: "8086".into(),
                product_id: "1572".into(),
                name: "x710".into(),
            }]),
            ..Default::default()
        });
        let mut node = NodeRecord::default();
        node.properties.insert("capabilities".into(), json!("boot_mode:uefi"));
        let plugin_data = json!({"pci_devices": [
            {"vendor_id": "8086", "product_id": "1572", "bus": "0000:01:00.0"},
            {"vendor_id": "8086", "product_id": "1572", "bus": "0000:01:00.1"},
            {"vendor_id": "15b3", "product_id": "1017", "bus": "0000:02:00.0"},
        ]});
        pci_devices(&config, &mut node, &plugin_data).expect("counted");
        assert_eq!(node.properties["capabilities"], "boot_mode:uefi,x710:2");
        // Nothing listed, nothing changed.
        let mut untouched = NodeRecord::default();
        pci_devices(&config, &mut untouched, &json!({})).expect("no data");
        assert!(untouched.properties.get("capabilities").is_none());
    }

    #[test]
    fn ports_get_the_physical_network_of_their_interface_s_address() {
        let config = config(InspectorFile {
            physical_network_cidr_map: Some(vec!["192.0.2.0/24:physnet-a".into(), "2001:db8::/64:physnet-b".into()]),
            ..Default::default()
        });
        let plugin_data = json!({"all_interfaces": {"eth0": {}, "eth1": {}, "eth2": {}}});
        let mut ports = vec![
            port("52:54:00:00:00:01"),
            port("52:54:00:00:00:02"),
            port("52:54:00:00:00:03"),
        ];
        let mut changes = PortChanges::default();
        physical_network(&config, &inventory(), &plugin_data, &mut ports, &mut changes);
        let networks: Vec<Option<&str>> = ports
            .iter()
            .map(|p| p.attrs.get("physical_network").and_then(Value::as_str))
            .collect();
        assert_eq!(networks, [Some("physnet-a"), Some("physnet-b"), None]);
        assert_eq!(changes.updated.len(), 2, "only the ports that changed are saved");
    }

    #[test]
    fn a_cidr_map_entry_must_be_a_network_and_a_name() {
        for bad in [
            "192.0.2.1/24:physnet",
            "192.0.2.0/24",
            "192.0.2.0/24:",
            "nonsense:physnet",
        ] {
            let refused = InspectorConfig::resolve(InspectorFile {
                physical_network_cidr_map: Some(vec![bad.into()]),
                ..Default::default()
            });
            assert!(refused.is_err(), "{bad}");
        }
    }
}
