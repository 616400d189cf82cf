//! The block devices the agent may see and touch.
//!
//! Safety rule of the project (DESIGN.md "Safety: disks"): when a device allowlist is set
//! (`--disk-allow '/dev/loop*'`), every manager sees only the devices it matches, loop devices
//! included, and destructive work is refused on anything else. Without an allowlist, destructive
//! work runs only inside a ramdisk. Managers get devices only through [`DeviceView`].
//!
//! Disks are read from sysfs, enriched from the udev database (serial, WWN, by-path) when udevd
//! has filled it, and probed with libblkid (partition table, signatures) on demand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rivet_common::inventory::Disk;

use crate::error::{AgentError, ErrorKind};
use crate::inventory::{self, SysRoot};

/// A disk with the extra identities root-device hints match against.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockDevice {
    /// Inventory form.
    pub disk: Disk,
    /// Kernel name (`sda`, `loop3`).
    pub kname: String,
    /// Every serial variant known (sysfs, udev short and long).
    pub serials: Vec<String>,
    /// Every WWN variant known.
    pub wwns: Vec<String>,
}

/// What libblkid finds on a device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// `gpt`, `dos`.
    pub pttype: Option<String>,
    /// Partition table UUID (GPT) or disk identifier (MBR).
    pub ptuuid: Option<String>,
    /// File system or signature type (`ext4`, `linux_raid_member`, `vfat`).
    pub fstype: Option<String>,
    /// File system UUID.
    pub uuid: Option<String>,
    /// File system label.
    pub label: Option<String>,
    /// Partition type (GPT GUID or MBR code) when the device is a partition.
    pub part_type: Option<String>,
    /// The partition's own UUID (GPT) or `<disk id>-<n>` (MBR) when the device is a partition.
    pub part_uuid: Option<String>,
}

/// The devices this agent may use, and the rules for touching them.
#[derive(Debug, Clone)]
pub struct DeviceView {
    allow: Option<Arc<Vec<glob::Pattern>>>,
    is_ramdisk: bool,
    root: SysRoot,
}

/// Kernel names never listed as disks (without an allowlist naming them).
const NOT_DISKS: &[&str] = &["ram", "zram", "fd", "loop", "sr", "dm-", "nbd"];

impl DeviceView {
    /// A view over the machine's devices. `allow` are glob patterns on `/dev/...` paths.
    pub fn new(allow: Option<Vec<glob::Pattern>>, is_ramdisk: bool) -> Self {
        DeviceView {
            allow: allow.map(Arc::new),
            is_ramdisk,
            root: SysRoot::default(),
        }
    }

    /// A view over a fake sysfs tree (tests).
    pub fn with_root(mut self, root: SysRoot) -> Self {
        self.root = root;
        self
    }

    /// True when an allowlist restricts the view.
    pub fn has_allowlist(&self) -> bool {
        self.allow.is_some()
    }

    /// Whether `path` (`/dev/...`) is visible.
    pub fn is_visible(&self, path: &str) -> bool {
        match &self.allow {
            Some(patterns) => patterns.iter().any(|p| p.matches(path)),
            None => true,
        }
    }

    /// Whole disks, in kernel-name order.
    pub fn list_disks(&self) -> Vec<BlockDevice> {
        let by_path = by_path_links(&self.root);
        let mut out = Vec::new();
        let block = self.root.0.join("sys/block");
        for kname in inventory::sorted_entries(&block) {
            let path = format!("/dev/{kname}");
            let listed = match &self.allow {
                Some(_) => self.is_visible(&path),
                None => !NOT_DISKS.iter().any(|p| kname.starts_with(p)),
            };
            if !listed {
                continue;
            }
            let Some(mut disk) = inventory::disk(&self.root, &kname) else {
                continue;
            };
            let udev = udev_properties(&self.root, &kname);
            let prop = |k: &str| udev.get(k).cloned().filter(|v| !v.is_empty());
            let mut serials: Vec<String> = disk.serial.iter().cloned().collect();
            serials.extend(prop("ID_SERIAL_SHORT"));
            serials.extend(prop("ID_SERIAL"));
            serials.dedup();
            let mut wwns: Vec<String> = disk.wwn.iter().cloned().collect();
            wwns.extend(prop("ID_WWN"));
            wwns.dedup();
            disk.serial = disk
                .serial
                .or_else(|| prop("ID_SERIAL_SHORT"))
                .or_else(|| prop("ID_SERIAL"));
            disk.wwn = prop("ID_WWN").or(disk.wwn);
            disk.wwn_with_extension = prop("ID_WWN_WITH_EXTENSION");
            disk.wwn_vendor_extension = prop("ID_WWN_VENDOR_EXTENSION");
            disk.by_path = by_path
                .get(&kname)
                .cloned()
                .or_else(|| prop("ID_PATH").map(|p| format!("/dev/disk/by-path/{p}")));
            if disk.tran.is_none() {
                disk.tran = prop("ID_BUS").map(|b| if b == "ata" { "sata".to_owned() } else { b });
            }
            out.push(BlockDevice {
                disk,
                kname,
                serials,
                wwns,
            });
        }
        out
    }

