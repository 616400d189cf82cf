//! Hardware managers: the extension point through which the agent does hardware work.
//!
//! A manager says how well it supports this machine ([`HardwareManager::evaluate_hardware_support`]),
//! lists the clean/deploy/service steps it offers, and runs them. Every method defaults to "not
//! supported", so a manager overrides only what it does. At start-up [`Managers::load`]
//! evaluates each manager once, drops those answering [`SupportLevel::NONE`] and orders the rest
//! by support, highest first (stable, so ties keep load order).
//!
//! Dispatch follows upstream exactly (reference §6.3): [`Managers::dispatch`] walks the managers
//! in order; a manager without the method, or one answering "incompatible hardware", passes to
//! the next; the first answer wins; any other error fails the call; nobody left →
//! `HardwareManagerMethodNotFound`. Step lists are gathered from every manager and merged as
//! upstream (§6.4, [`merge_steps`]).
//!
//! Two ways to add a manager (docs/vendor-guide.md): implement this trait in Rust and pass it to
//! [`crate::start_with`], or drop an executable into the managers directory ([`executable`]).

pub mod executable;
pub mod generic;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use rivet_common::JsonObject;
use rivet_common::inventory::Inventory;
use rivet_common::node::{Node, Port};
use rivet_common::steps::{HardwareManagerVersions, Step, StepType, StepsResult};
use serde_json::Value;

use crate::disk::devices::{BlockDevice, DeviceView};
use crate::error::{AgentError, ErrorKind};
use crate::progress::Progress;

/// How well a manager supports this machine. Vendors may go above `SERVICE_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SupportLevel(pub u32);

impl SupportLevel {
    /// Not usable here: the manager is dropped.
    pub const NONE: SupportLevel = SupportLevel(0);
    /// Works anywhere (the generic manager).
    pub const GENERIC: SupportLevel = SupportLevel(1);
    /// Knows this hardware (in-tree device managers).
    pub const MAINLINE: SupportLevel = SupportLevel(2);
    /// Operator or vendor specific.
    pub const SERVICE_PROVIDER: SupportLevel = SupportLevel(3);
}

/// Why a manager did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// The manager does not have this method: ask the next one.
    #[error("method not implemented by this manager")]
    NotImplemented,
    /// The manager has the method but not for this hardware: ask the next one.
    #[error("incompatible hardware: {0}")]
    Incompatible(String),
    /// The manager is misconfigured: fails the call.
    #[error("hardware manager configuration error: {0}")]
    Configuration(String),
    /// The method failed: fails the call with this error.
    #[error(transparent)]
    Failed(#[from] AgentError),
}

impl ManagerError {
    /// The error a failed call reports.
    pub fn into_agent_error(self) -> AgentError {
        match self {
            ManagerError::Failed(e) => e,
            ManagerError::Configuration(msg) => AgentError::new(ErrorKind::HardwareManagerConfiguration, msg),
            ManagerError::Incompatible(msg) => AgentError::new(ErrorKind::IncompatibleHardwareMethod, msg),
            ManagerError::NotImplemented => {
                AgentError::new(ErrorKind::HardwareManagerMethodNotFound, "not implemented")
            }
        }
    }
}

/// What a step method receives.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The node, as the conductor sent it.
    pub node: Node,
    /// The node's ports.
    pub ports: Vec<Port>,
    /// Step arguments (extra command parameters merged with `step.args`).
    pub args: JsonObject,
    /// The devices this agent may see and touch.
    pub devices: DeviceView,
    /// Progress reporting.
    pub progress: Progress,
    /// The flow the step belongs to, when run as a step.
    pub step_type: Option<StepType>,
    /// The agent's image writer, for the built-in `write_image` step (`None` outside an agent).
    pub image_writer: Option<Arc<dyn ImageWriter>>,
    /// Every loaded manager, for steps that hand part of their work to them as upstream does
    /// (`erase_devices` asks each for `erase_block_device`); empty outside an agent.
    pub managers: Managers,
}

/// What the running agent lends a step beyond its context: its image writer, with the agent's
/// download client, policy, node cache and partition-UUID record. The agent's state implements it;
/// keeping it a trait keeps managers below the state in the module graph.
#[async_trait]
pub trait ImageWriter: Send + Sync + std::fmt::Debug {
    /// `standby.prepare_image` with the agent's settings; answers upstream's result text
    /// (`image (<id>) written to device <dev> …`).
    async fn write_image(
        &self,
        info: rivet_common::image::ImageInfo,
        configdrive: Option<&Value>,
        progress: Progress,
    ) -> Result<String, AgentError>;
}

