//! The driver model (seeds 002 and 004): a node's driver is a *hardware type* plus one
//! implementation per *interface* kind (power, boot, deploy, management, raid, bios, vendor,
//! inspect, ...). A hardware type lists the implementations it supports per kind, in preference
//! order; the configuration enables hardware types and implementations; a node names its
//! implementations or gets the configured default, else the first supported and enabled one.
//!
//! To add an implementation: write a type implementing [`Interface`] (and the kind's trait,
//! e.g. [`Power`]), add it to [`build`], and list it under the hardware types that support it.

pub mod agent;
pub mod assets;
pub mod boot_iso;
pub mod fake;
pub mod ipmitool;
pub mod ipxe;
pub mod noop_mgmt;
pub mod pxe;
pub mod redfish;
pub mod redfish_vmedia;
pub mod tool;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rivet_common::steps::{Step, StepType};
use serde_json::Value;

use crate::agent_client::AgentClient;
use crate::model::{INTERFACE_KINDS, NodeRecord, PortRecord};

/// A driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The node's settings are wrong (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The interface does not do this (disabled or `no-*` implementation).
    #[error("{0}")]
    Unsupported(String),
    /// The operation failed (hardware, BMC, agent).
    #[error("{0}")]
    Failed(String),
    /// The agent could not be reached or is busy (its network is still coming up, it is
    /// rebooting): nothing failed, the work is tried again on the agent's next heartbeat.
    #[error("{0}")]
    AgentNotReady(String),
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Finished.
    Done,
    /// Finishes asynchronously: the node waits (clean wait, wait call-back, service wait).
    Wait,
}

/// What a driver operation works on: the locked node, its ports, its driver, and the means to
/// reach its agent.
#[derive(Debug)]
pub struct Task {
    /// The node, held under its exclusive lock; changes are saved by the engine.
    pub node: NodeRecord,
    /// The node's ports.
    pub ports: Vec<PortRecord>,
    /// The node's driver.
    pub driver: Driver,
    /// Client of the node's agent.
    pub agent: AgentClient,
    /// Settings drivers need (API URL for the ramdisk, timeouts).
    pub settings: Arc<DriverSettings>,
    /// The database, for the rare write that cannot wait for the engine's save.
    pub db: crate::db::Database,
}

impl Task {
    /// Save the node now, before the engine does: what a machine reads while it boots (its
    /// iPXE script) must be stored before the power action that boots it.
    pub async fn save_now(&mut self) -> Result<(), DriverError> {
        self.node.updated_at = Some(crate::time::now_iso());
        self.db
            .update_node(&self.node)
            .await
            .map_err(|e| DriverError::Failed(format!("saving node {}: {e}", self.node.uuid)))
    }
}

/// Conductor settings drivers read.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// URL agents use to reach this API (`ipa-api-url`).
    pub api_url: String,
    /// Polls of the power state after a soft power off, and their interval.
    pub power_off_polls: (u32, std::time::Duration),
    /// Fast track: keep the agent running between cleaning and deployment.
    pub fast_track: bool,
    /// How recent the last heartbeat must be for fast track.
    pub fast_track_timeout: std::time::Duration,
    /// Where boot files live (http root, TFTP root, SYSLINUX).
    pub boot_files: assets::BootFiles,
}

/// Behaviour every interface shares.
#[async_trait]
pub trait Interface: Send + Sync + std::fmt::Debug {
    /// Implementation name (`fake`, `ipmitool`, `no-bios`).
    fn name(&self) -> &'static str;

    /// Check the node's settings for this interface.
    async fn validate(&self, _node: &NodeRecord) -> Result<(), DriverError> {
        Ok(())
    }

    /// Out-of-band steps this implementation declares for `flow` (upstream's step decorators).
    fn steps(&self, _flow: StepType) -> Vec<Step> {
        Vec::new()
    }

    /// Run one of the declared steps.
    async fn execute_step(&self, _task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        Err(DriverError::Unsupported(format!(
            "{} has no step {}",
            self.name(),
            step.step
        )))
    }
}

