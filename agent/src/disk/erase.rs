//! Disk erasure for cleaning (reference §6.5): metadata erasure, full overwrite, and the
//! express variant. Every device passes [`DeviceView::check_destructive`] first.
//!
//! Metadata erasure zeroes the first and last MiB of every partition and of the disk: that
//! covers partition tables (MBR, primary and backup GPT), file-system superblocks (ext*, XFS,
//! btrfs, vfat), swap and LVM labels, and software-RAID superblocks (md 0.90/1.0 at the end,
//! 1.1/1.2 at the start), then makes the kernel forget the old partitions. A full erase
//! overwrites the whole disk (random passes, then zeros), reporting progress.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::RngCore;

use super::devices::{BlockDevice, DeviceView};
use crate::blockdev::{
    Partition, device_size, flush_buffers, forget_partition, partitions, reread_partitions, zero_range,
};
use crate::error::{AgentError, ErrorKind};
use crate::progress::{Measure, Progress, Unit};

/// Bytes zeroed at each end of a device by metadata erasure.
const EDGE: u64 = 1 << 20;
/// Write size of overwrite passes; large writes keep throughput near the device's.
const CHUNK: usize = 4 << 20;

fn failed(device: &str, what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::BlockDeviceErase, format!("{what} {device}: {e}"))
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Zero the first and last MiB of the byte range `[start, start + size)` of an open disk.
fn zero_edges(file: &mut File, name: &str, start: u64, size: u64) -> Result<(), AgentError> {
    let edge = EDGE.min(size);
    zero_range(file, start, edge).map_err(|e| failed(name, "zeroing the start of", e))?;
    zero_range(file, start + size - edge, edge).map_err(|e| failed(name, "zeroing the end of", e))?;
    Ok(())
}

/// Devices on which another system keeps shared data: never wiped (upstream's guard).
const PROTECTED_PARTITION_TYPES: &[(&str, &str)] = &[
    ("37affc90-ef7d-4e96-91c3-2d7ae055b174", "IBM GPFS"),
    ("aa31e02a-400f-11db-9590-000c2911d1b8", "VMware VMFS"),
    ("0xfb", "VMware VMFS"),
];

fn guard(path: &Path) -> Result<(), AgentError> {
    let Ok(found) = super::devices::probe(path) else {
        return Ok(());
    };
    guard_probe(path, &found)
}

fn guard_probe(path: &Path, found: &super::devices::Probe) -> Result<(), AgentError> {
    if found.fstype.as_deref() == Some("gfs2") {
        return Err(AgentError::new(
            ErrorKind::ProtectedDevice,
            format!(
                "{} holds a GFS2 shared file system; refusing to erase it",
                path.display()
            ),
        ));
    }
    if let Some(kind) = found.part_type.as_deref().map(str::to_ascii_lowercase)
        && let Some((_, name)) = PROTECTED_PARTITION_TYPES.iter().find(|(t, _)| *t == kind)
    {
        return Err(AgentError::new(
            ErrorKind::ProtectedDevice,
            format!("{} is a {name} partition; refusing to erase it", path.display()),
        ));
    }
    Ok(())
}

/// True when the device is a member of a software RAID (left for RAID cleaning).
fn is_raid_member(path: &Path) -> bool {
    super::devices::probe(path).ok().and_then(|p| p.fstype).as_deref() == Some("linux_raid_member")
}

/// Erase the metadata of a disk and its partitions.
pub fn erase_metadata(disk: &BlockDevice, devices: &DeviceView) -> Result<(), AgentError> {
    let name = disk.disk.name.clone();
    let path = PathBuf::from(&name);
    devices.check_destructive(&name)?;
    guard(&path)?;
    if is_raid_member(&path) {
        tracing::warn!(device = %name, "software RAID member: left for RAID cleaning");
        return Ok(());
    }
    let mut file = open_rw(&path).map_err(|e| failed(&name, "opening", e))?;
    let size = device_size(&file).map_err(|e| failed(&name, "reading the size of", e))?;
    // A partition the kernel remembers beyond the device's end is stale (a loop device reused
    // at a smaller size): nothing to zero there, and it is forgotten below with the rest.
    let (parts, stale): (Vec<Partition>, Vec<Partition>) = partitions(&disk.kname)
        .into_iter()
        .partition(|p| p.start + p.size <= size);
    for part in &stale {
        tracing::warn!(partition = %part.name, "partition lies beyond the end of the disk: forgotten, not zeroed");
    }
    for part in &parts {
        if let Ok(found) = super::devices::probe_range(&file, part.start, part.size) {
            guard_probe(Path::new(&format!("/dev/{}", part.name)), &found)?;
        }
    }
    // Partitions before their disk, as upstream, so nothing points into wiped space.
    for part in parts.iter().rev() {
        zero_edges(&mut file, &format!("/dev/{}", part.name), part.start, part.size)?;
    }
    zero_edges(&mut file, &name, 0, size)?;
    file.sync_all().map_err(|e| failed(&name, "flushing", e))?;
    flush_buffers(&file);
    reread_partitions(&file).map_err(|e| {
        AgentError::new(
            ErrorKind::BlockDeviceErase,
            format!("re-reading the partition table of {name}: {e}"),
        )
    })?;
    for part in partitions(&disk.kname) {
        forget_partition(&file, part.number).map_err(|e| {
            AgentError::new(
                ErrorKind::BlockDeviceErase,
                format!("removing partition {} of {name}: {e}", part.name),
            )
        })?;
    }
    tracing::info!(device = %name, partitions = parts.len(), "metadata erased");
    Ok(())
}

