//! The one table of driver implementations ([`INTERFACES`]) and hardware types
//! ([`HARDWARE_TYPES`]), and the registry the configuration makes of them (seeds 002 and 004).
//!
//! A row names an implementation of one interface kind, the hardware types that support it,
//! and how to build it. Within a kind, the table's order is the preference order: a node that
//! names no implementation gets the configured default, else the first row its hardware type
//! supports and the configuration enables (a hardware type may put some names first, as
//! `fake-hardware` does with `fake`). Adding a driver is a file in its kind's folder and a row
//! here.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::boot::{ipxe, pxe, redfish_vmedia};
use super::{
    Boot, Deploy, Driver, DriverError, Inspect, Interface, Management, Power, Vendor, deploy, fake, inspect,
    management, power,
};
use crate::model::{INTERFACE_KINDS, NodeRecord};

/// A built implementation, typed by what the conductor calls on it.
#[derive(Debug, Clone)]
pub enum Implementation {
    /// A power interface.
    Power(Arc<dyn Power>),
    /// A management interface.
    Management(Arc<dyn Management>),
    /// A boot interface.
    Boot(Arc<dyn Boot>),
    /// A deploy interface.
    Deploy(Arc<dyn Deploy>),
    /// A vendor interface.
    Vendor(Arc<dyn Vendor>),
    /// An inspect interface.
    Inspect(Arc<dyn Inspect>),
    /// Any other kind (bios, raid, console, ...): validation and steps only.
    Other(Arc<dyn Interface>),
}

impl Implementation {
    /// The implementation as a plain interface.
    pub fn interface(&self) -> Arc<dyn Interface> {
        match self {
            Implementation::Power(i) => i.clone(),
            Implementation::Management(i) => i.clone(),
            Implementation::Boot(i) => i.clone(),
            Implementation::Deploy(i) => i.clone(),
            Implementation::Vendor(i) => i.clone(),
            Implementation::Inspect(i) => i.clone(),
            Implementation::Other(i) => i.clone(),
        }
    }

    /// The kind this variant can serve (`None` for [`Implementation::Other`]: any untyped kind).
    fn typed_kind(&self) -> Option<&'static str> {
        match self {
            Implementation::Power(_) => Some("power"),
            Implementation::Management(_) => Some("management"),
            Implementation::Boot(_) => Some("boot"),
            Implementation::Deploy(_) => Some("deploy"),
            Implementation::Vendor(_) => Some("vendor"),
            Implementation::Inspect(_) => Some("inspect"),
            Implementation::Other(_) => None,
        }
    }
}

/// Which hardware types support a row.
#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// Every hardware type (the `no-*` and `noop` implementations).
    Every,
    /// These hardware types.
    Types(&'static [&'static str]),
}

/// One row of [`INTERFACES`].
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Interface kind (one of [`INTERFACE_KINDS`]).
    pub kind: &'static str,
    /// Implementation name, as nodes and the configuration spell it.
    pub name: &'static str,
    /// The hardware types that support it.
    pub support: Support,
    /// Builds it.
    pub build: fn() -> Implementation,
}

const FAKE: Support = Support::Types(&["fake-hardware"]);
const MACHINES: Support = Support::Types(&["ipmi", "redfish"]);
const BUILT_IN: Support = Support::Types(&["fake-hardware", "ipmi", "redfish"]);

const fn row(kind: &'static str, name: &'static str, support: Support, build: fn() -> Implementation) -> Entry {
    Entry {
        kind,
        name,
        support,
        build,
    }
}

fn none(kind: &'static str, name: &'static str) -> Implementation {
    let none = Arc::new(fake::NoInterface { kind, name });
    if kind == "vendor" {
        Implementation::Vendor(none)
    } else if kind == "inspect" {
        Implementation::Inspect(none)
    } else {
        Implementation::Other(none)
    }
}

