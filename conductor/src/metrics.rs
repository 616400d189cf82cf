//! The conductor's Prometheus metrics, served at `GET /metrics` (behind the API's
//! authentication) in Prometheus's text exposition format 0.0.4, with the `prometheus` crate.
//!
//! Counters and histograms are process-wide (one registry per process, as Prometheus clients
//! keep them): what this process did since it started. The node and database gauges are read
//! when scraped: the node counts are the whole fleet's (every conductor on the database reports
//! the same), the pool is this process's.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `rivet_conductor_nodes` | gauge | `provision_state`, `power_state` |
//! | `rivet_conductor_flows_running` | gauge | `flow` (clean, deploy, service, inspect, rescue, ...) |
//! | `rivet_conductor_step_duration_seconds` | histogram | `step` (`interface.step`), `result` |
//! | `rivet_conductor_heartbeat_duration_seconds` | histogram | |
//! | `rivet_conductor_agent_command_errors_total` | counter | `command` |
//! | `rivet_conductor_lock_wait_seconds` | histogram | |
//! | `rivet_conductor_db_connections` | gauge | `state` (`idle`, `in_use`) |
//! | `rivet_conductor_api_requests_total` | counter | `method`, `status` |
//! | `rivet_conductor_image_bytes_written_total` | counter | |

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Registry,
    register_histogram_vec_with_registry, register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_vec_with_registry,
};

use crate::db::{Database, DbError};

/// Step durations run from a second to hours (a full-disk erase).
const STEP_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0];
/// Heartbeat handling and lock waits: a millisecond to seconds.
const SHORT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A step this process started, timed until the node's next step starts or its flow ends.
#[derive(Debug)]
struct RunningStep {
    flow: String,
    index: usize,
    step: String,
    since: Instant,
}

/// Why the metrics could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The node counts could not be read.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The text encoder refused a family (metrics this module built never are).
    #[error("the metrics could not be encoded: {0}")]
    Encode(#[from] prometheus::Error),
}

/// Every metric of the conductor; [`metrics`] is the process's one instance.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    nodes: IntGaugeVec,
    flows: IntGaugeVec,
    step_seconds: HistogramVec,
    heartbeat_seconds: Histogram,
    agent_command_errors: IntCounterVec,
    lock_wait_seconds: Histogram,
    db_connections: IntGaugeVec,
    api_requests: IntCounterVec,
    image_bytes: IntCounter,
    running: Mutex<HashMap<String, RunningStep>>,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The flow a provision state belongs to, for `rivet_conductor_flows_running`.
