//! Nodes and ports as the conductor hands them to the agent (lookup answer, step params).
//!
//! These are views of Ironic's node and port documents: the fields the agent reads are typed,
//! everything else rides along in `extra` so a document can be echoed back unchanged.

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// A node document (`Node.as_dict(secure=True)` or the lookup's node).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Node {
    /// Node UUID.
    pub uuid: String,
    /// Operator-set hardware properties (`root_device`, `capabilities`, `skip_block_devices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<JsonObject>,
    /// Instance settings (image, `root_device`, `deploy_boot_mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_info: Option<JsonObject>,
    /// BMC and driver settings; secrets arrive masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_info: Option<JsonObject>,
    /// Conductor bookkeeping (erase settings, cached steps, agent URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_internal_info: Option<JsonObject>,
    /// Every other field of the document.
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Node {
    /// A key of `properties`, if set.
    pub fn property(&self, key: &str) -> Option<&serde_json::Value> {
        self.properties.as_ref()?.get(key)
    }

    /// A key of `instance_info`, if set.
    pub fn instance_info_value(&self, key: &str) -> Option<&serde_json::Value> {
        self.instance_info.as_ref()?.get(key)
    }

    /// A key of `driver_internal_info`, if set.
    pub fn internal_info_value(&self, key: &str) -> Option<&serde_json::Value> {
        self.driver_internal_info.as_ref()?.get(key)
    }
}

/// A port document: one NIC of a node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Port {
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Every other field of the document.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One entry of a node's history (`GET /v1/nodes/{node}/history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Event UUID.
    pub uuid: String,
    /// ISO 8601 time.
    pub created_at: String,
    /// `INFO` or `ERROR`.
    pub severity: String,
    /// What happened.
    pub event: String,
}
