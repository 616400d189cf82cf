//! Software RAID, as IPA's generic manager builds it (`create_configuration`,
//! `delete_configuration`, `apply_configuration` under the `raid` interface): for each logical
//! disk of a target configuration whose `controller` is `software`, one partition on each of
//! its holder disks and an md array (mdadm, metadata 1.x) over those partitions.
//!
//! * Holder disks: a logical disk's `physical_disks` (root-device hint objects, or device
//!   names), else every disk the agent may see (md arrays excepted). Every holder must be one
//!   the agent may modify ([`DeviceView::check_destructive`]) and must hold no partition table
//!   or file system yet: building over data is refused, as IPA refuses disks with partitions.
//! * Partitions: a GPT table (an MBR one when the node's capabilities say `disk_label:msdos`),
//!   one `Linux RAID` partition per logical disk in the order the disks were given, a `MAX`
//!   disk (at most one) last; sizes in GiB.
//! * Levels: `0`, `1`, `1+0` (md's `10`), `5`, `6`, with at least 2, 2, 4, 3, 4 holders.
//!
//! Deletion stops every running array on the disks the agent sees, clears the md superblock of
//! each member, also of members of arrays not running, and erases the partition tables of their
//! disks ([`super::erase::erase_metadata`]). An array with a member on a disk the agent may not
//! modify (under an allowlist: one with fewer members on the allowed disks than it has) is
//! refused before anything is written; a running one on no disk the agent sees is left alone.
//!
//! Planning ([`plan`]) reads nothing but its arguments, so its rules are unit-tested; building
//! and deleting run mdadm and need the kernel's md driver (tested in the lab's VM).

use std::path::Path;

use rivet_common::JsonObject;
use serde_json::{Value, json};

use super::devices::{BlockDevice, DeviceView};
use crate::error::{AgentError, ErrorKind};

/// md levels by the configuration's `raid_level`, with the fewest holders each needs.
const LEVELS: &[(&str, &str, usize)] = &[
    ("0", "0", 2),
    ("1", "1", 2),
    ("1+0", "10", 4),
    ("5", "5", 3),
    ("6", "6", 4),
];

fn raid_error(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::SoftwareRaid, message)
}

/// One array to build.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Its logical disk's place in the configuration.
    pub index: usize,
    /// md level (`1`, `10`).
    pub level: String,
    /// `volume_name`, passed to mdadm as the array's name.
    pub name: Option<String>,
    /// Size of each member partition in GiB; `None` for the rest of the disk (`MAX`).
    pub size_gib: Option<u64>,
    /// Holder disks (`/dev/vdb`), in the order the partitions go.
    pub holders: Vec<String>,
}

/// What [`build`] does: the arrays in the order their partitions are made (fixed sizes first).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The arrays.
    pub arrays: Vec<Array>,
    /// `gpt` or `dos`.
    pub label: &'static str,
}

impl Plan {
    /// Every holder disk once, in first-use order.
    pub fn holders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for disk in self.arrays.iter().flat_map(|a| &a.holders) {
            if !out.contains(disk) {
                out.push(disk.clone());
            }
        }
        out
    }

    /// The sfdisk script that partitions `holder`: a partition for each array it holds.
    pub fn sfdisk_script(&self, holder: &str) -> String {
        let mut script = format!("label: {}\n", self.label);
        for array in self.arrays.iter().filter(|a| a.holders.iter().any(|h| h == holder)) {
            match array.size_gib {
                Some(gib) => script.push_str(&format!("size={gib}GiB, type=R\n")),
                None => script.push_str("type=R\n"),
            }
        }
        script
    }
}

