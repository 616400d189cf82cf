//! `noop-mgmt` management, as Ironic's: boot devices are not set, because the machine is
//! configured to always try the network first (and the boot interface decides what the network
//! boots: the ramdisk, or the local disk). For BMCs that cannot set a boot device, such as
//! virtual BMCs in labs.

use async_trait::async_trait;

use crate::drivers::{DriverError, Interface, Management};
use crate::model::NodeRecord;

/// Accepts any supported boot device and does nothing.
#[derive(Debug)]
pub struct NoopManagement;

#[async_trait]
impl Interface for NoopManagement {
    fn name(&self) -> &'static str {
        "noop-mgmt"
    }
}

#[async_trait]
impl Management for NoopManagement {
    async fn set_boot_device(&self, node: &mut NodeRecord, device: &str, _persistent: bool) -> Result<(), DriverError> {
        if !self.supported_boot_devices().contains(&device) {
            return Err(DriverError::Invalid(format!("Invalid boot device {device} specified.")));
        }
        tracing::debug!(node = %node.uuid, device, "noop-mgmt: boot device left to the machine's boot order");
        Ok(())
    }

    fn supported_boot_devices(&self) -> Vec<&'static str> {
        vec!["pxe", "disk", "cdrom"]
    }
}
