//! Nodes and ports as stored, and their API documents.
//!
//! The API document of a node follows Ironic's field order and hides fields newer than the
//! requested microversion, so the `baremetal` CLI and other Ironic clients see what they expect.
//! Secrets are masked in every output.

use std::collections::BTreeMap;

use rivet_common::JsonObject;
use rivet_common::steps::StepType;
use rivet_common::version::ApiVersion;
use serde::Serialize;
use serde_json::{Value, json};

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeRecord {
    pub uuid: String,
    pub name: Option<String>,
    pub driver: String,
    /// Interface kind (`boot`, `deploy`, ...) → implementation name.
    pub interfaces: BTreeMap<String, String>,
    pub driver_info: JsonObject,
    pub driver_internal_info: JsonObject,
    pub properties: JsonObject,
    pub instance_info: JsonObject,
    pub extra: JsonObject,
    /// Other API fields kept verbatim (description, owner, automated_clean, ...).
    pub attrs: JsonObject,
    pub provision_state: String,
    pub target_provision_state: Option<String>,
    pub provision_updated_at: Option<String>,
    pub power_state: Option<String>,
    pub target_power_state: Option<String>,
    pub last_error: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    pub fault: Option<String>,
    pub reservation: Option<String>,
    /// The node lock's fencing number when this record was read: a save is refused unless it
    /// is still current (see [`crate::task`]). Not an API field.
    pub lock_token: i64,
    pub clean_step: JsonObject,
    pub deploy_step: JsonObject,
    pub service_step: JsonObject,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// Provision state changes made to this record since it was read, not stored with it:
    /// saving the node records them in its history (`Conductor::save`).
    pub transitions: Vec<Transition>,
}

/// One provision state change of a node ([`crate::states::fire`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// The state machine's event (`deploy`, `done`, `fail`, ...).
    pub event: String,
    /// Seconds the node had been in `from`, when known.
    pub seconds_in_from: Option<i64>,
}

impl Transition {
    /// Whether the node's history records it: every change but a flow's own back and forth
    /// between working and waiting for its agent (`wait`, `resume`), which the step events
    /// already show.
    pub fn recorded(&self) -> bool {
        !matches!(self.event.as_str(), "wait" | "resume")
    }

    /// The history event's text: `Provision state changed from available to deploying
    /// (deploy) after 12 s`.
    pub fn describe(&self) -> String {
        let after = self
            .seconds_in_from
            .map(|s| format!(" after {s} s"))
            .unwrap_or_default();
        format!(
            "Provision state changed from {} to {} ({}){after}",
            self.from, self.to, self.event
        )
    }
}

/// A port as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PortRecord {
    pub uuid: String,
    pub address: String,
    pub node_uuid: String,
    pub pxe_enabled: bool,
    /// Other API fields (extra, local_link_connection, physical_network, ...).
    pub attrs: JsonObject,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// A chassis as stored (`/v1/chassis`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChassisRecord {
    /// Its UUID.
    pub uuid: String,
    /// Free text, at most 255 characters.
    pub description: Option<String>,
    /// Operator data.
    pub extra: JsonObject,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: Option<String>,
}

impl ChassisRecord {
    /// The API document: `uuid`, `description` and `links` in short listings; with `extra`,
    /// the times and the `nodes` links in full.
    pub fn to_api(&self, base: &str, full: bool) -> Value {
        let mut doc = json!({
            "uuid": self.uuid,
            "description": self.description,
            "links": links(base, &format!("chassis/{}", self.uuid)),
        });
        if full {
            doc["extra"] = Value::Object(self.extra.clone());
            doc["created_at"] = json!(self.created_at);
            doc["updated_at"] = json!(self.updated_at);
            doc["nodes"] = links(base, &format!("chassis/{}/nodes", self.uuid));
        }
        doc
    }
}

