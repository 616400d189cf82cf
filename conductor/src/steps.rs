//! Steps: collection from the driver's interfaces, ordering, and validation of user steps
//! (reference §4.2–4.4).
//!
//! Ordering: priority descending, ties broken by upstream's interface table for the flow
//! (a higher value runs first). Service steps run in the user's order. Automated cleaning runs
//! the steps with priority > 0 (after priority overrides).

use std::collections::BTreeMap;

use rivet_common::steps::{Step, StepType};
use serde_json::Value;

use crate::drivers::Driver;

/// Interfaces asked for steps in a flow, with their tie-break value.
pub fn interface_priorities(flow: StepType) -> &'static [(&'static str, i64)] {
    match flow {
        StepType::Clean | StepType::Deploy => &[
            ("vendor", 7),
            ("power", 6),
            ("management", 5),
            ("firmware", 4),
            ("deploy", 3),
            ("bios", 2),
            ("raid", 1),
        ],
        StepType::Service => &[
            ("network", 8),
            ("vendor", 7),
            ("power", 6),
            ("management", 5),
            ("firmware", 4),
            ("deploy", 3),
            ("bios", 2),
            ("raid", 1),
        ],
    }
}

fn interface_rank(flow: StepType, interface: &str) -> i64 {
    interface_priorities(flow)
        .iter()
        .find(|(i, _)| *i == interface)
        .map(|(_, r)| *r)
        .unwrap_or(0)
}

/// Every step the driver's interfaces declare for `flow` (plus `extra`, e.g. cached in-band
/// steps), with `overrides` (`interface.step` → priority) applied.
pub fn collect(driver: &Driver, flow: StepType, extra: &[Step], overrides: &BTreeMap<String, i64>) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (kind, _) in interface_priorities(flow) {
        if let Some(iface) = driver.interface(kind) {
            steps.extend(iface.steps(flow));
        }
    }
    for step in extra {
        // An out-of-band step of the same name shadows an in-band one.
        if !steps.iter().any(|s| s.same_step(step)) {
            steps.push(step.clone());
        }
    }
    for step in &mut steps {
        if let Some(p) = overrides.get(&format!("{}.{}", step.interface, step.step)) {
            step.priority = Some(*p);
        }
    }
    steps
}

/// Sort by priority then interface rank, both descending (stable otherwise).
pub fn order(mut steps: Vec<Step>, flow: StepType) -> Vec<Step> {
    if flow != StepType::Service {
        steps.sort_by_key(|s| std::cmp::Reverse((s.priority(), interface_rank(flow, &s.interface))));
    }
    steps
}

/// The automated list: enabled (priority > 0) steps, ordered.
pub fn automated(steps: Vec<Step>, flow: StepType) -> Vec<Step> {
    order(steps.into_iter().filter(|s| s.priority() > 0).collect(), flow)
}

/// Step names handled by the conductor itself in any flow, whatever interface they name
/// (Ironic's reserved functional steps): the power actions, and the flow control `hold` and
/// `wait` ([`crate::flow::reserved`]).
pub const RESERVED: &[&str] = &["power_on", "power_off", "reboot", "hold", "wait"];

/// Longest pause a `wait` step may ask for, in seconds: the upper bound Ironic puts on
/// `max_conductor_wait_step_seconds`.
pub const MAX_WAIT_STEP_SECONDS: u64 = 1800;

