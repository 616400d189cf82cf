//! The progress of a node's running step, as the node document carries it.
//!
//! rivet-agent measures long work (erasure, image writes, burn-in, vendor steps) and sends the
//! measure in its heartbeats (`agent_step_progress`, offered in the lookup answer); this module
//! turns it into `driver_internal_info.step_progress`, adding what needs the conductor's clock:
//!
//! ```json
//! {"message": "writing image os to /dev/vda: 312 MiB of 768 MiB (41%), 95 MiB/s",
//!  "step": "deploy.write_image", "done": 327155712, "total": 805306368, "unit": "bytes",
//!  "percent": 40.6, "rate": 99614720.0, "eta_seconds": 4.8,
//!  "since": "2026-12-01T17:20:01.000000+00:00", "updated_at": "2026-12-01T17:20:05.000000+00:00"}
//! ```
//!
//! `done`, `total`, `unit`, `percent`, `rate` and `eta_seconds` appear only when known; `rate`
//! is in units a second. `driver_internal_info` is where Ironic keeps what its conductor learns
//! from the agent, so every Ironic client (the `baremetal` CLI's `node show` among them) shows
//! the progress without knowing of it. It goes when the step ends, the flow ends or the agent
//! stops reporting.
//!
//! Beside it, `driver_internal_info.step_started_at` is when the running step started (the
//! conductor's clock): history events give each step's time from it.

use rivet_common::ramdisk::StepProgress;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};

use crate::model::NodeRecord;

/// The key in `driver_internal_info`.
pub const KEY: &str = "step_progress";

/// The key of the running step's start time in `driver_internal_info`.
pub const STARTED_AT: &str = "step_started_at";

/// The agent's text of its progress (Ironic's heartbeat field).
const STATUS_MESSAGE: &str = "agent_status_message";

/// The node starts a step: no progress yet (the previous step's text goes too; a conductor
/// that continues the flow on its own poll of the agent would otherwise show it until the next
/// heartbeat), and the step's clock starts (`again`: the same step runs again, after its agent
/// did not have it or a reboot; its first start stands).
pub fn step_started(node: &mut NodeRecord, again: bool) {
    clear(node);
    node.driver_internal_info.remove(STATUS_MESSAGE);
    if !again || !node.driver_internal_info.contains_key(STARTED_AT) {
        node.driver_internal_info
            .insert(STARTED_AT.into(), json!(crate::time::now_iso()));
    }
}

/// Seconds since the running step started, if it did.
pub fn step_seconds(node: &NodeRecord) -> Option<i64> {
    let started = node.driver_internal_info.get(STARTED_AT)?.as_str()?;
    let started = crate::time::parse(started)?;
    Some((OffsetDateTime::now_utc() - started).whole_seconds().max(0))
}

/// Store what the agent reported at `now`. Returns the image bytes written since the previous
/// report of the same `write_image` step (for `rivet_conductor_image_bytes_written_total`).
pub fn record(node: &mut NodeRecord, reported: &StepProgress, now: OffsetDateTime) -> u64 {
    let written = image_bytes_since(node, reported);
    let mut doc = Map::new();
    doc.insert("message".into(), json!(reported.message));
    if let Some(step) = node.running_step_name() {
        doc.insert("step".into(), json!(step));
    }
    let elapsed = reported.elapsed_seconds.max(0.0);
    if let Some(done) = reported.done {
        doc.insert("done".into(), json!(done));
        if let Some(unit) = &reported.unit {
            doc.insert("unit".into(), json!(unit));
        }
        // The agent's rate when it has one, else the average since the work began.
        let rate = reported
            .rate
            .or_else(|| (elapsed > 0.0).then(|| done as f64 / elapsed))
            .filter(|r| r.is_finite() && *r > 0.0);
        if let Some(rate) = rate {
            doc.insert("rate".into(), json!(round(rate, 1)));
        }
        if let Some(total) = reported.total {
            doc.insert("total".into(), json!(total));
            let done = done.min(total);
            let percent = if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            };
            doc.insert("percent".into(), json!(round(percent, 1)));
            if let Some(rate) = rate {
                doc.insert("eta_seconds".into(), json!(round((total - done) as f64 / rate, 1)));
            }
        }
    }
    let since = now - Duration::seconds_f64(elapsed.min(1e9));
    doc.insert("since".into(), json!(crate::time::format_iso(since)));
    doc.insert("updated_at".into(), json!(crate::time::format_iso(now)));
    node.driver_internal_info.insert(KEY.into(), Value::Object(doc));
    written
}