fn flow_of(provision_state: &str) -> Option<&'static str> {
    Some(match provision_state {
        "cleaning" | "clean wait" | "clean hold" => "clean",
        "deploying" | "wait call-back" | "deploy hold" => "deploy",
        "servicing" | "service wait" | "service hold" => "service",
        "inspecting" | "inspect wait" => "inspect",
        "rescuing" | "rescue wait" | "unrescuing" => "rescue",
        "verifying" => "verify",
        "adopting" => "adopt",
        "deleting" => "undeploy",
        _ => return None,
    })
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        // Fixed, distinct names: building and registering cannot fail (the unit test below
        // checks that every family is there).
        let failed = |name: &str, e: prometheus::Error| -> ! { unreachable!("{name}: {e}") };
        let histogram =
            |name: &str, help: &str, buckets: &[f64]| HistogramOpts::new(name, help).buckets(buckets.to_vec());
        Metrics {
            nodes: register_int_gauge_vec_with_registry!(
                "rivet_conductor_nodes",
                "Nodes by provision and power state (the whole fleet's, read from the database when scraped).",
                &["provision_state", "power_state"],
                registry
            )
            .unwrap_or_else(|e| failed("nodes", e)),
            flows: register_int_gauge_vec_with_registry!(
                "rivet_conductor_flows_running",
                "Nodes with a flow under way (working or waiting for their agent), by flow.",
                &["flow"],
                registry
            )
            .unwrap_or_else(|e| failed("flows", e)),
            step_seconds: register_histogram_vec_with_registry!(
                histogram(
                    "rivet_conductor_step_duration_seconds",
                    "Duration of clean, deploy and service steps this conductor ran, from start to the next step or the end of the flow.",
                    STEP_BUCKETS,
                ),
                &["step", "result"],
                registry
            )
            .unwrap_or_else(|e| failed("steps", e)),
            heartbeat_seconds: register_histogram_with_registry!(
                histogram(
                    "rivet_conductor_heartbeat_duration_seconds",
                    "Time to handle an agent heartbeat (POST /v1/heartbeat).",
                    SHORT_BUCKETS,
                ),
                registry
            )
            .unwrap_or_else(|e| failed("heartbeats", e)),
            agent_command_errors: register_int_counter_vec_with_registry!(
                "rivet_conductor_agent_command_errors_total",
                "Agent commands that failed: refused, unreachable agent, or a failed result.",
                &["command"],
                registry
            )
            .unwrap_or_else(|e| failed("agent command errors", e)),
            lock_wait_seconds: register_histogram_with_registry!(
                histogram(
                    "rivet_conductor_lock_wait_seconds",
                    "Time spent waiting for a node's lock before getting it.",
                    SHORT_BUCKETS,
                ),
                registry
            )
            .unwrap_or_else(|e| failed("locks", e)),
            db_connections: register_int_gauge_vec_with_registry!(
                "rivet_conductor_db_connections",
                "This process's database pool connections, by state.",
                &["state"],
                registry
            )
            .unwrap_or_else(|e| failed("database connections", e)),
            api_requests: register_int_counter_vec_with_registry!(
                "rivet_conductor_api_requests_total",
                "API requests answered, by method and HTTP status.",
                &["method", "status"],
                registry
            )
            .unwrap_or_else(|e| failed("api requests", e)),
            image_bytes: register_int_counter_with_registry!(
                "rivet_conductor_image_bytes_written_total",
                "Image bytes the agents of this conductor's nodes reported written (write_image steps of agents that measure their progress).",
                registry
            )
            .unwrap_or_else(|e| failed("image bytes", e)),
            registry,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// An agent reported `bytes` more of an image written.
    pub fn image_bytes_written(&self, bytes: u64) {
        self.image_bytes.inc_by(bytes);
    }

    /// Step `index` (`step`, `interface.step`) of `node`'s `flow` starts. The node's previous
    /// step, if this process timed one, ended well; the same step started again (after its
    /// agent did not have it) keeps its first start.
    pub fn step_started(&self, node: &str, flow: &str, index: usize, step: &str) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = running.get(node)
            && previous.flow == flow
            && previous.index == index
            && previous.step == step
        {
            return;
        }
        let entry = RunningStep {
            flow: flow.to_owned(),
            index,
            step: step.to_owned(),
            since: Instant::now(),
        };
        if let Some(previous) = running.insert(node.to_owned(), entry) {
            self.observe_step(&previous, "done");
        }
    }

    /// `node`'s flow ended (`result`: `done`, `failed`, `aborted`): its last step's time.
    pub fn flow_ended(&self, node: &str, result: &str) {
        let ended = self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(node);
        if let Some(step) = ended {
            self.observe_step(&step, result);
        }
    }

    fn observe_step(&self, step: &RunningStep, result: &str) {
        self.step_seconds
            .with_label_values(&[step.step.as_str(), result])
            .observe(step.since.elapsed().as_secs_f64());
    }

    /// A heartbeat was handled in `took`.
    pub fn heartbeat_handled(&self, took: Duration) {
        self.heartbeat_seconds.observe(took.as_secs_f64());
    }

    /// Agent command `command` (`extension.name`) failed.
    pub fn agent_command_failed(&self, command: &str) {
        self.agent_command_errors.with_label_values(&[command]).inc();
    }

    /// A node's lock was taken after waiting `waited`.
    pub fn lock_waited(&self, waited: Duration) {
        self.lock_wait_seconds.observe(waited.as_secs_f64());
    }

    /// An API request was answered.
    pub fn api_request(&self, method: &str, status: u16) {
        self.api_requests
            .with_label_values(&[method, &status.to_string()])
            .inc();
    }

    /// Read the gauges from `db` and encode every metric in the text format.
    ///
    /// # Errors
    ///
    /// [`RenderError`]: the database could not be read, or (never with these metrics) the
    /// encoder refused a family.
    pub async fn render(&self, db: &Database) -> Result<String, RenderError> {
        let counts = db.node_state_counts().await?;
        self.nodes.reset();
        self.flows.reset();
        for flow in ["clean", "deploy", "service", "inspect", "rescue"] {
            self.flows.with_label_values(&[flow]).set(0);
        }
        for (provision, power, count) in counts {
            self.nodes
                .with_label_values(&[provision.as_str(), power.as_deref().unwrap_or("None")])
                .add(count);
            if let Some(flow) = flow_of(&provision) {
                self.flows.with_label_values(&[flow]).add(count);
            }
        }
        let (size, idle) = db.pool_use();
        self.db_connections.with_label_values(&["idle"]).set(i64::from(idle));
        self.db_connections
            .with_label_values(&["in_use"])
            .set(i64::from(size.saturating_sub(idle)));
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_once() {
        let metrics = Metrics::new();
        metrics.api_request("GET", 200);
        metrics.agent_command_failed("deploy.execute_deploy_step");
        metrics.step_started("n1", "clean", 0, "deploy.erase_devices_metadata");
        metrics.flow_ended("n1", "done");
        metrics.nodes.with_label_values(&["available", "power off"]).set(1);
        metrics.flows.with_label_values(&["clean"]).set(0);
        metrics.db_connections.with_label_values(&["idle"]).set(1);
        let names: Vec<String> = metrics.registry.gather().iter().map(|f| f.name().to_owned()).collect();
        assert_eq!(names.len(), 9, "{names:?}");
    }

    #[test]
    fn a_step_is_timed_from_its_first_start_to_the_next_step() {
        let metrics = Metrics::new();
        metrics.step_started("n1", "deploy", 1, "deploy.write_image");
        // Started again (the agent did not have it): still one step running.
        metrics.step_started("n1", "deploy", 1, "deploy.write_image");
        metrics.step_started("n1", "deploy", 2, "deploy.prepare_instance_boot");
        metrics.flow_ended("n1", "failed");
        let count = |step: &str, result: &str| {
            metrics
                .step_seconds
                .with_label_values(&[step, result])
                .get_sample_count()
        };
        assert_eq!(count("deploy.write_image", "done"), 1);
        assert_eq!(count("deploy.prepare_instance_boot", "failed"), 1);
        metrics.flow_ended("n1", "done");
        assert_eq!(count("deploy.prepare_instance_boot", "done"), 0, "nothing was running");
    }
}
