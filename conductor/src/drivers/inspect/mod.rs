//! Inspect interfaces: `agent` (in-band, through the ramdisk), `fake` and `no-inspect`
//! (in `fake.rs`).

pub mod agent;
