//! Allocations (API 1.52): a request for a node by resource class, traits, candidate nodes and
//! owner, as standalone Ironic users (Bifrost, Metal3) make them. The conductor that receives
//! one picks a node in the background, as Ironic's `conductor/allocations.py` does:
//!
//! * candidates are `available`, powered (a known power state), not in maintenance, with no
//!   instance and no allocation, of the resource class, among `candidate_nodes` when given, of
//!   the owner's project (owner or lessee) when given, and with every requested trait;
//! * each candidate is tried under its lock, checked again, and the first one that still fits
//!   gets `allocation_uuid` and (unless it has one) `instance_uuid` set to the allocation, and
//!   the requested traits in `instance_info.traits`;
//! * the allocation ends `active` with its `node_uuid`, or `error` with Ironic's `last_error`.
//!
//! A node takes its allocation along when it is torn down (`undeploy`) and when it is deleted.
//! A conductor start finishes the allocations it received and left `allocating`; every
//! conductor's periodic round finishes those left `allocating` for over [`STALE_ALLOCATION`].

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::engine::{Conductor, EngineError};
use crate::model::{NodeRecord, ResourceKind, StoredResource};
use crate::states::state;
use crate::time::now_iso;

/// An allocation's states.
pub const ALLOCATING: &str = "allocating";
/// The allocation holds a node.
pub const ACTIVE: &str = "active";
/// No node could be allocated; `last_error` says why.
pub const ERROR: &str = "error";

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn text(node: &NodeRecord, field: &str) -> Option<String> {
    node.attr(field).as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Whether `node` may take `allocation` now (checked again under the node's lock).
fn fits(node: &NodeRecord, allocation: &StoredResource) -> bool {
    node.provision_state == state::AVAILABLE
        && !node.maintenance
        && node.power_state.is_some()
        && text(node, "instance_uuid").is_none()
        && text(node, "allocation_uuid").is_none()
        && node.attr("resource_class") == allocation.get("resource_class")
}

/// How long an allocation may stay `allocating` before any conductor processes it again.
pub const STALE_ALLOCATION: std::time::Duration = std::time::Duration::from_secs(120);

/// Clear what [`take`] set for allocation `uuid`; whether the node named it.
pub fn give_back(node: &mut NodeRecord, uuid: &str) -> bool {
    if text(node, "allocation_uuid").as_deref() != Some(uuid) {
        return false;
    }
    node.attrs.insert("allocation_uuid".into(), Value::Null);
    if text(node, "instance_uuid").as_deref() == Some(uuid) {
        node.attrs.insert("instance_uuid".into(), Value::Null);
    }
    true
}

/// Mark `node` as taken by `allocation`: its `allocation_uuid`, its `instance_uuid` unless it
/// has one, and the requested traits in `instance_info.traits` (as Ironic records them for
/// deploy templates to match).
pub fn take(node: &mut NodeRecord, allocation: &StoredResource) {
    node.attrs.insert("allocation_uuid".into(), json!(allocation.uuid));
    if text(node, "instance_uuid").is_none() {
        node.attrs.insert("instance_uuid".into(), json!(allocation.uuid));
    }
    node.instance_info.insert("traits".into(), allocation.get("traits"));
}

impl Conductor {
    /// Process an allocation in `allocating` in the background.
    pub fn spawn_allocation(self: &Arc<Self>, uuid: String) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = me.allocate(&uuid).await {
                tracing::error!(allocation = %uuid, error = %e, "allocation could not be processed");
            }
        });
    }

    /// Finish every allocation this conductor received and left `allocating` (a previous run
    /// stopped mid-way). Only its own (`conductor_affinity`, kept in the stored document and
    /// never shown): two conductors must not each reserve a node for the same allocation.
    pub async fn resume_allocations(self: &Arc<Self>) -> Result<(), EngineError> {
        let host = self.locks.host();
        for allocation in self.db.resources(ResourceKind::Allocation, None).await? {
            if allocation.get("state") == ALLOCATING && allocation.get("conductor_affinity") == host {
                self.spawn_allocation(allocation.uuid);
            }
        }
        Ok(())
    }

    /// Pick a node for the allocation `uuid` if it is still `allocating`, and record the
    /// outcome on it. The allocation may change meanwhile: a rename is kept (the outcome is
    /// written over the allocation as it is then, only if nobody wrote it in between), and a
    /// node reserved for an allocation deleted or finished elsewhere meanwhile is given back.
    pub async fn allocate(&self, uuid: &str) -> Result<(), EngineError> {
        let Some(allocation) = self.db.resource(ResourceKind::Allocation, uuid).await? else {
            return Ok(());
        };
        if allocation.get("state") != ALLOCATING {
            return Ok(());
        }
        let nodes = self.db.nodes().await?;
        // A node may already carry it: the previous run stopped between the two writes.
        let outcome = match nodes
            .iter()
            .find(|n| text(n, "allocation_uuid").as_deref() == Some(uuid))
        {
            Some(node) => Ok(node.uuid.clone()),
            None => self.reserve_one(&allocation, nodes).await?,
        };
        for _ in 0..5 {
            let Some(mut current) = self.db.resource(ResourceKind::Allocation, uuid).await? else {
                tracing::info!(allocation = %uuid, "allocation deleted while a node was picked for it");
                return self.undo_reservation(uuid, &outcome).await;
            };
            if current.get("state") != ALLOCATING {
                if outcome.as_ref().ok() != current.node_uuid.as_ref() {
                    return self.undo_reservation(uuid, &outcome).await;
                }
                return Ok(());
            }
            let read_at = current.updated_at.clone();
            match &outcome {
                Ok(node) => {
                    tracing::info!(allocation = %uuid, %node, "node reserved for the allocation");
                    current.node_uuid = Some(node.clone());
                    current.doc.insert("state".into(), json!(ACTIVE));
                    current.doc.insert("last_error".into(), Value::Null);
                }
                Err(error) => {
                    tracing::warn!(allocation = %uuid, %error, "allocation failed");
                    current.doc.insert("state".into(), json!(ERROR));
                    current.doc.insert(
                        "last_error".into(),
                        json!(format!("Failed to process allocation {uuid}: {error}.")),
                    );
                }
            }
            current.updated_at = Some(now_iso());
            if self.db.replace_resource(&current, read_at.as_deref()).await? {
                return Ok(());
            }
        }
        self.undo_reservation(uuid, &outcome).await?;
        Err(EngineError::Conflict(format!(
            "allocation {uuid} kept changing while its outcome was recorded; it stays allocating and is tried again"
        )))
    }

    /// Give back the node reserved for allocation `uuid` (when one was), under its lock.
    async fn undo_reservation(&self, uuid: &str, outcome: &Result<String, String>) -> Result<(), EngineError> {
        let Ok(node_uuid) = outcome else {
            return Ok(());
        };
        let lock = self.locks.acquire(node_uuid).await?;
        let result = async {
            let mut node = self.node(node_uuid).await?;
            if give_back(&mut node, uuid) {
                self.save(&mut node).await?;
                tracing::info!(node = %node_uuid, allocation = %uuid, "node given back");
            }
            Ok::<_, EngineError>(())
        }
        .await;
        lock.release().await?;
        result
    }

    /// Finish the allocations that have stayed `allocating` for over [`STALE_ALLOCATION`]: their
    /// conductor died or failed to record an outcome. Safe to run on every conductor: an
    /// outcome is recorded only over the allocation as it was read, and the loser gives its
    /// node back.
    pub async fn resume_stale_allocations(self: &Arc<Self>) -> Result<(), EngineError> {
        let now = time::OffsetDateTime::now_utc();
        for allocation in self.db.resources(ResourceKind::Allocation, None).await? {
            let since = allocation.updated_at.as_deref().unwrap_or(&allocation.created_at);
            let stale = crate::time::parse(since).is_some_and(|t| (now - t).unsigned_abs() > STALE_ALLOCATION);
            if allocation.get("state") == ALLOCATING && stale {
                tracing::warn!(allocation = %allocation.uuid, "allocation left allocating; processing it again");
                self.spawn_allocation(allocation.uuid);
            }
        }
        Ok(())
    }

    /// The candidates, then each under its lock until one takes the allocation: its UUID, or
    /// why none did (Ironic's words).
    async fn reserve_one(
        &self,
        allocation: &StoredResource,
        nodes: Vec<NodeRecord>,
    ) -> Result<Result<String, String>, EngineError> {
        let class = allocation.get("resource_class").as_str().unwrap_or_default().to_owned();
        let candidates = strings(&allocation.get("candidate_nodes"));
        let owner = allocation.get("owner").as_str().map(str::to_owned);
        let mut found: Vec<NodeRecord> = nodes
            .into_iter()
            .filter(|n| fits(n, allocation))
            .filter(|n| candidates.is_empty() || candidates.contains(&n.uuid))
            .filter(|n| {
                owner
                    .as_ref()
                    .is_none_or(|o| text(n, "owner").as_ref() == Some(o) || text(n, "lessee").as_ref() == Some(o))
            })
            .collect();
        if found.is_empty() {
            return Ok(Err(if candidates.is_empty() {
                format!("no available nodes match the resource class {class}")
            } else {
                format!("none of the requested nodes are available and match the resource class {class}")
            }));
        }
        let wanted = strings(&allocation.get("traits"));
        if !wanted.is_empty() {
            found.retain(|n| {
                let has = crate::api::node_traits(n);
                wanted.iter().all(|t| has.contains(t))
            });
            if found.is_empty() {
                return Ok(Err(format!(
                    "no suitable nodes have the requested traits {}",
                    wanted.join(", ")
                )));
            }
        }
        // Parallel allocations try the nodes in different orders, as Ironic's shuffle does.
        found.sort_by_key(|n| {
            let mut h = DefaultHasher::new();
            (&allocation.uuid, &n.uuid).hash(&mut h);
            h.finish()
        });
        let total = found.len();
        let mut locked = 0;
        for candidate in found {
            let Ok(lock) = self.locks.acquire(&candidate.uuid).await else {
                locked += 1;
                continue;
            };
            let outcome = async {
                let mut node = self.node(&candidate.uuid).await?;
                if !fits(&node, allocation) {
                    return Ok::<_, EngineError>(None);
                }
                take(&mut node, allocation);
                self.save(&mut node).await?;
                Ok(Some(node.uuid))
            }
            .await;
            lock.release().await?;
            if let Some(uuid) = outcome? {
                return Ok(Ok(uuid));
            }
        }
        Ok(Err(if locked > 0 {
            format!("could not reserve any of {total} suitable nodes")
        } else {
            "all nodes were filtered out during reservation".into()
        }))
    }

    /// Ironic's `verify_node_for_deallocation`: a node gives its allocation up in maintenance,
    /// or when it is neither active nor on its way somewhere it may not be changed. Errors are
    /// [`EngineError::Conflict`].
    pub fn check_deallocation(node: &NodeRecord, allocation: &str) -> Result<(), EngineError> {
        if node.maintenance {
            return Ok(());
        }
        if node.target_provision_state.is_some()
            && !crate::states::UPDATE_ALLOWED.contains(&node.provision_state.as_str())
        {
            return Err(EngineError::Conflict(format!(
                "Cannot remove allocation {allocation} for node {}, because the node is in state {} where updates are not allowed (and maintenance mode is off)",
                node.uuid, node.provision_state
            )));
        }
        if node.provision_state == state::ACTIVE {
            return Err(EngineError::Conflict(format!(
                "Cannot remove allocation {allocation} for node {}, because the node is active (and maintenance mode is off)",
                node.uuid
            )));
        }
        Ok(())
    }

    /// Forget the node's allocation (the caller holds the node's lock): clear what [`take`]
    /// set and answer the allocation to delete once the node is saved (deleting it first could
    /// leave the node naming an allocation that no longer exists, if the save is refused).
    pub fn release_allocation(node: &mut NodeRecord) -> Option<String> {
        let allocation = text(node, "allocation_uuid")?;
        give_back(node, &allocation);
        tracing::info!(node = %node.uuid, %allocation, "allocation released");
        Some(allocation)
    }
}