/// A hardware manager. Every method has a "not supported" default.
#[async_trait]
pub trait HardwareManager: Send + Sync + std::fmt::Debug {
    /// Grouping key of the manager's steps in `get_*_steps` (upstream: the class name).
    fn class_name(&self) -> String;

    /// Name in the `hardware_manager_version` map (upstream: `HARDWARE_MANAGER_NAME`, default the
    /// class name).
    fn name(&self) -> String {
        self.class_name()
    }

    /// Version in the `hardware_manager_version` map; change it whenever steps change.
    fn version(&self) -> String {
        "1.0".to_owned()
    }

    /// Where the manager comes from, for messages (an executable's path; "built in" otherwise).
    fn origin(&self) -> String {
        "built in".to_owned()
    }

    /// How well this manager supports the machine; evaluated once at start-up.
    async fn evaluate_hardware_support(&self) -> SupportLevel {
        SupportLevel::NONE
    }

    /// Steps of one type this manager offers for `node`.
    async fn get_steps(&self, _step_type: StepType, _node: &Node, _ports: &[Port]) -> Result<Vec<Step>, ManagerError> {
        Ok(Vec::new())
    }

    /// Run the step (or other named method) `name`.
    async fn execute(&self, _name: &str, _ctx: StepContext) -> Result<Value, ManagerError> {
        Err(ManagerError::NotImplemented)
    }

    /// IPA's `erase_block_device`: erase one disk for `erase_devices` in this manager's own way
    /// (a vendor's firmware erase). Managers are asked in rank order; passing (the default)
    /// leaves the disk to the next one and finally to the generic manager's overwrite. The disk
    /// has passed [`DeviceView::check_destructive`].
    async fn erase_block_device(&self, _disk: &BlockDevice, _ctx: &StepContext) -> Result<(), ManagerError> {
        Err(ManagerError::NotImplemented)
    }

    /// IPA's `get_os_install_device`: the disk (`/dev/...`) that receives the OS. Managers are
    /// asked in rank order; when all pass (the default), root-device hints choose.
    async fn get_os_install_device(&self, _node: Option<&Node>, _devices: &DeviceView) -> Result<String, ManagerError> {
        Err(ManagerError::NotImplemented)
    }

    /// Keys this manager adds to the inventory, beside the ones the best manager's
    /// [`HardwareManager::list_hardware_info`] gives. Every manager is asked; a key already there
    /// (a standard key, or one a higher-ranked manager added) is kept.
    async fn inventory_additions(&self, _devices: &DeviceView) -> Result<JsonObject, ManagerError> {
        Err(ManagerError::NotImplemented)
    }

    /// Members this manager adds to `log.collect_system_logs`: `(name, contents)`, stored under
    /// `managers/<manager name>/`. Every manager is asked.
    async fn collect_system_logs(&self) -> Result<Vec<(String, Vec<u8>)>, ManagerError> {
        Err(ManagerError::NotImplemented)
    }

    /// The machine's inventory.
    async fn list_hardware_info(&self, _devices: &DeviceView) -> Result<Inventory, ManagerError> {
        Err(ManagerError::NotImplemented)
    }
}

/// Two managers answered the same name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("two hardware managers are named {name:?}: {first} and {second}; rename or remove one")]
pub struct DuplicateManager {
    /// The name both answered.
    pub name: String,
    /// Where the first comes from.
    pub first: String,
    /// Where the second comes from.
    pub second: String,
}

/// The loaded managers, best first.
#[derive(Debug, Clone, Default)]
pub struct Managers {
    ranked: Vec<(SupportLevel, Arc<dyn HardwareManager>)>,
}

