//! Inspection: the `inspect` verb's flow and the processing of the data a machine reports.
//!
//! `inspect` (from `manageable` or `inspect failed`) asks the node's inspect interface to start:
//! `agent` boots the ramdisk and the node waits in `inspect wait` until its agent posts to
//! `/v1/continue_inspection`; an out-of-band interface returns the data at once. The data then
//! goes through the [`hooks`] (ports, properties), the [`rules`], and is stored
//! (`GET /v1/nodes/{node}/inventory`); the machine is powered off (unless fast track keeps the
//! agent) and the node returns to `manageable`. Any failure ends in `inspect failed` with
//! `last_error` saying why; `abort` and the `inspect_wait_timeout` end there too.
//!
//! Upstream: `ironic/conductor/inspection.py`, `ironic/drivers/modules/inspect_utils.py`,
//! `ironic/api/controllers/v1/ramdisk.py` (`continue_inspection`).

pub mod cidr;
pub mod config;
pub mod discovery;
pub mod hooks;
pub mod lldp;
pub mod root_hints;
pub mod rules;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::drivers::{InspectStart, Task};
use crate::engine::{Conductor, EngineError};
use crate::flow::FlowError;
use crate::model::{PortRecord, ResourceKind};
use crate::states::{fire, state};
use crate::time::now_iso;

/// `driver_internal_info` key: the BMC addresses the node can be found by during inspection
/// (Ironic's `lookup_bmc_addresses`).
pub const LOOKUP_BMC_ADDRESSES: &str = "lookup_bmc_addresses";

impl Conductor {
    /// Start inspecting a locked node that has just entered `inspecting`.
    pub async fn start_inspection(&self, task: &mut Task) -> Result<(), FlowError> {
        let node = &mut task.node;
        node.attrs.insert("inspection_started_at".into(), json!(now_iso()));
        node.attrs.insert("inspection_finished_at".into(), Value::Null);
        // A fast-track agent from before does not carry over into inspection (Ironic wipes
        // the token too): inspection boots the ramdisk afresh.
        crate::agent_session::wipe(node);
        let addresses = bmc_addresses(&node.driver_info);
        if addresses.is_empty() {
            node.driver_internal_info.remove(LOOKUP_BMC_ADDRESSES);
        } else {
            node.driver_internal_info
                .insert(LOOKUP_BMC_ADDRESSES.into(), json!(addresses));
        }
        let inspect = task.driver.inspect.clone();
        match inspect.inspect_hardware(task).await {
            Ok(InspectStart::Wait) => self.event(&mut task.node, "wait").await,
            Ok(InspectStart::Done(None)) => self.finish_inspection(task).await,
            Ok(InspectStart::Done(Some((inventory, plugin_data)))) => {
                self.process_inspection(task, inventory, plugin_data).await;
                Ok(())
            }
            Err(e) => {
                let message = format!("Failed to inspect hardware. Reason: unable to start inspection: {e}");
                tracing::error!(node = %task.node.uuid, %message, "inspection failed");
                self.fail_inspection(task, &message).await;
                Ok(())
            }
        }
    }

    async fn finish_inspection(&self, task: &mut Task) -> Result<(), FlowError> {
        task.node
            .attrs
            .insert("inspection_finished_at".into(), json!(now_iso()));
        task.node.driver_internal_info.remove(LOOKUP_BMC_ADDRESSES);
        fire(&mut task.node, "done", None)?;
        self.save(&mut task.node).await?;
        self.db
            .add_history(&task.node.uuid, "INFO", "Inspection completed")
            .await?;
        tracing::info!(node = %task.node.uuid, "inspection finished");
        Ok(())
    }

    /// Whether the end of an inspection powers the machine off: `[inspector] power_off`, unless
    /// fast track keeps the agent running (Ironic's `tear_down_managed_boot`).
    fn inspection_power_off(&self) -> bool {
        self.config.inspector.power_off && !self.settings.fast_track
    }

    /// Fail an inspection: clean up what it set up, power off, `inspect failed` with `message`.
    pub async fn fail_inspection(&self, task: &mut Task, message: &str) {
        let inspect = task.driver.inspect.clone();
        if let Err(e) = inspect.tear_down(task, self.inspection_power_off()).await {
            tracing::warn!(node = %task.node.uuid, error = %e, "inspection clean-up after a failure");
        }
        task.node.driver_internal_info.remove(LOOKUP_BMC_ADDRESSES);
        self.fail_flow(task, message).await;
    }