/// Every implementation Rivet has: kind, name, hardware types, constructor. Within a kind the
/// order is the preference order.
pub static INTERFACES: &[Entry] = &[
    row("power", "fake", FAKE, || {
        Implementation::Power(Arc::new(fake::FakePower))
    }),
    row("power", "ipmitool", Support::Types(&["ipmi"]), || {
        Implementation::Power(Arc::new(power::ipmitool::IpmiPower))
    }),
    row("power", "redfish", Support::Types(&["redfish"]), || {
        Implementation::Power(Arc::new(power::redfish::RedfishPower))
    }),
    row("management", "fake", FAKE, || {
        Implementation::Management(Arc::new(fake::FakeManagement))
    }),
    row("management", "ipmitool", Support::Types(&["ipmi"]), || {
        Implementation::Management(Arc::new(management::ipmitool::IpmiManagement))
    }),
    row("management", "redfish", Support::Types(&["redfish"]), || {
        Implementation::Management(Arc::new(management::redfish::RedfishManagement))
    }),
    row("management", "noop-mgmt", MACHINES, || {
        Implementation::Management(Arc::new(management::noop::NoopManagement))
    }),
    row("boot", "redfish-virtual-media", Support::Types(&["redfish"]), || {
        Implementation::Boot(Arc::new(redfish_vmedia::RedfishVirtualMediaBoot))
    }),
    row("boot", "ipxe", MACHINES, || {
        Implementation::Boot(Arc::new(ipxe::IpxeBoot))
    }),
    row("boot", "pxe", MACHINES, || Implementation::Boot(Arc::new(pxe::PxeBoot))),
    row("boot", "fake", BUILT_IN, || {
        Implementation::Boot(Arc::new(fake::FakeInterface { name: "fake" }))
    }),
    row("deploy", "direct", BUILT_IN, || {
        Implementation::Deploy(Arc::new(deploy::direct::AgentDeploy))
    }),
    row("deploy", "fake", BUILT_IN, || {
        Implementation::Deploy(Arc::new(fake::FakeDeploy))
    }),
    row("vendor", "fake", FAKE, || {
        Implementation::Vendor(Arc::new(fake::FakeVendor))
    }),
    row("vendor", "no-vendor", Support::Every, || none("vendor", "no-vendor")),
    row("bios", "fake", FAKE, || Implementation::Other(Arc::new(fake::FakeBios))),
    row("bios", "no-bios", Support::Every, || none("bios", "no-bios")),
    row("raid", "fake", FAKE, || Implementation::Other(Arc::new(fake::FakeRaid))),
    row("raid", "no-raid", Support::Every, || none("raid", "no-raid")),
    // The ramdisk's RAID steps (IPA's software RAID): after `no-raid`, as Ironic's generic
    // hardware types list it, so that a node builds RAID only when asked to.
    row("raid", "agent", BUILT_IN, || {
        Implementation::Other(Arc::new(super::raid::agent::AgentRaid))
    }),
    row("console", "fake", FAKE, || {
        Implementation::Other(Arc::new(fake::FakeInterface { name: "fake" }))
    }),
    row("console", "no-console", Support::Every, || {
        none("console", "no-console")
    }),
    row("firmware", "fake", FAKE, || {
        Implementation::Other(Arc::new(fake::FakeInterface { name: "fake" }))
    }),
    row("firmware", "no-firmware", Support::Every, || {
        none("firmware", "no-firmware")
    }),
    row("inspect", "fake", FAKE, || {
        Implementation::Inspect(Arc::new(fake::FakeInterface { name: "fake" }))
    }),
    // Out of band: Ironic's redfish hardware type puts it first.
    row("inspect", "redfish", Support::Types(&["redfish"]), || {
        Implementation::Inspect(Arc::new(inspect::redfish::RedfishInspect))
    }),
    row("inspect", "no-inspect", Support::Every, || {
        none("inspect", "no-inspect")
    }),
    // In-band, through the ramdisk (Ironic's `agent`, supported by every generic hardware type;
    // after `no-inspect`, so that as in Ironic a node inspects in-band only when asked to).
    row("inspect", "agent", BUILT_IN, || {
        Implementation::Inspect(Arc::new(inspect::agent::AgentInspect))
    }),
    row("rescue", "fake", FAKE, || {
        Implementation::Other(Arc::new(fake::FakeInterface { name: "fake" }))
    }),
    row("rescue", "no-rescue", Support::Every, || none("rescue", "no-rescue")),
    // Through the agent's `rescue.finalize_rescue` (crate::rescue), as Ironic's `agent`.
    row("rescue", "agent", BUILT_IN, || {
        Implementation::Other(Arc::new(fake::FakeInterface { name: "agent" }))
    }),
    row("network", "noop", Support::Every, || {
        Implementation::Other(Arc::new(fake::FakeInterface { name: "noop" }))
    }),
    // Records VIFs on ports and port groups (drivers/network.rs).
    row("network", "flat", Support::Every, || {
        Implementation::Other(Arc::new(fake::FakeInterface { name: "flat" }))
    }),
    row("storage", "noop", Support::Every, || {
        Implementation::Other(Arc::new(fake::FakeInterface { name: "noop" }))
    }),
];

