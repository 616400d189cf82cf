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
pub mod job;
pub mod partition;
pub mod qcow2;
pub mod spool;
pub mod stream;
pub mod validate;
pub mod write;

pub use crate::config::DownloadPolicy;
pub use download::{expected_checksum, image_client};
pub use job::{ImageJob, Written};
pub use validate::validate;
pub use write::prepare_image;