    /// `abort` in `inspect wait`: clean up, power off, `inspect failed` (Ironic's words).
    pub(crate) async fn abort_inspection(&self, task: &mut Task) -> Result<(), FlowError> {
        let inspect = task.driver.inspect.clone();
        inspect
            .tear_down(task, self.inspection_power_off())
            .await
            .map_err(|source| FlowError::Driver {
                context: "Failed to abort inspection",
                source,
            })?;
        let message = "Inspection was aborted by request.";
        task.node.driver_internal_info.remove(LOOKUP_BMC_ADDRESSES);
        task.node.last_error = Some(message.into());
        fire(&mut task.node, "abort", None)?;
        self.save(&mut task.node).await?;
        self.db.add_history(&task.node.uuid, "ERROR", message).await?;
        Ok(())
    }

    /// Process inspection data for a locked node: hooks, rules, storage, clean-up, `done`.
    /// A failure fails the inspection (the node ends in `inspect failed`).
    pub async fn process_inspection(&self, task: &mut Task, inventory: Value, mut plugin_data: Value) {
        if !plugin_data.is_object() {
            plugin_data = json!({});
        }
        // A failed inspection changes nothing but the state and last_error: what the hooks and
        // rules did to the node so far is dropped (Ironic keeps the part saved before the
        // failure; docs/compatibility.md).
        if self.settings.fast_track {
            // Before anything else, as Ironic: the agent that posted is alive, and a fast-track
            // agent goes on to heartbeat, so its ramdisk must stay.
            task.node
                .driver_internal_info
                .insert("agent_last_heartbeat".into(), json!(crate::time::now_naive()));
        }
        let before = task.node.clone();
        if let Err(message) = self.apply_inspection(task, &inventory, &mut plugin_data).await {
            task.node = before;
            let message = format!("Failed to finish inspection: {message}");
            if task.node.provision_state == state::ENROLL {
                // A discovered machine: its node would have no port to be found by, and every
                // retry would enrol another. It goes; the machine is discovered again once fixed.
                tracing::error!(node = %task.node.uuid, %message, "auto-discovery failed: the node enrolled for it is deleted");
                if let Err(e) = self.db.delete_node(&task.node.uuid).await {
                    tracing::error!(node = %task.node.uuid, error = %e, "deleting the failed discovered node");
                }
                return;
            }
            tracing::error!(node = %task.node.uuid, %message, "inspection failed");
            self.fail_inspection(task, &message).await;
            return;
        }
        if task.node.provision_state == state::ENROLL {
            // Auto-discovery: the node stays enrolled, its machine in the ramdisk, until an
            // operator gives it credentials and manages it (as Ironic).
            if let Err(e) = self.finish_discovery(task).await {
                tracing::error!(node = %task.node.uuid, error = %e, "saving a discovered node");
            }
            return;
        }
        let inspect = task.driver.inspect.clone();
        if let Err(e) = inspect.tear_down(task, self.inspection_power_off()).await {
            self.fail_inspection(task, &e.to_string()).await;
            return;
        }
        if let Err(e) = self.finish_inspection(task).await {
            self.fail_inspection(task, &e.to_string()).await;
        }
    }

