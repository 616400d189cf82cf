//! The conductor's engine: operator verbs and power actions, run under the node's exclusive
//! lock in background workers, as Ironic's conductor does (reference §4–5).
//!
//! A verb is checked against the state table, the first event is fired and saved while the
//! API request waits, then a worker holding the lock carries the flow on (cleaning, deploying,
//! ...) and releases the lock at the end, on every path.

use std::collections::BTreeMap;
use std::sync::Arc;

use rivet_common::JsonObject;
use rivet_common::steps::StepType;
use rivet_common::version::ApiVersion;
use serde_json::{Value, json};

use crate::agent_client::AgentClient;
use crate::config::ConductorConfig;
use crate::db::{Database, DbError};
use crate::drivers::{Driver, DriverRegistry, DriverSettings, Task};
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
            fenced @ DbError::Fenced { .. } => EngineError::Conflict(fenced.to_string()),
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
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
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
    /// The live conductors and the node rings, from the last membership round.
    pub members: std::sync::RwLock<crate::cluster::Members>,
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
            awaiting_command: None,
        })
    }

    /// Save a node (stamps `updated_at`), then record in its history the provision state
    /// changes made to it since it was read ([`crate::model::Transition::recorded`]).
    pub async fn save(&self, node: &mut NodeRecord) -> Result<(), EngineError> {
        node.updated_at = Some(now_iso());
        self.db.update_node(node).await?;
        // Once stored, the state changes made since the node was read join its history.
        for transition in std::mem::take(&mut node.transitions) {
            if transition.recorded() {
                self.db.add_history(&node.uuid, "INFO", &transition.describe()).await?;
            }
        }
        Ok(())
    }

    /// Apply an operator verb (`PUT .../states/provision`), here or at the node's owner
    /// ([`crate::cluster::work`]).
    pub async fn provision(
        self: &Arc<Self>,
        ident: &str,
        req: ProvisionRequest,
        version: ApiVersion,
    ) -> Result<(), EngineError> {
        let node = self.node(ident).await?;
        match self.route(&node)? {
            None => self.provision_here(&node.uuid, req, version).await,
            Some(owner) => {
                let work = crate::cluster::work::Work::Provision {
                    node: node.uuid.clone(),
                    request: req,
                    version: version.minor,
                };
                self.hand_over(&owner, &node.uuid, &work).await
            }
        }
    }

    /// Apply an operator verb on this conductor.
    pub async fn provision_here(
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
        if req.runbook.is_some() {
            let node = self.node(ident).await?;
            self.apply_runbook(&node, &mut req, version.minor).await?;
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
                self.resolve_deploy_templates(&mut task.node).await?;
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
                    &task.driver.deploy.cached_steps(&task.node, flow),
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
            "inspect" => {
                let power = task.driver.power.clone();
                let inspect = task.driver.inspect.clone();
                for check in [power.validate(&task.node).await, inspect.validate(&task.node).await] {
                    check.map_err(|e| EngineError::Invalid(format!("Failed to validate inspection: {e}")))?;
                }
            }
            "rescue" => {
                let password = req.rescue_password.as_deref().unwrap_or_default();
                if password.trim().is_empty() {
                    return Err(EngineError::Invalid(
                        "A non-empty rescue_password is required to rescue a node.".into(),
                    ));
                }
                // Ironic fails the request in the conductor's validation (500, an
                // InstanceRescueFailure); the request is what is wrong, so 400 with its words
                // (docs/compatibility.md). Without this, `no-rescue` "rescued" at once.
                if task.node.interface("rescue") == "no-rescue" {
                    return Err(EngineError::Invalid(format!(
                        "Failed to rescue instance {} for node {}: Validation failed: Driver {} does not support rescue (disabled or not implemented).",
                        task.node.attr("instance_uuid").as_str().unwrap_or("None"),
                        task.node.uuid,
                        task.node.driver
                    )));
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
            // A misconfigured cleaning runbook refuses the request before the node moves, as in
            // Ironic (which answers 500; 400 here, see `cleaning_runbook`).
            "provide" => {
                self.cleaning_runbook(&task.node).await?;
            }
            _ => {}
        }
        let explicit_target = if target == "clean" {
            Some(state::MANAGEABLE)
        } else {
            None
        };
        states::fire(&mut task.node, event, explicit_target).map_err(|e| EngineError::Internal(e.to_string()))?;
        if [
            "manage", "provide", "inspect", "active", "deploy", "clean", "service", "adopt", "rescue", "unrescue",
        ]
        .contains(&target)
        {
            task.node.last_error = None;
        }
        self.save(&mut task.node).await?;
        Ok(())
    }

    /// The rest of a verb, in the background, holding the lock.
    async fn continue_verb(self: Arc<Self>, lock: NodeLock, mut task: Task, target: String) {
        let outcome = self.start_flow(&mut task, &target).await;
        if let Err(e) = outcome {
            tracing::error!(node = %task.node.uuid, %target, error = %e, "provisioning failed");
            self.fail_flow(&mut task, &e.to_string()).await;
        }
        if let Err(e) = lock.release().await {
            tracing::error!(node = %task.node.uuid, error = %e, "could not release the node lock");
        }
        self.watch_command(&task);
    }

    /// `abort` (reference §4.8), under the node's lock: the flow runner decides.
    async fn abort(self: &Arc<Self>, node_uuid: &str) -> Result<(), EngineError> {
        let lock = self.locks.acquire(node_uuid).await?;
        let result = async {
            let node = self.node(node_uuid).await?;
            if node.provision_state == state::SERVICEFAIL && node.maintenance {
                // Ironic's words and status (InvalidState, 409): a failed service step put the
                // node in maintenance, and the operator takes it out before going back.
                return Err(EngineError::Conflict(format!(
                    "Can not abort service on node \"{}\" while it is in maintenance mode. Please remove the node from maintenance prior to issuing the request to abort the service operation.",
                    node.uuid
                )));
            }
            let mut task = self.task(node).await?;
            self.abort_flow(&mut task).await.map_err(EngineError::from)
        }
        .await;
        lock.release().await?;
        result
    }

    /// `PUT .../states/power`, here or at the node's owner ([`crate::cluster::work`]).
    pub async fn set_power(self: &Arc<Self>, ident: &str, target: &str) -> Result<(), EngineError> {
        let node = self.node(ident).await?;
        match self.route(&node)? {
            None => self.set_power_here(&node.uuid, target).await,
            Some(owner) => {
                let work = crate::cluster::work::Work::Power {
                    node: node.uuid.clone(),
                    target: target.to_owned(),
                };
                self.hand_over(&owner, &node.uuid, &work).await
            }
        }
    }

    /// A power action on this conductor.
    pub async fn set_power_here(self: &Arc<Self>, ident: &str, target: &str) -> Result<(), EngineError> {
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
            let outcome = crate::drivers::power_action(&mut task, &target).await;
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
        // Ironic validates every interface but vendor (`non_vendor_interfaces`).
        for (kind, iface) in driver.interfaces.iter().filter(|(kind, _)| **kind != "vendor") {
            let verdict = match iface.validate(&node).await {
                Ok(()) => json!({"result": true}),
                Err(e) => json!({"result": false, "reason": e.to_string()}),
            };
            out.insert((*kind).to_owned(), verdict);
        }
        Ok(Value::Object(out))
    }
}
