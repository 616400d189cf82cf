//! Writing OS images (reference §7): `standby.prepare_image` and the `write_image` deploy step.
//!
//! A raw whole-disk image is streamed from HTTP straight onto the root device while it is
//! hashed; memory stays bounded (the first MiB plus a few chunks in flight) whatever the image
//! size. The first MiB — partition table and boot code — is held back and written only after
//! the checksum matched, so a half-written or corrupt image never boots. On any failure the
//! first MiB is zeroed and the error says what failed. Downloads retry connection errors,
//! timeouts and 5xx (resuming with `Range` where the server allows), and stop at once on 4xx.
//!
//! Not yet: qcow2 and other formats (refused with a clear error, never written), partition
//! images, config drives, bootloader installation.

pub mod checksum;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, RANGE};
use rivet_common::image::ImageInfo;
use rivet_common::node::Node;
use serde_json::{Value, json};

use crate::error::{AgentError, ErrorKind};
use crate::hardware::Progress;
use crate::hardware::devices::DeviceView;
use checksum::Hasher;

/// Bytes held back and written last.
const HEAD: usize = 1 << 20;
/// qcow2 images start with these bytes.
const QCOW2_MAGIC: &[u8] = b"QFI\xfb";

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
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| download_error(format!("fetching checksum {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(download_error(format!(
            "fetching checksum {url}: HTTP {}",
            resp.status()
        )));
    }
    resp.text()
        .await
        .map_err(|e| download_error(format!("fetching checksum {url}: {e}")))
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
        let digest = if value.starts_with("http://") || value.starts_with("https://") {
            checksum::parse_checksum_file(&fetch_text(&job.http, value).await?, &file_name).ok_or_else(|| {
                AgentError::new(
                    ErrorKind::ImageChecksum,
                    format!("no checksum for {file_name} in {value}"),
                )
            })?
        } else {
            value.to_ascii_lowercase()
        };
        return Ok((algo, digest));
    }
    let checksum = info
        .checksum
        .as_option()
        .ok_or_else(|| AgentError::new(ErrorKind::ImageChecksum, "no checksum given"))?;
    let digest = if checksum.starts_with("http://") || checksum.starts_with("https://") {
        checksum::parse_checksum_file(&fetch_text(&job.http, checksum).await?, &file_name).ok_or_else(|| {
            AgentError::new(
                ErrorKind::ImageChecksum,
                format!("no checksum for {file_name} in {checksum}"),
            )
        })?
    } else {
        checksum.to_ascii_lowercase()
    };
    Ok((checksum::algorithm_for(&digest, job.md5_allowed)?, digest))
}

fn open_device(path: &str) -> Result<File, AgentError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("opening {path}: {e}")))
}

/// Zero the first MiB: whatever happened, the disk must not boot a partial image.
fn make_unbootable(path: &str) {
    let outcome = open_device(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(&vec![0u8; HEAD]))
            .and_then(|_| f.sync_all())
            .map_err(|e| AgentError::new(ErrorKind::ImageWrite, e.to_string()))
    });
    match outcome {
        Ok(()) => tracing::warn!(
            device = path,
            "first MiB zeroed: the disk will not boot a partial image"
        ),
        Err(e) => tracing::error!(device = path, error = %e, "could not make the disk unbootable"),
    }
}

/// Where a download stands; survives retries so they can resume.
struct Stream {
    hasher: Hasher,
    head: Vec<u8>,
    written: u64,
    file: File,
}

enum Attempt {
    Done,
    Retry(String),
}

async fn attempt(
    job: &ImageJob,
    url: &str,
    stream: &mut Stream,
    algo: &str,
    device: &str,
) -> Result<Attempt, AgentError> {
    let mut request = job.http.get(url);
    if stream.written > 0 {
        request = request.header(RANGE, format!("bytes={}-", stream.written));
    }
    let mut resp = match request.send().await {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Retry(format!("{url}: {e}"))),
    };
    let status = resp.status();
    if status.is_server_error() {
        return Ok(Attempt::Retry(format!("{url}: HTTP {status}")));
    }
    if !status.is_success() {
        return Err(AgentError::new(
            ErrorKind::ImageDownload,
            format!("{url}: HTTP {status}; not retried"),
        ));
    }
    if stream.written > 0 && status != StatusCode::PARTIAL_CONTENT {
        // The server ignored Range: start again from the first byte.
        tracing::info!(url, "server does not resume downloads; restarting from the start");
        stream.hasher = Hasher::new(algo).ok_or_else(|| download_error("hash algorithm"))?;
        stream.head.clear();
        stream.written = 0;
    }
    let total = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|l| l + stream.written);
    if stream.written == 0 && resp.headers().get(ACCEPT_RANGES).is_none() {
        tracing::debug!(url, "server does not advertise range requests");
    }
    let started = Instant::now();
    // None until the first chunk: operators see the write start at once, then every 2 s.
    let mut last_report: Option<Instant> = None;
    loop {
        let chunk = match tokio::time::timeout(job.policy.stall_timeout, resp.chunk()).await {
            Err(_) => {
                return Ok(Attempt::Retry(format!(
                    "{url}: no data for {:?}",
                    job.policy.stall_timeout
                )));
            }
            Ok(Err(e)) => return Ok(Attempt::Retry(format!("{url}: {e}"))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        if stream.written == 0 && chunk.starts_with(QCOW2_MAGIC) {
            return Err(AgentError::new(
                ErrorKind::InvalidImage,
                format!(
                    "image {} is qcow2 but was declared raw (or the format is not supported): refusing to write it",
                    job.info.id
                ),
            ));
        }
        stream.hasher.update(&chunk);
        let mut data: &[u8] = &chunk;
        if stream.head.len() < HEAD {
            let take = (HEAD - stream.head.len()).min(data.len());
            stream.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            stream.written += take as u64;
        }
        if !data.is_empty() {
            let offset = stream.written;
            let file = &mut stream.file;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(data))
                .map_err(|e| {
                    AgentError::new(ErrorKind::ImageWrite, format!("writing {device} at byte {offset}: {e}"))
                })?;
            stream.written += data.len() as u64;
        }
        if last_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(2)) {
            last_report = Some(Instant::now());
            let rate = stream.written as f64 / started.elapsed().as_secs_f64().max(1e-3) / (1 << 20) as f64;
            let of = total
                .map(|t| {
                    format!(
                        " of {} MiB ({:.0}%)",
                        t >> 20,
                        stream.written as f64 * 100.0 / t.max(1) as f64
                    )
                })
                .unwrap_or_default();
            job.progress.report(format!(
                "writing image {} to {device}: {} MiB{of}, {rate:.0} MiB/s",
                job.info.id,
                stream.written >> 20
            ));
        }
    }
    if let Some(total) = total
        && stream.written < total
    {
        return Ok(Attempt::Retry(format!(
            "{url}: connection closed after {} of {total} bytes",
            stream.written
        )));
    }
    Ok(Attempt::Done)
}

