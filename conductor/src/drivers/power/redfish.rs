//! `redfish` power: `ComputerSystem.Reset` (Ironic's `redfish` power interface).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{PowerAction, await_power_state, power_state_after};
use crate::drivers::bmc::redfish::{Redfish, check_driver_info};
use crate::drivers::{DriverError, Interface, Power};
use crate::model::NodeRecord;

/// How long a power change may take to show in the system's `PowerState`.
const POWER_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Ironic's power state for a Redfish `PowerState`.
fn power_state_of(system: &Value) -> Result<&'static str, DriverError> {
    match system["PowerState"].as_str() {
        Some("On" | "PoweringOn") => Ok("power on"),
        Some("Off" | "PoweringOff") => Ok("power off"),
        other => Err(DriverError::Failed(format!(
            "The BMC reports an unknown power state {other:?}"
        ))),
    }
}

/// The Redfish `ResetType` of a power action.
fn reset_type(action: PowerAction) -> &'static str {
    match action {
        PowerAction::On => "On",
        PowerAction::Off => "ForceOff",
        PowerAction::SoftOff => "GracefulShutdown",
        PowerAction::Reboot => "ForceRestart",
        PowerAction::SoftReboot => "GracefulRestart",
    }
}

/// Power through `ComputerSystem.Reset`.
#[derive(Debug)]
pub struct RedfishPower;

#[async_trait]
impl Interface for RedfishPower {
    fn name(&self) -> &'static str {
        "redfish"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        check_driver_info(node)
    }
}

#[async_trait]
impl Power for RedfishPower {
    async fn get_power_state(&self, node: &NodeRecord) -> Result<String, DriverError> {
        let (_, system) = Redfish::for_node(node)?.system().await?;
        power_state_of(&system).map(str::to_owned)
    }

    async fn set_power_state(&self, node: &mut NodeRecord, target: &str) -> Result<(), DriverError> {
        let bmc = Redfish::for_node(node)?;
        let (path, system) = bmc.system().await?;
        let current = power_state_of(&system)?;
        let Some(action) = PowerAction::needed(target, current)? else {
            node.power_state = Some(current.to_owned());
            return Ok(());
        };
        let reset = system["Actions"]["#ComputerSystem.Reset"]["target"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}/Actions/ComputerSystem.Reset", path.trim_end_matches('/')));
        bmc.post(&reset, &json!({"ResetType": reset_type(action)})).await?;
        // Settled: the final state, not `PoweringOn` / `PoweringOff`.
        let want = power_state_after(target);
        let settled = if want == "power on" { "On" } else { "Off" };
        await_power_state(node, want, "Redfish", POWER_CHANGE_TIMEOUT, || {
            let (bmc, path) = (&bmc, &path);
            async move { Ok(bmc.get(path).await?["PowerState"].as_str() == Some(settled)) }
        })
        .await
    }

    fn supported_power_states(&self) -> Vec<&'static str> {
        vec!["power on", "power off", "rebooting", "soft power off", "soft rebooting"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_targets_map_to_reset_types() {
        let reset = |target: &str, current: &str| PowerAction::needed(target, current).map(|a| a.map(reset_type));
        assert_eq!(reset("power on", "power off"), Ok(Some("On")));
        assert_eq!(reset("power on", "power on"), Ok(None));
        assert_eq!(reset("power off", "power on"), Ok(Some("ForceOff")));
        assert_eq!(reset("soft power off", "power off"), Ok(None));
        assert_eq!(reset("rebooting", "power on"), Ok(Some("ForceRestart")));
        assert_eq!(reset("rebooting", "power off"), Ok(Some("On")));
        assert_eq!(reset("soft rebooting", "power on"), Ok(Some("GracefulRestart")));
        assert!(reset("inject nmi", "power on").is_err());
        assert_eq!(power_state_of(&json!({"PowerState": "PoweringOff"})), Ok("power off"));
        assert!(power_state_of(&json!({})).is_err());
    }
}