/// Which kind of [`StoredResource`] a stored row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A bond of the node's ports (`/v1/portgroups`, API 1.23).
    Portgroup,
    /// How the node reaches its volumes (`/v1/volume/connectors`, API 1.32).
    VolumeConnector,
    /// A volume the node boots from or attaches (`/v1/volume/targets`, API 1.32).
    VolumeTarget,
    /// Deploy steps named by a trait (`/v1/deploy_templates`, API 1.55).
    DeployTemplate,
    /// A named list of steps for cleaning and servicing (`/v1/runbooks`, API 1.92).
    Runbook,
    /// A request for a node (`/v1/allocations`, API 1.52).
    Allocation,
    /// Conditions and actions applied after inspection (`/v1/inspection_rules`, API 1.96).
    InspectionRule,
}

impl ResourceKind {
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Portgroup => "portgroup",
            ResourceKind::VolumeConnector => "volume_connector",
            ResourceKind::VolumeTarget => "volume_target",
            ResourceKind::DeployTemplate => "deploy_template",
            ResourceKind::Runbook => "runbook",
            ResourceKind::Allocation => "allocation",
            ResourceKind::InspectionRule => "inspection_rule",
        }
    }

    /// Every kind.
    pub const ALL: [ResourceKind; 7] = [
        ResourceKind::Portgroup,
        ResourceKind::VolumeConnector,
        ResourceKind::VolumeTarget,
        ResourceKind::DeployTemplate,
        ResourceKind::Runbook,
        ResourceKind::Allocation,
        ResourceKind::InspectionRule,
    ];

    /// Whether it is found by name as well as by UUID.
    pub fn named(self) -> bool {
        matches!(
            self,
            ResourceKind::Portgroup | ResourceKind::DeployTemplate | ResourceKind::Runbook | ResourceKind::Allocation
        )
    }

    /// How Ironic names it in messages ("Portgroup X could not be found.").
    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::Portgroup => "Portgroup",
            ResourceKind::VolumeConnector => "Volume connector",
            ResourceKind::VolumeTarget => "Volume target",
            ResourceKind::DeployTemplate => "Deploy template",
            ResourceKind::Runbook => "Runbook",
            ResourceKind::Allocation => "Allocation",
            ResourceKind::InspectionRule => "Rule",
        }
    }
}

/// A resource Ironic serves besides nodes, ports and chassis, stored as the API shows it
/// (table `resources`): a port group, volume connector or volume target (each of one node), a
/// deploy template, runbook or allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    /// Which kind.
    pub kind: ResourceKind,
    /// Its UUID.
    pub uuid: String,
    /// The node it belongs to (an allocation's once it has one; none for templates, runbooks).
    pub node_uuid: Option<String>,
    /// Every other API field but the times (`address`, `mode`, `connector_id`, `boot_index`, ...).
    pub doc: JsonObject,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: Option<String>,
}

impl StoredResource {
    /// The UUID of its node; empty when it has none.
    pub fn node(&self) -> &str {
        self.node_uuid.as_deref().unwrap_or_default()
    }

    /// A field of `doc`; null when absent.
    pub fn get(&self, field: &str) -> Value {
        self.doc.get(field).cloned().unwrap_or(Value::Null)
    }

    /// The two uniqueness keys of its kind (stored as `key_a`, `key_b`): a port group's MAC
    /// address and name, a connector's type and id, a target's node and boot index.
    pub fn keys(&self) -> (Option<String>, Option<String>) {
        let text = |field: &str| self.doc.get(field).and_then(Value::as_str).map(str::to_owned);
        match self.kind {
            ResourceKind::Portgroup => (text("address"), text("name")),
            ResourceKind::VolumeConnector => (
                Some(format!("{}\n{}", self.get("type"), self.get("connector_id"))),
                None,
            ),
            ResourceKind::VolumeTarget => (Some(format!("{}\n{}", self.node(), self.get("boot_index"))), None),
            ResourceKind::DeployTemplate | ResourceKind::Runbook | ResourceKind::Allocation => (None, text("name")),
            ResourceKind::InspectionRule => (None, None),
        }
    }

