//! The download half of an image write: the image's expected checksum (given, or read from a
//! checksum file), the HTTP client, and the download itself, which retries connection errors,
//! timeouts and 5xx (resuming with `Range` where the server allows), stops at once on 4xx, and
//! feeds the writing half ([`super::stream`]) through a bounded channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, RANGE};
use tokio::sync::mpsc;

use super::checksum;
use super::job::ImageJob;
use super::stream::Msg;
pub use crate::config::DownloadPolicy;
use crate::error::{AgentError, ErrorKind};
use crate::progress::{Measure, Unit};

fn download_error(e: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::ImageDownload, e.to_string())
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
pub(super) struct Download<'a> {
    job: &'a ImageJob,
    tx: mpsc::Sender<Msg>,
    sent: u64,
    processed: Arc<AtomicU64>,
    device: &'a str,
}

/// The writing half stopped (its own error says why).
pub(super) struct WriterGone;

impl<'a> Download<'a> {
    /// A download of `job` to `device`, sending to `tx`; `processed` counts what the writing
    /// half has taken (progress).
    pub(super) fn new(job: &'a ImageJob, tx: mpsc::Sender<Msg>, processed: Arc<AtomicU64>, device: &'a str) -> Self {
        Download {
            job,
            tx,
            sent: 0,
            processed,
            device,
        }
    }

    async fn send(&mut self, msg: Msg) -> Result<(), WriterGone> {
        self.tx.send(msg).await.map_err(|_| WriterGone)
    }

    async fn attempt(&mut self, url: &str) -> Result<Result<Attempt, AgentError>, WriterGone> {
        let job = self.job;
        let mut request = job.http.get(url);
        // Image URLs may carry credentials (temporary URL signatures, user:password@): never shown.
        let url = &rivet_common::error::without_url_secrets(url);
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
        let bytes_per_second = done.saturating_sub(from) as f64 / started.elapsed().as_secs_f64().max(1e-3);
        crate::metrics::metrics().image_rate(bytes_per_second);
        let rate = bytes_per_second / (1 << 20) as f64;
        let of = total
            .map(|t| format!(" of {} MiB ({:.0}%)", t >> 20, done as f64 * 100.0 / t.max(1) as f64))
            .unwrap_or_default();
        self.job.progress.measured(
            format!(
                "writing image {} to {}: {} MiB{of}, {rate:.0} MiB/s",
                self.job.info.id,
                self.device,
                done >> 20
            ),
            Measure {
                done,
                total,
                unit: Unit::Bytes,
                rate: Some(bytes_per_second),
            },
        );
    }

    /// Every attempt on every URL, then `End` if the file arrived whole.
    pub(super) async fn run(mut self) -> Result<Result<(), AgentError>, WriterGone> {
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
