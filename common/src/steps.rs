//! Clean, deploy and service steps, and the `get_*_steps` results.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::JsonObject;
use crate::field::Field;

/// The three kinds of step flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    /// Cleaning (automated or manual).
    Clean,
    /// Deployment.
    Deploy,
    /// Servicing of an active node.
    Service,
}

impl StepType {
    /// Every step type.
    pub const ALL: [StepType; 3] = [StepType::Clean, StepType::Deploy, StepType::Service];

    /// `clean`, `deploy` or `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Clean => "clean",
            StepType::Deploy => "deploy",
            StepType::Service => "service",
        }
    }

    /// Key of the step lists in a `get_*_steps` result: `clean_steps`.
    pub fn steps_key(self) -> String {
        format!("{}_steps", self.as_str())
    }

    /// Parameter carrying the cached hardware-manager versions: `clean_version`.
    pub fn version_key(self) -> String {
        format!("{}_version", self.as_str())
    }

    /// Key of the step's return value in an `execute_*_step` result: `clean_result`.
    pub fn result_key(self) -> String {
        format!("{}_result", self.as_str())
    }

    /// Key echoing the step in an `execute_*_step` result: `clean_step`.
    pub fn step_key(self) -> String {
        format!("{}_step", self.as_str())
    }
}

impl fmt::Display for StepType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clean" => Ok(StepType::Clean),
            "deploy" => Ok(StepType::Deploy),
            "service" => Ok(StepType::Service),
            other => Err(format!(
                "unknown step type {other:?}: expected clean, deploy or service"
            )),
        }
    }
}

/// Description of one argument a step accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSpec {
    /// What the argument does.
    pub description: String,
    /// Whether the step fails without it.
    #[serde(default)]
    pub required: bool,
}

/// Arguments a step accepts, by name.
pub type ArgsInfo = BTreeMap<String, ArgSpec>;

/// An [`ArgsInfo`] from `(name, description, required)` rows, as step definitions write them.
pub fn args_info(rows: &[(&str, &str, bool)]) -> ArgsInfo {
    rows.iter()
        .map(|(name, description, required)| {
            (
                (*name).to_owned(),
                ArgSpec {
                    description: (*description).to_owned(),
                    required: *required,
                },
            )
        })
        .collect()
}

/// A boolean step argument `name` of `args`: `default` when absent or null; a JSON boolean, or
/// the strings `true`/`false` in any case (what a command line's `--args` may carry; upstream's
/// Python would take any non-empty string as true, `"false"` included).
///
/// Errors: any other value, returned for the caller's message.
pub fn bool_arg<'a>(args: Option<&'a JsonObject>, name: &str, default: bool) -> Result<bool, &'a serde_json::Value> {
    match args.and_then(|a| a.get(name)) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(other),
    }
}

/// A step as agents list it and conductors cache and run it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Step {
    /// Method name (`erase_devices`).
    pub step: String,
    /// Higher runs first; 0 means "only when asked for". Absent on some conductor-built steps
    /// (the `write_image` proxy step), which then count as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Driver interface owning the step (`deploy`, `raid`, ...).
    pub interface: String,
    /// Reboot into the ramdisk after the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_requested: Option<bool>,
    /// Whether an operator may abort the step while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abortable: Option<bool>,
    /// Accepted arguments (conductor steps carry an explicit null).
    #[serde(default, skip_serializing_if = "Field::is_absent")]
    pub argsinfo: Field<ArgsInfo>,
    /// Whether the step needs the agent running (conductor adds it to clean steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_ramdisk: Option<bool>,
    /// Arguments chosen by the operator or the conductor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<JsonObject>,
    /// Other keys (`abort_after`, `execute_on_child_nodes`, ...).
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Step {
    /// The priority, 0 when absent.
    pub fn priority(&self) -> i64 {
        self.priority.unwrap_or(0)
    }

    /// True when `other` names the same `interface.step`.
    pub fn same_step(&self, other: &Step) -> bool {
        self.step == other.step && self.interface == other.interface
    }
}

/// `{manager_name: version}` of every hardware manager an agent loaded.
pub type HardwareManagerVersions = BTreeMap<String, String>;

/// Result of `get_clean_steps`, `get_deploy_steps`, `get_service_steps`.
///
/// On the wire the list key depends on the step type (`clean_steps`), so this type converts to
/// and from JSON with the type given explicitly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepsResult {
    /// Steps grouped by the hardware manager that provides them, in manager order.
    pub steps: Vec<(String, Vec<Step>)>,
    /// Versions to send back as `<type>_version`.
    pub hardware_manager_version: HardwareManagerVersions,
}

/// Why a `get_*_steps` result could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StepsResultError {
    /// The result lacks a key.
    #[error("the get_{0}_steps result has no {1:?} key")]
    MissingKey(StepType, String),
    /// A value has the wrong shape.
    #[error("the get_{0}_steps result is malformed: {1}")]
    Malformed(StepType, serde_json::Error),
}

impl StepsResult {
    /// JSON as the agent returns it.
    pub fn to_value(&self, step_type: StepType) -> serde_json::Value {
        let mut groups = JsonObject::new();
        for (manager, steps) in &self.steps {
            groups.insert(manager.clone(), serde_json::to_value(steps).expect("steps serialise"));
        }
        let mut out = JsonObject::new();
        out.insert(step_type.steps_key(), serde_json::Value::Object(groups));
        out.insert(
            "hardware_manager_version".into(),
            serde_json::to_value(&self.hardware_manager_version).expect("a string map serialises"),
        );
        serde_json::Value::Object(out)
    }

    /// Parse an agent's result for the given step type.
    pub fn from_value(step_type: StepType, value: &serde_json::Value) -> Result<Self, StepsResultError> {
        let key = step_type.steps_key();
        let groups = value
            .get(&key)
            .ok_or_else(|| StepsResultError::MissingKey(step_type, key.clone()))?;
        let groups: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(groups.clone()).map_err(|e| StepsResultError::Malformed(step_type, e))?;
        let mut steps = Vec::with_capacity(groups.len());
        for (manager, list) in groups {
            let list: Vec<Step> =
                serde_json::from_value(list).map_err(|e| StepsResultError::Malformed(step_type, e))?;
            steps.push((manager, list));
        }
        let versions = value
            .get("hardware_manager_version")
            .ok_or_else(|| StepsResultError::MissingKey(step_type, "hardware_manager_version".into()))?;
        let hardware_manager_version =
            serde_json::from_value(versions.clone()).map_err(|e| StepsResultError::Malformed(step_type, e))?;
        Ok(StepsResult {
            steps,
            hardware_manager_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_boolean_argument_is_a_boolean_or_its_word() {
        let args = json!({"t": true, "f": "FALSE", "n": null, "s": "yes", "i": 1});
        let args = args.as_object();
        assert_eq!(bool_arg(args, "t", false), Ok(true));
        assert_eq!(bool_arg(args, "f", true), Ok(false));
        assert_eq!(bool_arg(args, "n", true), Ok(true));
        assert_eq!(bool_arg(args, "absent", false), Ok(false));
        assert_eq!(bool_arg(None, "absent", true), Ok(true));
        assert_eq!(bool_arg(args, "s", true), Err(&json!("yes")));
        assert_eq!(bool_arg(args, "i", true), Err(&json!(1)));
    }

    #[test]
    fn args_info_is_built_from_rows() {
        let info = args_info(&[("level", "How much", true), ("dry", "Only say", false)]);
        assert_eq!(info.len(), 2);
        assert!(info["level"].required && !info["dry"].required);
        assert_eq!(info["dry"].description, "Only say");
    }
}
