//! The generic hardware manager: works on any machine (support GENERIC), provides the
//! inventory and the steps that need no vendor knowledge.
//!
//! Only steps this manager actually implements are listed; disk erasure and image writing join
//! the lists with the disk pipeline.

use std::time::Duration;

use async_trait::async_trait;
use rivet_common::inventory::Inventory;
use rivet_common::node::{Node, Port};
use rivet_common::steps::{Step, StepType, args_info};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::{HardwareManager, ManagerError, StepContext, SupportLevel};
use crate::disk::devices::DeviceView;
use crate::error::{AgentError, ErrorKind};
use crate::inventory::{self, SysRoot};
use crate::progress::{Measure, Unit};

/// How often a burn-in reports the seconds it has run.
const BURNIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Upstream's default NVRAM patterns for `clean_uefi_nvram`.
const DEFAULT_NVRAM_PATTERNS: &[&str] = &[r"^HD\(", r"shim.*\.efi", r"grub.*\.efi"];

/// The generic manager.
#[derive(Debug, Default)]
pub struct GenericHardwareManager {
    /// `BOOTIF` for the inventory.
    pub bootif: Option<String>,
    /// Listen this long for LLDP whenever the inventory is collected (`ipa-collect-lldp`).
    lldp_timeout: Option<Duration>,
    bmc: OnceCell<Bmc>,
}

#[derive(Debug, Clone, Default)]
struct Bmc {
    v4: Option<String>,
    v6: Option<String>,
    mac: Option<String>,
}

impl GenericHardwareManager {
    /// A generic manager reporting `bootif` as the PXE interface.
    pub fn new(bootif: Option<String>) -> Self {
        GenericHardwareManager {
            bootif,
            lldp_timeout: None,
            bmc: OnceCell::new(),
        }
    }

    /// Capture LLDP for `timeout` each time the inventory is collected, and report each listed
    /// interface's TLVs in its `lldp` (IPA 13 `list_network_interfaces` with `collect_lldp`);
    /// `None` (the default) leaves `lldp` null.
    pub fn with_lldp(mut self, timeout: Option<Duration>) -> Self {
        self.lldp_timeout = timeout;
        self
    }
}

fn step(name: &str, interface: &str, step_type: StepType) -> Step {
    Step {
        step: name.into(),
        priority: Some(0),
        interface: interface.into(),
        reboot_requested: Some(false),
        // Upstream marks clean and service steps abortable, deploy steps carry no key.
        abortable: (step_type != StepType::Deploy).then_some(true),
        ..Default::default()
    }
}

fn nvram_step(step_type: StepType) -> Step {
    let mut s = step("clean_uefi_nvram", "deploy", step_type);
    s.argsinfo = rivet_common::field::Field::Value(args_info(&[(
        "match_patterns",
        r#"Json blob contains a list of regex patterns where any UEFI NVRAM entry matching that pattern will be deleted. Default value is '["^HD\(", "shim.*\.efi", "grub.*\.efi"]'"#,
        false,
    )]));
    s
}

/// The software RAID steps (`disk::software_raid`), under the `raid` interface as upstream's.
fn raid_step(name: &str, step_type: StepType) -> Step {
    let mut s = step(name, "raid", step_type);
    if name == "apply_configuration" {
        // The argument texts are upstream's: Ironic shows them to operators as they are.
        s.abortable = None;
        s.argsinfo = rivet_common::field::Field::Value(args_info(&[
            ("raid_config", "The RAID configuration to apply.", true),
            (
                "delete_existing",
                "Setting this to 'True' indicates to delete existing RAID configuration prior to creating the new configuration. Default value is 'True'.",
                false,
            ),
        ]));
    }
    s
}