/// The logical disks of `config` (`{"logical_disks": [...]}`) that software RAID builds, as a
/// plan over `disks` (the disks the agent sees); `capabilities` is the node's
/// `properties.capabilities` string.
///
/// Errors (`SoftwareRAIDError`): no logical disk, a logical disk on another controller (a
/// hardware controller's manager builds those), an unknown level or size, two `MAX` disks, a
/// `physical_disks` entry that matches no disk or the same disk twice, too few holders for the
/// level.
pub fn plan(config: &Value, disks: &[BlockDevice], capabilities: Option<&str>) -> Result<Plan, AgentError> {
    let logical = config
        .get("logical_disks")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| raid_error("the RAID configuration has no logical_disks"))?;
    let candidates: Vec<&BlockDevice> = disks.iter().filter(|d| !d.kname.starts_with("md")).collect();
    let mut arrays = Vec::new();
    let mut max_seen = false;
    for (index, disk) in logical.iter().enumerate() {
        let disk = disk
            .as_object()
            .ok_or_else(|| raid_error(format!("logical disk {index} is not an object: {disk}")))?;
        let controller = disk.get("controller").and_then(Value::as_str);
        if controller != Some("software") {
            return Err(raid_error(format!(
                "logical disk {index} is for controller {}: rivet-agent builds software RAID (controller \"software\") only, \
                 and a configuration cannot mix software RAID with a hardware controller",
                controller.map_or_else(|| "(none)".to_owned(), |c| format!("{c:?}"))
            )));
        }
        let asked = disk.get("raid_level").and_then(Value::as_str).unwrap_or_default();
        let (_, level, fewest) = LEVELS.iter().find(|(l, _, _)| *l == asked).ok_or_else(|| {
            raid_error(format!(
                "logical disk {index}: software RAID level {asked:?} is not supported (0, 1, 1+0, 5, 6)"
            ))
        })?;
        let size_gib = match disk.get("size_gb") {
            Some(Value::String(max)) if max == "MAX" => {
                if max_seen {
                    return Err(raid_error("only one logical disk may have size_gb MAX"));
                }
                max_seen = true;
                None
            }
            Some(size) => Some(size.as_u64().filter(|g| *g > 0).ok_or_else(|| {
                raid_error(format!(
                    "logical disk {index}: size_gb must be a number of GiB or MAX, got {size}"
                ))
            })?),
            None => return Err(raid_error(format!("logical disk {index} has no size_gb"))),
        };
        let holders = holders(index, disk, &candidates)?;
        if holders.len() < *fewest {
            return Err(raid_error(format!(
                "logical disk {index}: RAID-{asked} needs at least {fewest} disks, {} {} available ({})",
                holders.len(),
                if holders.len() == 1 { "is" } else { "are" },
                holders.join(", ")
            )));
        }
        arrays.push(Array {
            index,
            level: (*level).to_owned(),
            name: disk.get("volume_name").and_then(Value::as_str).map(str::to_owned),
            size_gib,
            holders,
        });
    }
    // The disk that takes the rest of each holder goes last (IPA reorders the same way).
    arrays.sort_by_key(|a| a.size_gib.is_none());
    let msdos = capabilities
        .unwrap_or_default()
        .split(',')
        .any(|c| c.trim() == "disk_label:msdos");
    Ok(Plan {
        arrays,
        label: if msdos { "dos" } else { "gpt" },
    })
}

/// The holder disks of logical disk `index`: its `physical_disks`, else every candidate.
fn holders(index: usize, disk: &JsonObject, candidates: &[&BlockDevice]) -> Result<Vec<String>, AgentError> {
    let Some(wanted) = disk.get("physical_disks") else {
        return Ok(candidates.iter().map(|d| d.disk.name.clone()).collect());
    };
    let wanted = wanted
        .as_array()
        .ok_or_else(|| raid_error(format!("logical disk {index}: physical_disks must be a list")))?;
    let mut out: Vec<String> = Vec::new();
    for entry in wanted {
        let found = match entry {
            Value::String(name) => {
                let path = if name.starts_with("/dev/") {
                    name.clone()
                } else {
                    format!("/dev/{name}")
                };
                if out.contains(&path) {
                    return Err(raid_error(format!(
                        "logical disk {index}: {path} is named twice in physical_disks"
                    )));
                }
                candidates.iter().find(|d| d.disk.name == path)
            }
            // A hint takes the first matching disk not taken yet, so the same hint given twice
            // picks two disks (as IPA's `get_block_devices_for_raid`).
            Value::Object(hint) => {
                let hints = super::hints::parse(hint)?;
                candidates
                    .iter()
                    .find(|d| !out.contains(&d.disk.name) && super::hints::matches(d, &hints))
            }
            other => {
                return Err(raid_error(format!(
                    "logical disk {index}: a physical_disks entry must be a device name or a hint object, got {other}"
                )));
            }
        };
        let name = found.map(|d| d.disk.name.clone()).ok_or_else(|| {
            raid_error(format!(
                "logical disk {index}: physical disk {entry} matches none of the disks this agent sees (or none not taken already)"
            ))
        })?;
        out.push(name);
    }
    Ok(out)
}

