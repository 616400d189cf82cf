//! `clean`, `deploy` and `service`: list steps (sync) and run one (async), as upstream (§5.1).
//!
//! `get_<type>_steps` merges every manager's steps. `execute_<type>_step` checks the
//! hardware-manager versions the conductor cached (`<type>_version`; a difference answers
//! `CLEAN_VERSION_MISMATCH`), dispatches the step to the first manager implementing it, and
//! answers `{"<type>_result": ..., "<type>_step": <step as received>}`.

use std::sync::Arc;

use rivet_common::JsonObject;
use rivet_common::node::{Node, Port};
use rivet_common::steps::StepType;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::commands::{Command, CommandOutcome, Registry};
use crate::error::py_repr;
use crate::error::{AgentError, ErrorKind};
use crate::hardware::StepContext;
use crate::state::AgentState;

pub(super) fn register(registry: &mut Registry) {
    for step_type in StepType::ALL {
        let ext = step_type.as_str();
        registry.register(
            ext,
            &format!("get_{ext}_steps"),
            Command::sync(move |state, args: GetSteps| get_steps(state, step_type, args)),
        );
        registry.register(
            ext,
            &format!("execute_{ext}_step"),
            Command::asynchronous(move |state, args: ExecuteStep| execute_step(state, step_type, args)),
        );
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetSteps {
    node: Node,
    ports: Vec<Port>,
}

async fn get_steps(state: Arc<AgentState>, step_type: StepType, args: GetSteps) -> CommandOutcome {
    state.set_node(args.node.clone());
    let steps = state.managers.collect_steps(step_type, &args.node, &args.ports).await?;
    Ok(steps.to_value(step_type))
}

/// `step`, `node`, `ports`, `<type>_version`, and any extra keyword arguments for the step.
#[derive(Debug, Deserialize)]
struct ExecuteStep {
    step: JsonObject,
    node: Node,
    ports: Vec<Port>,
    #[serde(flatten)]
    rest: JsonObject,
}

async fn execute_step(state: Arc<AgentState>, step_type: StepType, mut args: ExecuteStep) -> CommandOutcome {
    state.set_node(args.node.clone());
    let version_key = step_type.version_key();
    let expected = args.rest.remove(&version_key).unwrap_or(Value::Null);
    if !expected.is_null() {
        let current = serde_json::to_value(state.managers.versions()).unwrap_or(Value::Null);
        if expected != current {
            return Err(AgentError::new(
                ErrorKind::VersionMismatch,
                format!(
                    "Current versions: {}, versions used by ironic: {}",
                    py_repr(&current),
                    py_repr(&expected)
                ),
            ));
        }
    }
    let Some(name) = args.step.get("step").and_then(Value::as_str).map(str::to_owned) else {
        return Err(AgentError::new(
            ErrorKind::CommandExecution,
            format!(
                "Malformed {step_type}_step, no \"step\" key: {}",
                py_repr(&Value::Object(args.step.clone()))
            ),
        ));
    };
    let mut step_args = args.rest;
    if let Some(Value::Object(extra)) = args.step.get("args") {
        step_args.extend(extra.clone());
    }
    tracing::info!(step = %name, %step_type, "executing step");
    let ctx = StepContext {
        node: args.node,
        ports: args.ports,
        args: step_args,
        devices: state.devices.clone(),
        progress: state.progress(),
        step_type: Some(step_type),
        image_writer: Some(Arc::clone(&state) as Arc<dyn crate::hardware::ImageWriter>),
        managers: state.managers.clone(),
    };
    let outcome = state.managers.dispatch(&name, |manager| {
        let ctx = ctx.clone();
        let name = name.clone();
        async move { manager.execute(&name, ctx).await }
    });
    // Managers fail with typed agent errors (upstream's REST errors), which pass through as-is.
    let result = outcome.await?;
    let mut answer = Map::new();
    answer.insert(step_type.result_key(), result);
    answer.insert(step_type.step_key(), Value::Object(args.step));
    Ok(Value::Object(answer))
}