/// Booting: what the machine boots next (ramdisk or instance).
#[async_trait]
pub trait Boot: Interface {
    /// The boot device that boots the ramdisk [`Boot::prepare_ramdisk`] prepared.
    fn ramdisk_boot_device(&self) -> &'static str {
        "pxe"
    }
    /// Make the next boot load the agent ramdisk with these kernel parameters.
    async fn prepare_ramdisk(&self, _task: &mut Task, _params: &BTreeMap<String, String>) -> Result<(), DriverError> {
        Ok(())
    }
    /// Undo [`Boot::prepare_ramdisk`].
    async fn clean_up_ramdisk(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    /// Make the next boot load the deployed instance.
    async fn prepare_instance(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
}

/// Deploying, and the agent session around cleaning and servicing.
#[async_trait]
pub trait Deploy: Interface {
    /// True when steps run in an agent (in-band) and heartbeats drive the flows.
    fn uses_agent(&self) -> bool {
        false
    }
    /// Before cleaning: boot the agent if needed. `Wait` means "wait for its heartbeat".
    async fn prepare_cleaning(&self, _task: &mut Task) -> Result<StepOutcome, DriverError> {
        Ok(StepOutcome::Done)
    }
    /// After cleaning.
    async fn tear_down_cleaning(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    /// Before servicing.
    async fn prepare_service(&self, _task: &mut Task) -> Result<StepOutcome, DriverError> {
        Ok(StepOutcome::Done)
    }
    /// After servicing.
    async fn tear_down_service(&self, _task: &mut Task) -> Result<(), DriverError> {
        Ok(())
    }
    /// Undeploy: power off and clean up the instance.
    async fn tear_down(&self, task: &mut Task) -> Result<(), DriverError> {
        let power = task.driver.power.clone();
        power.set_power_state(&mut task.node, "power off").await
    }

    // In-band steps: deploy interfaces that use an agent answer these; the flow runner
    // (`crate::flow`) decides what happens next from the answers.

    /// The in-band steps of `flow` the agent offered, as cached in the node.
    fn cached_steps(&self, _node: &NodeRecord, _flow: StepType) -> Vec<Step> {
        Vec::new()
    }
    /// Ask the agent for its steps of `flow` and cache them. [`DriverError::AgentNotReady`]
    /// when the agent cannot be reached yet.
    async fn refresh_steps(&self, _task: &mut Task, _flow: StepType) -> Result<(), DriverError> {
        Ok(())
    }
    /// Whether `step` runs in the agent.
    fn is_in_band(&self, _node: &NodeRecord, _flow: StepType, _step: &Step) -> bool {
        false
    }
    /// Whether this interface's own out-of-band `step` may run twice (after a conductor
    /// restart): it only powers, boots or sets boot devices.
    fn is_repeatable(&self, _flow: StepType, _step: &Step) -> bool {
        false
    }
    /// Where the agent is with the running in-band step `current` of `flow`.
    async fn in_band_status(
        &self,
        _task: &mut Task,
        _flow: StepType,
        _current: &Step,
    ) -> Result<InBandStatus, DriverError> {
        Err(DriverError::Unsupported(format!(
            "{} runs no in-band steps",
            self.name()
        )))
    }
    /// Boot the agent again (a step asked for a reboot); its next heartbeat continues.
    async fn reboot_to_agent(&self, _task: &mut Task) -> Result<(), DriverError> {
        Err(DriverError::Unsupported(format!("{} boots no agent", self.name())))
    }
}

/// What the agent's command list says about the running in-band step (upstream
/// `process_next_step` reads the same list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InBandStatus {
    /// The agent does not answer yet (its network is coming up, it is busy): ask again later.
    NotAnswering(String),
    /// The agent has run no step since it booted (it only listed its steps).
    NoStepRun,
    /// The agent's last command is not this step's execution (another command, or another
    /// step's result); `running` when that command still runs.
    OtherCommand {
        /// Whether the other command still runs.
        running: bool,
    },
    /// The step still runs.
    Running,
    /// The step failed; the agent's error text.
    Failed(String),
    /// The agent's hardware managers changed since the steps were listed.
    VersionMismatch,
    /// The step finished.
    Succeeded,
    /// The agent sent a status Rivet does not know.
    Unknown(String),
}

/// A power action through the node's power interface, recorded with its time; powering off or
/// rebooting ends the agent session (the ramdisk is gone).
pub async fn power_action(task: &mut Task, target: &str) -> Result<(), DriverError> {
    crate::crash_point::reached(crate::crash_point::POWER_ACTION);
    let power = task.driver.power.clone();
    power.set_power_state(&mut task.node, target).await?;
    task.node.driver_internal_info.insert(
        "last_power_state_change".into(),
        serde_json::json!(crate::time::now_naive()),
    );
    if target != "power on" {
        crate::agent_session::wipe(&mut task.node);
    }
    Ok(())
}

/// What a power target asks of a machine in the `current` state (`power on` / `power off`):
/// nothing when it is there already; a reboot of a machine that is off is a power on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power on.
    On,
    /// Hard power off.
    Off,
    /// Ask the OS to shut down.
    SoftOff,
    /// Hard reset.
    Reboot,
    /// Ask the OS to restart.
    SoftReboot,
}

