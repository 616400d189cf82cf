//! The reserved steps `hold` and `wait`: flow control the conductor does itself, whatever
//! interface the step names (Ironic's `use_reserved_step_handler`; the power actions
//! `power_on`, `power_off` and `reboot` go through [`crate::drivers::power::step_target`]).
//!
//! * `hold`: the node goes to `<flow> hold` (`clean hold`, `deploy hold`, `service hold`) and
//!   stays there, its heartbeats recorded and no callback timeout counting, until the `unhold`
//!   verb (the flow goes on at once with the next step) or `abort` (the flow stops at once).
//! * `wait` without `seconds`: the node goes to `<flow> wait`; the agent's next heartbeat goes
//!   on with the next step (with no agent, the callback timeout ends the flow).
//! * `wait` with `seconds`: a pause of that many seconds, at most
//!   `max_conductor_wait_step_seconds` (a longer request is cut, with a warning in the node's
//!   history), then the next step. The node keeps its lock and working state meanwhile, as in
//!   Ironic; a conductor that stops during the pause leaves a step that runs again.
//!
//! Where Ironic 39 differs (docs/compatibility.md): its validation of a user's step list leaves
//! the reserved steps out, so they never run. Its handlers, were they reached, would not go on
//! either: after `unhold` of a clean or deploy hold, and `wait` without seconds, the next
//! heartbeat goes on only if the agent's last command is the reserved step, which no agent
//! runs; after `wait` with seconds the node is left in its working state, where heartbeats are
//! only recorded; and an `abort` of a hold is put off until the hold ends. Rivet runs them as
//! Ironic's documentation describes, goes on, and aborts, as the operator asked.

use std::time::Duration;

use rivet_common::steps::{Step, StepType};

use super::FlowError;
use crate::engine::Conductor;
use crate::states::fire;

/// What a reserved flow-control step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    /// `hold`: stop in the flow's hold state until `unhold`.
    Hold,
    /// `wait` without seconds: stop in the flow's wait state until the next heartbeat.
    WaitForHeartbeat,
    /// `wait` with seconds: pause, then go on.
    Pause(u64),
}

impl FlowControl {
    /// The flow control `step` asks for, or `None` for any other step.
    ///
    /// # Errors
    /// A `wait` step whose `seconds` is not a whole number of seconds
    /// ([`crate::steps::wait_seconds`]).
    pub fn of(step: &Step) -> Result<Option<Self>, String> {
        Ok(match step.step.as_str() {
            "hold" => Some(FlowControl::Hold),
            "wait" => Some(match crate::steps::wait_seconds(step)? {
                Some(seconds) => FlowControl::Pause(seconds),
                None => FlowControl::WaitForHeartbeat,
            }),
            _ => None,
        })
    }

    /// Whether the step named `name` is `hold` or `wait`: nothing of it can be half-done, so an
    /// `abort` stops the flow at once and a restart may run it again.
    pub fn is_flow_control(name: &str) -> bool {
        matches!(name, "hold" | "wait")
    }
}

impl Conductor {
    /// Do what the flow-control step `name` (`interface.step`, already saved as running) of
    /// `flow` asks (`control`, from [`FlowControl::of`]). `Ok(true)`: the flow goes on with the
    /// next step now; `Ok(false)`: the node is left held or waiting.
    pub(super) async fn run_flow_control(
        &self,
        task: &mut crate::drivers::Task,
        flow: StepType,
        name: &str,
        control: FlowControl,
    ) -> Result<bool, FlowError> {
        match control {
            FlowControl::Hold => {
                fire(&mut task.node, "hold", None)?;
                self.save(&mut task.node).await?;
                tracing::info!(node = %task.node.uuid, %flow, "held by a hold step; unhold goes on, abort stops");
                self.db
                    .add_history(
                        &task.node.uuid,
                        "INFO",
                        &format!("Held by step {name}: the {flow} flow goes on with unhold, or stops with abort"),
                    )
                    .await?;
                Ok(false)
            }
            FlowControl::WaitForHeartbeat => {
                self.event(&mut task.node, "wait").await?;
                Ok(false)
            }
            FlowControl::Pause(asked) => {
                let most = self.config.max_conductor_wait_step_seconds;
                if asked > most {
                    let warning = format!(
                        "Step {name} asked to wait {asked} s; the conductor waits at most {most} s (max_conductor_wait_step_seconds)"
                    );
                    tracing::warn!(node = %task.node.uuid, "{warning}");
                    self.db.add_history(&task.node.uuid, "WARNING", &warning).await?;
                }
                tokio::time::sleep(Duration::from_secs(asked.min(most))).await;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, args: serde_json::Value) -> Step {
        serde_json::from_value(json!({"interface": "deploy", "step": name, "args": args})).expect("step")
    }

    #[test]
    fn hold_and_wait_are_flow_control_and_nothing_else_is() {
        assert_eq!(FlowControl::of(&step("hold", json!({}))), Ok(Some(FlowControl::Hold)));
        assert_eq!(
            FlowControl::of(&step("wait", json!({}))),
            Ok(Some(FlowControl::WaitForHeartbeat))
        );
        assert_eq!(
            FlowControl::of(&step("wait", json!({"seconds": "7"}))),
            Ok(Some(FlowControl::Pause(7)))
        );
        assert!(FlowControl::of(&step("wait", json!({"seconds": -7}))).is_err());
        for other in ["power_on", "reboot", "erase_devices"] {
            assert_eq!(FlowControl::of(&step(other, json!({}))), Ok(None), "{other}");
            assert!(!FlowControl::is_flow_control(other));
        }
    }
}
