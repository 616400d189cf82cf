//! Agent command requests and results (`POST /v1/commands/`, `GET /v1/commands/`).

use serde::{Deserialize, Serialize};

use crate::JsonObject;
use crate::error::ErrorDoc;

/// Body of `POST /v1/commands/`: `{"name": "<extension>.<command>", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// `<extension>.<command>`, for example `clean.execute_clean_step`.
    pub name: String,
    /// Keyword arguments of the command.
    pub params: JsonObject,
}

/// Where a command is in its life.
///
/// The agent writes `CLEAN_VERSION_MISMATCH` for every step type (upstream kept the old text);
/// the conductor also accepts `VERSION_MISMATCH`. Unknown texts are kept so a conductor can
/// report them rather than fail to parse the whole command list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CommandStatus {
    /// Still executing (asynchronous commands only).
    Running,
    /// Finished; `command_result` holds the answer.
    Succeeded,
    /// Finished with `command_error`.
    Failed,
    /// The hardware-manager versions differ from those the conductor cached.
    VersionMismatch,
    /// Any other text a peer sent.
    Other(String),
}

impl CommandStatus {
    /// True unless the command is still running.
    pub fn is_finished(&self) -> bool {
        !matches!(self, CommandStatus::Running)
    }
}

impl From<String> for CommandStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "RUNNING" => CommandStatus::Running,
            "SUCCEEDED" => CommandStatus::Succeeded,
            "FAILED" => CommandStatus::Failed,
            "CLEAN_VERSION_MISMATCH" | "VERSION_MISMATCH" => CommandStatus::VersionMismatch,
            _ => CommandStatus::Other(s),
        }
    }
}

impl From<CommandStatus> for String {
    fn from(s: CommandStatus) -> Self {
        match s {
            CommandStatus::Running => "RUNNING".into(),
            CommandStatus::Succeeded => "SUCCEEDED".into(),
            CommandStatus::Failed => "FAILED".into(),
            // The wire text every IPA release writes; see the type's docs.
            CommandStatus::VersionMismatch => "CLEAN_VERSION_MISMATCH".into(),
            CommandStatus::Other(s) => s,
        }
    }
}

/// One command's record: exactly the five fields upstream serialises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// UUID of the command.
    pub id: String,
    /// Short command name without the extension prefix (`execute_clean_step`).
    pub command_name: String,
    /// Where the command is.
    pub command_status: CommandStatus,
    /// The error when it failed.
    pub command_error: Option<ErrorDoc>,
    /// The answer when it succeeded; shape depends on the command.
    pub command_result: Option<serde_json::Value>,
}

/// Body of `GET /v1/commands/`: oldest first; the conductor treats the last as current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList {
    /// The recorded commands.
    pub commands: Vec<CommandResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts() {
        for (text, want) in [
            ("RUNNING", CommandStatus::Running),
            ("VERSION_MISMATCH", CommandStatus::VersionMismatch),
            ("CLEAN_VERSION_MISMATCH", CommandStatus::VersionMismatch),
            ("BOGUS", CommandStatus::Other("BOGUS".into())),
        ] {
            assert_eq!(CommandStatus::from(text.to_owned()), want);
        }
        assert_eq!(String::from(CommandStatus::VersionMismatch), "CLEAN_VERSION_MISMATCH");
    }
}
