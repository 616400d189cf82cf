//! The target disk of an image write: writes at any offset, the first MiB held back until the
//! image is verified, sequential writes gathered into large ones, and a record of what was
//! written so that a sparse image's holes can be zeroed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use crate::blockdev;
use crate::error::{AgentError, ErrorKind};

/// Bytes held back and written last: partition table and boot code.
pub const HEAD: u64 = 1 << 20;
/// Sequential writes are gathered up to this size before they reach the device.
const GATHER: usize = 4 << 20;
/// Alignment of direct (O_DIRECT) writes: memory, offset and length.
const ALIGN: usize = 4096;

fn write_error(device: &str, offset: u64, e: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::ImageWrite, format!("writing {device} at byte {offset}: {e}"))
}

/// Open a device for writing an image.
pub fn open(path: &str) -> Result<File, AgentError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("opening {path}: {e}")))
}

/// Zero the first and the last MiB (partition tables, the backup GPT): whatever happened, the
/// disk must not boot a partial image.
pub fn make_unbootable(path: &str) {
    let outcome = open(path).and_then(|f| {
        let size = blockdev::device_size(&f).map_err(|e| write_error(path, 0, e))?;
        let tail = size.saturating_sub(HEAD).max(HEAD.min(size));
        f.write_all_at(&vec![0u8; HEAD.min(size) as usize], 0)
            .and_then(|_| blockdev::zero_range(&f, tail, size - tail))
            .and_then(|_| f.sync_all())
            .map_err(|e| write_error(path, 0, e))
    });
    match outcome {
        Ok(()) => tracing::warn!(
            device = path,
            "first and last MiB zeroed: the disk will not boot a partial image"
        ),
        Err(e) => tracing::error!(device = path, error = %e, "could not make the disk unbootable"),
    }
}

/// Disjoint byte ranges, merged as they are added.
#[derive(Debug, Default)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    fn add(&mut self, mut start: u64, mut end: u64) {
        if let Some((&s, &e)) = self.0.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
        }
        while let Some((&s, &e)) = self.0.range(start..).next() {
            if s > end {
                break;
            }
            end = end.max(e);
            self.0.remove(&s);
        }
        self.0.insert(start, end);
    }

    /// The gaps between `from` and `to`.
    fn gaps(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = from;
        for (&s, &e) in &self.0 {
            if e <= at {
                continue;
            }
            if s >= to {
                break;
            }
            if s > at {
                gaps.push((at, s));
            }
            at = e;
        }
        if at < to {
            gaps.push((at, to));
        }
        gaps
    }
}

/// Sequential bytes waiting to be written together, in memory aligned for O_DIRECT.
#[derive(Debug)]
struct Gather {
    mem: Vec<u8>,
    start: usize,
    len: usize,
    at: u64,
}

impl Gather {
    fn new() -> Self {
        let mem = vec![0u8; GATHER + ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        Gather {
            mem,
            start,
            len: 0,
            at: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    /// Append what fits of `data` if it follows on; returns how much was taken.
    fn take(&mut self, offset: u64, data: &[u8]) -> usize {
        if self.len == 0 {
            self.at = offset;
        } else if self.at + self.len as u64 != offset {
            return 0;
        }
        let n = (GATHER - self.len).min(data.len());
        let from = self.start + self.len;
        self.mem[from..from + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

/// A disk being written.
#[derive(Debug)]
pub struct Disk {
    file: File,
    /// The same device opened with O_DIRECT: large aligned writes bypass the page cache, as
    /// `dd oflag=direct` does. `None` where the device refuses it.
    direct: Option<File>,
    path: String,
    size: u64,
    /// Logical sector size in bytes: the unit of the partition table's LBAs.
    sector: u32,
    /// Whether the image is a whole disk, whose partition table must suit `sector`.
    whole_disk: bool,
    /// Whether bytes past the first MiB were written since the start (or the last restart).
    past_head: bool,
    head: Vec<u8>,
    gathered: Gather,
    written: Ranges,
}

impl Disk {
    /// Open `path` for an image write.
    pub fn open(path: &str) -> Result<Self, AgentError> {
        let file = open(path)?;
        let size = blockdev::device_size(&file)
            .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("size of {path}: {e}")))?;
        let sector = blockdev::logical_sector_size(&file)
            .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("sector size of {path}: {e}")))?;
        let direct = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_DIRECT)
                .open(path)
                .ok()
        };
        Ok(Disk {
            file,
            direct,
            path: path.to_owned(),
            size,
            sector,
            whole_disk: false,
            past_head: false,
            head: vec![0; HEAD as usize],
            gathered: Gather::new(),
            written: Ranges::default(),
        })
    }

    /// This image is a whole disk: its partition table is checked against the device's sector
    /// size before the first byte past the first MiB is written, and again before the first MiB
    /// is (see [`blockdev::geometry::check_table_fits_disk`]).
    pub fn whole_disk(mut self) -> Self {
        self.whole_disk = true;
        self
    }

