//! `ipxe` boot: a per-node iPXE script, served by the conductor over HTTP.
//!
//! Machines chain-load `GET /boot/ipxe/boot.ipxe` (from DHCP, or an iPXE ROM's embedded
//! script), which chains `/boot/ipxe/<mac>`. While a node should boot the deploy ramdisk, that
//! answers the kernel and initramfs from `driver_info` (`deploy_kernel`, `deploy_ramdisk`: URLs,
//! or file names under the conductor's `--http-root`, served at `/httpboot/`) with the `ipa-*`
//! kernel parameters as Ironic's iPXE boot passes them (so upstream ramdisks boot too) and the
//! node's `kernel_append_params`. Otherwise it answers "boot the local disk", which is also how
//! a deployed node boots: the BMC's boot device need not be honoured (virtual BMCs often
//! cannot).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::assets;
use crate::drivers::{Boot, DriverError, Interface, Task};
use crate::model::NodeRecord;

/// Where the node's pending ramdisk script is kept.
const SCRIPT_KEY: &str = "ipxe_script";

/// The first script every machine gets: chain the one for its own MAC (hyphenated: colons in a
/// relative URI confuse older iPXE builds).
pub const ENTRY_SCRIPT: &str = "#!ipxe\nchain --autofree /boot/ipxe/${mac:hexhyp} || goto local\n:local\nexit 0\n";

/// Boot the first local disk (BIOS drive 0x80), else let the firmware try the next device.
pub const LOCAL_BOOT_SCRIPT: &str =
    "#!ipxe\necho Rivet: booting from the local disk\nsanboot --no-describe --drive 0x80 || exit 0\n";

/// The iPXE script that boots the deploy ramdisk with `params`.
pub fn ramdisk_script(node: &NodeRecord, params: &BTreeMap<String, String>, base: &str) -> Result<String, DriverError> {
    let kernel = assets::url(node, "deploy_kernel", "iPXE", base)?;
    let ramdisk = assets::url(node, "deploy_ramdisk", "iPXE", base)?;
    // iPXE fills in the MAC it booted from.
    let args = assets::kernel_command_line(node, params, Some("01-${mac:hexhyp}"))?;
    Ok(format!(
        "#!ipxe\necho Rivet: deploy ramdisk for node {uuid}\n\
         kernel --name kernel {kernel} initrd=ramdisk {args}\ninitrd --name ramdisk {ramdisk}\nboot\n",
        uuid = node.uuid,
    ))
}

/// What `/boot/ipxe/<mac>` answers for a node.
pub fn script_for(node: &NodeRecord) -> String {
    node.driver_internal_info
        .get(SCRIPT_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| LOCAL_BOOT_SCRIPT.to_owned())
}

/// The `ipxe` boot interface.
#[derive(Debug)]
pub struct IpxeBoot;

#[async_trait]
impl Interface for IpxeBoot {
    fn name(&self) -> &'static str {
        "ipxe"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        assets::check_deploy_assets(node, "iPXE")
    }
}

#[async_trait]
impl Boot for IpxeBoot {
    async fn prepare_ramdisk(&self, task: &mut Task, params: &BTreeMap<String, String>) -> Result<(), DriverError> {
        let script = ramdisk_script(&task.node, params, &task.settings.api_url)?;
        task.node.driver_internal_info.insert(SCRIPT_KEY.into(), json!(script));
        Ok(())
    }

    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        task.node.driver_internal_info.remove(SCRIPT_KEY);
        Ok(())
    }

    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        task.node.driver_internal_info.remove(SCRIPT_KEY);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramdisk_script_carries_upstreams_kernel_parameters() {
        let mut node = NodeRecord {
            uuid: "n1".into(),
            ..Default::default()
        };
        let params = BTreeMap::from([("ipa-api-url".to_owned(), "http://10.0.2.2:6385".to_owned())]);
        assert!(
            matches!(ramdisk_script(&node, &params, "http://c"), Err(DriverError::Invalid(m)) if m.contains("deploy_kernel"))
        );
        node.driver_info.insert("deploy_kernel".into(), json!("rivet.kernel"));
        node.driver_info
            .insert("deploy_ramdisk".into(), json!("https://images/rivet.initramfs"));
        node.driver_info
            .insert("kernel_append_params".into(), json!("console=ttyS0"));
        let script = ramdisk_script(&node, &params, "http://c:6385/").expect("script");
        assert_eq!(
            script,
            "#!ipxe\necho Rivet: deploy ramdisk for node n1\n\
             kernel --name kernel http://c:6385/httpboot/rivet.kernel initrd=ramdisk ipa-api-url=http://10.0.2.2:6385 \
             BOOTIF=01-${mac:hexhyp} console=ttyS0\ninitrd --name ramdisk https://images/rivet.initramfs\nboot\n"
        );
        node.driver_info.insert("deploy_kernel".into(), json!("../etc/passwd"));
        assert!(
            ramdisk_script(&node, &params, "http://c").is_err(),
            "no paths out of the http root"
        );
        assert_eq!(script_for(&node), LOCAL_BOOT_SCRIPT);
    }
}
