//! A heartbeat while a flow waits for its agent (upstream `_heartbeat_<flow>_wait` and
//! `process_next_step`): the deploy interface says where the agent is with the running step
//! ([`InBandStatus`]); this module decides what the flow does about it.

use rivet_common::steps::{Step, StepType};
use serde_json::{Value, json};

use super::{FlowError, FlowRecord, Next};
use crate::drivers::{DriverError, InBandStatus, Task};
use crate::engine::Conductor;
use crate::states::{self, fire, state};
use crate::time::now_iso;

impl Conductor {
    /// Carry on the node's flow after a heartbeat (already checked, and recorded in the node by
    /// `ramdisk`); the node is locked. Nodes in maintenance, or not waiting in a flow, only
    /// record the beat. A flow that cannot go on fails with the reason.
    pub async fn on_heartbeat(&self, task: &mut Task) {
        if task.node.maintenance {
            return;
        }
        let state = task.node.provision_state.as_str();
        if state == state::RESCUEWAIT && crate::rescue::through_agent(task) {
            if let Err(e) = self.finalize_rescue(task).await {
                tracing::error!(node = %task.node.uuid, error = %e, "rescue failed");
                self.clean_up_rescue(task).await;
                self.fail_flow(task, &e.to_string()).await;
            }
            return;
        }
        let Some(flow) = states::flow_of(state).filter(|f| states::wait_state(*f) == state) else {
            return;
        };
        if let Err(e) = self.heartbeat_wait(task, flow).await {
            tracing::error!(node = %task.node.uuid, %flow, error = %e, "step flow failed");
            // An abort after a step has already moved the node to its failed state; it is
            // recorded (message, powered off, saved) all the same.
            if states::flow_of(&task.node.provision_state).is_some() || matches!(e, FlowError::AbortedAfter { .. }) {
                self.fail_flow(task, &e.to_string()).await;
            }
        }
    }

    async fn heartbeat_wait(&self, task: &mut Task, flow: StepType) -> Result<(), FlowError> {
        task.node.provision_updated_at = Some(now_iso());
        let current = FlowRecord::current(&task.node, flow)?;
        let needs_steps = (flow == StepType::Deploy
            && !task.node.driver_internal_info.contains_key("agent_cached_deploy_steps"))
            || (current.is_none() && flow != StepType::Deploy);
        if needs_steps {
            let deploy = task.driver.deploy.clone();
            match deploy.refresh_steps(task, flow).await {
                Ok(()) if flow == StepType::Deploy => self.rebuild_deploy_steps(task)?,
                Ok(()) => {}
                // The callback URL came with a valid heartbeat, but the agent's network is still
                // coming up: the next heartbeat tries again, as docs/conductor.md promises.
                Err(DriverError::AgentNotReady(why)) => {
                    tracing::info!(node = %task.node.uuid, %flow, reason = %why, "agent not reachable yet; retrying on its next heartbeat");
                    self.save(&mut task.node).await?;
                    return Ok(());
                }
                Err(e) => return Err(FlowError::Agent(e)),
            }
        }
        let Some(current) = current else {
            if flow == StepType::Deploy {
                // A deployment waits only inside a step; nothing runs, nothing to do.
                self.save(&mut task.node).await?;
                return Ok(());
            }
            // The agent just booted to start cleaning or servicing.
            fire(&mut task.node, "resume", None)?;
            self.build_step_list(task, flow)?;
            return self.run_steps(task, flow).await;
        };
        if super::reserved::FlowControl::is_flow_control(&current.step) {
            // The conductor ran this step itself (a `wait` for this very heartbeat): no agent
            // command to ask about, the flow goes on after it.
            return self.continue_steps(task, flow).await;
        }
        self.process_next_step(task, flow, &current).await
    }