/// Every built-in hardware type, and the implementation names it prefers over the table's
/// order where it supports them.
pub static HARDWARE_TYPES: &[(&str, &[&str])] = &[("fake-hardware", &["fake"]), ("ipmi", &[]), ("redfish", &[])];

/// A hardware type and the implementations it supports, per kind, in preference order.
#[derive(Debug, Clone)]
pub struct HardwareType {
    /// `fake-hardware`, `ipmi`, `redfish`.
    pub name: &'static str,
    /// Kind → implementations.
    pub supported: BTreeMap<&'static str, Vec<&'static str>>,
}

impl HardwareType {
    /// A built-in hardware type, read from the table.
    fn from_table(name: &'static str, prefers: &[&str]) -> Self {
        let mut supported: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        for entry in INTERFACES {
            let supports = match entry.support {
                Support::Every => true,
                Support::Types(types) => types.contains(&name),
            };
            if supports {
                supported.entry(entry.kind).or_default().push(entry.name);
            }
        }
        for names in supported.values_mut() {
            // A stable sort: preferred names first, the table's order otherwise.
            names.sort_by_key(|n| !prefers.contains(n));
        }
        HardwareType { name, supported }
    }

    /// A hardware type for real (or simulated) machines, for an embedder: the implementations
    /// named for some kinds, and for every other kind those every type supports (`no-*`,
    /// `noop`).
    pub fn machine<const N: usize>(name: &'static str, named: [(&'static str, Vec<&'static str>); N]) -> Self {
        let mut supported: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        for entry in INTERFACES {
            if matches!(entry.support, Support::Every) {
                supported.entry(entry.kind).or_default().push(entry.name);
            }
        }
        supported.extend(named);
        HardwareType { name, supported }
    }
}

/// Every built-in hardware type.
pub fn hardware_types() -> Vec<HardwareType> {
    HARDWARE_TYPES
        .iter()
        .map(|(name, prefers)| HardwareType::from_table(name, prefers))
        .collect()
}

/// Implementations added by an embedder (another BMC driver, a simulated lab in tests): extra
/// hardware types, and extra rows, as (kind, name, implementation).
#[derive(Debug, Clone, Default)]
pub struct DriverExtensions {
    /// Extra hardware types.
    pub hardware_types: Vec<HardwareType>,
    /// Extra implementations: kind, name, the implementation.
    pub interfaces: Vec<(&'static str, &'static str, Implementation)>,
}

/// Enabled hardware types and implementations, and the defaults (from configuration).
#[derive(Debug, Clone)]
pub struct DriverRegistry {
    types: Vec<HardwareType>,
    enabled_types: Vec<String>,
    enabled: BTreeMap<String, Vec<String>>,
    defaults: BTreeMap<String, String>,
    extensions: DriverExtensions,
}

/// The hardware types enabled when the configuration names none.
pub const DEFAULT_ENABLED_TYPES: &[&str] = &["fake-hardware"];

