//! Inspection settings: the `[inspector]` table of the conductor's TOML file, named as Ironic's
//! `[inspector]` options, with `inspect_wait_timeout` (Ironic's `[conductor]` option) and the
//! inspection rules' `built_in_rules` and `mask_secrets` (Ironic's `[inspection_rules]`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::rules::MaskSecrets;

/// Which interfaces get a port (Ironic's `add_ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AddPorts {
    /// Only the interface the machine booted from (all with an address when it is unknown).
    #[default]
    Pxe,
    /// Those with an IP address.
    Active,
    /// Every interface with a MAC address.
    All,
    /// None.
    Disabled,
}

impl AddPorts {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AddPorts::Pxe => "pxe",
            AddPorts::Active => "active",
            AddPorts::All => "all",
            AddPorts::Disabled => "disabled",
        }
    }
}

/// Which existing ports survive an inspection (Ironic's `keep_ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeepPorts {
    /// Every port.
    #[default]
    All,
    /// Those whose MAC the inventory has.
    Present,
    /// Those `add_ports` would have added.
    Added,
}

/// The `[inspector]` table as written (all keys optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectorFile {
    pub hooks: Option<Vec<String>>,
    pub redfish_hooks: Option<Vec<String>>,
    pub add_ports: Option<AddPorts>,
    pub keep_ports: Option<KeepPorts>,
    pub update_pxe_enabled: Option<bool>,
    pub power_off: Option<bool>,
    pub extra_kernel_params: Option<String>,
    pub cpu_capabilities: Option<BTreeMap<String, String>>,
    pub disk_partitioning_spacing: Option<bool>,
    pub inspect_wait_timeout: Option<u64>,
    pub built_in_rules: Option<PathBuf>,
    pub mask_secrets: Option<MaskSecrets>,
    /// PCI devices the `pci-devices` hook counts into capabilities (Ironic's
    /// `pci_device_alias`, there JSON strings, here tables).
    pub pci_device_alias: Option<Vec<PciAlias>>,
    /// `CIDR:physical_network` entries for the `physical-network` hook.
    pub physical_network_cidr_map: Option<Vec<String>>,
}

/// A PCI device the `pci-devices` hook counts: `{vendor_id = "8086", product_id = "1572",
/// name = "x710"}` (IDs as the agent reports them: four hex digits, lower case).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciAlias {
    pub vendor_id: String,
    pub product_id: String,
    /// The capability the count goes to.
    pub name: String,
}

/// The `[auto_discovery]` table: enrol machines that post inspection data and match no node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoDiscoveryFile {
    pub enabled: Option<bool>,
    pub driver: Option<String>,
    pub deploy_kernel: Option<String>,
    pub deploy_ramdisk: Option<String>,
    pub kernel_append_params: Option<String>,
}

/// Resolved auto-discovery settings (Ironic's `[auto_discovery]`, plus what the iPXE script for
/// unknown machines boots, which Ironic leaves to a separate PXE setup).
#[derive(Debug, Clone, Default)]
pub struct AutoDiscovery {
    /// Enrol unknown machines (off by default: any machine reaching the callback is enrolled).
    pub enabled: bool,
    /// The hardware type of a discovered node.
    pub driver: String,
    /// The ramdisk unknown machines boot over iPXE: kernel and initramfs (URLs or names under
    /// the http root), and extra kernel parameters.
    pub deploy_kernel: Option<String>,
    pub deploy_ramdisk: Option<String>,
    pub kernel_append_params: Option<String>,
}

impl AutoDiscovery {
    /// Resolve; enabled needs a driver among `enabled_types`.
    pub fn resolve(file: AutoDiscoveryFile, enabled_types: &[String]) -> Result<Self, String> {
        let enabled = file.enabled.unwrap_or(false);
        let driver = file.driver.unwrap_or_default();
        if enabled && !enabled_types.contains(&driver) {
            return Err(format!(
                "[auto_discovery] enabled needs a driver among the enabled hardware types ({}), got {driver:?}",
                enabled_types.join(", ")
            ));
        }
        Ok(AutoDiscovery {
            enabled,
            driver,
            deploy_kernel: file.deploy_kernel,
            deploy_ramdisk: file.deploy_ramdisk,
            kernel_append_params: file.kernel_append_params,
        })
    }
}

