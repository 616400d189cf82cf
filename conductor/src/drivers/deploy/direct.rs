//! The `direct` deploy interface: an agent in a ramdisk does the in-band work (reference §3–4).
//!
//! Core deploy steps, as upstream (priority): `deploy` (100) boots the agent and waits for it;
//! `write_image` (80) has the agent write the image; `prepare_instance_boot` (60) reads the
//! partition UUIDs, installs a bootloader where needed and sets the boot device to disk;
//! `tear_down_agent` (40) powers the ramdisk off (soft through the agent, then hard);
//! `switch_to_tenant_network` (30); `boot_instance` (20) powers the instance on. Every other
//! step of this interface runs in the agent (`<flow>.execute_<flow>_step`) and finishes when a
//! heartbeat shows its result.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rivet_common::JsonObject;
use rivet_common::command::{CommandResult, CommandStatus};
use rivet_common::field::Field;
use rivet_common::image::ImageInfo;
use rivet_common::steps::{Step, StepType, StepsResult};
use serde_json::{Value, json};

use crate::agent_client::{AgentClientError, command_error_text};
use crate::agent_session;
use crate::drivers::{Deploy, DriverError, InBandStatus, Interface, StepOutcome, Task, power_action};
use crate::model::{NodeRecord, mask_instance_info, mask_secrets};
use crate::time::now_naive;

/// The agent deploy interface.
#[derive(Debug)]
pub struct AgentDeploy;

/// Out-of-band deploy steps of this interface.
pub const CORE_DEPLOY_STEPS: &[(&str, i64)] = &[
    ("deploy", 100),
    ("write_image", 80),
    ("prepare_instance_boot", 60),
    ("tear_down_agent", 40),
    ("switch_to_tenant_network", 30),
    ("boot_instance", 20),
];

/// The node as agents receive it: Ironic's `as_dict(secure=True)`.
pub fn node_for_agent(node: &NodeRecord, keep_configdrive: bool) -> Value {
    let mut doc = node.raw_fields();
    doc.insert("driver_info".into(), Value::Object(mask_secrets(&node.driver_info)));
    doc.insert(
        "driver_internal_info".into(),
        Value::Object(mask_secrets(&node.driver_internal_info)),
    );
    let mut ii = mask_instance_info(&node.instance_info);
    if keep_configdrive && let Some(cd) = node.instance_info.get("configdrive") {
        ii.insert("configdrive".into(), cd.clone());
    }
    if let Some(url) = node.instance_info.get("image_url") {
        ii.insert("image_url".into(), url.clone());
    }
    doc.insert("instance_info".into(), Value::Object(ii));
    Value::Object(doc)
}

fn ports_for_agent(task: &Task) -> Value {
    Value::Array(task.ports.iter().map(|p| p.to_agent()).collect())
}

fn failed(e: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(e.to_string())
}

/// Boot the agent: ramdisk parameters, boot device, reboot. The session is wiped.
async fn boot_agent(task: &mut Task) -> Result<(), DriverError> {
    let params: BTreeMap<String, String> = [("ipa-api-url".to_owned(), task.settings.api_url.clone())].into();
    crate::drivers::boot::boot_ramdisk_next(task, &params).await?;
    task.node
        .driver_internal_info
        .insert("agent_start_attempted".into(), json!(true));
    task.save_now().await?;
    power_action(task, "rebooting").await
}

