//! The agent-facing half of the conductor (reference §1 and §3): lookup, heartbeats, and the
//! step flow continued by heartbeats.
//!
//! Lost lookup answers: upstream mints a token at the first lookup and masks it on every later
//! one, so an agent whose first answer was lost (a slow conductor, a 30 s client timeout) can
//! never heartbeat and the node waits for the 30-minute callback timeout. Rivet remembers who
//! asked (source address and MAC set); until the first heartbeat with the token arrives, a
//! repeated lookup from the same address for the same MACs gets the same token again. Anyone
//! else gets the mask, as upstream, and once the token has been used nobody gets it again.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use rivet_common::command::CommandStatus;
use rivet_common::steps::{Step, StepType};
use rivet_common::version::ApiVersion;
use serde_json::{Value, json};

use crate::agent_client::command_error_text;
use crate::drivers::agent::{self as agent_driver, flow_of};
use crate::drivers::{DriverError, Task};
use crate::engine::{Conductor, EngineError, fire};
use crate::model::{MASK, NodeRecord, mask_instance_info, mask_secrets};
use crate::states::state;
use crate::time::{now_iso, now_naive};

/// States in which lookups are answered.
const LOOKUP_ALLOWED: &[&str] = &[
    "deploying",
    "wait call-back",
    "cleaning",
    "clean wait",
    "inspecting",
    "inspect wait",
    "rescuing",
    "rescue wait",
    "service wait",
];
/// Additional lookup states with fast track.
const LOOKUP_FAST_TRACK: &[&str] = &["enroll", "manageable", "available", "servicing", "service hold"];
/// States in which heartbeats are processed.
const HEARTBEAT_ALLOWED: &[&str] = &[
    "wait call-back",
    "clean wait",
    "rescue wait",
    "deploying",
    "cleaning",
    "rescuing",
    "deploy hold",
    "clean hold",
    "servicing",
    "service wait",
    "service hold",
];

/// A heartbeat's fields, checked by the API.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub callback_url: String,
    pub agent_token: Option<String>,
    pub agent_version: Option<String>,
    pub agent_verify_ca: Option<String>,
    pub agent_status: Option<String>,
    pub agent_status_message: Option<String>,
}

