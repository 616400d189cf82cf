//! The conductor's engine: operator verbs and power actions, run under the node's exclusive
//! lock in background workers, as Ironic's conductor does (reference §4–5).
//!
//! A verb is checked against the state table, the first event is fired and saved while the
//! API request waits, then a worker holding the lock carries the flow on (cleaning, deploying,
//! ...) and releases the lock at the end, on every path.

use std::collections::BTreeMap;
use std::sync::Arc;

use rivet_common::JsonObject;
use rivet_common::steps::{Step, StepType};
use rivet_common::version::ApiVersion;
use serde_json::{Value, json};

use crate::agent_client::AgentClient;
use crate::config::ConductorConfig;
use crate::db::{Database, DbError};
use crate::drivers::agent::{self as agent_driver, flow_of};
use crate::drivers::{Driver, DriverError, DriverRegistry, DriverSettings, StepOutcome, Task};
use crate::model::NodeRecord;
use crate::states::{self, state};
use crate::steps;
use crate::task::{LockError, NodeLock, NodeLocks};
use crate::time::now_iso;

/// What went wrong, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 400.
    #[error("{0}")]
    Invalid(String),
    /// 409: locked by someone else, or a state conflict.
    #[error("{0}")]
    Conflict(String),
    /// 406: not available in the requested microversion.
    #[error("{0}")]
    NotAcceptable(String),
    /// 500: never for bad input.
    #[error("{0}")]
    Internal(String),
}

impl From<DbError> for EngineError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Duplicate(msg) => EngineError::Conflict(msg),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

impl From<LockError> for EngineError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Locked { .. } => EngineError::Conflict(e.to_string()),
            LockError::Db(db) => db.into(),
        }
    }
}

/// Body of `PUT /v1/nodes/{node}/states/provision`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    pub target: String,
    #[serde(default)]
    pub configdrive: Option<Value>,
    #[serde(default)]
    pub clean_steps: Option<Vec<Value>>,
    #[serde(default)]
    pub deploy_steps: Option<Vec<Value>>,
    #[serde(default)]
    pub service_steps: Option<Vec<Value>>,
    #[serde(default)]
    pub rescue_password: Option<String>,
    #[serde(default)]
    pub disable_ramdisk: Option<bool>,
    #[serde(default)]
    pub runbook: Option<String>,
}

/// The conductor: database, drivers, locks, the agent client and settings.
#[derive(Debug)]
pub struct Conductor {
    pub db: Database,
    pub drivers: DriverRegistry,
    pub locks: NodeLocks,
    pub config: ConductorConfig,
    pub agent: AgentClient,
    pub settings: Arc<DriverSettings>,
    /// Bounds the heartbeats processed at once, so a burst cannot exhaust the database pool.
    pub heartbeat_slots: Arc<tokio::sync::Semaphore>,
}

/// Move `node` along `event`, setting its target as Ironic does.
pub fn fire(node: &mut NodeRecord, event: &str, target: Option<&str>) -> Result<(), String> {
    let from = node.provision_state.clone();
    let to = states::next(&from, event).ok_or_else(|| format!("no transition from {from} on {event}"))?;
    node.provision_state = to.to_owned();
    node.target_provision_state = if states::STABLE.contains(&to) {
        None
    } else if let Some(t) = target {
        Some(t.to_owned())
    } else if ["wait", "resume", "fail", "hold", "unhold", "abort"].contains(&event)
        && node.target_provision_state.is_some()
    {
        node.target_provision_state.clone()
    } else {
        states::default_target(to).map(str::to_owned)
    };
    node.provision_updated_at = Some(now_iso());
    Ok(())
}

