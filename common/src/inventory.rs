//! The hardware inventory (`poll.get_hardware_info`, inspection data), in IPA's field names.

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// The whole inventory.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// Network interfaces that have a usable MAC.
    pub interfaces: Vec<NetworkInterface>,
    /// CPU summary.
    pub cpu: Cpu,
    /// Disks that can hold an OS.
    pub disks: Vec<Disk>,
    /// Memory totals.
    pub memory: Memory,
    /// IPv4 address of the BMC, `0.0.0.0` when none is set, null when unknown.
    pub bmc_address: Option<String>,
    /// IPv6 address of the BMC, `::/0` when none is set, null when unknown.
    pub bmc_v6address: Option<String>,
    /// MAC of the BMC; the key is omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_mac: Option<String>,
    /// DMI identity.
    pub system_vendor: SystemVendor,
    /// How this boot happened.
    pub boot: Boot,
    /// Host name.
    pub hostname: String,
    /// Keys added by newer agents.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Kernel name (`eno1`).
    pub name: String,
    /// Permanent MAC address when known, else the current one.
    pub mac_address: String,
    /// First IPv4 address.
    pub ipv4_address: Option<String>,
    /// First IPv6 address.
    pub ipv6_address: Option<String>,
    /// Link detected.
    pub has_carrier: bool,
    /// Raw LLDP TLVs `[type, hex]`, when collected.
    pub lldp: Option<Vec<(u32, String)>>,
    /// PCI vendor id (`0x8086`).
    pub vendor: Option<String>,
    /// PCI device id.
    pub product: Option<String>,
    /// InfiniBand client id.
    pub client_id: Option<String>,
    /// BIOS device name.
    pub biosdevname: Option<String>,
    /// Link speed.
    pub speed_mbps: Option<u64>,
    /// Bus address of the device (`0000:3b:00.0`).
    pub pci_address: Option<String>,
    /// Kernel driver.
    pub driver: Option<String>,
}

/// CPU summary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// Model name.
    pub model_name: Option<String>,
    /// Maximum (or current) MHz, as text.
    pub frequency: Option<String>,
    /// Logical CPUs.
    pub count: u32,
    /// `x86_64`, `aarch64`.
    pub architecture: String,
    /// CPU flags.
    pub flags: Vec<String>,
    /// Sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_count: Option<u32>,
}

/// One disk.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Disk {
    /// Device path (`/dev/sda`).
    pub name: String,
    /// Model string.
    pub model: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Spinning media.
    pub rotational: bool,
    /// World wide name.
    pub wwn: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// WWN with extension.
    pub wwn_with_extension: Option<String>,
    /// WWN vendor extension.
    pub wwn_vendor_extension: Option<String>,
    /// SCSI host:channel:target:lun.
    pub hctl: Option<String>,
    /// `/dev/disk/by-path/...` link.
    pub by_path: Option<String>,
    /// Logical sector size in bytes.
    pub logical_sectors: Option<u32>,
    /// Physical sector size in bytes.
    pub physical_sectors: Option<u32>,
    /// Transport (`sata`, `nvme`, `usb`).
    pub tran: Option<String>,
}

/// Memory totals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Bytes usable by the OS.
    pub total: u64,
    /// Installed MiB (DIMMs).
    pub physical_mb: Option<u64>,
}

/// DMI identity of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SystemVendor {
    /// Product name.
    pub product_name: String,
    /// Serial number.
    pub serial_number: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Firmware.
    pub firmware: Firmware,
}

/// System firmware.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Firmware {
    /// Vendor.
    pub vendor: String,
    /// Version.
    pub version: String,
    /// Release date.
    pub build_date: String,
}

/// How this boot happened.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Boot {
    /// `uefi` or `bios`.
    pub current_boot_mode: String,
    /// The raw `BOOTIF` kernel parameter (`01-aa-bb-cc-dd-ee-ff`).
    pub pxe_interface: Option<String>,
}