/// The steps this manager implements, per flow (upstream's definitions and order).
pub fn generic_steps(step_type: StepType) -> Vec<Step> {
    let with_priority = |mut s: Step, priority: i64| {
        s.priority = Some(priority);
        s
    };
    match step_type {
        StepType::Clean => vec![
            with_priority(step("erase_devices", "deploy", step_type), 10),
            with_priority(step("erase_devices_metadata", "deploy", step_type), 99),
            step("erase_devices_express", "deploy", step_type),
            step("erase_pstore", "deploy", step_type),
            nvram_step(step_type),
            raid_step("delete_configuration", step_type),
            raid_step("create_configuration", step_type),
            step("burnin_cpu", "deploy", step_type),
            step("burnin_memory", "deploy", step_type),
        ],
        StepType::Deploy => vec![
            step("erase_devices_metadata", "deploy", step_type),
            nvram_step(step_type),
            raid_step("apply_configuration", step_type),
        ],
        StepType::Service => vec![
            raid_step("delete_configuration", step_type),
            raid_step("apply_configuration", step_type),
            raid_step("create_configuration", step_type),
            step("burnin_cpu", "deploy", step_type),
            step("burnin_memory", "deploy", step_type),
        ],
    }
}

fn failed(kind: ErrorKind, msg: impl Into<String>) -> ManagerError {
    ManagerError::Failed(AgentError::new(kind, msg))
}