impl Conductor {
    /// The node by UUID or name, or 404.
    pub async fn node(&self, ident: &str) -> Result<NodeRecord, EngineError> {
        self.db
            .node_by_ident(ident)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("Node {ident} could not be found.")))
    }

    /// The node's driver.
    pub fn driver(&self, node: &NodeRecord) -> Result<Driver, EngineError> {
        self.drivers
            .driver(node)
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }

    /// A task over `node`: its ports, driver and the agent client.
    pub async fn task(&self, node: NodeRecord) -> Result<Task, EngineError> {
        let driver = self.driver(&node)?;
        let ports = self.db.ports(Some(&node.uuid)).await?;
        Ok(Task {
            node,
            ports,
            driver,
            agent: self.agent.clone(),
            settings: Arc::clone(&self.settings),
            db: self.db.clone(),
        })
    }

    /// Save a node (stamps `updated_at`).
    pub async fn save(&self, node: &mut NodeRecord) -> Result<(), EngineError> {
        node.updated_at = Some(now_iso());
        self.db.update_node(node).await?;
        Ok(())
    }

    /// Clear this conductor's stale locks and resume every flow it left mid-way: each node in a
    /// working state goes back to its last saved point, in the background, under its lock
    /// ([`Conductor::resume`]). Upstream fails them all (reference §8.2); Rivet loses none.
    pub async fn recover_on_start(self: &Arc<Self>) -> Result<(), EngineError> {
        let cleared = self.db.clear_reservations(self.locks.host()).await?;
        if cleared > 0 {
            tracing::warn!(cleared, "released locks left by a previous run of this conductor");
        }
        for node in self.db.nodes_in_states(states::WORKING_STATES).await? {
            if node.reservation.is_some() {
                // Another conductor is working on it.
                continue;
            }
            let lock = match self.locks.acquire(&node.uuid).await {
                Ok(lock) => lock,
                Err(e) => {
                    tracing::warn!(node = %node.uuid, error = %e, "cannot lock a node to resume it");
                    continue;
                }
            };
            let me = Arc::clone(self);
            tokio::spawn(async move { me.resume(lock, node.uuid).await });
        }
        Ok(())
    }

    /// Resume one node's flow after a restart, holding its lock; a node that cannot resume
    /// fails with the reason.
    async fn resume(self: Arc<Self>, lock: NodeLock, uuid: String) {
        let task = match self.node(&uuid).await {
            Ok(node) => self.task(node).await,
            Err(e) => Err(e),
        };
        match task {
            Ok(mut task) => {
                if let Err(message) = self.resume_flow(&mut task).await {
                    tracing::error!(node = %uuid, error = %message, "resuming failed");
                    self.fail(&mut task, &message).await;
                }
            }
            Err(e) => tracing::error!(node = %uuid, error = %e, "cannot load a node to resume it"),
        }
        if let Err(e) = lock.release().await {
            tracing::error!(node = %uuid, error = %e, "could not release the node lock");
        }
    }

    /// Where a node's flow goes on after a restart (docs/conductor.md "Restarts"):
    ///
    /// * no step started yet: the flow's start runs again (it builds the step list and
    ///   prepares again; booting the agent twice is harmless);
    /// * an in-band step was running: the node waits for the agent's next heartbeat, which shows
    ///   whether the agent has the command (then its result is taken as usual) or never got it
    ///   (then it is sent again);
    /// * an out-of-band step that is safe to repeat (power actions, the deploy interface's own
    ///   steps, `fake` interfaces) runs again;
    /// * any other out-of-band step fails the node: it may have half-happened.
    async fn resume_flow(&self, task: &mut Task) -> Result<(), String> {
        let state = task.node.provision_state.clone();
        let target = states::resume_target(&state, task.node.target_provision_state.as_deref())
            .ok_or_else(|| format!("internal: no flow resumes state {state}"))?;
        let host = self.locks.host().to_owned();
        let Some(flow) = flow_of(&task.node) else {
            self.resumed(
                task,
                &format!("Conductor {host} restarted during {state}; the {target} flow runs again"),
            )
            .await?;
            return self.run_flow(task, target).await;
        };
        let key = flow.as_str();
        let current = task.node.current_step(flow);
        let started = task
            .node
            .driver_internal_info
            .contains_key(&format!("{key}_step_index"))
            && !current.is_empty();
        if !started {
            self.resumed(
                task,
                &format!(
                    "Conductor {host} restarted during {state} before its first step; the {flow} flow starts again"
                ),
            )
            .await?;
            return self.run_flow(task, target).await;
        }
        let step: Step =
            serde_json::from_value(Value::Object(current.clone())).map_err(|e| format!("corrupt current step: {e}"))?;
        let name = format!("{}.{}", step.interface, step.step);
        if agent_driver::is_in_band(&task.node, flow, &step) {
            task.node
                .driver_internal_info
                .insert(format!("resume_{key}_step"), json!(true));
            self.resumed(task, &format!("Conductor {host} restarted during {flow} step {name}; waiting for the agent to show whether it has the step"))
                .await?;
            return self.event(&mut task.node, "wait").await;
        }
        if agent_driver::is_repeatable(&task.node, flow, &step) {
            task.node
                .driver_internal_info
                .insert(format!("skip_current_{key}_step"), json!(false));
            self.resumed(
                task,
                &format!("Conductor {host} restarted during {flow} step {name}; the step runs again"),
            )
            .await?;
            return self.run_steps(task, flow).await;
        }
        Err(format!(
            "Conductor {host} stopped during {flow} step {name}, which is not safe to repeat; start {flow} again"
        ))
    }

    /// Record in the node's history how it resumes.
    async fn resumed(&self, task: &mut Task, message: &str) -> Result<(), String> {
        tracing::warn!(node = %task.node.uuid, "{message}");
        self.db
            .add_history(&task.node.uuid, "WARNING", message)
            .await
            .map_err(|e| e.to_string())
    }

    /// Apply an operator verb (`PUT .../states/provision`).
    pub async fn provision(
        self: &Arc<Self>,
        ident: &str,
        mut req: ProvisionRequest,
        version: ApiVersion,
    ) -> Result<(), EngineError> {
        let verb = states::verb(&req.target).ok_or_else(|| {
            EngineError::Invalid(format!(
                "\"{}\" is not a valid provision target; valid targets: {}",
                req.target,
                states::VERBS.iter().map(|v| v.target).collect::<Vec<_>>().join(", ")
            ))
        })?;
        if version.minor < verb.min_minor {
            return Err(EngineError::NotAcceptable(format!(
                "The provision target \"{}\" needs API version 1.{} or later; the request used {version}",
                req.target, verb.min_minor
            )));
        }
        let wrong_target = |field: &str, want: &str| {
            EngineError::Invalid(format!(
                "\"{field}\" is only valid with the \"{want}\" provision target, not \"{}\"",
                req.target
            ))
        };
        if req.clean_steps.is_some() && verb.target != "clean" {
            return Err(wrong_target("clean_steps", "clean"));
        }
        if req.service_steps.is_some() && verb.target != "service" {
            return Err(wrong_target("service_steps", "service"));
        }
        if req.rescue_password.is_some() && verb.target != "rescue" {
            return Err(wrong_target("rescue_password", "rescue"));
        }
        if req.configdrive.is_some() && !["active", "deploy", "rebuild"].contains(&verb.target) {
            return Err(wrong_target("configdrive", "active"));
        }
        // Checked once, in the form the node keeps it: an empty one is none (Ironic).
        if let Some(cd) = &req.configdrive {
            req.configdrive = crate::configdrive::validate(cd).map_err(EngineError::Invalid)?;
        }
        let illegal = |node: &NodeRecord| {
            format!(
                "The requested action \"{}\" can not be performed on node \"{}\" while it is in state \"{}\".",
                req.target, node.uuid, node.provision_state
            )
        };
        let node = self.node(ident).await?;
        if states::next(&node.provision_state, verb.event).is_none() {
            return Err(if node.reservation.is_some() {
                EngineError::Conflict(illegal(&node))
            } else {
                EngineError::Invalid(illegal(&node))
            });
        }
        if verb.target == "abort" {
            return self.abort(&node.uuid).await;
        }
        let lock = self.locks.acquire(&node.uuid).await?;
        let outcome = async {
            // Re-read under the lock: the state may have moved while we waited.
            let node = self.node(&node.uuid).await?;
            if states::next(&node.provision_state, verb.event).is_none() {
                return Err(EngineError::Invalid(illegal(&node)));
            }
            let mut task = self.task(node).await?;
            self.start_verb(&mut task, verb.target, verb.event, &req).await?;
            Ok(task)
        }
        .await;
        match outcome {
            Ok(task) => {
                let me = Arc::clone(self);
                let target = verb.target.to_owned();
                tokio::spawn(async move { me.continue_verb(lock, task, target).await });
                Ok(())
            }
            Err(e) => {
                lock.release().await?;
                Err(e)
            }
        }
    }

    /// Checks and the first event, while the API caller waits.
    async fn start_verb(
        &self,
        task: &mut Task,
        target: &str,
        event: &str,
        req: &ProvisionRequest,
    ) -> Result<(), EngineError> {
        let agent_based = task.driver.deploy.uses_agent();
        match target {
            "active" | "deploy" | "rebuild" => {
                if task.node.maintenance {
                    return Err(EngineError::Invalid(format!(
                        "Node {} is in maintenance mode; cannot deploy.",
                        task.node.uuid
                    )));
                }
                for kind in ["power", "deploy", "boot"] {
                    if let Some(iface) = task.driver.interface(kind) {
                        let node = task.node.clone();
                        iface
                            .validate(&node)
                            .await
                            .map_err(|e| EngineError::Invalid(format!("{kind} validation failed: {e}")))?;
                    }
                }
                if let Some(cd) = &req.configdrive {
                    task.node.instance_info.insert("configdrive".into(), cd.clone());
                }
                match &req.deploy_steps {
                    Some(user) => drop(
                        task.node
                            .driver_internal_info
                            .insert("user_deploy_steps".into(), Value::Array(user.clone())),
                    ),
                    None => drop(task.node.driver_internal_info.remove("user_deploy_steps")),
                }
            }
            "clean" | "service" => {
                let flow = if target == "clean" {
                    StepType::Clean
                } else {
                    StepType::Service
                };
                let user = if flow == StepType::Clean {
                    &req.clean_steps
                } else {
                    &req.service_steps
                };
                let user = user.as_ref().ok_or_else(|| {
                    EngineError::Invalid(format!("{target}_steps is required for the {target} target"))
                })?;
                if user.is_empty() {
                    return Err(EngineError::Invalid(format!(
                        "{target}_steps must name at least one step"
                    )));
                }
                let known = steps::collect(
                    &task.driver,
                    flow,
                    &agent_driver::cached_steps(&task.node, flow),
                    &BTreeMap::new(),
                );
                match steps::validate_user_steps(user, &known, flow) {
                    Ok(_) => {}
                    // In-band steps are only known once the agent has booted: validated again then.
                    Err(e) if agent_based && !e.contains("argument") => {
                        tracing::info!(node = %task.node.uuid, "steps validated after the agent boots: {e}")
                    }
                    Err(e) => return Err(EngineError::Invalid(e)),
                }
                task.node
                    .driver_internal_info
                    .insert(format!("user_{target}_steps"), Value::Array(user.clone()));
            }
            "rescue" => {
                let password = req.rescue_password.as_deref().unwrap_or_default();
                if password.trim().is_empty() {
                    return Err(EngineError::Invalid(
                        "A non-empty rescue_password is required to rescue a node.".into(),
                    ));
                }
                task.node
                    .instance_info
                    .insert("rescue_password".into(), json!(password));
            }
            "provide" if task.node.maintenance => {
                return Err(EngineError::Invalid(format!(
                    "Node {} is in maintenance mode; provide it after maintenance.",
                    task.node.uuid
                )));
            }
            _ => {}
        }
        let explicit_target = if target == "clean" {
            Some(state::MANAGEABLE)
        } else {
            None
        };
        fire(&mut task.node, event, explicit_target).map_err(EngineError::Internal)?;
        if ["manage", "provide", "inspect", "active", "deploy", "clean", "service"].contains(&target) {
            task.node.last_error = None;
        }
        self.save(&mut task.node).await?;
        Ok(())
    }

    /// The rest of a verb, in the background, holding the lock.
    async fn continue_verb(self: Arc<Self>, lock: NodeLock, mut task: Task, target: String) {
        let outcome = self.run_flow(&mut task, &target).await;
        if let Err(message) = outcome {
            tracing::error!(node = %task.node.uuid, %target, error = %message, "provisioning failed");
            self.fail(&mut task, &message).await;
        }
        if let Err(e) = lock.release().await {
            tracing::error!(node = %task.node.uuid, error = %e, "could not release the node lock");
        }
    }

    /// The error handlers of upstream, in short: record, tear down, fire `fail`.
    pub async fn fail_flow(&self, task: &mut Task, message: &str) {
        self.fail(task, message).await;
    }

    async fn fail(&self, task: &mut Task, message: &str) {
        let node = &mut task.node;
        node.last_error = Some(message.to_owned());
        let state = node.provision_state.clone();
        let running_step = match flow_of(node) {
            Some(StepType::Clean) => !node.clean_step.is_empty(),
            Some(StepType::Service) => !node.service_step.is_empty(),
            _ => false,
        };
        if running_step {
            // As upstream: a failed clean/service step puts the node in maintenance with a fault.
            node.maintenance = true;
            node.maintenance_reason = Some(message.to_owned());
            node.fault = Some(
                if state.starts_with("clean") {
                    "clean failure"
                } else {
                    "service failure"
                }
                .to_owned(),
            );
        }
        for key in ["clean", "deploy", "service"] {
            node.driver_internal_info.remove(&format!("{key}_step_index"));
            node.driver_internal_info.remove(&format!("skip_current_{key}_step"));
            node.driver_internal_info.remove(&format!("resume_{key}_step"));
        }
        node.clean_step.clear();
        node.deploy_step.clear();
        node.service_step.clear();
        if states::next(&node.provision_state, "fail").is_some() {
            let _ = fire(node, "fail", None);
        }
        // The ramdisk is of no more use: power off, as upstream's error handlers do.
        if task.driver.deploy.uses_agent()
            && ["clean failed", "deploy failed", "service failed"].contains(&task.node.provision_state.as_str())
            && let Err(e) = agent_driver::power_action(task, "power off").await
        {
            tracing::warn!(node = %task.node.uuid, error = %e, "could not power off after the failure");
        }
        let _ = self.save(&mut task.node).await;
        let _ = self.db.add_history(&task.node.uuid, "ERROR", message).await;
    }

    async fn event(&self, node: &mut NodeRecord, event: &str) -> Result<(), String> {
        fire(node, event, None)?;
        self.save(node).await.map_err(|e| e.to_string())
    }

    async fn run_flow(&self, task: &mut Task, target: &str) -> Result<(), String> {
        let state = task.node.provision_state.clone();
        match (target, state.as_str()) {
            ("manage", state::VERIFYING) => {
                let power = task.driver.power.clone();
                power
                    .validate(&task.node)
                    .await
                    .map_err(|e| format!("Failed to validate power driver interface: {e}"))?;
                let now = power
                    .get_power_state(&task.node)
                    .await
                    .map_err(|e| format!("Failed to get power state: {e}"))?;
                task.node.power_state = Some(now);
                self.event(&mut task.node, "done").await
            }
            ("manage" | "unhold", _) => Ok(()),
            ("provide", state::CLEANING) => self.start_cleaning(task, false).await,
            ("clean", state::CLEANING) => self.start_cleaning(task, true).await,
            ("inspect", state::INSPECTING) => {
                self.db
                    .add_history(&task.node.uuid, "INFO", "Inspection completed")
                    .await
                    .map_err(|e| e.to_string())?;
                self.event(&mut task.node, "done").await
            }
            ("active" | "deploy" | "rebuild", state::DEPLOYING) => self.start_deploy(task).await,
            ("deleted" | "undeploy", state::DELETING) => {
                let deploy = task.driver.deploy.clone();
                deploy
                    .tear_down(task)
                    .await
                    .map_err(|e| format!("Failed to tear down: {e}"))?;
                agent_driver::wipe_agent_session(&mut task.node);
                task.node.instance_info.clear();
                task.node.attrs.insert("instance_uuid".into(), Value::Null);
                self.event(&mut task.node, "clean").await?;
                self.start_cleaning(task, false).await
            }
            ("adopt", state::ADOPTING) => self.event(&mut task.node, "done").await,
            ("rescue", state::RESCUING) => {
                task.node.instance_info.remove("rescue_password");
                self.event(&mut task.node, "done").await
            }
            ("unrescue", state::UNRESCUING) => self.event(&mut task.node, "done").await,
            ("service", state::SERVICING) => {
                let deploy = task.driver.deploy.clone();
                let prepared = deploy
                    .prepare_service(task)
                    .await
                    .map_err(|e| format!("Failed to prepare servicing: {e}"))?;
                self.continue_prepared(task, prepared, StepType::Service).await
            }
            (t, s) => Err(format!("internal: no flow for target {t} in state {s}")),
        }
    }

    /// Cleaning starts: boot the agent if the deploy interface needs one, else run now.
    async fn start_cleaning(&self, task: &mut Task, manual: bool) -> Result<(), String> {
        let enabled = manual
            || task
                .node
                .attr("automated_clean")
                .as_bool()
                .unwrap_or(self.config.automated_clean);
        if !enabled {
            task.node.driver_internal_info.insert("clean_steps".into(), json!([]));
            return self.finish_flow(task, StepType::Clean, &[]).await;
        }
        let deploy = task.driver.deploy.clone();
        let prepared = deploy
            .prepare_cleaning(task)
            .await
            .map_err(|e| format!("Failed to prepare to clean: {e}"))?;
        self.continue_prepared(task, prepared, StepType::Clean).await
    }

    /// After the deploy interface prepared a step flow: wait for the agent it booted, or run
    /// the steps now.
    async fn continue_prepared(&self, task: &mut Task, prepared: StepOutcome, flow: StepType) -> Result<(), String> {
        match prepared {
            StepOutcome::Wait => self.event(&mut task.node, "wait").await,
            StepOutcome::Done => {
                self.build_list(task, flow)?;
                self.run_steps(task, flow).await
            }
        }
    }

    /// Compute `dii.<flow>_steps`: the user's list for manual cleaning and servicing, the enabled
    /// steps for automated cleaning, the deploy list otherwise (reference §4.3–4.5).
    pub fn build_step_list(&self, task: &mut Task, flow: StepType) -> Result<(), String> {
        self.build_list(task, flow)
    }

    fn build_list(&self, task: &mut Task, flow: StepType) -> Result<(), String> {
        let key = flow.as_str();
        let overrides = if flow == StepType::Clean {
            self.config.clean_step_priority_override.clone()
        } else {
            BTreeMap::new()
        };
        let known = steps::collect(
            &task.driver,
            flow,
            &agent_driver::cached_steps(&task.node, flow),
            &overrides,
        );
        let user = task
            .node
            .driver_internal_info
            .get(&format!("user_{key}_steps"))
            .and_then(Value::as_array)
            .cloned();
        let list = match (flow, user) {
            (StepType::Deploy, user) => {
                let user = steps::validate_user_steps(&user.unwrap_or_default(), &known, flow)?;
                let mut list: Vec<Step> = known
                    .into_iter()
                    .filter(|k| k.priority() > 0 && !user.iter().any(|u| u.same_step(k)))
                    .collect();
                list.extend(user.into_iter().filter(|u| u.priority() > 0));
                steps::order(list, flow)
            }
            (_, Some(user))
                if task.node.target_provision_state.as_deref() != Some(state::AVAILABLE)
                    || flow == StepType::Service =>
            {
                steps::validate_user_steps(&user, &known, flow)?
            }
            _ => steps::automated(known, flow),
        };
        task.node
            .driver_internal_info
            .insert(format!("{key}_steps"), serde_json::to_value(&list).unwrap_or_default());
        task.node.driver_internal_info.remove(&format!("{key}_step_index"));
        Ok(())
    }

    async fn start_deploy(&self, task: &mut Task) -> Result<(), String> {
        self.build_list(task, StepType::Deploy)?;
        let list = task
            .node
            .driver_internal_info
            .get("deploy_steps")
            .cloned()
            .unwrap_or_default();
        self.db
            .add_history(
                &task.node.uuid,
                "INFO",
                &format!("Starting deployment with steps={list}"),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.run_steps(task, StepType::Deploy).await
    }

    fn list_of(node: &NodeRecord, flow: StepType) -> Result<Vec<Step>, String> {
        let key = flow.as_str();
        node.driver_internal_info
            .get(&format!("{key}_steps"))
            .cloned()
            .filter(|v| !v.is_null())
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("corrupt {key}_steps: {e}"))
            .map(Option::unwrap_or_default)
    }

    /// Run `dii.<flow>_steps` from the next index. A step that waits leaves the node in the
    /// flow's wait state; heartbeats (or fast steps) continue it here.
    pub async fn run_steps(&self, task: &mut Task, flow: StepType) -> Result<(), String> {
        let key = flow.as_str();
        let list = Self::list_of(&task.node, flow)?;
        let dii = &mut task.node.driver_internal_info;
        dii.remove(&format!("resume_{key}_step"));
        let skip_current = dii
            .remove(&format!("skip_current_{key}_step"))
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let start = match dii.get(&format!("{key}_step_index")).and_then(Value::as_u64) {
            None => 0,
            Some(i) if skip_current => i as usize + 1,
            Some(i) => i as usize,
        };
        for (index, step) in list.iter().enumerate().skip(start) {
            let doc: JsonObject = serde_json::to_value(step)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            *task.node.current_step_mut(flow) = doc;
            task.node
                .driver_internal_info
                .insert(format!("{key}_step_index"), json!(index));
            self.save(&mut task.node).await.map_err(|e| e.to_string())?;
            tracing::info!(node = %task.node.uuid, %flow, step = %format!("{}.{}", step.interface, step.step), index, "running step");
            let outcome = self.execute_step(task, step).await.map_err(|e| {
                let what = match flow {
                    StepType::Clean => "Clean",
                    StepType::Deploy => "Deploy",
                    StepType::Service => "Service",
                };
                format!(
                    "{what} step {}.{} failed on node {}: {e}",
                    step.interface, step.step, task.node.uuid
                )
            })?;
            if outcome == StepOutcome::Wait {
                return self.event(&mut task.node, "wait").await;
            }
            crate::crash_point::reached(crate::crash_point::BETWEEN_STEPS);
        }
        self.finish_flow(task, flow, &list).await
    }

    async fn finish_flow(&self, task: &mut Task, flow: StepType, list: &[Step]) -> Result<(), String> {
        let key = flow.as_str();
        let manual = task.node.target_provision_state.as_deref() == Some(state::MANAGEABLE);
        task.node.current_step_mut(flow).clear();
        task.node.driver_internal_info.remove(&format!("{key}_reboot"));
        task.node.driver_internal_info.remove(&format!("user_{key}_steps"));
        task.node.driver_internal_info.remove("deployment_reboot");
        task.node.driver_internal_info.remove("cleaning_reboot");
        if flow != StepType::Deploy {
            // Deploy keeps its list and final index, in the shape operators know from the
            // deploy-steps documentation; cleaning and servicing drop theirs as upstream.
            task.node.driver_internal_info.remove(&format!("{key}_step_index"));
            task.node
                .driver_internal_info
                .insert(format!("{key}_steps"), Value::Null);
        }
        let deploy = task.driver.deploy.clone();
        match flow {
            StepType::Clean => deploy
                .tear_down_cleaning(task)
                .await
                .map_err(|e| format!("Failed to tear down cleaning: {e}"))?,
            StepType::Service => deploy
                .tear_down_service(task)
                .await
                .map_err(|e| format!("Failed to tear down servicing: {e}"))?,
            StepType::Deploy => {
                if !agent_driver::agent_is_alive(task) {
                    // The session ends; the steps the agent offered stay for operators to see.
                    let cached = task.node.driver_internal_info.get("agent_cached_deploy_steps").cloned();
                    agent_driver::wipe_agent_session(&mut task.node);
                    if let Some(cached) = cached {
                        task.node
                            .driver_internal_info
                            .insert("agent_cached_deploy_steps".into(), cached);
                    }
                }
            }
        }
        let names: Vec<String> = list.iter().map(|s| format!("{}.{}", s.interface, s.step)).collect();
        let (what, event) = match flow {
            StepType::Clean if manual => ("Manual Cleaning", "manage"),
            StepType::Clean => ("Automated Cleaning", "done"),
            StepType::Deploy => ("Deployment", "done"),
            StepType::Service => ("Servicing", "done"),
        };
        self.db
            .add_history(
                &task.node.uuid,
                "INFO",
                &format!("{what} completed successfully with steps={names:?}"),
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(node = %task.node.uuid, flow = what, "completed");
        self.event(&mut task.node, event).await
    }

    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        match step.step.as_str() {
            "power_on" | "power_off" | "reboot" => {
                let target = match step.step.as_str() {
                    "power_on" => "power on",
                    "power_off" => "power off",
                    _ => "rebooting",
                };
                agent_driver::power_action(task, target).await?;
                Ok(StepOutcome::Done)
            }
            _ => {
                let iface = task
                    .driver
                    .interface(&step.interface)
                    .cloned()
                    .ok_or_else(|| DriverError::Invalid(format!("unknown interface {}", step.interface)))?;
                iface.execute_step(task, step).await
            }
        }
    }

    /// `abort` (reference §4.8): wait states fail at once unless the running step is not
    /// abortable, in which case the flow stops after it.
    async fn abort(self: &Arc<Self>, node_uuid: &str) -> Result<(), EngineError> {
        let lock = self.locks.acquire(node_uuid).await?;
        let result = async {
            let node = self.node(node_uuid).await?;
            let mut task = self.task(node).await?;
            let flow = flow_of(&task.node);
            let step = match flow {
                Some(StepType::Clean) => task.node.clean_step.clone(),
                Some(StepType::Deploy) => task.node.deploy_step.clone(),
                Some(StepType::Service) => task.node.service_step.clone(),
                None => JsonObject::new(),
            };
            if !step.is_empty() && step.get("abortable").and_then(Value::as_bool) != Some(true) {
                let mut step = step;
                step.insert("abort_after".into(), json!(true));
                match flow {
                    Some(StepType::Clean) => task.node.clean_step = step,
                    Some(StepType::Deploy) => task.node.deploy_step = step,
                    _ => task.node.service_step = step,
                }
                self.save(&mut task.node).await?;
                return Ok(());
            }
            let message = format!(
                "By request, the {} operation was aborted during or after the completion of step \"{}\"",
                flow.map(|f| f.as_str()).unwrap_or("provision"),
                step.get("step").and_then(Value::as_str).unwrap_or("-")
            );
            fire(&mut task.node, "abort", None).map_err(EngineError::Internal)?;
            task.node.last_error = Some(message.clone());
            task.node.clean_step.clear();
            task.node.deploy_step.clear();
            task.node.service_step.clear();
            if task.driver.deploy.uses_agent() {
                agent_driver::power_action(&mut task, "power off")
                    .await
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                // The ramdisk's boot files (script, ISO, virtual CD) go too; the abort stands
                // even if that fails.
                let boot = task.driver.boot.clone();
                if let Err(e) = boot.clean_up_ramdisk(&mut task).await {
                    tracing::warn!(node = %node_uuid, "after the abort, cleaning up the ramdisk boot failed: {e}");
                }
            }
            self.save(&mut task.node).await?;
            self.db.add_history(node_uuid, "ERROR", &message).await?;
            Ok(())
        }
        .await;
        lock.release().await?;
        result
    }

    /// `PUT .../states/power`.
    pub async fn set_power(self: &Arc<Self>, ident: &str, target: &str) -> Result<(), EngineError> {
        let node = self.node(ident).await?;
        let driver = self.driver(&node)?;
        let supported = driver.power.supported_power_states();
        if !supported.contains(&target) {
            return Err(EngineError::Invalid(format!(
                "The requested power state \"{target}\" is not supported by node {}; supported: {}",
                node.uuid,
                supported.join(", ")
            )));
        }
        let lock = self.locks.acquire(&node.uuid).await?;
        let node = match self.node(&node.uuid).await {
            Ok(n) => n,
            Err(e) => {
                lock.release().await?;
                return Err(e);
            }
        };
        let mut task = match self.task(node).await {
            Ok(t) => t,
            Err(e) => {
                lock.release().await?;
                return Err(e);
            }
        };
        task.node.target_power_state = Some(crate::drivers::power_state_after(target).to_owned());
        if let Err(e) = self.save(&mut task.node).await {
            lock.release().await?;
            return Err(e);
        }
        let me = Arc::clone(self);
        let target = target.to_owned();
        tokio::spawn(async move {
            let outcome = agent_driver::power_action(&mut task, &target).await;
            task.node.target_power_state = None;
            match outcome {
                Ok(()) => task.node.last_error = None,
                Err(e) => {
                    let message = format!("Failed to change power state to \"{target}\": {e}");
                    tracing::error!(node = %task.node.uuid, error = %message, "power action failed");
                    task.node.last_error = Some(message);
                }
            }
            if let Err(e) = me.save(&mut task.node).await {
                tracing::error!(node = %task.node.uuid, error = %e, "could not save the power state");
            }
            if let Err(e) = lock.release().await {
                tracing::error!(node = %task.node.uuid, error = %e, "could not release the node lock");
            }
        });
        Ok(())
    }

    /// `GET .../validate`: every interface's verdict.
    pub async fn validate(&self, ident: &str) -> Result<Value, EngineError> {
        let node = self.node(ident).await?;
        let driver = self.driver(&node)?;
        let mut out = JsonObject::new();
        for (kind, iface) in &driver.interfaces {
            let verdict = match iface.validate(&node).await {
                Ok(()) => json!({"result": true}),
                Err(e) => json!({"result": false, "reason": e.to_string()}),
            };
            out.insert((*kind).to_owned(), verdict);
        }
        Ok(Value::Object(out))
    }
}