fn mdadm(args: &[&str]) -> Result<String, AgentError> {
    crate::tools::run(ErrorKind::SoftwareRaid, "mdadm", args, None)
}

/// The first free md device names (`/dev/md0`, ...), `count` of them.
fn free_md_devices(count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("md{n}"))
        .filter(|name| !Path::new("/sys/block").join(name).exists() && !Path::new("/dev").join(name).exists())
        .take(count)
        .map(|name| format!("/dev/{name}"))
        .collect()
}

/// Build `plan` (made from `config` over `disks`): check every holder, partition each, create
/// each array. `report` hears what is being done. Answers `{"logical_disks": [...]}`: the
/// logical disks asked for, in `config`'s order, each with the md device that holds it in
/// `raid_device`.
///
/// Errors: a holder the agent may not modify (`ProtectedDeviceError`), a holder that holds data
/// or whose content blkid cannot tell, all before anything is written; a partitioning or mdadm
/// failure, after which what this call built is undone (arrays stopped, their superblocks
/// cleared, the tables it wrote erased) and the error says so.
pub fn build(
    plan: &Plan,
    config: &Value,
    disks: &[BlockDevice],
    devices: &DeviceView,
    report: &dyn Fn(String),
) -> Result<Value, AgentError> {
    let holders = plan.holders();
    for holder in &holders {
        devices.check_destructive(holder)?;
        let found = super::devices::probe_unambiguous(Path::new(holder)).map_err(|e| {
            raid_error(format!(
                "cannot tell whether {holder} holds data, so it is not used for software RAID: {e}"
            ))
        })?;
        if let Some(what) = found.pttype.as_ref().or(found.fstype.as_ref()) {
            return Err(raid_error(format!(
                "{holder} holds {what}: run raid.delete_configuration (or erase_devices_metadata) before building software RAID on it"
            )));
        }
    }
    let mut done = Built::default();
    match build_checked(plan, config, devices, report, &mut done) {
        Ok(answer) => Ok(answer),
        Err(e) => {
            let undone = match done.undo(disks, devices) {
                Ok(()) => "what it had built was undone".to_owned(),
                Err(undo) => format!("undoing what it had built failed too: {}", undo.details),
            };
            Err(AgentError::new(e.kind, format!("{}; {undone}", e.details)))
        }
    }
}

/// What [`build`] has written so far, to undo on failure.
#[derive(Debug, Default)]
struct Built {
    partitioned: Vec<String>,
    arrays: Vec<(String, Vec<String>)>,
}

impl Built {
    /// Stop the arrays, clear their members, erase the tables written (every holder was
    /// checked allowed and empty before it was partitioned).
    fn undo(&self, disks: &[BlockDevice], devices: &DeviceView) -> Result<(), AgentError> {
        for (md, members) in self.arrays.iter().rev() {
            mdadm(&["--stop", md])?;
            for member in members {
                mdadm(&["--zero-superblock", member])?;
            }
        }
        for holder in &self.partitioned {
            if let Some(disk) = disks.iter().find(|d| &d.disk.name == holder) {
                super::erase::erase_metadata(disk, devices)?;
            }
        }
        Ok(())
    }
}

