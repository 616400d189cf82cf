//! `image_info`: what the conductor tells the agent to write.

use serde::{Deserialize, Serialize};

use crate::JsonObject;
use crate::field::Field;

/// The image description of `standby.prepare_image` and the `write_image` deploy step.
///
/// Every optional key keeps its absent/null distinction so the conductor's step echo matches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Image identifier (last path component of `image_source`).
    pub id: String,
    /// Where to download it, tried in order.
    pub urls: Vec<String>,
    /// Declared format: `raw`, `qcow2`, `gpt`, ...
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub disk_format: Field<String>,
    /// Container format (unused by agents).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub container_format: Field<String>,
    /// Stream raw images straight to disk.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub stream_raw_images: Field<bool>,
    /// Legacy checksum: a hex digest or a URL of a checksum file.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub checksum: Field<String>,
    /// Hash algorithm (`sha256`, `sha512`).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub os_hash_algo: Field<String>,
    /// Expected digest (or a URL to it).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub os_hash_value: Field<String>,
    /// `http_basic` or `noauth`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub image_server_auth_strategy: Field<String>,
    /// Basic-auth user.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub image_server_user: Field<String>,
    /// Basic-auth password.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub image_server_password: Field<String>,
    /// Base64 of a full `Authorization` header value.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub image_request_authorization: Field<String>,
    /// `{"http": ..., "https": ...}`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub proxies: Field<JsonObject>,
    /// Hosts that bypass the proxies.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub no_proxy: Field<String>,
    /// Node the image is for.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub node_uuid: Field<String>,
    /// `whole-disk` or `partition`.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub image_type: Field<String>,
    /// Partition images: root partition size in MiB.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub root_mb: Field<u64>,
    /// Partition images: swap size in MiB.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub swap_mb: Field<u64>,
    /// Partition images: ephemeral size in MiB.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub ephemeral_mb: Field<u64>,
    /// Partition images: ephemeral file system.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub ephemeral_format: Field<String>,
    /// Partition images: keep the ephemeral partition.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub preserve_ephemeral: Field<bool>,
    /// `uefi` or `bios` (messages only; the agent decides from the node).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub deploy_boot_mode: Field<String>,
    /// Config drive fallback when the separate parameter is absent.
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub configdrive: Field<String>,
    /// Other keys (`kernel`, `ramdisk`, `root_gb`, `boot_option`, `disk_label`, ...).
    #[serde(flatten)]
    pub extra: JsonObject,
}
