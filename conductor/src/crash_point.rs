//! Named points where a test can make the conductor die, to prove that flows resume from each
//! (tests/tests/conductor_crash.rs). `RIVET_CONDUCTOR_CRASH_AT=<point>[:<n>]` in the conductor's
//! environment makes the process abort (no destructors, no flush: as abrupt as SIGKILL) the
//! `n`-th time (default the first) any task reaches `<point>`. Unset, which is every
//! production run, a point costs one comparison.
//!
//! The points, in the order a step passes them: [`BEFORE_AGENT_COMMAND`] (the step is saved, the
//! agent not yet asked), [`AGENT_COMMAND_SENT`] (the agent runs it, the conductor has not
//! recorded the wait), [`POWER_ACTION`] (about to ask the BMC), [`BETWEEN_STEPS`] (a step is
//! done, the next not yet saved).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a point.
pub const ENV: &str = "RIVET_CONDUCTOR_CRASH_AT";

/// An in-band step is saved and about to be sent to the agent.
pub const BEFORE_AGENT_COMMAND: &str = "before_agent_command";
/// The agent accepted an in-band step; the node is not yet in its wait state.
pub const AGENT_COMMAND_SENT: &str = "agent_command_sent";
/// A power action is about to go to the BMC.
pub const POWER_ACTION: &str = "power_action";
/// A step finished; the next is not yet saved.
pub const BETWEEN_STEPS: &str = "between_steps";

/// Every point, for tests and error messages.
pub const POINTS: &[&str] = &[BEFORE_AGENT_COMMAND, AGENT_COMMAND_SENT, POWER_ACTION, BETWEEN_STEPS];

fn armed() -> Option<&'static (String, u64)> {
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let (point, nth) = match value.split_once(':') {
            Some((point, nth)) => (point.to_owned(), nth.parse().ok()?),
            None => (value, 1),
        };
        POINTS.contains(&point.as_str()).then_some((point, nth))
    })
    .as_ref()
}

/// The conductor reached `point`: abort here if the environment armed it for this hit.
pub fn reached(point: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    if let Some((armed, nth)) = armed()
        && armed == point
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        tracing::error!(point, "crash point reached ({ENV}): aborting");
        std::process::abort();
    }
}
