//! Vendor hardware managers as executables: drop a program into the managers directory
//! (`--hardware-managers-dir`, default `/etc/rivet/managers.d`) and the agent ranks and
//! dispatches it like a built-in manager, without rebuilding the ramdisk.
//!
//! Protocol (docs/vendor-guide.md): each call runs the program once with one JSON request on
//! stdin; the program writes JSON objects on stdout, one per line: any number of
//! `{"progress": "..."}` lines, then one answer. Requests carry `"method"`:
//!
//! | method | extra request keys | answer |
//! |---|---|---|
//! | `describe` | — | `{"name": str, "version": str}` |
//! | `evaluate` | — | `{"support": int}` (0 = not for this machine) |
//! | `get_steps` | `step_type`, `node`, `ports` | `{"steps": [step, ...]}` |
//! | `run_step` | `step`, `step_type`, `node`, `ports`, `args`, `disks`, `destructive` | `{"result": any}`, `{"error": str}` or `{"incompatible": str}` |
//!
//! How a call runs (process group, limits, timeouts) is [`process`]'s; what an answer may hold is
//! [`protocol`]'s. Steps are listed once per `get_*_steps` command and kept: running a step asks
//! no program again, so a manager whose listing fails costs only its own steps.

pub mod process;
pub mod protocol;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rivet_common::node::{Node, Port};
use rivet_common::steps::{Step, StepType};
use serde_json::{Value, json};

use super::{HardwareManager, ManagerError, StepContext, SupportLevel};
use crate::disk::devices::{BlockDevice, DeviceView};
use crate::error::{AgentError, ErrorKind};
use crate::progress::Progress;
pub use process::{Limits, PROTOCOL_ENV};

pub use crate::config::ManagerTimeouts as Timeouts;

/// A manager implemented by an executable.
#[derive(Debug)]
pub struct ExecutableManager {
    path: PathBuf,
    name: String,
    version: String,
    /// The IPA hooks it takes on ([`protocol::HOOKS`]).
    hooks: BTreeSet<String>,
    timeouts: Timeouts,
    limits: Limits,
    /// The last listing per step type: the steps, or why listing failed.
    listed: Mutex<BTreeMap<StepType, Result<Vec<Step>, String>>>,
}

/// Why a call to the program failed.
#[derive(Debug, thiserror::Error)]
#[error("hardware manager {program}: {reason}")]
pub struct CallError {
    program: String,
    reason: String,
}

impl ExecutableManager {
    /// Ask the program who it is.
    pub async fn load(path: &Path, timeouts: Timeouts) -> Result<ExecutableManager, CallError> {
        let limits = Limits::default();
        let fail = |reason: String| CallError {
            program: path.display().to_string(),
            reason,
        };
        let answer = process::call(
            path,
            &json!({"method": "describe"}),
            timeouts.query,
            limits,
            &Progress::discard(),
        )
        .await
        .map_err(|f| fail(f.0))?;
        let described = protocol::describe(&answer).map_err(|r| fail(format!("describe answer: {}", r.0)))?;
        Ok(ExecutableManager {
            path: path.to_owned(),
            name: described.name,
            version: described.version,
            hooks: described.hooks,
            timeouts,
            limits,
            listed: Mutex::new(BTreeMap::new()),
        })
    }

    /// `hardware manager <name> (<path>)`: how every error of this manager starts.
    fn who(&self) -> String {
        format!("hardware manager {} ({})", self.name, self.path.display())
    }

    async fn call(&self, request: &Value, timeout: Duration, progress: &Progress) -> Result<Value, String> {
        process::call(&self.path, request, timeout, self.limits, progress)
            .await
            .map_err(|f| format!("{}: {}", self.who(), f.0))
    }

    /// Call hook `method` with `request` (plus `method`) if the program took it on in `describe`;
    /// its answer is checked like `run_step`'s, failures are of `kind`.
    async fn hook(
        &self,
        method: &str,
        mut request: Value,
        timeout: Duration,
        progress: &Progress,
        kind: ErrorKind,
    ) -> Result<Value, ManagerError> {
        if !self.hooks.contains(method) {
            return Err(ManagerError::NotImplemented);
        }
        request["method"] = json!(method);
        let fail = |text: String| ManagerError::Failed(AgentError::new(kind, text));
        let answer = self.call(&request, timeout, progress).await.map_err(fail)?;
        match protocol::outcome(method, &answer).map_err(|r| fail(format!("{}: {}", self.who(), r.0)))? {
            protocol::Outcome::Result(result) => Ok(result),
            protocol::Outcome::Incompatible(why) => Err(ManagerError::Incompatible(why)),
            protocol::Outcome::Error(text) => Err(fail(format!("{} {method}: {text}", self.who()))),
        }
    }

