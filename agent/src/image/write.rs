//! The writing half's orchestration: the root device chosen, the image streamed onto it (a
//! whole disk, or the root partition of a fresh table), then the backup GPT, file systems and
//! config drive; on any failure the disk is left unbootable.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::json;
use tokio::sync::mpsc;

use super::download::{Download, WriterGone, expected_checksum};
use super::job::{ImageJob, Written};
use super::{disk, format, partition, stream};
use crate::error::{AgentError, ErrorKind};

/// Chunks in flight between the download and the writing half.
const IN_FLIGHT: usize = 4;

/// Stream the image onto `device` (a disk, or the root partition when not `whole_disk`),
/// verified, first MiB last.
async fn stream_image(job: &ImageJob, device: &str, whole_disk: bool) -> Result<stream::Finished, AgentError> {
    let (algo, expected) = expected_checksum(job).await?;
    let mut disk = disk::Disk::open(device)?;
    if whole_disk {
        disk = disk.whole_disk();
    }
    let processed = Arc::new(AtomicU64::new(0));
    let plan = stream::Plan {
        id: job.info.id.clone(),
        declared: job.info.disk_format.as_option().cloned(),
        algo,
        expected,
        spool_dir: job.spool_dir.clone(),
        progress: job.progress.clone(),
        processed: Arc::clone(&processed),
    };
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || stream::write(&plan, disk, rx));
    let downloaded = Download::new(job, tx, processed, device).run().await;
    let written = writer
        .await
        .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("image writer stopped: {e}")))?;
    let finished = match (downloaded, written) {
        (_, Err(e)) | (Ok(Err(e)), Ok(None)) => return Err(e),
        (_, Ok(Some(finished))) => finished,
        (Ok(Ok(())) | Err(WriterGone), Ok(None)) => {
            return Err(AgentError::new(ErrorKind::ImageWrite, "image writer stopped early"));
        }
    };
    tracing::info!(image = %job.info.id, device, format = finished.format.name(),
        bytes = finished.file_len, "image written and verified");
    Ok(finished)
}

/// Run blocking disk work (partitioning, mkfs) off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("disk work stopped: {e}")))?
}

/// A whole-disk image, then its config drive in a partition at the end of the disk.
async fn write_whole_disk(job: &ImageJob, device: &str, config_drive: Option<Vec<u8>>) -> Result<Written, AgentError> {
    let finished = stream_image(job, device, true).await?;
    // An image smaller than the disk leaves its backup GPT mid-disk: move it to the end after
    // every write, as upstream does, not only when a config drive is added.
    let disk = device.to_owned();
    blocking(move || partition::relocate_backup_gpt(&disk)).await?;
    if let Some(data) = config_drive {
        let disk = device.to_owned();
        let image_len = finished.image_len;
        let part = blocking(move || partition::add_config_drive(&disk, &data, image_len)).await?;
        tracing::info!(partition = %part.path, "config drive written");
    }
    // Whole-disk images: the root "uuid" is the MBR disk signature (bytes 440..444).
    let signature = finished
        .head
        .get(440..444)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let root_uuid = format!("0x{signature:08x}");
    Ok(Written {
        message: format!(
            "image ({}) written to device {device} root_uuid={root_uuid}",
            job.info.id
        ),
        partition_uuids: json!({ "root uuid": root_uuid }),
    })
}

/// A file system UUID, else the partition's own UUID (what upstream reads from lsblk).
fn partition_uuid(path: &str) -> Option<String> {
    let probe = crate::disk::devices::probe(std::path::Path::new(path)).ok()?;
    probe.uuid.or(probe.part_uuid)
}

