//! Auto-discovery: a machine that boots the ramdisk, posts inspection data and matches no node
//! is enrolled (`[auto_discovery] driver`, the `agent` inspect interface, the BMC address the
//! agent found in the driver's address field) and its data processed as an inspection's; the
//! node stays in `enroll`. Unknown machines that chain-load `/boot/ipxe/<mac>` get a script that
//! boots the ramdisk with the inspection callback when discovery is on.
//!
//! Upstream: `ironic/api/controllers/v1/ramdisk.py` (`_auto_enroll`) and
//! `ironic/conductor/inspection.py` (auto-discovery ends in `enroll`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::drivers::Task;
use crate::drivers::boot::ipxe;
use crate::engine::{Conductor, EngineError};
use crate::model::NodeRecord;
use crate::time::now_iso;

impl Conductor {
    /// Enrol a discovered machine; answers the new node's UUID.
    pub(super) async fn enroll_discovered(&self, bmc: &[String]) -> Result<String, EngineError> {
        let discovery = &self.config.auto_discovery;
        let driver = discovery.driver.clone();
        let mut requested = BTreeMap::new();
        if self.drivers.usable(&driver, "inspect").contains(&"agent") {
            requested.insert("inspect".to_owned(), "agent".to_owned());
        }
        let interfaces = self.drivers.resolve(&driver, &requested).map_err(|e| {
            tracing::error!(%driver, error = %e, "auto-discovery cannot enrol with this driver");
            EngineError::Internal(e)
        })?;
        let mut driver_info = serde_json::Map::new();
        for (key, value) in [
            ("deploy_kernel", &discovery.deploy_kernel),
            ("deploy_ramdisk", &discovery.deploy_ramdisk),
        ] {
            if let Some(v) = value {
                driver_info.insert(key.into(), json!(v));
            }
        }
        if let Some(address) = bmc.first() {
            match driver.as_str() {
                "ipmi" => {
                    driver_info.insert("ipmi_address".into(), json!(address));
                }
                "redfish" => {
                    let host = if address.contains(':') {
                        format!("[{address}]")
                    } else {
                        address.clone()
                    };
                    driver_info.insert("redfish_address".into(), json!(format!("https://{host}")));
                }
                _ => {}
            }
        }
        let node = NodeRecord {
            uuid: uuid::Uuid::new_v4().to_string(),
            driver: driver.clone(),
            interfaces,
            driver_info,
            provision_state: crate::states::state::ENROLL.into(),
            created_at: now_iso(),
            ..Default::default()
        };
        self.db.insert_node(&node).await?;
        self.db
            .add_history(&node.uuid, "INFO", "Enrolled by auto-discovery")
            .await?;
        tracing::info!(node = %node.uuid, %driver, bmc = %bmc.join(", "), "auto-discovery enrolled a new node");
        Ok(node.uuid)
    }

    /// After a discovered node's data was processed: record it, leave the node enrolled.
    pub(super) async fn finish_discovery(&self, task: &mut Task) -> Result<(), EngineError> {
        task.node
            .attrs
            .insert("inspection_finished_at".into(), json!(now_iso()));
        self.save(&mut task.node).await?;
        self.db
            .add_history(&task.node.uuid, "INFO", "Auto-discovery finished")
            .await?;
        tracing::info!(node = %task.node.uuid, "auto-discovery finished");
        Ok(())
    }

    /// The iPXE script for a machine no node knows: the ramdisk with the inspection callback
    /// when auto-discovery is on and names a ramdisk; `None` otherwise.
    pub fn discovery_script(&self) -> Option<String> {
        let discovery = &self.config.auto_discovery;
        if !discovery.enabled {
            return None;
        }
        let mut driver_info = serde_json::Map::new();
        driver_info.insert("deploy_kernel".into(), json!(discovery.deploy_kernel.clone()?));
        driver_info.insert("deploy_ramdisk".into(), json!(discovery.deploy_ramdisk.clone()?));
        if let Some(extra) = &discovery.kernel_append_params {
            driver_info.insert("kernel_append_params".into(), Value::String(extra.clone()));
        }
        let node = NodeRecord {
            uuid: "(auto-discovery)".into(),
            driver_info,
            ..Default::default()
        };
        let base = self.settings.api_url.trim_end_matches('/');
        let params =
            crate::drivers::inspect::agent::callback_params(&self.config.inspector.extra_kernel_params, base, true);
        match params.and_then(|params| ipxe::ramdisk_script(&node, &params, base)) {
            Ok(script) => Some(script),
            Err(e) => {
                tracing::error!(error = %e, "the auto-discovery iPXE script cannot be written");
                None
            }
        }
    }
}
