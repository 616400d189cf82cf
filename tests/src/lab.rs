//! The lab: a simulated BMC (power and management interfaces for the conductor) and the
//! simulated hardware manager of each machine's agent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rivet_agent::config::{AgentConfig, BootParams, HeartbeatTiming, LookupPolicy, Settings};
use rivet_agent::error::{AgentError, ErrorKind};
use rivet_agent::hardware::{HardwareManager, ManagerError, StepContext, SupportLevel};
use rivet_common::field::Field;
use rivet_common::inventory::{Inventory, NetworkInterface};
use rivet_common::node::{Node, Port};
use rivet_common::steps::{ArgSpec, Step, StepType};
use rivet_conductor::drivers::registry::Implementation;
use rivet_conductor::drivers::{
    DriverError, DriverExtensions, HardwareType, Interface, Management, Power, StepOutcome, Task,
};
use rivet_conductor::model::NodeRecord;
use serde_json::{Value, json};

/// What the lab saw, in order: `"<node>: <what>"` entries from both the agents and the BMC.
pub type Journal = Arc<Mutex<Vec<String>>>;

/// Behaviour of one simulated machine.
#[derive(Debug, Default)]
pub struct MachineControl {
    /// Fail this in-band step with a disk error.
    pub fail_step: Mutex<Option<String>>,
    /// This in-band step runs this long (an operator can act while it runs).
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

#[derive(Debug)]
struct Machine {
    mac: String,
    node_uuid: String,
    boot_device: String,
    powered: bool,
    agent: Option<rivet_agent::ShutdownHandle>,
    booting: Option<tokio::task::JoinHandle<()>>,
    control: Arc<MachineControl>,
}

/// The lab.
#[derive(Debug, Clone)]
pub struct Lab {
    machines: Arc<Mutex<HashMap<String, Machine>>>,
    /// Shared record of what happened.
    pub journal: Journal,
    /// The conductor's API URL, set once it listens.
    pub api_url: Arc<Mutex<String>>,
    /// Heartbeat jitter and other agent timing.
    pub agent_heartbeat_gap: Duration,
}

fn log(journal: &Journal, entry: String) {
    journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(entry);
}

impl Default for Lab {
    fn default() -> Self {
        Lab {
            machines: Arc::default(),
            journal: Arc::default(),
            api_url: Arc::default(),
            agent_heartbeat_gap: Duration::from_millis(50),
        }
    }
}

impl Lab {
    /// Add a machine for `node_uuid` with NIC `mac`.
    pub fn add_machine(&self, node_uuid: &str, mac: &str) -> Arc<MachineControl> {
        let control = Arc::new(MachineControl {
            version: AtomicU64::new(1),
            ..Default::default()
        });
        self.machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                node_uuid.to_owned(),
                Machine {
                    mac: mac.to_owned(),
                    node_uuid: node_uuid.to_owned(),
                    boot_device: "disk".into(),
                    powered: false,
                    agent: None,
                    booting: None,
                    control: Arc::clone(&control),
                },
            );
        control
    }