/// Ask the agent for its steps of `flow` and cache them (reference §3.4).
async fn refresh_steps(task: &mut Task, flow: StepType) -> Result<(), DriverError> {
    let name = format!("{flow}.get_{flow}_steps");
    let params = JsonObject::from_iter([
        ("node".to_owned(), node_for_agent(&task.node, false)),
        ("ports".to_owned(), ports_for_agent(task)),
    ]);
    let result = match task.agent.command(&task.node, &name, params, true).await {
        Ok(r) => r,
        Err(AgentClientError::Api { status: _, message }) if flow == StepType::Service => {
            tracing::warn!(node = %task.node.uuid, %message, "agent has no service steps");
            return Ok(());
        }
        Err(e) if e.is_transient() => {
            return Err(DriverError::AgentNotReady(format!(
                "Could not get the {flow} steps from the agent yet: {e}"
            )));
        }
        Err(e) => return Err(failed(format!("Failed to get the {flow} steps from the agent: {e}"))),
    };
    if result.command_status != CommandStatus::Succeeded {
        return Err(failed(format!(
            "Agent failed to list {flow} steps: {}",
            command_error_text(&result)
        )));
    }
    let answer = result.command_result.unwrap_or(Value::Null);
    let steps = StepsResult::from_value(flow, &answer).map_err(failed)?;
    let mut by_interface: BTreeMap<String, Vec<Step>> = BTreeMap::new();
    for (_, list) in steps.steps {
        for mut step in list {
            if flow == StepType::Clean {
                step.requires_ramdisk = Some(true);
            }
            by_interface.entry(step.interface.clone()).or_default().push(step);
        }
    }
    let dii = &mut task.node.driver_internal_info;
    dii.insert(
        "hardware_manager_version".into(),
        answer.get("hardware_manager_version").cloned().unwrap_or(Value::Null),
    );
    dii.insert(
        format!("agent_cached_{flow}_steps"),
        serde_json::to_value(by_interface).unwrap_or_default(),
    );
    dii.insert(format!("agent_cached_{flow}_steps_refreshed"), json!(now_naive()));
    Ok(())
}

/// The cached in-band steps of `flow` this interface exposes.
fn cached_steps(node: &NodeRecord, flow: StepType) -> Vec<Step> {
    let Some(Value::Object(groups)) = node.driver_internal_info.get(&format!("agent_cached_{flow}_steps")) else {
        return Vec::new();
    };
    groups
        .iter()
        .filter(|(interface, _)| {
            // Ironic's agent-backed interfaces each take the agent's steps of their kind: the
            // deploy interface (this one) always, the RAID interface when it is `agent`.
            flow == StepType::Service
                || interface.as_str() == "deploy"
                || (interface.as_str() == "raid" && node.interface("raid") == "agent")
        })
        .flat_map(|(_, list)| serde_json::from_value::<Vec<Step>>(list.clone()).unwrap_or_default())
        .collect()
}

/// Whether `step` is one of the deploy interface's own deploy steps ([`CORE_DEPLOY_STEPS`]),
/// which [`AgentDeploy`] runs itself; with `image_info` in its arguments it is the agent's.
fn is_core_deploy_step(flow: StepType, step: &Step) -> bool {
    flow == StepType::Deploy
        && CORE_DEPLOY_STEPS.iter().any(|(n, _)| *n == step.step)
        && step.args.as_ref().is_none_or(|a| !a.contains_key("image_info"))
}

/// Whether the conductor runs `step` itself: power actions (the engine) and the deploy
/// interface's own steps except the `write_image` proxy, which sends the image to the agent.
fn is_conductor_step(flow: StepType, step: &Step) -> bool {
    crate::drivers::power::step_target(step).is_some()
        || (step.interface == "deploy" && step.step != "write_image" && is_core_deploy_step(flow, step))
}

/// Whether `step` runs in the agent: the `write_image` proxy, or a step the agent offered.
fn is_in_band(node: &NodeRecord, flow: StepType, step: &Step) -> bool {
    if flow == StepType::Deploy && step.interface == "deploy" && step.step == "write_image" {
        return true;
    }
    !is_conductor_step(flow, step) && cached_steps(node, flow).iter().any(|c| c.same_step(step))
}

