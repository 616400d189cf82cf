//! Runs commands and remembers their results.
//!
//! Upstream semantics kept: one lock serialises command starts (a slow synchronous command makes
//! concurrent POSTs wait); a command is refused with 409 while the most recent one is still
//! running; errors about the request itself are answered 400 and not recorded; every
//! asynchronous command forces a heartbeat when it ends. Unlike upstream, the history is bounded
//! (oldest finished results are dropped) and keeps no parameters, so memory stays flat.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rivet_common::command::{CommandResult, CommandStatus};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::registry::{CommandOutcome, Mode, Params, Registry};
use crate::error::{AgentError, ErrorKind};
use crate::state::AgentState;

/// One recorded command; its result changes once, from RUNNING to final.
#[derive(Debug)]
struct Record {
    id: String,
    result: watch::Sender<CommandResult>,
}

impl Record {
    fn snapshot(&self) -> CommandResult {
        self.result.borrow().clone()
    }

    async fn finished(&self) -> CommandResult {
        let mut rx = self.result.subscribe();
        match rx.wait_for(|r| r.command_status.is_finished()).await {
            Ok(r) => r.clone(),
            // The sender lives in the record we hold, so it cannot be gone.
            Err(_) => self.snapshot(),
        }
    }
}

/// The command executor of one agent.
#[derive(Debug)]
pub struct Executor {
    registry: Registry,
    state: Arc<AgentState>,
    start_lock: tokio::sync::Mutex<()>,
    history: Mutex<VecDeque<Arc<Record>>>,
}

fn running(id: &str, name: &str) -> CommandResult {
    CommandResult {
        id: id.to_owned(),
        command_name: name.to_owned(),
        command_status: CommandStatus::Running,
        command_error: None,
        command_result: None,
    }
}

/// Turn a command's outcome into its final record, as upstream's sync/async wrappers do.
fn finish(mut result: CommandResult, outcome: CommandOutcome, mode: Mode) -> CommandResult {
    match outcome {
        Ok(Value::String(text)) => {
            let text = match mode {
                Mode::Sync => text,
                Mode::Async => format!("{}: {text}", result.command_name),
            };
            result.command_status = CommandStatus::Succeeded;
            result.command_result = Some(json!({ "result": text }));
        }
        Ok(value) => {
            result.command_status = CommandStatus::Succeeded;
            result.command_result = if value.is_null() { None } else { Some(value) };
        }
        Err(err) if err.kind == ErrorKind::VersionMismatch => {
            result.command_status = CommandStatus::VersionMismatch;
            result.command_error = Some(err.to_doc());
        }
        Err(err) => {
            result.command_status = CommandStatus::Failed;
            result.command_error = Some(err.to_doc());
        }
    }
    let outcome = match result.command_status {
        CommandStatus::Succeeded => "succeeded",
        CommandStatus::VersionMismatch => "version_mismatch",
        _ => "failed",
    };
    crate::metrics::metrics().command_finished(&result.command_name, outcome);
    result
}

