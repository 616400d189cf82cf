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

use crate::config::ConductorConfig;
use crate::db::{Database, DbError};
use crate::drivers::{Driver, DriverError, DriverRegistry, StepOutcome};
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

/// The conductor: database, drivers, locks and settings.
#[derive(Debug)]
pub struct Conductor {
    pub db: Database,
    pub drivers: DriverRegistry,
    pub locks: NodeLocks,
    pub config: ConductorConfig,
}

fn step_key(flow: StepType) -> &'static str {
    match flow {
        StepType::Clean => "clean",
        StepType::Deploy => "deploy",
        StepType::Service => "service",
    }
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

    /// Save a node (stamps `updated_at`).
    pub async fn save(&self, node: &mut NodeRecord) -> Result<(), EngineError> {
        node.updated_at = Some(now_iso());
        self.db.update_node(node).await?;
        Ok(())
    }

    /// Clear this conductor's stale locks and fail flows it abandoned (reference §8.2).
    pub async fn recover_on_start(&self) -> Result<(), EngineError> {
        let cleared = self.db.clear_reservations(self.locks.host()).await?;
        if cleared > 0 {
            tracing::warn!(cleared, "released locks left by a previous run of this conductor");
        }
        for (stuck, failed) in states::STUCK_ON_START {
            for mut node in self.db.nodes_in_states(&[stuck]).await? {
                if node.reservation.is_some() {
                    continue;
                }
                let message = format!("The {stuck} state can't be resumed by conductor {}", self.locks.host());
                node.provision_state = (*failed).to_owned();
                node.last_error = Some(message.clone());
                node.provision_updated_at = Some(now_iso());
                self.save(&mut node).await?;
                self.db.add_history(&node.uuid, "ERROR", &message).await?;
            }
        }
        Ok(())
    }

    /// Apply an operator verb (`PUT .../states/provision`).
    pub async fn provision(
        self: &Arc<Self>,
        ident: &str,
        req: ProvisionRequest,
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
        let node = self.node(ident).await?;
        let event = verb.event;
        if states::next(&node.provision_state, event).is_none() {
            let message = format!(
                "The requested action \"{}\" can not be performed on node \"{}\" while it is in state \"{}\".",
                req.target, node.uuid, node.provision_state
            );
            return Err(if node.reservation.is_some() {
                EngineError::Conflict(message)
            } else {
                EngineError::Invalid(message)
            });
        }
        let lock = self.locks.acquire(&node.uuid).await?;
        // Re-read under the lock: the state may have moved while we waited.
        let mut node = self.node(&node.uuid).await?;
        if states::next(&node.provision_state, event).is_none() {
            let message = format!(
                "The requested action \"{}\" can not be performed on node \"{}\" while it is in state \"{}\".",
                req.target, node.uuid, node.provision_state
            );
            lock.release().await?;
            return Err(EngineError::Invalid(message));
        }
        let driver = match self.driver(&node) {
            Ok(d) => d,
            Err(e) => {
                lock.release().await?;
                return Err(e);
            }
        };
        match self.start_verb(&mut node, &driver, verb.target, event, &req).await {
            Ok(()) => {}
            Err(e) => {
                lock.release().await?;
                return Err(e);
            }
        }
        let me = Arc::clone(self);
        let target = verb.target.to_owned();
        tokio::spawn(async move { me.continue_verb(lock, node, driver, target).await });
        Ok(())
    }

    /// Checks and the first event, while the API caller waits.
    async fn start_verb(
        &self,
        node: &mut NodeRecord,
        driver: &Driver,
        target: &str,
        event: &str,
        req: &ProvisionRequest,
    ) -> Result<(), EngineError> {
        match target {
            "active" | "deploy" | "rebuild" => {
                if node.maintenance {
                    return Err(EngineError::Invalid(format!(
                        "Node {} is in maintenance mode; cannot deploy.",
                        node.uuid
                    )));
                }
                self.validate_for_deploy(node, driver).await?;
                if let Some(cd) = &req.configdrive {
                    node.instance_info.insert("configdrive".into(), cd.clone());
                }
                if let Some(user) = &req.deploy_steps {
                    node.driver_internal_info
                        .insert("user_deploy_steps".into(), Value::Array(user.clone()));
                } else {
                    node.driver_internal_info.remove("user_deploy_steps");
                }
            }
            "clean" => {
                let user = req
                    .clean_steps
                    .as_ref()
                    .ok_or_else(|| EngineError::Invalid("clean_steps is required for the clean target".into()))?;
                let known = steps::collect(driver, StepType::Clean, &[], &BTreeMap::new());
                let validated =
                    steps::validate_user_steps(user, &known, StepType::Clean).map_err(EngineError::Invalid)?;
                node.driver_internal_info.insert(
                    "clean_steps".into(),
                    serde_json::to_value(validated).unwrap_or_default(),
                );
            }
            "service" => {
                let user = req
                    .service_steps
                    .as_ref()
                    .ok_or_else(|| EngineError::Invalid("service_steps is required for the service target".into()))?;
                let known = steps::collect(driver, StepType::Service, &[], &BTreeMap::new());
                let validated =
                    steps::validate_user_steps(user, &known, StepType::Service).map_err(EngineError::Invalid)?;
                node.driver_internal_info.insert(
                    "service_steps".into(),
                    serde_json::to_value(validated).unwrap_or_default(),
                );
            }
            "rescue" => {
                let password = req.rescue_password.as_deref().unwrap_or_default();
                if password.trim().is_empty() {
                    return Err(EngineError::Invalid(
                        "A non-empty rescue_password is required to rescue a node.".into(),
                    ));
                }
                node.instance_info.insert("rescue_password".into(), json!(password));
            }
            "provide" if node.maintenance => {
                return Err(EngineError::Invalid(format!(
                    "Node {} is in maintenance mode; provide it after maintenance.",
                    node.uuid
                )));
            }
            _ => {}
        }
        let explicit_target = match target {
            "clean" => Some(state::MANAGEABLE),
            _ => None,
        };
        fire(node, event, explicit_target).map_err(EngineError::Internal)?;
        if target == "manage" || target == "provide" || target == "inspect" {
            node.last_error = None;
        }
        self.save(node).await?;
        Ok(())
    }

    async fn validate_for_deploy(&self, node: &NodeRecord, driver: &Driver) -> Result<(), EngineError> {
        for kind in ["power", "deploy", "boot"] {
            if let Some(iface) = driver.interface(kind) {
                iface
                    .validate(node)
                    .await
                    .map_err(|e| EngineError::Invalid(format!("{kind} validation failed: {e}")))?;
            }
        }
        Ok(())
    }

    /// The rest of a verb, in the background, holding the lock.
    async fn continue_verb(self: Arc<Self>, lock: NodeLock, mut node: NodeRecord, driver: Driver, target: String) {
        let outcome = self.run_flow(&mut node, &driver, &target).await;
        if let Err(message) = outcome {
            tracing::error!(node = %node.uuid, %target, error = %message, "provisioning failed");
            self.fail(&mut node, &message).await;
        }
        if let Err(e) = lock.release().await {
            tracing::error!(node = %node.uuid, error = %e, "could not release the node lock");
        }
    }

    /// Fire `fail` with `message` as last_error, if the state allows it.
    async fn fail(&self, node: &mut NodeRecord, message: &str) {
        node.last_error = Some(message.to_owned());
        if states::next(&node.provision_state, "fail").is_some() {
            let _ = fire(node, "fail", None);
        }
        let _ = self.save(node).await;
        let _ = self.db.add_history(&node.uuid, "ERROR", message).await;
    }

    async fn event(&self, node: &mut NodeRecord, event: &str) -> Result<(), String> {
        fire(node, event, None)?;
        self.save(node).await.map_err(|e| e.to_string())
    }

    async fn run_flow(&self, node: &mut NodeRecord, driver: &Driver, target: &str) -> Result<(), String> {
        match (target, node.provision_state.as_str()) {
            ("manage", state::VERIFYING) => {
                driver
                    .power
                    .validate(node)
                    .await
                    .map_err(|e| format!("Failed to validate power driver interface: {e}"))?;
                let power = driver
                    .power
                    .get_power_state(node)
                    .await
                    .map_err(|e| format!("Failed to get power state: {e}"))?;
                node.power_state = Some(power);
                self.event(node, "done").await
            }
            ("manage" | "abort" | "unhold", _) => Ok(()),
            ("provide", state::CLEANING) => self.automated_clean(node, driver).await,
            ("clean", state::CLEANING) => self.run_steps(node, driver, StepType::Clean, "manage").await,
            ("inspect", state::INSPECTING) => {
                driver.interface("inspect").map(|_| ()).ok_or("no inspect interface")?;
                self.db
                    .add_history(&node.uuid, "INFO", "Inspection completed")
                    .await
                    .map_err(|e| e.to_string())?;
                self.event(node, "done").await
            }
            ("active" | "deploy" | "rebuild", state::DEPLOYING) => self.deploy(node, driver).await,
            ("deleted" | "undeploy", state::DELETING) => {
                driver
                    .power
                    .set_power_state(node, "power off")
                    .await
                    .map_err(|e| format!("Failed to tear down: {e}"))?;
                node.instance_info.clear();
                node.attrs.insert("instance_uuid".into(), Value::Null);
                self.event(node, "clean").await?;
                self.automated_clean(node, driver).await
            }
            ("adopt", state::ADOPTING) => self.event(node, "done").await,
            ("rescue", state::RESCUING) => {
                node.instance_info.remove("rescue_password");
                self.event(node, "done").await
            }
            ("unrescue", state::UNRESCUING) => self.event(node, "done").await,
            ("service", state::SERVICING) => self.run_steps(node, driver, StepType::Service, "done").await,
            (t, s) => Err(format!("internal: no flow for target {t} in state {s}")),
        }
    }

    async fn automated_clean(&self, node: &mut NodeRecord, driver: &Driver) -> Result<(), String> {
        let enabled = node
            .attr("automated_clean")
            .as_bool()
            .unwrap_or(self.config.automated_clean);
        let list = if enabled {
            steps::automated(
                steps::collect(driver, StepType::Clean, &[], &BTreeMap::new()),
                StepType::Clean,
            )
        } else {
            Vec::new()
        };
        node.driver_internal_info
            .insert("clean_steps".into(), serde_json::to_value(&list).unwrap_or_default());
        self.run_steps(node, driver, StepType::Clean, "done").await
    }

    async fn deploy(&self, node: &mut NodeRecord, driver: &Driver) -> Result<(), String> {
        let known = steps::collect(driver, StepType::Deploy, &[], &BTreeMap::new());
        let user = node
            .driver_internal_info
            .get("user_deploy_steps")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let user = steps::validate_user_steps(&user, &known, StepType::Deploy)?;
        let mut list: Vec<Step> = known
            .into_iter()
            .filter(|k| k.priority() > 0 && !user.iter().any(|u| u.same_step(k)))
            .collect();
        list.extend(user.into_iter().filter(|u| u.priority() > 0));
        let list = steps::order(list, StepType::Deploy);
        node.driver_internal_info
            .insert("deploy_steps".into(), serde_json::to_value(&list).unwrap_or_default());
        self.db
            .add_history(
                &node.uuid,
                "INFO",
                &format!(
                    "Starting deployment with steps={}",
                    serde_json::to_string(&list).unwrap_or_default()
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.run_steps(node, driver, StepType::Deploy, "done").await
    }

    /// Run `dii.<flow>_steps` from the current index; fire `final_event` when all are done.
    pub async fn run_steps(
        &self,
        node: &mut NodeRecord,
        driver: &Driver,
        flow: StepType,
        final_event: &str,
    ) -> Result<(), String> {
        let key = step_key(flow);
        let list: Vec<Step> = node
            .driver_internal_info
            .get(&format!("{key}_steps"))
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("corrupt {key}_steps: {e}"))?
            .unwrap_or_default();
        let start = node
            .driver_internal_info
            .get(&format!("{key}_step_index"))
            .and_then(Value::as_u64)
            .map(|i| i as usize + 1)
            .unwrap_or(0);
        for (index, step) in list.iter().enumerate().skip(start) {
            let doc: JsonObject = serde_json::to_value(step)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            match flow {
                StepType::Clean => node.clean_step = doc,
                StepType::Deploy => node.deploy_step = doc,
                StepType::Service => node.service_step = doc,
            }
            node.driver_internal_info
                .insert(format!("{key}_step_index"), json!(index));
            self.save(node).await.map_err(|e| e.to_string())?;
            let outcome = self
                .execute_step(node, driver, step)
                .await
                .map_err(|e| format!("{} step {}.{} failed: {e}", capitalise(key), step.interface, step.step))?;
            if outcome == StepOutcome::Wait {
                return self.event(node, "wait").await;
            }
        }
        match flow {
            StepType::Clean => node.clean_step.clear(),
            StepType::Deploy => node.deploy_step.clear(),
            StepType::Service => node.service_step.clear(),
        }
        node.driver_internal_info.remove(&format!("{key}_step_index"));
        node.driver_internal_info.insert(format!("{key}_steps"), Value::Null);
        let names: Vec<String> = list.iter().map(|s| format!("{}.{}", s.interface, s.step)).collect();
        let what = match flow {
            StepType::Clean if final_event == "done" => "Automated Cleaning",
            StepType::Clean => "Manual Cleaning",
            StepType::Deploy => "Deployment",
            StepType::Service => "Servicing",
        };
        self.db
            .add_history(
                &node.uuid,
                "INFO",
                &format!("{what} completed successfully with steps={names:?}"),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.event(node, final_event).await
    }

    async fn execute_step(
        &self,
        node: &mut NodeRecord,
        driver: &Driver,
        step: &Step,
    ) -> Result<StepOutcome, DriverError> {
        match step.step.as_str() {
            "power_on" | "power_off" | "reboot" if steps::RESERVED.contains(&step.step.as_str()) => {
                let target = match step.step.as_str() {
                    "power_on" => "power on",
                    "power_off" => "power off",
                    _ => "rebooting",
                };
                driver.power.set_power_state(node, target).await?;
                Ok(StepOutcome::Done)
            }
            _ => {
                let iface = driver
                    .interface(&step.interface)
                    .ok_or_else(|| DriverError::Invalid(format!("unknown interface {}", step.interface)))?;
                iface.execute_step(node, step).await
            }
        }
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
        let mut node = self.node(&node.uuid).await?;
        node.target_power_state = Some(match target {
            "rebooting" | "soft rebooting" => "power on".to_owned(),
            "soft power off" => "power off".to_owned(),
            t => t.to_owned(),
        });
        if let Err(e) = self.save(&mut node).await {
            lock.release().await?;
            return Err(e);
        }
        let me = Arc::clone(self);
        let target = target.to_owned();
        tokio::spawn(async move {
            let outcome = driver.power.set_power_state(&mut node, &target).await;
            node.target_power_state = None;
            match outcome {
                Ok(()) => {
                    node.last_error = None;
                    node.driver_internal_info
                        .insert("last_power_state_change".into(), json!(crate::time::now_naive()));
                }
                Err(e) => {
                    let message = format!("Failed to change power state to \"{target}\": {e}");
                    tracing::error!(node = %node.uuid, error = %message, "power action failed");
                    node.last_error = Some(message);
                }
            }
            if let Err(e) = me.save(&mut node).await {
                tracing::error!(node = %node.uuid, error = %e, "could not save the power state");
            }
            if let Err(e) = lock.release().await {
                tracing::error!(node = %node.uuid, error = %e, "could not release the node lock");
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

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
