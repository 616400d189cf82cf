//! The flow record: where a node's step flow stands, saved in the node before every side
//! effect so that any conductor can pick the flow up after a crash.
//!
//! The record lives in Ironic's own fields, so Ironic's tools and operators' habits read it:
//!
//! | field | meaning |
//! |---|---|
//! | `driver_internal_info.<flow>_steps` | the step list |
//! | `driver_internal_info.<flow>_step_index` | the step started last (absent: none yet) |
//! | node `<flow>_step` | that step, shown by the API while it runs |
//! | `driver_internal_info.skip_current_<flow>_step` | `false`: run the step at the index again |
//! | `driver_internal_info.resume_<flow>_step` | a restart found the step running in the agent: the next heartbeat shows whether the agent has it |
//! | `driver_internal_info.<flow>_step_restarts` | how many conductor restarts found this step running |
//! | `provision_updated_at` | since when the node is in its state (callback timeouts count from it) |

use rivet_common::JsonObject;
use rivet_common::steps::{Step, StepType};
use serde_json::{Value, json};

use super::FlowError;
use crate::model::NodeRecord;

/// What runs when the flow goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The step after the one at the index (the usual case).
    Following,
    /// The step at the index again: it never ran, or it is safe to repeat.
    Again,
    /// A restart found the step at the index running in the agent: the next heartbeat's
    /// command list decides between taking its result and sending it again.
    AskAgent,
}

/// A node's step flow, read from and written to the node ([module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    /// Which flow.
    pub flow: StepType,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The step started last, if any.
    pub index: Option<usize>,
    /// What runs next.
    pub next: Next,
    /// Conductor restarts that found the step at `index` running.
    pub restarts: u32,
}

impl FlowRecord {
    /// A new flow over `steps`, none started.
    pub fn new(flow: StepType, steps: Vec<Step>) -> Self {
        FlowRecord {
            flow,
            steps,
            index: None,
            next: Next::Following,
            restarts: 0,
        }
    }

