//! Per-node deploy ISOs for virtual media: the deploy kernel and ramdisk on a BIOS-bootable
//! (isolinux) CD whose boot menu carries the node's kernel command line, as Ironic builds them.
//! Built with `xorriso` in a private directory under the http root and renamed into place, so a
//! BMC never fetches half an image.

use std::path::{Path, PathBuf};

use super::assets::{self, BootFiles};
use crate::drivers::DriverError;
use crate::model::NodeRecord;

/// Longest xorriso may take.
const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The ISO's file name in the http root.
pub fn file_name(node: &NodeRecord) -> String {
    format!("boot-{}.iso", node.uuid)
}

/// The isolinux configuration: boot the kernel at once with the command line.
fn isolinux_cfg(cmdline: &str) -> String {
    format!("default deploy\nprompt 0\ntimeout 0\nlabel deploy\n  kernel /vmlinuz\n  append initrd=/initrd {cmdline}\n")
}

/// Build the node's deploy ISO in the http root; its path.
pub async fn build(node: &NodeRecord, files: &BootFiles, cmdline: &str) -> Result<PathBuf, DriverError> {
    let root = files.http_root.as_ref().ok_or_else(|| {
        DriverError::Invalid(
            "Virtual media boot publishes the deploy ISO in the conductor's http root: set http_root".into(),
        )
    })?;
    for (what, path) in [
        ("isolinux_bin", &files.isolinux_bin),
        ("ldlinux_c32", &files.ldlinux_c32),
    ] {
        if !path.is_file() {
            return Err(DriverError::Failed(format!(
                "{what} {} is missing: install SYSLINUX (Debian: isolinux, syslinux-common) or set {what}",
                path.display()
            )));
        }
    }
    let work = root.join(format!(".build-{}", node.uuid));
    let _ = tokio::fs::remove_dir_all(&work).await;
    let result = build_in(node, files, cmdline, root, &work).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    result
}

async fn build_in(
    node: &NodeRecord,
    files: &BootFiles,
    cmdline: &str,
    root: &Path,
    work: &Path,
) -> Result<PathBuf, DriverError> {
    let io = |what: &str, e: std::io::Error| DriverError::Failed(format!("building the deploy ISO: {what}: {e}"));
    let tree = work.join("tree");
    tokio::fs::create_dir_all(tree.join("isolinux"))
        .await
        .map_err(|e| io(&work.display().to_string(), e))?;
    // Copies: xorriso patches the boot information table into isolinux.bin.
    for (source, name) in [
        (&files.isolinux_bin, "isolinux.bin"),
        (&files.ldlinux_c32, "ldlinux.c32"),
    ] {
        tokio::fs::copy(source, tree.join("isolinux").join(name))
            .await
            .map_err(|e| io(&source.display().to_string(), e))?;
    }
    tokio::fs::write(tree.join("isolinux/isolinux.cfg"), isolinux_cfg(cmdline))
        .await
        .map_err(|e| io("isolinux.cfg", e))?;
    assets::copy_to(node, "deploy_kernel", "virtual media", files, &tree.join("vmlinuz")).await?;
    assets::copy_to(node, "deploy_ramdisk", "virtual media", files, &tree.join("initrd")).await?;
    let partial = work.join("boot.iso");
    let mut cmd = tokio::process::Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(&partial)
        .args([
            "-b",
            "isolinux/isolinux.bin",
            "-c",
            "isolinux/boot.cat",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "-J",
            "-R",
            "-V",
            "RIVET_VMEDIA",
        ])
        .arg(&tree);
    crate::drivers::tool::output(
        cmd,
        "xorriso building the deploy ISO",
        BUILD_TIMEOUT,
        " (Debian: xorriso)",
    )
    .await?;
    let iso = root.join(file_name(node));
    tokio::fs::rename(&partial, &iso)
        .await
        .map_err(|e| io(&iso.display().to_string(), e))?;
    Ok(iso)
}

/// Remove the node's ISO (nothing to do when there is none).
pub async fn remove(node: &NodeRecord, files: &BootFiles) {
    if let Some(root) = &files.http_root {
        let _ = tokio::fs::remove_file(root.join(file_name(node))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolinux_boots_the_kernel_with_the_command_line_at_once() {
        assert_eq!(
            isolinux_cfg("ipa-api-url=http://c BOOTIF=01-aa"),
            "default deploy\nprompt 0\ntimeout 0\nlabel deploy\n  kernel /vmlinuz\n  append initrd=/initrd ipa-api-url=http://c BOOTIF=01-aa\n"
        );
    }
}
