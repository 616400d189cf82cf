//! The writing half of an image write, on its own thread: hashes every byte, recognises the
//! format from the first bytes, and writes raw images as they come or converts qcow2 on the
//! fly. The download half (async) feeds it through a bounded channel, so hashing and disk
//! writes never stall the runtime and memory stays bounded by the channel's depth.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::checksum::Hasher;
use super::disk::Disk;
use super::format::{self, Format};
use super::qcow2::Qcow2Stream;
use super::spool::Spool;
use crate::error::{AgentError, ErrorKind};
use crate::progress::Progress;

/// What the download half sends.
#[derive(Debug)]
pub enum Msg {
    /// The next bytes of the file.
    Data(bytes::Bytes),
    /// The server ignored a resume request: the file starts again from its first byte.
    Restart,
    /// The whole file has been sent.
    End,
}

/// What the writing half needs to know.
#[derive(Debug)]
pub struct Plan {
    /// Image id (messages).
    pub id: String,
    /// `disk_format` as declared.
    pub declared: Option<String>,
    /// Hash algorithm and expected hex digest.
    pub algo: &'static str,
    /// Expected digest.
    pub expected: String,
    /// Disk-backed directory for the rare image that cannot be streamed.
    pub spool_dir: Option<PathBuf>,
    /// Progress sink.
    pub progress: Progress,
    /// Bytes of the file processed so far (read by the download half's progress reports).
    pub processed: Arc<AtomicU64>,
}

/// A verified image on the disk.
#[derive(Debug)]
pub struct Finished {
    /// The first MiB as written.
    pub head: Vec<u8>,
    /// Bytes of the file.
    pub file_len: u64,
    /// Bytes the image covers on the disk (its virtual size for qcow2).
    pub image_len: u64,
    /// The format it was written as.
    pub format: Format,
}

enum Sink {
    Sniffing(Vec<u8>),
    Raw { len: u64 },
    Qcow2(Box<Qcow2Stream>),
}

struct Writer<'a> {
    plan: &'a Plan,
    disk: Disk,
    hasher: Hasher,
    sink: Sink,
    file_len: u64,
}

impl Writer<'_> {
    fn data(&mut self, bytes: &[u8]) -> Result<(), AgentError> {
        self.hasher.update(bytes);
        self.file_len += bytes.len() as u64;
        self.plan.processed.store(self.file_len, Ordering::Relaxed);
        match &mut self.sink {
            Sink::Sniffing(first) => {
                first.extend_from_slice(bytes);
                if first.len() >= format::SNIFF {
                    self.decide()?;
                }
                Ok(())
            }
            Sink::Raw { len } => {
                self.disk.write_at(*len, bytes)?;
                *len += bytes.len() as u64;
                Ok(())
            }
            Sink::Qcow2(q) => q.feed(&mut self.disk, bytes),
        }
    }

    /// Choose the format from the bytes seen so far and pass them on.
    fn decide(&mut self) -> Result<(), AgentError> {
        let Sink::Sniffing(first) = &mut self.sink else {
            return Ok(());
        };
        let first = std::mem::take(first);
        let chosen = format::decide(&self.plan.id, self.plan.declared.as_deref(), format::detect(&first))?;
        match chosen {
            Format::Qcow2 => {
                let mut q = Qcow2Stream::new(&self.plan.id, Spool::new(self.plan.spool_dir.clone()));
                q.feed(&mut self.disk, &first)?;
                self.sink = Sink::Qcow2(Box::new(q));
            }
            _ => {
                self.disk.write_at(0, &first)?;
                self.sink = Sink::Raw {
                    len: first.len() as u64,
                };
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Finished, AgentError> {
        self.decide()?;
        let (image_len, format) = match std::mem::replace(&mut self.sink, Sink::Raw { len: 0 }) {
            Sink::Raw { len } => (len, Format::Raw),
            Sink::Qcow2(q) => (q.finish(&mut self.disk)?, Format::Qcow2),
            Sink::Sniffing(_) => return Err(AgentError::new(ErrorKind::ImageWrite, "format undecided")),
        };
        let actual = self.hasher.hex();
        let plan = self.plan;
        if actual != plan.expected {
            return Err(AgentError::new(
                ErrorKind::ImageChecksum,
                format!(
                    "image {} has {} {actual}, expected {}",
                    plan.id, plan.algo, plan.expected
                ),
            ));
        }
        plan.progress.report(format!(
            "image {} downloaded and verified ({} MiB, {}); writing the first MiB of {}",
            plan.id,
            self.file_len >> 20,
            plan.algo,
            self.disk.path()
        ));
        // Only now the partition table and boot code: the disk becomes bootable last.
        let head = self.disk.finish(image_len)?;
        Ok(Finished {
            head,
            file_len: self.file_len,
            image_len,
            format,
        })
    }
}

/// Receive the file from `rx` and write it to `disk`. Returns `Ok(None)` when the download half
/// gave up (its error says why).
pub fn write(plan: &Plan, disk: Disk, mut rx: mpsc::Receiver<Msg>) -> Result<Option<Finished>, AgentError> {
    let new_hasher =
        || Hasher::new(plan.algo).ok_or_else(|| AgentError::new(ErrorKind::ImageChecksum, "unknown hash algorithm"));
    let mut writer = Writer {
        plan,
        disk,
        hasher: new_hasher()?,
        sink: Sink::Sniffing(Vec::with_capacity(format::SNIFF)),
        file_len: 0,
    };
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Data(bytes) => writer.data(&bytes)?,
            Msg::Restart => {
                writer.hasher = new_hasher()?;
                writer.disk.restart();
                writer.sink = Sink::Sniffing(Vec::with_capacity(format::SNIFF));
                writer.file_len = 0;
            }
            Msg::End => return writer.finish().map(Some),
        }
    }
    Ok(None)
}
