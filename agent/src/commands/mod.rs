//! Agent commands: the registry of extensions and their commands, and their execution.
//!
//! A command is `<extension>.<name>` (`clean.execute_clean_step`). Each is either synchronous
//! (runs while the POST waits, under the agent's execution lock) or asynchronous (the POST
//! answers `RUNNING` at once; the result appears in the command list later and a heartbeat is
//! forced). To add a command, write it in an `extensions/` module and register it in that
//! module's `register` function with [`Command::sync`] or [`Command::asynchronous`]; its
//! parameters are a struct that `deny_unknown_fields`, so a wrong argument is a clear 400.

mod executor;
mod registry;

pub use executor::Executor;
pub use registry::{Command, CommandFuture, CommandOutcome, Mode, NoParams, Params, Registry, parse_params};