async fn stream_to_disk(job: &ImageJob, device: &str) -> Result<Written, AgentError> {
    let (algo, expected) = expected_checksum(job).await?;
    let mut stream = Stream {
        hasher: Hasher::new(algo).ok_or_else(|| download_error("hash algorithm"))?,
        head: Vec::with_capacity(HEAD),
        written: 0,
        file: open_device(device)?,
    };
    let attempts = job.policy.retries + 1;
    let mut last = String::new();
    let mut done = false;
    'attempts: for n in 0..attempts {
        for url in &job.info.urls {
            match attempt(job, url, &mut stream, algo, device).await? {
                Attempt::Done => {
                    done = true;
                    break 'attempts;
                }
                Attempt::Retry(why) => {
                    tracing::warn!(attempt = n + 1, attempts, reason = %why, "image download interrupted");
                    last = why;
                }
            }
        }
        if n + 1 < attempts {
            tokio::time::sleep(job.policy.interval).await;
        }
    }
    if !done {
        return Err(AgentError::new(
            ErrorKind::ImageDownload,
            format!("giving up after {attempts} attempts: {last}"),
        ));
    }
    let actual = stream.hasher.hex();
    if actual != expected {
        return Err(AgentError::new(
            ErrorKind::ImageChecksum,
            format!("image {} has {algo} {actual}, expected {expected}", job.info.id),
        ));
    }
    job.progress.report(format!(
        "image {} downloaded and verified ({} MiB, {algo}); writing the first MiB of {device}",
        job.info.id,
        stream.written >> 20
    ));
    // Only now the partition table and boot code: the disk becomes bootable last.
    let file = &mut stream.file;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&stream.head))
        .and_then(|_| file.sync_all())
        .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("writing the first MiB of {device}: {e}")))?;
    crate::hardware::erase::flush_buffers(file);
    if let Err(e) = crate::hardware::erase::reread_partitions(file) {
        tracing::warn!(device, error = %e, "partition table not re-read");
    }
    // Whole-disk images: the root "uuid" is the MBR disk signature (bytes 440..444).
    let signature = stream
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

/// Write the image described by `job` to the node's root device.
pub async fn prepare_image(job: ImageJob) -> Result<Written, AgentError> {
    if job.info.image_type.as_option().is_some_and(|t| t == "partition") {
        return Err(AgentError::new(
            ErrorKind::InvalidImage,
            "partition images are not supported by this agent yet; use a whole-disk image",
        ));
    }
    match job.info.disk_format.as_option().map(String::as_str) {
        None | Some("raw") | Some("gpt") => {}
        Some(other) => {
            return Err(AgentError::new(
                ErrorKind::InvalidImage,
                format!("disk format {other} is not supported by this agent yet (raw only); nothing was written"),
            ));
        }
    }
    let disks = job.devices.list_disks();
    let device = crate::hardware::hints::choose_root_device(&disks, job.node.as_ref())?;
    let path = device.disk.name.clone();
    job.devices.check_destructive(&path)?;
    tracing::info!(image = %job.info.id, device = %path, "writing image");
    let outcome = stream_to_disk(&job, &path).await;
    job.progress.clear();
    match outcome {
        Ok(written) => Ok(written),
        Err(e) => {
            tracing::error!(image = %job.info.id, device = %path, error = %e, "image write failed");
            let target = path.clone();
            let _ = tokio::task::spawn_blocking(move || make_unbootable(&target)).await;
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
    if configdrive.is_some_and(|c| !c.is_null() && c.as_str() != Some("")) {
        return Err(AgentError::new(
            ErrorKind::InvalidImage,
            "config drives are not supported by this agent yet; nothing was written",
        ));
    }
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
    };
    let written = prepare_image(job).await?;
    state.set_partition_uuids(written.partition_uuids);
    Ok(written.message)
}