async fn run_tool(program: &str, args: &[String], timeout: Duration) -> Result<String, ManagerError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    let output = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => {
            return Err(failed(
                ErrorKind::CommandExecution,
                format!("{program} did not finish within {timeout:?}"),
            ));
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(failed(
                ErrorKind::CommandExecution,
                format!("{program} is not installed in this ramdisk"),
            ));
        }
        Ok(Err(e)) => return Err(failed(ErrorKind::CommandExecution, format!("running {program}: {e}"))),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(
            ErrorKind::CommandExecution,
            format!("{program} failed ({}): {}", output.status, stderr.trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn info_u64(node: &Node, key: &str, default: u64) -> u64 {
    node.driver_info
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(default)
}

fn info_str(node: &Node, key: &str, default: &str) -> String {
    node.driver_info
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_owned()
}

impl GenericHardwareManager {
    async fn erase_pstore(&self, ctx: &StepContext) -> Result<Value, ManagerError> {
        ctx.devices
            .check_machine_changes("erase the persistent crash-log store (pstore)")?;
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let Some(dir) = mounts.lines().find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(2) == Some(&"pstore")).then(|| fields[1].to_owned())
        }) else {
            tracing::info!("no pstore file system mounted; nothing to erase");
            return Ok(Value::Null);
        };
        let entries =
            std::fs::read_dir(&dir).map_err(|e| failed(ErrorKind::CommandExecution, format!("listing {dir}: {e}")))?;
        for entry in entries.flatten() {
            std::fs::remove_file(entry.path()).map_err(|e| {
                failed(
                    ErrorKind::CommandExecution,
                    format!("removing {}: {e}", entry.path().display()),
                )
            })?;
        }
        Ok(Value::Null)
    }

    async fn clean_uefi_nvram(&self, ctx: &StepContext) -> Result<Value, ManagerError> {
        let patterns: Vec<String> = match ctx.args.get("match_patterns") {
            None | Some(Value::Null) => DEFAULT_NVRAM_PATTERNS.iter().map(|p| p.to_string()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    failed(
                        ErrorKind::InvalidCommandParams,
                        "match_patterns must be a list of strings",
                    )
                })?,
            Some(_) => {
                return Err(failed(
                    ErrorKind::InvalidCommandParams,
                    "match_patterns must be a list of strings",
                ));
            }
        };
        let regexes = patterns
            .iter()
            .map(|p| regex_lite::Regex::new(&format!("(?i){p}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(ErrorKind::InvalidCommandParams, format!("match_patterns: {e}")))?;
        ctx.devices.check_machine_changes("delete UEFI boot entries")?;
        if !std::path::Path::new("/sys/firmware/efi").exists() {
            return Err(failed(
                ErrorKind::CommandExecution,
                "this machine did not boot in UEFI mode: no NVRAM entries to clean",
            ));
        }
        let listing = run_tool("efibootmgr", &["-v".into()], Duration::from_secs(60)).await?;
        let mut deleted = Vec::new();
        for line in listing.lines() {
            let Some(rest) = line.strip_prefix("Boot") else {
                continue;
            };
            let number: String = rest.chars().take(4).collect();
            if number.len() == 4
                && number.chars().all(|c| c.is_ascii_hexdigit())
                && regexes.iter().any(|r| r.is_match(rest))
            {
                run_tool(
                    "efibootmgr",
                    &["-b".into(), number.clone(), "-B".into()],
                    Duration::from_secs(60),
                )
                .await?;
                deleted.push(number);
            }
        }
        tracing::info!(?deleted, "UEFI boot entries deleted");
        Ok(Value::Null)
    }

    async fn burnin(&self, ctx: &StepContext, kind: &str) -> Result<Value, ManagerError> {
        let node = &ctx.node;
        let args: Vec<String> = if kind == "cpu" {
            let cpus = info_u64(node, "agent_burnin_cpu_cpu", 0);
            let timeout = info_u64(node, "agent_burnin_cpu_timeout", 86400);
            vec![
                "--cpu".into(),
                cpus.to_string(),
                "--timeout".into(),
                timeout.to_string(),
                "--metrics-brief".into(),
            ]
        } else {
            let vms = info_u64(node, "agent_burnin_vm_vm", 0);
            let timeout = info_u64(node, "agent_burnin_vm_timeout", 86400);
            let bytes = info_str(node, "agent_burnin_vm_vm-bytes", "98%");
            vec![
                "--vm".into(),
                vms.to_string(),
                "--vm-bytes".into(),
                bytes,
                "--timeout".into(),
                timeout.to_string(),
                "--metrics-brief".into(),
            ]
        };
        let seconds = info_u64(
            node,
            &format!("agent_burnin_{}_timeout", if kind == "cpu" { "cpu" } else { "vm" }),
            86400,
        );
        let limit = Duration::from_secs(seconds + 300);
        let what = format!("burn-in {kind} (stress-ng {})", args.join(" "));
        // stress-ng runs for its --timeout: the seconds run are the measure of the step.
        let run = run_tool("stress-ng", &args, limit);
        tokio::pin!(run);
        let started = std::time::Instant::now();
        let mut tick = tokio::time::interval(BURNIN_PROGRESS_EVERY);
        let out = loop {
            tokio::select! {
                out = &mut run => break out,
                _ = tick.tick() => {
                    let done = started.elapsed().as_secs().min(seconds);
                    ctx.progress.measured(
                        format!("{what}: {done} of {seconds} s"),
                        Measure { done, total: Some(seconds), unit: Unit::Seconds, rate: Some(1.0) },
                    );
                }
            }
        };
        ctx.progress.clear();
        out?;
        Ok(Value::Null)
    }

    async fn bmc(&self) -> Bmc {
        self.bmc.get_or_init(detect_bmc).await.clone()
    }
}

/// Label of the virtual floppy Ironic's virtual-media drivers attach (IPA
/// `_is_virtual_media_device`): it carries the agent's configuration, never erased.
const VIRTUAL_MEDIA_LABEL: &str = "ir-vfd-dev";

/// The disks a cleaning step may erase: the device view's disks minus the node's skip list,
/// virtual media and software-RAID members (left for RAID cleaning), and read-only devices. A
/// read-only device is skipped by the metadata erase, as upstream; the full erase (`full`)
/// fails on one unless `agent_erase_skip_read_only` is set. docs/agent.md tables each kind.
fn erasable(ctx: &StepContext, full: bool) -> Result<Vec<crate::disk::devices::BlockDevice>, ManagerError> {
    let mut disks = ctx.devices.list_disks();
    if let Some(skips) = ctx.node.property("skip_block_devices").and_then(Value::as_array) {
        for skip in skips
            .iter()
            .filter_map(Value::as_object)
            .filter(|s| !s.contains_key("volume_name"))
        {
            let hints = crate::disk::hints::parse(skip)?;
            disks.retain(|d| !crate::disk::hints::matches(d, &hints));
        }
    }
    let skip_read_only = ctx
        .node
        .internal_info_value("agent_erase_skip_read_only")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut out = Vec::new();
    for disk in disks {
        let path = std::path::Path::new(&disk.disk.name);
        let probe = crate::disk::devices::probe(path).ok();
        if probe.as_ref().and_then(|p| p.label.as_deref()) == Some(VIRTUAL_MEDIA_LABEL) {
            tracing::info!(device = %disk.disk.name, "virtual media device skipped");
            continue;
        }
        if probe.as_ref().and_then(|p| p.fstype.as_deref()) == Some("linux_raid_member") {
            tracing::warn!(device = %disk.disk.name, "software RAID member skipped: left for RAID cleaning");
            continue;
        }
        let ro = std::fs::read_to_string(format!("/sys/block/{}/ro", disk.kname)).is_ok_and(|v| v.trim() == "1")
            || crate::blockdev::path_is_read_only(path).unwrap_or(false);
        match (ro, full, skip_read_only) {
            (false, _, _) => out.push(disk),
            (true, false, _) => {
                tracing::info!(device = %disk.disk.name, "read-only device skipped by the metadata erase")
            }
            (true, true, true) => tracing::warn!(device = %disk.disk.name, "read-only device skipped"),
            (true, true, false) => {
                return Err(failed(
                    ErrorKind::BlockDeviceErase,
                    format!(
                        "{} is read-only and agent_erase_skip_read_only is not set",
                        disk.disk.name
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// How `erase_devices` overwrites a disk: upstream's `driver_internal_info` keys.
#[derive(Debug, Clone, Copy)]
struct EraseSettings {
    passes: u32,
    zeroize: bool,
    policy: crate::disk::secure_erase::Policy,
    continue_if_failed: bool,
}

impl EraseSettings {
    fn of(ctx: &StepContext) -> EraseSettings {
        let flag = |key: &str, default: bool| {
            ctx.node
                .internal_info_value(key)
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        EraseSettings {
            passes: ctx
                .node
                .internal_info_value("agent_erase_devices_iterations")
                .and_then(Value::as_u64)
                .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            zeroize: flag("agent_erase_devices_zeroize", true),
            policy: crate::disk::secure_erase::Policy {
                nvme: flag("agent_enable_nvme_secure_erase", true),
                ata: flag("agent_enable_ata_secure_erase", true),
            },
            continue_if_failed: flag("agent_continue_if_secure_erase_failed", false)
                || flag("agent_continue_if_ata_erase_failed", false),
        }
    }
}

/// The generic full erase of one disk (firmware erase, else overwrite), on a blocking thread.
async fn overwrite(disk: &crate::disk::devices::BlockDevice, ctx: &StepContext) -> Result<(), AgentError> {
    let settings = EraseSettings::of(ctx);
    let (disk, devices, progress) = (disk.clone(), ctx.devices.clone(), ctx.progress.clone());
    let name = disk.disk.name.clone();
    on_blocking_thread(ErrorKind::BlockDeviceErase, &format!("erase of {name}"), move || {
        crate::disk::erase::erase_device(
            &disk,
            &devices,
            (settings.passes, settings.zeroize),
            settings.policy,
            settings.continue_if_failed,
            &progress,
        )
    })
    .await
}

/// Run `work` (disk tools and ioctls that run to the end once started) on a blocking thread;
/// a panic there is an error of `kind` saying `what` crashed.
async fn on_blocking_thread<T: Send + 'static>(
    kind: ErrorKind,
    what: &str,
    work: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(AgentError::new(kind, format!("{what} crashed: {e}"))))
}

/// One disk of a full erase: the managers in rank order through `erase_block_device` (the
/// generic manager's own answer is [`overwrite`]), as upstream's `erase_devices` does.
async fn erase_one(disk: crate::disk::devices::BlockDevice, ctx: StepContext) -> Result<(), AgentError> {
    ctx.devices.check_destructive(&disk.disk.name)?;
    if ctx.managers.ranked().is_empty() {
        return overwrite(&disk, &ctx).await;
    }
    ctx.managers
        .dispatch("erase_block_device", |manager| {
            let (disk, ctx) = (disk.clone(), ctx.clone());
            async move { manager.erase_block_device(&disk, &ctx).await }
        })
        .await
}

/// Erase every erasable disk, `disk_erasure_concurrency` at a time; errors are collected.
async fn erase_all(ctx: &StepContext, full: bool) -> Result<Value, ManagerError> {
    let disks = erasable(ctx, full)?;
    let concurrency = ctx
        .node
        .internal_info_value("disk_erasure_concurrency")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 64) as usize;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut jobs = Vec::new();
    for disk in disks {
        let (ctx, slots) = (ctx.clone(), std::sync::Arc::clone(&slots));
        jobs.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let name = disk.disk.name.clone();
            let outcome = if full {
                erase_one(disk, ctx).await
            } else {
                let devices = ctx.devices.clone();
                on_blocking_thread(ErrorKind::BlockDeviceErase, &format!("erase of {name}"), move || {
                    crate::disk::erase::erase_metadata(&disk, &devices)
                })
                .await
            };
            (name, outcome)
        }));
    }
    let mut result = serde_json::Map::new();
    let mut errors = Vec::new();
    for job in jobs {
        let (name, outcome) = job
            .await
            .map_err(|e| failed(ErrorKind::BlockDeviceErase, e.to_string()))?;
        match outcome {
            Ok(()) => drop(result.insert(name, Value::Null)),
            Err(e) if e.kind == ErrorKind::ProtectedDevice => return Err(ManagerError::Failed(e)),
            Err(e) => errors.push(e.details),
        }
    }
    ctx.progress.clear();
    if errors.is_empty() {
        Ok(if full { Value::Object(result) } else { Value::Null })
    } else {
        Err(failed(ErrorKind::BlockDeviceErase, errors.join("; ")))
    }
}

/// A `raid` step: software RAID built, applied or deleted on a blocking thread (mdadm and sfdisk
/// run to the end once started).
///
/// `create_configuration` builds the part of the target the conductor asked for
/// (`driver_internal_info.target_raid_config`, which Ironic and rivet-conductor fill from
/// `create_root_volume`/`create_nonroot_volumes`), else the node's whole `target_raid_config`;
/// IPA reads only the latter, so it builds the whole target whatever the step's arguments say.
/// `apply_configuration` builds its `raid_config` argument, after deleting what exists unless
/// `delete_existing` is false; the configuration is checked before anything is deleted.
async fn software_raid(ctx: &StepContext, name: &str) -> Result<Value, ManagerError> {
    use crate::disk::software_raid::{build, delete, plan};
    let non_empty = |v: &&Value| v.as_object().is_some_and(|o| !o.is_empty());
    let config = match name {
        "create_configuration" => Some(
            ctx.node
                .internal_info_value("target_raid_config")
                .filter(non_empty)
                .or_else(|| ctx.node.extra.get("target_raid_config").filter(non_empty))
                .cloned()
                .ok_or_else(|| failed(ErrorKind::SoftwareRaid, "the node has no target_raid_config to build"))?,
        ),
        "apply_configuration" => Some(ctx.args.get("raid_config").cloned().ok_or_else(|| {
            failed(
                ErrorKind::InvalidCommandParams,
                "apply_configuration needs the argument raid_config",
            )
        })?),
        _ => None,
    };
    let delete_existing = rivet_common::steps::bool_arg(Some(&ctx.args), "delete_existing", true).map_err(|other| {
        failed(
            ErrorKind::InvalidCommandParams,
            format!("delete_existing must be a boolean, got {other}"),
        )
    })?;
    let delete_first = name == "apply_configuration" && delete_existing;
    let (node, devices, progress) = (ctx.node.clone(), ctx.devices.clone(), ctx.progress.clone());
    let work = move || -> Result<Value, AgentError> {
        let report = |message: String| progress.report(message);
        let disks = devices.list_disks();
        let capabilities = node.property("capabilities").and_then(Value::as_str);
        let Some(config) = config else {
            return delete(&disks, &devices, &report);
        };
        let planned = plan(&config, &disks, capabilities)?;
        if delete_first {
            delete(&disks, &devices, &report)?;
        }
        build(&planned, &config, &disks, &devices, &report)
    };
    on_blocking_thread(ErrorKind::SoftwareRaid, name, work)
        .await
        .map_err(ManagerError::Failed)
}

/// The `write_image` deploy step: `standby.prepare_image` run directly, answering its result.
async fn write_image(ctx: &StepContext) -> Result<Value, ManagerError> {
    let writer = ctx.image_writer.clone().ok_or_else(|| {
        failed(
            ErrorKind::CommandExecution,
            "write_image needs the agent's image writer",
        )
    })?;
    let info = ctx
        .args
        .get("image_info")
        .cloned()
        .ok_or_else(|| failed(ErrorKind::InvalidCommandParams, "write_image needs image_info"))?;
    let info: rivet_common::image::ImageInfo = serde_json::from_value(info)
        .map_err(|e| failed(ErrorKind::InvalidCommandParams, format!("image_info: {e}")))?;
    let message = writer
        .write_image(info, ctx.args.get("configdrive"), ctx.progress.clone())
        .await?;
    Ok(serde_json::json!({ "result": format!("prepare_image: {message}") }))
}

/// BMC addresses through `ipmitool` when an IPMI device exists (upstream: channels 1–11).
async fn detect_bmc() -> Bmc {
    let has_device = ["/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !has_device {
        return Bmc::default();
    }
    let mut bmc = Bmc {
        v4: Some("0.0.0.0".into()),
        v6: None,
        mac: None,
    };
    for channel in 1..=11 {
        let Ok(text) = run_tool(
            "ipmitool",
            &["lan".into(), "print".into(), channel.to_string()],
            Duration::from_secs(10),
        )
        .await
        else {
            continue;
        };
        let field = |name: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_owned())
            })
        };
        if let Some(ip) = field("IP Address").filter(|ip| ip != "0.0.0.0" && ip.parse::<std::net::Ipv4Addr>().is_ok()) {
            bmc.v4 = Some(ip);
            bmc.mac = field("MAC Address").filter(|m| m != "00:00:00:00:00:00");
            break;
        }
    }
    bmc
}