impl PowerAction {
    /// The action `target` needs, if any.
    pub fn needed(target: &str, current: &str) -> Result<Option<Self>, DriverError> {
        Ok(match (target, current) {
            ("power on", "power on") | ("power off" | "soft power off", "power off") => None,
            ("power on", _) | ("rebooting" | "soft rebooting", "power off") => Some(Self::On),
            ("power off", _) => Some(Self::Off),
            ("soft power off", _) => Some(Self::SoftOff),
            ("rebooting", _) => Some(Self::Reboot),
            ("soft rebooting", _) => Some(Self::SoftReboot),
            (other, _) => return Err(DriverError::Invalid(format!("Unsupported target_state: {other}"))),
        })
    }
}

/// The power state a power target leaves the machine in.
pub fn power_state_after(target: &str) -> &'static str {
    if target.contains("off") {
        "power off"
    } else {
        "power on"
    }
}

/// After a power action, read the BMC every second until `reached` says the machine is in
/// `want` (BMCs apply changes late), for at most `timeout`, and record that state.
pub async fn await_power_state<F, Fut>(
    node: &mut NodeRecord,
    want: &'static str,
    via: &str,
    timeout: std::time::Duration,
    mut reached: F,
) -> Result<(), DriverError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, DriverError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if reached().await? {
            node.power_state = Some(want.to_owned());
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DriverError::Failed(format!(
                "node {} did not reach {want} through {via} within {timeout:?}",
                node.uuid
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Power control.
#[async_trait]
pub trait Power: Interface {
    /// `power on` or `power off`.
    async fn get_power_state(&self, node: &NodeRecord) -> Result<String, DriverError>;
    /// Apply `power on`, `power off`, `rebooting`, `soft power off` or `soft rebooting`.
    async fn set_power_state(&self, node: &mut NodeRecord, target: &str) -> Result<(), DriverError>;
    /// Targets this implementation accepts.
    fn supported_power_states(&self) -> Vec<&'static str> {
        vec!["power on", "power off", "rebooting"]
    }
}

/// Boot device and other BMC management.
#[async_trait]
pub trait Management: Interface {
    /// Set the next boot device (`pxe`, `disk`, `cdrom`).
    async fn set_boot_device(&self, node: &mut NodeRecord, device: &str, persistent: bool) -> Result<(), DriverError>;
    /// Devices accepted by [`Management::set_boot_device`].
    fn supported_boot_devices(&self) -> Vec<&'static str>;
}

/// A vendor passthru method.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorMethod {
    /// Method name.
    pub name: &'static str,
    /// Accepted HTTP methods.
    pub http_methods: &'static [&'static str],
    /// Runs in the background (202) or inline (200).
    pub is_async: bool,
    /// Human description.
    pub description: &'static str,
    /// Return value sent as raw bytes.
    pub attach: bool,
    /// Needs the exclusive node lock.
    pub require_exclusive_lock: bool,
}

