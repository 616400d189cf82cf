//! qcow2 to raw while streaming, in bounded memory.
//!
//! A qcow2 file is a header, an L1 table pointing at L2 tables, and L2 tables pointing at data
//! clusters (plain or deflate-compressed). Upstream downloads the whole file into the ramdisk
//! and runs `qemu-img convert`; here the file is read once, front to back. Every table or
//! cluster that will be needed is remembered by its offset in the file ("needs"); when the
//! stream reaches it, a table is parsed (adding more needs) and data is written to its place on
//! the disk. Writers such as `qemu-img convert` put each table before the clusters it maps, so
//! nothing has to wait. Bytes that arrive while some table is still unread, and that no known
//! need claims, might be data of that table: they go to a [`Spool`] (memory up to a budget,
//! then a disk-backed directory) and are taken from there if a later table claims them. Once
//! every table has been read, unclaimed bytes (refcounts, snapshots) are skipped.
//!
//! Refused before anything is written: backing files and external data files (they would read
//! other files), encryption, extended L2 entries, zstd compression, images marked corrupt,
//! unknown incompatible features, and virtual sizes larger than the disk.

use std::collections::BTreeMap;

use super::disk::Disk;
use super::spool::Spool;
use crate::error::{AgentError, ErrorKind};

/// Bits 9–55 of L1 and standard L2 entries: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;
/// qemu's own limit on the L1 table.
const MAX_L1_BYTES: u64 = 32 << 20;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Entries in the L1 table.
    pub l1_size: u32,
    /// File offset of the L1 table.
    pub l1_offset: u64,
}

impl Header {
    fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(x)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Bytes of the file needed to read the header: its first cluster.
pub fn header_len(first: &[u8]) -> Option<u64> {
    (first.len() >= 24).then(|| 1u64 << be32(first, 20).clamp(9, 21))
}

/// Parse and vet the header in the image's first cluster.
pub fn parse_header(b: &[u8]) -> Result<Header, String> {
    if b.len() < 72 || &b[..4] != b"QFI\xfb" {
        return Err("not a qcow2 header".into());
    }
    let version = be32(b, 4);
    if !(2..=3).contains(&version) {
        return Err(format!("qcow2 version {version} is not supported (2 and 3 are)"));
    }
    if be64(b, 8) != 0 {
        return Err("it has a backing file, which would read another file".into());
    }
    let cluster_bits = be32(b, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(format!("cluster_bits {cluster_bits} is outside 9..=21"));
    }
    if be32(b, 32) != 0 {
        return Err("it is encrypted".into());
    }
    let header = Header {
        version,
        cluster_bits,
        size: be64(b, 24),
        l1_size: be32(b, 36),
        l1_offset: be64(b, 40),
    };
    let mut extensions = 72;
    if version == 3 {
        if b.len() < 104 {
            return Err("the version 3 header is cut short".into());
        }
        let incompatible = be64(b, 72);
        let named = [
            (1 << 1, "it is marked corrupt"),
            (1 << 2, "it has an external data file, which would read another file"),
            (
                1 << 4,
                "it uses extended L2 entries (subclusters), which this agent does not read",
            ),
        ];
        for (bit, why) in named {
            if incompatible & bit != 0 {
                return Err(why.into());
            }
        }
        if incompatible & (1 << 3) != 0 && b.get(104).copied().unwrap_or(0) != 0 {
            return Err("its clusters are zstd-compressed; this agent reads zlib compression only".into());
        }
        let unknown = incompatible & !0b1_1111;
        if unknown != 0 {
            return Err(format!("it uses unknown incompatible features {unknown:#x}"));
        }
        if incompatible & 1 != 0 {
            tracing::warn!("qcow2 image is marked dirty; its tables are read as they are");
        }
        extensions = be32(b, 100) as usize;
    }
    // Header extensions: refuse the ones that name another file or an encryption header.
    while extensions + 8 <= b.len() {
        let (kind, len) = (be32(b, extensions), be32(b, extensions + 4) as usize);
        match kind {
            0 => break,
            0x4441_5441 => return Err("it names an external data file".into()),
            0x0537_be77 => return Err("it is encrypted".into()),
            _ => {}
        }
        extensions += 8 + len.div_ceil(8) * 8;
    }
    let cluster = header.cluster();
    let l1_bytes = header.l1_size as u64 * 8;
    if l1_bytes > MAX_L1_BYTES {
        return Err(format!("its L1 table of {l1_bytes} bytes is larger than qemu allows"));
    }
    if header.l1_size > 0 && (header.l1_offset < cluster || !header.l1_offset.is_multiple_of(cluster)) {
        return Err(format!(
            "its L1 table offset {} is not a cluster past the header",
            header.l1_offset
        ));
    }
    let mapped = header.l1_size as u128 * (cluster as u128 / 8) * cluster as u128;
    if mapped < header.size as u128 {
        return Err(format!(
            "its L1 table maps {mapped} bytes, less than its size of {}",
            header.size
        ));
    }
    Ok(header)
}

/// A table or cluster that the stream has yet to reach.
#[derive(Debug)]
enum Need {
    L1 {
        len: u64,
    },
    L2 {
        index: u64,
        len: u64,
    },
    /// A run of plain data: `len` bytes for guest offset `guest`.
    Data {
        guest: u64,
        len: u64,
    },
    /// Deflate data for one cluster; `prefix` holds its first bytes when they came from the spool.
    Compressed {
        guest: u64,
        len: u64,
        prefix: Vec<u8>,
    },
}

impl Need {
    fn len(&self) -> u64 {
        match self {
            Need::L1 { len } | Need::L2 { len, .. } | Need::Data { len, .. } | Need::Compressed { len, .. } => *len,
        }
    }
}

/// A qcow2 image being converted onto a disk.
#[derive(Debug)]
pub struct Qcow2Stream {
    id: String,
    header: Option<Header>,
    /// Bytes `[start, start + buf.len())` of the file.
    buf: Vec<u8>,
    start: u64,
    needs: BTreeMap<(u64, u64), Need>,
    seq: u64,
    /// Tables known but not read yet.
    unread: usize,
    /// Ranges of `buf` already used by a need (not to be spooled).
    used: Vec<(u64, u64)>,
    spool: Spool,
}

fn invalid(id: &str, why: impl std::fmt::Display) -> AgentError {
    AgentError::new(
        ErrorKind::InvalidImage,
        format!("qcow2 image {id} cannot be written: {why}"),
    )
}

impl Qcow2Stream {
    /// A converter for image `id`.
    pub fn new(id: &str, spool: Spool) -> Self {
        Qcow2Stream {
            id: id.to_owned(),
            header: None,
            buf: Vec::new(),
            start: 0,
            needs: BTreeMap::new(),
            seq: 0,
            unread: 0,
            used: Vec::new(),
            spool,
        }
    }

