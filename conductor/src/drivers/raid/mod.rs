//! RAID interfaces. `fake` and `no-raid` live with the other fakes (`../fake.rs`); the target
//! configuration's rules and what a built one changes in the node are in `crate::raid`.

pub mod agent;
