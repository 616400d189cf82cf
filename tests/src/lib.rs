//! A simulated lab for cross-crate tests and benchmarks: machines with a fake BMC whose power
//! actions boot real `rivet-agent` instances (in this process, on loopback) when the boot
//! device is PXE, and "boot the instance" when it is the disk. Agents run the real lookup,
//! heartbeat, TLS and command code; only their hardware manager is simulated (no disk is
//! touched).

pub mod api;
pub mod fuzz;
pub mod lab;
pub mod postgres;
pub mod proxy;
pub mod system;
pub mod vendor;
