//! What a manager executable may answer, checked field by field. Nothing a program sends can
//! panic the agent or slip through as a value the agent cannot use: every refusal names the
//! field and the value (the caller adds the manager).
//!
//! Limits (docs/vendor-guide.md): names are 1–128 characters of `[A-Za-z0-9_.-]` (step names
//! `[A-Za-z_][A-Za-z0-9_]*`, as Ironic forms `interface.step` from them); versions 1–64
//! printable characters; support levels 0–4294967295; priorities 0–2147483647 (Ironic's
//! integer column); step timeouts a number of seconds above 0 and at most [`MAX_STEP_TIMEOUT`];
//! at most [`MAX_STEPS`] steps per list, each name once.

use std::collections::BTreeSet;
use std::time::Duration;

use rivet_common::steps::Step;
use serde_json::Value;

use crate::hardware::SupportLevel;

/// Longest step time limit a step may declare (seven days).
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most steps one `get_steps` answer may list.
pub const MAX_STEPS: usize = 1000;

/// Interfaces an in-band step may belong to (those the conductor orders steps by).
pub const STEP_INTERFACES: &[&str] = &[
    "deploy",
    "raid",
    "bios",
    "management",
    "firmware",
    "power",
    "vendor",
    "network",
];

/// A refused answer: `field` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

fn refuse(field: &str, value: &Value, why: &str) -> Refused {
    Refused(format!("{field} {}: {why}", shown(value)))
}

/// A value as the error quotes it, cut to 200 characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

fn answer_object<'a>(method: &str, answer: &'a Value) -> Result<&'a serde_json::Map<String, Value>, Refused> {
    answer
        .as_object()
        .ok_or_else(|| refuse(&format!("{method} answer"), answer, "is not a JSON object"))
}

/// IPA's other manager methods an executable may take on, by naming them in `describe`'s
/// `hooks`; it is called for no other.
pub const HOOKS: &[&str] = &[
    "erase_block_device",
    "get_os_install_device",
    "inventory_additions",
    "collect_system_logs",
];

/// What `describe` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The manager's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The [`HOOKS`] it takes on.
    pub hooks: BTreeSet<String>,
}

/// `describe`: `{"name": str, "version": str, "hooks": [str]}` (version defaults to "1.0", hooks
/// to none).
pub fn describe(answer: &Value) -> Result<Described, Refused> {
    let object = answer_object("describe", answer)?;
    let name = object.get("name").unwrap_or(&Value::Null);
    let name = match name.as_str() {
        Some(s) if is_name(s) => s.to_owned(),
        _ => return Err(refuse("name", name, "is not 1-128 characters of A-Z a-z 0-9 _ . -")),
    };
    let version = match object.get("version") {
        None => "1.0".to_owned(),
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 64 && s.chars().all(|c| !c.is_control()) => s.to_owned(),
            _ => return Err(refuse("version", v, "is not a string of 1-64 printable characters")),
        },
    };
    let hooks = match object.get("hooks") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Array(list)) => {
            let mut hooks = BTreeSet::new();
            for (i, hook) in list.iter().enumerate() {
                match hook.as_str() {
                    Some(h) if HOOKS.contains(&h) => drop(hooks.insert(h.to_owned())),
                    _ => {
                        return Err(refuse(
                            &format!("hooks[{i}]"),
                            hook,
                            &format!("is not one of {}", HOOKS.join(", ")),
                        ));
                    }
                }
            }
            hooks
        }
        Some(other) => return Err(refuse("hooks", other, "is not a list")),
    };
    Ok(Described { name, version, hooks })
}

fn is_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `evaluate`: `{"support": int}` with 0 ≤ support ≤ u32::MAX.
pub fn evaluate(answer: &Value) -> Result<SupportLevel, Refused> {
    let object = answer_object("evaluate", answer)?;
    let support = object.get("support").unwrap_or(&Value::Null);
    support
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .map(SupportLevel)
        .ok_or_else(|| refuse("support", support, "is not a whole number from 0 to 4294967295"))
}

