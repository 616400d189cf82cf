//! `rescue.finalize_rescue`: leave a rescue password for the rescue user and stop the agent.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::commands::{Command, CommandOutcome, Registry};
use crate::error::{AgentError, ErrorKind};
use crate::state::{AgentState, Lifecycle};

/// File name upstream's rescue service reads.
const PASSWORD_FILE: &str = "ipa-rescue-password";

pub(super) fn register(registry: &mut Registry) {
    registry.register("rescue", "finalize_rescue", Command::sync(finalize_rescue));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalizeRescue {
    #[serde(default)]
    rescue_password: String,
    #[serde(default)]
    hashed: bool,
}

async fn finalize_rescue(state: Arc<AgentState>, args: FinalizeRescue) -> CommandOutcome {
    let failed = |what: String| AgentError::new(ErrorKind::CommandExecution, what);
    let hash = if args.hashed {
        args.rescue_password
    } else {
        // Upstream crypts with SHA-256 ($5$); SHA-512 ($6$) is as widely accepted and stronger.
        rivet_common::crypt::sha512_crypt(&args.rescue_password)
            .map_err(|e| failed(format!("hashing the rescue password: {e}")))?
    };
    let dir = &state.config.rescue_config_dir;
    if !dir.is_dir() {
        return Err(failed(format!(
            "rescue configuration directory {} does not exist",
            dir.display()
        )));
    }
    let path = dir.join(PASSWORD_FILE);
    std::fs::write(&path, hash).map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
    let marker = &state.config.rescue_marker;
    std::fs::write(marker, b"").map_err(|e| failed(format!("creating rescue marker {}: {e}", marker.display())))?;
    tracing::warn!("rescue finalised: the agent stops serving");
    state.set_lifecycle(Lifecycle::Rescued);
    Ok(Value::Null)
}