impl DriverRegistry {
    /// A registry from configuration: enabled types, enabled implementations per kind (every
    /// implementation a type supports when a kind is not configured), defaults per kind.
    ///
    /// # Errors
    /// A message naming an unknown hardware type, kind or implementation.
    pub fn new(
        enabled_types: Vec<String>,
        enabled: BTreeMap<String, Vec<String>>,
        defaults: BTreeMap<String, String>,
        extensions: DriverExtensions,
    ) -> Result<Self, String> {
        let mut types = hardware_types();
        types.extend(extensions.hardware_types.iter().cloned());
        for t in &enabled_types {
            if !types.iter().any(|ht| ht.name == t) {
                return Err(format!("unknown hardware type {t:?} in enabled_hardware_types"));
            }
        }
        let registry = DriverRegistry {
            types,
            enabled_types,
            enabled,
            defaults,
            extensions,
        };
        for (kind, names) in &registry.enabled {
            if !INTERFACE_KINDS.contains(&kind.as_str()) {
                return Err(format!("unknown interface kind {kind:?} in enabled interfaces"));
            }
            if let Some(name) = names.iter().find(|n| registry.implementation(kind, n).is_none()) {
                return Err(format!("unknown {kind} interface {name:?}"));
            }
        }
        Ok(registry)
    }

    /// Build the implementation `name` of `kind`: the table's, else an embedder's (a built-in
    /// name cannot be taken over).
    pub fn implementation(&self, kind: &str, name: &str) -> Option<Implementation> {
        INTERFACES
            .iter()
            .find(|e| e.kind == kind && e.name == name)
            .map(|e| (e.build)())
            .or_else(|| {
                self.extensions
                    .interfaces
                    .iter()
                    .find(|(k, n, _)| *k == kind && *n == name)
                    .map(|(_, _, i)| i.clone())
            })
    }

    /// Enabled hardware type names.
    pub fn enabled_types(&self) -> &[String] {
        &self.enabled_types
    }

    fn hardware_type(&self, name: &str) -> Option<&HardwareType> {
        self.types
            .iter()
            .find(|t| t.name == name && self.enabled_types.iter().any(|e| e == name))
    }

    fn is_enabled(&self, kind: &str, name: &str) -> bool {
        match self.enabled.get(kind) {
            Some(list) => list.iter().any(|n| n == name),
            None => true,
        }
    }