fn fast_track(conductor: &Conductor, node: &NodeRecord) -> bool {
    node.driver_info
        .get("fast_track")
        .and_then(Value::as_bool)
        .unwrap_or(conductor.settings.fast_track)
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Conductor {
    /// `GET /v1/lookup`.
    pub async fn lookup(
        &self,
        addresses: &[String],
        node_uuid: Option<&str>,
        version: ApiVersion,
        peer: Option<IpAddr>,
    ) -> Result<Value, EngineError> {
        let not_found = || EngineError::NotFound("Resource could not be found.".into());
        if version < ApiVersion::RAMDISK_ENDPOINTS {
            return Err(not_found());
        }
        let macs: Vec<String> = addresses.iter().filter_map(|a| crate::api::normalise_mac(a)).collect();
        if macs.is_empty() && node_uuid.is_none() {
            return Err(EngineError::Invalid(
                "One or more valid MAC addresses or node UUID required".into(),
            ));
        }
        let uuid = match node_uuid {
            Some(u) => {
                uuid::Uuid::parse_str(u)
                    .map_err(|_| EngineError::Invalid(format!("Expected a UUID but received {u}.")))?;
                u.to_owned()
            }
            None => {
                let found = self.db.nodes_by_macs(&macs).await?;
                if found.len() != 1 {
                    // Same answer for "unknown" and "ambiguous", as upstream.
                    return Err(not_found());
                }
                found[0].clone()
            }
        };
        let node = self.db.node(&uuid).await?.ok_or_else(not_found)?;
        let allowed = LOOKUP_ALLOWED.contains(&node.provision_state.as_str())
            || (fast_track(self, &node) && LOOKUP_FAST_TRACK.contains(&node.provision_state.as_str()));
        if !allowed {
            tracing::info!(node = %node.uuid, state = %node.provision_state, "lookup refused in this state");
            return Err(not_found());
        }
        let token = if version >= ApiVersion::AGENT_TOKEN {
            Some(self.token_for_lookup(&node, &macs, peer).await?)
        } else {
            None
        };
        let node = self.db.node(&uuid).await?.ok_or_else(not_found)?;
        let mut dii = mask_secrets(&node.driver_internal_info);
        for key in ["agent_token_lookup", "agent_token_claimed"] {
            dii.remove(key);
        }
        let mut config = json!({
            "metrics": {"backend": "noop", "prepend_host": false, "prepend_uuid": false, "prepend_host_reverse": true, "global_prefix": null},
            "metrics_statsd": {"statsd_host": "localhost", "statsd_port": 8125},
            "heartbeat_timeout": self.config.ramdisk_heartbeat_timeout,
            "agent_containers": {"allow_arbitrary_containers": false, "allowed_containers": [], "container_steps_file": "/etc/ironic-python-agent.d/mysteps.yaml", "runner": "podman", "pull_options": [], "run_options": ["--rm", "--network=host"]},
            "agent_token_required": true,
            "agent_md5_checksum_enable": true,
            "disable_deep_image_inspection": false,
            "permitted_image_formats": ["raw", "gpt", "qcow2", "iso"],
            "agent_skip_bmc_detect": false,
            "enable_bios_bootloader_install": false,
            "tls_min_version": self.config.agent_tls_minimum_version.as_str(),
            "tls_cipher_suites": null,
        });
        if let Some(token) = token {
            config["agent_token"] = json!(token);
        }
        Ok(json!({
            "node": {
                "uuid": node.uuid,
                "properties": node.properties,
                "instance_info": mask_instance_info(&node.instance_info),
                "driver_internal_info": dii,
                "links": crate::model::links(&self.settings.api_url, &format!("nodes/{}", node.uuid)),
            },
            "config": config,
        }))
    }

    async fn token_for_lookup(
        &self,
        node: &NodeRecord,
        macs: &[String],
        peer: Option<IpAddr>,
    ) -> Result<String, EngineError> {
        let mut sorted = macs.to_vec();
        sorted.sort();
        let asker = json!({"peer": peer.map(|p| p.to_string()), "macs": sorted});
        if let Some(existing) = node
            .driver_internal_info
            .get("agent_secret_token")
            .and_then(Value::as_str)
        {
            let claimed = node
                .driver_internal_info
                .get("agent_token_claimed")
                .and_then(Value::as_bool)
                == Some(true);
            let same_asker = node.driver_internal_info.get("agent_token_lookup") == Some(&asker) && peer.is_some();
            if !claimed && same_asker {
                tracing::warn!(node = %node.uuid, "repeated lookup before the first heartbeat: sending the same token again");
                return Ok(existing.to_owned());
            }
            return Ok(MASK.to_owned());
        }
        // Minting writes the node: take the lock without waiting, as upstream (409 if busy).
        let lock = self.locks.try_acquire(&node.uuid).await?;
        let outcome = async {
            let mut fresh = self.node(&node.uuid).await?;
            if let Some(existing) = fresh
                .driver_internal_info
                .get("agent_secret_token")
                .and_then(Value::as_str)
            {
                return Ok(
                    if fresh.driver_internal_info.get("agent_token_lookup") == Some(&asker) {
                        existing.to_owned()
                    } else {
                        MASK.to_owned()
                    },
                );
            }
            let token = new_token();
            let dii = &mut fresh.driver_internal_info;
            dii.insert("agent_secret_token".into(), json!(token));
            dii.insert("agent_token_lookup".into(), asker.clone());
            dii.remove("agent_token_claimed");
            dii.remove("agent_secret_token_pregenerated");
            self.save(&mut fresh).await?;
            Ok(token)
        }
        .await;
        lock.release().await?;
        outcome
    }

    /// `POST /v1/heartbeat/{node}`: checks that answer 4xx, then background processing.
    pub async fn heartbeat(
        self: &Arc<Self>,
        ident: &str,
        hb: Heartbeat,
        version: ApiVersion,
    ) -> Result<(), EngineError> {
        if version < ApiVersion::RAMDISK_ENDPOINTS {
            return Err(EngineError::NotFound("Resource could not be found.".into()));
        }
        if hb.agent_version.is_some() && version < ApiVersion::AGENT_VERSION {
            return Err(EngineError::Invalid("Field \"agent_version\" not recognised".into()));
        }
        if (hb.agent_status.is_some() || hb.agent_status_message.is_some()) && version < ApiVersion::AGENT_STATUS {
            return Err(EngineError::Invalid(
                "Fields \"agent_status\" and \"agent_status_message\" not recognised.".into(),
            ));
        }
        if hb.agent_verify_ca.is_some() && version < ApiVersion::AGENT_VERIFY_CA {
            return Err(EngineError::Invalid(
                "Field \"agent_verify_ca\" not recognised in this version".into(),
            ));
        }
        let node = self.node(ident).await?;
        if !hb.callback_url.is_empty()
            && !url::Url::parse(&hb.callback_url).is_ok_and(|u| u.scheme().starts_with("http"))
        {
            return Err(EngineError::Invalid(
                "An issue with the supplied \"callback_url\" has been detected.".into(),
            ));
        }
        let dii = &node.driver_internal_info;
        if let Some(known) = dii.get("agent_url").and_then(Value::as_str)
            && known != hb.callback_url
        {
            return Err(EngineError::Invalid(
                "Detected change in ramdisk provided \"callback_url\"".into(),
            ));
        }
        let Some(token) = &hb.agent_token else {
            return Err(EngineError::Invalid(
                "Agent token is required for heartbeat processing.".into(),
            ));
        };
        if let Some(status) = &hb.agent_status
            && !["start", "end", "error"].contains(&status.as_str())
        {
            return Err(EngineError::Invalid(
                "Agent status is invalid. Valid states are start,end,error.".into(),
            ));
        }
        if hb.agent_version.is_none() && hb.agent_status.is_none() {
            return Err(EngineError::Invalid(
                "Agent heartbeat without agent_version: the agent must be upgraded".into(),
            ));
        }
        if dii.get("agent_secret_token").and_then(Value::as_str) != Some(token.as_str()) || token == MASK {
            return Err(EngineError::Invalid("Invalid or missing agent token received.".into()));
        }
        if self.config.require_tls && !hb.callback_url.starts_with("https://") {
            return Err(EngineError::Invalid(
                "Agent is not using TLS (https) for its callback URL, which is required by the conductor".into(),
            ));
        }
        if let (Some(known), Some(new)) = (dii.get("agent_verify_ca").and_then(Value::as_str), &hb.agent_verify_ca)
            && known != new
        {
            return Err(EngineError::Invalid(
                "Detected change in the agent's TLS certificate".into(),
            ));
        }
        if !dii.contains_key("agent_url") && node.reservation.is_some() {
            return Err(EngineError::Conflict(format!(
                "Node {} is locked by host {}, please retry",
                node.uuid,
                node.reservation.unwrap_or_default()
            )));
        }
        let me = Arc::clone(self);
        let uuid = node.uuid.clone();
        tokio::spawn(async move {
            let Ok(_slot) = me.heartbeat_slots.clone().acquire_owned().await else {
                return;
            };
            me.process_heartbeat(&uuid, hb).await;
        });
        Ok(())
    }

    async fn process_heartbeat(self: &Arc<Self>, uuid: &str, hb: Heartbeat) {
        let lock = match self.locks.try_acquire(uuid).await {
            Ok(lock) => lock,
            Err(e) => {
                // Another worker holds the node: this beat is dropped, the next one comes soon.
                tracing::debug!(node = uuid, error = %e, "heartbeat dropped: node locked");
                return;
            }
        };
        let outcome = async {
            let node = self.node(uuid).await.map_err(|e| e.to_string())?;
            let allowed = HEARTBEAT_ALLOWED.contains(&node.provision_state.as_str())
                || (fast_track(self, &node)
                    && ["manageable", "available", "enroll"].contains(&node.provision_state.as_str()));
            if !allowed {
                tracing::info!(node = uuid, state = %node.provision_state, "heartbeat ignored in this state");
                return Ok(());
            }
            let mut task = self.task(node).await.map_err(|e| e.to_string())?;
            let dii = &mut task.node.driver_internal_info;
            dii.insert("agent_url".into(), json!(hb.callback_url));
            dii.insert("agent_version".into(), json!(hb.agent_version));
            dii.insert("agent_last_heartbeat".into(), json!(now_naive()));
            dii.insert("agent_token_claimed".into(), json!(true));
            if let Some(ca) = &hb.agent_verify_ca {
                dii.insert("agent_verify_ca".into(), json!(ca));
            }
            // The message is the agent's current progress: gone when the agent stops sending it.
            match &hb.agent_status_message {
                Some(message) => dii.insert("agent_status_message".into(), json!(message)),
                None => dii.remove("agent_status_message"),
            };
            self.save(&mut task.node).await.map_err(|e| e.to_string())?;
            if task.node.maintenance {
                return Ok(());
            }
            let flow = match task.node.provision_state.as_str() {
                state::CLEANWAIT => StepType::Clean,
                state::DEPLOYWAIT => StepType::Deploy,
                state::SERVICEWAIT => StepType::Service,
                _ => return Ok(()),
            };
            let result = self.heartbeat_wait(&mut task, flow).await;
            if let Err(message) = result {
                tracing::error!(node = uuid, %flow, error = %message, "step flow failed");
                if flow_of(&task.node).is_some() {
                    self.fail_task(&mut task, &message).await;
                }
            }
            Ok::<_, String>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::error!(node = uuid, error = %e, "heartbeat processing failed");
        }
        if let Err(e) = lock.release().await {
            tracing::error!(node = uuid, error = %e, "could not release the node lock");
        }
    }

    async fn fail_task(&self, task: &mut Task, message: &str) {
        // Shared with the verb workers.
        self.fail_flow(task, message).await;
    }

    /// A heartbeat while waiting in `flow` (upstream `_heartbeat_*_wait`).
    async fn heartbeat_wait(&self, task: &mut Task, flow: StepType) -> Result<(), String> {
        task.node.provision_updated_at = Some(now_iso());
        let current_empty = task.node.current_step(flow).is_empty();
        let needs_steps = (flow == StepType::Deploy
            && !task.node.driver_internal_info.contains_key("agent_cached_deploy_steps"))
            || (current_empty && flow != StepType::Deploy);
        if needs_steps {
            match agent_driver::refresh_steps(task, flow).await {
                Ok(()) => {}
                // The callback URL came with a valid heartbeat, but the agent's network is still
                // coming up: the next heartbeat tries again, as docs/conductor.md promises.
                Err(DriverError::AgentNotReady(why)) => {
                    tracing::info!(node = %task.node.uuid, %flow, reason = %why, "agent not reachable yet; retrying on its next heartbeat");
                    return self.save(&mut task.node).await.map_err(|e| e.to_string());
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if current_empty && flow != StepType::Deploy {
            // The agent just booted to start cleaning or servicing.
            fire(&mut task.node, "resume", None)?;
            self.build_step_list(task, flow)?;
            return self.run_steps(task, flow).await;
        }
        self.process_next_step(task, flow).await
    }

    /// Look at the agent's last command and move on (upstream `process_next_step`).
    async fn process_next_step(&self, task: &mut Task, flow: StepType) -> Result<(), String> {
        let commands = match task.agent.commands(&task.node).await {
            Ok(c) => c,
            Err(e) if e.is_transient() => {
                tracing::info!(node = %task.node.uuid, error = %e, "agent not answering yet");
                return self.save(&mut task.node).await.map_err(|e| e.to_string());
            }
            Err(e) => return Err(format!("Failed to read the agent's commands: {e}")),
        };
        let key = flow.as_str();
        let freshly_booted = commands
            .iter()
            .all(|c| c.command_name.starts_with("get_") && c.command_name.ends_with("_steps"));
        if freshly_booted {
            if task
                .node
                .driver_internal_info
                .remove(&format!("resume_{key}_step"))
                .is_some()
            {
                // Resumed after a restart and the agent has run no step: the current one was
                // never sent, so it runs now rather than being skipped.
                task.node
                    .driver_internal_info
                    .insert(format!("skip_current_{key}_step"), json!(false));
            }
            task.node.driver_internal_info.remove(&format!("{key}_reboot"));
            task.node.driver_internal_info.remove("deployment_reboot");
            return self.continue_steps(task, flow).await;
        }
        let Some(last) = commands.last() else { return Ok(()) };
        let current: Step = serde_json::from_value(Value::Object(task.node.current_step(flow).clone()))
            .map_err(|e| format!("corrupt current step: {e}"))?;
        let resuming = task
            .node
            .driver_internal_info
            .get(&format!("resume_{key}_step"))
            .and_then(Value::as_bool)
            == Some(true);
        if resuming && last.command_status != CommandStatus::Running && !is_for_step(last, flow, &current) {
            // A conductor stopped between saving the step and sending it (engine `resume`): the
            // agent's last command is not this step, so the agent never got it. Send it now.
            tracing::warn!(node = %task.node.uuid, %flow, step = %current.step, "the agent never received the step; sending it again");
            task.node
                .driver_internal_info
                .insert(format!("skip_current_{key}_step"), json!(false));
            return self.continue_steps(task, flow).await;
        }
        if last.command_name != format!("execute_{key}_step") || last.command_status == CommandStatus::Running {
            return self.save(&mut task.node).await.map_err(|e| e.to_string());
        }
        match &last.command_status {
            CommandStatus::Failed => Err(format!(
                "Agent returned error for {key} step {{'step': '{}', 'interface': '{}'}} on node {} : {}.",
                current.step,
                current.interface,
                task.node.uuid,
                command_error_text(last)
            )),
            CommandStatus::VersionMismatch => self.version_mismatch(task, flow).await,
            CommandStatus::Succeeded => {
                let echoed = last
                    .command_result
                    .as_ref()
                    .and_then(|r| r.get(format!("{key}_step")))
                    .cloned();
                let echoed: Option<Step> = echoed.and_then(|e| serde_json::from_value(e).ok());
                if !echoed.is_some_and(|e| e.same_step(&current)) {
                    // The result belongs to another step: ours has not started yet.
                    return self.save(&mut task.node).await.map_err(|e| e.to_string());
                }
                if current.reboot_requested == Some(true) {
                    agent_driver::boot_agent(task).await.map_err(|e| e.to_string())?;
                    task.node
                        .driver_internal_info
                        .insert(format!("{key}_reboot"), json!(true));
                    return self.save(&mut task.node).await.map_err(|e| e.to_string());
                }
                self.continue_steps(task, flow).await
            }
            other => Err(format!(
                "Agent returned unknown status {other:?} for {key} step {}",
                current.step
            )),
        }
    }

    /// Hardware-manager versions changed (seed 001): automated cleaning restarts from the
    /// first step with fresh steps; manual cleaning, deploy and service fail clearly.
    async fn version_mismatch(&self, task: &mut Task, flow: StepType) -> Result<(), String> {
        let before = task
            .node
            .driver_internal_info
            .get("hardware_manager_version")
            .cloned()
            .unwrap_or(Value::Null);
        agent_driver::refresh_steps(task, flow)
            .await
            .map_err(|e| e.to_string())?;
        let after = task
            .node
            .driver_internal_info
            .get("hardware_manager_version")
            .cloned()
            .unwrap_or(Value::Null);
        let automated =
            flow == StepType::Clean && task.node.target_provision_state.as_deref() == Some(state::AVAILABLE);
        if !automated {
            return Err(format!(
                "The agent's hardware managers changed during {flow} (from {before} to {after}); the {flow} steps were chosen for the old versions. Start {flow} again."
            ));
        }
        tracing::warn!(node = %task.node.uuid, %before, %after, "hardware manager versions changed: restarting automated cleaning");
        self.db
            .add_history(
                &task.node.uuid,
                "INFO",
                &format!("Hardware manager versions changed from {before} to {after}; automated cleaning restarted"),
            )
            .await
            .map_err(|e| e.to_string())?;
        fire(&mut task.node, "resume", None)?;
        self.build_step_list(task, flow)?;
        self.run_steps(task, flow).await
    }

    /// The current step is done: continue with the next one.
    async fn continue_steps(&self, task: &mut Task, flow: StepType) -> Result<(), String> {
        let current = task.node.current_step(flow);
        if current.get("abort_after").and_then(Value::as_bool) == Some(true) {
            let step = current.get("step").and_then(Value::as_str).unwrap_or("-").to_owned();
            fire(&mut task.node, "abort", None)?;
            let message =
                format!("By request, the {flow} operation was aborted after the completion of step \"{step}\"");
            return Err(message);
        }
        if task.node.provision_state.ends_with("wait") || task.node.provision_state == state::DEPLOYWAIT {
            fire(&mut task.node, "resume", None)?;
        }
        self.run_steps(task, flow).await
    }
}

/// Whether the agent command `command` is the execution of `step` in `flow`: its name, and (when
/// it finished) the step its result echoes. A failed execution carries no echo; it counts.
fn is_for_step(command: &rivet_common::command::CommandResult, flow: StepType, step: &Step) -> bool {
    let key = flow.as_str();
    if command.command_name != format!("execute_{key}_step") {
        return false;
    }
    match command.command_status {
        CommandStatus::Succeeded => command
            .command_result
            .as_ref()
            .and_then(|r| r.get(format!("{key}_step")))
            .and_then(|e| serde_json::from_value::<Step>(e.clone()).ok())
            .is_some_and(|e| e.same_step(step)),
        _ => true,
    }
}
