//! Ironic's provision state machine (reference §5): one table that the engine, the API checks,
//! the tests and `docs/states.md` share.

/// Stable and transient provision states (the literal strings stored and shown).
pub mod state {
    pub const ENROLL: &str = "enroll";
    pub const VERIFYING: &str = "verifying";
    pub const MANAGEABLE: &str = "manageable";
    pub const AVAILABLE: &str = "available";
    pub const ACTIVE: &str = "active";
    pub const ERROR: &str = "error";
    pub const DEPLOYING: &str = "deploying";
    pub const DEPLOYWAIT: &str = "wait call-back";
    pub const DEPLOYFAIL: &str = "deploy failed";
    pub const DEPLOYHOLD: &str = "deploy hold";
    pub const DELETING: &str = "deleting";
    pub const CLEANING: &str = "cleaning";
    pub const CLEANWAIT: &str = "clean wait";
    pub const CLEANFAIL: &str = "clean failed";
    pub const CLEANHOLD: &str = "clean hold";
    pub const INSPECTING: &str = "inspecting";
    pub const INSPECTWAIT: &str = "inspect wait";
    pub const INSPECTFAIL: &str = "inspect failed";
    pub const ADOPTING: &str = "adopting";
    pub const ADOPTFAIL: &str = "adopt failed";
    pub const RESCUING: &str = "rescuing";
    pub const RESCUEWAIT: &str = "rescue wait";
    pub const RESCUEFAIL: &str = "rescue failed";
    pub const RESCUE: &str = "rescue";
    pub const UNRESCUING: &str = "unrescuing";
    pub const UNRESCUEFAIL: &str = "unrescue failed";
    pub const SERVICING: &str = "servicing";
    pub const SERVICEWAIT: &str = "service wait";
    pub const SERVICEFAIL: &str = "service failed";
    pub const SERVICEHOLD: &str = "service hold";
}

use state::*;

