//! Requests handed to a node's owner through the database (`node_work`), as Ironic's API hands
//! them to the owner's RPC topic: a verb for a node another conductor owns, and every verb and
//! heartbeat an `api_only` conductor receives. The receiver inserts a row addressed to the owner
//! and waits for its answer; the owner claims the rows addressed to it, woken by
//! `NOTIFY rivet_work` on PostgreSQL (and by a poll, in case a notification was missed), runs
//! them as if it had received them, and writes the answer. Rows of a dead conductor are
//! addressed again to the nodes' new owners at take-over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rivet_common::ramdisk::HeartbeatRequest;
use rivet_common::version::ApiVersion;
use serde::{Deserialize, Serialize};

use crate::engine::{Conductor, EngineError, ProvisionRequest};
use crate::model::NodeRecord;

/// One handed-over request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// `PUT /v1/nodes/{node}/states/provision` at API `1.{version}`.
    Provision {
        node: String,
        request: ProvisionRequest,
        version: u32,
    },
    /// `PUT /v1/nodes/{node}/states/power`.
    Power { node: String, target: String },
    /// `POST /v1/heartbeat/{node}` at API `1.{version}`.
    Heartbeat {
        node: String,
        heartbeat: HeartbeatRequest,
        version: u32,
    },
}

/// The owner's answer: the error's HTTP status and message, or status 0 for success.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answer {
    status: u16,
    message: String,
}

impl Answer {
    fn of(result: Result<(), EngineError>) -> Answer {
        let (status, message) = match result {
            Ok(()) => (0, String::new()),
            Err(EngineError::NotFound(m)) => (404, m),
            Err(EngineError::Invalid(m)) => (400, m),
            Err(EngineError::Conflict(m)) => (409, m),
            Err(EngineError::NotAcceptable(m)) => (406, m),
            Err(EngineError::Internal(m)) => (500, m),
        };
        Answer { status, message }
    }

    fn result(self) -> Result<(), EngineError> {
        match self.status {
            0 => Ok(()),
            404 => Err(EngineError::NotFound(self.message)),
            400 => Err(EngineError::Invalid(self.message)),
            409 => Err(EngineError::Conflict(self.message)),
            406 => Err(EngineError::NotAcceptable(self.message)),
            _ => Err(EngineError::Internal(self.message)),
        }
    }
}

fn version(minor: u32) -> ApiVersion {
    ApiVersion { major: 1, minor }
}

impl Conductor {
    /// Where a request for `node` runs: `None` here, `Some(owner)` handed to its owner.
    /// Without a live conductor for the node's group and hardware type, 400 as Ironic answers.
    pub fn route(&self, node: &NodeRecord) -> Result<Option<String>, EngineError> {
        let members = self.members.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match members.owner(node) {
            Some(owner) if owner == self.locks.host() && !self.config.cluster.api_only => Ok(None),
            Some(owner) => Ok(Some(owner.to_owned())),
            None => Err(EngineError::Invalid(format!(
                "No valid host was found. Reason: No conductor service registered which supports driver {} for conductor group \"{}\".",
                node.driver,
                node.attr("conductor_group").as_str().unwrap_or_default()
            ))),
        }
    }

    /// Hand `work` for `node` to `owner` and wait for its answer; 500 if none comes within
    /// `heartbeat_timeout` + 60 s (long enough for a dead owner's take-over to hand it on).
    pub async fn hand_over(&self, owner: &str, node: &str, work: &Work) -> Result<(), EngineError> {
        let request = serde_json::to_string(work).map_err(|e| EngineError::Internal(e.to_string()))?;
        let id = self.db.add_work(node, owner, &request).await?;
        let deadline = Instant::now() + self.config.cluster.heartbeat_timeout + Duration::from_secs(60);
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(answer) = self.db.take_work_result(&id).await? {
                let answer: Answer = serde_json::from_str(&answer).map_err(|e| EngineError::Internal(e.to_string()))?;
                return answer.result();
            }
            if Instant::now() >= deadline {
                self.db.withdraw_work(&id).await?;
                return Err(EngineError::Internal(format!(
                    "Conductor {owner}, which owns node {node}, did not answer in time; try again"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Run one handed-over request here, as if this conductor had received it.
    async fn run_work(self: &Arc<Self>, work: Work) -> Result<(), EngineError> {
        match work {
            Work::Provision {
                node,
                request,
                version: v,
            } => self.provision_here(&node, request, version(v)).await,
            Work::Power { node, target } => self.set_power_here(&node, &target).await,
            Work::Heartbeat {
                node,
                heartbeat,
                version: v,
            } => self.heartbeat_here(&node, heartbeat, version(v)).await,
        }
    }

    /// Claim and run every request addressed to this conductor, each in its own task.
    async fn drain_work(self: &Arc<Self>) -> Result<(), EngineError> {
        for (id, request) in self.db.claim_work(self.locks.host()).await? {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let result = match serde_json::from_str::<Work>(&request) {
                    Ok(work) => me.run_work(work).await,
                    Err(e) => Err(EngineError::Internal(format!("unreadable handed-over request: {e}"))),
                };
                let answer = serde_json::to_string(&Answer::of(result)).unwrap_or_default();
                if let Err(e) = me.db.finish_work(&id, &answer).await {
                    tracing::error!(work = %id, error = %e, "could not store the answer of a handed-over request");
                }
            });
        }
        Ok(())
    }

    /// At take-over: address the unanswered requests of dead conductors for nodes this
    /// conductor now owns to itself.
    pub(super) async fn adopt_work(&self, members: &super::Members) -> Result<(), EngineError> {
        for (id, node, addressed) in self.db.pending_work().await? {
            if members.is_alive(&addressed) {
                continue;
            }
            let Some(record) = self.db.node(&node).await? else {
                self.db.withdraw_work(&id).await?;
                continue;
            };
            if members.owner(&record) == Some(self.locks.host())
                && self.db.readdress_work(&id, &addressed, self.locks.host()).await?
            {
                tracing::warn!(node = %node, dead = %addressed, "a request handed to a dead conductor is taken over");
            }
        }
        Ok(())
    }
}

/// The loop that runs the requests handed to this conductor, until it stops.
pub fn spawn(conductor: Arc<Conductor>, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = if conductor.db.is_sqlite() {
            None
        } else {
            match sqlx::postgres::PgListener::connect(&conductor.config.database_url).await {
                Ok(mut l) => match l.listen("rivet_work").await {
                    Ok(()) => Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN rivet_work failed: polling for handed-over requests");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "no notification connection: polling for handed-over requests");
                    None
                }
            }
        };
        // A missed notification (a reconnect) costs at most one poll.
        let poll = Duration::from_millis(if listener.is_some() { 1000 } else { 200 });
        loop {
            if let Err(e) = conductor.drain_work().await {
                tracing::error!(error = %e, "could not claim handed-over requests");
            }
            let host = conductor.locks.host().to_owned();
            let notified = async {
                match listener.as_mut() {
                    // Wait for a notification naming this conductor.
                    Some(l) => loop {
                        match l.recv().await {
                            Ok(n) if n.payload() == host => break,
                            Ok(_) => continue,
                            Err(_) => {
                                tokio::time::sleep(poll).await;
                                break;
                            }
                        }
                    },
                    None => std::future::pending::<()>().await,
                }
            };
            let stopped = tokio::select! {
                _ = notified => false,
                _ = tokio::time::sleep(poll) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopped {
                return;
            }
        }
    })
}
