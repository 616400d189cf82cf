//! `ipmitool` power: `ipmitool chassis power` (Ironic's `ipmitool` power interface).

use std::time::Duration;

use async_trait::async_trait;

use super::{PowerAction, await_power_state, power_state_after};
use crate::drivers::bmc::ipmitool::{check_driver_info, ipmitool, parse_power};
use crate::drivers::{DriverError, Interface, Power};
use crate::model::NodeRecord;

/// Power through `ipmitool chassis power`.
#[derive(Debug)]
pub struct IpmiPower;

#[async_trait]
impl Interface for IpmiPower {
    fn name(&self) -> &'static str {
        "ipmitool"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        check_driver_info(node)
    }
}

#[async_trait]
impl Power for IpmiPower {
    async fn get_power_state(&self, node: &NodeRecord) -> Result<String, DriverError> {
        parse_power(&ipmitool(node, &["chassis", "power", "status"]).await?).map(str::to_owned)
    }

    async fn set_power_state(&self, node: &mut NodeRecord, target: &str) -> Result<(), DriverError> {
        let current = parse_power(&ipmitool(node, &["chassis", "power", "status"]).await?)?;
        if let Some(action) = PowerAction::needed(target, current)? {
            let verb = match action {
                PowerAction::On => "on",
                PowerAction::Off => "off",
                PowerAction::SoftOff => "soft",
                PowerAction::Reboot | PowerAction::SoftReboot => "reset",
            };
            ipmitool(node, &["chassis", "power", verb]).await?;
        }
        let want = power_state_after(target);
        // The BMC settings to read with, while the node itself takes the result.
        let bmc = node.clone();
        await_power_state(node, want, "IPMI", Duration::from_secs(30), || {
            let bmc = &bmc;
            async move { Ok(parse_power(&ipmitool(bmc, &["chassis", "power", "status"]).await?)? == want) }
        })
        .await
    }

    fn supported_power_states(&self) -> Vec<&'static str> {
        vec!["power on", "power off", "rebooting", "soft power off", "soft rebooting"]
    }
}
