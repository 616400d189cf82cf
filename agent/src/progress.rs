//! Progress of long work (erase, image download and write, vendor steps).
//!
//! The work reports through a [`Progress`] handle without knowing where the text goes: the
//! agent's state turns it into the heartbeat's `agent_status_message` (see
//! `AgentState::progress`), tests record it, probes drop it. Keeping the sink a callback keeps
//! this module, and everything that reports, below the agent's state in the module graph.

use std::sync::{Arc, Mutex, PoisonError};

/// Where messages go: `Some(text)` publishes, `None` clears.
type Sink = Arc<dyn Fn(Option<String>) + Send + Sync>;

/// Reports progress of a long step: heartbeats carry the latest message.
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
    /// Progress that calls `sink` with each message (`Some`) and when the work is done (`None`).
    pub fn new(sink: impl Fn(Option<String>) + Send + Sync + 'static) -> Self {
        Progress {
            sink: Some(Arc::new(sink)),
        }
    }

    /// Progress that goes nowhere (probes).
    pub fn discard() -> Self {
        Progress { sink: None }
    }

    /// Progress kept in a list (tests, embedders that display it themselves).
    pub fn recording() -> (Self, Arc<Mutex<Vec<String>>>) {
        let list = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&list);
        let progress = Progress::new(move |message| {
            if let Some(message) = message {
                kept.lock().unwrap_or_else(PoisonError::into_inner).push(message);
            }
        });
        (progress, list)
    }

    /// Publish a progress message.
    pub fn report(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(progress = %message, "step progress");
        if let Some(sink) = &self.sink {
            sink(Some(message));
        }
    }

    /// Clear the message when the work is done.
    pub fn clear(&self) {
        if let Some(sink) = &self.sink {
            sink(None);
        }
    }
}