    /// Implementations of `kind` a hardware type supports that are enabled, in preference order.
    pub fn usable(&self, driver: &str, kind: &str) -> Vec<&'static str> {
        let Some(ht) = self.hardware_type(driver) else {
            return Vec::new();
        };
        ht.supported
            .get(kind)
            .map(|list| list.iter().copied().filter(|n| self.is_enabled(kind, n)).collect())
            .unwrap_or_default()
    }

    /// The default implementation of `kind` for `driver`.
    pub fn default_for(&self, driver: &str, kind: &str) -> Option<&'static str> {
        let usable = self.usable(driver, kind);
        if let Some(default) = self.defaults.get(kind)
            && let Some(found) = usable.iter().find(|n| *n == default)
        {
            return Some(found);
        }
        usable.first().copied()
    }

    /// Resolve every interface of a node: requested names are checked, missing ones defaulted.
    ///
    /// # Errors
    /// Ironic's message for an unknown or disabled hardware type or implementation.
    pub fn resolve(
        &self,
        driver: &str,
        requested: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        if self.hardware_type(driver).is_none() {
            return Err(format!(
                "Could not find the following driver(s) or hardware type(s): {driver}. Enabled: {}.",
                self.enabled_types.join(", ")
            ));
        }
        let mut out = BTreeMap::new();
        for kind in INTERFACE_KINDS {
            let name = match requested.get(*kind) {
                Some(name) => {
                    if !self.usable(driver, kind).contains(&name.as_str()) {
                        return Err(format!(
                            "Could not find a suitable {kind} interface \"{name}\" for hardware type {driver}: it is not supported or not enabled. Usable: {}.",
                            self.usable(driver, kind).join(", ")
                        ));
                    }
                    name.clone()
                }
                None => self
                    .default_for(driver, kind)
                    .ok_or_else(|| format!("No {kind} interface is enabled for hardware type {driver}"))?
                    .to_owned(),
            };
            out.insert((*kind).to_owned(), name);
        }
        Ok(out)
    }

    /// Instantiate a node's driver.
    ///
    /// # Errors
    /// [`DriverError::Invalid`] when the node names an implementation that does not exist.
    pub fn driver(&self, node: &NodeRecord) -> Result<Driver, DriverError> {
        let unknown = |kind: &str| {
            DriverError::Invalid(format!(
                "Node {} has an unknown {kind} interface {:?}",
                node.uuid,
                node.interface(kind)
            ))
        };
        let (mut power, mut management, mut boot, mut deploy, mut vendor, mut inspect) =
            (None, None, None, None, None, None);
        let mut interfaces: BTreeMap<&'static str, Arc<dyn Interface>> = BTreeMap::new();
        for kind in INTERFACE_KINDS {
            let built = self
                .implementation(kind, node.interface(kind))
                .ok_or_else(|| unknown(kind))?;
            if built.typed_kind().is_some_and(|k| k != *kind) {
                return Err(unknown(kind));
            }
            interfaces.insert(*kind, built.interface());
            match built {
                Implementation::Power(i) => power = Some(i),
                Implementation::Management(i) => management = Some(i),
                Implementation::Boot(i) => boot = Some(i),
                Implementation::Deploy(i) => deploy = Some(i),
                Implementation::Vendor(i) => vendor = Some(i),
                Implementation::Inspect(i) => inspect = Some(i),
                Implementation::Other(_) => {}
            }
        }
        Ok(Driver {
            hardware_type: node.driver.clone(),
            power: power.ok_or_else(|| unknown("power"))?,
            management: management.ok_or_else(|| unknown("management"))?,
            vendor: vendor.ok_or_else(|| unknown("vendor"))?,
            boot: boot.ok_or_else(|| unknown("boot"))?,
            deploy: deploy.ok_or_else(|| unknown("deploy"))?,
            inspect: inspect.ok_or_else(|| unknown("inspect"))?,
            interfaces,
        })
    }

    /// The default vendor interface of a hardware type (driver-level passthru).
    pub fn default_vendor(&self, driver: &str) -> Option<Arc<dyn Vendor>> {
        match self.implementation("vendor", self.default_for(driver, "vendor")?)? {
            Implementation::Vendor(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supported(name: &str) -> BTreeMap<&'static str, Vec<&'static str>> {
        hardware_types()
            .into_iter()
            .find(|t| t.name == name)
            .map(|t| t.supported)
            .unwrap_or_default()
    }

    #[test]
    fn every_row_builds_what_its_kind_needs_and_names_a_known_kind_once() {
        let mut seen = std::collections::BTreeSet::new();
        for entry in INTERFACES {
            assert!(INTERFACE_KINDS.contains(&entry.kind), "{}", entry.kind);
            assert!(
                seen.insert((entry.kind, entry.name)),
                "{} {} twice",
                entry.kind,
                entry.name
            );
            let built = (entry.build)();
            let typed = ["power", "management", "boot", "deploy", "vendor", "inspect"].contains(&entry.kind);
            assert_eq!(
                built.typed_kind(),
                typed.then_some(entry.kind),
                "{} {}",
                entry.kind,
                entry.name
            );
            assert_eq!(built.interface().name(), entry.name, "{} {}", entry.kind, entry.name);
        }
    }

    #[test]
    fn hardware_types_support_what_ironic_s_do_in_ironic_s_order() {
        let fake = supported("fake-hardware");
        assert_eq!(fake["deploy"], ["fake", "direct"]);
        assert_eq!(fake["boot"], ["fake"]);
        assert_eq!(fake["bios"], ["fake", "no-bios"]);
        assert_eq!(fake["network"], ["noop", "flat"]);
        let ipmi = supported("ipmi");
        assert_eq!(ipmi["power"], ["ipmitool"]);
        assert_eq!(ipmi["management"], ["ipmitool", "noop-mgmt"]);
        assert_eq!(ipmi["boot"], ["ipxe", "pxe", "fake"]);
        assert_eq!(ipmi["deploy"], ["direct", "fake"]);
        assert_eq!(ipmi["bios"], ["no-bios"]);
        let redfish = supported("redfish");
        assert_eq!(redfish["boot"], ["redfish-virtual-media", "ipxe", "pxe", "fake"]);
        assert_eq!(redfish["management"], ["redfish", "noop-mgmt"]);
        for kind in INTERFACE_KINDS {
            for t in ["fake-hardware", "ipmi", "redfish"] {
                assert!(!supported(t).get(kind).is_none_or(Vec::is_empty), "{t} has no {kind}");
            }
        }
    }
}