    fn cluster(&self) -> u64 {
        self.header.map(|h| h.cluster()).unwrap_or(512)
    }

    /// Take the next bytes of the file.
    pub fn feed(&mut self, disk: &mut Disk, data: &[u8]) -> Result<(), AgentError> {
        self.buf.extend_from_slice(data);
        if self.header.is_none() {
            let Some(len) = header_len(&self.buf) else {
                return Ok(());
            };
            if (self.buf.len() as u64) < len {
                return Ok(());
            }
            self.start_with_header(disk, len)?;
        }
        self.pump(disk, false)
    }

    fn start_with_header(&mut self, disk: &mut Disk, len: u64) -> Result<(), AgentError> {
        let header = parse_header(&self.buf[..len as usize]).map_err(|why| invalid(&self.id, why))?;
        disk.check_fits(header.size, &format!("the virtual size of qcow2 image {}", self.id))?;
        tracing::info!(image = %self.id, version = header.version, cluster = header.cluster(),
            size = header.size, "streaming qcow2 conversion");
        self.header = Some(header);
        self.used.push((0, len));
        if header.l1_size > 0 {
            self.unread = 1;
            self.add(
                disk,
                header.l1_offset,
                Need::L1 {
                    len: header.l1_size as u64 * 8,
                },
            )?;
        }
        Ok(())
    }

    /// Remember `need` at file offset `at`, or satisfy it from the spool if the stream has
    /// already passed it.
    fn add(&mut self, disk: &mut Disk, at: u64, need: Need) -> Result<(), AgentError> {
        if at < self.start {
            return self.add_past(disk, at, need);
        }
        // Runs of clusters that follow each other in the file and on the disk become one need.
        if let Need::Data { guest, len } = need
            && let Some((&(k, _), Need::Data { guest: g, len: run })) = self.needs.range_mut(..(at, 0)).next_back()
            && k + *run == at
            && *g + *run == guest
        {
            *run += len;
            return Ok(());
        }
        self.seq += 1;
        self.needs.insert((at, self.seq), need);
        Ok(())
    }

    fn add_past(&mut self, disk: &mut Disk, at: u64, need: Need) -> Result<(), AgentError> {
        let len = need.len();
        let have = len.min(self.start - at);
        let bytes = self.spool.get(at, have)?.ok_or_else(|| {
            invalid(
                &self.id,
                format!(
                    "a table maps bytes {at}..{} of the file, which were not data",
                    at + have
                ),
            )
        })?;
        match need {
            Need::Data { guest, len } => {
                disk.write_at(guest, &bytes)?;
                if have < len {
                    self.add(
                        disk,
                        self.start,
                        Need::Data {
                            guest: guest + have,
                            len: len - have,
                        },
                    )?;
                }
                Ok(())
            }
            Need::Compressed { guest, len, .. } if have < len => self.add(
                disk,
                self.start,
                Need::Compressed {
                    guest,
                    len: len - have,
                    prefix: bytes,
                },
            ),
            need => self.handle(disk, need, &bytes),
        }
    }

