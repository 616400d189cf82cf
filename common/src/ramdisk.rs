//! The Ironic API endpoints the ramdisk agent calls: lookup and heartbeat.

use serde::{Deserialize, Serialize};

use crate::JsonObject;
use crate::field::Field;
use crate::node::Node;

/// The masked token Ironic returns when a token was already issued for the node.
pub const MASKED_TOKEN: &str = "******";

/// Shortest token an agent accepts from a lookup (Ironic mints 43 characters).
pub const MIN_TOKEN_LEN: usize = 32;

/// Query of `GET /v1/lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LookupQuery {
    /// Comma-separated MAC addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<String>,
    /// Node UUID, when inspection told the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_uuid: Option<String>,
}

/// Answer of `GET /v1/lookup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// The node, secrets masked.
    pub node: Node,
    /// Settings for the agent.
    pub config: LookupConfig,
}

/// `config` of the lookup answer. Only `heartbeat_timeout` is required.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LookupConfig {
    /// Seconds; the agent heartbeats every `heartbeat_timeout × U(0.3, 0.6)`.
    pub heartbeat_timeout: u64,
    /// A fresh token (>= 32 chars), or `******` when one was issued before.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub agent_token: Field<String>,
    /// Always true on current Ironic.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub agent_token_required: Field<bool>,
    /// Whether MD5 image checksums are allowed.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub agent_md5_checksum_enable: Field<bool>,
    /// Skip format inspection of images.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub disable_deep_image_inspection: Field<bool>,
    /// Detected image formats the agent may write.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub permitted_image_formats: Field<Vec<String>>,
    /// Do not probe the BMC (redfish management).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub agent_skip_bmc_detect: Field<bool>,
    /// Allow legacy BIOS grub installation.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub enable_bios_bootloader_install: Field<bool>,
    /// `1.2` or `1.3`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub tls_min_version: Field<String>,
    /// TLS 1.2 cipher string.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub tls_cipher_suites: Field<String>,
    /// Everything else (metrics, agent_containers, future keys).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Body of `POST /v1/heartbeat/{node}`; which keys are sent depends on the API version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Where the conductor reaches the agent API, e.g. `https://192.0.2.10:9999`.
    pub callback_url: String,
    /// The agent token (>= 1.62; sent as null when the agent has none).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub agent_token: Field<String>,
    /// Agent version (>= 1.36).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// PEM of the agent's self-signed certificate (>= 1.68).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_verify_ca: Option<String>,
    /// `start`, `end` or `error` (>= 1.72; anaconda only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<String>,
    /// Free text (>= 1.72). Rivet reports progress of long commands here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status_message: Option<String>,
    /// Rivet's extension: the same progress, measured ([`StepProgress`]). Sent only to a
    /// conductor whose lookup answer offered it ([`STEP_PROGRESS_CONFIG_KEY`]): Ironic refuses
    /// heartbeat fields it does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_step_progress: Option<StepProgress>,
}

/// The key of the lookup answer's `config` by which rivet-conductor offers to take
/// [`HeartbeatRequest::agent_step_progress`] (`true`). Ironic never sends it, so an agent under
/// Ironic keeps to the upstream heartbeat.
pub const STEP_PROGRESS_CONFIG_KEY: &str = "rivet_step_progress";

/// Measured progress of the command an agent runs, as its heartbeat carries it.
///
/// The agent measures; the conductor adds what needs its own clock (percent, ETA, since when)
/// when it stores the progress in the node (`driver_internal_info.step_progress`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepProgress {
    /// The same text as `agent_status_message`.
    pub message: String,
    /// Units done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// Units in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// `bytes` or `seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Units a second, averaged since the work began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Seconds since the work began (the agent's monotonic clock: the ramdisk's wall clock may
    /// be wrong).
    #[serde(default)]
    pub elapsed_seconds: f64,
}
