//! The agent session: what the conductor keeps about a running ramdisk in the node's
//! `driver_internal_info` (its callback URL, token, certificate, cached steps, progress), and
//! whether that agent may be used again without a reboot (fast track, reference §3.6).
//!
//! Generic: any flow, the power path and the API read it; the `direct` deploy interface is one
//! user among several.

use serde_json::Value;

use crate::drivers::DriverSettings;
use crate::model::NodeRecord;

/// Keys of the agent session in `driver_internal_info`, dropped whenever the ramdisk goes away.
const SESSION_KEYS: &[&str] = &[
    "agent_url",
    "agent_verify_ca",
    "agent_cached_clean_steps",
    "agent_cached_deploy_steps",
    "agent_cached_service_steps",
    "agent_secret_token",
    "agent_token_lookup",
    "agent_token_claimed",
    "agent_status_message",
    crate::step_progress::KEY,
];

/// Forget the agent session (the ramdisk was powered off or rebooted). A pre-generated token
/// (one the operator put in the ramdisk's configuration) outlives the session.
pub fn wipe(node: &mut NodeRecord) {
    let pregenerated = node
        .driver_internal_info
        .get("agent_secret_token_pregenerated")
        .and_then(Value::as_bool)
        == Some(true);
    for key in SESSION_KEYS {
        if *key == "agent_secret_token" && pregenerated {
            continue;
        }
        node.driver_internal_info.remove(*key);
    }
}

/// Forget the session but keep the deploy steps the agent offered, for operators to read after
/// a deployment.
pub fn end_keeping_deploy_steps(node: &mut NodeRecord) {
    let cached = node.driver_internal_info.get("agent_cached_deploy_steps").cloned();
    wipe(node);
    if let Some(cached) = cached {
        node.driver_internal_info
            .insert("agent_cached_deploy_steps".into(), cached);
    }
}

/// Whether fast track is on for `node`: its `driver_info.fast_track`, else the conductor's.
pub fn fast_track(node: &NodeRecord, settings: &DriverSettings) -> bool {
    node.driver_info
        .get("fast_track")
        .and_then(Value::as_bool)
        .unwrap_or(settings.fast_track)
}

/// Is fast track on and is the agent alive (a heartbeat within `fast_track_timeout`, powered
/// on, a callback URL known)?
pub fn is_alive(node: &NodeRecord, settings: &DriverSettings) -> bool {
    if !fast_track(node, settings)
        || node.power_state.as_deref() != Some("power on")
        || !node.driver_internal_info.contains_key("agent_url")
    {
        return false;
    }
    let last = node
        .driver_internal_info
        .get("agent_last_heartbeat")
        .and_then(Value::as_str)
        .and_then(crate::time::parse);
    last.is_some_and(|t| {
        let age = time::OffsetDateTime::now_utc() - t;
        age.whole_milliseconds() >= 0 && age.unsigned_abs() <= settings.fast_track_timeout
    })
}
