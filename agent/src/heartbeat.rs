//! The heartbeater: tells the conductor the agent is alive and where to reach it.
//!
//! Cadence as upstream: the first heartbeat is immediate; after a success the next comes after
//! `heartbeat_timeout × U(0.3, 0.6)`; after an error after U(5, 10) s. When an asynchronous
//! command ends, a heartbeat is forced so the conductor moves to the next step quickly, but
//! never sooner than 5 s after the previous one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;

use crate::config::{HeartbeatOutcome, HeartbeatTiming};
use crate::ironic::{HeartbeatFields, IronicClient, IronicError};
use crate::state::AgentState;

/// Interval after a successful heartbeat.
pub fn next_interval(heartbeat_timeout: Duration, rng: &mut impl Rng) -> Duration {
    heartbeat_timeout.mul_f64(rng.random_range(0.3..=0.6))
}

/// Interval after a failed heartbeat.
pub fn retry_interval(timing: &HeartbeatTiming, rng: &mut impl Rng) -> Duration {
    let (lo, hi) = timing.error_retry;
    if hi > lo {
        Duration::from_secs_f64(rng.random_range(lo.as_secs_f64()..=hi.as_secs_f64()))
    } else {
        lo
    }
}

/// Everything a heartbeater needs.
#[derive(Debug)]
pub struct Heartbeater {
    /// Ironic API client.
    pub client: Arc<IronicClient>,
    /// The node's UUID.
    pub node_uuid: String,
    /// Shared state (token, progress message, force requests).
    pub state: Arc<AgentState>,
    /// From the lookup's config.
    pub heartbeat_timeout: Duration,
    /// Stable callback URL.
    pub callback_url: String,
    /// PEM of the auto-TLS certificate.
    pub verify_ca: Option<String>,
}

impl Heartbeater {
    fn fields(&self) -> HeartbeatFields {
        HeartbeatFields {
            callback_url: self.callback_url.clone(),
            agent_token: self.state.token(),
            agent_version: crate::VERSION.to_owned(),
            agent_verify_ca: self.verify_ca.clone(),
            status_message: self.state.status_message(),
            step_progress: self
                .state
                .step_progress()
                .filter(|_| self.state.conductor_takes_step_progress()),
        }
    }

    /// Heartbeat until `stop` becomes true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let timing = self.state.config.heartbeat.clone();
        let mut interval = Duration::ZERO;
        let mut previous: Option<Instant> = None;
        let mut forced = false;
        loop {
            let since = previous.map(|p| p.elapsed()).unwrap_or(Duration::MAX);
            let mut wait = interval.saturating_sub(since);
            if forced {
                wait = wait.min(timing.forced_min_gap.saturating_sub(since));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.state.heartbeat_requested(), if !forced => {
                    forced = true;
                    continue;
                }
                changed = stop.wait_for(|s| *s) => {
                    let _ = changed;
                    tracing::info!("heartbeats stopped");
                    return;
                }
            }
            let sent = Instant::now();
            let outcome = self.client.heartbeat(&self.node_uuid, &self.fields()).await;
            if let Some(observer) = &self.state.config.heartbeat_observer {
                let seen = match &outcome {
                    Ok(()) => HeartbeatOutcome::Accepted,
                    Err(IronicError::Status { status, message }) => HeartbeatOutcome::Refused {
                        status: *status,
                        message,
                    },
                    Err(_) => HeartbeatOutcome::Failed,
                };
                (observer.0)(sent.elapsed(), seen);
            }
            previous = Some(Instant::now());
            let mut rng = rand::rng();
            match outcome {
                Ok(()) => {
                    forced = false;
                    interval = next_interval(self.heartbeat_timeout, &mut rng);
                    tracing::info!(node = %self.node_uuid, next_in = ?interval, "heartbeat sent");
                }
                Err(e) => {
                    interval = retry_interval(&timing, &mut rng);
                    tracing::warn!(node = %self.node_uuid, error = %e, retry_in = ?interval, "heartbeat failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn jitter_stays_within_bounds_over_many_draws() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let timeout = Duration::from_secs(300);
        let (mut lo, mut hi) = (f64::MAX, 0f64);
        for _ in 0..100_000 {
            let d = next_interval(timeout, &mut rng).as_secs_f64();
            assert!((90.0..=180.0).contains(&d), "{d}");
            lo = lo.min(d);
            hi = hi.max(d);
        }
        // The draws spread over the whole band, not a corner of it.
        assert!(lo < 91.0 && hi > 179.0, "{lo}..{hi}");
        let timing = HeartbeatTiming::default();
        for _ in 0..10_000 {
            let d = retry_interval(&timing, &mut rng).as_secs_f64();
            assert!((5.0..=10.0).contains(&d), "{d}");
        }
    }
}
