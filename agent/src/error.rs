//! Agent errors, in upstream's classes.
//!
//! Every error the agent reports, in a command result or as an HTTP fault, is one
//! [`ErrorKind`] plus instance details. The kind fixes the upstream class name (which the
//! conductor inspects), the status code and the fixed message, so the wire text matches IPA's.
//! Unlike upstream, every error serialises: nothing can poison the command list.

use rivet_common::error::{ErrorDoc, Fault};

/// Upstream error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ErrorKind {
    Rest,
    InvalidContent,
    InvalidCommand,
    InvalidCommandParams,
    NotFound,
    CommandExecution,
    AgentIsBusy,
    ImageDownload,
    ImageDownloadTimeout,
    ImageChecksum,
    ImageWrite,
    SystemReboot,
    BlockDeviceErase,
    BlockDevice,
    SoftwareRaid,
    DeviceNotFound,
    VersionMismatch,
    Cleaning,
    Deployment,
    Servicing,
    ProtectedDevice,
    InvalidImage,
    HardwareManagerMethodNotFound,
    HardwareManagerConfiguration,
    IncompatibleHardwareMethod,
    ClockSync,
    FileSystemNotSupported,
}

impl ErrorKind {
    /// Upstream class name, sent as `type`.
    pub fn type_name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Rest => "RESTError",
            InvalidContent => "InvalidContentError",
            InvalidCommand => "InvalidCommandError",
            InvalidCommandParams => "InvalidCommandParamsError",
            NotFound => "RequestedObjectNotFoundError",
            CommandExecution => "CommandExecutionError",
            AgentIsBusy => "AgentIsBusy",
            ImageDownload => "ImageDownloadError",
            ImageDownloadTimeout => "ImageDownloadTimeoutError",
            ImageChecksum => "ImageChecksumError",
            ImageWrite => "ImageWriteError",
            SystemReboot => "SystemRebootError",
            BlockDeviceErase => "BlockDeviceEraseError",
            BlockDevice => "BlockDeviceError",
            SoftwareRaid => "SoftwareRAIDError",
            DeviceNotFound => "DeviceNotFound",
            VersionMismatch => "VersionMismatch",
            Cleaning => "CleaningError",
            Deployment => "DeploymentError",
            Servicing => "ServicingError",
            ProtectedDevice => "ProtectedDeviceError",
            InvalidImage => "InvalidImage",
            HardwareManagerMethodNotFound => "HardwareManagerMethodNotFound",
            HardwareManagerConfiguration => "HardwareManagerConfigurationError",
            IncompatibleHardwareMethod => "IncompatibleHardwareMethodError",
            ClockSync => "ClockSyncError",
            FileSystemNotSupported => "FileSystemNotSupported",
        }
    }

    /// Status code of the class.
    pub fn code(self) -> u16 {
        use ErrorKind::*;
        match self {
            InvalidContent | InvalidCommand | InvalidCommandParams => 400,
            NotFound | DeviceNotFound => 404,
            ImageDownloadTimeout => 408,
            AgentIsBusy | VersionMismatch => 409,
            _ => 500,
        }
    }

    /// Fixed message of the class; `None` where upstream uses the details as the message.
    pub fn message(self) -> Option<&'static str> {
        use ErrorKind::*;
        Some(match self {
            Rest => "An error occurred",
            InvalidContent => "Invalid request body",
            InvalidCommand => "Invalid command",
            InvalidCommandParams => "Invalid command parameters",
            NotFound => "Not found",
            CommandExecution => "Command execution failed",
            AgentIsBusy => "Agent is busy",
            ImageDownload => "Error downloading image",
            ImageDownloadTimeout => "Image download timeout",
            ImageChecksum => "Error verifying image checksum",
            ImageWrite => "Error writing image to device",
            SystemReboot => "Error rebooting system",
            BlockDeviceErase => "Error erasing block device",
            BlockDevice => "Block device caused unknown error",
            SoftwareRaid => "Software RAID caused unknown error",
            DeviceNotFound => "Error finding the disk or partition device to deploy the image onto",
            VersionMismatch => "Hardware managers version mismatch, reload agent with correct version",
            Cleaning => "Clean step failed",
            Deployment => "Deploy step failed",
            Servicing => "Service step failed",
            InvalidImage => "The provided image is not valid for use",
            HardwareManagerMethodNotFound => "No HardwareManager found to handle method",
            HardwareManagerConfiguration => "Hardware manager configuration error",
            IncompatibleHardwareMethod => "HardwareManager method is not compatible with hardware",
            ClockSync => "Error syncing system clock",
            ProtectedDevice | FileSystemNotSupported => return None,
        })
    }

    /// Errors about the request itself: answered with HTTP 400 and never recorded.
    pub fn is_invalid_request(self) -> bool {
        matches!(
            self,
            ErrorKind::InvalidContent | ErrorKind::InvalidCommand | ErrorKind::InvalidCommandParams
        )
    }
}

/// An error with its details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.faultstring())]
pub struct AgentError {
    /// The class.
    pub kind: ErrorKind,
    /// What happened this time.
    pub details: String,
}

impl AgentError {
    /// An error of `kind` with `details`.
    pub fn new(kind: ErrorKind, details: impl Into<String>) -> Self {
        AgentError {
            kind,
            details: details.into(),
        }
    }

    /// The fixed message, or the details where the class has none.
    pub fn message(&self) -> &str {
        self.kind.message().unwrap_or(&self.details)
    }

    /// `<message>: <details>`, as upstream's faultstring.
    pub fn faultstring(&self) -> String {
        match self.kind.message() {
            Some(message) => format!("{message}: {}", self.details),
            None => self.details.clone(),
        }
    }

    /// The serialised form inside command results.
    pub fn to_doc(&self) -> ErrorDoc {
        ErrorDoc {
            kind: self.kind.type_name().to_owned(),
            code: self.kind.code(),
            message: self.message().to_owned(),
            details: self.details.clone(),
        }
    }

    /// The HTTP fault document for this error.
    pub fn to_fault(&self) -> Fault {
        Fault::for_status(self.kind.code(), self.faultstring())
    }
}

/// Python's `repr` of a JSON value, as upstream's messages print dicts
/// (`{'priority': 99, 'interface': 'deploy'}`).
pub fn py_repr(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_texts_match_upstream() {
        let busy = AgentError::new(ErrorKind::AgentIsBusy, "executing command execute_clean_step");
        assert_eq!(
            busy.to_fault().faultstring,
            "Agent is busy: executing command execute_clean_step"
        );
        assert_eq!(busy.to_fault().faultcode, "Client");
        let mismatch = AgentError::new(ErrorKind::VersionMismatch, "x").to_doc();
        assert_eq!((mismatch.kind.as_str(), mismatch.code), ("VersionMismatch", 409));
        let protected = AgentError::new(ErrorKind::ProtectedDevice, "GPFS found on /dev/sda");
        assert_eq!(protected.to_doc().message, "GPFS found on /dev/sda");
        assert_eq!(
            AgentError::new(ErrorKind::CommandExecution, "boom")
                .to_fault()
                .faultcode,
            "Server"
        );
    }

    #[test]
    fn py_repr_matches_python() {
        let v = serde_json::json!({"priority": 99, "interface": "deploy", "ok": true, "none": null, "l": [1, "a"]});
        assert_eq!(
            py_repr(&v),
            "{'priority': 99, 'interface': 'deploy', 'ok': True, 'none': None, 'l': [1, 'a']}"
        );
    }
}
