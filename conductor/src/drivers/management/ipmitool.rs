//! `ipmitool` management: boot devices through `ipmitool chassis bootdev`.

use async_trait::async_trait;

use crate::drivers::bmc::ipmitool::{check_driver_info, ipmitool};
use crate::drivers::{DriverError, Interface, Management};
use crate::model::NodeRecord;

/// Boot devices through `ipmitool chassis bootdev`.
#[derive(Debug)]
pub struct IpmiManagement;

#[async_trait]
impl Interface for IpmiManagement {
    fn name(&self) -> &'static str {
        "ipmitool"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        check_driver_info(node)
    }
}

#[async_trait]
impl Management for IpmiManagement {
    async fn set_boot_device(&self, node: &mut NodeRecord, device: &str, persistent: bool) -> Result<(), DriverError> {
        if !self.supported_boot_devices().contains(&device) {
            return Err(DriverError::Invalid(format!("Invalid boot device {device} specified.")));
        }
        let mut args = vec!["chassis", "bootdev", device];
        if persistent {
            args.push("options=persistent");
        }
        ipmitool(node, &args).await.map(|_| ())
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        vec!["pxe", "disk", "cdrom", "bios", "safe"]
    }

    /// `ipmitool mc info`'s "Manufacturer Name", lower-cased (as Ironic's).
    async fn detect_vendor(&self, node: &NodeRecord) -> Result<Option<String>, DriverError> {
        let out = ipmitool(node, &["mc", "info"]).await?;
        Ok(manufacturer(&out))
    }
}

fn manufacturer(mc_info: &str) -> Option<String> {
    mc_info
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Manufacturer Name"))
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .map(|v| v.trim().to_lowercase())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_vendor_is_the_manufacturer_name() {
        let out =
            "Device ID                 : 32\nManufacturer ID           : 674\nManufacturer Name         : DELL Inc\n";
        assert_eq!(super::manufacturer(out).as_deref(), Some("dell inc"));
        assert_eq!(super::manufacturer("Device ID : 1\n"), None);
    }
}
