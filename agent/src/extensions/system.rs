//! `system.lockdown`: stop serving and, in a ramdisk, cut the machine off the network.

use std::sync::Arc;

use serde_json::Value;

use crate::commands::NoParams;
use crate::commands::{Command, CommandOutcome, Registry};
use crate::state::{AgentState, Lifecycle};

pub(super) fn register(registry: &mut Registry) {
    registry.register("system", "lockdown", Command::sync(lockdown));
}

async fn lockdown(state: Arc<AgentState>, _: NoParams) -> CommandOutcome {
    tracing::warn!("lockdown requested: the API and heartbeats stop after this answer");
    state.set_lifecycle(Lifecycle::Lockdown);
    Ok(Value::Null)
}
