//! Hardware inventory from sysfs and procfs, in IPA's shape (reference §6.7).
//!
//! Everything is read natively from files under a root directory (`/` in production, a fake
//! tree in tests): no `lshw`, `lscpu` or `lsblk` text is parsed. Collection is synchronous and
//! touches only small files; callers run it on a blocking thread.

pub mod ethtool;
pub mod lldp;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rivet_common::inventory::{Boot, Cpu, Disk, Firmware, Inventory, Memory, NetworkInterface, SystemVendor};

/// Where to read the machine from.
#[derive(Debug, Clone)]
pub struct SysRoot(pub PathBuf);

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot(PathBuf::from("/"))
    }
}

impl SysRoot {
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> Option<String> {
        read_trimmed(&self.path(rel))
    }
}

/// The trimmed text of a small file, `None` when unreadable or blank.
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn link_basename(path: &Path) -> Option<String> {
    fs::read_link(path)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The names in `dir`, sorted (empty if it cannot be read).
pub(crate) fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Names of the network interfaces upstream lists (IPA 13 `netutils.list_interfaces`), sorted:
/// physical (a `device` link), bonds and VLANs (`<name>.<digits>`).
pub fn interface_names(root: &SysRoot) -> Vec<String> {
    let net = root.path("sys/class/net");
    sorted_entries(&net)
        .into_iter()
        .filter(|name| {
            let dir = net.join(name);
            let is_vlan = name
                .rsplit_once('.')
                .is_some_and(|(_, id)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
            dir.join("device").exists() || dir.join("bonding").is_dir() || is_vlan
        })
        .collect()
}

/// Network interfaces as upstream lists them: physical (a `device` link), bonds and VLANs;
/// `lldp` is left empty (see [`lldp`]).
pub fn interfaces(root: &SysRoot) -> Vec<NetworkInterface> {
    let net = root.path("sys/class/net");
    let addrs: Vec<(String, std::net::IpAddr)> = if root.0 == Path::new("/") {
        local_addresses()
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for name in interface_names(root) {
        let dir = net.join(&name);
        let live = root.0 == Path::new("/");
        let permanent = if live { ethtool::permanent_mac(&name) } else { None };
        let Some(mac) = permanent
            .or_else(|| read_trimmed(&dir.join("address")))
            .map(|m| m.to_ascii_lowercase())
        else {
            continue;
        };
        // Upstream treats locally administered `fa:` MACs (HPE internal NICs, Neutron's
        // fa:16:3e) as no MAC at all: such interfaces are neither reported nor used for lookup.
        if mac == "00:00:00:00:00:00" || mac.starts_with("fa:") {
            continue;
        }
        let first = |v4: bool| {
            addrs
                .iter()
                .find(|(n, ip)| n == &name && ip.is_ipv4() == v4)
                .map(|(_, ip)| ip.to_string())
        };
        out.push(NetworkInterface {
            mac_address: mac,
            ipv4_address: first(true),
            ipv6_address: first(false),
            has_carrier: read_trimmed(&dir.join("carrier")).as_deref() == Some("1"),
            lldp: None,
            vendor: read_trimmed(&dir.join("device/vendor")),
            product: read_trimmed(&dir.join("device/device")),
            client_id: None,
            biosdevname: None,
            speed_mbps: read_trimmed(&dir.join("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s > 0)
                .map(|s| s as u64),
            pci_address: link_basename(&dir.join("device")),
            driver: link_basename(&dir.join("device/driver")),
            name,
        });
    }
    out
}

/// (interface, address) pairs of this machine, link-local IPv6 excluded.
fn local_addresses() -> Vec<(String, std::net::IpAddr)> {
    let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    ifaddrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let ip: std::net::IpAddr = if let Some(v4) = addr.as_sockaddr_in() {
                v4.ip().into()
            } else {
                let v6 = addr.as_sockaddr_in6()?.ip();
                if v6.is_unicast_link_local() {
                    return None;
                }
                v6.into()
            };
            Some((ifa.interface_name, ip))
        })
        .collect()
}

/// CPU summary from `/proc/cpuinfo` and cpufreq.
pub fn cpu(root: &SysRoot) -> Cpu {
    let info = root.read("proc/cpuinfo").unwrap_or_default();
    let mut count = 0u32;
    let mut sockets = BTreeSet::new();
    let (mut model, mut mhz, mut flags) = (None, None, Vec::new());
    for line in info.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => count += 1,
            "physical id" => drop(sockets.insert(value.to_owned())),
            "model name" if model.is_none() => model = Some(value.to_owned()),
            "cpu MHz" if mhz.is_none() => mhz = Some(value.to_owned()),
            "flags" | "Features" if flags.is_empty() => flags = value.split_whitespace().map(str::to_owned).collect(),
            _ => {}
        }
    }
    let max_mhz = root
        .read("sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .and_then(|khz| khz.parse::<f64>().ok())
        .map(|khz| format!("{:.4}", khz / 1000.0));
    Cpu {
        model_name: model,
        frequency: Some(max_mhz.or(mhz).unwrap_or_default()),
        count: count.max(1),
        architecture: std::env::consts::ARCH.to_owned(),
        flags,
        socket_count: Some(sockets.len().max(1) as u32),
    }
}

/// Memory: total from `/proc/meminfo`; installed size from the DMI memory-device records, or,
/// on machines without SMBIOS tables (some virtual machines and containers), from the online
/// memory blocks as `lshw` (which IPA reads) counts them.
pub fn memory(root: &SysRoot) -> Memory {
    let total = root
        .read("proc/meminfo")
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kib| kib * 1024)
        .unwrap_or_default();
    Memory {
        total,
        physical_mb: dmi_memory_mb(root).or_else(|| memory_blocks_mb(root)),
    }
}

/// Online memory blocks × their size (`/sys/devices/system/memory`, block size in hex), in MiB.
fn memory_blocks_mb(root: &SysRoot) -> Option<u64> {
    let dir = root.path("sys/devices/system/memory");
    let block = u64::from_str_radix(
        read_trimmed(&dir.join("block_size_bytes"))?.trim_start_matches("0x"),
        16,
    )
    .ok()?;
    let online = sorted_entries(&dir)
        .into_iter()
        .filter(|n| n.starts_with("memory"))
        .filter(|n| read_trimmed(&dir.join(n).join("online")).as_deref() == Some("1"))
        .count() as u64;
    let mb = online * block / (1 << 20);
    (mb > 0).then_some(mb)
}

/// Sum of installed DIMMs from SMBIOS type 17 records (`/sys/firmware/dmi/entries/17-*/raw`).
fn dmi_memory_mb(root: &SysRoot) -> Option<u64> {
    let dir = root.path("sys/firmware/dmi/entries");
    let mut total = 0u64;
    let mut found = false;
    for name in sorted_entries(&dir).into_iter().filter(|n| n.starts_with("17-")) {
        let Ok(raw) = fs::read(dir.join(&name).join("raw")) else {
            continue;
        };
        if raw.len() < 0x0e {
            continue;
        }
        let size = u16::from_le_bytes([raw[0x0c], raw[0x0d]]);
        let mb = match size {
            0 | 0xffff => 0,
            0x7fff if raw.len() >= 0x20 => {
                u64::from(u32::from_le_bytes([raw[0x1c], raw[0x1d], raw[0x1e], raw[0x1f]]) & 0x7fff_ffff)
            }
            s if s & 0x8000 != 0 => u64::from(s & 0x7fff) / 1024,
            s => u64::from(s),
        };
        total += mb;
        found = true;
    }
    (found && total > 0).then_some(total)
}

/// One block device by kernel name, if it has a size.
pub fn disk(root: &SysRoot, name: &str) -> Option<Disk> {
    let dir = root.path("sys/block").join(name);
    let sectors: u64 = read_trimmed(&dir.join("size"))?.parse().ok()?;
    if sectors == 0 {
        return None;
    }
    let hctl = sorted_entries(&dir.join("device/scsi_device")).into_iter().next();
    let tran = if name.starts_with("nvme") {
        Some("nvme".to_owned())
    } else {
        fs::canonicalize(dir.join("device")).ok().and_then(|p| {
            let p = p.to_string_lossy();
            if p.contains("/usb") {
                Some("usb".to_owned())
            } else if p.contains("/ata") {
                Some("sata".to_owned())
            } else {
                None
            }
        })
    };
    Some(Disk {
        name: format!("/dev/{name}"),
        model: read_trimmed(&dir.join("device/model")),
        size: sectors * 512,
        rotational: read_trimmed(&dir.join("queue/rotational")).as_deref() == Some("1"),
        wwn: read_trimmed(&dir.join("device/wwid")).or_else(|| read_trimmed(&dir.join("wwid"))),
        serial: read_trimmed(&dir.join("device/serial")),
        vendor: read_trimmed(&dir.join("device/vendor")),
        wwn_with_extension: None,
        wwn_vendor_extension: None,
        hctl,
        by_path: None,
        logical_sectors: read_trimmed(&dir.join("queue/logical_block_size")).and_then(|s| s.parse().ok()),
        physical_sectors: read_trimmed(&dir.join("queue/physical_block_size")).and_then(|s| s.parse().ok()),
        tran,
    })
}

/// DMI identity from `/sys/class/dmi/id`.
pub fn system_vendor(root: &SysRoot) -> SystemVendor {
    let id = |f: &str| root.read(&format!("sys/class/dmi/id/{f}")).unwrap_or_default();
    SystemVendor {
        product_name: id("product_name"),
        serial_number: id("product_serial"),
        manufacturer: id("sys_vendor"),
        firmware: Firmware {
            vendor: id("bios_vendor"),
            version: id("bios_version"),
            build_date: id("bios_date"),
        },
    }
}

/// Boot mode and the PXE interface parameter.
pub fn boot(root: &SysRoot, bootif: Option<&str>) -> Boot {
    Boot {
        current_boot_mode: if root.path("sys/firmware/efi").exists() {
            "uefi"
        } else {
            "bios"
        }
        .to_owned(),
        pxe_interface: bootif.map(str::to_owned),
    }
}

/// The whole inventory of the machine under `root`, with the disks the device view allows.
pub fn collect(root: &SysRoot, bootif: Option<&str>, disks: Vec<Disk>) -> Inventory {
    Inventory {
        interfaces: interfaces(root),
        cpu: cpu(root),
        disks,
        memory: memory(root),
        bmc_address: None,
        bmc_v6address: None,
        bmc_mac: None,
        system_vendor: system_vendor(root),
        boot: boot(root, bootif),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    #[test]
    fn reads_a_fake_machine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(
            r,
            "proc/cpuinfo",
            "processor : 0\nphysical id : 0\nmodel name : Test CPU\ncpu MHz : 2000.000\nflags : fpu sse\n\nprocessor : 1\nphysical id : 0\n",
        );
        write(r, "proc/meminfo", "MemTotal:       2048 kB\nMemFree: 1 kB\n");
        write(r, "sys/class/net/eth0/address", "52:54:00:AA:00:01\n");
        write(r, "sys/class/net/eth0/carrier", "1\n");
        write(r, "sys/class/net/eth0/device/vendor", "0x1af4\n");
        write(r, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
        write(r, "sys/block/vda/size", "2097152\n");
        write(r, "sys/block/vda/queue/rotational", "0\n");
        write(r, "sys/block/vda/queue/logical_block_size", "512\n");
        write(r, "sys/block/sdb/size", "0\n");
        write(r, "sys/class/dmi/id/sys_vendor", "QEMU\n");
        write(r, "sys/class/net/eth1/address", "fa:16:3e:00:00:01\n");
        write(r, "sys/class/net/eth1/device/vendor", "0x1af4\n");
        let root = SysRoot(r.to_owned());
        let disks = ["vda", "sdb"].iter().filter_map(|n| disk(&root, n)).collect();
        let inv = collect(&root, Some("01-52-54-00-aa-00-01"), disks);
        assert_eq!(inv.cpu.count, 2);
        assert_eq!(inv.cpu.model_name.as_deref(), Some("Test CPU"));
        assert_eq!(inv.cpu.flags, vec!["fpu", "sse"]);
        assert_eq!(inv.cpu.frequency.as_deref(), Some("2000.000"));
        assert_eq!(inv.memory.total, 2048 * 1024);
        assert_eq!(
            inv.interfaces.len(),
            1,
            "lo has no device link; fa: MACs are dropped as upstream"
        );
        assert_eq!(inv.interfaces[0].mac_address, "52:54:00:aa:00:01");
        assert!(inv.interfaces[0].has_carrier);
        assert_eq!(inv.disks.len(), 1, "empty disks are skipped");
        assert_eq!(inv.disks[0].size, 1 << 30);
        assert_eq!(inv.system_vendor.manufacturer, "QEMU");
        assert_eq!(inv.boot.current_boot_mode, "bios");
        assert_eq!(inv.boot.pxe_interface.as_deref(), Some("01-52-54-00-aa-00-01"));
        assert_eq!(inv.memory.physical_mb, None, "no SMBIOS records and no memory blocks");
    }

    #[test]
    fn installed_memory_without_smbios_comes_from_the_online_memory_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(r, "sys/devices/system/memory/block_size_bytes", "8000000\n");
        for (i, online) in [(0, "1"), (1, "1"), (2, "0"), (3, "1")] {
            write(r, &format!("sys/devices/system/memory/memory{i}/online"), online);
        }
        // Three online blocks of 128 MiB, as lshw counts them (IPA reads lshw).
        assert_eq!(memory(&SysRoot(r.to_owned())).physical_mb, Some(384));
        write(r, "sys/firmware/dmi/entries/17-0/raw", &"x".repeat(0x0c));
        let mut raw = vec![0u8; 0x20];
        raw[0x0c..0x0e].copy_from_slice(&1024u16.to_le_bytes());
        fs::write(r.join("sys/firmware/dmi/entries/17-0/raw"), raw).expect("write");
        assert_eq!(
            memory(&SysRoot(r.to_owned())).physical_mb,
            Some(1024),
            "SMBIOS wins when present"
        );
    }
}