    /// Refuse destructive work on `device` unless the rules allow it.
    pub fn check_destructive(&self, device: &str) -> Result<(), AgentError> {
        let resolved = std::fs::canonicalize(device)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| device.to_owned());
        match &self.allow {
            Some(_) if self.is_visible(device) || self.is_visible(&resolved) => Ok(()),
            Some(_) => Err(AgentError::new(
                ErrorKind::ProtectedDevice,
                format!("refusing to modify {device}: it is not in the device allowlist"),
            )),
            None if self.is_ramdisk => Ok(()),
            None => Err(AgentError::new(
                ErrorKind::ProtectedDevice,
                format!(
                    "refusing to modify {device}: no device allowlist is set and rivet-agent is not running in a ramdisk \
                     (use --disk-allow, or --i-am-a-ramdisk on a machine meant to be wiped)"
                ),
            )),
        }
    }

    /// Refuse whole-machine changes (NVRAM, pstore) outside a ramdisk.
    pub fn check_machine_changes(&self, what: &str) -> Result<(), AgentError> {
        if self.is_ramdisk {
            Ok(())
        } else {
            Err(AgentError::new(
                ErrorKind::ProtectedDevice,
                format!("refusing to {what}: rivet-agent is not running in a ramdisk (use --i-am-a-ramdisk to allow)"),
            ))
        }
    }
}

/// `kname -> /dev/disk/by-path/<link>` from the symlinks udev maintains.
fn by_path_links(root: &SysRoot) -> BTreeMap<String, String> {
    let dir = root.0.join("dev/disk/by-path");
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let link = entry.path();
        if let Ok(target) = std::fs::read_link(&link)
            && let Some(kname) = target.file_name().map(|n| n.to_string_lossy().into_owned())
        {
            out.entry(kname).or_insert_with(|| link.to_string_lossy().into_owned());
        }
    }
    out
}

