//! Partition images and config drives (reference §7.6, §7.7).
//!
//! A partition image gets a fresh table with, in upstream's order: an EFI system partition
//! (UEFI) or a BIOS boot partition (BIOS on GPT), ephemeral, swap, config drive, and the root
//! partition last, which receives the image. Whole-disk images get their config drive in a
//! partition at the end of the disk (or in an existing `config-2` partition). Tables are written
//! with `sfdisk`, file systems with `mkfs.vfat`, `mkswap` and `mkfs.<format>`; each missing tool
//! is named in the error. The kernel is told about new partitions with BLKRRPART and, where it
//! does not rescan (some containers), BLKPG, and the partition device nodes are awaited.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use base64::Engine;
use rivet_common::image::ImageInfo;
use rivet_common::node::Node;
use serde::Deserialize;
use serde_json::Value;

use crate::blockdev;
use crate::error::{AgentError, ErrorKind};

use blockdev::geometry::MIB;
/// Largest config drive accepted (upstream's limit for whole-disk images).
pub const MAX_CONFIG_DRIVE: u64 = 64 * MIB;
/// Upstream's size for the EFI system partition.
const ESP_MIB: u64 = 550;
/// Size of a whole-disk image's new config drive partition.
const CONFIG_DRIVE_PART: u64 = 64 * MIB;
/// File system label that marks a config drive.
pub const CONFIG_DRIVE_LABEL: &str = "config-2";

fn failed(what: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::ImageWrite, what.to_string())
}

/// Partition table type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// GUID partition table.
    Gpt,
    /// DOS/MBR.
    Msdos,
}

/// Firmware the deployed system boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// UEFI: an EFI system partition.
    Uefi,
    /// Legacy BIOS.
    Bios,
}

/// What a partition is for; the names are the keys of `standby.get_partition_uuids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// EFI system partition.
    Esp,
    /// GRUB's BIOS boot partition on GPT.
    BiosBoot,
    /// Ephemeral data.
    Ephemeral,
    /// Swap.
    Swap,
    /// Config drive.
    ConfigDrive,
    /// Root file system: the image.
    Root,
}

impl Role {
    /// Upstream's name in `partitions`.
    pub fn key(self) -> &'static str {
        match self {
            Role::Esp => "efi system partition",
            Role::BiosBoot => "BIOS Boot partition",
            Role::Ephemeral => "ephemeral",
            Role::Swap => "swap",
            Role::ConfigDrive => "configdrive",
            Role::Root => "root",
        }
    }

    fn sfdisk_type(self, label: Label) -> &'static str {
        match (self, label) {
            (Role::Esp, _) => "U",
            (Role::BiosBoot, _) => "21686148-6449-6E6F-744E-656564454649",
            (Role::Swap, _) => "S",
            _ => "L",
        }
    }
}

/// A planned partition: its role and size (`None`: the rest of the disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Purpose.
    pub role: Role,
    /// Size in MiB.
    pub mib: Option<u64>,
}

/// The partitions of a partition-image deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Table type.
    pub label: Label,
    /// Boot firmware.
    pub boot_mode: BootMode,
    /// In table order.
    pub parts: Vec<Planned>,
}

/// A capability from `capabilities`, which Ironic keeps as `"k:v,k2:v2"` or as an object.
fn capability(caps: Option<&Value>, key: &str) -> Option<String> {
    match caps? {
        Value::Object(map) => map.get(key).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }),
        Value::String(s) => {
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(s) {
                return capability(Some(&Value::Object(map)), key);
            }
            s.split(',')
                .filter_map(|kv| kv.split_once(':'))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
        }
        _ => None,
    }
}

