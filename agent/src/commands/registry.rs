//! The command registry: which commands exist, how each runs (sync or asynchronous), and how
//! its parameters are read.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{AgentError, ErrorKind};
use crate::state::AgentState;

/// Parameters of commands that take none.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Command parameters as received.
pub type Params = rivet_common::JsonObject;

/// What a command returns: a JSON value (a bare string is wrapped as upstream does).
pub type CommandOutcome = Result<Value, AgentError>;

/// A prepared command, ready to run.
pub type CommandFuture = Pin<Box<dyn Future<Output = CommandOutcome> + Send>>;

pub(super) type Prepare = dyn Fn(Arc<AgentState>, Params) -> Result<CommandFuture, AgentError> + Send + Sync;

/// Whether the POST waits for the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs inside the request.
    Sync,
    /// Runs in the background.
    Async,
}

/// One registered command.
#[derive(Clone)]
pub struct Command {
    pub(super) mode: Mode,
    pub(super) prepare: Arc<Prepare>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Parse parameters into the command's typed arguments; a mismatch is a 400, like a Python
/// `TypeError` on a wrong keyword argument, but answered instead of poisoning the history.
pub fn parse_params<P: DeserializeOwned>(params: Params) -> Result<P, AgentError> {
    serde_json::from_value(Value::Object(params))
        .map_err(|e| AgentError::new(ErrorKind::InvalidCommandParams, e.to_string()))
}

impl Command {
    fn build<P, F, Fut>(mode: Mode, run: F) -> Command
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(Arc<AgentState>, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CommandOutcome> + Send + 'static,
    {
        let run = Arc::new(run);
        Command {
            mode,
            prepare: Arc::new(move |state, params| {
                let args: P = parse_params(params)?;
                let run = Arc::clone(&run);
                Ok(Box::pin(async move { run(state, args).await }) as CommandFuture)
            }),
        }
    }

    /// A synchronous command with typed arguments.
    pub fn sync<P, F, Fut>(run: F) -> Command
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(Arc<AgentState>, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CommandOutcome> + Send + 'static,
    {
        Command::build(Mode::Sync, run)
    }

    /// An asynchronous command with typed arguments.
    pub fn asynchronous<P, F, Fut>(run: F) -> Command
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(Arc<AgentState>, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CommandOutcome> + Send + 'static,
    {
        Command::build(Mode::Async, run)
    }

    /// A command whose arguments are checked by `validate` before it is accepted (upstream's
    /// async validators): a validation error is a 400 and nothing is recorded.
    pub fn with_validator<P, V>(self, validate: V) -> Command
    where
        P: DeserializeOwned,
        V: Fn(&P) -> Result<(), AgentError> + Send + Sync + 'static,
    {
        let inner = self.prepare;
        Command {
            mode: self.mode,
            prepare: Arc::new(move |state, params| {
                let args: P = parse_params(params.clone())?;
                validate(&args)?;
                inner(state, params)
            }),
        }
    }

    /// Sync or async.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Extensions and their commands.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    extensions: BTreeMap<String, BTreeMap<String, Command>>,
}

impl Registry {
    /// Add `extension.name`; a later registration replaces an earlier one.
    pub fn register(&mut self, extension: &str, name: &str, command: Command) {
        self.extensions
            .entry(extension.to_owned())
            .or_default()
            .insert(name.to_owned(), command);
    }

    /// Look a command up: unknown extension → 404, unknown command → 400, as upstream.
    pub fn resolve(&self, extension: &str, name: &str) -> Result<&Command, AgentError> {
        let ext = self
            .extensions
            .get(extension)
            .ok_or_else(|| AgentError::new(ErrorKind::NotFound, format!("Extension with id {extension} not found.")))?;
        ext.get(name)
            .ok_or_else(|| AgentError::new(ErrorKind::InvalidCommand, format!("Unknown command: {name}")))
    }

    /// Names of the registered extensions.
    pub fn extension_names(&self) -> impl Iterator<Item = &str> {
        self.extensions.keys().map(String::as_str)
    }
}