/// Properties from the udev database (empty when udevd never ran, as in containers).
fn udev_properties(root: &SysRoot, kname: &str) -> BTreeMap<String, String> {
    if root.0 != Path::new("/") {
        return BTreeMap::new();
    }
    let syspath = PathBuf::from("/sys/class/block").join(kname);
    let Ok(device) = udev::Device::from_syspath(&syspath) else {
        return BTreeMap::new();
    };
    device
        .properties()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.value().to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Probe a device or image file with libblkid (read-only).
pub fn probe(path: &Path) -> Result<Probe, String> {
    probe_state(path).map(|(_, found)| found)
}

/// [`probe`] for a check that a device holds nothing before it is written: a result libblkid
/// cannot decide (signatures that conflict, which it reports as no value at all) is an error,
/// not an empty device.
pub fn probe_unambiguous(path: &Path) -> Result<Probe, String> {
    match probe_state(path)? {
        (blkid::prober::ProbeState::Ambivalent, _) => Err(format!(
            "{} carries signatures that conflict (blkid -p {} lists them)",
            path.display(),
            path.display()
        )),
        (_, found) => Ok(found),
    }
}

fn probe_state(path: &Path) -> Result<(blkid::prober::ProbeState, Probe), String> {
    let prober =
        blkid::prober::Prober::new_from_filename(path).map_err(|e| format!("probing {}: {e}", path.display()))?;
    prober.enable_superblocks(true).map_err(|e| e.to_string())?;
    prober.enable_partitions(true).map_err(|e| e.to_string())?;
    prober
        .set_superblocks_flags(
            blkid::SuperblocksFlags::TYPE | blkid::SuperblocksFlags::UUID | blkid::SuperblocksFlags::LABEL,
        )
        .map_err(|e| e.to_string())?;
    prober
        .set_partitions_flags(blkid::PartitionsFlags::ENTRY_DETAILS)
        .map_err(|e| e.to_string())?;
    let state = prober
        .do_safe_probe()
        .map_err(|e| format!("probing {}: {e}", path.display()))?;
    Ok((state, probe_values(&prober)))
}

/// What a finished probe found (a value the probe was not asked for is absent, so `None`).
fn probe_values(prober: &blkid::prober::Prober) -> Probe {
    let values = prober.get_values_map().unwrap_or_default();
    let get = |k: &str| values.get(k).cloned();
    Probe {
        pttype: get("PTTYPE"),
        ptuuid: get("PTUUID"),
        fstype: get("TYPE"),
        uuid: get("UUID"),
        label: get("LABEL"),
        part_type: get("PART_ENTRY_TYPE"),
        part_uuid: get("PART_ENTRY_UUID"),
    }
}

/// Probe `size` bytes at `offset` of an open device (a partition, addressed through its disk,
/// so no partition device node is needed).
pub fn probe_range(file: &std::fs::File, offset: u64, size: u64) -> Result<Probe, String> {
    use std::os::fd::AsRawFd;
    let mut prober = blkid::prober::Prober::new().map_err(|e| e.to_string())?;
    prober
        .set_device(file.as_raw_fd(), offset as i64, Some(size as i64))
        .map_err(|e| e.to_string())?;
    prober.enable_superblocks(true).map_err(|e| e.to_string())?;
    prober
        .set_superblocks_flags(
            blkid::SuperblocksFlags::TYPE | blkid::SuperblocksFlags::UUID | blkid::SuperblocksFlags::LABEL,
        )
        .map_err(|e| e.to_string())?;
    prober.do_safe_probe().map_err(|e| e.to_string())?;
    // Partition probing is off here, so the part_type stays None.
    Ok(probe_values(&prober))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_machine() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, sectors) in [
            ("sda", "209715200"),
            ("nvme0n1", "2097152"),
            ("loop0", "8388608"),
            ("loop1", "8"),
            ("ram0", "100"),
        ] {
            let d = dir.path().join("sys/block").join(name);
            std::fs::create_dir_all(d.join("queue")).expect("mkdir");
            std::fs::write(d.join("size"), sectors).expect("write");
        }
        dir
    }

    fn names(view: &DeviceView) -> Vec<String> {
        view.list_disks().into_iter().map(|d| d.disk.name).collect()
    }

    #[test]
    fn without_allowlist_only_real_disks_are_listed() {
        let dir = fake_machine();
        let view = DeviceView::new(None, false).with_root(SysRoot(dir.path().to_owned()));
        assert_eq!(names(&view), ["/dev/nvme0n1", "/dev/sda"]);
    }

    #[test]
    fn allowlist_hides_everything_else_and_admits_loops() {
        let dir = fake_machine();
        let allow = crate::config::parse_allowlist(&["/dev/loop0".into()]).expect("valid");
        let view = DeviceView::new(Some(allow), false).with_root(SysRoot(dir.path().to_owned()));
        assert_eq!(names(&view), ["/dev/loop0"]);
        assert!(view.check_destructive("/dev/loop0").is_ok());
        let err = view.check_destructive("/dev/sda").expect_err("protected");
        assert_eq!(err.kind, ErrorKind::ProtectedDevice);
        assert!(err.details.contains("allowlist"), "{err}");
    }

    #[test]
    fn destructive_work_needs_an_allowlist_or_a_ramdisk() {
        let plain = DeviceView::new(None, false);
        assert!(plain.check_destructive("/dev/sda").is_err());
        assert!(plain.check_machine_changes("delete boot entries").is_err());
        let ramdisk = DeviceView::new(None, true);
        assert!(ramdisk.check_destructive("/dev/sda").is_ok());
        assert!(
            crate::config::parse_allowlist(&["loop*".into()]).is_err(),
            "patterns name /dev paths"
        );
    }

    #[test]
    fn blkid_reads_a_file_system_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("fs.img");
        std::fs::write(&image, vec![0u8; 8 << 20]).expect("write");
        let made = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "rivet-test"])
            .arg(&image)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            panic!("mkfs.ext4 (e2fsprogs) is needed for this test");
        }
        let found = probe(&image).expect("probes");
        assert_eq!(found.fstype.as_deref(), Some("ext4"));
        assert_eq!(found.label.as_deref(), Some("rivet-test"));
        assert!(found.uuid.is_some());
    }
}