    fn check_table(&self, image_len: Option<u64>) -> Result<(), AgentError> {
        if !self.whole_disk {
            return Ok(());
        }
        blockdev::geometry::check_table_fits_disk(&self.head, image_len, self.sector).map_err(|e| {
            let written = if self.past_head { "" } else { "; nothing was written" };
            AgentError::new(
                ErrorKind::ImageWrite,
                format!("the image does not suit {}: {e}{written}", self.path),
            )
        })
    }

    /// The device path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The device size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Refuse an image that does not fit, before anything is written.
    pub fn check_fits(&self, image: u64, what: &str) -> Result<(), AgentError> {
        if image > self.size {
            return Err(AgentError::new(
                ErrorKind::ImageWrite,
                format!(
                    "{what} is {image} bytes but {} holds only {} bytes; nothing was written",
                    self.path, self.size
                ),
            ));
        }
        Ok(())
    }

    /// Write `data` at `offset`. The first MiB only reaches the device in [`Disk::finish`].
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), AgentError> {
        let end = offset + data.len() as u64;
        if end > self.size {
            return Err(write_error(
                &self.path,
                offset,
                format!("the image does not fit: the device ends at byte {}", self.size),
            ));
        }
        self.written.add(offset, end);
        crate::metrics::metrics().image_written(data.len() as u64);
        let mut offset = offset;
        let mut data = data;
        if offset < HEAD {
            let take = (HEAD - offset).min(data.len() as u64) as usize;
            self.head[offset as usize..offset as usize + take].copy_from_slice(&data[..take]);
            offset += take as u64;
            data = &data[take..];
        }
        if data.is_empty() {
            return Ok(());
        }
        // The first bytes past the first MiB: the table in the held-back head decides whether
        // anything is written at all.
        if !self.past_head {
            self.check_table(None)?;
            self.past_head = true;
        }
        while !data.is_empty() {
            let n = self.gathered.take(offset, data);
            if n == 0 {
                self.flush_gathered()?;
                continue;
            }
            offset += n as u64;
            data = &data[n..];
            if self.gathered.len == GATHER {
                self.flush_gathered()?;
            }
        }
        Ok(())
    }

    fn flush_gathered(&mut self) -> Result<(), AgentError> {
        let g = &self.gathered;
        if g.len == 0 {
            return Ok(());
        }
        let aligned = g.at.is_multiple_of(ALIGN as u64) && g.len.is_multiple_of(ALIGN);
        let mut done = false;
        if aligned && let Some(direct) = &self.direct {
            match direct.write_all_at(g.bytes(), g.at) {
                Ok(()) => done = true,
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    tracing::info!(device = %self.path, "direct I/O refused; writing through the page cache");
                    self.direct = None;
                }
                Err(e) => return Err(write_error(&self.path, g.at, e)),
            }
        }
        if !done {
            self.file
                .write_all_at(g.bytes(), g.at)
                .map_err(|e| write_error(&self.path, g.at, e))?;
        }
        self.gathered.len = 0;
        Ok(())
    }

    /// Zero what was not written between the first MiB and `end` (the holes of a sparse image;
    /// the device may hold an older system there).
    pub fn zero_holes(&mut self, end: u64) -> Result<(), AgentError> {
        self.flush_gathered()?;
        for (start, stop) in self.written.gaps(HEAD, end) {
            blockdev::zero_range(&self.file, start, stop - start).map_err(|e| write_error(&self.path, start, e))?;
        }
        Ok(())
    }

    /// Forget everything written so far (the download starts again from the first byte).
    pub fn restart(&mut self) {
        self.head.iter_mut().for_each(|b| *b = 0);
        self.past_head = false;
        self.gathered.len = 0;
        self.written = Ranges::default();
    }

    /// Make the image complete: flush, write the first `min(1 MiB, image_len)` bytes, sync,
    /// drop stale buffers and re-read the partition table. Returns the first MiB.
    pub fn finish(mut self, image_len: u64) -> Result<Vec<u8>, AgentError> {
        self.check_table(Some(image_len))?;
        self.flush_gathered()?;
        let head_len = image_len.min(HEAD) as usize;
        self.file
            .write_all_at(&self.head[..head_len], 0)
            .and_then(|_| self.file.sync_all())
            .and_then(|_| self.direct.as_ref().map_or(Ok(()), File::sync_all))
            .map_err(|e| write_error(&self.path, 0, e))?;
        blockdev::flush_buffers(&self.file);
        if let Err(e) = blockdev::reread_partitions(&self.file) {
            tracing::warn!(device = %self.path, error = %e, "partition table not re-read");
        }
        Ok(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::Ranges;

    #[test]
    fn ranges_merge_and_report_gaps() {
        let mut r = Ranges::default();
        r.add(10, 20);
        r.add(30, 40);
        r.add(20, 25);
        r.add(35, 50);
        assert_eq!(r.gaps(0, 60), vec![(0, 10), (25, 30), (50, 60)]);
        r.add(0, 60);
        assert_eq!(r.gaps(0, 60), vec![]);
        assert_eq!(r.0.len(), 1);
    }
}