    fn handle(&mut self, disk: &mut Disk, need: Need, bytes: &[u8]) -> Result<(), AgentError> {
        let header = self.header.ok_or_else(|| invalid(&self.id, "no header"))?;
        let cluster = header.cluster();
        match need {
            Need::L1 { .. } => {
                // The L1 table counts as unread until all its L2 tables are counted in.
                for (index, entry) in bytes.chunks_exact(8).enumerate() {
                    let at = be64(entry, 0) & OFFSET_MASK;
                    if at == 0 {
                        continue;
                    }
                    if !at.is_multiple_of(cluster) {
                        return Err(invalid(
                            &self.id,
                            format!("L2 table offset {at} is not cluster-aligned"),
                        ));
                    }
                    self.unread += 1;
                    self.add(
                        disk,
                        at,
                        Need::L2 {
                            index: index as u64,
                            len: cluster,
                        },
                    )?;
                }
                self.unread -= 1;
            }
            Need::L2 { index, .. } => {
                self.unread -= 1;
                let per_table = cluster / 8;
                for (j, entry) in bytes.chunks_exact(8).enumerate() {
                    let entry = be64(entry, 0);
                    let guest = (index * per_table + j as u64) * cluster;
                    if entry & !(1 << 63) == 0 || guest >= header.size {
                        continue;
                    }
                    let len = cluster.min(header.size - guest);
                    if entry & COMPRESSED != 0 {
                        let bits = 62 - (header.cluster_bits - 8);
                        let at = entry & ((1 << bits) - 1);
                        let sectors = ((entry >> bits) & ((1 << (header.cluster_bits - 8)) - 1)) + 1;
                        let stored = sectors * 512 - (at & 511);
                        self.add(
                            disk,
                            at,
                            Need::Compressed {
                                guest,
                                len: stored,
                                prefix: Vec::new(),
                            },
                        )?;
                    } else if entry & ZERO == 0 {
                        let at = entry & OFFSET_MASK;
                        if at == 0 {
                            continue;
                        }
                        if !at.is_multiple_of(cluster) {
                            return Err(invalid(
                                &self.id,
                                format!("data cluster offset {at} is not cluster-aligned"),
                            ));
                        }
                        self.add(disk, at, Need::Data { guest, len })?;
                    }
                }
            }
            Need::Data { guest, .. } => disk.write_at(guest, bytes)?,
            Need::Compressed { guest, prefix, .. } => {
                let mut input = prefix;
                input.extend_from_slice(bytes);
                let mut out = vec![0u8; cluster as usize];
                let mut inflate = flate2::Decompress::new(false);
                let _ = inflate
                    .decompress(&input, &mut out, flate2::FlushDecompress::Finish)
                    .map_err(|e| invalid(&self.id, format!("compressed cluster for byte {guest}: {e}")))?;
                let len = cluster.min(header.size - guest);
                if inflate.total_out() < len {
                    return Err(invalid(
                        &self.id,
                        format!(
                            "compressed cluster for byte {guest} inflates to {} bytes",
                            inflate.total_out()
                        ),
                    ));
                }
                disk.write_at(guest, &out[..len as usize])?;
            }
        }
        if self.unread == 0 && self.spool.usage() != (0, 0) {
            tracing::debug!(image = %self.id, "every table read: spooled bytes are no longer needed");
            self.spool.clear();
        }
        Ok(())
    }

    /// Satisfy every need the buffer now covers, then let go of bytes nothing waits for.
    fn pump(&mut self, disk: &mut Disk, at_end: bool) -> Result<(), AgentError> {
        loop {
            let end = self.start + self.buf.len() as u64;
            let Some((&key, need)) = self.needs.first_key_value() else {
                return self.release(end, at_end);
            };
            let at = key.0;
            if at >= end {
                return self.release(end, at_end);
            }
            let ready = match need {
                // Data is written as it arrives, however long the run.
                Need::Data { .. } => true,
                // A compressed cluster's stored length is rounded up and may pass the end of file.
                Need::Compressed { .. } if at_end => true,
                need => at + need.len() <= end,
            };
            if !ready {
                return self.release(at, at_end);
            }
            let Some(need) = self.needs.remove(&key) else {
                continue;
            };
            let len = need.len().min(end - at);
            let from = (at - self.start) as usize;
            self.mark_used(at, at + len);
            match need {
                Need::Data { guest, len: run } => {
                    disk.write_at(guest, &self.buf[from..from + len as usize])?;
                    if len < run {
                        self.add(
                            disk,
                            at + len,
                            Need::Data {
                                guest: guest + len,
                                len: run - len,
                            },
                        )?;
                    }
                }
                need => {
                    let bytes = self.buf[from..from + len as usize].to_vec();
                    self.handle(disk, need, &bytes)?;
                }
            }
        }
    }