fn build_checked(
    plan: &Plan,
    config: &Value,
    devices: &DeviceView,
    report: &dyn Fn(String),
    done: &mut Built,
) -> Result<Value, AgentError> {
    let mut partitions: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for holder in plan.holders() {
        report(format!("partitioning {holder} for software RAID"));
        done.partitioned.push(holder.clone());
        crate::tools::run(
            ErrorKind::SoftwareRaid,
            "sfdisk",
            &["--quiet", "--wipe", "always", &holder],
            Some(&plan.sfdisk_script(&holder)),
        )?;
        let expected = plan.arrays.iter().filter(|a| a.holders.contains(&holder)).count();
        let nodes = partition_nodes(&holder, expected)?;
        partitions.insert(holder, nodes);
    }
    // The md drivers may not be loaded (the Rivet ramdisk loads them on demand): load each
    // level's; a driver built into the kernel or already loaded makes modprobe a no-op. Outside
    // a ramdisk the machine's modules are its owner's business.
    let may_load = devices.check_machine_changes("loading md drivers").is_ok();
    for array in plan.arrays.iter().filter(|_| may_load) {
        let driver = match array.level.as_str() {
            "5" | "6" => "raid456".to_owned(),
            level => format!("raid{level}"),
        };
        if let Err(e) = crate::tools::run(ErrorKind::SoftwareRaid, "modprobe", &[&driver], None) {
            tracing::debug!(driver, error = %e.details, "md driver not loaded by modprobe; mdadm will say if it is missing");
        }
    }
    let md_devices = free_md_devices(plan.arrays.len());
    let mut answered = config["logical_disks"].as_array().cloned().unwrap_or_default();
    for (position, (array, md)) in plan.arrays.iter().zip(&md_devices).enumerate() {
        // A holder's n-th partition belongs to the n-th array (in plan order) it takes part in.
        let members: Vec<String> = array
            .holders
            .iter()
            .map(|holder| {
                let nth = plan.arrays[..position]
                    .iter()
                    .filter(|a| a.holders.contains(holder))
                    .count();
                partitions
                    .get(holder)
                    .and_then(|parts| parts.get(nth).cloned())
                    .ok_or_else(|| raid_error(format!("{holder} has no partition {} after partitioning", nth + 1)))
            })
            .collect::<Result<_, _>>()?;
        report(format!(
            "creating {md} (RAID-{}) from {}",
            array.level,
            members.join(", ")
        ));
        let level = format!("--level={}", array.level);
        let count = format!("--raid-devices={}", members.len());
        let name = array.name.as_ref().map(|n| format!("--name={n}"));
        let mut args = vec![
            "--create",
            md.as_str(),
            "--force",
            "--run",
            "--metadata=1",
            &level,
            &count,
        ];
        if let Some(name) = &name {
            args.push(name);
        }
        args.extend(members.iter().map(String::as_str));
        mdadm(&args)?;
        tracing::info!(device = %md, level = %array.level, members = ?members, "software RAID array created");
        done.arrays.push((md.clone(), members));
        if let Some(disk) = answered.get_mut(array.index) {
            disk["raid_device"] = json!(md);
        }
    }
    Ok(json!({"logical_disks": answered}))
}

