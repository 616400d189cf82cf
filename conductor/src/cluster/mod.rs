//! Several conductors on one database (docs/conductor.md "Several conductors").
//!
//! The database is the coordination engine. Each conductor refreshes its row in `conductors`
//! every `heartbeat_interval` ([`membership`]); one whose row is older than `heartbeat_timeout`
//! is dead. Nodes map to the live conductors of their `conductor_group` that have their
//! hardware type enabled by a consistent hash ring ([`ring`], Ironic's model). The owner runs a
//! node's periodic work and takes it over when the conductor holding its lock dies
//! ([`takeover`]): it breaks the dead conductor's lock, which moves the node's fencing number on
//! (see [`crate::task`]), and resumes the flow from its last saved point.

pub mod membership;
pub mod ring;
pub mod takeover;
pub mod work;

use std::time::Duration;

pub use membership::Members;
pub use ring::HashRing;

/// Membership and ownership settings (Ironic's `[conductor]` names).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This conductor's group, lower case (`""`: the default group).
    pub conductor_group: String,
    /// How often this conductor refreshes its membership row and looks for dead conductors.
    pub heartbeat_interval: Duration,
    /// A conductor whose row is older than this is dead.
    pub heartbeat_timeout: Duration,
    /// Record every node lock in `node_locks`.
    pub lock_history: bool,
    /// Serve the API only (`--api-only`): own no nodes, hand every verb and heartbeat to the
    /// node's owner, run no periodic work.
    pub api_only: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            conductor_group: String::new(),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(60),
            lock_history: false,
            api_only: false,
        }
    }
}