impl VendorMethod {
    /// The `vendor_passthru/methods` entry.
    pub fn describe(&self) -> Value {
        serde_json::json!({
            "http_methods": self.http_methods,
            "async": self.is_async,
            "description": self.description,
            "attach": self.attach,
            "require_exclusive_lock": self.require_exclusive_lock,
        })
    }
}

/// Vendor passthru (seed 004).
#[async_trait]
pub trait Vendor: Interface {
    /// Node-level methods.
    fn methods(&self) -> Vec<VendorMethod> {
        Vec::new()
    }
    /// Driver-level methods.
    fn driver_methods(&self) -> Vec<VendorMethod> {
        Vec::new()
    }
    /// Call a node method with the request body as arguments.
    async fn call(
        &self,
        _node: &mut NodeRecord,
        method: &str,
        _http_method: &str,
        _body: Value,
    ) -> Result<Value, DriverError> {
        Err(DriverError::Invalid(format!("No handler for method {method}")))
    }
    /// Call a driver method.
    async fn call_driver(&self, method: &str, _http_method: &str, _body: Value) -> Result<Value, DriverError> {
        Err(DriverError::Invalid(format!("No handler for method {method}")))
    }
}

/// A node's driver: one implementation per interface kind.
#[derive(Debug, Clone)]
pub struct Driver {
    /// Hardware type name.
    pub hardware_type: String,
    /// Power interface.
    pub power: Arc<dyn Power>,
    /// Management interface.
    pub management: Arc<dyn Management>,
    /// Vendor interface.
    pub vendor: Arc<dyn Vendor>,
    /// Boot interface.
    pub boot: Arc<dyn Boot>,
    /// Deploy interface.
    pub deploy: Arc<dyn Deploy>,
    /// Every interface by kind (including the three above).
    pub interfaces: BTreeMap<&'static str, Arc<dyn Interface>>,
}

impl Driver {
    /// The implementation of `kind`.
    pub fn interface(&self, kind: &str) -> Option<&Arc<dyn Interface>> {
        self.interfaces.get(kind)
    }
}

/// A hardware type and the implementations it supports, per kind, in preference order.
#[derive(Debug, Clone)]
pub struct HardwareType {
    /// `fake-hardware`, `ipmi`, `redfish`.
    pub name: &'static str,
    /// Kind → implementations.
    pub supported: BTreeMap<&'static str, Vec<&'static str>>,
}

/// Every hardware type Rivet knows.
pub fn hardware_types() -> Vec<HardwareType> {
    let fake: BTreeMap<&'static str, Vec<&'static str>> = [
        ("bios", vec!["fake", "no-bios"]),
        ("boot", vec!["fake"]),
        ("console", vec!["fake", "no-console"]),
        ("deploy", vec!["fake", "direct"]),
        ("firmware", vec!["fake", "no-firmware"]),
        ("inspect", vec!["fake", "no-inspect"]),
        ("management", vec!["fake"]),
        ("network", vec!["noop"]),
        ("power", vec!["fake"]),
        ("raid", vec!["fake", "no-raid"]),
        ("rescue", vec!["fake", "no-rescue"]),
        ("storage", vec!["noop"]),
        ("vendor", vec!["fake", "no-vendor"]),
    ]
    .into_iter()
    .collect();
    vec![
        HardwareType {
            name: "fake-hardware",
            supported: fake,
        },
        HardwareType::machine(
            "ipmi",
            [
                ("boot", vec!["ipxe", "pxe", "fake"]),
                ("deploy", vec!["direct", "fake"]),
                ("management", vec!["ipmitool", "noop-mgmt"]),
                ("power", vec!["ipmitool"]),
            ],
        ),
        HardwareType::machine(
            "redfish",
            [
                ("boot", vec!["redfish-virtual-media", "ipxe", "pxe", "fake"]),
                ("deploy", vec!["direct", "fake"]),
                ("management", vec!["redfish", "noop-mgmt"]),
                ("power", vec!["redfish"]),
            ],
        ),
    ]
}

