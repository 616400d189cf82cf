//! Redfish virtual media: the BMC's virtual drives, an image URL inserted into one, and ejection.
//! Used by the `redfish-virtual-media` boot interface (the deploy ISO on a virtual CD) and by the
//! `redfish` management interface (`/v1/nodes/{node}/vmedia`, API 1.89 and 1.93).
//!
//! Ironic's device types map to Redfish media types as sushy's do: `cdrom` to CD or DVD,
//! `floppy` to Floppy, `disk` to USBStick.

use serde_json::{Value, json};

use super::redfish::Redfish;
use crate::drivers::DriverError;

/// Ironic's virtual media device types (`boot_devices.VMEDIA_DEVICES`).
pub const DEVICE_TYPES: &[&str] = &["disk", "cdrom", "floppy"];

/// The Redfish media types that serve an Ironic device type.
fn media_types(device_type: &str) -> &'static [&'static str] {
    match device_type {
        "cdrom" => &["CD", "DVD"],
        "floppy" => &["Floppy"],
        "disk" => &["USBStick"],
        _ => &[],
    }
}

/// One virtual drive: its resource path and document.
#[derive(Debug, Clone)]
pub struct Drive {
    /// `@odata.id` of the drive.
    pub path: String,
    /// The drive's resource (`MediaTypes`, `Inserted`, `Image`, `Actions`).
    pub doc: Value,
}

impl Drive {
    /// The Redfish media types it takes.
    pub fn media_types(&self) -> Vec<&str> {
        self.doc["MediaTypes"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether it takes media for `device_type` (`cdrom`, `floppy`, `disk`).
    pub fn serves(&self, device_type: &str) -> bool {
        self.media_types().iter().any(|t| media_types(device_type).contains(t))
    }

    /// Whether something is inserted (some BMCs report an image with `Inserted` false).
    pub fn is_inserted(&self) -> bool {
        self.doc["Inserted"].as_bool() == Some(true) || self.doc["Image"].as_str().is_some_and(|i| !i.is_empty())
    }

    /// The target of one of its actions (`InsertMedia`, `EjectMedia`), as the drive declares it
    /// or at the standard path.
    pub fn action(&self, name: &str) -> String {
        action(&self.path, &self.doc, name)
    }

    /// Ironic's view of it (`GET /v1/nodes/{node}/vmedia`): media types, inserted, image.
    pub fn describe(&self) -> Value {
        json!({
            "media_types": self.media_types(),
            "inserted": self.doc["Inserted"].as_bool().unwrap_or(false),
            "image": self.doc["Image"],
        })
    }
}

fn action(path: &str, doc: &Value, name: &str) -> String {
    doc["Actions"][format!("#VirtualMedia.{name}")]["target"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}/Actions/VirtualMedia.{name}", path.trim_end_matches('/')))
}

/// Every virtual drive of the node's system: listed under the system on newer BMCs, under its
/// managers on older ones.
pub async fn drives(bmc: &Redfish) -> Result<Vec<Drive>, DriverError> {
    let (_, system) = bmc.system().await?;
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
    let mut found = Vec::new();
    for collection in &collections {
        let doc = bmc.get(collection).await?;
        for member in doc["Members"].as_array().into_iter().flatten() {
            if let Some(path) = member["@odata.id"].as_str() {
                found.push(Drive {
                    path: path.to_owned(),
                    doc: bmc.get(path).await?,
                });
            }
        }
    }
    Ok(found)
}

/// The first drive that serves `device_type`.
async fn drive_for(bmc: &Redfish, device_type: &str) -> Result<Drive, DriverError> {
    drives(bmc)
        .await?
        .into_iter()
        .find(|d| d.serves(device_type))
        .ok_or_else(|| {
            DriverError::Failed(format!(
                "The BMC has no virtual media drive for {device_type} (media types {:?})",
                media_types(device_type)
            ))
        })
}

/// Insert the image at `url` into the drive for `device_type`, ejecting what it held.
pub async fn insert(bmc: &Redfish, device_type: &str, url: &str) -> Result<(), DriverError> {
    let drive = drive_for(bmc, device_type).await?;
    if drive.is_inserted() {
        bmc.post(&drive.action("EjectMedia"), &json!({})).await?;
    }
    bmc.post(
        &drive.action("InsertMedia"),
        &json!({"Image": url, "Inserted": true, "WriteProtected": true}),
    )
    .await
}

/// Eject the media of the drives serving `device_type`, or of every drive (`None`); drives that
/// hold nothing are left alone.
pub async fn eject(bmc: &Redfish, device_type: Option<&str>) -> Result<(), DriverError> {
    for drive in drives(bmc).await? {
        if drive.is_inserted() && device_type.is_none_or(|t| drive.serves(t)) {
            bmc.post(&drive.action("EjectMedia"), &json!({})).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_drive_or_the_standard_path() {
        let declared = json!({"Actions": {"#VirtualMedia.InsertMedia": {"target": "/x/Insert"}}});
        assert_eq!(action("/vm/Cd", &declared, "InsertMedia"), "/x/Insert");
        assert_eq!(
            action("/vm/Cd/", &json!({}), "EjectMedia"),
            "/vm/Cd/Actions/VirtualMedia.EjectMedia"
        );
    }

    #[test]
    fn drives_report_what_they_hold_and_serve() {
        let drive = |doc: Value| Drive {
            path: "/vm/X".into(),
            doc,
        };
        assert!(drive(json!({"Inserted": true})).is_inserted());
        assert!(drive(json!({"Image": "http://x/boot.iso", "Inserted": false})).is_inserted());
        assert!(!drive(json!({"Image": "", "Inserted": false})).is_inserted());
        let floppy = drive(json!({"MediaTypes": ["Floppy", "USBStick"], "Inserted": false, "Image": null}));
        assert!(floppy.serves("disk") && floppy.serves("floppy") && !floppy.serves("cdrom"));
        assert_eq!(
            floppy.describe(),
            json!({"media_types": ["Floppy", "USBStick"], "inserted": false, "image": null})
        );
        assert!(drive(json!({"MediaTypes": ["DVD"]})).serves("cdrom"));
    }
}