#[async_trait]
impl HardwareManager for GenericHardwareManager {
    fn class_name(&self) -> String {
        "GenericHardwareManager".into()
    }

    fn name(&self) -> String {
        "generic_hardware_manager".into()
    }

    fn version(&self) -> String {
        "1.2".into()
    }

    async fn erase_block_device(
        &self,
        disk: &crate::disk::devices::BlockDevice,
        ctx: &StepContext,
    ) -> Result<(), ManagerError> {
        overwrite(disk, ctx).await.map_err(ManagerError::Failed)
    }

    async fn evaluate_hardware_support(&self) -> SupportLevel {
        SupportLevel::GENERIC
    }

    async fn get_steps(&self, step_type: StepType, _node: &Node, _ports: &[Port]) -> Result<Vec<Step>, ManagerError> {
        Ok(generic_steps(step_type))
    }

    async fn execute(&self, name: &str, ctx: StepContext) -> Result<Value, ManagerError> {
        match name {
            "erase_pstore" => self.erase_pstore(&ctx).await,
            "clean_uefi_nvram" => self.clean_uefi_nvram(&ctx).await,
            "burnin_cpu" => self.burnin(&ctx, "cpu").await,
            "burnin_memory" => self.burnin(&ctx, "memory").await,
            // Secure erase (NVMe format, ATA security erase) is not implemented yet: the
            // express variant erases metadata, the full one overwrites.
            "erase_devices_metadata" | "erase_devices_express" => erase_all(&ctx, false).await,
            "erase_devices" => erase_all(&ctx, true).await,
            "write_image" => write_image(&ctx).await,
            "create_configuration" | "delete_configuration" | "apply_configuration" => software_raid(&ctx, name).await,
            _ => Err(ManagerError::NotImplemented),
        }
    }

    async fn list_hardware_info(&self, devices: &DeviceView) -> Result<Inventory, ManagerError> {
        let bmc = self.bmc().await;
        let devices = devices.clone();
        let bootif = self.bootif.clone();
        let mut inventory = tokio::task::spawn_blocking(move || {
            let disks = devices.list_disks().into_iter().map(|d| d.disk).collect();
            inventory::collect(&SysRoot::default(), bootif.as_deref(), disks)
        })
        .await
        .map_err(|e| {
            failed(
                ErrorKind::CommandExecution,
                format!("inventory collection crashed: {e}"),
            )
        })?;
        inventory.bmc_address = bmc.v4;
        inventory.bmc_v6address = bmc.v6;
        inventory.bmc_mac = bmc.mac;
        if let Some(timeout) = self.lldp_timeout {
            // Upstream leaves `lldp` null for an interface the capture did not cover.
            let mut heard = inventory::lldp::collect(&SysRoot::default(), timeout).await;
            for interface in &mut inventory.interfaces {
                interface.lldp = heard.remove(&interface.name);
            }
        }
        Ok(inventory)
    }
}
