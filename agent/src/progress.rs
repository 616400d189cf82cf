//! Progress of long work (erase, image download and write, burn-in, vendor steps).
//!
//! The work reports through a [`Progress`] handle without knowing where the reports go: the
//! agent's state turns them into the heartbeat's `agent_status_message` and, for rivet-conductor,
//! its measured `agent_step_progress` (see `AgentState::progress`); tests record them, probes
//! drop them. Keeping the sink a callback keeps this module, and everything that reports, below
//! the agent's state in the module graph.

use std::sync::{Arc, Mutex, PoisonError};

/// What a [`Measure`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (images, erasure).
    Bytes,
    /// Seconds of a run whose length is known beforehand (burn-in).
    Seconds,
    /// Things of a vendor step's own kind (firmware components, disks).
    Items,
}

impl Unit {
    /// The name on the wire: `bytes`, `seconds`, `items`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Items => "items",
        }
    }
}

/// How far measurable work is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What is counted.
    pub unit: Unit,
    /// Units a second, averaged since the work began.
    pub rate: Option<f64>,
}

/// One report: text for people, and the measure when the work has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// What is happening, e.g. `erasing /dev/sdb: pass 1/2 (random), 512 of 4096 MiB (12%)`.
    pub message: String,
    /// The numbers behind the message.
    pub measure: Option<Measure>,
}

/// Where reports go: `Some(report)` publishes, `None` clears.
type Sink = Arc<dyn Fn(Option<Report>) + Send + Sync>;

/// Reports progress of a long step: heartbeats carry the latest report.
#[derive(Clone)]
pub struct Progress {
    sink: Option<Sink>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("sink", &self.sink.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl Progress {
    /// Progress that calls `sink` with each report (`Some`) and when the work is done (`None`).
    pub fn new(sink: impl Fn(Option<Report>) + Send + Sync + 'static) -> Self {
        Progress {
            sink: Some(Arc::new(sink)),
        }
    }

    /// Progress that goes nowhere (probes).
    pub fn discard() -> Self {
        Progress { sink: None }
    }

    /// Progress kept in a list (tests, embedders that display it themselves).
    pub fn recording() -> (Self, Arc<Mutex<Vec<Report>>>) {
        let list = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&list);
        let progress = Progress::new(move |report| {
            if let Some(report) = report {
                kept.lock().unwrap_or_else(PoisonError::into_inner).push(report);
            }
        });
        (progress, list)
    }

    /// Publish a message about work that has no measure.
    pub fn report(&self, message: impl Into<String>) {
        self.publish(Report {
            message: message.into(),
            measure: None,
        });
    }

    /// Publish a message with the numbers behind it.
    pub fn measured(&self, message: impl Into<String>, measure: Measure) {
        self.publish(Report {
            message: message.into(),
            measure: Some(measure),
        });
    }

    /// Publish a report as it is.
    pub fn publish(&self, report: Report) {
        tracing::info!(progress = %report.message, "step progress");
        if let Some(sink) = &self.sink {
            sink(Some(report));
        }
    }

    /// Clear the report when the work is done.
    pub fn clear(&self) {
        if let Some(sink) = &self.sink {
            sink(None);
        }
    }
}
