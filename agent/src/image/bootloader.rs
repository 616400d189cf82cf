//! `image.install_bootloader`: UEFI boot entries with `efibootmgr`, BIOS GRUB with the image's
//! own `grub-install` run in a chroot of its root file system.
//!
//! As upstream: a UEFI NVRAM entry is added when the ramdisk itself runs under UEFI and the disk
//! has an EFI system partition and `efibootmgr` is present (a mismatch with the requested boot
//! mode is only warned about); otherwise, for a partition image, GRUB is installed from the
//! image; whole-disk images (a `0x…` root id) keep their own boot loader. Everything mounted
//! here is a partition of the root device (already checked against the allowlist) and is
//! unmounted again, also on failure; firmware entries are only written inside a ramdisk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::{MntFlags, MsFlags};
use serde::Deserialize;

use super::partition::{self, Created};
use crate::disk::devices::DeviceView;
use crate::error::{AgentError, ErrorKind};
use crate::tools;

/// The EFI system partition's GPT type.
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// Label of the boot entries this agent creates (earlier ones are replaced).
const ENTRY_LABEL: &str = "rivet";

/// `image.install_bootloader` parameters, as Ironic sends them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Request {
    /// Root file system UUID (partition images) or MBR disk id `0x…` (whole-disk images).
    #[serde(default)]
    pub root_uuid: Option<String>,
    /// UUID of the EFI system partition.
    #[serde(default)]
    pub efi_system_part_uuid: Option<String>,
    /// PReP partition (ppc64; not supported here).
    #[serde(default)]
    pub prep_boot_part_uuid: Option<String>,
    /// `uefi` or `bios`.
    #[serde(default)]
    pub target_boot_mode: Option<String>,
    /// Report success even when installation fails.
    #[serde(default)]
    pub ignore_bootloader_failure: Option<bool>,
}

fn failed(what: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::CommandExecution, what.to_string())
}

fn run(tool: &str, args: &[&str]) -> Result<String, AgentError> {
    tools::run(ErrorKind::CommandExecution, tool, args, None)
}

/// A mount made here, undone when dropped.
struct Mounted {
    path: PathBuf,
    remove_dir: bool,
}

impl Mounted {
    /// Mount `source` on a fresh directory.
    fn fresh(source: &str, fstype: Option<&str>, flags: MsFlags) -> Result<Self, AgentError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "rivet-mnt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // The kernel does not guess file system types (mount(8) asks blkid): neither do we.
        let fstype = match fstype {
            Some(t) => t.to_owned(),
            None => crate::disk::devices::probe(Path::new(source))
                .ok()
                .and_then(|p| p.fstype)
                .ok_or_else(|| failed(format!("{source} holds no file system to mount")))?,
        };
        std::fs::create_dir_all(&path).map_err(|e| failed(format!("creating {}: {e}", path.display())))?;
        match nix::mount::mount(Some(source), &path, Some(fstype.as_str()), flags, None::<&str>) {
            Ok(()) => Ok(Mounted { path, remove_dir: true }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(failed(format!("mounting {source}: {}", e.desc())))
            }
        }
    }

    /// Bind-mount a host directory (`/dev`, `/proc`, ...) into a mounted root.
    fn bind(host: &str, root: &Path) -> Result<Self, AgentError> {
        let path = root.join(host.trim_start_matches('/'));
        if !path.is_dir() {
            return Err(failed(format!("the image has no {host} directory to chroot with")));
        }
        nix::mount::mount(Some(host), &path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| failed(format!("bind-mounting {host}: {}", e.desc())))?;
        Ok(Mounted {
            path,
            remove_dir: false,
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if nix::mount::umount(&self.path).is_err() {
            // Something still holds it: detach so the disk can be released when it lets go.
            let _ = nix::mount::umount2(&self.path, MntFlags::MNT_DETACH);
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// The partition whose file system UUID or partition UUID is `uuid`.
fn by_uuid<'a>(parts: &'a [Created], uuid: &str) -> Option<&'a Created> {
    parts.iter().find(|p| {
        crate::disk::devices::probe(Path::new(&p.path)).is_ok_and(|found| {
            [found.uuid, found.part_uuid]
                .iter()
                .flatten()
                .any(|u| u.eq_ignore_ascii_case(uuid))
        })
    })
}

fn first_existing(root: &Path, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|c| root.join(c.trim_start_matches('/')).exists())
        .map(|c| (*c).to_owned())
}

/// Install the boot loader for the image on `disk`. Returns what was done.
pub fn install(disk: &str, request: &Request, devices: &DeviceView) -> Result<String, AgentError> {
    let outcome = install_strictly(disk, request, devices);
    match outcome {
        Err(e) if request.ignore_bootloader_failure.unwrap_or(false) => {
            tracing::error!(device = disk, error = %e, "boot loader installation failed; ignored as asked");
            Ok(format!(
                "boot loader installation failed and was ignored: {}",
                e.details
            ))
        }
        other => other,
    }
}

fn install_strictly(disk: &str, request: &Request, devices: &DeviceView) -> Result<String, AgentError> {
    if request.prep_boot_part_uuid.is_some() {
        return Err(failed("PReP boot partitions (ppc64) are not supported by this agent"));
    }
    let parts = partition::expose(disk)?;
    // As upstream: UEFI boot entries when the ramdisk itself runs under UEFI (a mismatch with
    // the target is only warned about); without an ESP or efibootmgr, carry on to GRUB.
    let target_uefi = request
        .target_boot_mode
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("uefi"));
    let running_uefi = Path::new("/sys/firmware/efi").exists();
    if target_uefi != running_uefi {
        tracing::warn!(
            target_uefi,
            running_uefi,
            "boot mode mismatch: the boot loader may not work as intended"
        );
    }
    if running_uefi && let Some(done) = uefi_entry(disk, &parts, request.efi_system_part_uuid.as_deref(), devices)? {
        return Ok(done);
    }
    match request.root_uuid.as_deref() {
        None | Some("") => Ok("no root UUID given: nothing to install".into()),
        Some(id) if id.starts_with("0x") => {
            Ok(format!("whole-disk image on {disk}: it boots with its own boot loader"))
        }
        Some(uuid) => {
            let root = by_uuid(&parts, uuid)
                .ok_or_else(|| failed(format!("no partition of {disk} has the root UUID {uuid}")))?;
            grub(disk, root)
        }
    }
}