/// `(from, event, to)`: every legal transition.
pub const TRANSITIONS: &[(&str, &str, &str)] = &[
    (ENROLL, "manage", VERIFYING),
    (VERIFYING, "done", MANAGEABLE),
    (VERIFYING, "fail", ENROLL),
    (MANAGEABLE, "provide", CLEANING),
    (MANAGEABLE, "clean", CLEANING),
    (MANAGEABLE, "inspect", INSPECTING),
    (MANAGEABLE, "adopt", ADOPTING),
    (AVAILABLE, "deploy", DEPLOYING),
    (AVAILABLE, "manage", MANAGEABLE),
    (DEPLOYING, "wait", DEPLOYWAIT),
    (DEPLOYING, "hold", DEPLOYHOLD),
    (DEPLOYING, "done", ACTIVE),
    (DEPLOYING, "fail", DEPLOYFAIL),
    (DEPLOYWAIT, "resume", DEPLOYING),
    (DEPLOYWAIT, "hold", DEPLOYHOLD),
    (DEPLOYWAIT, "fail", DEPLOYFAIL),
    (DEPLOYWAIT, "abort", DEPLOYFAIL),
    (DEPLOYWAIT, "delete", DELETING),
    (DEPLOYHOLD, "unhold", DEPLOYWAIT),
    (DEPLOYHOLD, "abort", DEPLOYFAIL),
    (DEPLOYFAIL, "rebuild", DEPLOYING),
    (DEPLOYFAIL, "deploy", DEPLOYING),
    (DEPLOYFAIL, "delete", DELETING),
    (ACTIVE, "rebuild", DEPLOYING),
    (ACTIVE, "delete", DELETING),
    (ACTIVE, "rescue", RESCUING),
    (ACTIVE, "service", SERVICING),
    (DELETING, "clean", CLEANING),
    (DELETING, "fail", ERROR),
    (ERROR, "rebuild", DEPLOYING),
    (ERROR, "delete", DELETING),
    (CLEANING, "wait", CLEANWAIT),
    (CLEANING, "hold", CLEANHOLD),
    (CLEANING, "done", AVAILABLE),
    (CLEANING, "manage", MANAGEABLE),
    (CLEANING, "fail", CLEANFAIL),
    (CLEANWAIT, "resume", CLEANING),
    (CLEANWAIT, "hold", CLEANHOLD),
    (CLEANWAIT, "fail", CLEANFAIL),
    (CLEANWAIT, "abort", CLEANFAIL),
    (CLEANHOLD, "unhold", CLEANWAIT),
    (CLEANHOLD, "abort", CLEANFAIL),
    (CLEANFAIL, "manage", MANAGEABLE),
    (INSPECTING, "done", MANAGEABLE),
    (INSPECTING, "wait", INSPECTWAIT),
    (INSPECTING, "fail", INSPECTFAIL),
    (INSPECTWAIT, "resume", INSPECTING),
    (INSPECTWAIT, "done", MANAGEABLE),
    (INSPECTWAIT, "fail", INSPECTFAIL),
    (INSPECTWAIT, "abort", INSPECTFAIL),
    (INSPECTFAIL, "inspect", INSPECTING),
    (INSPECTFAIL, "manage", MANAGEABLE),
    (ADOPTING, "done", ACTIVE),
    (ADOPTING, "fail", ADOPTFAIL),
    (ADOPTFAIL, "adopt", ADOPTING),
    (ADOPTFAIL, "manage", MANAGEABLE),
    (RESCUING, "wait", RESCUEWAIT),
    (RESCUING, "done", RESCUE),
    (RESCUING, "fail", RESCUEFAIL),
    (RESCUEWAIT, "resume", RESCUING),
    (RESCUEWAIT, "fail", RESCUEFAIL),
    (RESCUEWAIT, "abort", RESCUEFAIL),
    (RESCUEWAIT, "delete", DELETING),
    (RESCUE, "rescue", RESCUING),
    (RESCUE, "unrescue", UNRESCUING),
    (RESCUE, "delete", DELETING),
    (RESCUEFAIL, "rescue", RESCUING),
    (RESCUEFAIL, "unrescue", UNRESCUING),
    (RESCUEFAIL, "delete", DELETING),
    (UNRESCUING, "done", ACTIVE),
    (UNRESCUING, "fail", UNRESCUEFAIL),
    (UNRESCUEFAIL, "rescue", RESCUING),
    (UNRESCUEFAIL, "unrescue", UNRESCUING),
    (UNRESCUEFAIL, "delete", DELETING),
    (SERVICING, "wait", SERVICEWAIT),
    (SERVICING, "hold", SERVICEHOLD),
    (SERVICING, "done", ACTIVE),
    (SERVICING, "fail", SERVICEFAIL),
    (SERVICEWAIT, "resume", SERVICING),
    (SERVICEWAIT, "hold", SERVICEHOLD),
    (SERVICEWAIT, "fail", SERVICEFAIL),
    (SERVICEWAIT, "abort", SERVICEFAIL),
    (SERVICEWAIT, "delete", DELETING),
    (SERVICEHOLD, "service", SERVICING),
    (SERVICEHOLD, "unhold", SERVICEWAIT),
    (SERVICEHOLD, "fail", SERVICEFAIL),
    (SERVICEHOLD, "abort", SERVICEFAIL),
    (SERVICEFAIL, "service", SERVICING),
    (SERVICEFAIL, "rescue", RESCUING),
    (SERVICEFAIL, "wait", SERVICEWAIT),
    (SERVICEFAIL, "hold", SERVICEHOLD),
    (SERVICEFAIL, "delete", DELETING),
    (SERVICEFAIL, "abort", ACTIVE),
];

/// The state `event` leads to from `from`, if legal.
pub fn next(from: &str, event: &str) -> Option<&'static str> {
    TRANSITIONS
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|(_, _, to)| *to)
}

/// Stable states: no target is kept once reached without a callback.
pub const STABLE: &[&str] = &[ENROLL, MANAGEABLE, AVAILABLE, ACTIVE, ERROR, RESCUE];

