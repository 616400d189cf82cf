//! `image`: boot loader installation after an image was written (reference §7.8).

use std::sync::Arc;

use serde_json::Value;

use crate::commands::{Command, CommandOutcome, Registry};
use crate::error::{AgentError, ErrorKind};
use crate::image::bootloader;
use crate::state::AgentState;

pub(super) fn register(registry: &mut Registry) {
    registry.register("image", "install_bootloader", Command::asynchronous(install_bootloader));
}

/// Install the boot loader on the root device the image went to; the result is `null` as
/// upstream, what was done is logged.
async fn install_bootloader(state: Arc<AgentState>, args: bootloader::Request) -> CommandOutcome {
    let disks = state.devices.list_disks();
    let device = crate::disk::hints::choose_root_device(&disks, state.node().as_ref())?;
    let path = device.disk.name.clone();
    state.devices.check_destructive(&path)?;
    let devices = state.devices.clone();
    let done = tokio::task::spawn_blocking(move || bootloader::install(&path, &args, &devices))
        .await
        .map_err(|e| AgentError::new(ErrorKind::CommandExecution, format!("install_bootloader stopped: {e}")))??;
    tracing::info!(outcome = %done, "install_bootloader");
    Ok(Value::Null)
}
