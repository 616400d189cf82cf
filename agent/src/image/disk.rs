//! The target disk of an image write: writes at any offset, the first MiB held back until the
//! image is verified, sequential writes gathered into large ones, and a record of what was
//! written so that a sparse image's holes can be zeroed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use crate::error::{AgentError, ErrorKind};
use crate::hardware::erase;

/// Bytes held back and written last: partition table and boot code.
pub const HEAD: u64 = 1 << 20;
/// Sequential writes are gathered up to this size before they reach the device.
const GATHER: usize = 4 << 20;

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

/// Zero the first MiB: whatever happened, the disk must not boot a partial image.
pub fn make_unbootable(path: &str) {
    let outcome = open(path).and_then(|f| {
        f.write_all_at(&vec![0u8; HEAD as usize], 0)
            .and_then(|_| f.sync_all())
            .map_err(|e| write_error(path, 0, e))
    });
    match outcome {
        Ok(()) => tracing::warn!(
            device = path,
            "first MiB zeroed: the disk will not boot a partial image"
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

/// A disk being written.
#[derive(Debug)]
pub struct Disk {
    file: File,
    path: String,
    size: u64,
    head: Vec<u8>,
    gathered: Vec<u8>,
    gathered_at: u64,
    written: Ranges,
}

impl Disk {
    /// Open `path` for an image write.
    pub fn open(path: &str) -> Result<Self, AgentError> {
        let file = open(path)?;
        let size = erase::device_size(&file)
            .map_err(|e| AgentError::new(ErrorKind::ImageWrite, format!("size of {path}: {e}")))?;
        Ok(Disk {
            file,
            path: path.to_owned(),
            size,
            head: vec![0; HEAD as usize],
            gathered: Vec::with_capacity(GATHER),
            gathered_at: 0,
            written: Ranges::default(),
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
        let follows = self.gathered_at + self.gathered.len() as u64 == offset;
        if !follows || self.gathered.len() + data.len() > GATHER {
            self.flush_gathered()?;
        }
        if self.gathered.is_empty() {
            self.gathered_at = offset;
        }
        if data.len() >= GATHER {
            return self
                .file
                .write_all_at(data, offset)
                .map_err(|e| write_error(&self.path, offset, e));
        }
        self.gathered.extend_from_slice(data);
        Ok(())
    }

    fn flush_gathered(&mut self) -> Result<(), AgentError> {
        if !self.gathered.is_empty() {
            self.file
                .write_all_at(&self.gathered, self.gathered_at)
                .map_err(|e| write_error(&self.path, self.gathered_at, e))?;
            self.gathered.clear();
        }
        Ok(())
    }

    /// Zero what was not written between the first MiB and `end` (the holes of a sparse image;
    /// the device may hold an older system there).
    pub fn zero_holes(&mut self, end: u64) -> Result<(), AgentError> {
        self.flush_gathered()?;
        for (start, stop) in self.written.gaps(HEAD, end) {
            erase::zero_range(&self.file, start, stop - start).map_err(|e| write_error(&self.path, start, e))?;
        }
        Ok(())
    }

    /// Forget everything written so far (the download starts again from the first byte).
    pub fn restart(&mut self) {
        self.head.iter_mut().for_each(|b| *b = 0);
        self.gathered.clear();
        self.written = Ranges::default();
    }

    /// Make the image complete: flush, write the first `min(1 MiB, image_len)` bytes, sync,
    /// drop stale buffers and re-read the partition table. Returns the first MiB.
    pub fn finish(mut self, image_len: u64) -> Result<Vec<u8>, AgentError> {
        self.flush_gathered()?;
        let head_len = image_len.min(HEAD) as usize;
        self.file
            .write_all_at(&self.head[..head_len], 0)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| write_error(&self.path, 0, e))?;
        erase::flush_buffers(&self.file);
        if let Err(e) = erase::reread_partitions(&self.file) {
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
