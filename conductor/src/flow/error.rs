//! Why a flow stopped. Every variant's text is what lands in the node's `last_error` and history,
//! so the texts keep upstream's wording where operators grep for it.

use rivet_common::steps::StepType;

use crate::db::DbError;
use crate::drivers::DriverError;
use crate::engine::EngineError;
use crate::states::IllegalTransition;

/// A flow could not go on; the node fails with this text (`Conductor::fail_flow`).
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The state table refused an event (the node changed state under the flow).
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    /// Reading or saving the node failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Loading the node or its driver failed.
    #[error(transparent)]
    Conductor(#[from] EngineError),
    /// A driver operation around the steps failed; `context` says which
    /// ("Failed to prepare to clean").
    #[error("{context}: {source}")]
    Driver {
        /// What the flow was doing.
        context: &'static str,
        /// The driver's error.
        source: DriverError,
    },
    /// Talking to the agent outside a step failed (listing steps, rebooting it).
    #[error(transparent)]
    Agent(DriverError),
    /// The flow failed for the reason given (the node's `last_error`): an inspection that could
    /// not start, a rescue the agent could not finalize.
    #[error("{0}")]
    Failed(String),
    /// A step failed where it runs (the conductor or the BMC).
    #[error("{} step {step} failed on node {node}: {source}", capitalised(*flow))]
    Step {
        /// The flow.
        flow: StepType,
        /// `interface.step`.
        step: String,
        /// The node's UUID.
        node: String,
        /// The driver's error.
        source: DriverError,
    },
    /// The agent reported an in-band step as failed (upstream's wording).
    #[error(
        "Agent returned error for {flow} step {{'step': '{step}', 'interface': '{interface}'}} on node {node} : {message}."
    )]
    AgentStep {
        /// The flow.
        flow: StepType,
        /// The step's name.
        step: String,
        /// The step's interface.
        interface: String,
        /// The node's UUID.
        node: String,
        /// The agent's error text.
        message: String,
    },
    /// The agent answered a status Rivet does not know.
    #[error("Agent returned unknown status {status:?} for {flow} step {step}")]
    UnknownStatus {
        /// The flow.
        flow: StepType,
        /// The step's name.
        step: String,
        /// The status text.
        status: String,
    },
    /// The steps asked for do not exist or have bad arguments.
    #[error("{0}")]
    InvalidSteps(String),
    /// The saved flow record cannot be read (`what` names the field).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// The field.
        what: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The operator aborted the flow; it stopped after the step that could not be interrupted.
    #[error("By request, the {flow} operation was aborted after the completion of step \"{step}\"")]
    AbortedAfter {
        /// The flow.
        flow: StepType,
        /// The step that finished.
        step: String,
    },
    /// The agent's hardware managers changed during a flow that cannot start over by itself.
    #[error(
        "The agent's hardware managers changed during {flow} (from {before} to {after}); the {flow} steps were chosen for the old versions. Start {flow} again."
    )]
    VersionMismatch {
        /// The flow.
        flow: StepType,
        /// Versions the steps were chosen for.
        before: String,
        /// Versions the agent has now.
        after: String,
    },
    /// A conductor restart found a step that may have half-happened.
    #[error("Conductor {host} stopped during {flow} step {step}, which is not safe to repeat; start {flow} again")]
    UnsafeToResume {
        /// This conductor.
        host: String,
        /// The flow.
        flow: StepType,
        /// `interface.step`.
        step: String,
    },
    /// Conductors stopped so often during one step that resuming it again looks like the cause.
    #[error(
        "Conductor {host} stopped {restarts} times during {flow} step {step}; not resuming it again (the step may be what stops the conductor); start {flow} again"
    )]
    TooManyRestarts {
        /// This conductor.
        host: String,
        /// The flow.
        flow: StepType,
        /// `interface.step`.
        step: String,
        /// How many restarts found the step running.
        restarts: u32,
    },
    /// A bug: the flow reached a combination the runner has no rule for.
    #[error("internal: {0}")]
    Internal(String),
}

/// "Clean", "Deploy", "Service": how upstream starts a step failure message.
fn capitalised(flow: StepType) -> &'static str {
    match flow {
        StepType::Clean => "Clean",
        StepType::Deploy => "Deploy",
        StepType::Service => "Service",
    }
}

impl From<FlowError> for EngineError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Conductor(inner) => inner,
            FlowError::InvalidSteps(message) => EngineError::Invalid(message),
            other => EngineError::Internal(other.to_string()),
        }
    }
}
