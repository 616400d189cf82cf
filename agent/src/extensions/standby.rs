//! `standby`: flushing caches, partition UUIDs of the last image, power off and reboot.
//!
//! Image writing (`prepare_image`) joins this extension with the image pipeline.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::reboot::RebootMode;
use serde_json::{Value, json};

use crate::commands::NoParams;
use crate::commands::{Command, CommandOutcome, Registry};
use crate::error::{AgentError, ErrorKind};
use crate::state::AgentState;

pub(super) fn register(registry: &mut Registry) {
    registry.register("standby", "sync", Command::sync(sync));
    registry.register("standby", "get_partition_uuids", Command::sync(get_partition_uuids));
    registry.register("standby", "power_off", Command::asynchronous(power_off));
    registry.register("standby", "run_image", Command::asynchronous(run_image));
    registry.register(
        "standby",
        "prepare_image",
        Command::asynchronous(prepare_image)
            .with_validator(|args: &PrepareImage| crate::image::validate(&args.image_info, true)),
    );
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareImage {
    image_info: rivet_common::image::ImageInfo,
    #[serde(default)]
    configdrive: Option<Value>,
}

/// Write an image to the root device (reference §7); the answer text is upstream's.
async fn prepare_image(state: Arc<AgentState>, args: PrepareImage) -> CommandOutcome {
    let progress = state.progress();
    let configdrive = args.configdrive.or_else(|| {
        args.image_info
            .configdrive
            .as_option()
            .map(|c| Value::String(c.clone()))
    });
    let message = state
        .prepare_image(args.image_info, configdrive.as_ref(), progress)
        .await?;
    Ok(Value::String(message))
}

/// Flush file system buffers so nothing written is lost at power off.
async fn sync(_: Arc<AgentState>, _: NoParams) -> CommandOutcome {
    tokio::task::spawn_blocking(nix::unistd::sync)
        .await
        .map_err(|e| AgentError::new(ErrorKind::CommandExecution, format!("sync failed: {e}")))?;
    Ok(Value::Null)
}

/// What the last `prepare_image` recorded, `{}` when no image was written (as upstream).
async fn get_partition_uuids(state: Arc<AgentState>, _: NoParams) -> CommandOutcome {
    Ok(state.partition_uuids().unwrap_or_else(|| {
        tracing::warn!("no image has been written by this agent: no partition UUIDs to report");
        json!({})
    }))
}

async fn power_off(state: Arc<AgentState>, _: NoParams) -> CommandOutcome {
    power_action(&state, RebootMode::RB_POWER_OFF, "power off").await
}

async fn run_image(state: Arc<AgentState>, _: NoParams) -> CommandOutcome {
    power_action(&state, RebootMode::RB_AUTOBOOT, "reboot").await
}

/// Flush disks, then power off or reboot — only inside a ramdisk, so no test can take down the
/// machine it runs on.
async fn power_action(state: &AgentState, mode: RebootMode, what: &str) -> CommandOutcome {
    if !state.config.is_ramdisk {
        return Err(AgentError::new(
            ErrorKind::SystemReboot,
            format!(
                "refusing to {what} this machine: rivet-agent is not running in a ramdisk (start it with --i-am-a-ramdisk to allow)"
            ),
        ));
    }
    tracing::warn!(action = what, "flushing disks before the machine goes down");
    let outcome = tokio::task::spawn_blocking(move || {
        nix::unistd::sync();
        // Let the answer to this command and a last heartbeat leave the machine.
        std::thread::sleep(Duration::from_secs(1));
        nix::sys::reboot::reboot(mode)
    })
    .await;
    let reason = match outcome {
        Ok(Err(errno)) => errno.desc().to_owned(),
        Err(join) => join.to_string(),
        Ok(Ok(never)) => match never {},
    };
    Err(AgentError::new(
        ErrorKind::SystemReboot,
        format!("{what} failed: {reason}"),
    ))
}
