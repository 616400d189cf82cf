//! The block-device layer at the bottom of the agent: what the kernel says about a disk (size,
//! sector sizes, read-only flag, partitions in sysfs) and the few things the agent asks of it
//! (re-read or edit the partition table with BLKRRPART/BLKPG, zero a range with BLKZEROOUT,
//! drop cached pages). `image/` and `hardware/` both stand on it; it uses neither. Every ioctl
//! is in the private `ioctl` module behind a safe function that checks for a block device first
//! (coreos-installer's `blockdev.rs` is the model). Geometry rules (sector sizes, alignment, GPT
//! and MBR positions) are in [`geometry`].

pub mod geometry;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Write size of zero fills that the device cannot do itself.
const CHUNK: usize = 4 << 20;

mod ioctl {
    // linux/fs.h: BLKRRPART = _IO(0x12, 95), BLKFLSBUF = _IO(0x12, 97), BLKGETSIZE64 = _IOR(0x12, 114, size_t).
    nix::ioctl_none!(blkrrpart, 0x12, 95);
    nix::ioctl_none!(blkflsbuf, 0x12, 97);
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    // BLKROGET = _IO(0x12, 94), BLKSSZGET = _IO(0x12, 104) and BLKPBSZGET = _IO(0x12, 123) write an
    // int (unsigned for BLKPBSZGET) through a pointer: "bad" ioctls in nix's terms.
    nix::ioctl_read_bad!(blkroget, nix::request_code_none!(0x12, 94), i32);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), i32);
    nix::ioctl_read_bad!(blkpbszget, nix::request_code_none!(0x12, 123), u32);
    // BLKZEROOUT = _IO(0x12, 127) with a pointer to `uint64_t range[2]` (start, length).
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

    /// `struct blkpg_partition` (linux/blkpg.h).
    #[repr(C)]
    pub struct BlkpgPartition {
        pub start: i64,
        pub length: i64,
        pub pno: i32,
        pub devname: [u8; 64],
        pub volname: [u8; 64],
    }

    /// `struct blkpg_ioctl_arg` (linux/blkpg.h).
    #[repr(C)]
    pub struct BlkpgIoctlArg {
        pub op: i32,
        pub flags: i32,
        pub datalen: i32,
        pub data: *mut BlkpgPartition,
    }

    /// `BLKPG_ADD_PARTITION`.
    pub const BLKPG_ADD_PARTITION: i32 = 1;
    /// `BLKPG_DEL_PARTITION`.
    pub const BLKPG_DEL_PARTITION: i32 = 2;

    // BLKPG = _IO(0x12, 105), but it passes a pointer: a "bad" ioctl in nix's terms.
    nix::ioctl_write_ptr_bad!(blkpg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);
}