    /// The record saved in `node` for `flow`; an absent list is an empty one.
    ///
    /// # Errors
    /// [`FlowError::Corrupt`] when the saved list does not parse as steps.
    pub fn load(node: &NodeRecord, flow: StepType) -> Result<Self, FlowError> {
        let dii = &node.driver_internal_info;
        let steps = dii
            .get(&format!("{flow}_steps"))
            .filter(|v| !v.is_null())
            .map(|v| serde_json::from_value(v.clone()))
            .transpose()
            .map_err(|e| FlowError::Corrupt {
                what: format!("{flow}_steps"),
                reason: e.to_string(),
            })?
            .unwrap_or_default();
        let next = if dii.get(&format!("resume_{flow}_step")).and_then(Value::as_bool) == Some(true) {
            Next::AskAgent
        } else if dii.get(&format!("skip_current_{flow}_step")).and_then(Value::as_bool) == Some(false) {
            Next::Again
        } else {
            Next::Following
        };
        Ok(FlowRecord {
            flow,
            steps,
            index: dii
                .get(&format!("{flow}_step_index"))
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok()),
            next,
            restarts: dii
                .get(&format!("{flow}_step_restarts"))
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        })
    }

    /// Write the record into `node` (saving the node is the caller's next move).
    pub fn store(&self, node: &mut NodeRecord) {
        let flow = self.flow;
        let dii = &mut node.driver_internal_info;
        dii.insert(
            format!("{flow}_steps"),
            serde_json::to_value(&self.steps).unwrap_or_default(),
        );
        match self.index {
            Some(i) => dii.insert(format!("{flow}_step_index"), json!(i)),
            None => dii.remove(&format!("{flow}_step_index")),
        };
        if self.restarts > 0 {
            dii.insert(format!("{flow}_step_restarts"), json!(self.restarts));
        } else {
            dii.remove(&format!("{flow}_step_restarts"));
        }
        Self::set_next(node, flow, self.next);
    }

    /// Set only what runs next in `node`'s saved record, leaving the list alone (an agent that
    /// was busy, a step sent again).
    pub fn set_next(node: &mut NodeRecord, flow: StepType, next: Next) {
        let dii = &mut node.driver_internal_info;
        dii.remove(&format!("skip_current_{flow}_step"));
        dii.remove(&format!("resume_{flow}_step"));
        match next {
            Next::Following => {}
            Next::Again => drop(dii.insert(format!("skip_current_{flow}_step"), json!(false))),
            Next::AskAgent => drop(dii.insert(format!("resume_{flow}_step"), json!(true))),
        }
    }

    /// The index the flow goes on from.
    pub fn first_to_run(&self) -> usize {
        match (self.index, self.next) {
            (None, _) => 0,
            // A heartbeat that finds the agent finished the step goes on after it; one that
            // finds the agent never got it sets `Again` first.
            (Some(i), Next::Following | Next::AskAgent) => i + 1,
            (Some(i), Next::Again) => i,
        }
    }

    /// The step running in `node`'s `flow`, if any.
    ///
    /// # Errors
    /// [`FlowError::Corrupt`] when the saved step does not parse.
    pub fn current(node: &NodeRecord, flow: StepType) -> Result<Option<Step>, FlowError> {
        let doc = node.current_step(flow);
        if doc.is_empty() {
            return Ok(None);
        }
        serde_json::from_value(Value::Object(doc.clone()))
            .map(Some)
            .map_err(|e| FlowError::Corrupt {
                what: format!("{flow}_step"),
                reason: e.to_string(),
            })
    }

    /// Mark `step` (at `index`) as the running one in `node`.
    pub fn start_step(&mut self, node: &mut NodeRecord, index: usize) {
        let again = self.index == Some(index);
        if !again {
            self.restarts = 0;
        }
        self.index = Some(index);
        self.next = Next::Following;
        let doc: JsonObject = serde_json::to_value(&self.steps[index])
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        *node.current_step_mut(self.flow) = doc;
        // The previous step's progress is not this one's.
        crate::step_progress::step_started(node, again);
        self.store(node);
    }

    /// Forget where every flow of `node` stands (a flow failed or was aborted): indexes, flags,
    /// restart counts and running steps. The lists stay for operators to read.
    pub fn clear_all(node: &mut NodeRecord) {
        for flow in [StepType::Clean, StepType::Deploy, StepType::Service] {
            let dii = &mut node.driver_internal_info;
            for key in [
                format!("{flow}_step_index"),
                format!("skip_current_{flow}_step"),
                format!("resume_{flow}_step"),
                format!("{flow}_step_restarts"),
            ] {
                dii.remove(&key);
            }
            node.current_step_mut(flow).clear();
        }
        crate::step_progress::flow_ended(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str) -> Step {
        serde_json::from_value(json!({"interface": "deploy", "step": name, "priority": 10, "args": {}}))
            .expect("a step")
    }

    #[test]
    fn a_record_survives_the_node_fields_it_is_stored_in() {
        let mut node = NodeRecord::default();
        let mut record = FlowRecord::new(StepType::Clean, vec![step("erase_devices"), step("burn")]);
        record.start_step(&mut node, 1);
        record.restarts = 2;
        record.next = Next::AskAgent;
        record.store(&mut node);
        assert_eq!(FlowRecord::load(&node, StepType::Clean).expect("loads"), record);
        assert_eq!(
            FlowRecord::current(&node, StepType::Clean).expect("parses"),
            Some(step("burn"))
        );
        assert_eq!(node.driver_internal_info["clean_step_index"], json!(1));
        assert_eq!(node.driver_internal_info["resume_clean_step"], json!(true));
    }

    #[test]
    fn the_flow_goes_on_after_the_index_unless_the_step_must_run_again() {
        let mut record = FlowRecord::new(StepType::Deploy, vec![step("a"), step("b")]);
        assert_eq!(record.first_to_run(), 0);
        record.index = Some(0);
        assert_eq!(record.first_to_run(), 1);
        record.next = Next::Again;
        assert_eq!(record.first_to_run(), 0);
        record.next = Next::AskAgent;
        assert_eq!(record.first_to_run(), 1);
    }

    #[test]
    fn starting_another_step_resets_the_restart_count_and_the_same_one_keeps_it() {
        let mut node = NodeRecord::default();
        let mut record = FlowRecord::new(StepType::Service, vec![step("a"), step("b")]);
        record.start_step(&mut node, 0);
        record.restarts = 2;
        record.start_step(&mut node, 0);
        assert_eq!(record.restarts, 2);
        record.start_step(&mut node, 1);
        assert_eq!(record.restarts, 0);
        assert!(!node.driver_internal_info.contains_key("service_step_restarts"));
    }

    #[test]
    fn a_corrupt_list_is_named() {
        let mut node = NodeRecord::default();
        node.driver_internal_info
            .insert("clean_steps".into(), json!("nonsense"));
        let err = FlowRecord::load(&node, StepType::Clean).expect_err("corrupt");
        assert!(err.to_string().starts_with("corrupt clean_steps: "), "{err}");
    }
}