/// `get_steps`: `{"steps": [step, ...]}`, each step checked.
pub fn steps(answer: &Value) -> Result<Vec<Step>, Refused> {
    let object = answer_object("get_steps", answer)?;
    let list = match object.get("steps") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(refuse("steps", other, "is not a list")),
    };
    if list.len() > MAX_STEPS {
        return Err(Refused(format!(
            "steps: {} steps listed, at most {MAX_STEPS} are accepted",
            list.len()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let step = one_step(i, raw)?;
        if !seen.insert(step.step.clone()) {
            return Err(refuse(&format!("steps[{i}].step"), &raw["step"], "is listed twice"));
        }
        out.push(step);
    }
    Ok(out)
}

fn one_step(i: usize, raw: &Value) -> Result<Step, Refused> {
    let at = |field: &str| format!("steps[{i}].{field}");
    let object = raw
        .as_object()
        .ok_or_else(|| refuse(&format!("steps[{i}]"), raw, "is not a JSON object"))?;
    let name = object.get("step").unwrap_or(&Value::Null);
    if !name.as_str().is_some_and(is_step_name) {
        return Err(refuse(
            &at("step"),
            name,
            "is not a step name (A-Z a-z 0-9 _, not starting with a digit, at most 128)",
        ));
    }
    let interface = object.get("interface").unwrap_or(&Value::Null);
    if !interface.as_str().is_some_and(|s| STEP_INTERFACES.contains(&s)) {
        return Err(refuse(
            &at("interface"),
            interface,
            &format!("is not one of {}", STEP_INTERFACES.join(", ")),
        ));
    }
    if let Some(priority) = object.get("priority")
        && priority.as_u64().is_none_or(|p| p > i32::MAX as u64)
    {
        return Err(refuse(
            &at("priority"),
            priority,
            "is not a whole number from 0 to 2147483647",
        ));
    }
    for flag in ["reboot_requested", "abortable", "requires_ramdisk"] {
        if let Some(value) = object.get(flag)
            && !value.is_boolean()
        {
            return Err(refuse(&at(flag), value, "is not true or false"));
        }
    }
    if let Some(argsinfo) = object.get("argsinfo")
        && !(argsinfo.is_null() || argsinfo.as_object().is_some_and(|a| a.values().all(Value::is_object)))
    {
        return Err(refuse(
            &at("argsinfo"),
            argsinfo,
            "is not an object of {argument: {description, required}}",
        ));
    }
    if let Some(timeout) = object.get("timeout") {
        step_timeout(timeout).map_err(|why| refuse(&at("timeout"), timeout, &why))?;
    }
    serde_json::from_value(raw.clone()).map_err(|e| refuse(&format!("steps[{i}]"), raw, &e.to_string()))
}

fn is_step_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A step's own `timeout`, in seconds: a number above 0 and at most [`MAX_STEP_TIMEOUT`].
pub fn step_timeout(value: &Value) -> Result<Duration, String> {
    let seconds = value.as_f64().ok_or("is not a number of seconds")?;
    if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_STEP_TIMEOUT.as_secs_f64() {
        Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "is not a number of seconds above 0 and at most {}",
            MAX_STEP_TIMEOUT.as_secs()
        ))
    }
}

/// What `run_step` (or a hook) answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `{"result": any}`.
    Result(Value),
    /// `{"error": text}`.
    Error(String),
    /// `{"incompatible": text}`: the next manager is asked.
    Incompatible(String),
}

