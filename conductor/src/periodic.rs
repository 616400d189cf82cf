//! Periodic work: callback timeouts (reference §3.7). A node waiting for its agent longer than
//! the timeout fails with a last_error that says what the conductor was waiting for.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Conductor;
use crate::model::NodeRecord;
use crate::states::state;

/// What a waiting node waits for, in words.
pub fn waiting_for(node: &NodeRecord) -> String {
    if crate::states::flow_of(&node.provision_state).is_none() {
        return "the agent".into();
    }
    if !node.driver_internal_info.contains_key("agent_url") {
        return "the agent's first heartbeat (the ramdisk did not boot, look up or reach the conductor)".into();
    }
    match node.running_step_name() {
        Some(name) if name.ends_with(".wait") => format!("the agent's next heartbeat, which step {name} waits for"),
        Some(name) => format!("the agent to finish step {name}"),
        None => "the agent to report its steps".into(),
    }
}

/// Fail every node waiting longer than its timeout.
pub async fn check_callback_timeouts(conductor: &Arc<Conductor>) {
    let waits = [
        (state::CLEANWAIT, conductor.config.clean_callback_timeout),
        (state::DEPLOYWAIT, conductor.config.deploy_callback_timeout),
        (state::SERVICEWAIT, conductor.config.service_callback_timeout),
        (state::INSPECTWAIT, conductor.config.inspector.inspect_wait_timeout),
        (state::RESCUEWAIT, conductor.config.rescue_callback_timeout),
    ];
    for (state, timeout) in waits {
        if timeout.is_zero() {
            continue;
        }
        let Ok(nodes) = conductor.db.nodes_in_states(&[state]).await else {
            continue;
        };
        for node in nodes {
            // Each node's timeout is its owner's to check (several conductors, one database).
            if node.reservation.is_some() || node.maintenance || !conductor.owns(&node) {
                continue;
            }
            let updated = node.provision_updated_at.as_deref().and_then(crate::time::parse);
            let expired = updated.is_some_and(|t| (time::OffsetDateTime::now_utc() - t).unsigned_abs() > timeout);
            if !expired {
                continue;
            }
            let Ok(lock) = conductor.locks.try_acquire(&node.uuid).await else {
                continue;
            };
            if let Ok(fresh) = conductor.node(&node.uuid).await
                && fresh.provision_state == state
                && let Ok(mut task) = conductor.task(fresh).await
            {
                if state == state::INSPECTWAIT {
                    // Ironic's words for an inspection that never reported.
                    let message = "Timeout reached while inspecting the node. Please detect the cause of \
                                   inspection failure and rerun inspection.";
                    tracing::error!(node = %task.node.uuid, message, "inspection timeout");
                    conductor.fail_inspection(&mut task, message).await;
                } else if state == state::RESCUEWAIT {
                    let message = format!(
                        "Timeout reached while waiting for rescue ramdisk callback for node {}",
                        task.node.uuid
                    );
                    tracing::error!(node = %task.node.uuid, %message, "rescue timeout");
                    conductor.clean_up_rescue(&mut task).await;
                    conductor.fail_flow(&mut task, &message).await;
                } else {
                    let message = format!(
                        "Timeout reached while waiting for callback for node {} after {}s: waiting for {}",
                        task.node.uuid,
                        timeout.as_secs(),
                        waiting_for(&task.node)
                    );
                    tracing::error!(node = %task.node.uuid, %message, "callback timeout");
                    conductor.fail_flow(&mut task, &message).await;
                }
            }
            let _ = lock.release().await;
        }
    }
}

/// Run the periodic checks (callback timeouts, stale allocations) every `interval` until the
/// conductor stops.
pub fn spawn(
    conductor: Arc<Conductor>,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    every(interval, stop, move || {
        let conductor = Arc::clone(&conductor);
        async move {
            check_callback_timeouts(&conductor).await;
            if let Err(e) = conductor.resume_stale_allocations().await {
                tracing::warn!(error = %e, "stale allocations not checked");
            }
        }
    })
}

/// Sample the fleet's node counts for the dashboard's chart: at start, then every
/// `fleet_sample_interval`. Every conductor samples (API-only ones too); the database keeps one
/// sample a period, whoever took it, and the newest `fleet_samples_kept`.
pub fn spawn_fleet_sampler(
    conductor: Arc<Conductor>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let interval = conductor.config.fleet_sample_interval;
    let kept = i64::try_from(conductor.config.fleet_samples_kept).unwrap_or(i64::MAX);
    let sample = move |conductor: Arc<Conductor>| async move {
        let period = i64::try_from(interval.as_secs().max(1)).unwrap_or(i64::MAX);
        let bucket = time::OffsetDateTime::now_utc().unix_timestamp() / period;
        if let Err(e) = conductor
            .db
            .record_fleet_sample(bucket, bucket.saturating_sub(kept - 1))
            .await
        {
            tracing::warn!(error = %e, "fleet not sampled");
        }
    };
    let first = Arc::clone(&conductor);
    tokio::spawn(async move {
        sample(first).await;
        let _ = every(interval, stop, move || sample(Arc::clone(&conductor))).await;
    })
}

/// Run `round` every `interval` (first after one interval) until `stop` turns true.
pub fn every<F, Fut>(
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut round: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            let stopped = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopped {
                return;
            }
            round().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A callback timeout says what the node waited for: its first heartbeat, an agent step, or
    /// the heartbeat a reserved `wait` step waits for.
    #[test]
    fn the_timeout_names_what_was_awaited() {
        let mut node = NodeRecord {
            provision_state: "clean wait".into(),
            ..Default::default()
        };
        assert!(waiting_for(&node).starts_with("the agent's first heartbeat"));
        node.driver_internal_info
            .insert("agent_url".into(), json!("https://127.0.0.1:9999"));
        assert_eq!(waiting_for(&node), "the agent to report its steps");
        for (step, words) in [
            ("erase_devices", "the agent to finish step deploy.erase_devices"),
            ("wait", "the agent's next heartbeat, which step deploy.wait waits for"),
        ] {
            node.clean_step = serde_json::from_value(json!({"interface": "deploy", "step": step})).expect("a step");
            assert_eq!(waiting_for(&node), words);
        }
    }
}
