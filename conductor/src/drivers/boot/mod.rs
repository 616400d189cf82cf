//! Boot interfaces: what the machine boots next. `ipxe` and `pxe` serve network boot files,
//! `redfish-virtual-media` inserts an ISO ([`iso`]) through the BMC; [`assets`] are the boot
//! files they share (kernel, ramdisk, loaders). `fake` is in [`super::fake`].

pub mod assets;
pub mod ipxe;
pub mod iso;
pub mod pxe;
pub mod redfish_vmedia;

/// Make the node's next boot the ramdisk with `params`: the boot interface prepares it and the
/// management interface points the machine at it (not persistently). Powering on is the
/// caller's.
pub async fn boot_ramdisk_next(
    task: &mut super::Task,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<(), super::DriverError> {
    let boot = task.driver.boot.clone();
    boot.prepare_ramdisk(task, params).await?;
    let management = task.driver.management.clone();
    management
        .set_boot_device(&mut task.node, boot.ramdisk_boot_device(), false)
        .await
}