    async fn apply_inspection(
        &self,
        task: &mut Task,
        inventory: &Value,
        plugin_data: &mut Value,
    ) -> Result<(), String> {
        let db_error = |e: crate::db::DbError| e.to_string();
        let foreign: BTreeSet<String> = self
            .db
            .ports(None)
            .await
            .map_err(db_error)?
            .into_iter()
            .filter(|p| p.node_uuid != task.node.uuid)
            .map(|p| p.address)
            .collect();
        let ports_before: Vec<PortRecord> = self.db.ports(Some(&task.node.uuid)).await.map_err(db_error)?;
        let inspect = task.driver.inspect.clone();
        let changes = hooks::run(
            &self.config.inspector,
            inspect.hooks(&self.config.inspector),
            &mut task.node,
            hooks::HookInput {
                inventory,
                plugin_data,
                ports: &ports_before,
                foreign_macs: &foreign,
            },
        )?;
        // The ports as the hooks left them, for the rules.
        let mut ports: Vec<PortRecord> = ports_before
            .iter()
            .filter(|p| !changes.deleted.contains(&p.uuid))
            .map(|p| changes.updated.iter().find(|u| u.uuid == p.uuid).unwrap_or(p).clone())
            .chain(changes.created.iter().cloned())
            .collect();
        let mut all_rules: Vec<Value> = self
            .db
            .resources(ResourceKind::InspectionRule, None)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| {
                let mut doc = Value::Object(r.doc);
                doc["uuid"] = json!(r.uuid);
                doc
            })
            .filter(|r| r.get("phase").and_then(Value::as_str).unwrap_or("main") == "main")
            .collect();
        all_rules.extend(self.config.inspector.built_in_rules.iter().cloned());
        let after_hooks = ports.clone();
        let mut subject = rules::Subject {
            node: &mut task.node,
            ports: &mut ports,
            inventory,
            plugin_data,
        };
        rules::apply(&all_rules, &mut subject, self.config.inspector.mask_secrets)
            .await
            .map_err(|e| e.to_string())?;
        let missing: Vec<&str> = inspect
            .essential_properties()
            .iter()
            .copied()
            .filter(|p| !task.node.properties.contains_key(*p))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "Failed to inspect hardware. Reason: Failed to discover the following properties: {} on node {}",
                missing.join(", "),
                task.node.uuid
            ));
        }
        if let Some(data) = plugin_data.as_object_mut() {
            // Logs can be huge; Ironic stores them apart, Rivet keeps them in the conductor's log.
            data.remove("logs");
        }
        for port in &ports {
            let created = changes.created.iter().any(|c| c.uuid == port.uuid);
            let before = after_hooks.iter().find(|p| p.uuid == port.uuid);
            let hooks_changed = changes.updated.iter().any(|u| u.uuid == port.uuid);
            if created {
                if let Err(e) = self.db.insert_port(port).await {
                    // Another node's port took the MAC meanwhile: as Ironic, go on without it.
                    tracing::warn!(node = %task.node.uuid, mac = %port.address, error = %e, "port not created");
                }
            } else if hooks_changed || before != Some(port) {
                let mut port = port.clone();
                port.updated_at = Some(now_iso());
                self.db.update_port(&port).await.map_err(db_error)?;
            }
        }
        for uuid in &changes.deleted {
            self.db.delete_port(uuid).await.map_err(db_error)?;
        }
        self.db
            .put_inventory(&task.node.uuid, &inventory.to_string(), &plugin_data.to_string())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// `POST /v1/continue_inspection`: find the node the data is from (by MAC addresses, then
    /// BMC addresses, or `node_uuid`), which must be waiting for it, and process the data. The
    /// answer is the node's UUID and, when `session` gives the request's version (1.84 and
    /// later, Ironic's new endpoint) and the agent's address, the lookup answer (node and
    /// config with a fresh agent token) issued before the data is processed, as Ironic does,
    /// so a fast-track agent goes on with it. A node that cannot be found, or is not waiting,
    /// is a 404 as in Ironic, which does not tell the caller which.
    pub async fn continue_inspection(
        self: &Arc<Self>,
        mut data: Value,
        node_uuid: Option<&str>,
        session: Option<(rivet_common::version::ApiVersion, Option<std::net::IpAddr>)>,
    ) -> Result<(String, Option<rivet_common::ramdisk::LookupResponse>), EngineError> {
        let Some(inventory) = data
            .as_object_mut()
            .and_then(|d| d.remove("inventory"))
            .filter(Value::is_object)
        else {
            return Err(EngineError::Invalid(
                "The inventory is missing from the inspection data".into(),
            ));
        };
        let macs: Vec<String> = inventory
            .get("interfaces")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|i| i.get("mac_address").and_then(Value::as_str))
                    .map(str::to_ascii_lowercase)
                    .filter(|m| m.len() == 17)
                    .collect()
            })
            .unwrap_or_default();
        let bmc: Vec<String> = ["bmc_address", "bmc_v6address"]
            .iter()
            .filter_map(|k| inventory.get(*k).and_then(Value::as_str))
            .filter(|a| !a.is_empty() && *a != "0.0.0.0" && *a != "::/0")
            .map(str::to_owned)
            .collect();
        if macs.is_empty() && bmc.is_empty() && node_uuid.is_none() {
            return Err(EngineError::Invalid("No lookup information provided".into()));
        }
        let (uuid, discovered) = match self.inspection_lookup(&macs, &bmc, node_uuid).await? {
            Some(uuid) => (uuid, false),
            None if self.config.auto_discovery.enabled && node_uuid.is_none() => {
                (self.enroll_discovered(&bmc).await?, true)
            }
            None => return Err(not_found()),
        };
        if discovered && let Some(data) = data.as_object_mut() {
            data.insert("auto_discovered".into(), json!(true));
        }
        let lookup = match session {
            // Ironic's answer when the token cannot be issued (a 409 while the node is locked,
            // which agents retry).
            Some((version, peer)) if !discovered => Some(self.lookup(&[], Some(&uuid), version, peer).await?),
            _ => None,
        };
        let lock = self.locks.acquire(&uuid).await?;
        let outcome = async {
            let node = self.node(&uuid).await?;
            let waiting =
                node.provision_state == state::INSPECTWAIT || discovered && node.provision_state == state::ENROLL;
            if !waiting {
                return Err(not_found());
            }
            let mut task = self.task(node).await?;
            self.process_inspection(&mut task, inventory, data).await;
            Ok((task.node.uuid.clone(), lookup))
        }
        .await;
        lock.release().await?;
        outcome
    }

    /// Ironic's `lookup_node` for inspection: the node, `None` when nothing matches (a machine
    /// auto-discovery may enrol), 404 on conflicting matches or a node that is not waiting.
    async fn inspection_lookup(
        &self,
        macs: &[String],
        bmc: &[String],
        node_uuid: Option<&str>,
    ) -> Result<Option<String>, EngineError> {
        let mut found: Option<String> = match node_uuid {
            Some(ident) => Some(self.node(ident).await.map_err(|_| not_found())?.uuid),
            None => None,
        };
        if !macs.is_empty() {
            let by_mac = self.db.nodes_by_macs(macs).await?;
            match (by_mac.as_slice(), &found) {
                ([], _) => {}
                ([one], None) => found = Some(one.clone()),
                ([one], Some(known)) if one == known => {}
                _ => {
                    tracing::error!(macs = %macs.join(", "), "inspection lookup: the MAC addresses match another or several nodes");
                    return Err(not_found());
                }
            }
        }
        if let Some(uuid) = &found {
            let node = self.node(uuid).await?;
            if node.provision_state != state::INSPECTWAIT {
                tracing::error!(node = %uuid, state = %node.provision_state, "inspection data for a node not waiting for it");
                return Err(not_found());
            }
        }
        if !bmc.is_empty() {
            let waiting = self.db.nodes_in_states(&[state::INSPECTWAIT]).await?;
            let by_bmc: BTreeSet<String> = waiting
                .into_iter()
                .filter(|n| {
                    n.driver_internal_info
                        .get(LOOKUP_BMC_ADDRESSES)
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|v| v.as_str().is_some_and(|s| bmc.iter().any(|b| b == s))))
                })
                .map(|n| n.uuid)
                .collect();
            match &found {
                Some(known) if !by_bmc.is_empty() && !by_bmc.contains(known) => return Err(not_found()),
                None if by_bmc.len() == 1 => found = by_bmc.into_iter().next(),
                None if by_bmc.len() > 1 => return Err(not_found()),
                _ => {}
            }
        }
        if found.is_none() {
            tracing::warn!(macs = %macs.join(", "), bmc = %bmc.join(", "), "inspection lookup: no node matches");
        }
        Ok(found)
    }
}

fn not_found() -> EngineError {
    EngineError::NotFound("The requested resource could not be found.".into())
}

/// The BMC addresses in a node's `driver_info` (`*_address` fields; a URL's host), loopback
/// excepted, as Ironic caches them for inspection lookup. Host names are not resolved.
pub fn bmc_addresses(driver_info: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for (name, value) in driver_info {
        let Some(address) = value.as_str().filter(|_| name.ends_with("_address")) else {
            continue;
        };
        let host = match url::Url::parse(address) {
            Ok(url) if address.contains("//") => url.host_str().unwrap_or_default().to_owned(),
            _ => address.to_owned(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let loopback = host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || host == "localhost";
        if !host.is_empty() && !loopback {
            out.insert(host);
        }
    }
    out.into_iter().collect()
}
