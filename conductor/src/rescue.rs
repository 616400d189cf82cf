//! Rescue through the agent (the `agent` rescue interface): `rescue` powers an active node off
//! and boots the ramdisk; when the agent heartbeats in `rescue wait`, the conductor asks it to
//! `rescue.finalize_rescue` with the rescue password, hashed here (SHA-512 crypt, `$6$`), so
//! the agent sets up the rescue user and stops serving; the node is then `rescue`. `unrescue`
//! powers off, forgets the ramdisk and the password, and boots the instance: `active`.
//! A rescue that fails, or whose agent never calls back within `rescue_callback_timeout`, ends
//! in `rescue failed` with the machine powered off. With the `fake` rescue interface both verbs
//! finish at once, as before.
//!
//! Upstream: `ironic/drivers/modules/agent.py` (`AgentRescue`), `ironic/conductor/utils.py`
//! (`hash_password`, rescue timeouts).

use rivet_common::JsonObject;
use rivet_common::command::CommandStatus;
use serde_json::{Value, json};

use crate::agent_client::command_error_text;
use crate::agent_session;
use crate::drivers::{Task, power_action};
use crate::engine::Conductor;
use crate::flow::FlowError;
use crate::states::{fire, state};

/// Where the hashed password waits for the agent (Ironic's `instance_info` key).
const HASHED: &str = "hashed_rescue_password";

/// Whether the node rescues through its agent.
pub fn through_agent(task: &Task) -> bool {
    task.node.interface("rescue") == "agent"
}

fn driver_failed(context: &'static str) -> impl Fn(crate::drivers::DriverError) -> FlowError {
    move |source| FlowError::Driver { context, source }
}

impl Conductor {
    /// `rescue` (the node is `rescuing`): hash the password, boot the ramdisk, wait.
    pub(crate) async fn start_rescue(&self, task: &mut Task) -> Result<(), FlowError> {
        let password = task
            .node
            .instance_info
            .remove("rescue_password")
            .and_then(|p| p.as_str().map(str::to_owned))
            .unwrap_or_default();
        if !through_agent(task) {
            return self.event(&mut task.node, "done").await;
        }
        let hash = rivet_common::crypt::sha512_crypt(&password)
            .map_err(|e| FlowError::Internal(format!("hashing the rescue password: {e}")))?;
        task.node.instance_info.insert(HASHED.into(), json!(hash));
        power_action(task, "power off")
            .await
            .map_err(driver_failed("Failed to power off before the rescue"))?;
        agent_session::wipe(&mut task.node);
        let params = [("ipa-api-url".to_owned(), task.settings.api_url.clone())].into();
        crate::drivers::boot::boot_ramdisk_next(task, &params)
            .await
            .map_err(driver_failed("Failed to prepare the rescue ramdisk"))?;
        task.save_now()
            .await
            .map_err(driver_failed("Failed to save the rescue boot"))?;
        power_action(task, "power on")
            .await
            .map_err(driver_failed("Failed to power on the rescue ramdisk"))?;
        self.event(&mut task.node, "wait").await
    }

    /// A heartbeat in `rescue wait`: hand the password to the agent; the node is `rescue`.
    pub(crate) async fn finalize_rescue(&self, task: &mut Task) -> Result<(), FlowError> {
        let hash = task
            .node
            .instance_info
            .get(HASHED)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let params = JsonObject::from_iter([
            ("rescue_password".to_owned(), json!(hash)),
            ("hashed".to_owned(), json!(true)),
        ]);
        let result = task
            .agent
            .command(&task.node, "rescue.finalize_rescue", params, true)
            .await
            .map_err(|e| FlowError::Failed(format!("Node {} failed to finalize rescue: {e}", task.node.uuid)))?;
        if result.command_status != CommandStatus::Succeeded {
            return Err(FlowError::Failed(format!(
                "Node {} failed to finalize rescue: {}",
                task.node.uuid,
                command_error_text(&result)
            )));
        }
        // The machine runs the ramdisk from memory now: its boot files and the password go
        // (Ironic's `AgentRescue.clean_up` after finalizing).
        self.clean_up_rescue(task).await;
        fire(&mut task.node, "resume", None)?;
        fire(&mut task.node, "done", None)?;
        self.save(&mut task.node).await?;
        self.db
            .add_history(&task.node.uuid, "INFO", "Rescue finished: the rescue user is set up")
            .await?;
        tracing::info!(node = %task.node.uuid, "rescued");
        Ok(())
    }

    /// `abort` in `rescue wait`: the ramdisk boot and the password go, the machine is left as it
    /// is, `rescue failed` (Ironic's `AgentRescue.clean_up` and words).
    pub(crate) async fn abort_rescue(&self, task: &mut Task) -> Result<(), FlowError> {
        self.clean_up_rescue(task).await;
        let message = "By request, the rescue operation was aborted.";
        task.node.last_error = Some(message.into());
        fire(&mut task.node, "abort", None)?;
        self.save(&mut task.node).await?;
        self.db.add_history(&task.node.uuid, "ERROR", message).await?;
        Ok(())
    }

    /// Forget the rescue ramdisk boot and the password (a failure is only logged).
    pub(crate) async fn clean_up_rescue(&self, task: &mut Task) {
        task.node.instance_info.remove(HASHED);
        task.node.instance_info.remove("rescue_password");
        if through_agent(task) {
            let boot = task.driver.boot.clone();
            if let Err(e) = boot.clean_up_ramdisk(task).await {
                tracing::warn!(node = %task.node.uuid, error = %e, "cleaning up the rescue ramdisk boot");
            }
        }
    }

    /// `unrescue` (the node is `unrescuing`): the instance boots again.
    pub(crate) async fn unrescue(&self, task: &mut Task) -> Result<(), FlowError> {
        task.node.instance_info.remove(HASHED);
        task.node.instance_info.remove("rescue_password");
        if through_agent(task) {
            power_action(task, "power off")
                .await
                .map_err(driver_failed("Failed to power off the rescue ramdisk"))?;
            agent_session::wipe(&mut task.node);
            let boot = task.driver.boot.clone();
            boot.clean_up_ramdisk(task)
                .await
                .map_err(driver_failed("Failed to clean up the rescue ramdisk"))?;
            boot.prepare_instance(task)
                .await
                .map_err(driver_failed("Failed to prepare the instance boot"))?;
            let management = task.driver.management.clone();
            management
                .set_boot_device(&mut task.node, "disk", true)
                .await
                .map_err(driver_failed("Failed to set the boot device"))?;
            power_action(task, "power on")
                .await
                .map_err(driver_failed("Failed to power on the instance"))?;
        }
        self.event(&mut task.node, "done").await
    }
}

/// Whether a failed node's ramdisk is powered off (`rescue failed` with the agent rescue).
pub fn powers_off_on_failure(task: &Task) -> bool {
    task.node.provision_state == state::RESCUEFAIL && through_agent(task)
}
