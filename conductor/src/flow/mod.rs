//! The step flows (cleaning, deployment, servicing): one home for how a node goes from one
//! step to the next, whoever wakes it.
//!
//! * [`record`]: where a flow stands, saved in the node before every side effect
//!   ([`FlowRecord`]).
//! * [`runner`]: starts a verb's flow, runs steps from the record, finishes or fails it, aborts.
//! * [`heartbeat`]: a heartbeat while the flow waits for its agent; the deploy interface says
//!   where the agent is with the step ([`crate::drivers::InBandStatus`]), the flow decides.
//! * [`resume`]: a conductor start re-drives every flow it left mid-way.
//! * [`reserved`]: the reserved steps `hold` and `wait`, which the conductor runs itself.
//!
//! Entry points, each with the node locked: `Conductor::start_flow` (operator verbs,
//! `engine`), `Conductor::on_heartbeat` (`ramdisk`, after the beat is checked and recorded),
//! `Conductor::fail_flow` (callback timeouts, `periodic`), `Conductor::abort_flow` (the `abort`
//! verb) and `Conductor::recover_on_start` (conductor start). Driver-specific work (the agent
//! session, in-band steps) sits behind the deploy interface ([`crate::drivers::Deploy`]).

mod error;
pub mod heartbeat;
pub mod record;
pub mod reserved;
pub mod resume;
pub mod runner;

pub use error::FlowError;
pub use record::{FlowRecord, Next};
