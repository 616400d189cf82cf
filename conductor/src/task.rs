//! Node locks (reference §8.1).
//!
//! The exclusive lock is the node's `reservation` column holding this conductor's name, so other
//! conductors sharing the database see it. It is a lease with a fencing number: each
//! acquisition, and each break of a dead conductor's lock (take-over, `crate::cluster`), adds one
//! to the node's `lock_token`, and a node is saved only while the number it was read with is
//! current, so a conductor that was paused past its take-over cannot write over its successor.
//! Within one conductor, writers of the same node queue on an in-process mutex first, so concurrent API calls are applied one after another (no lost
//! update, no needless 409). A writer that cannot get the lock within the retry budget (another
//! conductor, or a long-running operation such as a deployment) gets `NodeLocked` naming the
//! holder. Readers take no lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use crate::db::{Database, DbError};

/// Why a lock was not obtained.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it.
    #[error("Node {node} is locked by host {holder}, please retry after the current operation is completed.")]
    Locked { node: String, holder: String },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Lock retry policy (`[conductor]node_locked_retry_attempts` / `_interval`).
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    /// Attempts before giving up.
    pub attempts: u32,
    /// Pause between attempts.
    pub interval: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            attempts: 3,
            interval: Duration::from_secs(1),
        }
    }
}

/// The lock table of one conductor.
#[derive(Debug, Clone)]
pub struct NodeLocks {
    db: Database,
    host: String,
    policy: LockPolicy,
    local: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A held exclusive lock; call [`NodeLock::release`] (dropping releases too, in the background).
#[derive(Debug)]
pub struct NodeLock {
    db: Database,
    host: String,
    node: String,
    /// The lock number (fencing token) this lock holds.
    token: i64,
    released: bool,
    _local: OwnedMutexGuard<()>,
}

impl NodeLocks {
    /// Locks taken as `host`.
    pub fn new(db: Database, host: String, policy: LockPolicy) -> Self {
        NodeLocks {
            db,
            host,
            policy,
            local: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// This conductor's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn local_mutex(&self, node: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut table = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(table.entry(node.to_owned()).or_default())
    }

    async fn holder(&self, node: &str) -> String {
        self.db
            .reservation(node)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| self.host.clone())
    }

    /// Take the exclusive lock of `node`, retrying within the policy.
    pub async fn acquire(&self, node: &str) -> Result<NodeLock, LockError> {
        let started = std::time::Instant::now();
        let budget = self.policy.interval * self.policy.attempts.max(1);
        let local = match tokio::time::timeout(budget, self.local_mutex(node).lock_owned()).await {
            Ok(guard) => guard,
            Err(_) => {
                return Err(LockError::Locked {
                    node: node.to_owned(),
                    holder: self.holder(node).await,
                });
            }
        };
        for attempt in 1..=self.policy.attempts.max(1) {
            if let Some(token) = self.db.reserve(node, &self.host).await? {
                crate::metrics::metrics().lock_waited(started.elapsed());
                return Ok(NodeLock {
                    db: self.db.clone(),
                    host: self.host.clone(),
                    node: node.to_owned(),
                    token,
                    released: false,
                    _local: local,
                });
            }
            if attempt < self.policy.attempts {
                tokio::time::sleep(self.policy.interval).await;
            }
        }
        Err(LockError::Locked {
            node: node.to_owned(),
            holder: self.holder(node).await,
        })
    }

    /// Take the lock without waiting (heartbeats, periodic tasks).
    pub async fn try_acquire(&self, node: &str) -> Result<NodeLock, LockError> {
        let local = self.local_mutex(node).try_lock_owned().map_err(|_| LockError::Locked {
            node: node.to_owned(),
            holder: self.host.clone(),
        })?;
        if let Some(token) = self.db.reserve(node, &self.host).await? {
            Ok(NodeLock {
                db: self.db.clone(),
                host: self.host.clone(),
                node: node.to_owned(),
                token,
                released: false,
                _local: local,
            })
        } else {
            Err(LockError::Locked {
                node: node.to_owned(),
                holder: self.holder(node).await,
            })
        }
    }
}

impl NodeLock {
    /// The locked node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Release the lock.
    pub async fn release(mut self) -> Result<(), DbError> {
        self.released = true;
        self.db.release(&self.node, &self.host, self.token).await
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Every path releases: a lock dropped by an early return or a panic is released in the
        // background (the in-process guard is held until then so no one slips in before).
        let (db, node, host, token) = (self.db.clone(), self.node.clone(), self.host.clone(), self.token);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = db.release(&node, &host, token).await {
                    tracing::error!(node, error = %e, "could not release node lock");
                }
            });
        }
    }
}
