//! The fleet: simulated machines whose agents boot and stop with the power state the conductor
//! reports, as a BMC would power them.
//!
//! With the `fake` power interface (Ironic's and Rivet's) the conductor only records power
//! states, so no BMC is told anything. The fleet therefore reads them from the API every poll
//! interval and makes each machine follow: powered on in a state where the ramdisk runs, the
//! machine boots its agent (which looks the node up and heartbeats); powered off or `active`
//! (the instance booted from disk), the agent stops. A power cycle shorter than the poll
//! interval goes unseen; when the conductor meant it as a reboot it forgot the agent's token,
//! and the agent's next heartbeat, refused for it, boots the machine again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use crate::agent::{AgentTuning, PowerOffHook, boot_agent};
use crate::api::Api;
use crate::machine::{Journal, MachineControl, SimHardwareManager};
use rivet_agent::config::{HeartbeatObserver, HeartbeatOutcome};

/// Provision states in which a powered-on machine runs the ramdisk rather than its instance.
/// `active` runs the instance; `rescue` (the agent in rescue mode) is not simulated.
pub fn ramdisk_runs(power_state: &str, provision_state: &str) -> bool {
    power_state == "power on" && !matches!(provision_state, "active" | "rescue" | "error")
}

#[derive(Debug)]
struct Machine {
    mac: String,
    api_url: String,
    control: Arc<MachineControl>,
    agent: Option<rivet_agent::ShutdownHandle>,
    booting: Option<tokio::task::JoinHandle<()>>,
    /// Bumped on every stop, so a boot that finishes after its machine was stopped shuts its
    /// agent down instead of keeping it.
    generation: u64,
    /// The last boot failed: no retry until the machine is powered off and on again.
    boot_failed: bool,
    /// The provision state the API last showed.
    last_state: String,
    /// The agent powered the machine off while the API showed this provision state: it stays
    /// off until the API shows another state or a power off, however long the (fake) power
    /// state still reads "power on".
    off_by_agent_in: Option<String>,
}

/// Simulated machines keyed by node UUID.
#[derive(Debug)]
pub struct Fleet {
    machines: Mutex<HashMap<String, Machine>>,
    /// What the machines did.
    pub journal: Journal,
    tuning: AgentTuning,
    /// Bounds the agents starting at once, so a fleet powered on together looks itself up in
    /// waves rather than all in the same instant.
    boots: Arc<Semaphore>,
    running: AtomicUsize,
}

impl Fleet {
    /// An empty fleet whose agents start with `tuning`, at most `boot_concurrency` at a time.
    pub fn new(tuning: AgentTuning, boot_concurrency: usize) -> Arc<Self> {
        Arc::new(Fleet {
            machines: Mutex::default(),
            journal: Journal::default(),
            tuning,
            boots: Arc::new(Semaphore::new(boot_concurrency.max(1))),
            running: AtomicUsize::new(0),
        })
    }

    fn machines(&self) -> MutexGuard<'_, HashMap<String, Machine>> {
        self.machines.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Add a powered-off machine for node `uuid` with NIC `mac`, whose agent reaches the API at
    /// `api_url`.
    pub fn add(&self, uuid: &str, mac: &str, api_url: &str, control: Arc<MachineControl>) {
        self.machines().insert(
            uuid.to_owned(),
            Machine {
                mac: mac.to_owned(),
                api_url: api_url.to_owned(),
                control,
                agent: None,
                booting: None,
                generation: 0,
                boot_failed: false,
                last_state: String::new(),
                off_by_agent_in: None,
            },
        );
    }

    /// Agents up (looked up and heartbeating).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Machines whose last boot failed.
    pub fn failed_boots(&self) -> usize {
        self.machines().values().filter(|m| m.boot_failed).count()
    }

    /// Make every machine of ours in `nodes` (API node objects with `uuid`, `power_state` and
    /// `provision_state`) follow its power state.
    pub fn reconcile(self: &Arc<Self>, nodes: &[Value]) {
        let mut machines = self.machines();
        for node in nodes {
            let Some(uuid) = node["uuid"].as_str() else { continue };
            let Some(machine) = machines.get_mut(uuid) else {
                continue;
            };
            let power = node["power_state"].as_str().unwrap_or("");
            let state = node["provision_state"].as_str().unwrap_or("");
            machine.last_state = state.to_owned();
            if machine
                .off_by_agent_in
                .as_deref()
                .is_some_and(|then| then != state || power != "power on")
            {
                machine.off_by_agent_in = None;
            }
            let wanted = ramdisk_runs(power, state) && machine.off_by_agent_in.is_none();
            let up = machine.agent.is_some() || machine.booting.is_some();
            if wanted && !up && !machine.boot_failed {
                self.boot(uuid, machine);
            } else if !wanted {
                machine.boot_failed = false;
                if up {
                    self.stop(uuid, machine);
                }
            }
        }
    }

