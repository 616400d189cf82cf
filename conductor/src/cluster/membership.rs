//! Who is alive, and who owns which node.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::HashRing;
use crate::model::{ConductorRecord, NodeRecord};

/// True if `record` registered and refreshed its row within `timeout` of `now` (a clean stop
/// sets `online` to false at once).
pub fn is_alive(record: &ConductorRecord, timeout: Duration, now: OffsetDateTime) -> bool {
    let seen = record.updated_at.as_deref().unwrap_or(&record.created_at);
    record.online
        && crate::time::parse(seen).is_some_and(|t| (now - t).whole_milliseconds() <= timeout.as_millis() as i128)
}

/// The live conductors at one moment, and a ring per (conductor group, hardware type).
#[derive(Debug, Clone, Default)]
pub struct Members {
    alive: Vec<String>,
    /// Each registered conductor's row age at the read, in seconds (`None`: never refreshed or
    /// unreadable), for the take-over's message.
    seen_ago: BTreeMap<String, Option<f64>>,
    /// `(group, hardware type)` to the ring of the live conductors of that group with it enabled.
    rings: BTreeMap<(String, String), HashRing>,
}

impl Members {
    /// The members among `records` alive at `now`.
    pub fn new(records: &[ConductorRecord], timeout: Duration, now: OffsetDateTime) -> Self {
        let live: Vec<&ConductorRecord> = records.iter().filter(|r| is_alive(r, timeout, now)).collect();
        let mut hosts: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
        for record in &live {
            for driver in &record.drivers {
                hosts
                    .entry((record.conductor_group.to_lowercase(), driver.clone()))
                    .or_default()
                    .push(&record.hostname);
            }
        }
        let seen_ago = records
            .iter()
            .map(|r| {
                let seen = r.updated_at.as_deref().unwrap_or(&r.created_at);
                let ago = crate::time::parse(seen).map(|t| (now - t).as_seconds_f64());
                (r.hostname.clone(), ago)
            })
            .collect();
        Members {
            alive: live.iter().map(|r| r.hostname.clone()).collect(),
            seen_ago,
            rings: hosts
                .into_iter()
                .map(|(key, hosts)| (key, HashRing::new(hosts)))
                .collect(),
        }
    }

    /// True if `host` is a live member.
    pub fn is_alive(&self, host: &str) -> bool {
        self.alive.iter().any(|h| h == host)
    }

    /// How long ago `host` last refreshed its row, as of this read, in seconds.
    pub fn seen_ago(&self, host: &str) -> Option<f64> {
        self.seen_ago.get(host).copied().flatten()
    }

    /// The live conductor that owns `node`: one of its `conductor_group` with its hardware type
    /// enabled, by the ring; `None` if there is none (the node waits for one to join).
    pub fn owner(&self, node: &NodeRecord) -> Option<&str> {
        let group = node.attr("conductor_group").as_str().unwrap_or_default().to_lowercase();
        self.rings.get(&(group, node.driver.clone()))?.owner(&node.uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, group: &str, seen_secs_ago: i64, online: bool) -> ConductorRecord {
        let now = OffsetDateTime::now_utc();
        ConductorRecord {
            hostname: host.into(),
            drivers: vec!["fake-hardware".into()],
            conductor_group: group.into(),
            online,
            created_at: crate::time::format_iso(now - time::Duration::hours(1)),
            updated_at: Some(crate::time::format_iso(now - time::Duration::seconds(seen_secs_ago))),
        }
    }

    fn node(uuid: &str, group: &str) -> NodeRecord {
        let mut node = NodeRecord {
            uuid: uuid.into(),
            driver: "fake-hardware".into(),
            ..Default::default()
        };
        node.attrs.insert("conductor_group".into(), serde_json::json!(group));
        node
    }

    #[test]
    fn a_conductor_silent_past_the_timeout_or_stopped_is_dead() {
        let now = OffsetDateTime::now_utc();
        let timeout = Duration::from_secs(60);
        assert!(is_alive(&record("a", "", 5, true), timeout, now));
        assert!(!is_alive(&record("b", "", 61, true), timeout, now));
        assert!(!is_alive(&record("c", "", 5, false), timeout, now));
    }

    /// An API-only replica registers with no hardware type: alive (its locks are not a dead
    /// conductor's), owner of nothing.
    #[test]
    fn a_member_without_hardware_types_is_alive_and_owns_nothing() {
        let api_only = ConductorRecord {
            drivers: Vec::new(),
            ..record("api-only", "", 1, true)
        };
        let members = Members::new(
            &[api_only, record("a", "", 1, true)],
            Duration::from_secs(60),
            OffsetDateTime::now_utc(),
        );
        assert!(members.is_alive("api-only"));
        for i in 0..50 {
            assert_eq!(members.owner(&node(&format!("node-{i}"), "")), Some("a"));
        }
    }

    #[test]
    fn nodes_belong_to_live_conductors_of_their_group() {
        let records = [
            record("a", "", 1, true),
            record("b", "rack2", 1, true),
            record("dead", "rack2", 600, true),
        ];
        let members = Members::new(&records, Duration::from_secs(60), OffsetDateTime::now_utc());
        for i in 0..50 {
            let uuid = format!("00000000-0000-4000-8000-{i:012}");
            assert_eq!(members.owner(&node(&uuid, "")), Some("a"));
            assert_eq!(members.owner(&node(&uuid, "RACK2")), Some("b"));
            assert_eq!(members.owner(&node(&uuid, "rack3")), None);
        }
        let mut other = node("n", "");
        other.driver = "ipmi".into();
        assert_eq!(members.owner(&other), None, "no live conductor has ipmi enabled");
    }
}
