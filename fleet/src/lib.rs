//! rivet-fleet: a simulated fleet of bare-metal machines in one process, for scale tests of
//! rivet-conductor or upstream Ironic with one tool.
//!
//! Each machine runs a real rivet-agent (IPA's protocol: lookup, heartbeats with upstream's
//! jitter, the command API on its own loopback port) whose hardware manager simulates the
//! in-band steps with configurable durations and failures ([`machine`]). The fleet plays the
//! BMC by following the power states the conductor reports ([`fleet`]). [`run`] enrolls the
//! machines, boots them and either measures a fleet at rest or takes it to `active`.

pub mod agent;
pub mod api;
pub mod fleet;
pub mod machine;
pub mod run;
pub mod stats;