/// Send an in-band step to the agent; the heartbeat that shows its result continues the flow.
async fn execute_in_band(task: &mut Task, flow: StepType, step: &Step) -> Result<StepOutcome, DriverError> {
    let mut params = JsonObject::new();
    params.insert("step".into(), serde_json::to_value(step).unwrap_or_default());
    params.insert("node".into(), node_for_agent(&task.node, flow == StepType::Deploy));
    params.insert("ports".into(), ports_for_agent(task));
    params.insert(
        format!("{flow}_version"),
        task.node
            .driver_internal_info
            .get("hardware_manager_version")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let name = format!("{flow}.execute_{flow}_step");
    crate::crash_point::reached(crate::crash_point::BEFORE_AGENT_COMMAND);
    let sent = task.agent.command(&task.node, &name, params, false).await;
    if sent.is_ok() {
        crate::crash_point::reached(crate::crash_point::AGENT_COMMAND_SENT);
    }
    match sent {
        Ok(result) if result.command_status == CommandStatus::Failed => Err(failed(format!(
            "Agent returned error for {flow} step {step}: {}",
            command_error_text(&result),
            step = step.step
        ))),
        Ok(result) => {
            task.awaiting_command = Some(result.id);
            Ok(StepOutcome::Wait)
        }
        Err(e) if e.is_transient() => {
            // Busy or rebooting: run this same step again on the next heartbeat.
            tracing::info!(node = %task.node.uuid, step = %step.step, error = %e, "agent not ready; retrying the step on the next heartbeat");
            Ok(StepOutcome::NotStarted)
        }
        Err(e) => Err(failed(format!(
            "Failed to run {flow} step {} in the agent: {e}",
            step.step
        ))),
    }
}

/// Where the agent's command list (oldest first) leaves the running step `current` of `flow`:
/// only step listings means no step ran since the agent booted; otherwise the last command
/// decides, and a finished execution counts only if its result echoes `current`.
pub fn in_band_status(commands: &[CommandResult], flow: StepType, current: &Step) -> InBandStatus {
    let only_listings = commands
        .iter()
        .all(|c| c.command_name.starts_with("get_") && c.command_name.ends_with("_steps"));
    let Some(last) = commands.last().filter(|_| !only_listings) else {
        return InBandStatus::NoStepRun;
    };
    if last.command_name != format!("execute_{flow}_step") {
        return InBandStatus::OtherCommand {
            running: last.command_status == CommandStatus::Running,
        };
    }
    match &last.command_status {
        CommandStatus::Running => InBandStatus::Running,
        CommandStatus::Failed => InBandStatus::Failed(command_error_text(last)),
        CommandStatus::VersionMismatch => InBandStatus::VersionMismatch,
        CommandStatus::Succeeded => {
            let echoed = last
                .command_result
                .as_ref()
                .and_then(|r| r.get(format!("{flow}_step")))
                .and_then(|e| serde_json::from_value::<Step>(e.clone()).ok());
            if echoed.is_some_and(|e| e.same_step(current)) {
                InBandStatus::Succeeded(last.command_result.clone())
            } else {
                InBandStatus::OtherCommand { running: false }
            }
        }
        CommandStatus::Other(status) => InBandStatus::Unknown(status.clone()),
    }
}

/// `image_info` for the agent from `instance_info` (reference §4.9).
pub fn image_info(node: &NodeRecord) -> Result<ImageInfo, DriverError> {
    let ii = &node.instance_info;
    // Absent and null are "not given"; any other type is an error that names the field, never
    // "missing" (an operator who set a number must be told it is a number).
    let text = |k: &str| -> Result<Option<String>, DriverError> {
        match ii.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(DriverError::Invalid(format!(
                "instance_info.{k} must be a string, got {}: {other}",
                rivet_common::json_type(other)
            ))),
        }
    };
    let source = text("image_source")?.ok_or_else(|| {
        DriverError::Invalid(format!(
            "Node {} failed to validate deploy image info. Some parameters were missing. Missing are: ['instance_info.image_source']",
            node.uuid
        ))
    })?;
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        return Err(DriverError::Invalid(format!(
            "instance_info.image_source must be an http(s) URL, got {source:?}"
        )));
    }
    let (algo, value, checksum) = (
        text("image_os_hash_algo")?,
        text("image_os_hash_value")?,
        text("image_checksum")?,
    );
    if checksum.is_none() && (algo.is_none() || value.is_none()) {
        return Err(DriverError::Invalid(format!(
            "Node {} needs instance_info.image_checksum, or image_os_hash_algo and image_os_hash_value, to verify the image",
            node.uuid
        )));
    }
    let id = source
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("image")
        .to_owned();
    let mut info = ImageInfo {
        id,
        urls: vec![text("image_url")?.unwrap_or(source)],
        disk_format: text("image_disk_format")?.into(),
        container_format: text("image_container_format")?.into(),
        stream_raw_images: Field::Value(true),
        node_uuid: Field::Value(node.uuid.clone()),
        checksum: checksum.map_or(Field::Absent, Field::Value),
        // Whole-disk images carry no image_type, as upstream sends them.
        ..ImageInfo::default()
    };
    if let (Some(a), Some(v)) = (algo, value) {
        info.os_hash_algo = Field::Value(a);
        info.os_hash_value = Field::Value(v);
    }
    if text("image_type")?.as_deref() == Some("partition") {
        let mb = |k: &str, gb: Option<&str>| {
            ii.get(k).and_then(Value::as_u64).or_else(|| {
                gb.and_then(|g| ii.get(g))
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                    .map(|g| g * 1024)
            })
        };
        info.image_type = Field::Value("partition".into());
        info.root_mb = Field::Value(mb("root_mb", Some("root_gb")).unwrap_or(0));
        info.swap_mb = Field::Value(mb("swap_mb", None).unwrap_or(0));
        info.ephemeral_mb = Field::Value(mb("ephemeral_mb", Some("ephemeral_gb")).unwrap_or(0));
        info.ephemeral_format = text("ephemeral_format")?.into();
        info.preserve_ephemeral = Field::Value(ii.get("preserve_ephemeral").and_then(Value::as_bool).unwrap_or(false));
        info.deploy_boot_mode = Field::Value(text("deploy_boot_mode")?.unwrap_or_else(|| "bios".into()));
    }
    Ok(info)
}

