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
//! drives go where upstream puts them ([`partition`]). Not yet: bootloader installation.

pub mod bootloader;
pub mod checksum;
pub mod disk;
pub mod format;
pub mod partition;
pub mod qcow2;
pub mod spool;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, RANGE};
use rivet_common::image::ImageInfo;
use rivet_common::node::Node;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::{AgentError, ErrorKind};
use crate::hardware::Progress;
use crate::hardware::devices::DeviceView;
use stream::Msg;

/// Chunks in flight between the download and the writing half.
const IN_FLIGHT: usize = 4;

/// Download retry policy (upstream `image_download_connection_*`).
#[derive(Debug, Clone, Copy)]
pub struct DownloadPolicy {
    /// Longest wait for a connection or for more data.
    pub stall_timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Pause between attempts.
    pub interval: Duration,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        DownloadPolicy {
            stall_timeout: Duration::from_secs(60),
            retries: 9,
            interval: Duration::from_secs(10),
        }
    }
}

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

fn download_error(e: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::ImageDownload, e.to_string())
}

/// Check `image_info` before accepting the command (upstream's validator, answered 400).
pub fn validate(info: &ImageInfo, md5_allowed: bool) -> Result<(), AgentError> {
    let invalid = |m: String| AgentError::new(ErrorKind::InvalidCommandParams, m);
    if info.id.is_empty() {
        return Err(invalid("image_info.id is required".into()));
    }
    if info.urls.is_empty() {
        return Err(invalid("image_info.urls must name at least one URL".into()));
    }
    match (
        info.os_hash_algo.as_option(),
        info.os_hash_value.as_option(),
        info.checksum.as_option(),
    ) {
        (Some(a), Some(v), _) if !a.is_empty() && !v.is_empty() => Ok(()),
        (Some(_), None, _) | (None, Some(_), _) => {
            Err(invalid("os_hash_algo and os_hash_value must be given together".into()))
        }
        (_, _, Some(c))
            if c.starts_with("http://")
                || c.starts_with("https://")
                || c.len() > 32
                || (md5_allowed && !c.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(invalid(
            "image_info needs os_hash_algo and os_hash_value, or a checksum".into(),
        )),
    }
}

async fn fetch_text(http: &reqwest::Client, url: &str) -> Result<String, AgentError> {
    let resp = http.get(url).send().await.map_err(|e| {
        download_error(format!(
            "fetching checksum {url}: {}",
            rivet_common::error::http_error(&e)
        ))
    })?;
    if !resp.status().is_success() {
        return Err(download_error(format!(
            "fetching checksum {url}: HTTP {}",
            resp.status()
        )));
    }
    resp.text().await.map_err(|e| {
        download_error(format!(
            "fetching checksum {url}: {}",
            rivet_common::error::http_error(&e)
        ))
    })
}

/// The algorithm and expected digest for an image.
pub async fn expected_checksum(job: &ImageJob) -> Result<(&'static str, String), AgentError> {
    let info = &job.info;
    let file_name = info.urls[0]
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(&info.id)
        .to_owned();
    if let (Some(algo), Some(value)) = (info.os_hash_algo.as_option(), info.os_hash_value.as_option()) {
        let algo: &'static str = match algo.to_ascii_lowercase().as_str() {
            "sha256" => "sha256",
            "sha512" => "sha512",
            "md5" if job.md5_allowed => "md5",
            other => {
                return Err(AgentError::new(
                    ErrorKind::ImageChecksum,
                    format!("unsupported os_hash_algo {other:?}"),
                ));
            }
        };
        return Ok((algo, digest_from(job, value, &file_name).await?));
    }
    let checksum = info
        .checksum
        .as_option()
        .ok_or_else(|| AgentError::new(ErrorKind::ImageChecksum, "no checksum given"))?;
    let digest = digest_from(job, checksum, &file_name).await?;
    Ok((checksum::algorithm_for(&digest, job.md5_allowed)?, digest))
}

/// A digest given as is, or as the URL of a checksum file naming `file_name`.
async fn digest_from(job: &ImageJob, value: &str, file_name: &str) -> Result<String, AgentError> {
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Ok(value.to_ascii_lowercase());
    }
    checksum::parse_checksum_file(&fetch_text(&job.http, value).await?, file_name).ok_or_else(|| {
        AgentError::new(
            ErrorKind::ImageChecksum,
            format!("no checksum for {file_name} in {value}"),
        )
    })
}

enum Attempt {
    Done,
    Retry(String),
}

/// The download half: where it stands survives retries so they can resume.
struct Download<'a> {
    job: &'a ImageJob,
    tx: mpsc::Sender<Msg>,
    sent: u64,
    processed: Arc<AtomicU64>,
    device: &'a str,
}

/// The writing half stopped (its own error says why).
struct WriterGone;

