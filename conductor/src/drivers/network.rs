//! Network interfaces: where a node's VIFs (the tenant network ports a cloud or an operator
//! attaches to the machine) are recorded.
//!
//! * `noop` attaches nothing: attaching succeeds and the list stays empty (Ironic's `noop`).
//! * `flat` records each VIF on one of the node's ports or port groups, in its `internal_info`
//!   as `tenant_vif_port_id`, choosing as Ironic's `get_free_port_like_object` does (port
//!   groups before ports, PXE-enabled ports before others, never a port or group that holds a
//!   VIF). Rivet talks to no Neutron, so physical networks restrict nothing, as in Ironic
//!   without Neutron, and no switch is configured.
//!
//! The functions here decide; the API stores what they decide under the node's lock.

use serde_json::Value;

use crate::model::{PortRecord, StoredResource};

/// Where `flat` records a VIF in a port's or port group's `internal_info`.
pub const VIF_KEY: &str = "tenant_vif_port_id";

/// A port or a port group, by UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortLike {
    /// A port.
    Port(String),
    /// A port group.
    Portgroup(String),
}

/// Why a VIF cannot be attached or detached; the API answers with these words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VifError {
    /// The VIF is on one of the node's ports or groups already (409).
    #[error("Unable to attach VIF because VIF {vif} is already attached to Ironic {kind} {uuid}")]
    AlreadyAttached {
        vif: String,
        kind: &'static str,
        uuid: String,
    },
    /// No port or group is free (400).
    #[error("Unable to attach VIF {vif}, not enough free physical ports.")]
    NoFreePorts { vif: String },
    /// Detaching a VIF the node does not have (400).
    #[error("Unable to detach VIF {vif} from node {node} because it is not attached to it.")]
    NotAttached { vif: String, node: String },
}