    fn mark_used(&mut self, from: u64, to: u64) {
        match self.used.last_mut() {
            Some(last) if last.1 == from => last.1 = to,
            _ => self.used.push((from, to)),
        }
    }

    /// Drop the bytes before `to` (rounded down to a cluster unless at the end); while tables
    /// are unread, spool the ones no need used.
    fn release(&mut self, to: u64, at_end: bool) -> Result<(), AgentError> {
        let cluster = self.cluster();
        let to = if at_end { to } else { to / cluster * cluster };
        if to <= self.start {
            return Ok(());
        }
        if self.unread > 0 {
            self.used.sort_unstable();
            let mut at = self.start;
            let mut gaps = Vec::new();
            for &(from, until) in &self.used {
                if from >= to {
                    break;
                }
                if from > at {
                    gaps.push((at, from));
                }
                at = at.max(until);
            }
            if at < to {
                gaps.push((at, to));
            }
            for (from, until) in gaps {
                let bytes = &self.buf[(from - self.start) as usize..(until - self.start) as usize];
                let id = &self.id;
                self.spool.put(from, bytes, || {
                    format!("qcow2 image {id} has bytes at {from} before the table that maps them")
                })?;
            }
        }
        self.buf.drain(..(to - self.start) as usize);
        self.start = to;
        self.used.retain_mut(|r| {
            r.0 = r.0.max(to);
            r.1 > to
        });
        Ok(())
    }

    /// The stream ended: use what is left, check nothing is missing, zero the holes. Returns
    /// the virtual size.
    pub fn finish(mut self, disk: &mut Disk) -> Result<u64, AgentError> {
        let Some(header) = self.header else {
            return Err(invalid(&self.id, "the file ends inside its header"));
        };
        self.pump(disk, true)?;
        if let Some((&(at, _), need)) = self.needs.first_key_value() {
            return Err(invalid(
                &self.id,
                format!(
                    "the file ends at byte {} but its tables map {need:?} at byte {at} (truncated image?)",
                    self.start
                ),
            ));
        }
        let (ram, spooled) = self.spool.usage();
        tracing::info!(image = %self.id, spool_ram = ram, spool_disk = spooled, "qcow2 stream converted");
        disk.zero_holes(header.size)?;
        Ok(header.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 3 header for a 1 MiB image with 64 KiB clusters and its L1 table at 192 KiB.
    fn header() -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        h[36..40].copy_from_slice(&1u32.to_be_bytes());
        h[40..48].copy_from_slice(&(3u64 << 16).to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        h
    }

    #[test]
    fn a_plain_header_is_read() {
        assert_eq!(
            parse_header(&header()),
            Ok(Header {
                version: 3,
                cluster_bits: 16,
                size: 1 << 20,
                l1_size: 1,
                l1_offset: 3 << 16,
            })
        );
        assert_eq!(header_len(&header()), Some(1 << 16));
    }

    #[test]
    fn unsafe_or_unreadable_headers_are_refused_with_the_reason() {
        type Edit = fn(&mut Vec<u8>);
        let cases: [(Edit, &str); 10] = [
            (|h| h[8..16].copy_from_slice(&512u64.to_be_bytes()), "backing file"),
            (|h| h[32..36].copy_from_slice(&1u32.to_be_bytes()), "encrypted"),
            (|h| h[79] = 1 << 1, "marked corrupt"),
            (|h| h[79] = 1 << 2, "external data file"),
            (|h| h[79] = 1 << 4, "extended L2"),
            (
                |h| {
                    h[79] = 1 << 3;
                    h[104] = 1;
                },
                "zstd",
            ),
            (|h| h[78] = 1, "unknown incompatible features"),
            (
                |h| {
                    h[112..116].copy_from_slice(&0x4441_5441u32.to_be_bytes());
                    h[116..120].copy_from_slice(&8u32.to_be_bytes());
                },
                "names an external data file",
            ),
            (|h| h[40..48].copy_from_slice(&100u64.to_be_bytes()), "L1 table offset"),
            (
                |h| h[24..32].copy_from_slice(&(1u64 << 40).to_be_bytes()),
                "less than its size",
            ),
        ];
        for (edit, why) in cases {
            let mut h = header();
            edit(&mut h);
            let e = parse_header(&h).expect_err(why);
            assert!(e.contains(why), "{why}: {e}");
        }
        let mut dirty = header();
        dirty[79] = 1;
        assert!(
            parse_header(&dirty).is_ok(),
            "a dirty image's tables are still readable"
        );
    }
}
