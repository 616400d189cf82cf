//! `redfish` management: boot devices through the system's `Boot` override, and the virtual
//! media API (`/v1/nodes/{node}/vmedia`) through the BMC's virtual drives.

use async_trait::async_trait;
use serde_json::json;

use crate::drivers::bmc::redfish::{Redfish, check_driver_info};
use crate::drivers::bmc::virtual_media;
use crate::drivers::{DriverError, Interface, Management};
use crate::model::NodeRecord;

/// The Redfish `BootSourceOverrideTarget` for an Ironic boot device.
fn boot_target(device: &str) -> Option<&'static str> {
    Some(match device {
        "pxe" => "Pxe",
        "disk" => "Hdd",
        "cdrom" => "Cd",
        "bios" => "BiosSetup",
        _ => return None,
    })
}

/// Boot devices through the system's `Boot` override.
#[derive(Debug)]
pub struct RedfishManagement;

#[async_trait]
impl Interface for RedfishManagement {
    fn name(&self) -> &'static str {
        "redfish"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        check_driver_info(node)
    }
}

#[async_trait]
impl Management for RedfishManagement {
    async fn set_boot_device(&self, node: &mut NodeRecord, device: &str, persistent: bool) -> Result<(), DriverError> {
        let target = boot_target(device)
            .ok_or_else(|| DriverError::Invalid(format!("Invalid boot device {device} specified.")))?;
        let bmc = Redfish::for_node(node)?;
        let path = bmc.system_path().await?;
        let enabled = if persistent { "Continuous" } else { "Once" };
        bmc.patch(
            &path,
            &json!({"Boot": {"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}}),
        )
        .await
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        vec!["pxe", "disk", "cdrom", "bios"]
    }

    /// The service root's `Vendor`, else the system's `Manufacturer` (as Ironic's).
    async fn detect_vendor(&self, node: &NodeRecord) -> Result<Option<String>, DriverError> {
        let bmc = Redfish::for_node(node)?;
        if let Ok(root) = bmc.get("/redfish/v1/").await
            && let Some(vendor) = root["Vendor"].as_str().filter(|v| !v.is_empty())
        {
            return Ok(Some(vendor.to_owned()));
        }
        let (_, system) = bmc.system().await?;
        Ok(system["Manufacturer"]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned))
    }

    async fn get_virtual_media(&self, node: &NodeRecord) -> Result<Vec<serde_json::Value>, DriverError> {
        let bmc = Redfish::for_node(node)?;
        Ok(virtual_media::drives(&bmc)
            .await?
            .iter()
            .map(virtual_media::Drive::describe)
            .collect())
    }

    async fn attach_virtual_media(&self, node: &NodeRecord, device_type: &str, url: &str) -> Result<(), DriverError> {
        virtual_media::insert(&Redfish::for_node(node)?, device_type, url).await?;
        tracing::info!(node = %node.uuid, device_type, url, "virtual media attached");
        Ok(())
    }

    async fn detach_virtual_media(
        &self,
        node: &NodeRecord,
        device_types: Option<&[String]>,
    ) -> Result<(), DriverError> {
        let bmc = Redfish::for_node(node)?;
        match device_types {
            None => virtual_media::eject(&bmc, None).await?,
            Some(types) => {
                for device_type in types {
                    virtual_media::eject(&bmc, Some(device_type)).await?;
                }
            }
        }
        tracing::info!(node = %node.uuid, ?device_types, "virtual media detached");
        Ok(())
    }
}
