//! The `usb-devices` collector (IPA 13 `inspector.collect_usb_devices`): USB devices that are
//! not hubs, storage, input, printers, audio/video or communication devices.
//!
//! Upstream asks `lshw` for its "generic" USB devices; Rivet reads `/sys/bus/usb/devices`
//! instead (no `lshw` in the ramdisk) and leaves out the classes `lshw` names otherwise, so the
//! lists agree on ordinary machines (a BMC's virtual keyboard is input, a KVM dongle generic).
//! `handle` is `lshw`'s `USB:<bus>:<device number>`.

use serde::Serialize;

use crate::inventory::{SysRoot, sorted_entries};

/// `data["usb_devices"]` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsbDevice {
    /// Product string of the device (`""` when it has none).
    pub product: String,
    /// Manufacturer string (`""` when none).
    pub vendor: String,
    /// `USB:<bus>:<device number>`.
    pub handle: String,
}

/// USB classes `lshw` reports as something other than "generic": audio, communications, HID,
/// printer, mass storage, hub, CDC data, video, wireless controller.
const NOT_GENERIC: &[&str] = &["01", "02", "03", "07", "08", "09", "0a", "0e", "e0"];

/// The generic USB devices under `root`, by sysfs name.
pub fn collect(root: &SysRoot) -> Vec<UsbDevice> {
    let base = root.0.join("sys/bus/usb/devices");
    let mut out = Vec::new();
    for name in sorted_entries(&base) {
        // `1-0:1.0` names an interface, not a device.
        if name.contains(':') {
            continue;
        }
        let dir = base.join(&name);
        let read = |file: &str| crate::inventory::read_trimmed(&dir.join(file));
        let (Some(bus), Some(dev)) = (read("busnum"), read("devnum")) else {
            continue;
        };
        let class = match read("bDeviceClass").map(|c| c.to_ascii_lowercase()) {
            // Class given per interface: the first interface's.
            Some(c) if c == "00" => sorted_entries(&dir)
                .into_iter()
                .filter(|i| i.starts_with(&format!("{name}:")))
                .find_map(|i| crate::inventory::read_trimmed(&dir.join(i).join("bInterfaceClass")))
                .map(|c| c.to_ascii_lowercase())
                .unwrap_or(c),
            Some(c) => c,
            None => continue,
        };
        if NOT_GENERIC.contains(&class.as_str()) {
            continue;
        }
        out.push(UsbDevice {
            product: read("product").unwrap_or_default(),
            vendor: read("manufacturer").unwrap_or_default(),
            handle: format!("USB:{bus}:{dev}"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspection::tests::write;

    #[test]
    fn only_generic_devices_are_listed() {
        let dir = tempfile::tempdir().expect("tmp");
        let r = dir.path();
        let dev = |name: &str, class: &str, product: Option<&str>| {
            let base = format!("sys/bus/usb/devices/{name}");
            write(r, &format!("{base}/busnum"), "1\n");
            write(r, &format!("{base}/devnum"), &format!("{}\n", name.len()));
            write(r, &format!("{base}/bDeviceClass"), &format!("{class}\n"));
            if let Some(p) = product {
                write(r, &format!("{base}/product"), &format!("{p}\n"));
                write(r, &format!("{base}/manufacturer"), "Example Corp\n");
            }
        };
        dev("usb1", "09", Some("xHCI Host Controller"));
        dev("1-1", "00", Some("Virtual Keyboard"));
        write(r, "sys/bus/usb/devices/1-1/1-1:1.0/bInterfaceClass", "03\n");
        dev("1-2", "ff", Some("Token"));
        dev("1-3", "00", None);
        write(r, "sys/bus/usb/devices/1-3/1-3:1.0/bInterfaceClass", "ff\n");
        dev("1-4", "08", Some("Stick"));
        write(r, "sys/bus/usb/devices/1-1:1.0/bInterfaceClass", "03\n");
        let got = serde_json::to_value(collect(&SysRoot(r.to_owned()))).expect("serialises");
        assert_eq!(
            got,
            serde_json::json!([
                {"product": "Token", "vendor": "Example Corp", "handle": "USB:1:3"},
                {"product": "", "vendor": "", "handle": "USB:1:3"},
            ])
        );
    }
}