/// Bytes of the running `write_image` step's image reported since the stored report (all of
/// them at the step's first report).
fn image_bytes_since(node: &NodeRecord, reported: &StepProgress) -> u64 {
    let writing = node.running_step_name().is_some_and(|s| s.ends_with(".write_image"));
    let (Some(done), true, Some("bytes")) = (reported.done, writing, reported.unit.as_deref()) else {
        return 0;
    };
    let before = node
        .driver_internal_info
        .get(KEY)
        .and_then(|p| p.get("done"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    done.saturating_sub(before)
}

/// Forget the progress (the step or the flow ended, or the agent stopped reporting).
pub fn clear(node: &mut NodeRecord) {
    node.driver_internal_info.remove(KEY);
}

/// No step runs any more (the flow ended, failed or was aborted): no progress, no start time.
pub fn flow_ended(node: &mut NodeRecord) {
    clear(node);
    node.driver_internal_info.remove(STATUS_MESSAGE);
    node.driver_internal_info.remove(STARTED_AT);
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeRecord {
        NodeRecord {
            provision_state: "deploying".into(),
            deploy_step: serde_json::from_value(json!({"interface": "deploy", "step": "write_image"})).expect("a step"),
            ..Default::default()
        }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_796_000_000 + seconds).expect("a time")
    }

    #[test]
    fn a_measured_write_gets_percent_rate_eta_and_since() {
        let mut node = node();
        let reported = StepProgress {
            message: "writing image: 300 of 1000 MiB".into(),
            done: Some(300),
            total: Some(1000),
            unit: Some("bytes".into()),
            rate: Some(50.0),
            elapsed_seconds: 6.0,
        };
        assert_eq!(record(&mut node, &reported, at(10)), 300, "the write's first bytes");
        let later = StepProgress {
            done: Some(450),
            ..reported.clone()
        };
        assert_eq!(record(&mut node, &later, at(12)), 150, "bytes since the last report");
        record(&mut node, &reported, at(10));
        let doc = &node.driver_internal_info[KEY];
        assert_eq!(doc["step"], "deploy.write_image");
        assert_eq!(doc["percent"], 30.0);
        assert_eq!(doc["rate"], 50.0);
        assert_eq!(doc["eta_seconds"], 14.0);
        assert_eq!(doc["since"], json!(crate::time::format_iso(at(4))));
        assert_eq!(doc["updated_at"], json!(crate::time::format_iso(at(10))));
        clear(&mut node);
        assert!(!node.driver_internal_info.contains_key(KEY));
    }

    #[test]
    fn without_a_rate_the_average_since_the_start_gives_the_eta() {
        let mut node = node();
        let reported = StepProgress {
            message: "flashing 2 of 8".into(),
            done: Some(2),
            total: Some(8),
            unit: Some("items".into()),
            rate: None,
            elapsed_seconds: 10.0,
        };
        record(&mut node, &reported, at(0));
        let doc = &node.driver_internal_info[KEY];
        assert_eq!(
            (doc["percent"].clone(), doc["rate"].clone(), doc["eta_seconds"].clone()),
            (json!(25.0), json!(0.2), json!(30.0))
        );
    }

    #[test]
    fn text_alone_keeps_only_message_step_and_times() {
        let mut node = node();
        node.provision_state = "active".into();
        let reported = StepProgress {
            message: "burn-in cpu running".into(),
            ..Default::default()
        };
        record(&mut node, &reported, at(0));
        let doc = node.driver_internal_info[KEY].as_object().expect("an object");
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        assert_eq!(keys, ["message", "since", "updated_at"]);
    }
}
