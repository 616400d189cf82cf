//! One simulated machine's hardware, as its agent sees it: a hardware manager whose steps sleep
//! instead of touching disks, and the knobs that make a machine slow, failing or unbootable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use rivet_agent::error::{AgentError, ErrorKind};
use rivet_agent::hardware::{HardwareManager, ManagerError, StepContext, SupportLevel};
use rivet_common::field::Field;
use rivet_common::inventory::{Inventory, NetworkInterface};
use rivet_common::node::{Node, Port};
use rivet_common::steps::{Step, StepType, args_info};
use serde_json::{Value, json};

/// What the machines saw, in order and when: `"<node>: <what>"` entries from the agents (and,
/// in the test lab, the BMC). Clones share the entries.
#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<(Instant, String)>>>);

impl Journal {
    fn entries_locked(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, String)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Append `entry`, now.
    pub fn log(&self, entry: String) {
        self.entries_locked().push((Instant::now(), entry));
    }

    /// Every entry, in order.
    pub fn entries(&self) -> Vec<String> {
        self.entries_locked().iter().map(|(_, e)| e.clone()).collect()
    }

    /// Every entry with its time, in order.
    pub fn timed(&self) -> Vec<(Instant, String)> {
        self.entries_locked().clone()
    }
}

/// Behaviour of one simulated machine.
#[derive(Debug)]
pub struct MachineControl {
    /// How long every in-band step runs.
    pub step_time: Duration,
    /// Probability (0 to 1) that an in-band step fails with a disk error.
    pub fail_rate: f64,
    /// Fail this in-band step with a disk error.
    pub fail_step: Mutex<Option<String>>,
    /// This in-band step runs this long instead (an operator can act while it runs).
    pub slow_step: Mutex<Option<(String, Duration)>>,
    /// Bump the hardware manager version once, after this step ran.
    pub bump_version_after: Mutex<Option<String>>,
    /// The ramdisk never comes up (a dead NIC): for callback timeouts.
    pub never_boots: AtomicBool,
    /// Hardware manager version.
    pub version: AtomicU64,
    /// Where this machine's agent reaches the API (a proxy in some tests).
    pub api_url: Mutex<Option<String>>,
    /// Times the deployed instance booted.
    pub instance_boots: AtomicU64,
}

impl MachineControl {
    /// A healthy machine whose steps take `step_time` each and fail with probability `fail_rate`.
    pub fn new(step_time: Duration, fail_rate: f64) -> Self {
        MachineControl {
            step_time,
            fail_rate,
            fail_step: Mutex::default(),
            slow_step: Mutex::default(),
            bump_version_after: Mutex::default(),
            never_boots: AtomicBool::new(false),
            version: AtomicU64::new(1),
            api_url: Mutex::default(),
            instance_boots: AtomicU64::new(0),
        }
    }
}

impl Default for MachineControl {
    /// Steps of 5 ms that never fail.
    fn default() -> Self {
        MachineControl::new(Duration::from_millis(5), 0.0)
    }
}

/// The simulated hardware manager inside each machine's agent. Its steps are the in-band steps
/// of a real deployment: `erase_devices_metadata` and `erase_devices` (cleaning),
/// `write_image` (what `standby.prepare_image` runs), and `sim_configure` (cleaning and
/// service, with a required argument and not abortable); and those of a hardware RAID
/// controller, as a vendor's manager offers them under the `raid` interface:
/// `create_configuration` and `delete_configuration` (cleaning), `apply_configuration`
/// (deployment), which build the logical disks asked for on controller `sim-raid`.
#[derive(Debug)]
pub struct SimHardwareManager {
    node: String,
    mac: String,
    control: Arc<MachineControl>,
    journal: Journal,
}

impl SimHardwareManager {
    /// The machine's journal.
    pub fn journal(&self) -> Journal {
        self.journal.clone()
    }

    /// The node the machine is.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The manager of a machine with NIC `mac`, for node `node`.
    pub fn new(node: &str, mac: &str, control: Arc<MachineControl>, journal: Journal) -> Self {
        SimHardwareManager {
            node: node.to_owned(),
            mac: mac.to_owned(),
            control,
            journal,
        }
    }
}

fn step(name: &str, priority: i64, step_type: StepType) -> Step {
    Step {
        step: name.into(),
        priority: Some(priority),
        interface: if RAID_STEPS.contains(&name) { "raid" } else { "deploy" }.into(),
        reboot_requested: Some(false),
        abortable: (step_type != StepType::Deploy).then_some(true),
        ..Default::default()
    }
}

/// The simulated RAID controller's steps.
const RAID_STEPS: &[&str] = &["create_configuration", "delete_configuration", "apply_configuration"];