    /// Ironic's words when key a (`first`) or key b is already taken.
    pub fn duplicate_message(&self, first: bool) -> String {
        let text = |field: &str| {
            self.doc
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match (self.kind, first) {
            (ResourceKind::Portgroup, true) => {
                format!("A portgroup with MAC address {} already exists.", text("address"))
            }
            (ResourceKind::Portgroup, false) => format!("A portgroup with name {} already exists.", text("name")),
            (ResourceKind::VolumeConnector, _) => format!(
                "A volume connector with type {} and connector ID {} already exists.",
                text("type"),
                text("connector_id")
            ),
            (ResourceKind::VolumeTarget, _) => format!(
                "A volume target with boot index '{}' for the same node already exists.",
                self.get("boot_index")
            ),
            (ResourceKind::DeployTemplate, _) => {
                format!("A deploy template with name {} already exists.", text("name"))
            }
            (ResourceKind::Runbook, _) => format!("A runbook with name {} already exists.", text("name")),
            (ResourceKind::Allocation, _) => format!("An allocation with name {} already exists.", text("name")),
            (ResourceKind::InspectionRule, _) => format!("A rule with UUID {} already exists.", self.uuid),
        }
    }
}

/// One history entry: Ironic's node history fields (API 1.78; `project` 1.113; `state`,
/// `target_provision_state` and `duration_seconds` 1.115).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEvent {
    pub uuid: String,
    pub created_at: String,
    /// `INFO`, `WARNING` or `ERROR`.
    pub severity: String,
    pub event: String,
    /// The kind of activity: `cleaning`, `deploying`, `takeover`, ... (Ironic's history
    /// event types).
    pub event_type: String,
    /// The conductor that recorded it.
    pub conductor: Option<String>,
    pub user: Option<String>,
    pub project: Option<String>,
    /// The node's provision state and target when it was recorded.
    pub state: Option<String>,
    pub target_provision_state: Option<String>,
    /// Seconds the node had been in `state` then.
    pub duration_seconds: Option<i64>,
}

/// Ironic's history event type for an event recorded while the node is in `provision_state`.
pub fn history_event_type(provision_state: &str) -> &'static str {
    match provision_state {
        "cleaning" | "clean wait" | "clean failed" | "clean hold" => "cleaning",
        "deploying" | "wait call-back" | "deploy failed" | "deploy hold" => "deploying",
        "servicing" | "service wait" | "service failed" | "service hold" => "servicing",
        "inspecting" | "inspect wait" | "inspect failed" => "introspection",
        "rescuing" | "rescue wait" | "rescue failed" | "rescue" | "unrescuing" | "unrescue failed" => "rescue",
        "verifying" => "verify",
        "adopting" | "adopt failed" => "adoption",
        "deleting" | "error" => "unprovision",
        _ => "provisioning",
    }
}

/// Default values of the attribute fields (kept in `attrs`).
pub fn attr_default(name: &str) -> Value {
    match name {
        "console_enabled" | "protected" | "retired" | "disable_power_off" => json!(false),
        "conductor_group" => json!(""),
        "raid_config" | "target_raid_config" | "network_data" => json!({}),
        "traits" => json!([]),
        _ => Value::Null,
    }
}

/// Fields the API accepts in `attrs` (settable by create or patch).
pub const ATTR_FIELDS: &[&str] = &[
    "automated_clean",
    "boot_mode",
    "conductor_group",
    "console_enabled",
    "description",
    "disable_power_off",
    "health",
    "inspection_finished_at",
    "inspection_started_at",
    "instance_name",
    "instance_uuid",
    "lessee",
    "network_data",
    "owner",
    "parent_node",
    "protected",
    "protected_reason",
    "raid_config",
    "resource_class",
    "retired",
    "retired_reason",
    "secure_boot",
    "shard",
    "target_raid_config",
    "traits",
    "allocation_uuid",
    "chassis_uuid",
];

