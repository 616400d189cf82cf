//! A conductor start re-drives every flow it left mid-way (docs/conductor.md "Restarts: flows
//! resume"). Upstream fails them all (reference §8.2); Rivet fails a node only when resuming
//! is unsafe, and says why.

use std::sync::Arc;

use super::{FlowError, FlowRecord, Next};
use crate::drivers::Task;
use crate::engine::{Conductor, EngineError};
use crate::states;
use crate::task::NodeLock;

/// Restarts that may find the same step running before the flow stops resuming it: a step
/// that kills the conductor every time must not keep a fleet of conductors restarting.
pub const MAX_STEP_RESTARTS: u32 = 3;

impl Conductor {
    /// Clear this conductor's stale locks and resume every flow it left mid-way: each node in a
    /// working state goes back to its last saved point, in the background, under its lock.
    pub async fn recover_on_start(self: &Arc<Self>) -> Result<(), EngineError> {
        let host = self.locks.host();
        let cleared = self.db.break_locks(host, host).await?.len();
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
            let stopped = host.to_owned();
            tokio::spawn(async move { me.resume(lock, node.uuid, stopped).await });
        }
        Ok(())
    }

    /// Resume one node's flow left by conductor `stopped` (this one before a restart, or a dead
    /// one taken over), holding its lock; a node that cannot resume fails with the reason. A
    /// node that left its working state meanwhile (another conductor resumed it first) is left
    /// alone.
    pub(crate) async fn resume(self: Arc<Self>, lock: NodeLock, uuid: String, stopped: String) {
        let task = match self.node(&uuid).await {
            Ok(node) if !states::WORKING_STATES.contains(&node.provision_state.as_str()) => {
                let _ = lock.release().await;
                return;
            }
            Ok(node) => self.task(node).await,
            Err(e) => Err(e),
        };
        match task {
            Ok(mut task) => {
                if let Err(e) = self.resume_flow(&mut task, &stopped).await {
                    tracing::error!(node = %uuid, error = %e, "resuming failed");
                    self.fail_flow(&mut task, &e.to_string()).await;
                }
            }
            Err(e) => tracing::error!(node = %uuid, error = %e, "cannot load a node to resume it"),
        }
        if let Err(e) = lock.release().await {
            tracing::error!(node = %uuid, error = %e, "could not release the node lock");
        }
    }

    /// Where a node's flow goes on after a restart:
    ///
    /// * no step started yet: the flow's start runs again (it builds the step list and
    ///   prepares again; booting the agent twice is harmless);
    /// * an in-band step was running: the node waits for the agent's next heartbeat, which shows
    ///   whether the agent has the command (then its result is taken as usual) or never got it
    ///   (then it is sent again);
    /// * an out-of-band step that is safe to repeat (the reserved power actions and `wait`, the
    ///   deploy interface's own steps, `fake` interfaces) runs again;
    /// * any other out-of-band step fails the node: it may have half-happened. So does a step
    ///   that [`MAX_STEP_RESTARTS`] restarts found running.
    async fn resume_flow(&self, task: &mut Task, stopped: &str) -> Result<(), FlowError> {
        let state = task.node.provision_state.clone();
        let target = states::resume_target(&state, task.node.target_provision_state.as_deref())
            .ok_or_else(|| FlowError::Internal(format!("no flow resumes state {state}")))?;
        let host = stopped.to_owned();
        let started = match states::flow_of(&state) {
            Some(flow) => {
                let record = FlowRecord::load(&task.node, flow)?;
                FlowRecord::current(&task.node, flow)?
                    .filter(|_| record.index.is_some())
                    .map(|step| (flow, record, step))
            }
            None => None,
        };
        let Some((flow, mut record, step)) = started else {
            let message = match states::flow_of(&state) {
                Some(flow) => format!(
                    "Conductor {host} stopped during {state} before its first step; the {flow} flow starts again"
                ),
                None => format!("Conductor {host} stopped during {state}; the {target} flow runs again"),
            };
            self.resumed(task, &message).await?;
            return self.start_flow(task, target).await;
        };
        let name = format!("{}.{}", step.interface, step.step);
        if record.restarts >= MAX_STEP_RESTARTS {
            return Err(FlowError::TooManyRestarts {
                host,
                flow,
                step: name,
                restarts: record.restarts + 1,
            });
        }
        record.restarts += 1;
        let deploy = task.driver.deploy.clone();
        let reserved = crate::steps::RESERVED.contains(&step.step.as_str());
        if !reserved && deploy.is_in_band(&task.node, flow, &step) {
            record.next = Next::AskAgent;
            record.store(&mut task.node);
            self.resumed(task, &format!("Conductor {host} stopped during {flow} step {name}; waiting for the agent to show whether it has the step"))
                .await?;
            return self.event(&mut task.node, "wait").await;
        }
        let repeatable =
            reserved || task.node.interface(&step.interface) == "fake" || deploy.is_repeatable(flow, &step);
        if repeatable {
            record.next = Next::Again;
            record.store(&mut task.node);
            self.resumed(
                task,
                &format!("Conductor {host} stopped during {flow} step {name}; the step runs again"),
            )
            .await?;
            return self.run_steps(task, flow).await;
        }
        Err(FlowError::UnsafeToResume { host, flow, step: name })
    }

    /// Record in the node's history how it resumes.
    async fn resumed(&self, task: &mut Task, message: &str) -> Result<(), FlowError> {
        tracing::warn!(node = %task.node.uuid, "{message}");
        self.db.add_history(&task.node.uuid, "WARNING", message).await?;
        Ok(())
    }
}