/// The pause a reserved `wait` step asks for: `Ok(None)` without a `seconds` argument (the flow
/// waits for the agent's next heartbeat), else whole seconds. Ironic reads `int(seconds)`, so a
/// number or a string of digits; a whole float (`30.0`) is taken too.
///
/// # Errors
/// A negative, fractional or non-numeric `seconds`, in words.
pub fn wait_seconds(step: &Step) -> Result<Option<u64>, String> {
    let Some(given) = step.args.as_ref().and_then(|a| a.get("seconds")) else {
        return Ok(None);
    };
    let seconds = match given {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    seconds.map(Some).ok_or_else(|| {
        format!(
            "{}.wait: argument \"seconds\" must be a whole number of seconds, 0 or more; got {given}",
            step.interface
        )
    })
}

/// Check user steps against the driver's steps; returns them ready to run, in user order.
/// All problems are reported together.
pub fn validate_user_steps(user: &[Value], known: &[Step], flow: StepType) -> Result<Vec<Step>, String> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (index, raw) in user.iter().enumerate() {
        let Some(obj) = raw.as_object() else {
            errors.push(format!("step {index} is not an object"));
            continue;
        };
        let (Some(interface), Some(name)) = (
            obj.get("interface").and_then(Value::as_str),
            obj.get("step").and_then(Value::as_str),
        ) else {
            errors.push(format!("step {index} needs \"interface\" and \"step\""));
            continue;
        };
        let args = match obj.get("args") {
            None | Some(Value::Null) => None,
            Some(Value::Object(a)) => Some(a.clone()),
            Some(other) => {
                errors.push(format!("{interface}.{name}: args must be an object, got {other}"));
                continue;
            }
        };
        let mut step: Step = match serde_json::from_value(raw.clone()) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{interface}.{name}: {e}"));
                continue;
            }
        };
        step.args = args.clone();
        if RESERVED.contains(&name) {
            match wait_seconds(&step) {
                Err(e) if name == "wait" => errors.push(e),
                _ => out.push(step),
            }
            continue;
        }
        let Some(def) = known.iter().find(|k| k.interface == interface && k.step == name) else {
            errors.push(format!(
                "{flow} step {interface}.{name} is not supported by this node's driver"
            ));
            continue;
        };
        let argsinfo = def.argsinfo.as_option().cloned().unwrap_or_default();
        let given = args.unwrap_or_default();
        for key in given.keys() {
            if !argsinfo.contains_key(key) {
                errors.push(format!(
                    "{interface}.{name}: argument {key:?} is not accepted (accepted: {:?})",
                    argsinfo.keys().collect::<Vec<_>>()
                ));
            }
        }
        if flow != StepType::Deploy || step.priority() > 0 {
            for (arg, spec) in &argsinfo {
                if spec.required && !given.contains_key(arg) {
                    errors.push(format!("{interface}.{name}: required argument {arg:?} is missing"));
                }
            }
        }
        if flow != StepType::Deploy {
            step.abortable = def.abortable;
            step.priority = def.priority;
            step.requires_ramdisk = def.requires_ramdisk;
            step.reboot_requested = def.reboot_requested;
        }
        out.push(step);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivet_common::field::Field;
    use rivet_common::steps::ArgSpec;
    use serde_json::json;

    fn step(interface: &str, name: &str, priority: i64) -> Step {
        Step {
            step: name.into(),
            interface: interface.into(),
            priority: Some(priority),
            ..Default::default()
        }
    }

    #[test]
    fn ordering_uses_priority_then_interface_table() {
        let steps = vec![
            step("raid", "r", 10),
            step("deploy", "erase_devices", 10),
            step("deploy", "meta", 99),
            step("bios", "b", 0),
        ];
        let names: Vec<String> = automated(steps.clone(), StepType::Clean)
            .into_iter()
            .map(|s| s.step)
            .collect();
        assert_eq!(
            names,
            ["meta", "erase_devices", "r"],
            "priority 0 is not automated; deploy beats raid on a tie"
        );
        let names: Vec<String> = order(steps, StepType::Service).into_iter().map(|s| s.step).collect();
        assert_eq!(
            names,
            ["r", "erase_devices", "meta", "b"],
            "service steps keep the given order"
        );
    }

    #[test]
    fn user_steps_are_validated_against_argsinfo() {
        let mut bios = step("bios", "apply_configuration", 0);
        bios.argsinfo = Field::Value(
            [(
                "settings".into(),
                ArgSpec {
                    description: "x".into(),
                    required: true,
                },
            )]
            .into(),
        );
        bios.abortable = Some(false);
        let known = vec![bios, step("deploy", "erase_devices", 10)];
        let ok = validate_user_steps(
            &[json!({"interface": "bios", "step": "apply_configuration", "args": {"settings": []}})],
            &known,
            StepType::Clean,
        )
        .expect("valid");
        assert_eq!(
            ok[0].abortable,
            Some(false),
            "abortable comes from the driver's definition"
        );
        let err = validate_user_steps(
            &[
                json!({"interface": "bios", "step": "apply_configuration"}),
                json!({"interface": "bios", "step": "apply_configuration", "args": {"settings": [], "bogus": 1}}),
                json!({"interface": "raid", "step": "nope"}),
                json!({"step": "x"}),
            ],
            &known,
            StepType::Clean,
        )
        .expect_err("invalid");
        for text in [
            "required argument \"settings\"",
            "argument \"bogus\" is not accepted",
            "raid.nope is not supported",
            "needs \"interface\"",
        ] {
            assert!(err.contains(text), "{err}");
        }
        assert!(
            validate_user_steps(
                &[json!({"interface": "power", "step": "reboot"})],
                &known,
                StepType::Clean
            )
            .is_ok()
        );
    }

    /// The reserved `wait` step takes whole seconds as Ironic's `int(seconds)` does; anything
    /// else is refused with the step list, before the flow starts.
    #[test]
    fn wait_steps_take_whole_seconds() {
        let wait = |args: Value| {
            validate_user_steps(
                &[json!({"interface": "deploy", "step": "wait", "args": args})],
                &[],
                StepType::Clean,
            )
        };
        let seconds = |args: Value| wait_seconds(&wait(args).expect("valid")[0]).expect("seconds");
        assert_eq!(seconds(json!({})), None, "no seconds: wait for the next heartbeat");
        assert_eq!(seconds(json!({"seconds": 30})), Some(30));
        assert_eq!(seconds(json!({"seconds": "30"})), Some(30));
        assert_eq!(seconds(json!({"seconds": 5.0})), Some(5));
        assert_eq!(seconds(json!({"seconds": 0})), Some(0));
        for bad in [json!(-1), json!(2.5), json!("soon"), json!(null), json!([1])] {
            let err = wait(json!({"seconds": bad})).expect_err("refused");
            assert!(
                err.contains("deploy.wait: argument \"seconds\" must be a whole number"),
                "{err}"
            );
        }
        let hold = validate_user_steps(
            &[json!({"interface": "deploy", "step": "hold", "args": {"seconds": "x"}})],
            &[],
            StepType::Service,
        );
        assert!(hold.is_ok(), "only wait reads seconds: {hold:?}");
    }
}
