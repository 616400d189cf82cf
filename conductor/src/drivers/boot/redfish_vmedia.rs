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
use serde_json::{Value, json};

use super::{assets, iso as boot_iso};
use crate::drivers::bmc::redfish::Redfish;
use crate::drivers::{Boot, DriverError, Interface, Task};
use crate::model::NodeRecord;

/// The node's virtual CD (or DVD) drive: its path and resource.
async fn virtual_cd(bmc: &Redfish) -> Result<(String, Value), DriverError> {
    let (_, system) = bmc.system().await?;
    // Newer BMCs list virtual media under the system, older ones under its managers.
    let mut collections: Vec<String> = system["VirtualMedia"]["@odata.id"]
        .as_str()
        .map(str::to_owned)
        .into_iter()
        .collect();
    if collections.is_empty() {
        for manager in system["Links"]["ManagedBy"].as_array().into_iter().flatten() {
            if let Some(path) = manager["@odata.id"].as_str() {
                let doc = bmc.get(path).await?;
                collections.extend(doc["VirtualMedia"]["@odata.id"].as_str().map(str::to_owned));
            }
        }
    }
    for collection in &collections {
        let doc = bmc.get(collection).await?;
        for member in doc["Members"].as_array().into_iter().flatten() {
            let Some(path) = member["@odata.id"].as_str() else {
                continue;
            };
            let device = bmc.get(path).await?;
            let types: Vec<&str> = device["MediaTypes"]
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if types.iter().any(|t| matches!(*t, "CD" | "DVD")) {
                return Ok((path.to_owned(), device));
            }
        }
    }
    Err(DriverError::Failed(
        "The BMC has no virtual CD or DVD drive: virtual media boot is not possible".into(),
    ))
}

/// The target of a virtual media action, as the device declares it.
fn action(path: &str, device: &Value, name: &str) -> String {
    device["Actions"][format!("#VirtualMedia.{name}")]["target"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}/Actions/VirtualMedia.{name}", path.trim_end_matches('/')))
}

fn is_inserted(device: &Value) -> bool {
    device["Inserted"].as_bool() == Some(true) || device["Image"].as_str().is_some_and(|i| !i.is_empty())
}

/// Eject whatever the CD drive holds.
async fn eject(bmc: &Redfish) -> Result<(), DriverError> {
    let (path, device) = virtual_cd(bmc).await?;
    if is_inserted(&device) {
        bmc.post(&action(&path, &device, "EjectMedia"), &json!({})).await?;
    }
    Ok(())
}

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
        let (path, device) = virtual_cd(&bmc).await?;
        if is_inserted(&device) {
            bmc.post(&action(&path, &device, "EjectMedia"), &json!({})).await?;
        }
        bmc.post(
            &action(&path, &device, "InsertMedia"),
            &json!({"Image": url, "Inserted": true, "WriteProtected": true}),
        )
        .await?;
        tracing::info!(node = %task.node.uuid, url, "deploy ISO inserted as virtual CD");
        Ok(())
    }

    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        eject(&Redfish::for_node(&task.node)?).await?;
        boot_iso::remove(&task.node, &task.settings.boot_files).await;
        Ok(())
    }

    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        self.clean_up_ramdisk(task).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_device_or_the_standard_path() {
        let declared = json!({"Actions": {"#VirtualMedia.InsertMedia": {"target": "/x/Insert"}}});
        assert_eq!(action("/vm/Cd", &declared, "InsertMedia"), "/x/Insert");
        assert_eq!(
            action("/vm/Cd/", &json!({}), "EjectMedia"),
            "/vm/Cd/Actions/VirtualMedia.EjectMedia"
        );
        assert!(is_inserted(&json!({"Inserted": true})));
        assert!(is_inserted(&json!({"Image": "http://x/boot.iso", "Inserted": false})));
        assert!(!is_inserted(&json!({"Image": "", "Inserted": false})));
    }
}
