//! `poll`: the inventory, and node data injection in standalone mode.

use std::sync::Arc;

use rivet_common::ramdisk::LookupResponse;
use serde::Deserialize;
use serde_json::Value;

use crate::commands::NoParams;
use crate::commands::{Command, CommandOutcome, Registry};
use crate::error::{AgentError, ErrorKind};
use crate::state::{AgentState, TokenOutcome};

pub(super) fn register(registry: &mut Registry) {
    registry.register("poll", "get_hardware_info", Command::sync(get_hardware_info));
    registry.register("poll", "set_node_info", Command::sync(set_node_info));
}

/// A freshly collected inventory (not the one cached at start-up).
async fn get_hardware_info(state: Arc<AgentState>, _: NoParams) -> CommandOutcome {
    let inventory = state.managers.inventory(&state.devices).await?;
    serde_json::to_value(inventory).map_err(|e| AgentError::new(ErrorKind::CommandExecution, e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetNodeInfo {
    node_info: Value,
}

/// Inject a lookup-shaped answer; only in standalone mode, as upstream.
async fn set_node_info(state: Arc<AgentState>, args: SetNodeInfo) -> CommandOutcome {
    if !state.config.standalone {
        return Err(AgentError::new(
            ErrorKind::InvalidCommand,
            "Node lookup data can only be set when the Ironic Python Agent is running in standalone mode.",
        ));
    }
    let answer: LookupResponse = serde_json::from_value(args.node_info).map_err(|e| {
        AgentError::new(
            ErrorKind::InvalidCommandParams,
            format!("node_info is not a lookup answer: {e}"),
        )
    })?;
    if state.apply_lookup(&answer) == TokenOutcome::MaskedWithoutToken {
        tracing::warn!("node_info carries a masked token and the agent holds none");
    }
    Ok(Value::Null)
}
