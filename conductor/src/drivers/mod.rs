//! The driver model (seeds 002 and 004): a node's driver is a *hardware type* plus one
//! implementation per *interface* kind (power, boot, deploy, management, raid, bios, vendor,
//! inspect, ...). A hardware type lists the implementations it supports per kind, in preference
//! order; the configuration enables hardware types and implementations; a node names its
//! implementations or gets the configured default, else the first supported and enabled one.
//!
//! The folders are the map: one per interface kind (`power/`, `management/`, `boot/`,
//! `deploy/`), the BMC clients several kinds share (`bmc/`), every `fake` and `no-*`
//! implementation (`fake.rs`), and the one table of implementations and hardware types
//! (`registry.rs`). To add an implementation: write a type implementing [`Interface`] and its
//! kind's trait (e.g. [`Power`]) in its kind's folder, and add one row to
//! [`registry::INTERFACES`] naming the hardware types that support it.

pub mod bmc;
pub mod boot;
pub mod deploy;
pub mod fake;
pub mod inspect;
pub mod management;
pub mod network;
pub mod power;
pub mod raid;
pub mod registry;
pub mod tool;

pub use power::{PowerAction, await_power_state, power_action, power_state_after};
pub use registry::{DriverExtensions, DriverRegistry, HardwareType};

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rivet_common::steps::{Step, StepType};
use serde_json::Value;

use crate::agent_client::AgentClient;
use crate::model::{NodeRecord, PortRecord};

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
    /// Could not start (the agent is busy or rebooting): the node waits, and the same step
    /// runs again on the next heartbeat.
    NotStarted,
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
    /// The ID of an asynchronous agent command the flow now waits on, set by the deploy
    /// interface when it sends one: the engine watches it once the lock is released, so the
    /// flow goes on when the command ends rather than at the agent's next heartbeat.
    pub awaiting_command: Option<String>,
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
    pub boot_files: boot::assets::BootFiles,
    /// Kernel parameters added for in-band inspection (Ironic's
    /// `[inspector]extra_kernel_params`, e.g. `ipa-collect-lldp=1`).
    pub inspection_kernel_params: String,
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

    /// One of this interface's steps ran in the agent and succeeded; `command_result` is the
    /// agent's (`{"<flow>_result": ..., "<flow>_step": ...}`). Take what it built into the node
    /// (upstream's post-step hooks). An error fails the step.
    fn in_band_step_succeeded(
        &self,
        _node: &mut NodeRecord,
        _flow: StepType,
        _step: &Step,
        _command_result: Option<&Value>,
    ) -> Result<(), DriverError> {
        Ok(())
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
    /// The step finished; the agent's `command_result`.
    Succeeded(Option<Value>),
    /// The agent sent a status Rivet does not know.
    Unknown(String),
}

/// How inspection started.
#[derive(Debug, Clone, PartialEq)]
pub enum InspectStart {
    /// The machine boots a ramdisk that posts its data to `/v1/continue_inspection`.
    Wait,
    /// Done at once: the inventory and plugin data found (out-of-band), or nothing to process.
    Done(Option<(Value, Value)>),
}

/// Inspection: learn what the machine is.
#[async_trait]
pub trait Inspect: Interface {
    /// Start inspecting (the node is `inspecting`).
    async fn inspect_hardware(&self, task: &mut Task) -> Result<InspectStart, DriverError>;
    /// After the data was processed, or on abort or failure: undo what inspection set up
    /// (ramdisk boot files) and power off when `power_off`.
    async fn tear_down(&self, _task: &mut Task, _power_off: bool) -> Result<(), DriverError> {
        Ok(())
    }
    /// The hooks its data goes through (`[inspector] hooks` for in-band data).
    fn hooks<'c>(&self, config: &'c crate::inspection::config::InspectorConfig) -> &'c [String] {
        &config.hooks
    }
    /// Properties the inspection must have set, or it fails (Ironic's `ESSENTIAL_PROPERTIES`
    /// for out-of-band inspection).
    fn essential_properties(&self) -> &'static [&'static str] {
        &[]
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
    /// The hardware vendor the BMC reports, cached by the conductor as `properties.vendor`
    /// when a node is managed (Ironic's `detect_vendor`); `None` when it cannot tell.
    async fn detect_vendor(&self, _node: &NodeRecord) -> Result<Option<String>, DriverError> {
        Ok(None)
    }
    /// The next boot device and whether it persists, as far as the interface knows
    /// (`GET /v1/nodes/{node}/management/boot_device`); `(None, None)` when it cannot tell.
    async fn get_boot_device(&self, _node: &NodeRecord) -> Result<(Option<String>, Option<bool>), DriverError> {
        Ok((None, None))
    }
    /// The node's virtual media drives as Ironic lists them (`GET /v1/nodes/{node}/vmedia`,
    /// API 1.93): `[{"media_types": [...], "inserted": bool, "image": url-or-null}, ...]`.
    /// [`DriverError::Unsupported`] unless the interface has virtual media.
    async fn get_virtual_media(&self, node: &NodeRecord) -> Result<Vec<Value>, DriverError> {
        Err(unsupported_vmedia(node, "get_virtual_media"))
    }
    /// Insert the image at `url` into the drive for `device_type` (`cdrom`, `floppy`, `disk`).
    async fn attach_virtual_media(&self, node: &NodeRecord, _device_type: &str, _url: &str) -> Result<(), DriverError> {
        Err(unsupported_vmedia(node, "attach_virtual_media"))
    }
    /// Eject the media of the drives for `device_types`, or of every drive (`None`).
    async fn detach_virtual_media(
        &self,
        node: &NodeRecord,
        _device_types: Option<&[String]>,
    ) -> Result<(), DriverError> {
        Err(unsupported_vmedia(node, "detach_virtual_media"))
    }
}

/// Ironic's answer when a node's management interface has no virtual media.
fn unsupported_vmedia(node: &NodeRecord, method: &str) -> DriverError {
    DriverError::Unsupported(format!(
        "Driver {} does not support {method} (disabled or not implemented).",
        node.driver
    ))
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
    /// Inspect interface.
    pub inspect: Arc<dyn Inspect>,
    /// Every interface by kind (including the three above).
    pub interfaces: BTreeMap<&'static str, Arc<dyn Interface>>,
}

impl Driver {
    /// The implementation of `kind`.
    pub fn interface(&self, kind: &str) -> Option<&Arc<dyn Interface>> {
        self.interfaces.get(kind)
    }
}