/// The device nodes of `disk`'s `expected` partitions, once the kernel and devtmpfs have them
/// (sfdisk asks the kernel to read the new table; the nodes follow within moments).
fn partition_nodes(disk: &str, expected: usize) -> Result<Vec<String>, AgentError> {
    let kname = disk.rsplit('/').next().unwrap_or(disk);
    for _ in 0..100 {
        let mut parts = crate::blockdev::partitions(kname);
        parts.sort_by_key(|p| p.number);
        let nodes: Vec<String> = parts.iter().map(|p| format!("/dev/{}", p.name)).collect();
        if nodes.len() == expected && nodes.iter().all(|n| Path::new(n).exists()) {
            return Ok(nodes);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(raid_error(format!(
        "{disk}: the kernel does not show the {expected} partitions written for software RAID"
    )))
}

/// Kernel names of the running md arrays (`md0`, `md127`).
fn running_arrays() -> Vec<String> {
    crate::inventory::sorted_entries(Path::new("/sys/block"))
        .into_iter()
        .filter(|n| n.starts_with("md"))
        .collect()
}

/// The whole disk (kernel name) a block device lies on: itself for a disk, its parent for a
/// partition.
fn disk_of(kname: &str) -> String {
    let class = Path::new("/sys/class/block").join(kname);
    if class.join("partition").exists()
        && let Ok(real) = std::fs::canonicalize(&class)
        && let Some(parent) = real.parent().and_then(Path::file_name)
    {
        return parent.to_string_lossy().into_owned();
    }
    kname.to_owned()
}

/// Delete every software RAID array the agent may delete (see the module's text). `disks` are
/// the disks the agent sees. Answers the arrays stopped and the disks whose RAID metadata and
/// partition tables were erased.
///
/// Errors: before anything is written, a running array with a member on a disk the agent may
/// not modify, or (under an allowlist) an array whose members are not all on disks it may
/// modify (`ProtectedDeviceError`). Then, as IPA does, a failure on one array does not stop the
/// others: the step fails at the end, naming each failure; a disk whose member could not be
/// cleared keeps its partition table.
pub fn delete(disks: &[BlockDevice], devices: &DeviceView, report: &dyn Fn(String)) -> Result<Value, AgentError> {
    let refuse = |what: String| AgentError::new(ErrorKind::ProtectedDevice, what);
    let mut arrays = Vec::new();
    for md in running_arrays() {
        let members = crate::inventory::sorted_entries(&Path::new("/sys/block").join(&md).join("slaves"));
        let holders: Vec<String> = members.iter().map(|m| format!("/dev/{}", disk_of(m))).collect();
        // Under an allowlist the agent sees only some disks: an array on none of them is not
        // its to see; one on some of them cannot be deleted without touching the others.
        if !holders.iter().any(|h| devices.is_visible(h)) {
            continue;
        }
        for holder in &holders {
            devices
                .check_destructive(holder)
                .map_err(|e| refuse(format!("/dev/{md} cannot be deleted: {}", e.details)))?;
        }
        arrays.push((md, members));
    }
    // Members of arrays that are not running (built by an earlier boot and not assembled), by
    // their array's UUID.
    let running_members: Vec<String> = arrays
        .iter()
        .flat_map(|(_, members)| members.iter().map(|m| format!("/dev/{m}")))
        .collect();
    let mut idle: Vec<(String, String, Option<String>)> = Vec::new();
    for disk in disks.iter().filter(|d| !d.kname.starts_with("md")) {
        let mut paths = vec![disk.disk.name.clone()];
        paths.extend(
            crate::blockdev::partitions(&disk.kname)
                .into_iter()
                .map(|p| format!("/dev/{}", p.name)),
        );
        for path in paths.into_iter().filter(|p| !running_members.contains(p)) {
            let Ok(found) = super::devices::probe(Path::new(&path)) else {
                continue;
            };
            if found.fstype.as_deref() == Some("linux_raid_member") {
                devices.check_destructive(&disk.disk.name)?;
                idle.push((path, disk.disk.name.clone(), found.uuid));
            }
        }
    }
    if devices.has_allowlist() {
        // The rest of an idle array may lie on disks outside the allowlist: count its members.
        for (path, _, uuid) in &idle {
            let expected = mdadm(&["--examine", "--export", path])?.lines().find_map(|l| {
                l.strip_prefix("MD_DEVICES=")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            });
            let found = idle.iter().filter(|(_, _, u)| u == uuid).count();
            if expected.is_some_and(|n| found < n) {
                return Err(refuse(format!(
                    "the software RAID array of {path} has {} members, {found} of them on disks this agent may modify: not deleted",
                    expected.unwrap_or_default()
                )));
            }
        }
    }

    let mut failures: Vec<String> = Vec::new();
    let mut holders: Vec<String> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let mut clear = |member: &str, disk: String, failures: &mut Vec<String>| match mdadm(&["--zero-superblock", member])
    {
        Ok(_) => {
            tracing::info!(device = %member, "software RAID member cleared");
            if !holders.contains(&disk) {
                holders.push(disk);
            }
        }
        Err(e) => {
            failures.push(e.details);
            kept.push(disk);
        }
    };
    let mut stopped = Vec::new();
    for (md, members) in &arrays {
        report(format!("stopping /dev/{md}"));
        let dev = format!("/dev/{md}");
        if let Err(e) = crate::tools::run(ErrorKind::SoftwareRaid, "wipefs", &["-af", &dev], None) {
            tracing::warn!(device = %dev, error = %e.details, "signatures on the array not wiped");
        }
        if let Err(e) = mdadm(&["--stop", &dev]) {
            failures.push(e.details);
            continue;
        }
        stopped.push(dev.clone());
        for member in members {
            clear(
                &format!("/dev/{member}"),
                format!("/dev/{}", disk_of(member)),
                &mut failures,
            );
        }
        tracing::info!(device = %dev, members = ?members, "software RAID array deleted");
    }
    for (path, disk, _) in &idle {
        report(format!("clearing the RAID superblock of {path}"));
        clear(path, disk.clone(), &mut failures);
    }
    holders.retain(|h| !kept.contains(h));
    for holder in &holders {
        if let Some(disk) = disks.iter().find(|d| &d.disk.name == holder) {
            report(format!("erasing the partition table of {holder}"));
            if let Err(e) = super::erase::erase_metadata(disk, devices) {
                failures.push(e.details);
            }
        }
    }
    if !failures.is_empty() {
        return Err(raid_error(format!(
            "deleting the software RAID configuration failed: {}",
            failures.join("; ")
        )));
    }
    Ok(json!({"deleted_arrays": stopped, "cleared_disks": holders}))
}

#[cfg(test)]
mod tests {
    use rivet_common::inventory::Disk;

    use super::*;

    fn disk(kname: &str, gib: u64) -> BlockDevice {
        BlockDevice {
            disk: Disk {
                name: format!("/dev/{kname}"),
                size: gib << 30,
                ..Default::default()
            },
            kname: kname.into(),
            serials: vec![],
            wwns: vec![],
        }
    }

    fn disks() -> Vec<BlockDevice> {
        vec![disk("vda", 20), disk("vdb", 8), disk("vdc", 8), disk("md0", 8)]
    }

    fn software(level: &str, size: Value, extra: Value) -> Value {
        let mut d = json!({"raid_level": level, "size_gb": size, "controller": "software"});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            d[k] = v;
        }
        d
    }

    #[test]
    fn a_mirror_and_a_stripe_share_the_named_disks_with_max_last() {
        let config = json!({"logical_disks": [
            software("0", json!("MAX"), json!({"physical_disks": ["vdb", {"name": "/dev/vdc"}]})),
            software("1", json!(2), json!({"volume_name": "root", "physical_disks": ["/dev/vdb", "/dev/vdc"]})),
        ]});
        let plan = plan(&config, &disks(), Some("boot_mode:uefi")).expect("plan");
        assert_eq!(plan.label, "gpt");
        assert_eq!(plan.arrays[0].level, "1");
        assert_eq!(plan.arrays[0].name.as_deref(), Some("root"));
        assert_eq!(plan.arrays[0].size_gib, Some(2));
        assert_eq!(plan.arrays[1].size_gib, None, "MAX goes last");
        assert_eq!(plan.holders(), ["/dev/vdb", "/dev/vdc"]);
        assert_eq!(
            plan.sfdisk_script("/dev/vdb"),
            "label: gpt\nsize=2GiB, type=R\ntype=R\n"
        );
    }

    #[test]
    fn the_same_hint_twice_takes_two_disks() {
        let config = json!({"logical_disks": [
            software("1", json!("MAX"), json!({"physical_disks": [{"size": "<= 10"}, {"size": "<= 10"}]})),
        ]});
        let planned = plan(&config, &disks(), None).expect("plan");
        assert_eq!(planned.holders(), ["/dev/vdb", "/dev/vdc"]);
        let config = json!({"logical_disks": [
            software("1", json!("MAX"), json!({"physical_disks": [{"size": "<= 10"}, {"size": "<= 10"}, {"size": "<= 10"}]})),
        ]});
        let err = plan(&config, &disks(), None).expect_err("only two such disks");
        assert!(err.details.contains("none not taken already"), "{}", err.details);
    }

    #[test]
    fn without_physical_disks_every_disk_but_arrays_holds_it() {
        let config = json!({"logical_disks": [software("1+0", json!("MAX"), json!({}))]});
        let err = plan(&config, &disks(), None).expect_err("three disks are too few");
        assert!(
            err.details.contains("RAID-1+0 needs at least 4 disks, 3 are available"),
            "{}",
            err.details
        );
        let config = json!({"logical_disks": [software("5", json!(4), json!({}))]});
        let plan = plan(&config, &disks(), Some("disk_label:msdos")).expect("plan");
        assert_eq!(plan.holders(), ["/dev/vda", "/dev/vdb", "/dev/vdc"]);
        assert_eq!(plan.label, "dos");
        assert_eq!(plan.arrays[0].level, "5");
    }

    #[test]
    fn each_broken_rule_is_refused_by_name() {
        let cases = [
            (json!({}), "no logical_disks"),
            (
                json!({"logical_disks": [{"raid_level": "1", "size_gb": 1}]}),
                "controller (none)",
            ),
            (
                json!({"logical_disks": [software("1", json!(1), json!({})), {"raid_level": "1", "size_gb": 1, "controller": "RAID.1"}]}),
                "controller \"RAID.1\"",
            ),
            (
                json!({"logical_disks": [software("2", json!(1), json!({}))]}),
                "level \"2\" is not supported",
            ),
            (
                json!({"logical_disks": [software("1", json!("big"), json!({}))]}),
                "size_gb must be",
            ),
            (
                json!({"logical_disks": [software("1", json!(0), json!({}))]}),
                "size_gb must be",
            ),
            (
                json!({"logical_disks": [software("1", json!("MAX"), json!({})), software("0", json!("MAX"), json!({}))]}),
                "only one logical disk may have size_gb MAX",
            ),
            (
                json!({"logical_disks": [software("1", json!(1), json!({"physical_disks": ["vdb", "vdz"]}))]}),
                "\"vdz\" matches none",
            ),
            (
                json!({"logical_disks": [software("1", json!(1), json!({"physical_disks": ["vdb", "/dev/vdb"]}))]}),
                "named twice",
            ),
            (
                json!({"logical_disks": [software("1", json!(1), json!({"physical_disks": ["md0", "vdb"]}))]}),
                "\"md0\" matches none",
            ),
            (
                json!({"logical_disks": [software("1", json!(1), json!({"physical_disks": [{"bogus": 1}, "vdb"]}))]}),
                "bogus",
            ),
        ];
        for (config, want) in cases {
            let err = plan(&config, &disks(), None).expect_err("refused");
            assert!(
                matches!(err.kind, ErrorKind::SoftwareRaid | ErrorKind::InvalidCommandParams),
                "{config}: {:?}",
                err.kind
            );
            assert!(err.details.contains(want), "{config}: {}", err.details);
        }
    }

    #[test]
    fn a_holder_outside_the_allowlist_is_refused_before_anything_is_written() {
        let view = DeviceView::new(Some(vec![glob::Pattern::new("/dev/loop*").expect("glob")]), false);
        let config = json!({"logical_disks": [software("1", json!(1), json!({"physical_disks": ["vdb", "vdc"]}))]});
        let plan = plan(&config, &disks(), None).expect("plan");
        let err = build(&plan, &config, &disks(), &view, &|_| {}).expect_err("refused");
        assert_eq!(err.kind, ErrorKind::ProtectedDevice);
        assert!(err.details.contains("/dev/vdb"), "{}", err.details);
    }
}