/// The target a state implies (Ironic's default target of each state).
pub fn default_target(state: &str) -> Option<&'static str> {
    Some(match state {
        VERIFYING => MANAGEABLE,
        DEPLOYING | DEPLOYWAIT | DEPLOYFAIL | DEPLOYHOLD | ADOPTING | ADOPTFAIL | UNRESCUING | UNRESCUEFAIL => ACTIVE,
        SERVICING | SERVICEWAIT | SERVICEFAIL | SERVICEHOLD => ACTIVE,
        DELETING | CLEANING | CLEANWAIT | CLEANFAIL | CLEANHOLD => AVAILABLE,
        INSPECTING | INSPECTWAIT | INSPECTFAIL => MANAGEABLE,
        RESCUING | RESCUEWAIT | RESCUEFAIL => RESCUE,
        _ => return None,
    })
}

/// States a node may be deleted in.
pub const DELETE_ALLOWED: &[&str] = &[MANAGEABLE, ENROLL, ADOPTFAIL];

/// Transitional states in which a node may still be changed (Ironic's
/// `UPDATE_ALLOWED_STATES`), e.g. to give up its allocation.
pub const UPDATE_ALLOWED: &[&str] = &[
    DEPLOYFAIL,
    INSPECTING,
    INSPECTFAIL,
    INSPECTWAIT,
    CLEANFAIL,
    ERROR,
    VERIFYING,
    ADOPTFAIL,
    RESCUEFAIL,
    UNRESCUEFAIL,
    SERVICEHOLD,
    SERVICEFAIL,
];

/// States in which a port's connectivity (pxe_enabled, local_link_connection, physical_network,
/// portgroup) may change without maintenance mode (Ironic conductor `update_port`).
pub const PORT_CONNECTIVITY_UPDATE_ALLOWED: &[&str] = &[ENROLL, INSPECTING, INSPECTWAIT, MANAGEABLE];

/// States in which a node may be made protected (Ironic conductor `_check_update_protected`).
pub const PROTECT_ALLOWED: &[&str] = &[ACTIVE, RESCUE];

/// Working states a conductor can leave a node in when it stops (a crash, a SIGKILL). Upstream
/// fails every one at start; Rivet resumes them (engine `resume`), failing a node only when its
/// running step is not safe to repeat.
pub const WORKING_STATES: &[&str] = &[
    DEPLOYING, CLEANING, VERIFYING, INSPECTING, ADOPTING, RESCUING, UNRESCUING, DELETING, SERVICING,
];

/// The verb whose flow a node in working `state` (with `target`, its target state) resumes.
pub fn resume_target(state: &str, target: Option<&str>) -> Option<&'static str> {
    Some(match state {
        DEPLOYING => "active",
        CLEANING if target == Some(MANAGEABLE) => "clean",
        CLEANING => "provide",
        SERVICING => "service",
        VERIFYING => "manage",
        INSPECTING => "inspect",
        ADOPTING => "adopt",
        RESCUING => "rescue",
        UNRESCUING => "unrescue",
        DELETING => "deleted",
        _ => return None,
    })
}

/// The step flow a provision state belongs to: its working, wait and hold states.
pub fn flow_of(state: &str) -> Option<rivet_common::steps::StepType> {
    use rivet_common::steps::StepType;
    match state {
        CLEANING | CLEANWAIT | CLEANHOLD => Some(StepType::Clean),
        DEPLOYING | DEPLOYWAIT | DEPLOYHOLD => Some(StepType::Deploy),
        SERVICING | SERVICEWAIT | SERVICEHOLD => Some(StepType::Service),
        _ => None,
    }
}

/// The state in which `flow` waits for its agent.
pub fn wait_state(flow: rivet_common::steps::StepType) -> &'static str {
    use rivet_common::steps::StepType;
    match flow {
        StepType::Clean => CLEANWAIT,
        StepType::Deploy => DEPLOYWAIT,
        StepType::Service => SERVICEWAIT,
    }
}

/// States in which an agent's lookup is answered (Ironic `LOOKUP_ALLOWED_STATES`).
pub const LOOKUP_ALLOWED: &[&str] = &[
    DEPLOYING,
    DEPLOYWAIT,
    CLEANING,
    CLEANWAIT,
    INSPECTING,
    INSPECTWAIT,
    RESCUING,
    RESCUEWAIT,
    SERVICEWAIT,
];

