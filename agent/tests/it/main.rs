//! Agent integration tests over real HTTP on loopback: the command API, and lookup and
//! heartbeats against a fake conductor started inside the test, inspection (and LLDP in a
//! network namespace the test creates).

mod api;
mod conductor;
mod disks;
mod hardware;
mod images;
mod inspection;
mod layout;
mod support;