fn vif_of_port(port: &PortRecord) -> Option<String> {
    port.attr("internal_info")
        .get(VIF_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn vif_of_group(group: &StoredResource) -> Option<String> {
    group
        .get("internal_info")
        .get(VIF_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn group_of(port: &PortRecord) -> Option<String> {
    port.attr("portgroup_uuid").as_str().map(str::to_owned)
}

/// The VIFs attached to a node: those on its ports, then those on its groups (Ironic's
/// `vif_list` order).
pub fn attached(ports: &[PortRecord], groups: &[StoredResource]) -> Vec<String> {
    ports
        .iter()
        .filter_map(vif_of_port)
        .chain(groups.iter().filter_map(vif_of_group))
        .collect()
}

/// The port or group that holds `vif`, groups first.
pub fn holder(ports: &[PortRecord], groups: &[StoredResource], vif: &str) -> Option<PortLike> {
    groups
        .iter()
        .find(|g| vif_of_group(g).as_deref() == Some(vif))
        .map(|g| PortLike::Portgroup(g.uuid.clone()))
        .or_else(|| {
            ports
                .iter()
                .find(|p| vif_of_port(p).as_deref() == Some(vif))
                .map(|p| PortLike::Port(p.uuid.clone()))
        })
}

/// Where `vif` goes: the port (`port_uuid`) or group (`portgroup_uuid`) the caller asked for,
/// else the best free one. A group is free when none of its ports holds a VIF and it has ports;
/// a group one of whose ports holds a VIF offers its other ports one by one instead.
pub fn choose(
    ports: &[PortRecord],
    groups: &[StoredResource],
    vif: &str,
    port_uuid: Option<&str>,
    portgroup_uuid: Option<&str>,
) -> Result<PortLike, VifError> {
    let already = |kind, uuid: &str| VifError::AlreadyAttached {
        vif: vif.to_owned(),
        kind,
        uuid: uuid.to_owned(),
    };
    // (is a group, PXE enabled, which): the best sorts last.
    let mut free: Vec<(bool, bool, PortLike)> = Vec::new();
    let mut members: std::collections::HashMap<String, Vec<&PortRecord>> = std::collections::HashMap::new();
    let mut unusable_groups = std::collections::HashSet::new();
    for port in ports {
        if port_uuid.is_some_and(|u| u != port.uuid) {
            continue;
        }
        if let Some(held) = vif_of_port(port) {
            if held == vif {
                return Err(already("Port", &port.uuid));
            }
            unusable_groups.extend(group_of(port));
            continue;
        }
        match group_of(port) {
            None if portgroup_uuid.is_none() => free.push((false, port.pxe_enabled, PortLike::Port(port.uuid.clone()))),
            None => {}
            Some(group) => members.entry(group).or_default().push(port),
        }
    }
    if port_uuid.is_none() {
        for group in groups {
            if portgroup_uuid.is_some_and(|u| u != group.uuid) {
                continue;
            }
            match vif_of_group(group) {
                Some(held) if held == vif => return Err(already("Portgroup", &group.uuid)),
                Some(_) => continue,
                None => {}
            }
            let group_ports = members.get(&group.uuid).cloned().unwrap_or_default();
            if unusable_groups.contains(&group.uuid) {
                if portgroup_uuid.is_none() {
                    free.extend(
                        group_ports
                            .iter()
                            .map(|p| (false, p.pxe_enabled, PortLike::Port(p.uuid.clone()))),
                    );
                }
            } else if !group_ports.is_empty() {
                free.push((true, true, PortLike::Portgroup(group.uuid.clone())));
            }
        }
    }
    // A stable sort keeps the database order among equals, as Ironic's sorted() does.
    free.sort_by_key(|(is_group, pxe, _)| std::cmp::Reverse((*is_group, *pxe)));
    free.into_iter()
        .next()
        .map(|(_, _, which)| which)
        .ok_or_else(|| VifError::NoFreePorts { vif: vif.to_owned() })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::ResourceKind;

    fn port(uuid: &str, pxe: bool, group: Option<&str>, vif: Option<&str>) -> PortRecord {
        let mut attrs = rivet_common::JsonObject::new();
        if let Some(g) = group {
            attrs.insert("portgroup_uuid".into(), json!(g));
        }
        if let Some(v) = vif {
            attrs.insert("internal_info".into(), json!({VIF_KEY: v}));
        }
        PortRecord {
            uuid: uuid.into(),
            address: String::new(),
            node_uuid: "n".into(),
            pxe_enabled: pxe,
            attrs,
            created_at: String::new(),
            updated_at: None,
        }
    }

    fn group(uuid: &str, vif: Option<&str>) -> StoredResource {
        let info = vif.map_or(json!({}), |v| json!({VIF_KEY: v}));
        StoredResource {
            kind: ResourceKind::Portgroup,
            uuid: uuid.into(),
            node_uuid: Some("n".into()),
            doc: json!({"internal_info": info}).as_object().cloned().unwrap_or_default(),
            created_at: String::new(),
            updated_at: None,
        }
    }

    #[test]
    fn groups_come_before_pxe_ports_before_others() {
        let ports = [
            port("p1", false, None, None),
            port("p2", true, None, None),
            port("p3", true, Some("g1"), None),
        ];
        let groups = [group("g1", None)];
        assert_eq!(
            choose(&ports, &groups, "v", None, None),
            Ok(PortLike::Portgroup("g1".into()))
        );
        assert_eq!(choose(&ports, &[], "v", None, None), Ok(PortLike::Port("p2".into())));
        assert_eq!(
            choose(&ports[..1], &[], "v", None, None),
            Ok(PortLike::Port("p1".into()))
        );
    }

    #[test]
    fn a_group_without_ports_or_holding_a_vif_is_not_free() {
        let groups = [group("g1", None), group("g2", Some("other"))];
        let ports = [port("p3", true, Some("g2"), None)];
        assert_eq!(
            choose(&ports, &groups, "v", None, None),
            Err(VifError::NoFreePorts { vif: "v".into() })
        );
    }

    #[test]
    fn a_member_holding_a_vif_frees_its_siblings_one_by_one() {
        let ports = [
            port("p1", true, Some("g1"), Some("other")),
            port("p2", false, Some("g1"), None),
        ];
        let groups = [group("g1", None)];
        assert_eq!(
            choose(&ports, &groups, "v", None, None),
            Ok(PortLike::Port("p2".into()))
        );
        assert!(
            choose(&ports, &groups, "v", None, Some("g1")).is_err(),
            "the group itself is not free"
        );
    }

    #[test]
    fn a_vif_attaches_once_and_is_found_where_it_is() {
        let ports = [port("p1", true, None, Some("v")), port("p2", true, None, None)];
        let groups = [group("g1", Some("w"))];
        assert_eq!(
            choose(&ports, &groups, "v", None, None).map_err(|e| e.to_string()),
            Err("Unable to attach VIF because VIF v is already attached to Ironic Port p1".into())
        );
        assert_eq!(attached(&ports, &groups), ["v", "w"]);
        assert_eq!(holder(&ports, &groups, "w"), Some(PortLike::Portgroup("g1".into())));
        assert_eq!(holder(&ports, &groups, "v"), Some(PortLike::Port("p1".into())));
        assert_eq!(holder(&ports, &groups, "x"), None);
    }

    #[test]
    fn the_caller_may_name_the_port() {
        let ports = [port("p1", true, None, None), port("p2", false, None, None)];
        assert_eq!(
            choose(&ports, &[], "v", Some("p2"), None),
            Ok(PortLike::Port("p2".into()))
        );
        assert!(choose(&ports, &[], "v", Some("p9"), None).is_err());
    }
}