impl Executor {
    /// An executor over `registry`.
    pub fn new(registry: Registry, state: Arc<AgentState>) -> Self {
        Executor {
            registry,
            state,
            start_lock: tokio::sync::Mutex::new(()),
            history: Mutex::new(VecDeque::new()),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Record>>> {
        // A panic while holding this lock leaves the deque intact; keep serving.
        self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, record: Arc<Record>) {
        let limit = self.state.config.command_history_limit;
        let mut history = self.history();
        history.push_back(record);
        while history.len() > limit {
            // Drop the oldest finished result; running ones must stay reachable.
            match history.iter().position(|r| r.snapshot().command_status.is_finished()) {
                Some(index) if index + 1 < history.len() => drop(history.remove(index)),
                _ => break,
            }
        }
    }

    /// Run `extension.command`; with `wait`, return only when it has finished.
    pub async fn execute(&self, name: &str, params: Params, wait: bool) -> Result<CommandResult, AgentError> {
        let guard = self.start_lock.lock().await;
        let (extension, command_name) = name.split_once('.').ok_or_else(|| {
            AgentError::new(
                ErrorKind::InvalidCommand,
                "Command name must be of the form <extension>.<name>",
            )
        })?;
        if let Some(last) = self.history().back() {
            let last = last.snapshot();
            if !last.command_status.is_finished() {
                return Err(AgentError::new(
                    ErrorKind::AgentIsBusy,
                    format!("executing command {}", last.command_name),
                ));
            }
        }
        let command = self.registry.resolve(extension, command_name)?;
        let mode = command.mode();
        let future = (command.prepare)(Arc::clone(&self.state), params)?;
        let id = uuid::Uuid::new_v4().to_string();
        tracing::info!(command = name, id = %id, ?mode, "executing command");

        match mode {
            Mode::Sync => {
                let outcome = future.await;
                if let Err(err) = &outcome
                    && err.kind.is_invalid_request()
                {
                    return Err(err.clone());
                }
                if let Err(err) = &outcome {
                    tracing::warn!(command = name, id = %id, error = %err, peak_rss_kib = peak_rss_kib(), "command failed");
                }
                let result = finish(running(&id, command_name), outcome, Mode::Sync);
                let (tx, _) = watch::channel(result.clone());
                self.push(Arc::new(Record { id, result: tx }));
                Ok(result)
            }
            Mode::Async => {
                let (tx, _) = watch::channel(running(&id, command_name));
                let record = Arc::new(Record {
                    id: id.clone(),
                    result: tx,
                });
                self.push(Arc::clone(&record));
                let state = Arc::clone(&self.state);
                let task_record = Arc::clone(&record);
                let command_label = name.to_owned();
                tokio::spawn(async move {
                    // Run the command in its own task so a panic is caught and reported.
                    let outcome = match tokio::spawn(future).await {
                        Ok(outcome) => outcome,
                        Err(join) => Err(AgentError::new(
                            ErrorKind::CommandExecution,
                            format!("command crashed: {join}"),
                        )),
                    };
                    match &outcome {
                        Ok(_) => tracing::info!(
                            command = %command_label,
                            id = %task_record.id,
                            peak_rss_kib = peak_rss_kib(),
                            "command succeeded"
                        ),
                        Err(err) => tracing::warn!(
                            command = %command_label,
                            id = %task_record.id,
                            error = %err,
                            peak_rss_kib = peak_rss_kib(),
                            "command failed"
                        ),
                    }
                    let done = finish(task_record.snapshot(), outcome, Mode::Async);
                    // The command's progress ends with it, before anyone can read it finished.
                    state.set_status(None);
                    task_record.result.send_replace(done);
                    state.force_heartbeat();
                });
                drop(guard);
                if wait {
                    Ok(record.finished().await)
                } else {
                    Ok(record.snapshot())
                }
            }
        }
    }

    /// Every remembered result, oldest first.
    pub fn list(&self) -> Vec<CommandResult> {
        self.history().iter().map(|r| r.snapshot()).collect()
    }

    /// One result; with `wait`, once it has finished.
    pub async fn get(&self, id: &str, wait: bool) -> Result<CommandResult, AgentError> {
        let record = self.history().iter().find(|r| r.id == id).cloned();
        let record = record
            .ok_or_else(|| AgentError::new(ErrorKind::NotFound, format!("Command Result with id {id} not found.")))?;
        if wait {
            Ok(record.finished().await)
        } else {
            Ok(record.snapshot())
        }
    }

    /// Names of the registered extensions.
    pub fn extension_names(&self) -> Vec<String> {
        self.registry.extension_names().map(str::to_owned).collect()
    }
}

/// The agent's peak resident memory so far, in KiB (`VmHWM` of `/proc/self/status`); 0 where
/// the kernel does not say. Logged as each command ends, so an operator (and the lab) can see
/// what an image write cost in memory on the machine itself.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
