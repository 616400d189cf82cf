//! The `agent` RAID interface (Ironic's `AgentRAID`, `ironic/drivers/modules/agent.py`): the
//! RAID steps are the ramdisk's. Its hardware managers list them under the `raid` interface
//! (IPA's generic manager builds software RAID with mdadm: `create_configuration` and
//! `delete_configuration` clean steps, an `apply_configuration` deploy step, all priority 0);
//! this interface checks what a step asks for, sends it to the agent through the deploy
//! interface, and records what the agent built when the step ends.

use async_trait::async_trait;
use rivet_common::steps::{Step, StepType};
use serde_json::Value;

use crate::drivers::{DriverError, Interface, StepOutcome, Task};
use crate::model::NodeRecord;

/// Ironic's `agent` RAID interface.
#[derive(Debug)]
pub struct AgentRaid;

/// A boolean step argument ([`rivet_common::steps::bool_arg`]), `default` when absent.
/// Errors: any other value.
fn flag(step: &Step, name: &str, default: bool) -> Result<bool, DriverError> {
    rivet_common::steps::bool_arg(step.args.as_ref(), name, default).map_err(|other| {
        DriverError::Invalid(format!(
            "raid.{}: argument {name} must be a boolean, got {other}",
            step.step
        ))
    })
}

#[async_trait]
impl Interface for AgentRaid {
    fn name(&self) -> &'static str {
        "agent"
    }

    /// A stored target configuration must follow the schema (it was checked when it was set;
    /// an older database may hold one that was not).
    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        let target = node.attr("target_raid_config");
        if target.as_object().is_some_and(|t| !t.is_empty()) {
            crate::raid::validate(&target).map_err(DriverError::Invalid)?;
        }
        Ok(())
    }

    /// Check the step's request, then send it to the agent: `create_configuration` carries the
    /// node's target configuration filtered by `create_root_volume` / `create_nonroot_volumes`
    /// (in `driver_internal_info.target_raid_config`, as Ironic puts it), `apply_configuration`
    /// its `raid_config` argument, checked against the schema.
    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        match step.step.as_str() {
            "create_configuration" => {
                let root = flag(step, "create_root_volume", true)?;
                let nonroot = flag(step, "create_nonroot_volumes", true)?;
                let target = crate::raid::filter_target(&task.node, root, nonroot).map_err(DriverError::Invalid)?;
                task.node
                    .driver_internal_info
                    .insert("target_raid_config".into(), target);
            }
            "apply_configuration" => {
                let config = step.args.as_ref().and_then(|a| a.get("raid_config")).ok_or_else(|| {
                    DriverError::Invalid("raid.apply_configuration needs the argument raid_config".into())
                })?;
                crate::raid::validate(config).map_err(DriverError::Invalid)?;
            }
            _ => {}
        }
        let deploy = task.driver.deploy.clone();
        if !deploy.uses_agent() {
            return Err(DriverError::Invalid(format!(
                "the agent RAID interface runs its steps in the ramdisk; the deploy interface {} runs none",
                deploy.name()
            )));
        }
        deploy.execute_step(task, step).await
    }

    /// Ironic's post-step hooks: a configuration built (`create_configuration`,
    /// `apply_configuration`) becomes the node's `raid_config` from the agent's
    /// `<flow>_result`; a deleted one clears it.
    fn in_band_step_succeeded(
        &self,
        node: &mut NodeRecord,
        flow: StepType,
        step: &Step,
        command_result: Option<&Value>,
    ) -> Result<(), DriverError> {
        match step.step.as_str() {
            "create_configuration" | "apply_configuration" => {
                let built = command_result
                    .and_then(|r| r.get(format!("{flow}_result")))
                    .filter(|r| r.as_object().is_some_and(|o| !o.is_empty()));
                let Some(built) = built else {
                    return Err(DriverError::Failed(format!(
                        "Agent ramdisk didn't return a proper command result while building RAID on {}. It returned '{}' after command execution.",
                        node.uuid,
                        command_result.map(Value::to_string).unwrap_or_else(|| "null".into())
                    )));
                };
                crate::raid::update_raid_info(node, built).map_err(DriverError::Failed)
            }
            "delete_configuration" => {
                crate::raid::clear_raid_info(node);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