/// Resolved inspection settings.
#[derive(Debug, Clone)]
pub struct InspectorConfig {
    /// Hooks in the order they run (`ramdisk-error`, `validate-interfaces`, `ports`, ...).
    pub hooks: Vec<String>,
    /// Hooks for out-of-band `redfish` inspection (Ironic's `[redfish] inspection_hooks`,
    /// default `validate-interfaces,ports,architecture`).
    pub redfish_hooks: Vec<String>,
    pub add_ports: AddPorts,
    pub keep_ports: KeepPorts,
    /// Set ports' `pxe_enabled` from the inventory.
    pub update_pxe_enabled: bool,
    /// Power the machine off when inspection ends (unless fast track keeps the agent).
    pub power_off: bool,
    /// Kernel parameters added to the ramdisk's for inspection (`ipa-collect-lldp=1`, ...).
    pub extra_kernel_params: String,
    /// CPU flag → capability set to `true` (`vmx` → `cpu_vt`), in the order capabilities are
    /// added (Ironic's order for the default list; a configured table in key order).
    pub cpu_capabilities: Vec<(String, String)>,
    /// Take 1 GiB off `local_gb` for the partition table.
    pub disk_partitioning_spacing: bool,
    /// How long a node may wait in `inspect wait` (0: for ever).
    pub inspect_wait_timeout: Duration,
    /// Rules from `built_in_rules`, applied with the operator's.
    pub built_in_rules: Vec<Value>,
    pub mask_secrets: MaskSecrets,
    /// PCI devices counted into capabilities by the `pci-devices` hook.
    pub pci_device_alias: Vec<PciAlias>,
    /// Networks and the physical network of the ports whose interface has an address in them,
    /// first match first (`physical-network` hook).
    pub physical_network_cidr_map: Vec<(super::cidr::Cidr, String)>,
}

/// Rivet's default hooks: every hook it has but those that need configuration
/// ([`super::hooks::OPTIONAL`]), which are Ironic's defaults (`ramdisk-error,
/// validate-interfaces,ports,architecture`) and the hooks that fill the properties a scheduler
/// reads (docs/compatibility.md says why).
pub fn default_hooks() -> Vec<String> {
    super::hooks::HOOKS
        .iter()
        .filter(|h| !super::hooks::OPTIONAL.contains(h))
        .map(|h| (*h).to_owned())
        .collect()
}