fn boot_mode(node: &NodeRecord) -> &str {
    node.instance_info
        .get("deploy_boot_mode")
        .and_then(Value::as_str)
        .or_else(|| node.attrs.get("boot_mode").and_then(Value::as_str))
        .unwrap_or("bios")
}

impl AgentDeploy {
    async fn deploy(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        if agent_session::is_alive(&task.node, &task.settings) {
            tracing::info!(node = %task.node.uuid, "fast track: the agent is already running");
            refresh_steps(task, StepType::Deploy).await?;
            return Ok(StepOutcome::Done);
        }
        boot_agent(task).await?;
        task.node
            .driver_internal_info
            .insert("deployment_reboot".into(), json!(true));
        Ok(StepOutcome::Wait)
    }

    async fn write_image(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        let info = serde_json::to_value(image_info(&task.node)?).map_err(failed)?;
        let configdrive = crate::configdrive::for_agent(&task.node).await?;
        let step = Step {
            step: "write_image".into(),
            interface: "deploy".into(),
            args: Some(
                [("image_info".to_owned(), info), ("configdrive".to_owned(), configdrive)]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        execute_in_band(task, StepType::Deploy, &step).await
    }

    async fn prepare_instance_boot(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        let uuids = task
            .agent
            .command(&task.node, "standby.get_partition_uuids", JsonObject::new(), true)
            .await
            .map_err(failed)?;
        let uuids = uuids.command_result.unwrap_or(Value::Null);
        let root = uuids.get("root uuid").and_then(Value::as_str).map(str::to_owned);
        if let Some(root) = &root {
            task.node
                .driver_internal_info
                .insert("root_uuid_or_disk_id".into(), json!(root));
        }
        let partition = task.node.instance_info.get("image_type").and_then(Value::as_str) == Some("partition");
        if (partition && root.is_some()) || boot_mode(&task.node) == "uefi" {
            let params = JsonObject::from_iter([
                ("root_uuid".to_owned(), json!(root)),
                (
                    "efi_system_part_uuid".to_owned(),
                    json!(uuids.get("efi system partition uuid")),
                ),
                (
                    "prep_boot_part_uuid".to_owned(),
                    json!(uuids.get("PReP Boot partition uuid")),
                ),
                ("target_boot_mode".to_owned(), json!(boot_mode(&task.node))),
            ]);
            let result = task
                .agent
                .command_polled(&task.node, "image.install_bootloader", params)
                .await
                .map_err(failed)?;
            if result.command_status == CommandStatus::Failed {
                return Err(failed(format!(
                    "Failed to install a bootloader when deploying node {}: {}",
                    task.node.uuid,
                    command_error_text(&result)
                )));
            }
        }
        let management = task.driver.management.clone();
        management.set_boot_device(&mut task.node, "disk", true).await?;
        let boot = task.driver.boot.clone();
        boot.prepare_instance(task).await?;
        Ok(StepOutcome::Done)
    }

    async fn tear_down_agent(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        // Soft power off through the agent (it flushes the disks), then check with the BMC and
        // power off hard if the machine is still up.
        let asked = task
            .agent
            .command(&task.node, "standby.power_off", JsonObject::new(), false)
            .await;
        let mut off = false;
        match &asked {
            Ok(r) if r.command_status != CommandStatus::Failed => {
                let (polls, interval) = task.settings.power_off_polls;
                for _ in 0..polls {
                    tokio::time::sleep(interval).await;
                    if task.driver.power.get_power_state(&task.node).await.ok().as_deref() == Some("power off") {
                        off = true;
                        break;
                    }
                    // An agent that reports its power off failed will not go down by itself:
                    // stop waiting and power off through the BMC now.
                    let commands = task.agent.commands(&task.node).await.unwrap_or_default();
                    if let Some(done) = commands
                        .iter()
                        .rev()
                        .find(|c| c.id == r.id)
                        .filter(|c| c.command_status == CommandStatus::Failed)
                    {
                        tracing::warn!(node = %task.node.uuid, error = %command_error_text(done), "agent could not power off; powering off through the BMC");
                        break;
                    }
                }
            }
            Ok(r) => {
                tracing::warn!(node = %task.node.uuid, error = %command_error_text(r), "agent could not power off; powering off through the BMC")
            }
            Err(e) => {
                tracing::warn!(node = %task.node.uuid, error = %e, "agent power off failed; powering off through the BMC")
            }
        }
        // The deployed node keeps the steps its agent offered (operators inspect them); the rest
        // of the session ends with the ramdisk.
        let cached = task.node.driver_internal_info.get("agent_cached_deploy_steps").cloned();
        if !off {
            power_action(task, "power off").await?;
        } else {
            agent_session::wipe(&mut task.node);
        }
        if let Some(cached) = cached {
            task.node
                .driver_internal_info
                .insert("agent_cached_deploy_steps".into(), cached);
        }
        Ok(StepOutcome::Done)
    }
}

fn core_step(name: &str, priority: i64) -> Step {
    Step {
        step: name.into(),
        priority: Some(priority),
        interface: "deploy".into(),
        abortable: Some(true),
        argsinfo: Field::Null,
        ..Default::default()
    }
}

#[async_trait]
impl Interface for AgentDeploy {
    fn name(&self) -> &'static str {
        "direct"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        if crate::states::DEPLOY_VALIDATED.contains(&node.provision_state.as_str())
            || node.instance_info.contains_key("image_source")
        {
            image_info(node)?;
        }
        Ok(())
    }

    fn steps(&self, flow: StepType) -> Vec<Step> {
        match flow {
            StepType::Deploy => CORE_DEPLOY_STEPS.iter().map(|(n, p)| core_step(n, *p)).collect(),
            _ => Vec::new(),
        }
    }

    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        let flow = crate::states::flow_of(&task.node.provision_state).ok_or_else(|| {
            DriverError::Invalid(format!("node is {}, not in a step flow", task.node.provision_state))
        })?;
        if is_core_deploy_step(flow, step) {
            return match step.step.as_str() {
                "deploy" => self.deploy(task).await,
                "write_image" => self.write_image(task).await,
                "prepare_instance_boot" => self.prepare_instance_boot(task).await,
                "tear_down_agent" => self.tear_down_agent(task).await,
                "switch_to_tenant_network" => Ok(StepOutcome::Done),
                _ => {
                    power_action(task, "power on").await?;
                    Ok(StepOutcome::Done)
                }
            };
        }
        execute_in_band(task, flow, step).await
    }
}

