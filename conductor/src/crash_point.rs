//! Named points where a test can make the conductor die, to prove that flows resume from each
//! (tests/tests/conductor_crash.rs). `RIVET_CONDUCTOR_CRASH_AT=<point>[:<n>]` in the conductor's
//! environment makes the process abort (no destructors, no flush: as abrupt as SIGKILL) the
//! `n`-th time (default the first) any task reaches `<point>`. With `:stop` appended
//! (`<point>:<n>:stop`) the process stops itself with SIGSTOP there instead, so a test can freeze
//! or SIGKILL it at a known point, holding the node's lock (tests/tests/conductor_takeover.rs);
//! SIGCONT carries it on from that point. Unset, which is every production run, a point costs
//! one comparison.
//!
//! The points, in the order a step passes them: [`BEFORE_AGENT_COMMAND`] (the step is saved, the
//! agent not yet asked), [`AGENT_COMMAND_SENT`] (the agent runs it, the conductor has not
//! recorded the wait), [`POWER_ACTION`] (about to ask the BMC), [`BETWEEN_STEPS`] (a step is
//! done, the next not yet saved); and [`IN_LOCK_TRANSACTION`], inside the database transaction
//! that takes a node's lock.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a point.
pub const ENV: &str = "RIVET_CONDUCTOR_CRASH_AT";

/// An in-band step is saved and about to be sent to the agent.
pub const BEFORE_AGENT_COMMAND: &str = "before_agent_command";
/// The agent accepted an in-band step; the node is not yet in its wait state.
pub const AGENT_COMMAND_SENT: &str = "agent_command_sent";
/// A node's lock is written in an open transaction, not yet committed (with `lock_history`,
/// whose row goes in the same transaction): a conductor stopped here holds the node's row lock.
pub const IN_LOCK_TRANSACTION: &str = "in_lock_transaction";
/// A power action is about to go to the BMC.
pub const POWER_ACTION: &str = "power_action";
/// A step finished; the next is not yet saved.
pub const BETWEEN_STEPS: &str = "between_steps";

/// Every point, for tests and error messages.
pub const POINTS: &[&str] = &[
    BEFORE_AGENT_COMMAND,
    AGENT_COMMAND_SENT,
    POWER_ACTION,
    BETWEEN_STEPS,
    IN_LOCK_TRANSACTION,
];

/// What an armed point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Abort,
    Stop,
}

fn armed() -> Option<&'static (String, u64, Action)> {
    static SPEC: OnceLock<Option<(String, u64, Action)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let mut parts = value.split(':');
        let point = parts.next()?.to_owned();
        let nth = match parts.next() {
            Some(n) => n.parse().ok()?,
            None => 1,
        };
        let action = match parts.next() {
            None => Action::Abort,
            Some("stop") => Action::Stop,
            Some(_) => return None,
        };
        POINTS.contains(&point.as_str()).then_some((point, nth, action))
    })
    .as_ref()
}

/// The conductor reached `point`: abort here if the environment armed it for this hit.
pub fn reached(point: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    if let Some((armed, nth, action)) = armed()
        && armed == point
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        if *action == Action::Stop {
            tracing::warn!(point, "crash point reached ({ENV}): stopping this process (SIGSTOP)");
            // The whole process stops; `kill` returns once someone sends SIGCONT.
            let _ = std::process::Command::new("kill")
                .args(["-s", "STOP", &std::process::id().to_string()])
                .status();
            return;
        }
        tracing::error!(point, "crash point reached ({ENV}): aborting");
        std::process::abort();
    }
}