/// The answer to `run_step` and to the hooks: exactly one of `result`, `error` (a string) or
/// `incompatible` (a string).
pub fn outcome(method: &str, answer: &Value) -> Result<Outcome, Refused> {
    let object = answer_object(method, answer)?;
    let keys: Vec<&str> = ["result", "error", "incompatible"]
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect();
    let text = |key: &str| -> Result<String, Refused> {
        let value = &object[key];
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| refuse(key, value, "is not a string"))
    };
    match keys.as_slice() {
        ["result"] => Ok(Outcome::Result(object["result"].clone())),
        ["error"] => Ok(Outcome::Error(text("error")?)),
        ["incompatible"] => Ok(Outcome::Incompatible(text("incompatible")?)),
        _ => Err(refuse(
            &format!("{method} answer"),
            answer,
            "does not hold exactly one of result, error or incompatible",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(extra: Value) -> Value {
        let mut s = json!({"step": "flash", "priority": 0, "interface": "management"});
        s.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        json!({ "steps": [s] })
    }

    #[test]
    fn step_timeouts_outside_their_range_are_refused_with_field_and_value() {
        for bad in [
            json!(-1),
            json!(0),
            json!(1e300),
            json!(f64::MAX),
            json!("60"),
            json!(604801),
        ] {
            let err = steps(&step(json!({ "timeout": bad.clone() }))).expect_err("refused");
            assert!(
                err.0.starts_with(&format!("steps[0].timeout {bad}")),
                "{bad}: {}",
                err.0
            );
        }
        for good in [json!(0.5), json!(60), json!(604800)] {
            assert!(steps(&step(json!({ "timeout": good.clone() }))).is_ok(), "{good}");
        }
    }

    #[test]
    fn each_step_field_is_checked() {
        let cases = [
            (json!({"priority": -1}), "steps[0].priority -1"),
            (json!({"priority": 1.5}), "steps[0].priority 1.5"),
            (json!({"priority": 4294967296u64}), "steps[0].priority 4294967296"),
            (json!({"interface": "bogus"}), "steps[0].interface \"bogus\""),
            (json!({"step": "a.b"}), "steps[0].step \"a.b\""),
            (json!({"step": ""}), "steps[0].step \"\""),
            (json!({"step": 7}), "steps[0].step 7"),
            (json!({"abortable": "yes"}), "steps[0].abortable \"yes\""),
            (json!({"argsinfo": [1]}), "steps[0].argsinfo [1]"),
        ];
        for (extra, expected) in cases {
            let err = steps(&step(extra.clone())).expect_err("refused");
            assert!(err.0.starts_with(expected), "{extra}: {}", err.0);
        }
        let twice = json!({"steps": [
            {"step": "a", "priority": 0, "interface": "deploy"},
            {"step": "a", "priority": 1, "interface": "deploy"}]});
        assert!(steps(&twice).expect_err("twice").0.contains("listed twice"));
        assert!(steps(&json!({"steps": {}})).is_err());
        assert!(steps(&json!([])).is_err());
        assert_eq!(steps(&json!({})).expect("no steps"), Vec::new());
    }

    #[test]
    fn describe_and_evaluate_check_their_fields() {
        let described =
            describe(&json!({"name": "acme", "version": "2", "hooks": ["collect_system_logs"]})).expect("ok");
        assert_eq!((described.name.as_str(), described.version.as_str()), ("acme", "2"));
        assert!(described.hooks.contains("collect_system_logs"));
        assert_eq!(describe(&json!({"name": "acme"})).expect("ok").version, "1.0");
        for bad in [
            json!({}),
            json!({"name": ""}),
            json!({"name": "a b"}),
            json!({"name": "a", "version": 2}),
            json!({"name": "a", "hooks": ["flash_everything"]}),
            json!({"name": "a", "hooks": "erase_block_device"}),
        ] {
            assert!(describe(&bad).is_err(), "{bad}");
        }
        assert_eq!(evaluate(&json!({"support": 3})).expect("ok"), SupportLevel(3));
        for bad in [
            json!({"support": -1}),
            json!({"support": 1.5}),
            json!({"support": 1e300}),
            json!({"support": 4294967296u64}),
            json!(null),
        ] {
            let err = evaluate(&bad).expect_err("refused");
            assert!(
                err.0.contains("support") || err.0.contains("evaluate answer"),
                "{}",
                err.0
            );
        }
    }

    #[test]
    fn run_step_answers_hold_exactly_one_outcome() {
        assert_eq!(
            outcome("run_step", &json!({"result": null})).expect("ok"),
            Outcome::Result(Value::Null)
        );
        assert_eq!(
            outcome("run_step", &json!({"error": "x"})).expect("ok"),
            Outcome::Error("x".into())
        );
        for bad in [
            json!({}),
            json!({"result": 1, "error": "x"}),
            json!({"error": 5}),
            json!("done"),
        ] {
            assert!(outcome("run_step", &bad).is_err(), "{bad}");
        }
    }
}