/// Interface kinds, as node fields `<kind>_interface`.
pub const INTERFACE_KINDS: &[&str] = &[
    "bios",
    "boot",
    "console",
    "deploy",
    "firmware",
    "inspect",
    "management",
    "network",
    "power",
    "raid",
    "rescue",
    "storage",
    "vendor",
];

/// Every node field in Ironic's order, with the microversion that introduced it.
const NODE_FIELDS: &[(&str, u32)] = &[
    ("uuid", 1),
    ("created_at", 1),
    ("updated_at", 1),
    ("automated_clean", 47),
    ("bios_interface", 40),
    ("boot_interface", 31),
    ("boot_mode", 75),
    ("clean_step", 7),
    ("conductor_group", 46),
    ("console_enabled", 1),
    ("console_interface", 31),
    ("disable_power_off", 95),
    ("deploy_interface", 31),
    ("deploy_step", 44),
    ("description", 51),
    ("driver", 1),
    ("driver_info", 1),
    ("driver_internal_info", 3),
    ("extra", 1),
    ("fault", 42),
    ("firmware_interface", 86),
    ("health", 109),
    ("inspection_finished_at", 6),
    ("inspection_started_at", 6),
    ("inspect_interface", 31),
    ("instance_info", 1),
    ("instance_name", 104),
    ("instance_uuid", 1),
    ("last_error", 1),
    ("lessee", 65),
    ("maintenance", 1),
    ("maintenance_reason", 1),
    ("management_interface", 31),
    ("name", 5),
    ("network_data", 66),
    ("network_interface", 20),
    ("owner", 50),
    ("parent_node", 83),
    ("power_interface", 31),
    ("power_state", 1),
    ("properties", 1),
    ("protected", 48),
    ("protected_reason", 48),
    ("provision_state", 1),
    ("provision_updated_at", 1),
    ("raid_config", 12),
    ("raid_interface", 31),
    ("rescue_interface", 38),
    ("reservation", 1),
    ("resource_class", 21),
    ("retired", 61),
    ("retired_reason", 61),
    ("secure_boot", 75),
    ("service_step", 87),
    ("shard", 82),
    ("storage_interface", 33),
    ("target_power_state", 1),
    ("target_provision_state", 1),
    ("target_raid_config", 12),
    ("traits", 37),
    ("vendor_interface", 31),
    ("links", 1),
    ("conductor", 49),
    ("allocation_uuid", 52),
    ("chassis_uuid", 1),
    ("ports", 1),
    ("states", 14),
    ("portgroups", 24),
    ("volume", 32),
];

/// Fields of the short node list.
pub const NODE_LIST_FIELDS: &[&str] = &[
    "uuid",
    "instance_uuid",
    "maintenance",
    "power_state",
    "provision_state",
    "name",
    "links",
];

/// True when `field` exists at `version`.
pub fn node_field_known(field: &str, version: ApiVersion) -> bool {
    NODE_FIELDS
        .iter()
        .any(|(f, minor)| *f == field && version.minor >= *minor)
}

/// True when a field added at `minor` exists at `version` and is among the requested `fields`
/// (all fields when none were requested).
fn is_shown(field: &str, minor: u32, version: ApiVersion, fields: Option<&[String]>) -> bool {
    version.minor >= minor && fields.is_none_or(|wanted| wanted.iter().any(|w| w == field))
}

/// Keys whose values are secrets (substring, case-insensitive), as oslo's mask_dict_password.
const SECRET_MARKERS: &[&str] = &[
    "password",
    "passwd",
    "pswd",
    "token",
    "secret",
    "credential",
    "private_key",
    "encryption_key",
    "auth_key",
];

/// The mask Ironic prints for secrets.
pub const MASK: &str = "******";