impl HardwareType {
    /// A hardware type for real (or simulated) machines: the implementations named for some
    /// kinds, and for every other kind the `no-*` or `noop` one.
    pub fn machine<const N: usize>(name: &'static str, named: [(&'static str, Vec<&'static str>); N]) -> Self {
        let mut supported: BTreeMap<&'static str, Vec<&'static str>> = [
            ("bios", vec!["no-bios"]),
            ("console", vec!["no-console"]),
            ("firmware", vec!["no-firmware"]),
            ("inspect", vec!["no-inspect"]),
            ("network", vec!["noop"]),
            ("raid", vec!["no-raid"]),
            ("rescue", vec!["no-rescue"]),
            ("storage", vec!["noop"]),
            ("vendor", vec!["no-vendor"]),
        ]
        .into_iter()
        .collect();
        supported.extend(named);
        HardwareType { name, supported }
    }
}

fn null_interface(kind: &'static str, name: &'static str) -> Arc<fake::NoInterface> {
    Arc::new(fake::NoInterface { kind, name })
}

/// Instantiate the implementation `name` of `kind`.
pub fn build(kind: &'static str, name: &str) -> Option<Arc<dyn Interface>> {
    Some(match (kind, name) {
        ("power", "fake") => Arc::new(fake::FakePower),
        ("management", "fake") => Arc::new(fake::FakeManagement),
        ("power", "ipmitool") => Arc::new(ipmitool::IpmiPower),
        ("management", "ipmitool") => Arc::new(ipmitool::IpmiManagement),
        ("management", "noop-mgmt") => Arc::new(noop_mgmt::NoopManagement),
        ("power", "redfish") => Arc::new(redfish::RedfishPower),
        ("management", "redfish") => Arc::new(redfish::RedfishManagement),
        ("boot", "ipxe") => Arc::new(ipxe::IpxeBoot),
        ("boot", "pxe") => Arc::new(pxe::PxeBoot),
        ("boot", "redfish-virtual-media") => Arc::new(redfish_vmedia::RedfishVirtualMediaBoot),
        ("vendor", "fake") => Arc::new(fake::FakeVendor),
        ("deploy", "fake") => Arc::new(fake::FakeDeploy),
        ("deploy", "direct") => Arc::new(agent::AgentDeploy),
        ("bios", "fake") => Arc::new(fake::FakeBios),
        ("raid", "fake") => Arc::new(fake::FakeRaid),
        ("boot" | "console" | "firmware" | "inspect" | "rescue", "fake") => {
            Arc::new(fake::FakeInterface { name: "fake" })
        }
        ("network" | "storage", "noop") => Arc::new(fake::FakeInterface { name: "noop" }),
        (_, "no-bios" | "no-console" | "no-firmware" | "no-inspect" | "no-raid" | "no-rescue" | "no-vendor") => {
            let leaked: &'static str = match name {
                "no-bios" => "no-bios",
                "no-console" => "no-console",
                "no-firmware" => "no-firmware",
                "no-inspect" => "no-inspect",
                "no-raid" => "no-raid",
                "no-rescue" => "no-rescue",
                _ => "no-vendor",
            };
            null_interface(kind, leaked)
        }
        _ => return None,
    })
}

fn build_boot(name: &str) -> Option<Arc<dyn Boot>> {
    match name {
        "fake" => Some(Arc::new(fake::FakeInterface { name: "fake" })),
        "ipxe" => Some(Arc::new(ipxe::IpxeBoot)),
        "pxe" => Some(Arc::new(pxe::PxeBoot)),
        "redfish-virtual-media" => Some(Arc::new(redfish_vmedia::RedfishVirtualMediaBoot)),
        _ => None,
    }
}

fn build_deploy(name: &str) -> Option<Arc<dyn Deploy>> {
    match name {
        "fake" => Some(Arc::new(fake::FakeDeploy)),
        "direct" => Some(Arc::new(agent::AgentDeploy)),
        _ => None,
    }
}