/// States in which a lookup is also answered when fast track is on.
pub const LOOKUP_FAST_TRACK: &[&str] = &[ENROLL, MANAGEABLE, AVAILABLE, SERVICING, SERVICEHOLD];

/// States in which heartbeats are processed (Ironic `HEARTBEAT_ALLOWED`).
pub const HEARTBEAT_ALLOWED: &[&str] = &[
    DEPLOYWAIT,
    CLEANWAIT,
    RESCUEWAIT,
    DEPLOYING,
    CLEANING,
    RESCUING,
    DEPLOYHOLD,
    CLEANHOLD,
    SERVICING,
    SERVICEWAIT,
    SERVICEHOLD,
];

/// States in which heartbeats are also processed when fast track is on: the agent stays up
/// between flows.
pub const HEARTBEAT_FAST_TRACK: &[&str] = &[MANAGEABLE, AVAILABLE, ENROLL];

/// States in which a node boots the ramdisk, so an agent's inspection data is expected.
pub const INSPECTION_ACCEPTED: &[&str] = &[INSPECTWAIT, INSPECTING, CLEANWAIT, DEPLOYWAIT, SERVICEWAIT];

/// States in which a node's deploy settings (`instance_info`) are checked by `validate`.
pub const DEPLOY_VALIDATED: &[&str] = &[AVAILABLE, DEPLOYING, DEPLOYWAIT, ACTIVE];

/// Move `node` along `event`, setting its target as Ironic does: stable states keep none, an
/// explicit `target` wins, waiting, resuming, failing, holding and aborting keep the current
/// one, anything else takes the new state's default ([`default_target`]).
///
/// # Errors
/// [`IllegalTransition`] when the table has no such transition.
pub fn fire(node: &mut crate::model::NodeRecord, event: &str, target: Option<&str>) -> Result<(), IllegalTransition> {
    let from = node.provision_state.clone();
    let to = next(&from, event).ok_or_else(|| IllegalTransition {
        from: from.clone(),
        event: event.to_owned(),
    })?;
    let seconds_in_from = node
        .provision_updated_at
        .as_deref()
        .and_then(crate::time::parse)
        .map(|since| (time::OffsetDateTime::now_utc() - since).whole_seconds().max(0));
    node.transitions.push(crate::model::Transition {
        from: from.clone(),
        to: to.to_owned(),
        event: event.to_owned(),
        seconds_in_from,
    });
    node.provision_state = to.to_owned();
    node.target_provision_state = if STABLE.contains(&to) {
        None
    } else if let Some(t) = target {
        Some(t.to_owned())
    } else if ["wait", "resume", "fail", "hold", "unhold", "abort"].contains(&event)
        && node.target_provision_state.is_some()
    {
        node.target_provision_state.clone()
    } else {
        default_target(to).map(str::to_owned)
    };
    node.provision_updated_at = Some(crate::time::now_iso());
    Ok(())
}

/// An event the state table does not allow from a node's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no transition from {from} on {event}")]
pub struct IllegalTransition {
    /// The node's state.
    pub from: String,
    /// The event.
    pub event: String,
}

/// An operator verb of `PUT /v1/nodes/{node}/states/provision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verb {
    /// The `target` the API accepts.
    pub target: &'static str,
    /// The state machine event it fires.
    pub event: &'static str,
    /// Lowest microversion (minor) that accepts it.
    pub min_minor: u32,
}