#[async_trait]
impl Deploy for AgentDeploy {
    fn uses_agent(&self) -> bool {
        true
    }

    fn cached_steps(&self, node: &NodeRecord, flow: StepType) -> Vec<Step> {
        cached_steps(node, flow)
    }

    async fn refresh_steps(&self, task: &mut Task, flow: StepType) -> Result<(), DriverError> {
        refresh_steps(task, flow).await
    }

    fn is_in_band(&self, node: &NodeRecord, flow: StepType, step: &Step) -> bool {
        is_in_band(node, flow, step)
    }

    fn is_repeatable(&self, flow: StepType, step: &Step) -> bool {
        is_conductor_step(flow, step)
    }

    async fn in_band_status(
        &self,
        task: &mut Task,
        flow: StepType,
        current: &Step,
    ) -> Result<InBandStatus, DriverError> {
        match task.agent.commands(&task.node).await {
            Ok(commands) => Ok(in_band_status(&commands, flow, current)),
            Err(e) if e.is_transient() => Ok(InBandStatus::NotAnswering(e.to_string())),
            Err(e) => Err(failed(format!("Failed to read the agent's commands: {e}"))),
        }
    }

    async fn reboot_to_agent(&self, task: &mut Task) -> Result<(), DriverError> {
        boot_agent(task).await
    }