    /// Ask the program for its steps, check them, and keep the outcome for execution.
    async fn list(&self, step_type: StepType, node: &Node, ports: &[Port]) -> Result<Vec<Step>, String> {
        let request = json!({"method": "get_steps", "step_type": step_type, "node": node, "ports": ports});
        let listed = match self.call(&request, self.timeouts.query, &Progress::discard()).await {
            Ok(answer) => protocol::steps(&answer).map_err(|r| format!("{}: get_steps answer: {}", self.who(), r.0)),
            Err(e) => Err(e),
        };
        self.listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(step_type, listed.clone());
        listed
    }

    /// The steps kept from the last listing of `step_type`, listing now if there was none.
    async fn kept(&self, step_type: StepType, node: &Node, ports: &[Port]) -> Result<Vec<Step>, String> {
        let kept = self
            .listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&step_type)
            .cloned();
        match kept {
            Some(listed) => listed,
            None => self.list(step_type, node, ports).await,
        }
    }
}

/// Load every executable file in `dir` (sorted by name). Programs that fail to describe
/// themselves are logged and skipped.
pub async fn load_dir(dir: &Path, timeouts: Timeouts) -> Vec<Arc<dyn HardwareManager>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::debug!(dir = %dir.display(), "no hardware managers directory");
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut out: Vec<Arc<dyn HardwareManager>> = Vec::new();
    for path in paths {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        match ExecutableManager::load(&path, timeouts).await {
            Ok(manager) => out.push(Arc::new(manager)),
            Err(e) => tracing::error!(error = %e, "hardware manager not loaded"),
        }
    }
    out
}

fn step_error(step_type: Option<StepType>, details: String) -> ManagerError {
    let kind = match step_type {
        Some(StepType::Clean) => ErrorKind::Cleaning,
        Some(StepType::Deploy) => ErrorKind::Deployment,
        Some(StepType::Service) => ErrorKind::Servicing,
        None => ErrorKind::CommandExecution,
    };
    ManagerError::Failed(AgentError::new(kind, details))
}

/// What the allowlist answers for this machine, for the request: the disks a step may write
/// (`disks`) and whether it may change the machine itself (NVRAM, firmware settings:
/// `machine`), as [`DeviceView::check_destructive`] and [`DeviceView::check_machine_changes`]
/// decide for Rust managers.
fn destructive(devices: &DeviceView, disks: &[rivet_common::inventory::Disk]) -> Value {
    let writable: Vec<&str> = disks
        .iter()
        .map(|d| d.name.as_str())
        .filter(|name| devices.check_destructive(name).is_ok())
        .collect();
    json!({
        "disks": writable,
        "machine": devices.check_machine_changes("change the machine").is_ok(),
    })
}

