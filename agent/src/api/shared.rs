//! What every handler of the API shares.

use std::sync::Arc;

use crate::commands::Executor;
use crate::state::AgentState;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Agent state (token, config).
    pub agent: Arc<AgentState>,
    /// Command execution.
    pub executor: Arc<Executor>,
    /// `https` when the API is served over TLS.
    pub scheme: &'static str,
}