fn build_vendor(name: &str) -> Option<Arc<dyn Vendor>> {
    match name {
        "fake" => Some(Arc::new(fake::FakeVendor)),
        "no-vendor" => Some(null_interface("vendor", "no-vendor")),
        _ => None,
    }
}

/// Implementations added by an embedder (another BMC driver, a simulated lab in tests).
#[derive(Debug, Clone, Default)]
pub struct DriverExtensions {
    /// Extra hardware types.
    pub hardware_types: Vec<HardwareType>,
    /// Extra power implementations by name.
    pub power: BTreeMap<&'static str, Arc<dyn Power>>,
    /// Extra management implementations by name.
    pub management: BTreeMap<&'static str, Arc<dyn Management>>,
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
        for (kind, names) in &enabled {
            if !INTERFACE_KINDS.contains(&kind.as_str()) {
                return Err(format!("unknown interface kind {kind:?} in enabled interfaces"));
            }
            for name in names {
                let known = INTERFACE_KINDS
                    .iter()
                    .find(|k| **k == kind)
                    .and_then(|k| build(k, name))
                    .is_some()
                    || (kind == "power" && extensions.power.contains_key(name.as_str()))
                    || (kind == "management" && extensions.management.contains_key(name.as_str()));
                if !known {
                    return Err(format!("unknown {kind} interface {name:?}"));
                }
            }
        }
        Ok(DriverRegistry {
            types,
            enabled_types,
            enabled,
            defaults,
            extensions,
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

    fn power(&self, name: &str) -> Option<Arc<dyn Power>> {
        match name {
            "fake" => Some(Arc::new(fake::FakePower)),
            "ipmitool" => Some(Arc::new(ipmitool::IpmiPower)),
            "redfish" => Some(Arc::new(redfish::RedfishPower)),
            other => self.extensions.power.get(other).cloned(),
        }
    }

    fn management(&self, name: &str) -> Option<Arc<dyn Management>> {
        match name {
            "fake" => Some(Arc::new(fake::FakeManagement)),
            "ipmitool" => Some(Arc::new(ipmitool::IpmiManagement)),
            "noop-mgmt" => Some(Arc::new(noop_mgmt::NoopManagement)),
            "redfish" => Some(Arc::new(redfish::RedfishManagement)),
            other => self.extensions.management.get(other).cloned(),
        }
    }

    /// Instantiate a node's driver.
    pub fn driver(&self, node: &NodeRecord) -> Result<Driver, DriverError> {
        let unknown = |kind: &str| {
            DriverError::Invalid(format!(
                "Node {} has an unknown {kind} interface {:?}",
                node.uuid,
                node.interface(kind)
            ))
        };
        let power = self.power(node.interface("power")).ok_or_else(|| unknown("power"))?;
        let management = self
            .management(node.interface("management"))
            .ok_or_else(|| unknown("management"))?;
        let mut interfaces: BTreeMap<&'static str, Arc<dyn Interface>> = BTreeMap::new();
        for kind in INTERFACE_KINDS {
            let iface: Arc<dyn Interface> = match *kind {
                "power" => power.clone(),
                "management" => management.clone(),
                _ => build(kind, node.interface(kind)).ok_or_else(|| unknown(kind))?,
            };
            interfaces.insert(*kind, iface);
        }
        Ok(Driver {
            hardware_type: node.driver.clone(),
            power,
            management,
            vendor: build_vendor(node.interface("vendor")).ok_or_else(|| unknown("vendor"))?,
            boot: build_boot(node.interface("boot")).ok_or_else(|| unknown("boot"))?,
            deploy: build_deploy(node.interface("deploy")).ok_or_else(|| unknown("deploy"))?,
            interfaces,
        })
    }

    /// The default vendor interface of a hardware type (driver-level passthru).
    pub fn default_vendor(&self, driver: &str) -> Option<Arc<dyn Vendor>> {
        self.default_for(driver, "vendor").and_then(build_vendor)
    }
}
