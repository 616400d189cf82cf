//! Inspect interfaces: `agent` (in-band, through the ramdisk), `redfish` (out of band, from
//! the BMC), `fake` and `no-inspect` (in `fake.rs`).

pub mod agent;
pub mod redfish;
