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
//! | `run_step` | `step`, `step_type`, `node`, `ports`, `args`, `disks` | `{"result": any}`, `{"error": str}` or `{"incompatible": str}` |
//!
//! A non-zero exit, a timeout, or output that is not such JSON becomes a clear error naming
//! the program.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rivet_common::node::{Node, Port};
use rivet_common::steps::{Step, StepType};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{HardwareManager, ManagerError, Progress, StepContext, SupportLevel};
use crate::error::{AgentError, ErrorKind};

/// Environment variable telling the program which protocol version it speaks to.
pub const PROTOCOL_ENV: (&str, &str) = ("RIVET_MANAGER_PROTOCOL", "1");

/// Largest answer accepted from a program, so a runaway one cannot exhaust memory.
const MAX_OUTPUT: usize = 16 << 20;

pub use crate::config::ManagerTimeouts as Timeouts;

/// A manager implemented by an executable.
#[derive(Debug)]
pub struct ExecutableManager {
    path: PathBuf,
    name: String,
    version: String,
    timeouts: Timeouts,
}

#[derive(Debug, Deserialize)]
struct Describe {
    name: String,
    #[serde(default = "default_version")]
    version: String,
}

fn default_version() -> String {
    "1.0".into()
}

/// Why a call to the program failed.
#[derive(Debug, thiserror::Error)]
#[error("hardware manager {program}: {reason}")]
pub struct CallError {
    program: String,
    reason: String,
}

async fn call(path: &Path, request: &Value, timeout: Duration, progress: &Progress) -> Result<Value, CallError> {
    let program = path.display().to_string();
    let err = |reason: String| CallError {
        program: program.clone(),
        reason,
    };
    let mut child = tokio::process::Command::new(path)
        .env(PROTOCOL_ENV.0, PROTOCOL_ENV.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(format!("cannot start: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| err("no stdin".into()))?;
    let stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
    let mut stderr = child.stderr.take().ok_or_else(|| err("no stderr".into()))?;
    let method = request["method"].as_str().unwrap_or("?").to_owned();
    let work = async {
        let mut text = serde_json::to_vec(request).map_err(|e| err(e.to_string()))?;
        text.push(b'\n');
        // A program that ignores its input may close stdin early; that is not an error.
        let _ = stdin.write_all(&text).await;
        drop(stdin);
        let stderr_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            buf
        });
        let mut lines = BufReader::new(stdout).lines();
        let mut answer = None;
        // Objects usually come one per line; a pretty-printed object spans several lines, so
        // lines accumulate until they form a complete JSON value.
        let mut pending = String::new();
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| err(format!("reading its output: {e}")))?
        {
            if pending.len() + line.len() > MAX_OUTPUT {
                return Err(err(format!(
                    "answered {method} with more than {MAX_OUTPUT} bytes of output"
                )));
            }
            pending.push_str(&line);
            pending.push('\n');
            if pending.trim().is_empty() {
                pending.clear();
                continue;
            }
            let value: Value = match serde_json::from_str(&pending) {
                Ok(value) => value,
                Err(e) if e.is_eof() => continue,
                Err(_) => {
                    return Err(err(format!(
                        "answered {method} with output that is not JSON: {:?}",
                        truncate(&pending)
                    )));
                }
            };
            pending.clear();
            match value.get("progress").and_then(Value::as_str) {
                Some(message) if value.as_object().is_some_and(|o| o.len() == 1) => progress.report(message),
                _ => answer = Some(value),
            }
        }
        if !pending.trim().is_empty() {
            return Err(err(format!(
                "answered {method} with incomplete JSON: {:?}",
                truncate(&pending)
            )));
        }
        let status = child.wait().await.map_err(|e| err(e.to_string()))?;
        let stderr = stderr_task.await.unwrap_or_default();
        if !status.success() {
            let tail = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(2048)..])
                .trim()
                .to_owned();
            return Err(err(format!("{method} failed with {status}: {tail}")));
        }
        answer.ok_or_else(|| err(format!("gave no answer to {method}")))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(err(format!(
            "did not answer {method} within {timeout:?} and was stopped"
        ))),
    }
}

fn truncate(line: &str) -> String {
    line.chars().take(200).collect()
}

