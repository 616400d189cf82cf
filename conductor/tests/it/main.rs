//! Conductor integration tests over real HTTP on loopback, and the real `baremetal` CLI.

mod api;
mod cli;
mod postgres;
mod support;