/// Boot mode and table type from the cached node, in upstream's order of precedence: secure
/// boot means UEFI; then `instance_info.deploy_boot_mode`, the `boot_mode` capability,
/// `driver_internal_info.deploy_boot_mode`, and the mode the ramdisk runs in. UEFI means GPT;
/// otherwise the `disk_label` capability (instance first), else msdos.
pub fn boot_settings(node: Option<&Node>, running: &str) -> (BootMode, Label) {
    let instance_caps = node.and_then(|n| n.instance_info_value("capabilities"));
    let node_caps = node.and_then(|n| n.property("capabilities"));
    let secure = [instance_caps, node_caps]
        .iter()
        .any(|c| capability(*c, "secure_boot").is_some_and(|v| v.eq_ignore_ascii_case("true")));
    let mode = if secure {
        "uefi".to_owned()
    } else {
        node.and_then(|n| n.instance_info_value("deploy_boot_mode"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| capability(node_caps, "boot_mode"))
            .or_else(|| {
                node.and_then(|n| n.internal_info_value("deploy_boot_mode"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| running.to_owned())
    };
    if mode.eq_ignore_ascii_case("uefi") {
        return (BootMode::Uefi, Label::Gpt);
    }
    let label = capability(instance_caps, "disk_label")
        .or_else(|| capability(node_caps, "disk_label"))
        .filter(|l| l == "gpt")
        .map_or(Label::Msdos, |_| Label::Gpt);
    (BootMode::Bios, label)
}

/// The partitions for a partition image.
pub fn plan(info: &ImageInfo, boot: (BootMode, Label), config_drive: Option<u64>) -> Result<Layout, AgentError> {
    let (boot_mode, label) = boot;
    let mut parts = Vec::new();
    match (boot_mode, label) {
        (BootMode::Uefi, _) => parts.push(Planned {
            role: Role::Esp,
            mib: Some(ESP_MIB),
        }),
        (BootMode::Bios, Label::Gpt) => parts.push(Planned {
            role: Role::BiosBoot,
            mib: Some(1),
        }),
        (BootMode::Bios, Label::Msdos) => {}
    }
    let sized = |mib: Option<u64>, role| mib.filter(|m| *m > 0).map(|m| Planned { role, mib: Some(m) });
    parts.extend(sized(info.ephemeral_mb.as_option().copied(), Role::Ephemeral));
    parts.extend(sized(info.swap_mb.as_option().copied(), Role::Swap));
    parts.extend(sized(config_drive.map(|b| b.div_ceil(MIB)), Role::ConfigDrive));
    parts.push(Planned {
        role: Role::Root,
        mib: info.root_mb.as_option().copied().filter(|m| *m > 0),
    });
    if label == Label::Msdos && parts.len() > 4 {
        return Err(AgentError::new(
            ErrorKind::InvalidCommandParams,
            "an msdos table holds four primary partitions; use disk_label gpt for this layout",
        ));
    }
    Ok(Layout {
        label,
        boot_mode,
        parts,
    })
}

/// `sfdisk` input for a layout.
pub fn sfdisk_script(layout: &Layout) -> String {
    let mut script = match layout.label {
        Label::Gpt => "label: gpt\n".to_owned(),
        Label::Msdos => "label: dos\n".to_owned(),
    };
    for p in &layout.parts {
        let mut line = String::new();
        if let Some(mib) = p.mib {
            line.push_str(&format!("size={mib}MiB, "));
        }
        line.push_str(&format!("type={}", p.role.sfdisk_type(layout.label)));
        if layout.label == Label::Msdos && layout.boot_mode == BootMode::Bios && p.role == Role::Root {
            line.push_str(", bootable");
        }
        script.push_str(&line);
        script.push('\n');
    }
    script
}

/// A partition on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Purpose (`None` for partitions found rather than made).
    pub role: Option<Role>,
    /// Device node, `/dev/sda3`, `/dev/loop0p3`.
    pub path: String,
    /// Partition number.
    pub number: i32,
    /// Byte offset on the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

#[derive(Debug, Deserialize)]
struct SfdiskJson {
    partitiontable: SfdiskTable,
}

#[derive(Debug, Deserialize)]
struct SfdiskTable {
    label: String,
    #[serde(default)]
    lastlba: Option<u64>,
    #[serde(default = "default_sector")]
    sectorsize: u64,
    #[serde(default)]
    partitions: Vec<SfdiskPartition>,
}

fn default_sector() -> u64 {
    512
}

#[derive(Debug, Deserialize)]
struct SfdiskPartition {
    node: String,
    start: u64,
    size: u64,
}

fn run(tool: &str, args: &[&str], input: Option<&str>) -> Result<String, AgentError> {
    crate::tools::run(ErrorKind::ImageWrite, tool, args, input)
}

fn read_table(disk: &str) -> Result<SfdiskTable, AgentError> {
    let json = run("sfdisk", &["--json", disk], None)?;
    serde_json::from_str::<SfdiskJson>(&json)
        .map(|j| j.partitiontable)
        .map_err(|e| failed(format!("reading the partition table of {disk}: {e}")))
}

/// Make the kernel see the table on `disk` and wait for the partitions' device nodes.
pub fn expose(disk: &str) -> Result<Vec<Created>, AgentError> {
    let table = read_table(disk)?;
    let file = super::disk::open(disk)?;
    if let Err(e) = blockdev::reread_partitions(&file) {
        tracing::warn!(device = disk, error = %e, "partition table not re-read");
    }
    let kname = disk.rsplit('/').next().unwrap_or(disk);
    let mut created = Vec::new();
    for (i, p) in table.partitions.iter().enumerate() {
        let number = p
            .node
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse::<i32>().ok())
            .unwrap_or(i as i32 + 1);
        let (start, size) = p
            .start
            .checked_mul(table.sectorsize)
            .zip(p.size.checked_mul(table.sectorsize))
            .ok_or_else(|| failed(format!("partition {} of {disk} lies beyond any disk", p.node)))?;
        created.push(Created {
            role: None,
            path: p.node.clone(),
            number,
            start,
            size,
        });
    }
    // Partitions the kernel still has from an older table go first.
    for old in blockdev::partitions(kname) {
        if !created
            .iter()
            .any(|c| (c.number, c.start, c.size) == (old.number, old.start, old.size))
        {
            blockdev::forget_partition(&file, old.number)
                .map_err(|e| failed(format!("removing stale partition {} of {disk}: {e}", old.name)))?;
        }
    }
    for c in &created {
        let (number, start, size) = (c.number, c.start, c.size);
        blockdev::add_partition(&file, number, start, size)
            .map_err(|e| failed(format!("adding partition {number} of {disk}: {e}")))?;
    }
    // devtmpfs or udev creates the nodes; give them a moment, as upstream does.
    for c in &created {
        let mut tries = 0;
        while !std::path::Path::new(&c.path).exists() {
            tries += 1;
            if tries > 50 {
                return Err(failed(format!("{} did not appear after the table was written", c.path)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(created)
}

/// Write the layout's table to `disk` and return its partitions, with their roles.
pub fn create(disk: &str, layout: &Layout) -> Result<Vec<Created>, AgentError> {
    run(
        "sfdisk",
        &["--quiet", "--wipe", "always", disk],
        Some(&sfdisk_script(layout)),
    )?;
    let mut created = expose(disk)?;
    if created.len() != layout.parts.len() {
        return Err(failed(format!(
            "{disk} has {} partitions after partitioning, {} were planned",
            created.len(),
            layout.parts.len()
        )));
    }
    for (c, p) in created.iter_mut().zip(&layout.parts) {
        c.role = Some(p.role);
    }
    Ok(created)
}

/// Make the file systems of a fresh partition-image layout (not the root, which is the image,
/// nor the ephemeral partition when it is preserved).
pub fn make_file_systems(created: &[Created], info: &ImageInfo) -> Result<(), AgentError> {
    let preserve = info.preserve_ephemeral.as_option().copied().unwrap_or(false);
    for c in created {
        match c.role {
            Some(Role::Esp) => {
                run("mkfs.vfat", &["-F", "32", "-n", "efi-part", &c.path], None)?;
            }
            Some(Role::Swap) => {
                run("mkswap", &["-L", "swap1", &c.path], None)?;
            }
            Some(Role::Ephemeral) if !preserve => {
                let format = info.ephemeral_format.as_option().map(String::as_str).unwrap_or("ext4");
                if !format.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                    return Err(AgentError::new(
                        ErrorKind::InvalidCommandParams,
                        format!("ephemeral_format {format:?} is not a file system name"),
                    ));
                }
                let tool = format!("mkfs.{format}");
                let mut args = vec!["-L", "ephemeral0"];
                if format.starts_with("ext") {
                    args.push("-F");
                }
                args.push(&c.path);
                run(&tool, &args, None)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The config drive's bytes: fetched when `value` is a URL, else base64 (IPA's `get_configdrive`);
/// gunzipped when gzipped; at most 64 MiB; and a file-system image (ISO 9660 or FAT), since
/// that is what cloud-init and Ignition read from the `config-2` partition. What cannot be a
/// config drive is refused before anything is written (upstream writes the text as it is).
pub async fn config_drive_bytes(value: &str, http: &reqwest::Client) -> Result<Vec<u8>, AgentError> {
    let invalid = |why: String| AgentError::new(ErrorKind::InvalidCommandParams, format!("config drive: {why}"));
    let from_url = value.starts_with("http://") || value.starts_with("https://");
    let download_failed = |e: reqwest::Error| {
        AgentError::new(
            ErrorKind::ImageDownload,
            format!("config drive: {}", rivet_common::error::http_error(&e)),
        )
    };
    let raw = if from_url {
        let resp = http
            .get(value)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(download_failed)?;
        resp.bytes().await.map_err(download_failed)?.to_vec()
    } else {
        value.as_bytes().to_vec()
    };
    let compact: Vec<u8> = raw.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let decoded = match base64::engine::general_purpose::STANDARD.decode(&compact) {
        Ok(decoded) => decoded,
        // A URL may serve the image itself rather than its base64.
        Err(_) if from_url => raw,
        Err(e) => {
            return Err(invalid(format!(
                "it is not base64 ({e}); a config drive is a gzipped image, base64-encoded, or its URL"
            )));
        }
    };
    let data = if decoded.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(decoded.as_slice())
            .take(MAX_CONFIG_DRIVE + 1)
            .read_to_end(&mut out)
            .map_err(|e| invalid(format!("not valid gzip: {e}")))?;
        out
    } else {
        decoded
    };
    if data.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if data.len() as u64 > MAX_CONFIG_DRIVE {
        return Err(invalid(format!("larger than {} MiB", MAX_CONFIG_DRIVE >> 20)));
    }
    if !is_file_system_image(&data) {
        return Err(invalid(format!(
            "its {} bytes are neither an ISO 9660 nor a FAT file system image",
            data.len()
        )));
    }
    Ok(data)
}

/// ISO 9660 (`CD001` in the first volume descriptor, at 32 KiB + 1) or FAT (boot signature and
/// the FAT type string of FAT12/16 or FAT32).
fn is_file_system_image(data: &[u8]) -> bool {
    let at = |offset: usize, magic: &[u8]| data.get(offset..offset + magic.len()) == Some(magic);
    at(32769, b"CD001") || (at(510, &[0x55, 0xaa]) && (at(54, b"FAT") || at(82, b"FAT32")))
}

/// Copy a config drive onto its partition and zero the rest of it: a partition Rivet writes
/// holds only what Rivet wrote (a reused `config-2` partition keeps no tail of an older drive).
pub fn write_config_drive(part: &Created, data: &[u8]) -> Result<(), AgentError> {
    if data.len() as u64 > part.size {
        return Err(failed(format!(
            "the config drive ({} bytes) does not fit {} ({} bytes)",
            data.len(),
            part.path,
            part.size
        )));
    }
    let file = super::disk::open(&part.path)?;
    let len = data.len() as u64;
    file.write_all_at(data, 0)
        .and_then(|_| blockdev::zero_range(&file, len, part.size - len))
        .and_then(|_| file.sync_all())
        .map_err(|e| failed(format!("writing the config drive to {}: {e}", part.path)))?;
    blockdev::flush_buffers(&file);
    Ok(())
}

/// Move the backup GPT of a whole-disk image to the end of the disk (an image smaller than the
/// disk leaves it where the image ended), and grow the table's usable area with it. Nothing to do
/// for MBR tables or a disk without a table.
pub fn relocate_backup_gpt(disk: &str) -> Result<(), AgentError> {
    let file = super::disk::open(disk)?;
    let sector = blockdev::logical_sector_size(&file).map_err(|e| failed(format!("sector size of {disk}: {e}")))?;
    let mut head = vec![0u8; 2 * sector as usize];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| failed(format!("reading the partition table of {disk}: {e}")))?;
    drop(file);
    if blockdev::geometry::gpt_sector_size(&head) != Some(sector) {
        return Ok(());
    }
    run("sfdisk", &["--quiet", "--relocate", "gpt-bak-std", disk], None)?;
    Ok(())
}

/// Put a config drive on a whole-disk image of `image_len` bytes: into its `config-2` partition
/// if it has one, else a new partition at the end of the disk, after the image's partitions and
/// after its last byte (64 MiB as upstream, or the free tail when that is smaller but holds the
/// drive). Returns the partition.
pub fn add_config_drive(disk: &str, data: &[u8], image_len: u64) -> Result<Created, AgentError> {
    let existing = expose(disk)?;
    let labelled: Vec<&Created> = existing
        .iter()
        .filter(|c| {
            crate::disk::devices::probe(std::path::Path::new(&c.path))
                .is_ok_and(|p| p.label.as_deref() == Some(CONFIG_DRIVE_LABEL))
        })
        .collect();
    match labelled.as_slice() {
        [one] => {
            tracing::info!(partition = %one.path, "reusing the image's config-2 partition");
            let part = (*one).clone();
            write_config_drive(&part, data)?;
            return Ok(part);
        }
        [] => {}
        many => {
            return Err(failed(format!(
                "{disk} has {} partitions labelled {CONFIG_DRIVE_LABEL}; expected at most one",
                many.len()
            )));
        }
    }
    let table = read_table(disk)?;
    if table.label != "gpt" && table.partitions.len() >= 4 {
        return Err(failed(format!(
            "{disk} has four primary partitions already; no room for a config drive"
        )));
    }
    let sector = table.sectorsize;
    let disk_sectors = {
        let file = super::disk::open(disk)?;
        blockdev::device_size(&file).map_err(|e| failed(format!("size of {disk}: {e}")))? / sector
    };
    let last = table.lastlba.or_else(|| disk_sectors.checked_sub(1)).unwrap_or(0);
    let used_end = table
        .partitions
        .iter()
        .filter_map(|p| p.start.checked_add(p.size))
        .chain([image_len.div_ceil(sector)])
        .max()
        .unwrap_or(0);
    // Upstream's 64 MiB at the end of the disk; on a disk with less room after the image, the
    // free tail, as long as the drive fits in it.
    let (start, length) =
        blockdev::geometry::tail_partition(sector, last, used_end, CONFIG_DRIVE_PART, data.len() as u64)
            .map_err(|e| failed(format!("no room for a config drive on {disk}: {e}")))?;
    run(
        "sfdisk",
        &["--quiet", "--append", disk],
        Some(&format!("start={start}, size={length}, type=L\n")),
    )?;
    let after = expose(disk)?;
    let part = after
        .iter()
        .find(|c| c.start == start * sector)
        .cloned()
        .ok_or_else(|| failed(format!("the config drive partition did not appear on {disk}")))?;
    write_config_drive(&part, data)?;
    Ok(Created {
        role: Some(Role::ConfigDrive),
        ..part
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn boot_mode_and_label_follow_upstream_precedence() {
        let cases = [
            (json!({"uuid": "n"}), "bios", (BootMode::Bios, Label::Msdos)),
            (json!({"uuid": "n"}), "uefi", (BootMode::Uefi, Label::Gpt)),
            (
                json!({"uuid": "n", "properties": {"capabilities": "boot_mode:bios,disk_label:gpt"}}),
                "uefi",
                (BootMode::Bios, Label::Gpt),
            ),
            (
                json!({"uuid": "n", "instance_info": {"deploy_boot_mode": "uefi"}, "properties": {"capabilities": "boot_mode:bios"}}),
                "bios",
                (BootMode::Uefi, Label::Gpt),
            ),
            (
                json!({"uuid": "n", "instance_info": {"capabilities": {"secure_boot": "true"}}}),
                "bios",
                (BootMode::Uefi, Label::Gpt),
            ),
            (
                json!({"uuid": "n", "instance_info": {"capabilities": "{\"disk_label\": \"gpt\"}"}}),
                "bios",
                (BootMode::Bios, Label::Gpt),
            ),
            (
                json!({"uuid": "n", "driver_internal_info": {"deploy_boot_mode": "uefi"}}),
                "bios",
                (BootMode::Uefi, Label::Gpt),
            ),
        ];
        for (n, running, want) in cases {
            assert_eq!(boot_settings(Some(&node(n.clone())), running), want, "{n}");
        }
    }

    #[test]
    fn layouts_follow_upstream_order() {
        let info: ImageInfo =
            serde_json::from_value(json!({"id": "p", "urls": ["http://x/p"], "image_type": "partition",
            "root_mb": 16, "swap_mb": 4, "ephemeral_mb": 8}))
            .expect("info");
        let layout = plan(&info, (BootMode::Bios, Label::Gpt), Some(MIB + 1)).expect("layout");
        let roles: Vec<(Role, Option<u64>)> = layout.parts.iter().map(|p| (p.role, p.mib)).collect();
        assert_eq!(
            roles,
            vec![
                (Role::BiosBoot, Some(1)),
                (Role::Ephemeral, Some(8)),
                (Role::Swap, Some(4)),
                (Role::ConfigDrive, Some(2)),
                (Role::Root, Some(16)),
            ]
        );
        assert_eq!(
            sfdisk_script(&layout),
            "label: gpt\nsize=1MiB, type=21686148-6449-6E6F-744E-656564454649\nsize=8MiB, type=L\n\
             size=4MiB, type=S\nsize=2MiB, type=L\nsize=16MiB, type=L\n"
        );
        let bios = plan(&info, (BootMode::Bios, Label::Msdos), None).expect("layout");
        assert!(sfdisk_script(&bios).ends_with("size=16MiB, type=L, bootable\n"));
        let uefi = plan(&info, (BootMode::Uefi, Label::Gpt), None).expect("layout");
        assert_eq!(
            uefi.parts[0],
            Planned {
                role: Role::Esp,
                mib: Some(550)
            }
        );
        let most = plan(&info, (BootMode::Bios, Label::Msdos), Some(1)).expect("four primaries fit");
        assert_eq!(most.parts.len(), 4);
    }
}
