//! The agent's Prometheus metrics, served at `GET /metrics` on the agent API in Prometheus's
//! text exposition format 0.0.4 (the `prometheus` crate). Process-wide: what this agent did
//! since it started.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `rivet_agent_commands_total` | counter | `command`, `result` (`succeeded`, `failed`, `version_mismatch`) |
//! | `rivet_agent_image_bytes_written_total` | counter | |
//! | `rivet_agent_image_write_rate_bytes_per_second` | gauge | (the current or last image write) |
//! | `rivet_agent_erase_bytes_total` | counter | |
//! | `rivet_agent_erase_progress_ratio` | gauge | (the current or last device pass, 0 to 1) |

use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, Registry, register_gauge_with_registry,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
};

/// Every metric of the agent; [`metrics`] is the process's one instance.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commands: IntCounterVec,
    image_bytes: IntCounter,
    image_rate: Gauge,
    erase_bytes: IntCounter,
    erase_progress: Gauge,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        // Fixed, distinct names: building and registering cannot fail (the unit test checks
        // that every family is there).
        let failed = |name: &str, e: prometheus::Error| -> ! { unreachable!("{name}: {e}") };
        Metrics {
            commands: register_int_counter_vec_with_registry!(
                "rivet_agent_commands_total",
                "Commands finished, by name and result.",
                &["command", "result"],
                registry
            )
            .unwrap_or_else(|e| failed("commands", e)),
            image_bytes: register_int_counter_with_registry!(
                "rivet_agent_image_bytes_written_total",
                "Image bytes written to disks (the first MiB of each image is written last).",
                registry
            )
            .unwrap_or_else(|e| failed("image bytes", e)),
            image_rate: register_gauge_with_registry!(
                "rivet_agent_image_write_rate_bytes_per_second",
                "Rate of the current (or last) image write, in bytes per second.",
                registry
            )
            .unwrap_or_else(|e| failed("image rate", e)),
            erase_bytes: register_int_counter_with_registry!(
                "rivet_agent_erase_bytes_total",
                "Bytes overwritten by erase passes.",
                registry
            )
            .unwrap_or_else(|e| failed("erase bytes", e)),
            erase_progress: register_gauge_with_registry!(
                "rivet_agent_erase_progress_ratio",
                "Progress of the current (or last) erase pass of a device, from 0 to 1.",
                registry
            )
            .unwrap_or_else(|e| failed("erase progress", e)),
            registry,
        }
    }

    /// Command `command` (`extension.name`) finished with `result`.
    pub fn command_finished(&self, command: &str, result: &str) {
        self.commands.with_label_values(&[command, result]).inc();
    }

    /// `bytes` more of an image went to a disk.
    pub fn image_written(&self, bytes: u64) {
        self.image_bytes.inc_by(bytes);
    }

    /// The image write runs at `bytes_per_second`.
    pub fn image_rate(&self, bytes_per_second: f64) {
        self.image_rate.set(bytes_per_second);
    }

    /// An erase pass overwrote `bytes` more; `done` of `size` bytes of the device so far.
    pub fn erased(&self, bytes: u64, done: u64, size: u64) {
        self.erase_bytes.inc_by(bytes);
        self.erase_progress.set(done as f64 / size.max(1) as f64);
    }

    /// Every metric in the text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding metrics the registry built cannot fail; an empty answer would say so.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_and_rendered() {
        let metrics = Metrics::new();
        metrics.command_finished("standby.get_partition_uuids", "succeeded");
        metrics.image_written(4096);
        metrics.image_rate(1e6);
        metrics.erased(1 << 20, 1 << 20, 4 << 20);
        let text = metrics.render();
        for name in [
            "rivet_agent_commands_total{command=\"standby.get_partition_uuids\",result=\"succeeded\"} 1",
            "rivet_agent_image_bytes_written_total 4096",
            "rivet_agent_image_write_rate_bytes_per_second 1000000",
            "rivet_agent_erase_bytes_total 1048576",
            "rivet_agent_erase_progress_ratio 0.25",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
