//! The deploy kernel and ramdisk a node's `driver_info` names (`deploy_kernel`,
//! `deploy_ramdisk`): an http(s) URL, or the name of a file in the conductor's `http_root`.
//! Network boot hands machines a URL; virtual media and TFTP boot need a local copy.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::drivers::DriverError;
use crate::model::NodeRecord;

/// Where boot files live and how they are reached.
#[derive(Debug, Clone, Default)]
pub struct BootFiles {
    /// Directory served at `/httpboot/` (`--http-root`).
    pub http_root: Option<PathBuf>,
    /// URL of `http_root` as BMCs reach it, for virtual media (`external_http_url`).
    pub external_http_url: String,
    /// Directory a TFTP server serves, for `pxe` boot (`tftp_root`).
    pub tftp_root: Option<PathBuf>,
    /// SYSLINUX's `isolinux.bin` (BIOS-bootable CDs).
    pub isolinux_bin: PathBuf,
    /// SYSLINUX's `ldlinux.c32`, which isolinux and pxelinux load.
    pub ldlinux_c32: PathBuf,
}

/// Longest a download of a kernel or ramdisk may take.
const DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A deploy asset as `driver_info` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asset {
    /// Fetched from here.
    Url(String),
    /// This file of the http root.
    HttpRootFile(String),
}

/// Read `key` (`deploy_kernel`, `deploy_ramdisk`) from the node's `driver_info`. `interface`
/// names the boot interface in the error.
pub fn asset(node: &NodeRecord, key: &str, interface: &str) -> Result<Asset, DriverError> {
    let value = node
        .driver_info
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            DriverError::Invalid(format!(
                "Cannot validate {interface} boot. Some parameters were missing in node's driver_info: ['{key}']"
            ))
        })?;
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(Asset::Url(value.to_owned()))
    } else if value.contains('/') || value.starts_with('.') {
        Err(DriverError::Invalid(format!(
            "{key} {value:?} must be an http(s) URL or a file name in the conductor's http root"
        )))
    } else {
        Ok(Asset::HttpRootFile(value.to_owned()))
    }
}

/// Check that `driver_info` names both deploy assets usably (for a boot interface's validate).
pub fn check_deploy_assets(node: &NodeRecord, interface: &str) -> Result<(), DriverError> {
    asset(node, "deploy_kernel", interface)?;
    asset(node, "deploy_ramdisk", interface).map(|_| ())
}

/// The asset as a URL, http root files under `<base>/httpboot/`.
pub fn url(node: &NodeRecord, key: &str, interface: &str, base: &str) -> Result<String, DriverError> {
    Ok(match asset(node, key, interface)? {
        Asset::Url(url) => url,
        Asset::HttpRootFile(name) => format!("{}/httpboot/{name}", base.trim_end_matches('/')),
    })
}

/// Put a copy of the asset at `dest` (a hard link when the http root is on the same file system).
pub async fn copy_to(
    node: &NodeRecord,
    key: &str,
    interface: &str,
    files: &BootFiles,
    dest: &Path,
) -> Result<(), DriverError> {
    let failed = |what: String| DriverError::Failed(format!("{key} of node {}: {what}", node.uuid));
    let _ = tokio::fs::remove_file(dest).await;
    match asset(node, key, interface)? {
        Asset::HttpRootFile(name) => {
            let root = files.http_root.as_ref().ok_or_else(|| {
                DriverError::Invalid(format!(
                    "{key} {name:?} names a file in the http root, but the conductor has no http_root"
                ))
            })?;
            let source = root.join(&name);
            if tokio::fs::hard_link(&source, dest).await.is_err() {
                tokio::fs::copy(&source, dest)
                    .await
                    .map_err(|e| failed(format!("copying {} to {}: {e}", source.display(), dest.display())))?;
            }
            Ok(())
        }
        Asset::Url(url) => download(&url, dest).await.map_err(failed),
    }
}

/// Stream `url` into `dest`; nothing is left at `dest` on failure.
async fn download(url: &str, dest: &Path) -> Result<(), String> {
    // https is verified against the host's CA bundle; plain http never upgrades to an
    // unverified https through a redirect.
    let https = url.starts_with("https://");
    let tls = if https {
        crate::tls::system_roots()?
    } else {
        crate::tls::no_roots()
    };
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > 5 {
            attempt.error("too many redirects")
        } else if !https && attempt.url().scheme() == "https" {
            attempt.error("an http URL redirected to https: name the https URL")
        } else {
            attempt.follow()
        }
    });
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(redirects)
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let result = async {
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("downloading {url}: {}", rivet_common::error::http_error(&e)))?;
        if !response.status().is_success() {
            return Err(format!("downloading {url}: HTTP {}", response.status().as_u16()));
        }
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| format!("creating {}: {e}", dest.display()))?;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("downloading {url}: {}", rivet_common::error::http_error(&e)))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("writing {}: {e}", dest.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("writing {}: {e}", dest.display()))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