impl InspectorConfig {
    /// Resolve and check: hooks known and after the hooks they need; built-in rules readable,
    /// a JSON list (YAML written in its JSON form is the same document), each valid.
    pub fn resolve(file: InspectorFile) -> Result<Self, String> {
        let hooks: Vec<String> = file.hooks.unwrap_or_else(default_hooks);
        let redfish_hooks: Vec<String> = file.redfish_hooks.unwrap_or_else(|| {
            ["validate-interfaces", "ports", "architecture"]
                .iter()
                .map(|h| (*h).to_owned())
                .collect()
        });
        check_hooks(&hooks, "hooks")?;
        check_hooks(&redfish_hooks, "redfish_hooks")?;
        let built_in_rules = match &file.built_in_rules {
            None => Vec::new(),
            Some(path) => load_built_in(path)?,
        };
        let cpu_capabilities = file
            .cpu_capabilities
            .map(|t| t.into_iter().collect())
            .unwrap_or_else(|| {
                [
                    ("vmx", "cpu_vt"),
                    ("svm", "cpu_vt"),
                    ("aes", "cpu_aes"),
                    ("pse", "cpu_hugepages"),
                    ("pdpe1gb", "cpu_hugepages_1g"),
                    ("smx", "cpu_txt"),
                ]
                .into_iter()
                .map(|(f, c)| (f.to_owned(), c.to_owned()))
                .collect()
            });
        Ok(InspectorConfig {
            hooks,
            redfish_hooks,
            add_ports: file.add_ports.unwrap_or_default(),
            keep_ports: file.keep_ports.unwrap_or_default(),
            update_pxe_enabled: file.update_pxe_enabled.unwrap_or(true),
            power_off: file.power_off.unwrap_or(true),
            extra_kernel_params: file.extra_kernel_params.unwrap_or_default(),
            cpu_capabilities,
            disk_partitioning_spacing: file.disk_partitioning_spacing.unwrap_or(true),
            inspect_wait_timeout: Duration::from_secs(file.inspect_wait_timeout.unwrap_or(1800)),
            built_in_rules,
            mask_secrets: file.mask_secrets.unwrap_or_default(),
            pci_device_alias: file.pci_device_alias.unwrap_or_default(),
            physical_network_cidr_map: file
                .physical_network_cidr_map
                .unwrap_or_default()
                .iter()
                .map(|entry| physical_network_entry(entry))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// One `CIDR:physical_network` entry (split at the last colon, so IPv6 networks work, as
/// Ironic splits it). A network with host bits set is refused here: Ironic fails every
/// inspection on it.
fn physical_network_entry(entry: &str) -> Result<(super::cidr::Cidr, String), String> {
    let invalid = |why: String| format!("[inspector] physical_network_cidr_map: {entry:?}: {why}");
    let (cidr, network) = entry
        .rsplit_once(':')
        .filter(|(_, n)| !n.trim().is_empty())
        .ok_or_else(|| invalid("not CIDR:physical_network".into()))?;
    let cidr = super::cidr::Cidr::parse_strict(cidr.trim()).map_err(invalid)?;
    Ok((cidr, network.trim().to_owned()))
}

/// Hooks known and after the hooks they need.
fn check_hooks(hooks: &[String], key: &str) -> Result<(), String> {
    for (i, hook) in hooks.iter().enumerate() {
        if !super::hooks::HOOKS.contains(&hook.as_str()) {
            return Err(format!(
                "[inspector] {key}: unknown hook {hook:?} (known: {})",
                super::hooks::HOOKS.join(", ")
            ));
        }
        if let Some(needed) = super::hooks::dependency(hook)
            && !hooks[..i].iter().any(|h| h == needed)
        {
            return Err(format!("[inspector] {key}: {hook} requires {needed} before it"));
        }
    }
    Ok(())
}

impl Default for InspectorConfig {
    fn default() -> Self {
        // The defaults resolve without a file to read.
        InspectorConfig::resolve(InspectorFile::default()).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

/// Built-in rules: a list, each given a synthetic UUID (`00000000-0000-0000-0000-<index>`)
/// when it has none, and Ironic's defaults for the rest.
fn load_built_in(path: &std::path::Path) -> Result<Vec<Value>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("[inspector] built_in_rules {}: {e}", path.display()))?;
    let list: Vec<Value> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "[inspector] built_in_rules {}: not a JSON list of rules: {e}",
            path.display()
        )
    })?;
    let mut synthetic = 0u64;
    let mut rules = Vec::new();
    for raw in list {
        let Value::Object(raw) = raw else {
            return Err(format!(
                "[inspector] built_in_rules {}: a rule is not an object",
                path.display()
            ));
        };
        let uuid = match raw.get("uuid").and_then(Value::as_str) {
            Some(u) => u.to_owned(),
            None => {
                synthetic += 1;
                format!("00000000-0000-0000-0000-{:012x}", synthetic - 1)
            }
        };
        let mut rule = serde_json::json!({
            "uuid": uuid,
            "priority": raw.get("priority").cloned().unwrap_or(Value::from(0)),
            "description": raw.get("description").cloned().unwrap_or(Value::Null),
            "sensitive": raw.get("sensitive").cloned().unwrap_or(Value::Bool(false)),
            "phase": raw.get("phase").cloned().unwrap_or(Value::from("main")),
            "actions": raw.get("actions").cloned().unwrap_or(Value::Array(Vec::new())),
            "conditions": raw.get("conditions").cloned().unwrap_or(Value::Array(Vec::new())),
        });
        if let Some(doc) = rule.as_object_mut() {
            super::rules::validate(doc, true)
                .map_err(|e| format!("[inspector] built_in_rules {}: rule {uuid}: {e}", path.display()))?;
        }
        rules.push(rule);
    }
    Ok(rules)
}