impl ExecutableManager {
    /// Ask the program who it is.
    pub async fn load(path: &Path, timeouts: Timeouts) -> Result<ExecutableManager, CallError> {
        let answer = call(
            path,
            &json!({"method": "describe"}),
            timeouts.query,
            &Progress::discard(),
        )
        .await?;
        let describe: Describe = serde_json::from_value(answer.clone()).map_err(|e| CallError {
            program: path.display().to_string(),
            reason: format!("describe answer {answer} is not {{\"name\": str, \"version\": str}}: {e}"),
        })?;
        Ok(ExecutableManager {
            path: path.to_owned(),
            name: describe.name,
            version: describe.version,
            timeouts,
        })
    }

    async fn steps(&self, step_type: StepType, node: &Node, ports: &[Port]) -> Result<Vec<Step>, ManagerError> {
        let request = json!({"method": "get_steps", "step_type": step_type, "node": node, "ports": ports});
        let answer = call(&self.path, &request, self.timeouts.query, &Progress::discard())
            .await
            .map_err(|e| ManagerError::Configuration(e.to_string()))?;
        let steps = answer.get("steps").cloned().unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(steps).map_err(|e| {
            ManagerError::Configuration(format!(
                "hardware manager {}: get_steps answer has malformed steps: {e}",
                self.name
            ))
        })
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

#[async_trait]
impl HardwareManager for ExecutableManager {
    fn class_name(&self) -> String {
        self.name.clone()
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    async fn evaluate_hardware_support(&self) -> SupportLevel {
        match call(
            &self.path,
            &json!({"method": "evaluate"}),
            self.timeouts.query,
            &Progress::discard(),
        )
        .await
        {
            Ok(answer) => match answer.get("support").and_then(Value::as_u64) {
                Some(level) => SupportLevel(level.min(u64::from(u32::MAX)) as u32),
                None => {
                    tracing::error!(manager = %self.name, %answer, "evaluate answer has no integer support; not loaded");
                    SupportLevel::NONE
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "evaluate failed; manager not loaded");
                SupportLevel::NONE
            }
        }
    }

    async fn get_steps(&self, step_type: StepType, node: &Node, ports: &[Port]) -> Result<Vec<Step>, ManagerError> {
        self.steps(step_type, node, ports).await
    }

    async fn execute(&self, name: &str, ctx: StepContext) -> Result<Value, ManagerError> {
        // Only steps the program lists are its methods; anything else passes to the next manager.
        let step_type = ctx.step_type.unwrap_or(StepType::Clean);
        let offered = self.steps(step_type, &ctx.node, &ctx.ports).await?;
        let Some(step) = offered.iter().find(|s| s.step == name) else {
            return Err(ManagerError::NotImplemented);
        };
        let timeout = step
            .extra
            .get("timeout")
            .and_then(Value::as_f64)
            .map(Duration::from_secs_f64)
            .unwrap_or(self.timeouts.step);
        let disks: Vec<_> = ctx.devices.list_disks().into_iter().map(|d| d.disk).collect();
        let request = json!({
            "method": "run_step", "step": name, "step_type": step_type, "node": ctx.node,
            "ports": ctx.ports, "args": ctx.args, "disks": disks,
        });
        let answer = call(&self.path, &request, timeout, &ctx.progress).await;
        ctx.progress.clear();
        let answer = answer.map_err(|e| step_error(ctx.step_type, e.to_string()))?;
        if let Some(why) = answer.get("incompatible") {
            return Err(ManagerError::Incompatible(
                why.as_str().map(str::to_owned).unwrap_or_else(|| why.to_string()),
            ));
        }
        if let Some(error) = answer.get("error") {
            let text = error.as_str().map(str::to_owned).unwrap_or_else(|| error.to_string());
            return Err(step_error(
                ctx.step_type,
                format!(
                    "hardware manager {} ({}) step {name}: {text}",
                    self.name,
                    self.path.display()
                ),
            ));
        }
        match answer.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(step_error(
                ctx.step_type,
                format!(
                    "hardware manager {} answered run_step without result, error or incompatible: {answer}",
                    self.name
                ),
            )),
        }
    }
}