/// Download `url` into the http root as `name` and answer the URL BMCs fetch it from
/// (`external_http_url`): Ironic's `image_download_source = local` for virtual media. Errors:
/// no http root ([`DriverError::Invalid`]), a failed download ([`DriverError::Failed`]).
pub async fn publish(files: &BootFiles, name: &str, url: &str) -> Result<String, DriverError> {
    let root = files.http_root.as_ref().ok_or_else(|| {
        DriverError::Invalid(
            "serving an image to the BMC needs the conductor's http_root (or image_download_source http)".into(),
        )
    })?;
    download(url, &root.join(name)).await.map_err(DriverError::Failed)?;
    Ok(format!("{}/{name}", files.external_http_url.trim_end_matches('/')))
}

/// Remove a file [`publish`] made; a missing one is fine.
pub async fn unpublish(files: &BootFiles, name: &str) {
    if let Some(root) = &files.http_root {
        let _ = tokio::fs::remove_file(root.join(name)).await;
    }
}

/// The `BOOTIF` value (PXELINUX's form) for a MAC address.
pub fn bootif(mac: &str) -> String {
    format!("01-{}", mac.to_ascii_lowercase().replace(':', "-"))
}

/// The kernel command line for a deploy ramdisk: the `ipa-*` parameters, `BOOTIF` (so the agent
/// knows which NIC it booted from) and the node's `kernel_append_params`.
pub fn kernel_command_line(
    node: &NodeRecord,
    params: &std::collections::BTreeMap<String, String>,
    bootif: Option<&str>,
) -> Result<String, DriverError> {
    let mut args: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(value) = bootif {
        args.push(format!("BOOTIF={value}"));
    }
    if let Some(extra) = node.driver_info.get("kernel_append_params").and_then(Value::as_str) {
        args.push(extra.to_owned());
    }
    let line = args.join(" ");
    if line.contains('\n') || line.contains('\r') {
        return Err(DriverError::Invalid(
            "kernel parameters must not contain new lines".into(),
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn http_root_files_are_copied_and_paths_out_of_it_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("rivet.kernel"), b"kernel").expect("write");
        let mut node = NodeRecord {
            uuid: "n1".into(),
            ..Default::default()
        };
        let files = BootFiles {
            http_root: Some(root.path().to_owned()),
            ..Default::default()
        };
        let dest = root.path().join("copy");
        let missing = copy_to(&node, "deploy_kernel", "pxe", &files, &dest).await;
        assert!(matches!(missing, Err(DriverError::Invalid(m)) if m.contains("deploy_kernel") && m.contains("pxe")));
        node.driver_info.insert("deploy_kernel".into(), json!("rivet.kernel"));
        copy_to(&node, "deploy_kernel", "pxe", &files, &dest)
            .await
            .expect("copied");
        assert_eq!(std::fs::read(&dest).expect("read"), b"kernel");
        for bad in ["../etc/passwd", ".hidden", "sub/file"] {
            node.driver_info.insert("deploy_kernel".into(), json!(bad));
            assert!(
                matches!(asset(&node, "deploy_kernel", "pxe"), Err(DriverError::Invalid(_))),
                "{bad}"
            );
        }
        node.driver_info
            .insert("deploy_kernel".into(), json!("http://127.0.0.1:9/nothing"));
        let unreachable = copy_to(&node, "deploy_kernel", "pxe", &files, &dest).await;
        assert!(matches!(unreachable, Err(DriverError::Failed(_))));
        assert!(!dest.exists(), "a failed download leaves nothing behind");
    }

    #[test]
    fn the_command_line_has_the_parameters_bootif_and_the_operators_additions() {
        let mut node = NodeRecord::default();
        node.driver_info
            .insert("kernel_append_params".into(), json!("console=ttyS0"));
        let params = [("ipa-api-url".to_owned(), "http://c:6385".to_owned())].into();
        assert_eq!(
            kernel_command_line(&node, &params, Some(&bootif("52:54:00:AA:bb:01"))).expect("line"),
            "ipa-api-url=http://c:6385 BOOTIF=01-52-54-00-aa-bb-01 console=ttyS0"
        );
        node.driver_info.insert("kernel_append_params".into(), json!("a\nb"));
        assert!(kernel_command_line(&node, &params, None).is_err());
    }
}