/// Replace secret-looking values (recursively).
pub fn mask_secrets(doc: &JsonObject) -> JsonObject {
    doc.iter()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            let masked = if SECRET_MARKERS.iter().any(|m| lower.contains(m)) && !v.is_null() {
                json!(MASK)
            } else if let Value::Object(inner) = v {
                Value::Object(mask_secrets(inner))
            } else {
                v.clone()
            };
            (k.clone(), masked)
        })
        .collect()
}

/// `instance_info` for output: image URL and config drive masked as Ironic does.
pub fn mask_instance_info(doc: &JsonObject) -> JsonObject {
    let mut out = mask_secrets(doc);
    for key in ["configdrive", "image_url"] {
        if out.get(key).is_some_and(|v| !v.is_null()) {
            out.insert(key.into(), json!(MASK));
        }
    }
    out
}

/// Self and bookmark links.
pub fn links(base: &str, path: &str) -> Value {
    json!([{"href": format!("{base}/v1/{path}"), "rel": "self"}, {"href": format!("{base}/{path}"), "rel": "bookmark"}])
}

/// A provision state as a client of `version` sees it: before 1.2 `available` was "no state"
/// (null), before 1.39 `inspect wait` was `inspecting` (Ironic's node controller).
pub fn shown_provision_state(state: &str, version: ApiVersion) -> Option<&str> {
    match state {
        "available" if version.minor < 2 => None,
        "inspect wait" if version.minor < 39 => Some("inspecting"),
        other => Some(other),
    }
}