    /// Read where the agent is with `current` and move on.
    async fn process_next_step(&self, task: &mut Task, flow: StepType, current: &Step) -> Result<(), FlowError> {
        let deploy = task.driver.deploy.clone();
        let status = deploy
            .in_band_status(task, flow, current)
            .await
            .map_err(FlowError::Agent)?;
        let record = FlowRecord::load(&task.node, flow)?;
        let asking = record.next == Next::AskAgent;
        // The step is known not to have reached the agent (a restart asks, or it could not be
        // sent): another command's result means it must be sent now.
        let unsent = matches!(record.next, Next::AskAgent | Next::Again);
        match status {
            InBandStatus::NotAnswering(why) => {
                tracing::info!(node = %task.node.uuid, error = %why, "agent not answering yet");
                self.save(&mut task.node).await?;
                Ok(())
            }
            InBandStatus::NoStepRun => {
                if asking {
                    // Resumed after a restart and the agent has run no step: the current one
                    // was never sent, so it runs now rather than being skipped.
                    FlowRecord::set_next(&mut task.node, flow, Next::Again);
                }
                task.node.driver_internal_info.remove(&format!("{flow}_reboot"));
                task.node.driver_internal_info.remove("deployment_reboot");
                self.continue_steps(task, flow).await
            }
            InBandStatus::OtherCommand { running: false } if unsent => {
                // A conductor stopped between saving the step and sending it: the agent's last
                // command is not this step, so the agent never got it. Send it now.
                tracing::warn!(node = %task.node.uuid, %flow, step = %current.step, "the agent never received the step; sending it again");
                FlowRecord::set_next(&mut task.node, flow, Next::Again);
                self.continue_steps(task, flow).await
            }
            InBandStatus::OtherCommand { .. } | InBandStatus::Running => {
                self.save(&mut task.node).await?;
                Ok(())
            }
            InBandStatus::Failed(message) => Err(FlowError::AgentStep {
                flow,
                step: current.step.clone(),
                interface: current.interface.clone(),
                node: task.node.uuid.clone(),
                message,
            }),
            InBandStatus::VersionMismatch => self.version_mismatch(task, flow).await,
            InBandStatus::Unknown(status) => Err(FlowError::UnknownStatus {
                flow,
                step: current.step.clone(),
                status,
            }),
            InBandStatus::Succeeded(result) => {
                // The agent ran this very step: whatever the record expected, the flow goes on
                // after it, never runs it again.
                FlowRecord::set_next(&mut task.node, flow, Next::Following);
                if let Some(iface) = task.driver.interface(&current.interface).cloned() {
                    iface
                        .in_band_step_succeeded(&mut task.node, flow, current, result.as_ref())
                        .map_err(|source| FlowError::Step {
                            flow,
                            step: format!("{}.{}", current.interface, current.step),
                            node: task.node.uuid.clone(),
                            source,
                        })?;
                }
                if current.reboot_requested == Some(true) {
                    deploy.reboot_to_agent(task).await.map_err(FlowError::Agent)?;
                    task.node
                        .driver_internal_info
                        .insert(format!("{flow}_reboot"), json!(true));
                    self.save(&mut task.node).await?;
                    return Ok(());
                }
                self.continue_steps(task, flow).await
            }
        }
    }

    /// Hardware-manager versions changed (seed 001): automated cleaning restarts from the
    /// first step with fresh steps; manual cleaning, deploy and service fail clearly.
    async fn version_mismatch(&self, task: &mut Task, flow: StepType) -> Result<(), FlowError> {
        let version = |task: &Task| {
            task.node
                .driver_internal_info
                .get("hardware_manager_version")
                .cloned()
                .unwrap_or(Value::Null)
        };
        let before = version(task);
        let deploy = task.driver.deploy.clone();
        deploy.refresh_steps(task, flow).await.map_err(FlowError::Agent)?;
        let after = version(task);
        let automated =
            flow == StepType::Clean && task.node.target_provision_state.as_deref() == Some(state::AVAILABLE);
        if !automated {
            return Err(FlowError::VersionMismatch {
                flow,
                before: before.to_string(),
                after: after.to_string(),
            });
        }
        tracing::warn!(node = %task.node.uuid, %before, %after, "hardware manager versions changed: restarting automated cleaning");
        self.db
            .add_history(
                &task.node.uuid,
                "INFO",
                &format!("Hardware manager versions changed from {before} to {after}; automated cleaning restarted"),
            )
            .await?;
        fire(&mut task.node, "resume", None)?;
        self.build_step_list(task, flow)?;
        self.run_steps(task, flow).await
    }

    /// The current step is done (or must run again): go on with the list, unless the operator
    /// asked to abort after this step.
    pub(super) async fn continue_steps(&self, task: &mut Task, flow: StepType) -> Result<(), FlowError> {
        let current = task.node.current_step(flow);
        if current.get("abort_after").and_then(Value::as_bool) == Some(true) {
            if flow == StepType::Service {
                // Back to `active` with the instance booted, as an abort at once does.
                let current = current.clone();
                return self.abort_service(task, &current).await;
            }
            let step = current.get("step").and_then(Value::as_str).unwrap_or("-").to_owned();
            fire(&mut task.node, "abort", None)?;
            return Err(FlowError::AbortedAfter { flow, step });
        }
        if task.node.provision_state == states::wait_state(flow) {
            fire(&mut task.node, "resume", None)?;
        }
        self.run_steps(task, flow).await
    }
}