/// True when `file` is a block device (not a regular file standing in for one in tests).
pub fn is_block_device(file: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    file.metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// Size in bytes of an open block device.
pub fn device_size(file: &File) -> std::io::Result<u64> {
    if !is_block_device(file) {
        return file.metadata().map(|m| m.len());
    }
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`, which lives across the call; the fd is an
    // open block device (checked above).
    unsafe { ioctl::blkgetsize64(file.as_raw_fd(), &mut size) }.map_err(std::io::Error::from)?;
    Ok(size)
}

/// Ask the kernel to re-read the partition table; EBUSY means a partition is in use.
pub fn reread_partitions(file: &File) -> Result<(), String> {
    if !is_block_device(file) {
        return Ok(());
    }
    // SAFETY: BLKRRPART takes no argument; the fd is an open block device.
    match unsafe { ioctl::blkrrpart(file.as_raw_fd()) } {
        Ok(_) => Ok(()),
        // Devices without partition support (some loop setups) answer EINVAL: nothing to re-read.
        Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => Err("a partition of the device is in use (mounted or held)".into()),
        Err(e) => Err(e.desc().to_owned()),
    }
}

/// Tell the kernel about a partition change with BLKPG (what `partx` does): needed where the
/// kernel does not rescan partition tables itself (some containers), harmless where it did.
fn blkpg(file: &File, op: i32, number: i32, start: u64, length: u64) -> nix::Result<()> {
    let mut part = ioctl::BlkpgPartition {
        start: i64::try_from(start).map_err(|_| nix::errno::Errno::EOVERFLOW)?,
        length: i64::try_from(length).map_err(|_| nix::errno::Errno::EOVERFLOW)?,
        pno: number,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = ioctl::BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: size_of::<ioctl::BlkpgPartition>() as i32,
        data: &mut part,
    };
    // SAFETY: `arg` points at `part`, both live across the call and laid out as the kernel's
    // blkpg structures; callers pass an open block device.
    unsafe { ioctl::blkpg(file.as_raw_fd(), &arg) }.map(|_| ())
}

/// Make the kernel forget partition `number` of an open disk (`partx -d`).
pub fn forget_partition(file: &File, number: i32) -> Result<(), String> {
    if !is_block_device(file) {
        return Ok(());
    }
    match blkpg(file, ioctl::BLKPG_DEL_PARTITION, number, 0, 0) {
        Ok(_) | Err(nix::errno::Errno::ENXIO) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => Err(format!("partition {number} is in use (mounted or held)")),
        Err(e) => Err(e.desc().to_owned()),
    }
}

/// Make the kernel know partition `number` at `[start, start + length)` bytes (`partx -a`);
/// one it already knows is left as it is.
pub fn add_partition(file: &File, number: i32, start: u64, length: u64) -> Result<(), String> {
    if !is_block_device(file) {
        return Ok(());
    }
    match blkpg(file, ioctl::BLKPG_ADD_PARTITION, number, start, length) {
        Ok(_) | Err(nix::errno::Errno::EBUSY) => Ok(()),
        Err(e) => Err(e.desc().to_owned()),
    }
}

/// Zero `len` bytes at `offset`: BLKZEROOUT on block devices (the device or the loop driver does
/// it without data crossing the bus), plain zero writes on files and where the ioctl is refused.
pub fn zero_range(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if len == 0 {
        return Ok(());
    }
    if is_block_device(file) && offset.is_multiple_of(512) && len.is_multiple_of(512) {
        let range = [offset, len];
        // SAFETY: BLKZEROOUT reads two u64s from `range`, which lives across the call; the fd is
        // an open block device.
        if unsafe { ioctl::blkzeroout(file.as_raw_fd(), &range) }.is_ok() {
            return Ok(());
        }
    }
    let zeros = vec![0u8; usize::try_from(len).map_or(CHUNK, |l| l.min(CHUNK))];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Flush the device's buffer cache so later reads see the device, not stale pages.
pub fn flush_buffers(file: &File) {
    if is_block_device(file) {
        // SAFETY: BLKFLSBUF takes no argument; the fd is an open block device.
        let _ = unsafe { ioctl::blkflsbuf(file.as_raw_fd()) };
    }
}

/// A partition as the kernel sees it: name and byte range on its disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Kernel name (`sda1`, `loop0p1`).
    pub name: String,
    /// Partition number.
    pub number: i32,
    /// Byte offset on the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Partitions of a disk from sysfs. They are addressed through the disk at these offsets, so
/// erasure works whether or not udev created partition device nodes.
pub fn partitions(kname: &str) -> Vec<Partition> {
    let dir = Path::new("/sys/block").join(kname);
    let sectors = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s * 512)
    };
    let mut out: Vec<Partition> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("partition").exists())
                .filter_map(|e| {
                    Some(Partition {
                        name: e.file_name().to_string_lossy().into_owned(),
                        number: std::fs::read_to_string(e.path().join("partition"))
                            .ok()?
                            .trim()
                            .parse()
                            .ok()?,
                        start: sectors(&e.path().join("start"))?,
                        size: sectors(&e.path().join("size"))?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|p| p.start);
    out
}

/// The logical sector size of an open block device in bytes (BLKSSZGET): the unit of LBAs in
/// its partition table. 512 for regular files (the images tests stand in with).
pub fn logical_sector_size(file: &File) -> std::io::Result<u32> {
    if !is_block_device(file) {
        return Ok(512);
    }
    let mut size: i32 = 0;
    // SAFETY: BLKSSZGET writes one int into `size`, which lives across the call; the fd is an
    // open block device (checked above).
    unsafe { ioctl::blksszget(file.as_raw_fd(), &mut size) }.map_err(std::io::Error::from)?;
    u32::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two() && *s >= 512)
        .ok_or_else(|| std::io::Error::other(format!("the kernel reports a logical sector size of {size}")))
}

/// Whether the kernel marks an open block device read-only (BLKROGET: `losetup -r`, write-
/// protected media, BMC virtual media). Regular files: false.
pub fn is_read_only(file: &File) -> std::io::Result<bool> {
    if !is_block_device(file) {
        return Ok(false);
    }
    let mut ro: i32 = 0;
    // SAFETY: BLKROGET writes one int into `ro`, which lives across the call; the fd is an open
    // block device (checked above).
    unsafe { ioctl::blkroget(file.as_raw_fd(), &mut ro) }.map_err(std::io::Error::from)?;
    Ok(ro != 0)
}

/// Whether the device at `path` is read-only, opened for reading only (a read-only device
/// refuses to open for writing).
pub fn path_is_read_only(path: &Path) -> std::io::Result<bool> {
    is_read_only(&File::open(path)?)
}