    /// Entries of the journal for one node, without the node prefix.
    pub fn journal_of(&self, node_uuid: &str) -> Vec<String> {
        let prefix = format!("{node_uuid}: ");
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Driver extensions: hardware type `sim-hardware` with `sim` power and management.
    pub fn extensions(&self) -> DriverExtensions {
        DriverExtensions {
            hardware_types: vec![HardwareType::machine(
                "sim-hardware",
                [
                    ("boot", vec!["fake"]),
                    ("deploy", vec!["direct"]),
                    ("management", vec!["sim"]),
                    ("power", vec!["sim"]),
                ],
            )],
            interfaces: vec![
                ("power", "sim", Implementation::Power(Arc::new(SimBmc(self.clone())))),
                (
                    "management",
                    "sim",
                    Implementation::Management(Arc::new(SimBmc(self.clone()))),
                ),
            ],
        }
    }

    fn stop_agent(machine: &mut Machine) {
        if let Some(boot) = machine.booting.take() {
            boot.abort();
        }
        if let Some(agent) = machine.agent.take() {
            agent.shutdown();
        }
    }

    fn power_on(&self, machine: &mut Machine) {
        machine.powered = true;
        if machine.boot_device != "pxe" {
            machine.control.instance_boots.fetch_add(1, Ordering::SeqCst);
            log(&self.journal, format!("{}: instance booted", machine.node_uuid));
            return;
        }
        if machine.control.never_boots.load(Ordering::SeqCst) {
            log(&self.journal, format!("{}: ramdisk failed to boot", machine.node_uuid));
            return;
        }
        log(&self.journal, format!("{}: ramdisk booting", machine.node_uuid));
        let lab = self.clone();
        let mac = machine.mac.clone();
        let node = machine.node_uuid.clone();
        let control = Arc::clone(&machine.control);
        let api_url = control
            .api_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let api_url = api_url.unwrap_or_else(|| {
            lab.api_url
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
        // A machine boots in the background, like a real one: the conductor does not wait.
        machine.booting = Some(tokio::spawn(async move {
            let manager = Arc::new(SimHardwareManager {
                node: node.clone(),
                mac,
                control,
                journal: lab.journal.clone(),
            });
            match boot_agent(&api_url, manager, lab.agent_heartbeat_gap).await {
                Ok(agent) => {
                    let handle = agent.shutdown_handle();
                    let mut machines = lab.machines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(m) = machines.get_mut(&node) {
                        m.agent = Some(handle);
                    }
                    drop(machines);
                    tokio::spawn(async move {
                        let _ = agent.wait().await;
                    });
                }
                Err(e) => log(&lab.journal, format!("{node}: agent failed to start: {e}")),
            }
        }));
    }
}

/// Start a real agent that looks itself up at `api_url`.
pub async fn boot_agent(
    api_url: &str,
    manager: Arc<SimHardwareManager>,
    forced_gap: Duration,
) -> Result<rivet_agent::RunningAgent, rivet_agent::StartError> {
    let settings = Settings {
        api_url: Some(api_url.parse().expect("valid URL")),
        listen_host: Some("127.0.0.1".parse().expect("ip")),
        listen_port: Some(0),
        hardware_managers_dir: Some("/nonexistent/rivet-managers".into()),
        ..Default::default()
    };
    let mut config = AgentConfig::resolve(settings, BootParams::default(), false).expect("valid agent settings");
    config.lookup = LookupPolicy {
        total: Duration::from_secs(120),
        interval: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        conflict_pauses: vec![Duration::from_millis(50)],
    };
    config.heartbeat = HeartbeatTiming {
        error_retry: (Duration::from_millis(200), Duration::from_millis(400)),
        forced_min_gap: forced_gap,
    };
    config.http_request_timeout = Duration::from_secs(30);
    rivet_agent::start_with(
        config,
        rivet_agent::default_registry(),
        vec![manager as Arc<dyn HardwareManager>],
    )
    .await
}

/// The simulated BMC: power and boot device of the lab's machines.
#[derive(Debug, Clone)]
pub struct SimBmc(Lab);

impl SimBmc {
    /// Run `f` on the machine behind `node_uuid`, under the lab's lock.
    fn with_machine<R>(&self, node_uuid: &str, f: impl FnOnce(&mut Machine) -> R) -> Result<R, DriverError> {
        let mut machines = self
            .0
            .machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let machine = machines
            .get_mut(node_uuid)
            .ok_or_else(|| DriverError::Failed(format!("no machine for node {node_uuid}")))?;
        Ok(f(machine))
    }
}

#[async_trait]
impl Interface for SimBmc {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn steps(&self, flow: StepType) -> Vec<Step> {
        if flow != StepType::Clean {
            return Vec::new();
        }
        // An out-of-band step that automated cleaning runs between the in-band ones.
        vec![Step {
            step: "clear_job_queue".into(),
            priority: Some(50),
            interface: "management".into(),
            abortable: Some(false),
            argsinfo: Field::Null,
            requires_ramdisk: Some(false),
            ..Default::default()
        }]
    }

    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        log(&self.0.journal, format!("{}: bmc {}", task.node.uuid, step.step));
        Ok(StepOutcome::Done)
    }
}

#[async_trait]
impl Power for SimBmc {
    async fn get_power_state(&self, node: &NodeRecord) -> Result<String, DriverError> {
        self.with_machine(&node.uuid, |machine| {
            if machine.powered { "power on" } else { "power off" }.into()
        })
    }

    async fn set_power_state(&self, node: &mut NodeRecord, target: &str) -> Result<(), DriverError> {
        let powered = self.with_machine(&node.uuid, |machine| {
            log(&self.0.journal, format!("{}: power {target}", node.uuid));
            match target {
                "power off" | "soft power off" => {
                    Lab::stop_agent(machine);
                    machine.powered = false;
                }
                "power on" if machine.powered => {}
                "power on" => self.0.power_on(machine),
                _ => {
                    Lab::stop_agent(machine);
                    self.0.power_on(machine);
                }
            }
            machine.powered
        })?;
        node.power_state = Some(if powered { "power on" } else { "power off" }.into());
        Ok(())
    }

    fn supported_power_states(&self) -> Vec<&'static str> {
        vec!["power on", "power off", "rebooting", "soft power off", "soft rebooting"]
    }
}

#[async_trait]
impl Management for SimBmc {
    async fn set_boot_device(&self, node: &mut NodeRecord, device: &str, _persistent: bool) -> Result<(), DriverError> {
        self.with_machine(&node.uuid, |machine| machine.boot_device = device.to_owned())
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        vec!["pxe", "disk"]
    }
}

/// The simulated hardware manager inside each machine's agent.
#[derive(Debug)]
pub struct SimHardwareManager {
    node: String,
    mac: String,
    control: Arc<MachineControl>,
    journal: Journal,
}

impl SimHardwareManager {
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
        interface: "deploy".into(),
        reboot_requested: Some(false),
        abortable: (step_type != StepType::Deploy).then_some(true),
        ..Default::default()
    }
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
        Ok(match step_type {
            StepType::Clean => {
                // A configuration cannot be stopped half-way: an abort waits for its end.
                let mut configure = step("sim_configure", 0, step_type);
                configure.abortable = Some(false);
                configure.argsinfo = Field::Value(
                    [(
                        "level".to_owned(),
                        ArgSpec {
                            description: "How much to configure".into(),
                            required: true,
                        },
                    )]
                    .into(),
                );
                vec![
                    step("erase_devices_metadata", 99, step_type),
                    step("erase_devices", 10, step_type),
                    configure,
                ]
            }
            StepType::Deploy => vec![step("write_image", 0, step_type)],
            StepType::Service => vec![step("sim_configure", 0, step_type)],
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
        {
            return Err(ManagerError::NotImplemented);
        }
        log(&self.journal, format!("{}: agent {name}", self.node));
        let slow = self
            .control
            .slow_step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|(step, _)| step == name)
            .map_or(Duration::from_millis(5), |(_, duration)| duration);
        tokio::time::sleep(slow).await;
        let fail = self
            .control
            .fail_step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if fail.as_deref() == Some(name) {
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
            log(&self.journal, format!("{}: hardware manager upgraded", self.node));
        }
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
            hostname: format!("sim-{}", &self.node[..8]),
            ..Default::default()
        })
    }
}
