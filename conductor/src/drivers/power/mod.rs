//! Power interfaces (`ipmitool`, `redfish`; `fake` is in [`super::fake`]) and what every power
//! path shares: which action a target needs, waiting for the BMC to apply it, and the power
//! action the flows and the power API run ([`power_action`]).

pub mod ipmitool;
pub mod redfish;

use crate::drivers::{DriverError, Task};
use crate::model::NodeRecord;

/// Steps the flow runner does itself through the power interface, whatever interface lists
/// them, with their power targets.
const POWER_STEPS: &[(&str, &str)] = &[
    ("power_on", "power on"),
    ("power_off", "power off"),
    ("reboot", "rebooting"),
];

/// The power target of `step` when it is one of the power steps (`power_on`, `power_off`,
/// `reboot`).
pub fn step_target(step: &rivet_common::steps::Step) -> Option<&'static str> {
    POWER_STEPS
        .iter()
        .find(|(name, _)| *name == step.step)
        .map(|(_, target)| *target)
}

/// A power action through the node's power interface, recorded with its time; powering off or
/// rebooting ends the agent session (the ramdisk is gone).
pub async fn power_action(task: &mut Task, target: &str) -> Result<(), DriverError> {
    crate::crash_point::reached(crate::crash_point::POWER_ACTION);
    let power = task.driver.power.clone();
    power.set_power_state(&mut task.node, target).await?;
    task.node.driver_internal_info.insert(
        "last_power_state_change".into(),
        serde_json::json!(crate::time::now_naive()),
    );
    if target != "power on" {
        crate::agent_session::wipe(&mut task.node);
    }
    Ok(())
}

/// What a power target asks of a machine in the `current` state (`power on` / `power off`):
/// nothing when it is there already; a reboot of a machine that is off is a power on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power on.
    On,
    /// Hard power off.
    Off,
    /// Ask the OS to shut down.
    SoftOff,
    /// Hard reset.
    Reboot,
    /// Ask the OS to restart.
    SoftReboot,
}

impl PowerAction {
    /// The action `target` needs, if any.
    pub fn needed(target: &str, current: &str) -> Result<Option<Self>, DriverError> {
        Ok(match (target, current) {
            ("power on", "power on") | ("power off" | "soft power off", "power off") => None,
            ("power on", _) | ("rebooting" | "soft rebooting", "power off") => Some(Self::On),
            ("power off", _) => Some(Self::Off),
            ("soft power off", _) => Some(Self::SoftOff),
            ("rebooting", _) => Some(Self::Reboot),
            ("soft rebooting", _) => Some(Self::SoftReboot),
            (other, _) => return Err(DriverError::Invalid(format!("Unsupported target_state: {other}"))),
        })
    }
}

/// The power state a power target leaves the machine in.
pub fn power_state_after(target: &str) -> &'static str {
    if target.contains("off") {
        "power off"
    } else {
        "power on"
    }
}

/// After a power action, read the BMC every second until `reached` says the machine is in
/// `want` (BMCs apply changes late), for at most `timeout`, and record that state.
pub async fn await_power_state<F, Fut>(
    node: &mut NodeRecord,
    want: &'static str,
    via: &str,
    timeout: std::time::Duration,
    mut reached: F,
) -> Result<(), DriverError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, DriverError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if reached().await? {
            node.power_state = Some(want.to_owned());
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DriverError::Failed(format!(
                "node {} did not reach {want} through {via} within {timeout:?}",
                node.uuid
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
