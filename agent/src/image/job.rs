//! One image job: what `prepare_image` is given ([`ImageJob`]) and what it answers ([`Written`]).

use std::path::PathBuf;

use rivet_common::image::ImageInfo;
use rivet_common::node::Node;
use serde_json::Value;

use crate::config::DownloadPolicy;
use crate::disk::devices::DeviceView;
use crate::progress::Progress;

/// What `prepare_image` needs from the agent.
#[derive(Debug, Clone)]
pub struct ImageJob {
    /// The image.
    pub info: ImageInfo,
    /// The node (root-device hints).
    pub node: Option<Node>,
    /// The disk a hardware manager's `get_os_install_device` chose; `None`: the node's
    /// root-device hints choose.
    pub root_device: Option<String>,
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