impl Managers {
    /// The inventory from the best manager that provides one (upstream `dispatch_to_managers`
    /// of `list_hardware_info`), with every manager's [`HardwareManager::inventory_additions`].
    pub async fn inventory(&self, devices: &DeviceView) -> Result<Inventory, AgentError> {
        let mut inventory = self
            .dispatch("list_hardware_info", |manager| {
                let devices = devices.clone();
                async move { manager.list_hardware_info(&devices).await }
            })
            .await?;
        let taken: Vec<String> = match serde_json::to_value(&inventory) {
            Ok(Value::Object(standard)) => standard.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for (_, manager) in &self.ranked {
            match manager.inventory_additions(devices).await {
                Ok(additions) => {
                    for (key, value) in additions {
                        if taken.contains(&key) || inventory.extra.contains_key(&key) {
                            tracing::warn!(manager = %manager.name(), key, "inventory key already present; the addition is dropped");
                        } else {
                            inventory.extra.insert(key, value);
                        }
                    }
                }
                Err(ManagerError::NotImplemented | ManagerError::Incompatible(_)) => {}
                Err(e) => {
                    tracing::error!(manager = %manager.name(), error = %e, "inventory additions failed; left out")
                }
            }
        }
        Ok(inventory)
    }

    /// The first answer of `call` among the managers in rank order, `None` when every one
    /// passes; other errors end the search (IPA's `dispatch_to_managers` for optional hooks).
    pub async fn first_answer<T, F, Fut>(&self, method: &str, call: F) -> Result<Option<T>, AgentError>
    where
        F: Fn(Arc<dyn HardwareManager>) -> Fut,
        Fut: Future<Output = Result<T, ManagerError>>,
    {
        match self.dispatch(method, call).await {
            Ok(answer) => Ok(Some(answer)),
            Err(e) if e.kind == ErrorKind::HardwareManagerMethodNotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every manager's [`HardwareManager::collect_system_logs`] members, named
    /// `managers/<manager name>/<member>`; a failing manager is logged and left out.
    pub async fn system_logs(&self) -> Vec<(String, Vec<u8>)> {
        let mut members = Vec::new();
        for (_, manager) in &self.ranked {
            match manager.collect_system_logs().await {
                Ok(files) => members.extend(files.into_iter().map(|(name, data)| {
                    (
                        format!("managers/{}/{}", manager.name(), name.trim_start_matches('/')),
                        data,
                    )
                })),
                Err(ManagerError::NotImplemented | ManagerError::Incompatible(_)) => {}
                Err(e) => {
                    tracing::error!(manager = %manager.name(), error = %e, "collecting the manager's logs failed")
                }
            }
        }
        members
    }

    /// Evaluate every manager once (all at once, so a slow one costs its own time limit, not
    /// the sum), drop those without support, order by support (stable: ties keep load order).
    ///
    /// Two managers with the same name are refused: the version map and step merging key on it.
    pub async fn load(candidates: Vec<Arc<dyn HardwareManager>>) -> Result<Managers, DuplicateManager> {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for manager in &candidates {
            if let Some(first) = seen.insert(manager.name(), manager.origin()) {
                return Err(DuplicateManager {
                    name: manager.name(),
                    first,
                    second: manager.origin(),
                });
            }
        }
        let mut evaluations = tokio::task::JoinSet::new();
        for (index, manager) in candidates.into_iter().enumerate() {
            evaluations.spawn(async move { (index, manager.evaluate_hardware_support().await, manager) });
        }
        let mut evaluated = Vec::new();
        while let Some(joined) = evaluations.join_next().await {
            match joined {
                Ok(one) => evaluated.push(one),
                Err(e) => tracing::error!(error = %e, "evaluating a hardware manager failed; not loaded"),
            }
        }
        evaluated.sort_by_key(|(index, _, _)| *index);
        let mut ranked = Vec::new();
        for (_, level, manager) in evaluated {
            if level == SupportLevel::NONE {
                tracing::info!(manager = %manager.class_name(), "hardware manager does not support this machine; not loaded");
                continue;
            }
            tracing::info!(manager = %manager.class_name(), version = %manager.version(), support = level.0, "hardware manager loaded");
            ranked.push((level, manager));
        }
        ranked.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
        Ok(Managers { ranked })
    }

    /// Managers in dispatch order with their support levels.
    pub fn ranked(&self) -> &[(SupportLevel, Arc<dyn HardwareManager>)] {
        &self.ranked
    }

    /// `{name: version}` of every loaded manager.
    pub fn versions(&self) -> HardwareManagerVersions {
        self.ranked.iter().map(|(_, m)| (m.name(), m.version())).collect()
    }

    /// Call `method` on the managers in order until one answers (upstream `dispatch_to_managers`).
    /// When nobody answers, the error carries the reasons the managers that declined gave.
    pub async fn dispatch<T, F, Fut>(&self, method: &str, call: F) -> Result<T, AgentError>
    where
        F: Fn(Arc<dyn HardwareManager>) -> Fut,
        Fut: Future<Output = Result<T, ManagerError>>,
    {
        let mut declined = Vec::new();
        for (_, manager) in &self.ranked {
            match call(Arc::clone(manager)).await {
                Ok(answer) => return Ok(answer),
                Err(ManagerError::NotImplemented) => continue,
                Err(ManagerError::Incompatible(why)) => {
                    tracing::debug!(manager = %manager.class_name(), method, reason = %why, "incompatible; asking the next manager");
                    declined.push(why);
                }
                Err(err) => {
                    tracing::error!(manager = %manager.class_name(), method, error = %err, "hardware manager method failed");
                    return Err(err.into_agent_error());
                }
            }
        }
        let mut message = format!("Could not find method: {method}");
        if !declined.is_empty() {
            message = format!("{message} ({})", declined.join("; "));
        }
        Err(AgentError::new(ErrorKind::HardwareManagerMethodNotFound, message))
    }

    /// Ask every manager for its steps of `step_type` and merge them as upstream does.
    pub async fn collect_steps(
        &self,
        step_type: StepType,
        node: &Node,
        ports: &[Port],
    ) -> Result<StepsResult, AgentError> {
        let mut per_manager = Vec::new();
        for (level, manager) in &self.ranked {
            match manager.get_steps(step_type, node, ports).await {
                Ok(steps) => per_manager.push((manager.class_name(), *level, steps)),
                Err(ManagerError::NotImplemented | ManagerError::Incompatible(_)) => {}
                // One broken manager costs only its own steps.
                Err(err) => {
                    tracing::error!(manager = %manager.class_name(), origin = %manager.origin(), ?step_type, error = %err, "listing steps failed; the manager's steps are left out");
                }
            }
        }
        Ok(StepsResult {
            steps: merge_steps(per_manager),
            hardware_manager_version: self.versions(),
        })
    }
}

/// Merge step lists (upstream §6.4): when several managers offer a step of the same name, the
/// one with higher support wins, then the higher priority, then the alphabetically smaller
/// manager name. Winners stay grouped under their manager, in each manager's own order.
pub fn merge_steps(per_manager: Vec<(String, SupportLevel, Vec<Step>)>) -> Vec<(String, Vec<Step>)> {
    let mut winner: BTreeMap<String, (SupportLevel, i64, String)> = BTreeMap::new();
    for (class, level, steps) in &per_manager {
        for step in steps {
            let candidate = (*level, step.priority(), class.clone());
            let better = match winner.get(&step.step) {
                None => true,
                Some((l, p, c)) => {
                    (candidate.0, candidate.1, std::cmp::Reverse(&candidate.2)) > (*l, *p, std::cmp::Reverse(c))
                }
            };
            if better {
                winner.insert(step.step.clone(), candidate);
            }
        }
    }
    per_manager
        .into_iter()
        .map(|(class, _, steps)| {
            let kept = steps
                .into_iter()
                .filter(|s| winner.get(&s.step).is_some_and(|(_, _, c)| *c == class))
                .collect();
            (class, kept)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, priority: i64) -> Step {
        Step {
            step: name.into(),
            priority: Some(priority),
            interface: "deploy".into(),
            ..Default::default()
        }
    }

    fn names(merged: &[(String, Vec<Step>)]) -> Vec<(String, Vec<String>)> {
        merged
            .iter()
            .map(|(c, s)| (c.clone(), s.iter().map(|s| s.step.clone()).collect()))
            .collect()
    }

    #[test]
    fn merge_follows_upstream_rules() {
        // The cases of upstream's unit test: MAINLINE beats GENERIC; between two GENERIC
        // managers the alphabetically first wins a priority tie; higher priority beats the name.
        let merged = merge_steps(vec![
            (
                "AGenericManager".into(),
                SupportLevel::GENERIC,
                vec![
                    step("duped_ml", 20),
                    step("duped_gn", 30),
                    step("prio", 1),
                    step("only_a", 0),
                ],
            ),
            (
                "MainlineManager".into(),
                SupportLevel::MAINLINE,
                vec![step("duped_ml", 20)],
            ),
            (
                "ZGenericManager".into(),
                SupportLevel::GENERIC,
                vec![step("duped_ml", 20), step("duped_gn", 30), step("prio", 100)],
            ),
        ]);
        assert_eq!(
            names(&merged),
            vec![
                (
                    "AGenericManager".to_owned(),
                    vec!["duped_gn".to_owned(), "only_a".to_owned()]
                ),
                ("MainlineManager".to_owned(), vec!["duped_ml".to_owned()]),
                ("ZGenericManager".to_owned(), vec!["prio".to_owned()]),
            ]
        );
    }
}
