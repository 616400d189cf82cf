//! Agent integration tests over real HTTP on loopback: the command API, and lookup and
//! heartbeats against a fake conductor started inside the test.

mod api;
mod conductor;
mod disks;
mod hardware;
mod images;
mod layout;
mod support;