#[async_trait]
impl HardwareManager for ExecutableManager {
    fn class_name(&self) -> String {
        self.name.clone()
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    async fn evaluate_hardware_support(&self) -> SupportLevel {
        let answer = self
            .call(
                &json!({"method": "evaluate"}),
                self.timeouts.query,
                &Progress::discard(),
            )
            .await;
        match answer
            .and_then(|a| protocol::evaluate(&a).map_err(|r| format!("{}: evaluate answer: {}", self.who(), r.0)))
        {
            Ok(level) => level,
            Err(e) => {
                tracing::error!(error = %e, "evaluate failed; manager not loaded");
                SupportLevel::NONE
            }
        }
    }

    async fn erase_block_device(&self, disk: &BlockDevice, ctx: &StepContext) -> Result<(), ManagerError> {
        let disks = [disk.disk.clone()];
        let request = json!({"disk": disk.disk, "node": ctx.node, "destructive": destructive(&ctx.devices, &disks)});
        let timeout = self.timeouts.step;
        self.hook(
            "erase_block_device",
            request,
            timeout,
            &ctx.progress,
            ErrorKind::BlockDeviceErase,
        )
        .await
        .map(drop)
    }

    async fn get_os_install_device(&self, node: Option<&Node>, devices: &DeviceView) -> Result<String, ManagerError> {
        let disks: Vec<_> = devices.list_disks().into_iter().map(|d| d.disk).collect();
        let request = json!({"node": node, "destructive": destructive(devices, &disks), "disks": disks});
        let kind = ErrorKind::DeviceNotFound;
        let answer = self
            .hook(
                "get_os_install_device",
                request,
                self.timeouts.query,
                &Progress::discard(),
                kind,
            )
            .await?;
        match answer.as_str() {
            Some(device) if device.starts_with("/dev/") => Ok(device.to_owned()),
            _ => Err(ManagerError::Failed(AgentError::new(
                kind,
                format!(
                    "{}: get_os_install_device result {answer}: is not a /dev/ path",
                    self.who()
                ),
            ))),
        }
    }

    async fn inventory_additions(&self, _devices: &DeviceView) -> Result<rivet_common::JsonObject, ManagerError> {
        let kind = ErrorKind::CommandExecution;
        let answer = self
            .hook(
                "inventory_additions",
                json!({}),
                self.timeouts.query,
                &Progress::discard(),
                kind,
            )
            .await?;
        match answer {
            Value::Object(additions) => Ok(additions),
            other => Err(ManagerError::Failed(AgentError::new(
                kind,
                format!("{}: inventory_additions result {other}: is not an object", self.who()),
            ))),
        }
    }

    async fn collect_system_logs(&self) -> Result<Vec<(String, Vec<u8>)>, ManagerError> {
        let kind = ErrorKind::CommandExecution;
        let answer = self
            .hook(
                "collect_system_logs",
                json!({}),
                self.timeouts.query,
                &Progress::discard(),
                kind,
            )
            .await?;
        let refused = |why: &str| {
            ManagerError::Failed(AgentError::new(
                kind,
                format!("{}: collect_system_logs result: {why}", self.who()),
            ))
        };
        let Value::Object(members) = answer else {
            return Err(refused("is not an object of {member name: text}"));
        };
        members
            .into_iter()
            .map(|(name, text)| match text {
                Value::String(text) if !name.is_empty() && !name.split('/').any(|p| p == "..") => {
                    Ok((name, text.into_bytes()))
                }
                _ => Err(refused(&format!("member {name:?} is not a name with text"))),
            })
            .collect()
    }

    async fn get_steps(&self, step_type: StepType, node: &Node, ports: &[Port]) -> Result<Vec<Step>, ManagerError> {
        self.list(step_type, node, ports)
            .await
            .map_err(ManagerError::Configuration)
    }

    async fn execute(&self, name: &str, ctx: StepContext) -> Result<Value, ManagerError> {
        // Only steps the program listed are its methods; anything else passes to the next
        // manager. When its listing failed, every step passes on with that failure as the
        // reason, so a broken vendor manager costs only its own steps.
        let step_type = ctx.step_type.unwrap_or(StepType::Clean);
        let steps = self
            .kept(step_type, &ctx.node, &ctx.ports)
            .await
            .map_err(ManagerError::Incompatible)?;
        let Some(step) = steps.into_iter().find(|s| s.step == name) else {
            return Err(ManagerError::NotImplemented);
        };
        let timeout = match step.extra.get("timeout") {
            // Checked when listed; checked again here so no path converts an unchecked number.
            Some(value) => protocol::step_timeout(value).map_err(|why| {
                step_error(
                    ctx.step_type,
                    format!("{}: step {name} timeout {value}: {why}", self.who()),
                )
            })?,
            None => self.timeouts.step,
        };
        let disks: Vec<_> = ctx.devices.list_disks().into_iter().map(|d| d.disk).collect();
        let request = json!({
            "method": "run_step", "step": name, "step_type": step_type, "node": ctx.node,
            "ports": ctx.ports, "args": ctx.args, "destructive": destructive(&ctx.devices, &disks),
            "disks": disks,
        });
        let answer = self.call(&request, timeout, &ctx.progress).await;
        ctx.progress.clear();
        let answer = answer.map_err(|e| step_error(ctx.step_type, e))?;
        let outcome = protocol::outcome("run_step", &answer)
            .map_err(|r| step_error(ctx.step_type, format!("{}: step {name}: {}", self.who(), r.0)))?;
        match outcome {
            protocol::Outcome::Result(result) => Ok(result),
            protocol::Outcome::Incompatible(why) => Err(ManagerError::Incompatible(why)),
            protocol::Outcome::Error(text) => {
                Err(step_error(ctx.step_type, format!("{} step {name}: {text}", self.who())))
            }
        }
    }
}