impl Download<'_> {
    async fn send(&mut self, msg: Msg) -> Result<(), WriterGone> {
        self.tx.send(msg).await.map_err(|_| WriterGone)
    }

    async fn attempt(&mut self, url: &str) -> Result<Result<Attempt, AgentError>, WriterGone> {
        let job = self.job;
        let mut request = job.http.get(url);
        // Image URLs may carry credentials in their query (temporary URLs): never shown.
        let url = &rivet_common::error::without_url_queries(url);
        if self.sent > 0 {
            request = request.header(RANGE, format!("bytes={}-", self.sent));
        }
        let mut resp = match request.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Ok(Attempt::Retry(rivet_common::error::http_error(&e)))),
        };
        let status = resp.status();
        if status.is_server_error() {
            return Ok(Ok(Attempt::Retry(format!("{url}: HTTP {status}"))));
        }
        if !status.is_success() {
            return Ok(Err(AgentError::new(
                ErrorKind::ImageDownload,
                format!("{url}: HTTP {status}; not retried"),
            )));
        }
        if self.sent > 0 && status != StatusCode::PARTIAL_CONTENT {
            tracing::info!(url, "server does not resume downloads; restarting from the start");
            self.send(Msg::Restart).await?;
            self.sent = 0;
        }
        let total = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|l| l + self.sent);
        if self.sent == 0 && resp.headers().get(ACCEPT_RANGES).is_none() {
            tracing::debug!(url, "server does not advertise range requests");
        }
        let started = Instant::now();
        let from = self.sent;
        // None until the first chunk: operators see the write start at once, then every 2 s.
        let mut last_report: Option<Instant> = None;
        loop {
            let chunk = match tokio::time::timeout(job.policy.stall_timeout, resp.chunk()).await {
                Err(_) => {
                    return Ok(Ok(Attempt::Retry(format!(
                        "{url}: no data for {:?}",
                        job.policy.stall_timeout
                    ))));
                }
                Ok(Err(e)) => {
                    return Ok(Ok(Attempt::Retry(format!(
                        "{url}: {}",
                        rivet_common::error::http_error(&e)
                    ))));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            self.sent += chunk.len() as u64;
            self.send(Msg::Data(chunk)).await?;
            if last_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(2)) {
                last_report = Some(Instant::now());
                self.report(total, from, started);
            }
        }
        if let Some(total) = total
            && self.sent < total
        {
            return Ok(Ok(Attempt::Retry(format!(
                "{url}: connection closed after {} of {total} bytes",
                self.sent
            ))));
        }
        Ok(Ok(Attempt::Done))
    }

    /// Progress counts bytes the writing half has taken, not bytes received.
    fn report(&self, total: Option<u64>, from: u64, started: Instant) {
        let done = self.processed.load(Ordering::Relaxed).max(1);
        let rate = done.saturating_sub(from) as f64 / started.elapsed().as_secs_f64().max(1e-3) / (1 << 20) as f64;
        let of = total
            .map(|t| format!(" of {} MiB ({:.0}%)", t >> 20, done as f64 * 100.0 / t.max(1) as f64))
            .unwrap_or_default();
        self.job.progress.report(format!(
            "writing image {} to {}: {} MiB{of}, {rate:.0} MiB/s",
            self.job.info.id,
            self.device,
            done >> 20
        ));
    }

    /// Every attempt on every URL, then `End` if the file arrived whole.
    async fn run(mut self) -> Result<Result<(), AgentError>, WriterGone> {
        let job = self.job;
        let attempts = job.policy.retries + 1;
        let mut last = String::new();
        for n in 0..attempts {
            for url in &job.info.urls {
                match self.attempt(url).await? {
                    Ok(Attempt::Done) => {
                        self.send(Msg::End).await?;
                        return Ok(Ok(()));
                    }
                    Ok(Attempt::Retry(why)) => {
                        tracing::warn!(attempt = n + 1, attempts, reason = %why, "image download interrupted");
                        last = why;
                    }
                    Err(fatal) => return Ok(Err(fatal)),
                }
            }
            if n + 1 < attempts {
                tokio::time::sleep(job.policy.interval).await;
            }
        }
        Ok(Err(AgentError::new(
            ErrorKind::ImageDownload,
            format!("giving up after {attempts} attempts: {last}"),
        )))
    }
}

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
    let downloaded = Download {
        job,
        tx,
        sent: 0,
        processed,
        device,
    }
    .run()
    .await;
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
    let probe = crate::hardware::devices::probe(std::path::Path::new(path)).ok()?;
    probe.uuid.or(probe.part_uuid)
}

/// A partition image: a fresh table, the image in the root partition, the other file systems
/// made and the config drive copied.
async fn write_partition_image(
    job: &ImageJob,
    device: &crate::hardware::devices::BlockDevice,
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
            crate::hardware::erase::erase_metadata(&target, &devices)?;
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
    let device = crate::hardware::hints::choose_root_device(&disks, job.node.as_ref())?;
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

/// The image HTTP client: connection and read stall timeouts, no total timeout (images are big).
pub fn image_client(
    tls: &crate::config::ClientTls,
    min: crate::config::TlsMinVersion,
    stall: Duration,
) -> Result<reqwest::Client, AgentError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(
            crate::tls::client_config(tls, min)
                .map_err(|e| AgentError::new(ErrorKind::ImageDownload, e.to_string()))?,
        )
        .connect_timeout(stall)
        .read_timeout(stall)
        .user_agent(concat!("rivet-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AgentError::new(ErrorKind::ImageDownload, e.to_string()))
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