    fn stop(&self, uuid: &str, machine: &mut Machine) {
        machine.generation += 1;
        if let Some(boot) = machine.booting.take() {
            boot.abort();
        }
        if let Some(agent) = machine.agent.take() {
            agent.shutdown();
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
        self.journal.log(format!("{uuid}: agent stopped"));
    }

    fn boot(self: &Arc<Self>, uuid: &str, machine: &mut Machine) {
        self.journal.log(format!("{uuid}: ramdisk booting"));
        let fleet = Arc::clone(self);
        let uuid = uuid.to_owned();
        let generation = machine.generation;
        let manager = Arc::new(SimHardwareManager::new(
            &uuid,
            &machine.mac,
            Arc::clone(&machine.control),
            self.journal.clone(),
        ));
        let api_url = machine.api_url.clone();
        let tuning = self.tuning_for(&uuid, generation);
        machine.booting = Some(tokio::spawn(async move {
            let Ok(_permit) = Arc::clone(&fleet.boots).acquire_owned().await else {
                return;
            };
            let started = boot_agent(&api_url, manager, &tuning).await;
            let mut machines = fleet.machines();
            let Some(machine) = machines.get_mut(&uuid) else { return };
            match started {
                Ok(agent) if machine.generation == generation => {
                    machine.booting = None;
                    machine.agent = Some(agent.shutdown_handle());
                    fleet.running.fetch_add(1, Ordering::SeqCst);
                    drop(machines);
                    fleet.journal.log(format!("{uuid}: agent up"));
                    tokio::spawn(async move {
                        let _ = agent.wait().await;
                    });
                }
                Ok(agent) => agent.shutdown(),
                Err(e) => {
                    machine.booting = None;
                    machine.boot_failed = true;
                    drop(machines);
                    tracing::warn!(node = %uuid, error = %e, "agent failed to start");
                    fleet.journal.log(format!("{uuid}: agent failed to start: {e}"));
                }
            }
        }));
    }

    /// The fleet's agent tuning for one boot of machine `uuid`: its heartbeat observer also
    /// notices when the conductor no longer knows the agent's token. A conductor forgets the
    /// token only when it reboots the machine, and a fake power interface reboots it in an
    /// instant the poll cannot see; a real machine would be running a fresh ramdisk by now, so
    /// the simulated one boots again.
    fn tuning_for(self: &Arc<Self>, uuid: &str, generation: u64) -> AgentTuning {
        let mut tuning = self.tuning.clone();
        let fleet = Arc::downgrade(self);
        let uuid = uuid.to_owned();
        let off = Arc::downgrade(self);
        let off_uuid = uuid.to_owned();
        tuning.power_off = Some(PowerOffHook(Arc::new(move || {
            if let Some(fleet) = off.upgrade() {
                fleet.powered_off_by_agent(&off_uuid, generation);
            }
        })));
        let inner = tuning.observer.take();
        tuning.observer = Some(HeartbeatObserver(Arc::new(move |round_trip, outcome| {
            if let Some(inner) = &inner {
                (inner.0)(round_trip, outcome);
            }
            if let HeartbeatOutcome::Refused { status: 400, message } = outcome
                && message.contains("agent token")
                && let Some(fleet) = fleet.upgrade()
            {
                fleet.reboot(&uuid, generation);
            }
        })));
        tuning
    }

    /// The agent of boot `generation` of machine `uuid` powered it off: the machine goes down a
    /// moment later (the command's success reaches the conductor first, as on a real machine).
    fn powered_off_by_agent(self: &Arc<Self>, uuid: &str, generation: u64) {
        let fleet = Arc::clone(self);
        let uuid = uuid.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut machines = fleet.machines();
            let Some(machine) = machines.get_mut(&uuid) else { return };
            if machine.generation != generation || machine.agent.is_none() {
                return;
            }
            machine.off_by_agent_in = Some(machine.last_state.clone());
            fleet.journal.log(format!("{uuid}: powered off by its agent"));
            fleet.stop(&uuid, machine);
        });
    }

    /// Boot machine `uuid` again, unless it was stopped or rebooted since boot `generation`.
    fn reboot(self: &Arc<Self>, uuid: &str, generation: u64) {
        let mut machines = self.machines();
        let Some(machine) = machines.get_mut(uuid) else { return };
        if machine.generation != generation || machine.agent.is_none() {
            return;
        }
        self.journal
            .log(format!("{uuid}: rebooted (agent token forgotten by the conductor)"));
        self.stop(uuid, machine);
        self.boot(uuid, machine);
    }

    /// Follow the API's power states every `interval` until `stop` turns true. A failed poll is
    /// logged and retried at the next interval.
    pub async fn follow(self: Arc<Self>, api: Api, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            match api.nodes("power_state,provision_state").await {
                Ok(nodes) => self.reconcile(&nodes),
                Err(e) => tracing::warn!(error = %e, "reading power states failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Stop every agent.
    pub fn shutdown(&self) {
        let mut machines = self.machines();
        for (uuid, machine) in machines.iter_mut() {
            if machine.agent.is_some() || machine.booting.is_some() {
                self.stop(uuid, machine);
            }
        }
    }
}
