//! `redfish-virtual-media` boot: the deploy ramdisk on a per-node ISO (kernel command line
//! inside, see [`super::iso`]) that the BMC fetches from the conductor's http root and
//! inserts as a virtual CD; the machine then boots the CD once. After deployment the CD is
//! ejected and the machine boots its disk.
//!
//! `driver_info`: the `redfish_*` keys (see [`crate::drivers::bmc::redfish`]), `deploy_kernel`,
//! `deploy_ramdisk`, `kernel_append_params`. The conductor needs `http_root` and, when BMCs
//! reach it by another address than machines do, `external_http_url`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{assets, iso as boot_iso};
use crate::drivers::bmc::redfish::Redfish;
use crate::drivers::bmc::virtual_media;
use crate::drivers::{Boot, DriverError, Interface, Task};
use crate::model::NodeRecord;

/// The `redfish-virtual-media` boot interface.
#[derive(Debug)]
pub struct RedfishVirtualMediaBoot;

#[async_trait]
impl Interface for RedfishVirtualMediaBoot {
    fn name(&self) -> &'static str {
        "redfish-virtual-media"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        crate::drivers::bmc::redfish::check_driver_info(node)?;
        assets::check_deploy_assets(node, "virtual media")
    }
}

#[async_trait]
impl Boot for RedfishVirtualMediaBoot {
    fn ramdisk_boot_device(&self) -> &'static str {
        "cdrom"
    }

    async fn prepare_ramdisk(&self, task: &mut Task, params: &BTreeMap<String, String>) -> Result<(), DriverError> {
        let mut params = params.clone();
        params.insert("boot_method".into(), "vmedia".into());
        let bootif = task.ports.first().map(|p| assets::bootif(&p.address));
        let cmdline = assets::kernel_command_line(&task.node, &params, bootif.as_deref())?;
        let bmc = Redfish::for_node(&task.node)?;
        let files = &task.settings.boot_files;
        boot_iso::build(&task.node, files, &cmdline).await?;
        let url = format!(
            "{}/{}",
            files.external_http_url.trim_end_matches('/'),
            boot_iso::file_name(&task.node)
        );
        virtual_media::insert(&bmc, "cdrom", &url).await?;
        tracing::info!(node = %task.node.uuid, url, "deploy ISO inserted as virtual CD");
        Ok(())
    }

    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        virtual_media::eject(&Redfish::for_node(&task.node)?, Some("cdrom")).await?;
        boot_iso::remove(&task.node, &task.settings.boot_files).await;
        Ok(())
    }

    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        self.clean_up_ramdisk(task).await
    }
}