/// What the simulated controller builds for a target configuration: each logical disk on
/// controller `sim-raid`, named `volume-<n>` unless it has a name, the root volume with the
/// hint that finds it (`/dev/sdb`, the first disk after the controller's own). Errors: no
/// logical disk asked for.
fn built_raid(target: Option<&Value>) -> Result<Value, ManagerError> {
    let disks = target
        .and_then(|t| t.get("logical_disks"))
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            ManagerError::Failed(AgentError::new(
                ErrorKind::InvalidCommandParams,
                "no logical disks to build",
            ))
        })?;
    let built: Vec<Value> = disks
        .iter()
        .enumerate()
        .map(|(n, disk)| {
            let mut disk = disk.as_object().cloned().unwrap_or_default();
            disk.insert("controller".into(), json!("sim-raid"));
            disk.entry("volume_name")
                .or_insert_with(|| json!(format!("volume-{n}")));
            if disk.get("is_root_volume") == Some(&json!(true)) {
                disk.insert("root_device_hint".into(), json!({"name": "/dev/sdb"}));
            }
            Value::Object(disk)
        })
        .collect();
    Ok(json!({"logical_disks": built}))
}

#[async_trait]
impl HardwareManager for SimHardwareManager {
    fn class_name(&self) -> String {
        "SimHardwareManager".into()
    }

    fn name(&self) -> String {
        "sim_hardware".into()
    }

    fn version(&self) -> String {
        format!("1.{}", self.control.version.load(Ordering::SeqCst))
    }

    async fn evaluate_hardware_support(&self) -> SupportLevel {
        SupportLevel::SERVICE_PROVIDER
    }

    async fn get_steps(&self, step_type: StepType, _: &Node, _: &[Port]) -> Result<Vec<Step>, ManagerError> {
        // A configuration cannot be stopped half-way: an abort waits for its end. It runs only
        // when asked (priority 0): by manual cleaning, servicing, a deploy template or the user.
        let mut configure = step("sim_configure", 0, step_type);
        configure.abortable = Some(false);
        configure.argsinfo = Field::Value(args_info(&[("level", "How much to configure", true)]));
        let mut apply = step("apply_configuration", 0, step_type);
        apply.argsinfo = Field::Value(args_info(&[
            ("raid_config", "The RAID configuration to apply", true),
            ("delete_existing", "Delete the existing configuration first", false),
        ]));
        Ok(match step_type {
            StepType::Clean => vec![
                step("erase_devices_metadata", 99, step_type),
                step("erase_devices", 10, step_type),
                configure,
                step("create_configuration", 0, step_type),
                step("delete_configuration", 0, step_type),
            ],
            StepType::Deploy => vec![step("write_image", 0, step_type), configure, apply],
            StepType::Service => vec![configure],
        })
    }

    async fn execute(&self, name: &str, ctx: StepContext) -> Result<Value, ManagerError> {
        if ![
            "erase_devices_metadata",
            "erase_devices",
            "sim_configure",
            "write_image",
        ]
        .contains(&name)
            && !RAID_STEPS.contains(&name)
        {
            return Err(ManagerError::NotImplemented);
        }
        self.journal.log(format!("{}: agent {name}", self.node));
        let started = Instant::now();
        let duration = self
            .control
            .slow_step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|(step, _)| step == name)
            .map_or(self.control.step_time, |(_, duration)| duration);
        tokio::time::sleep(duration).await;
        let fail = self
            .control
            .fail_step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let unlucky = self.control.fail_rate > 0.0 && rand::rng().random_bool(self.control.fail_rate.min(1.0));
        if fail.as_deref() == Some(name) || unlucky {
            return Err(ManagerError::Failed(AgentError::new(
                ErrorKind::BlockDeviceErase,
                "simulated failure: /dev/sda reported a medium error",
            )));
        }
        let bump = self
            .control
            .bump_version_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_if(|s| s == name);
        if bump.is_some() {
            self.control.version.fetch_add(1, Ordering::SeqCst);
            self.journal.log(format!("{}: hardware manager upgraded", self.node));
        }
        tracing::debug!(node = %self.node, step = name, took = ?started.elapsed(), "simulated step done");
        self.journal.log(format!("{}: agent {name} done", self.node));
        Ok(match name {
            "write_image" => {
                let id = ctx
                    .args
                    .get("image_info")
                    .and_then(|i| i.get("id"))
                    .and_then(Value::as_str)
                    .unwrap_or("image")
                    .to_owned();
                json!({"result": format!("prepare_image: image ({id}) written to device /dev/sda root_uuid=0x12345678")})
            }
            "sim_configure" => json!({"configured": ctx.args.get("level").cloned()}),
            // The conductor puts the part of the target it asks for in driver_internal_info
            // (Ironic's AgentRAID does the same).
            "create_configuration" => built_raid(ctx.node.internal_info_value("target_raid_config"))?,
            "apply_configuration" => built_raid(ctx.args.get("raid_config"))?,
            _ => Value::Null,
        })
    }

    async fn list_hardware_info(&self, _: &rivet_agent::disk::devices::DeviceView) -> Result<Inventory, ManagerError> {
        Ok(Inventory {
            interfaces: vec![NetworkInterface {
                name: "eth0".into(),
                mac_address: self.mac.clone(),
                has_carrier: true,
                ..Default::default()
            }],
            hostname: format!("sim-{}", self.node.get(..8).unwrap_or(&self.node)),
            ..Default::default()
        })
    }
}
