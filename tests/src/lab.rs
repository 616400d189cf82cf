//! The lab: a simulated BMC (power and management interfaces for the conductor, in the
//! conductor's process) in front of rivet-fleet's simulated machines.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rivet_common::field::Field;
use rivet_common::steps::{Step, StepType};
use rivet_conductor::drivers::registry::Implementation;
use rivet_conductor::drivers::{
    DriverError, DriverExtensions, HardwareType, Interface, Management, Power, StepOutcome, Task,
};
use rivet_conductor::model::NodeRecord;
use rivet_fleet::agent::{AgentTuning, boot_agent};
use rivet_fleet::machine::{Journal, MachineControl, SimHardwareManager};

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

impl Default for Lab {
    fn default() -> Self {
        Lab {
            machines: Arc::default(),
            journal: Journal::default(),
            api_url: Arc::default(),
            agent_heartbeat_gap: Duration::from_millis(50),
        }
    }
}

impl Lab {
    /// Add a machine for `node_uuid` with NIC `mac`.
    pub fn add_machine(&self, node_uuid: &str, mac: &str) -> Arc<MachineControl> {
        let control = Arc::new(MachineControl::default());
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
            .entries()
            .iter()
            .filter_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Driver extensions: hardware type `sim-hardware` with `sim` power and management, and the
    /// `agent` RAID interface for the machines' simulated RAID controller.
    pub fn extensions(&self) -> DriverExtensions {
        DriverExtensions {
            hardware_types: vec![HardwareType::machine(
                "sim-hardware",
                [
                    ("boot", vec!["fake"]),
                    ("deploy", vec!["direct"]),
                    ("management", vec!["sim"]),
                    ("power", vec!["sim"]),
                    ("rescue", vec!["agent", "no-rescue"]),
                    ("raid", vec!["no-raid", "agent"]),
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
            self.journal.log(format!("{}: instance booted", machine.node_uuid));
            return;
        }
        if machine.control.never_boots.load(Ordering::SeqCst) {
            self.journal
                .log(format!("{}: ramdisk failed to boot", machine.node_uuid));
            return;
        }
        self.journal.log(format!("{}: ramdisk booting", machine.node_uuid));
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
            let manager = Arc::new(SimHardwareManager::new(&node, &mac, control, lab.journal.clone()));
            match boot_agent(&api_url, manager, &AgentTuning::with_gap(lab.agent_heartbeat_gap)).await {
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
                Err(e) => lab.journal.log(format!("{node}: agent failed to start: {e}")),
            }
        }));
    }
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
        self.0.journal.log(format!("{}: bmc {}", task.node.uuid, step.step));
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
            self.0.journal.log(format!("{}: power {target}", node.uuid));
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
