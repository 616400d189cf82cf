//! The membership loop: refresh this conductor's row, see who is alive, and take over the
//! nodes whose lock a dead conductor holds.

use std::sync::Arc;

use super::Members;
use crate::engine::{Conductor, EngineError};
use crate::states;

impl Conductor {
    /// One whole membership round, as at start-up: [`Conductor::refresh_membership`], then
    /// [`Conductor::take_over_round`].
    pub async fn membership_tick(self: &Arc<Self>) -> Result<(), EngineError> {
        self.refresh_membership().await?;
        self.take_over_round().await
    }

    /// Refresh this conductor's row (registering it again if an operator deleted it) and read
    /// the members.
    pub async fn refresh_membership(&self) -> Result<(), EngineError> {
        let started = std::time::Instant::now();
        let host = self.locks.host();
        if !self.db.touch_conductor(host).await? {
            tracing::warn!("this conductor's membership row was gone: registering again");
            self.register().await?;
        }
        self.read_members().await?;
        let took = started.elapsed();
        if took > self.config.cluster.heartbeat_timeout / 2 {
            tracing::warn!(
                seconds = took.as_secs_f64(),
                "the membership refresh took more than half of heartbeat_timeout: the database is slow or busy, and this conductor risks being taken for dead"
            );
        }
        Ok(())
    }

    /// Read the members now, keep them for routing, and answer them.
    async fn read_members(&self) -> Result<Members, EngineError> {
        let records = self.db.conductors().await?;
        let members = Members::new(
            &records,
            self.config.cluster.heartbeat_timeout,
            time::OffsetDateTime::now_utc(),
        );
        *self.members.write().unwrap_or_else(std::sync::PoisonError::into_inner) = members.clone();
        Ok(members)
    }

    /// Take over from dead conductors: the requests handed to them, the locks they held. The
    /// members are read again first: a view older than the round would take a conductor that
    /// joined since for dead. Nothing on an `api_only` conductor.
    pub async fn take_over_round(self: &Arc<Self>) -> Result<(), EngineError> {
        if self.config.cluster.api_only {
            return Ok(());
        }
        let members = self.read_members().await?;
        self.adopt_work(&members).await?;
        self.take_over(&members).await
    }

    /// Register this conductor in `conductors` (online, with its group and hardware types).
    /// An `api_only` conductor registers with no hardware type: no ring has it, so it owns no
    /// node, yet it is a live member, so the node locks it takes for a moment (a lookup's
    /// token, an API write) are not broken as a dead conductor's.
    pub async fn register(&self) -> Result<(), EngineError> {
        let types: &[String] = if self.config.cluster.api_only {
            &[]
        } else {
            self.drivers.enabled_types()
        };
        self.db
            .register_conductor(self.locks.host(), types, &self.config.cluster.conductor_group)
            .await?;
        Ok(())
    }

    /// True if this conductor owns `node` by the last membership round.
    pub fn owns(&self, node: &crate::model::NodeRecord) -> bool {
        let members = self.members.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        members.owner(node) == Some(self.locks.host())
    }

    /// Break the lock of every node this conductor owns whose holder is dead, and resume the
    /// flows of those left in a working state (a node in a wait state carries on with its
    /// agent's next heartbeat, at any conductor).
    async fn take_over(self: &Arc<Self>, members: &Members) -> Result<(), EngineError> {
        let me = self.locks.host().to_owned();
        for node in self.db.reserved_nodes().await? {
            let Some(holder) = node.reservation.clone() else {
                continue;
            };
            if holder == me || members.is_alive(&holder) || members.owner(&node) != Some(me.as_str()) {
                continue;
            }
            if !self.db.break_lock(&node.uuid, &holder, &me).await? {
                continue;
            }
            let seen = members
                .seen_ago(&holder)
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s ago"));
            let message = format!(
                "Conductor {holder} holding the lock of node {} stopped refreshing its membership (last seen {seen}, dead after {} s); conductor {me} took the node over in {}",
                node.uuid,
                self.config.cluster.heartbeat_timeout.as_secs_f64(),
                node.provision_state
            );
            tracing::warn!(node = %node.uuid, dead = %holder, "{message}");
            self.db
                .add_history_by(&node.uuid, "WARNING", &message, Some(&me))
                .await?;
            if !states::WORKING_STATES.contains(&node.provision_state.as_str()) {
                continue;
            }
            self.resume_unlocked(node.uuid, holder).await;
        }
        // A working state is only ever held under a lock: one without a lock for longer than
        // the dead timeout was left by a conductor that died (or an owner that died between
        // breaking the lock and resuming the flow).
        let now = time::OffsetDateTime::now_utc();
        for node in self.db.nodes_in_states(states::WORKING_STATES).await? {
            let since = node.provision_updated_at.as_deref().and_then(crate::time::parse);
            let abandoned = since.is_some_and(|t| {
                (now - t).whole_milliseconds() > self.config.cluster.heartbeat_timeout.as_millis() as i128
            });
            if node.reservation.is_none() && abandoned && members.owner(&node) == Some(me.as_str()) {
                self.resume_unlocked(node.uuid, "(whose lock was broken earlier)".into())
                    .await;
            }
        }
        Ok(())
    }

    /// Lock a node left in a working state and resume its flow in the background; someone
    /// else taking the lock first is fine (they are working on it).
    async fn resume_unlocked(self: &Arc<Self>, uuid: String, stopped: String) {
        match self.locks.try_acquire(&uuid).await {
            Ok(lock) => {
                let conductor = Arc::clone(self);
                tokio::spawn(async move { conductor.resume(lock, uuid, stopped).await });
            }
            Err(e) => tracing::info!(node = %uuid, error = %e, "a node to take over was locked by someone else first"),
        }
    }
}

/// Run the membership loops every `heartbeat_interval` until the conductor stops: the refresh
/// and the take-over apart, so a take-over that waits (on a dead conductor's row locks, on a
/// slow database) never keeps this conductor from refreshing its row and being taken for dead
/// in turn.
pub fn spawn(conductor: Arc<Conductor>, stop: tokio::sync::watch::Receiver<bool>) -> [tokio::task::JoinHandle<()>; 2] {
    let interval = conductor.config.cluster.heartbeat_interval;
    let refresher = Arc::clone(&conductor);
    let refresh = crate::periodic::every(interval, stop.clone(), move || {
        let conductor = Arc::clone(&refresher);
        async move {
            if let Err(e) = conductor.refresh_membership().await {
                tracing::error!(error = %e, "membership refresh failed");
            }
        }
    });
    let take_over = crate::periodic::every(interval, stop, move || {
        let conductor = Arc::clone(&conductor);
        async move {
            if let Err(e) = conductor.take_over_round().await {
                tracing::error!(error = %e, "take-over round failed");
            }
        }
    });
    [refresh, take_over]
}