/// Every verb (reference §5.3).
pub const VERBS: &[Verb] = &[
    Verb {
        target: "active",
        event: "deploy",
        min_minor: 1,
    },
    Verb {
        target: "deploy",
        event: "deploy",
        min_minor: 73,
    },
    Verb {
        target: "rebuild",
        event: "rebuild",
        min_minor: 1,
    },
    Verb {
        target: "deleted",
        event: "delete",
        min_minor: 1,
    },
    Verb {
        target: "undeploy",
        event: "delete",
        min_minor: 1,
    },
    Verb {
        target: "manage",
        event: "manage",
        min_minor: 4,
    },
    Verb {
        target: "provide",
        event: "provide",
        min_minor: 4,
    },
    Verb {
        target: "inspect",
        event: "inspect",
        min_minor: 6,
    },
    Verb {
        target: "abort",
        event: "abort",
        min_minor: 13,
    },
    Verb {
        target: "clean",
        event: "clean",
        min_minor: 15,
    },
    Verb {
        target: "adopt",
        event: "adopt",
        min_minor: 17,
    },
    Verb {
        target: "rescue",
        event: "rescue",
        min_minor: 38,
    },
    Verb {
        target: "unrescue",
        event: "unrescue",
        min_minor: 38,
    },
    Verb {
        target: "unhold",
        event: "unhold",
        min_minor: 85,
    },
    Verb {
        target: "service",
        event: "service",
        min_minor: 87,
    },
];

/// Look a verb up.
pub fn verb(target: &str) -> Option<&'static Verb> {
    VERBS.iter().find(|v| v.target == target)
}

/// The table as Markdown (docs/states.md is generated from it; a test checks it is current).
pub fn markdown_table() -> String {
    let mut out = String::from("| from | event | to |\n|---|---|---|\n");
    for (from, event, to) in TRANSITIONS {
        out.push_str(&format!("| {from} | {event} | {to} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicate_or_dangling_entries() {
        let mut seen = std::collections::BTreeSet::new();
        let all: std::collections::BTreeSet<&str> = TRANSITIONS.iter().flat_map(|(f, _, t)| [*f, *t]).collect();
        for (from, event, to) in TRANSITIONS {
            assert!(seen.insert((from, event)), "{from} --{event}--> defined twice");
            // Every state reached can be left again (or is stable).
            assert!(
                TRANSITIONS.iter().any(|(f, _, _)| f == to) || STABLE.contains(to),
                "{to} is a dead end"
            );
        }
        assert_eq!(all.len(), 30, "every state of the reference appears");
    }

    #[test]
    fn the_main_paths_of_the_reference() {
        let paths: &[&[(&str, &str)]] = &[
            &[("enroll", "manage"), ("verifying", "done")],
            &[
                ("manageable", "provide"),
                ("cleaning", "wait"),
                ("clean wait", "resume"),
                ("cleaning", "done"),
            ],
            &[
                ("available", "deploy"),
                ("deploying", "wait"),
                ("wait call-back", "resume"),
                ("deploying", "done"),
            ],
            &[("active", "delete"), ("deleting", "clean"), ("cleaning", "done")],
            &[
                ("active", "service"),
                ("servicing", "wait"),
                ("service wait", "resume"),
                ("servicing", "done"),
            ],
            &[
                ("active", "rescue"),
                ("rescuing", "done"),
                ("rescue", "unrescue"),
                ("unrescuing", "done"),
            ],
        ];
        for path in paths {
            let mut current = path[0].0;
            for (from, event) in *path {
                assert_eq!(current, *from);
                current = next(from, event).unwrap_or_else(|| panic!("{from} --{event}--> missing"));
            }
        }
        assert_eq!(next("enroll", "deploy"), None);
        assert_eq!(next("active", "provide"), None);
        assert_eq!(next("clean failed", "manage"), Some("manageable"));
        assert_eq!(next("service failed", "abort"), Some("active"));
    }

    #[test]
    fn docs_states_md_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/states.md");
        let doc = std::fs::read_to_string(path).expect("docs/states.md exists");
        assert!(
            doc.contains(&markdown_table()),
            "docs/states.md is out of date: regenerate its table with `cargo run -p rivet-conductor -- --print-states`"
        );
    }

    #[test]
    fn every_verb_fires_a_known_event() {
        for verb in VERBS {
            assert!(TRANSITIONS.iter().any(|(_, e, _)| *e == verb.event), "{}", verb.target);
        }
        assert_eq!(verb("undeploy").map(|v| v.event), Some("delete"));
    }
}