impl NodeRecord {
    /// Ironic's `get_updated_capabilities`: `key:value` pairs, comma-separated, updated in place
    /// and added at the end, in `properties.capabilities`.
    ///
    /// Errors: the current string has a pair without `:`.
    pub fn update_capabilities(&mut self, new: &[(String, String)]) -> Result<(), String> {
        let current = self
            .properties
            .get("capabilities")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut caps: Vec<(String, String)> = Vec::new();
        if !current.is_empty() {
            for pair in current.split(',') {
                let (k, v) = pair
                    .split_once(':')
                    .ok_or_else(|| format!("Invalid capabilities string '{current}'."))?;
                match caps.iter_mut().find(|(key, _)| key == k) {
                    Some(slot) => slot.1 = v.to_owned(),
                    None => caps.push((k.to_owned(), v.to_owned())),
                }
            }
        }
        for (k, v) in new {
            match caps.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => caps.push((k.clone(), v.clone())),
            }
        }
        let joined = caps
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",");
        self.properties.insert("capabilities".into(), json!(joined));
        Ok(())
    }

    /// The running step of `flow` (`clean_step`, `deploy_step` or `service_step`); empty when
    /// none runs.
    pub fn current_step(&self, flow: StepType) -> &JsonObject {
        match flow {
            StepType::Clean => &self.clean_step,
            StepType::Deploy => &self.deploy_step,
            StepType::Service => &self.service_step,
        }
    }

    /// `interface.step` of the step the node's flow (by its provision state) runs, if any.
    pub fn running_step_name(&self) -> Option<String> {
        let step = self.current_step(crate::states::flow_of(&self.provision_state)?);
        Some(format!(
            "{}.{}",
            step.get("interface")?.as_str()?,
            step.get("step")?.as_str()?
        ))
    }

    /// The running step of `flow`, to set or clear.
    pub fn current_step_mut(&mut self, flow: StepType) -> &mut JsonObject {
        match flow {
            StepType::Clean => &mut self.clean_step,
            StepType::Deploy => &mut self.deploy_step,
            StepType::Service => &mut self.service_step,
        }
    }

    /// Value of an attribute field, or its default.
    pub fn attr(&self, name: &str) -> Value {
        self.attrs.get(name).cloned().unwrap_or_else(|| attr_default(name))
    }

    /// The implementation chosen for an interface kind.
    pub fn interface(&self, kind: &str) -> &str {
        self.interfaces.get(kind).map(String::as_str).unwrap_or("")
    }

    /// Every field, unmasked and unfiltered (internal form used by patches).
    pub fn raw_fields(&self) -> JsonObject {
        let mut doc = JsonObject::new();
        let obj = |o: &JsonObject| Value::Object(o.clone());
        for (field, _) in NODE_FIELDS {
            let value = match *field {
                "uuid" => json!(self.uuid),
                "created_at" => json!(self.created_at),
                "updated_at" => json!(self.updated_at),
                "clean_step" => obj(&self.clean_step),
                "deploy_step" => obj(&self.deploy_step),
                "service_step" => obj(&self.service_step),
                "driver" => json!(self.driver),
                "driver_info" => obj(&self.driver_info),
                "driver_internal_info" => obj(&self.driver_internal_info),
                "extra" => obj(&self.extra),
                "fault" => json!(self.fault),
                "instance_info" => obj(&self.instance_info),
                "last_error" => json!(self.last_error),
                "maintenance" => json!(self.maintenance),
                "maintenance_reason" => json!(self.maintenance_reason),
                "name" => json!(self.name),
                "power_state" => json!(self.power_state),
                "properties" => obj(&self.properties),
                "provision_state" => json!(self.provision_state),
                "provision_updated_at" => json!(self.provision_updated_at),
                "reservation" => json!(self.reservation),
                "target_power_state" => json!(self.target_power_state),
                "target_provision_state" => json!(self.target_provision_state),
                f if f.ends_with("_interface") => json!(self.interface(f.trim_end_matches("_interface"))),
                "links" | "conductor" | "ports" | "states" | "portgroups" | "volume" => continue,
                f => self.attr(f),
            };
            doc.insert((*field).to_owned(), value);
        }
        doc
    }

    /// The API document for `version`, secrets masked, optionally only some fields.
    pub fn to_api(&self, version: ApiVersion, base: &str, conductor: &str, fields: Option<&[String]>) -> Value {
        let raw = self.raw_fields();
        let mut doc = JsonObject::new();
        for (field, minor) in NODE_FIELDS {
            // Links come with any choice of fields, as Ironic sends them.
            let links_with_fields = *field == "links" && fields.is_some();
            if !(is_shown(field, *minor, version, fields) || links_with_fields) {
                continue;
            }
            let value = match *field {
                "provision_state" => json!(shown_provision_state(&self.provision_state, version)),
                "driver_info" => Value::Object(mask_secrets(&self.driver_info)),
                "driver_internal_info" => Value::Object(mask_secrets(&self.driver_internal_info)),
                "instance_info" => Value::Object(mask_instance_info(&self.instance_info)),
                "links" => links(base, &format!("nodes/{}", self.uuid)),
                "conductor" => json!(conductor),
                "ports" | "states" | "portgroups" | "volume" => links(base, &format!("nodes/{}/{field}", self.uuid)),
                f => raw.get(f).cloned().unwrap_or(Value::Null),
            };
            doc.insert((*field).to_owned(), value);
        }
        Value::Object(doc)
    }
}

/// A registered conductor (`/v1/conductors`, API 1.49).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConductorRecord {
    /// Its `--host`.
    pub hostname: String,
    /// Enabled hardware types.
    pub drivers: Vec<String>,
    /// Its conductor group (`""`: the default group).
    pub conductor_group: String,
    /// Registered and not stopped.
    pub online: bool,
    /// When it first registered.
    pub created_at: String,
    /// Its last refresh.
    pub updated_at: Option<String>,
}