/// A partition image: a fresh table, the image in the root partition, the other file systems
/// made and the config drive copied.
async fn write_partition_image(
    job: &ImageJob,
    device: &crate::disk::devices::BlockDevice,
    config_drive: Option<Vec<u8>>,
) -> Result<Written, AgentError> {
    use partition::Role;
    let running = if std::path::Path::new("/sys/firmware/efi").exists() {
        "uefi"
    } else {
        "bios"
    };
    let boot = partition::boot_settings(job.node.as_ref(), running);
    let layout = partition::plan(&job.info, boot, config_drive.as_ref().map(|d| d.len() as u64))?;
    let path = device.disk.name.clone();
    let preserve = job.info.preserve_ephemeral.as_option().copied().unwrap_or(false);
    let (target, devices) = (device.clone(), job.devices.clone());
    let disk = path.clone();
    let created = blocking(move || {
        if !preserve {
            crate::disk::erase::erase_metadata(&target, &devices)?;
        }
        partition::create(&disk, &layout)
    })
    .await?;
    let find = |role| created.iter().find(|c| c.role == Some(role)).cloned();
    let root = find(Role::Root).ok_or_else(|| AgentError::new(ErrorKind::ImageWrite, "no root partition"))?;
    stream_image(job, &root.path, false).await?;
    let (parts, info) = (created.clone(), job.info.clone());
    let esp = find(Role::Esp);
    let cd = find(Role::ConfigDrive);
    let uuids = blocking(move || {
        partition::make_file_systems(&parts, &info)?;
        if let (Some(part), Some(data)) = (&cd, &config_drive) {
            partition::write_config_drive(part, data)?;
        }
        Ok((
            partition_uuid(&root.path),
            esp.as_ref().and_then(|e| partition_uuid(&e.path)),
        ))
    })
    .await?;
    let (root_uuid, esp_uuid) = uuids;
    let root_uuid = root_uuid.unwrap_or_default();
    let mut message = format!("image ({}) written to device {path} root_uuid={root_uuid}", job.info.id);
    let mut result = json!({
        "partitions": created.iter().filter_map(|c| Some((c.role?.key().to_owned(), json!(c.path)))).collect::<serde_json::Map<_, _>>(),
        "root uuid": root_uuid,
    });
    if let Some(esp_uuid) = esp_uuid {
        message.push_str(&format!(" efi_system_partition_uuid={esp_uuid}"));
        result["efi system partition uuid"] = json!(esp_uuid);
    }
    Ok(Written {
        message,
        partition_uuids: result,
    })
}

/// Write the image described by `job` to the node's root device.
pub async fn prepare_image(job: ImageJob) -> Result<Written, AgentError> {
    format::check_declared(job.info.disk_format.as_option().map(String::as_str))?;
    let config_drive = match job.configdrive.as_deref().filter(|c| !c.is_empty()) {
        Some(value) => Some(partition::config_drive_bytes(value, &job.http).await?),
        None => None,
    };
    let disks = job.devices.list_disks();
    let device = match &job.root_device {
        Some(chosen) => disks.iter().find(|d| d.disk.name == *chosen).cloned().ok_or_else(|| {
            AgentError::new(
                ErrorKind::DeviceNotFound,
                format!(
                    "a hardware manager chose {chosen} to install the OS on, but it is not a disk this agent may see"
                ),
            )
        })?,
        None => crate::disk::hints::choose_root_device(&disks, job.node.as_ref())?,
    };
    let path = device.disk.name.clone();
    job.devices.check_destructive(&path)?;
    let partition_image = job.info.image_type.as_option().is_some_and(|t| t == "partition");
    tracing::info!(image = %job.info.id, device = %path, partition_image, "writing image");
    let outcome = if partition_image {
        write_partition_image(&job, &device, config_drive).await
    } else {
        write_whole_disk(&job, &path, config_drive).await
    };
    job.progress.clear();
    match outcome {
        Ok(written) => Ok(written),
        Err(e) => {
            tracing::error!(image = %job.info.id, device = %path, error = %e, "image write failed");
            let target = path.clone();
            let _ = tokio::task::spawn_blocking(move || disk::make_unbootable(&target)).await;
            Err(AgentError::new(
                e.kind,
                format!("{}; the disk {path} was left unbootable", e.details),
            ))
        }
    }
}
