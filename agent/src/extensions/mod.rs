//! Command extensions, as upstream names them: `standby`, `image`, `poll`, `log`, `system`, `rescue`, ...
//!
//! Each module has a `register` function adding its commands to the [`Registry`]. To add an
//! extension, write a module with typed parameter structs (`deny_unknown_fields`) and register
//! its commands here.

mod image;
pub(crate) mod log;
mod poll;
mod rescue;
mod standby;
mod steps;
mod system;

use crate::commands::Registry;

/// Every built-in extension.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    image::register(&mut registry);
    log::register(&mut registry);
    poll::register(&mut registry);
    rescue::register(&mut registry);
    standby::register(&mut registry);
    steps::register(&mut registry);
    system::register(&mut registry);
    registry
}