impl ConductorRecord {
    /// The API document: `hostname`, `conductor_group`, `alive` and `links`, plus
    /// `created_at`, `updated_at` and `drivers` in detail.
    pub fn to_api(&self, base: &str, detail: bool) -> Value {
        let mut doc = json!({
            "hostname": self.hostname,
            "conductor_group": self.conductor_group,
            "alive": self.online,
            "links": links(base, &format!("conductors/{}", self.hostname)),
        });
        if detail {
            doc["created_at"] = json!(self.created_at);
            doc["updated_at"] = json!(self.updated_at);
            doc["drivers"] = json!(self.drivers);
        }
        doc
    }
}

/// Port fields in Ironic's order with their microversions.
const PORT_FIELDS: &[(&str, u32)] = &[
    ("uuid", 1),
    ("created_at", 1),
    ("updated_at", 1),
    ("address", 1),
    ("extra", 1),
    ("internal_info", 18),
    ("is_smartnic", 53),
    ("local_link_connection", 19),
    ("physical_network", 34),
    ("pxe_enabled", 19),
    ("node_uuid", 1),
    ("name", 101),
    ("description", 111),
    ("vendor", 100),
    ("category", 100),
    ("available_for_dynamic_portgroup", 111),
    ("links", 1),
    ("portgroup_uuid", 24),
];

/// The minor API version that added a port field; `None` for a field ports do not have.
pub fn port_field_minor(field: &str) -> Option<u32> {
    PORT_FIELDS.iter().find(|(f, _)| *f == field).map(|(_, minor)| *minor)
}

/// Port attributes kept in `attrs`, with defaults.
pub fn port_attr_default(name: &str) -> Value {
    match name {
        "extra" | "internal_info" | "local_link_connection" => json!({}),
        "is_smartnic" => json!(false),
        "available_for_dynamic_portgroup" => json!(true),
        _ => Value::Null,
    }
}

/// Fields settable on a port besides address, node and pxe_enabled.
pub const PORT_ATTR_FIELDS: &[&str] = &[
    "extra",
    "internal_info",
    "is_smartnic",
    "local_link_connection",
    "physical_network",
    "name",
    "description",
    "vendor",
    "category",
    "available_for_dynamic_portgroup",
    "portgroup_uuid",
];

impl PortRecord {
    /// A port attribute or its default.
    pub fn attr(&self, name: &str) -> Value {
        self.attrs.get(name).cloned().unwrap_or_else(|| port_attr_default(name))
    }

    /// The API document for `version`.
    pub fn to_api(&self, version: ApiVersion, base: &str, fields: Option<&[String]>) -> Value {
        let mut doc = JsonObject::new();
        for (field, minor) in PORT_FIELDS {
            if !is_shown(field, *minor, version, fields) {
                continue;
            }
            let value = match *field {
                "uuid" => json!(self.uuid),
                "created_at" => json!(self.created_at),
                "updated_at" => json!(self.updated_at),
                "address" => json!(self.address),
                "node_uuid" => json!(self.node_uuid),
                "pxe_enabled" => json!(self.pxe_enabled),
                "links" => links(base, &format!("ports/{}", self.uuid)),
                f => self.attr(f),
            };
            doc.insert((*field).to_owned(), value);
        }
        Value::Object(doc)
    }

    /// The port dict sent to agents in step parameters.
    pub fn to_agent(&self) -> Value {
        let mut doc = self.attrs.clone();
        doc.insert("uuid".into(), json!(self.uuid));
        doc.insert("address".into(), json!(self.address));
        doc.insert("node_uuid".into(), json!(self.node_uuid));
        doc.insert("pxe_enabled".into(), json!(self.pxe_enabled));
        Value::Object(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_recursively() {
        let doc = json!({"ipmi_password": "x", "ipmi_username": "admin", "nested": {"auth_token": "t"}, "redfish_password": null});
        let masked = mask_secrets(doc.as_object().expect("object"));
        assert_eq!(
            Value::Object(masked),
            json!({"ipmi_password": "******", "ipmi_username": "admin", "nested": {"auth_token": "******"}, "redfish_password": null})
        );
    }
}
