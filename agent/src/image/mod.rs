//! Writing OS images (reference §7): `standby.prepare_image` and the `write_image` deploy step.
//!
//! An image is streamed from HTTP straight onto the root device: the download half (async,
//! [`download`]) feeds the writing half ([`stream`], on a blocking thread) through a bounded
//! channel, which hashes every byte, recognises the format from the first bytes and writes raw
//! images as they come or converts qcow2 on the fly ([`qcow2`]). Memory stays bounded whatever
//! the image size. The first MiB — partition table and boot code — is held back and written only
//! after the checksum matched, so a half-written or corrupt image never boots. On any failure
//! the first MiB is zeroed and the error says what failed. Downloads retry connection errors,
//! timeouts and 5xx (resuming with `Range` where the server allows), and stop at once on 4xx.
//!
//! Partition images get a fresh partition table and the image in their root partition; config
//! drives go where upstream puts them ([`partition`]); boot loaders are [`bootloader`]'s.
//!
//! The parts: [`validate`] (before a command is accepted), [`download`] (checksums, the HTTP
//! client, the retrying download), [`stream`] with [`format`], [`qcow2`], [`spool`] and [`disk`]
//! (the writing half), [`write`] (which device, in which order, and what follows the image).

pub mod bootloader;
pub mod checksum;
pub mod disk;
pub mod download;
pub mod format;
pub mod partition;
pub mod qcow2;
pub mod spool;
pub mod stream;
pub mod validate;
pub mod write;

use std::path::PathBuf;
use std::sync::Arc;

use rivet_common::image::ImageInfo;
use rivet_common::node::Node;
use serde_json::Value;

pub use crate::config::DownloadPolicy;
pub use download::{expected_checksum, image_client};
pub use validate::validate;
pub use write::prepare_image;

use crate::error::{AgentError, ErrorKind};
use crate::hardware::Progress;
use crate::hardware::devices::DeviceView;

/// What `prepare_image` needs from the agent.
#[derive(Debug, Clone)]
pub struct ImageJob {
    /// The image.
    pub info: ImageInfo,
    /// The node (root-device hints).
    pub node: Option<Node>,
    /// Devices the agent may write.
    pub devices: DeviceView,
    /// Progress reporting.
    pub progress: Progress,
    /// HTTP client for image servers.
    pub http: reqwest::Client,
    /// Retry policy.
    pub policy: DownloadPolicy,
    /// Whether MD5 checksums are accepted.
    pub md5_allowed: bool,
    /// Disk-backed directory for images that cannot be streamed.
    pub spool_dir: Option<PathBuf>,
    /// Config drive: a URL, or base64 of gzipped data.
    pub configdrive: Option<String>,
}

/// The outcome: the upstream result text and the partition UUIDs to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// `image (<id>) written to device <dev> root_uuid=<uuid>`.
    pub message: String,
    /// `standby.get_partition_uuids` answer.
    pub partition_uuids: Value,
}

/// Run `prepare_image` for the agent: client and policy from its configuration, the node from
/// its cache, and the partition UUIDs recorded for `standby.get_partition_uuids`.
pub async fn prepare_for_agent(
    state: &Arc<crate::state::AgentState>,
    info: ImageInfo,
    configdrive: Option<&Value>,
    progress: Progress,
) -> Result<String, AgentError> {
    let configdrive = match configdrive {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(AgentError::new(
                ErrorKind::InvalidCommandParams,
                format!(
                    "configdrive must be a URL or base64 of gzipped data (the conductor builds it), not {}",
                    if other.is_object() { "an object" } else { "this" }
                ),
            ));
        }
    };
    let md5_allowed = state
        .lookup_config()
        .and_then(|c| c.agent_md5_checksum_enable.into_option())
        .unwrap_or(true);
    validate(&info, md5_allowed)?;
    let config = &state.config;
    let job = ImageJob {
        info,
        node: state.node(),
        devices: state.devices.clone(),
        progress,
        http: image_client(
            &config.client_tls,
            config.tls_min_version,
            config.image_download.stall_timeout,
        )?,
        policy: config.image_download,
        md5_allowed,
        spool_dir: config.image_spool_dir.clone(),
        configdrive,
    };
    let written = prepare_image(job).await?;
    state.set_partition_uuids(written.partition_uuids);
    Ok(written.message)
}