    async fn prepare_cleaning(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        let dii = &mut task.node.driver_internal_info;
        for (key, value) in [
            ("agent_erase_devices_iterations", json!(1)),
            ("agent_erase_devices_zeroize", json!(true)),
            ("agent_continue_if_secure_erase_failed", json!(false)),
            ("agent_continue_if_ata_erase_failed", json!(false)),
            ("agent_enable_nvme_secure_erase", json!(true)),
            ("agent_enable_ata_secure_erase", json!(true)),
            ("disk_erasure_concurrency", json!(4)),
            ("agent_erase_skip_read_only", json!(false)),
        ] {
            dii.insert(key.into(), value);
        }
        if agent_session::is_alive(&task.node, &task.settings) {
            refresh_steps(task, StepType::Clean).await?;
            return Ok(StepOutcome::Done);
        }
        boot_agent(task).await?;
        Ok(StepOutcome::Wait)
    }

    async fn tear_down_cleaning(&self, task: &mut Task) -> Result<(), DriverError> {
        if agent_session::is_alive(&task.node, &task.settings) {
            return Ok(());
        }
        power_action(task, "power off").await?;
        let boot = task.driver.boot.clone();
        boot.clean_up_ramdisk(task).await
    }

    async fn prepare_service(&self, task: &mut Task) -> Result<StepOutcome, DriverError> {
        boot_agent(task).await?;
        Ok(StepOutcome::Wait)
    }

    async fn tear_down_service(&self, task: &mut Task) -> Result<(), DriverError> {
        power_action(task, "power off").await?;
        let management = task.driver.management.clone();
        management.set_boot_device(&mut task.node, "disk", true).await?;
        power_action(task, "power on").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(instance_info: Value) -> NodeRecord {
        let mut node = NodeRecord {
            uuid: "1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into(),
            ..NodeRecord::default()
        };
        node.instance_info = instance_info.as_object().cloned().unwrap_or_default();
        node
    }

    #[test]
    fn image_info_names_a_field_of_the_wrong_type_instead_of_calling_it_missing() {
        let good = json!({"image_source": "http://127.0.0.1/os.img", "image_checksum": "a".repeat(64)});
        assert!(image_info(&node(good.clone())).is_ok());
        let cases = [
            (
                json!({"image_source": 42}),
                "instance_info.image_source must be a string, got a number: 42",
            ),
            (
                json!({"image_source": {"a": 1}}),
                "instance_info.image_source must be a string, got an object",
            ),
            (
                json!({"image_source": ["http://x/i"]}),
                "instance_info.image_source must be a string, got an array",
            ),
            (
                json!({"image_source": true}),
                "instance_info.image_source must be a string, got a boolean",
            ),
        ];
        for (info, want) in cases {
            let err = image_info(&node(info.clone())).expect_err("refused").to_string();
            assert!(err.contains(want), "{info}: {err}");
            assert!(!err.contains("missing"), "{info}: {err}");
        }
        for field in ["image_checksum", "image_url", "image_disk_format", "image_type"] {
            let mut info = good.clone();
            info[field] = json!(7);
            let err = image_info(&node(info)).expect_err("refused").to_string();
            assert!(
                err.contains(&format!("instance_info.{field} must be a string")),
                "{field}: {err}"
            );
        }
        let err = image_info(&node(json!({"image_source": null})))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("Missing are: ['instance_info.image_source']"), "{err}");
    }

    /// The image_info sent with write_image is the one Ironic 39 sent for the same
    /// instance_info (captured in the fixture), key for key.
    #[test]
    fn image_info_for_a_whole_disk_image_is_ironic_s() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/upstream/ironic/flow/agent_POST_deploy.execute_deploy_step.write_image_200.json"
        ))
        .expect("fixture");
        let upstream = &fixture["request"]["body"]["params"]["step"]["args"]["image_info"];
        let mut node = node(json!({
            "image_source": upstream["urls"][0],
            "image_disk_format": "raw",
            "image_os_hash_algo": upstream["os_hash_algo"],
            "image_os_hash_value": upstream["os_hash_value"],
        }));
        node.uuid = upstream["node_uuid"].as_str().expect("uuid").to_owned();
        let ours = serde_json::to_value(image_info(&node).expect("image_info")).expect("serialises");
        assert_eq!(&ours, upstream);
    }
}