/// `erase_devices` for one disk: the device's own secure erase when it offers one (and the
/// node allows it), else overwriting. A failed firmware erase stops here unless
/// `continue_if_failed` (upstream's `agent_continue_if_secure_erase_failed`).
pub fn erase_device(
    disk: &BlockDevice,
    devices: &DeviceView,
    overwrite_passes: (u32, bool),
    policy: super::secure_erase::Policy,
    continue_if_failed: bool,
    progress: &Progress,
) -> Result<(), AgentError> {
    use super::secure_erase::Outcome;
    let name = disk.disk.name.clone();
    devices.check_destructive(&name)?;
    guard(Path::new(&name))?;
    progress.report(format!("erasing {name}: trying the device's own secure erase"));
    match super::secure_erase::erase(&name, policy) {
        Ok(Outcome::Erased(method)) => {
            tracing::info!(device = %name, method, "erased by the device's firmware");
            progress.report(format!("erased {name}: {method}"));
            return Ok(());
        }
        Ok(Outcome::Unavailable(why)) => {
            tracing::info!(device = %name, reason = %why, "no firmware erase; overwriting")
        }
        Err(e) if continue_if_failed => {
            tracing::warn!(device = %name, error = %e, "firmware erase failed; overwriting instead, as configured");
        }
        Err(e) => return Err(e),
    }
    let (passes, zeroize) = overwrite_passes;
    overwrite(disk, devices, passes, zeroize, progress)
}

/// Overwrite a whole disk: `passes` random passes, then zeros when `zeroize`.
pub fn overwrite(
    disk: &BlockDevice,
    devices: &DeviceView,
    passes: u32,
    zeroize: bool,
    progress: &Progress,
) -> Result<(), AgentError> {
    devices.check_destructive(&disk.disk.name)?;
    guard(Path::new(&disk.disk.name))?;
    let name = disk.disk.name.clone();
    let mut file = open_rw(Path::new(&name)).map_err(|e| failed(&name, "opening", e))?;
    let size = device_size(&file).map_err(|e| failed(&name, "reading the size of", e))?;
    let total_passes = passes + u32::from(zeroize);
    let mut buffer = vec![0u8; CHUNK];
    let mut rng = rand::rng();
    for pass in 0..total_passes {
        let random = pass < passes;
        file.seek(SeekFrom::Start(0)).map_err(|e| failed(&name, "seeking", e))?;
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut written = 0u64;
        if !random {
            buffer.fill(0);
        }
        while written < size {
            let n = (size - written).min(CHUNK as u64) as usize;
            if random {
                rng.fill_bytes(&mut buffer[..n]);
            }
            file.write_all(&buffer[..n]).map_err(|e| failed(&name, "writing", e))?;
            written += n as u64;
            crate::metrics::metrics().erased(n as u64, written, size);
            if last_report.elapsed().as_secs() >= 2 || written == size {
                last_report = Instant::now();
                let bytes_per_second = written as f64 / started.elapsed().as_secs_f64().max(1e-3);
                // The measure spans every pass: one bar from 0 to 100% for the whole erasure.
                let before = size * u64::from(pass);
                progress.measured(
                    format!(
                        "erasing {name}: pass {}/{total_passes} ({}), {} of {} MiB ({:.0}%), {:.0} MiB/s",
                        pass + 1,
                        if random { "random" } else { "zeros" },
                        written >> 20,
                        size >> 20,
                        written as f64 * 100.0 / size.max(1) as f64,
                        bytes_per_second / (1 << 20) as f64
                    ),
                    Measure {
                        done: before + written,
                        total: Some(size * u64::from(total_passes)),
                        unit: Unit::Bytes,
                        rate: Some(bytes_per_second),
                    },
                );
            }
        }
        file.sync_all().map_err(|e| failed(&name, "flushing", e))?;
    }
    flush_buffers(&file);
    let _ = reread_partitions(&file);
    Ok(())
}
