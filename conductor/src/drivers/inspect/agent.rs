//! `agent` inspection: boot the ramdisk with `ipa-inspection-callback-url` pointing at this
//! API's `/v1/continue_inspection`; the agent posts its inventory there and
//! [`crate::inspection`] processes it. With fast track the agent also gets `ipa-api-url`, so it
//! looks the node up and heartbeats afterwards and the next clean or deploy needs no reboot.
//!
//! Upstream: `ironic/drivers/modules/inspector/agent.py` and `interface.py`
//! (`prepare_managed_inspection`, `tear_down_managed_boot`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;

use crate::drivers::{DriverError, Inspect, InspectStart, Interface, Task, power_action};

/// `driver_internal_info` key: the ramdisk boot was prepared by inspection (Ironic's).
const MANAGES_BOOT: &str = "inspector_manage_boot";

/// In-band inspection through the agent.
#[derive(Debug)]
pub struct AgentInspect;

#[async_trait]
impl Interface for AgentInspect {
    fn name(&self) -> &'static str {
        "agent"
    }
}

/// The kernel parameters of an inspection boot: the configured extra ones, the callback URL,
/// and `ipa-api-url` when fast track is on.
pub fn kernel_params(task: &Task) -> Result<BTreeMap<String, String>, DriverError> {
    let settings = &task.settings;
    callback_params(
        &settings.inspection_kernel_params,
        &settings.api_url,
        settings.fast_track,
    )
}

/// Kernel parameters that send a ramdisk's inspection data to this API: `extra`
/// (`[inspector] extra_kernel_params`, `key=value` words), `ipa-inspection-callback-url`, and
/// `ipa-api-url` when `with_api_url`. Shared by inspection and the auto-discovery script.
pub fn callback_params(
    extra: &str,
    api_url: &str,
    with_api_url: bool,
) -> Result<BTreeMap<String, String>, DriverError> {
    let mut params = BTreeMap::new();
    for word in extra.split_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        if key.is_empty() {
            return Err(DriverError::Invalid(format!(
                "[inspector] extra_kernel_params has an empty parameter name in {word:?}"
            )));
        }
        params.insert(key.to_owned(), value.to_owned());
    }
    let base = api_url.trim_end_matches('/');
    params.insert(
        "ipa-inspection-callback-url".into(),
        format!("{base}/v1/continue_inspection"),
    );
    if with_api_url {
        params.insert("ipa-api-url".into(), base.to_owned());
    }
    Ok(params)
}

#[async_trait]
impl Inspect for AgentInspect {
    async fn inspect_hardware(&self, task: &mut Task) -> Result<InspectStart, DriverError> {
        let params = kernel_params(task)?;
        if !task.node.attr("disable_power_off").as_bool().unwrap_or(false) {
            power_action(task, "power off").await?;
        }
        crate::drivers::boot::boot_ramdisk_next(task, &params).await?;
        task.node.driver_internal_info.insert(MANAGES_BOOT.into(), json!(true));
        task.save_now().await?;
        let action = if task.node.attr("disable_power_off").as_bool().unwrap_or(false) {
            "rebooting"
        } else {
            "power on"
        };
        power_action(task, action).await?;
        Ok(InspectStart::Wait)
    }

    async fn tear_down(&self, task: &mut Task, power_off: bool) -> Result<(), DriverError> {
        let mut errors = Vec::new();
        // A fast-track agent keeps running in its ramdisk (Ironic's redfish boot keeps the
        // virtual media of a live agent too): its boot files stay until the next flow.
        let keep_ramdisk = !power_off && crate::agent_session::is_alive(&task.node, &task.settings);
        if !keep_ramdisk && task.node.driver_internal_info.remove(MANAGES_BOOT).is_some() {
            let boot = task.driver.boot.clone();
            if let Err(e) = boot.clean_up_ramdisk(task).await {
                errors.push(format!("unable to clean up ramdisk boot: {e}"));
            }
        }
        if power_off {
            let action = if task.node.attr("disable_power_off").as_bool().unwrap_or(false) {
                "rebooting"
            } else {
                "power off"
            };
            if let Err(e) = power_action(task, action).await {
                errors.push(format!("unable to power off the node: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DriverError::Invalid(format!(
                "Inspection clean up failed: {}",
                errors.join(", ")
            )))
        }
    }
}
