//! `pxe` boot: PXELINUX configuration in a TFTP root that a separate TFTP server (dnsmasq,
//! tftpd-hpa, QEMU's user-mode network) serves, laid out as Ironic lays it out:
//!
//! ```text
//! <tftp_root>/<node uuid>/deploy_kernel, deploy_ramdisk   the node's deploy ramdisk
//! <tftp_root>/<node uuid>/config                          its PXELINUX configuration
//! <tftp_root>/pxelinux.cfg/01-<mac>                       → ../<node uuid>/config, per port
//! ```
//!
//! While the node should boot the ramdisk, `config` boots it with the `ipa-*` kernel parameters
//! and `kernel_append_params` (`ipappend 2` adds `BOOTIF`); otherwise it boots the local disk.
//! The TFTP root itself (`pxelinux.0`, `ldlinux.c32`) is the operator's, as with Ironic; the
//! conductor copies `ldlinux_c32` there when it is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::assets;
use crate::drivers::{Boot, DriverError, Interface, Task};
use crate::model::NodeRecord;

/// Boot the local disk.
const LOCAL_BOOT_CONFIG: &str = "default local\nprompt 0\nlabel local\n  localboot 0\n";

/// The PXELINUX configuration that boots the node's deploy ramdisk.
fn ramdisk_config(uuid: &str, cmdline: &str) -> String {
    format!(
        "default deploy\nprompt 0\nlabel deploy\n  kernel {uuid}/deploy_kernel\n  \
         append initrd={uuid}/deploy_ramdisk {cmdline}\n  ipappend 2\n"
    )
}

fn tftp_root(task: &Task) -> Result<PathBuf, DriverError> {
    task.settings
        .boot_files
        .tftp_root
        .clone()
        .ok_or_else(|| DriverError::Invalid("pxe boot needs the conductor's tftp_root".into()))
}

fn io(what: &Path, e: std::io::Error) -> DriverError {
    DriverError::Failed(format!("pxe boot: {}: {e}", what.display()))
}

/// Write the node's `config` (atomically) and link every port's MAC to it.
async fn write_config(task: &Task, root: &Path, text: &str) -> Result<(), DriverError> {
    let dir = root.join(&task.node.uuid);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| io(&dir, e))?;
    let partial = dir.join(".config.new");
    tokio::fs::write(&partial, text).await.map_err(|e| io(&partial, e))?;
    let config = dir.join("config");
    tokio::fs::rename(&partial, &config).await.map_err(|e| io(&config, e))?;
    let by_mac = root.join("pxelinux.cfg");
    tokio::fs::create_dir_all(&by_mac).await.map_err(|e| io(&by_mac, e))?;
    for port in &task.ports {
        let link = by_mac.join(assets::bootif(&port.address));
        let _ = tokio::fs::remove_file(&link).await;
        tokio::fs::symlink(Path::new("..").join(&task.node.uuid).join("config"), &link)
            .await
            .map_err(|e| io(&link, e))?;
    }
    Ok(())
}

/// The `pxe` boot interface.
#[derive(Debug)]
pub struct PxeBoot;

#[async_trait]
impl Interface for PxeBoot {
    fn name(&self) -> &'static str {
        "pxe"
    }

    async fn validate(&self, node: &NodeRecord) -> Result<(), DriverError> {
        assets::check_deploy_assets(node, "PXE")
    }
}

#[async_trait]
impl Boot for PxeBoot {
    async fn prepare_ramdisk(&self, task: &mut Task, params: &BTreeMap<String, String>) -> Result<(), DriverError> {
        let root = tftp_root(task)?;
        let files = &task.settings.boot_files;
        let ldlinux = root.join("ldlinux.c32");
        if !ldlinux.exists() && files.ldlinux_c32.is_file() {
            tokio::fs::copy(&files.ldlinux_c32, &ldlinux)
                .await
                .map_err(|e| io(&ldlinux, e))?;
        }
        let dir = root.join(&task.node.uuid);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io(&dir, e))?;
        for key in ["deploy_kernel", "deploy_ramdisk"] {
            assets::copy_to(&task.node, key, "PXE", files, &dir.join(key)).await?;
        }
        let cmdline = assets::kernel_command_line(&task.node, params, None)?;
        write_config(task, &root, &ramdisk_config(&task.node.uuid, &cmdline)).await
    }

    async fn clean_up_ramdisk(&self, task: &mut Task) -> Result<(), DriverError> {
        let root = tftp_root(task)?;
        for port in &task.ports {
            let _ = tokio::fs::remove_file(root.join("pxelinux.cfg").join(assets::bootif(&port.address))).await;
        }
        let dir = root.join(&task.node.uuid);
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir, e)),
            _ => Ok(()),
        }
    }

    async fn prepare_instance(&self, task: &mut Task) -> Result<(), DriverError> {
        let root = tftp_root(task)?;
        for key in ["deploy_kernel", "deploy_ramdisk"] {
            let _ = tokio::fs::remove_file(root.join(&task.node.uuid).join(key)).await;
        }
        // A machine that still boots from the network then boots its disk.
        write_config(task, &root, LOCAL_BOOT_CONFIG).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramdisk_config_names_the_nodes_files() {
        assert_eq!(
            ramdisk_config("u1", "ipa-api-url=http://c"),
            "default deploy\nprompt 0\nlabel deploy\n  kernel u1/deploy_kernel\n  \
             append initrd=u1/deploy_ramdisk ipa-api-url=http://c\n  ipappend 2\n"
        );
    }
}
