//! Conductor integration tests over real HTTP on loopback, the real `baremetal` CLI, and a real
//! Redfish BMC emulator.

mod allocations;
mod api;
mod cli;
mod cluster;
mod inspection;
mod logs;
mod node_resources;
mod postgres;
mod ramdisk;
mod redfish;
mod support;
