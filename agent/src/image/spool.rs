//! Bytes of a streamed image that cannot be placed yet (a qcow2 cluster seen before the table
//! that maps it). A little is kept in memory; beyond that it goes to a file in a disk-backed
//! spool directory, never to the ramdisk's RAM. Without such a directory the write stops with an
//! error that says how to allow it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{AgentError, ErrorKind};

/// Bytes kept in memory before the spool directory is needed.
pub const RAM_BUDGET: u64 = 8 << 20;

/// Where spooled bytes live.
#[derive(Debug)]
enum Place {
    Ram(Vec<u8>),
    File { at: u64, len: u64 },
}

impl Place {
    fn len(&self) -> u64 {
        match self {
            Place::Ram(v) => v.len() as u64,
            Place::File { len, .. } => *len,
        }
    }
}

/// Spooled ranges of the image, keyed by their offset in the image.
#[derive(Debug)]
pub struct Spool {
    dir: Option<PathBuf>,
    file: Option<(File, u64)>,
    ranges: BTreeMap<u64, Place>,
    ram: u64,
    why: String,
}

fn spool_error(e: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::ImageWrite, format!("image spool: {e}"))
}

/// Refuse directories in RAM: spooling there is what streaming exists to avoid.
fn check_disk_backed(dir: &Path) -> Result<(), AgentError> {
    use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
    // linux/magic.h; nix names tmpfs but not ramfs.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let fs = statfs(dir).map_err(|e| spool_error(format!("{}: {e}", dir.display())))?;
    if fs.filesystem_type() == TMPFS_MAGIC || fs.filesystem_type() == RAMFS_MAGIC {
        return Err(spool_error(format!(
            "{} is in RAM (tmpfs/ramfs); image_spool_dir must be on a disk",
            dir.display()
        )));
    }
    Ok(())
}

impl Spool {
    /// A spool that may use `dir` once its memory budget is spent.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Spool {
            dir,
            file: None,
            ranges: BTreeMap::new(),
            ram: 0,
            why: String::new(),
        }
    }

    /// Keep `data`, which starts at `offset` in the image; `why` is logged when the spool first
    /// has to reach for its directory.
    pub fn put(&mut self, offset: u64, data: &[u8], why: impl FnOnce() -> String) -> Result<(), AgentError> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as u64;
        if self.ram + len <= RAM_BUDGET {
            self.ram += len;
            self.ranges.insert(offset, Place::Ram(data.to_vec()));
            return Ok(());
        }
        if self.file.is_none() {
            self.why = why();
            let Some(dir) = &self.dir else {
                return Err(spool_error(format!(
                    "{}; more than {} MiB must wait and no disk spool directory is configured \
                     (set image_spool_dir, ipa-image-spool-dir on the kernel command line)",
                    self.why,
                    RAM_BUDGET >> 20
                )));
            };
            check_disk_backed(dir)?;
            let path = dir.join(format!("rivet-image-spool-{}", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| spool_error(format!("{}: {e}", path.display())))?;
            // Unlinked at once: the space returns to the filesystem whatever happens to us.
            let _ = std::fs::remove_file(&path);
            tracing::warn!(dir = %dir.display(), reason = %self.why, "spooling part of the image to disk");
            self.file = Some((file, 0));
        }
        let Some((file, end)) = &mut self.file else {
            return Err(spool_error("no spool file"));
        };
        file.write_all_at(data, *end).map_err(spool_error)?;
        self.ranges.insert(offset, Place::File { at: *end, len });
        *end += len;
        Ok(())
    }

    /// The bytes `[offset, offset + len)`, if all of them were spooled.
    pub fn get(&self, offset: u64, len: u64) -> Result<Option<Vec<u8>>, AgentError> {
        let end = offset + len;
        let mut out = vec![0u8; len as usize];
        let mut covered = 0u64;
        let first = self
            .ranges
            .range(..=offset)
            .next_back()
            .map(|(&k, _)| k)
            .unwrap_or(offset);
        for (&start, place) in self.ranges.range(first..end) {
            let stop = start + place.len();
            let (from, to) = (start.max(offset), stop.min(end));
            if from >= to {
                continue;
            }
            let dst = &mut out[(from - offset) as usize..(to - offset) as usize];
            match place {
                Place::Ram(v) => dst.copy_from_slice(&v[(from - start) as usize..(to - start) as usize]),
                Place::File { at, .. } => {
                    let Some((file, _)) = &self.file else {
                        return Err(spool_error("spool file missing"));
                    };
                    file.read_exact_at(dst, at + (from - start)).map_err(spool_error)?;
                }
            }
            covered += to - from;
        }
        Ok((covered == len).then_some(out))
    }

    /// Nothing spooled can be needed any more.
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.ram = 0;
        self.file = None;
    }

    /// Bytes spooled so far to memory and to disk.
    pub fn usage(&self) -> (u64, u64) {
        (self.ram, self.file.as_ref().map(|(_, end)| *end).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_ranges_are_reassembled_from_memory_and_disk() {
        let dir = std::env::temp_dir();
        let mut spool = Spool::new(Some(dir.clone()));
        let big = vec![7u8; RAM_BUDGET as usize];
        spool.put(0, &big, String::new).expect("ram");
        let disk_backed = check_disk_backed(&dir).is_ok();
        let tail = spool.put(RAM_BUDGET, &[1, 2, 3], || "test".into());
        if !disk_backed {
            assert!(tail.is_err(), "a tmpfs spool directory is refused");
            return;
        }
        tail.expect("disk");
        assert_eq!(spool.usage(), (RAM_BUDGET, 3));
        let got = spool.get(RAM_BUDGET - 2, 5).expect("read").expect("covered");
        assert_eq!(got, vec![7, 7, 1, 2, 3]);
        assert_eq!(
            spool.get(RAM_BUDGET + 2, 2).expect("read"),
            None,
            "a gap is not invented"
        );
    }

    #[test]
    fn without_a_directory_the_error_says_what_to_set() {
        let mut spool = Spool::new(None);
        spool.put(0, &vec![0u8; RAM_BUDGET as usize], String::new).expect("ram");
        let e = spool.put(RAM_BUDGET, &[1], || "cluster at 9 precedes its table".into());
        let text = e.expect_err("no directory").details;
        assert!(
            text.contains("cluster at 9 precedes its table") && text.contains("image_spool_dir"),
            "{text}"
        );
    }
}