/// GRUB for BIOS, with the image's own tools in a chroot of its root partition.
fn grub(disk: &str, root: &Created) -> Result<String, AgentError> {
    let mounted = Mounted::fresh(&root.path, None, MsFlags::empty())?;
    let install = first_existing(
        &mounted.path,
        &[
            "/usr/sbin/grub-install",
            "/usr/sbin/grub2-install",
            "/sbin/grub-install",
            "/usr/bin/grub-install",
        ],
    )
    .ok_or_else(|| {
        failed(format!(
            "the image in {} has no grub-install or grub2-install; it must bring its boot loader",
            root.path
        ))
    })?;
    let binds = ["/dev", "/proc", "/sys", "/run"]
        .iter()
        .map(|d| Mounted::bind(d, &mounted.path))
        .collect::<Result<Vec<_>, _>>()?;
    let target = mounted.path.to_string_lossy().into_owned();
    let grub2 = install.contains("grub2");
    run("chroot", &[&target, &install, "--target=i386-pc", disk])
        .map_err(|e| failed(format!("installing GRUB to {disk} failed: {}", e.details)))?;
    let (mkconfig, config) = if grub2 {
        ("grub2-mkconfig", "/boot/grub2/grub.cfg")
    } else {
        ("grub-mkconfig", "/boot/grub/grub.cfg")
    };
    run("chroot", &[&target, mkconfig, "-o", config])
        .map_err(|e| failed(format!("generating {config} on {} failed: {}", root.path, e.details)))?;
    drop(binds);
    drop(mounted);
    Ok(format!("GRUB installed to {disk} from {}", root.path))
}

/// A UEFI NVRAM entry for the image's boot loader on its EFI system partition.
fn uefi_entry(
    disk: &str,
    parts: &[Created],
    esp_uuid: Option<&str>,
    devices: &DeviceView,
) -> Result<Option<String>, AgentError> {
    let found = esp_uuid.and_then(|u| by_uuid(parts, u)).or_else(|| {
        parts.iter().find(|p| {
            crate::disk::devices::probe(Path::new(&p.path))
                .is_ok_and(|f| f.part_type.is_some_and(|t| t.eq_ignore_ascii_case(ESP_TYPE)))
        })
    });
    let Some(esp) = found else {
        tracing::info!(device = disk, "no EFI system partition: no UEFI boot entry to add");
        return Ok(None);
    };
    if !tools::exists("efibootmgr") {
        tracing::warn!("efibootmgr is not installed in this ramdisk: no UEFI boot entry added");
        return Ok(None);
    }
    // Boot entries live in the machine's firmware, not on the disk: only inside a ramdisk.
    devices.check_machine_changes("write UEFI boot entries")?;
    let loader = {
        let mounted = Mounted::fresh(&esp.path, Some("vfat"), MsFlags::MS_RDONLY)?;
        let vendors = std::fs::read_dir(mounted.path.join("EFI"))
            .map(|dir| {
                dir.flatten()
                    .filter(|e| !e.file_name().eq_ignore_ascii_case("BOOT"))
                    .map(|e| format!("/EFI/{}", e.file_name().to_string_lossy()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut candidates: Vec<String> = Vec::new();
        for name in ["shimx64.efi", "grubx64.efi"] {
            candidates.extend(vendors.iter().map(|v| format!("{v}/{name}")));
        }
        candidates.push("/EFI/BOOT/BOOTX64.EFI".into());
        let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
        first_existing(&mounted.path, &refs)
            .ok_or_else(|| failed(format!("no EFI boot loader found on {}", esp.path)))?
    };
    // Replace entries an earlier deploy made, then add ours first in the boot order.
    let listing = run("efibootmgr", &[])?;
    for line in listing.lines() {
        if let Some(rest) = line.strip_prefix("Boot")
            && let Some((num, label)) = rest.split_once(' ')
            && label.trim() == ENTRY_LABEL
        {
            run("efibootmgr", &["-q", "-b", num.trim_end_matches('*'), "-B"])?;
        }
    }
    let number = esp.number.to_string();
    let efi_path = loader.replace('/', "\\");
    run(
        "efibootmgr",
        &[
            "-q",
            "-c",
            "-d",
            disk,
            "-p",
            &number,
            "-w",
            "-L",
            ENTRY_LABEL,
            "-l",
            &efi_path,
        ],
    )?;
    Ok(Some(format!(
        "UEFI boot entry {ENTRY_LABEL} for {efi_path} on {}",
        esp.path
    )))
}
