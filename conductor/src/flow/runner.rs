//! The flow runner: starts a verb's flow, runs the step list from the saved record, finishes
//! or fails the flow. Every entry point (an operator verb, a heartbeat, the callback-timeout
//! check, a conductor start) comes here with the node locked; each step is saved as running
//! before it is executed, so a crash at any point leaves a record to resume from.

use std::collections::BTreeMap;

use rivet_common::steps::{Step, StepType};
use serde_json::{Value, json};

use super::{FlowError, FlowRecord, Next, reserved};
use crate::agent_session;
use crate::drivers::{self, DriverError, StepOutcome, Task};
use crate::engine::Conductor;
use crate::model::NodeRecord;
use crate::states::{self, fire, state};
use crate::steps;

impl Conductor {
    /// Fire `event` on the node and save it.
    pub(crate) async fn event(&self, node: &mut NodeRecord, event: &str) -> Result<(), FlowError> {
        fire(node, event, None)?;
        self.save(node).await?;
        Ok(())
    }

    /// Carry on the flow of a verb whose first event has fired (`target` is the verb's target,
    /// the node is in the verb's working state).
    pub async fn start_flow(&self, task: &mut Task, target: &str) -> Result<(), FlowError> {
        let state = task.node.provision_state.clone();
        let driver_failed = |context| move |source| FlowError::Driver { context, source };
        match (target, state.as_str()) {
            ("manage", state::VERIFYING) => {
                let power = task.driver.power.clone();
                power
                    .validate(&task.node)
                    .await
                    .map_err(driver_failed("Failed to validate power driver interface"))?;
                let now = power
                    .get_power_state(&task.node)
                    .await
                    .map_err(driver_failed("Failed to get power state"))?;
                task.node.power_state = Some(now);
                self.cache_vendor(task).await;
                self.event(&mut task.node, "done").await
            }
            ("manage", _) => Ok(()),
            // Released from a `hold` step, the node is in its flow's wait state: the flow goes
            // on now with the step after the hold (see `reserved`); a step for an agent that is
            // not up waits for its heartbeat as usual.
            ("unhold", s) => match states::flow_of(s) {
                Some(flow) => {
                    self.db
                        .add_history(&task.node.uuid, "INFO", "Released from hold: the flow goes on")
                        .await?;
                    self.continue_steps(task, flow).await
                }
                None => Ok(()),
            },
            ("provide", state::CLEANING) => self.start_cleaning(task, false).await,
            ("clean", state::CLEANING) => self.start_cleaning(task, true).await,
            ("inspect", state::INSPECTING) => self.start_inspection(task).await,
            ("active" | "deploy" | "rebuild", state::DEPLOYING) => self.start_deploy(task).await,
            ("deleted" | "undeploy", state::DELETING) => {
                let deploy = task.driver.deploy.clone();
                deploy
                    .tear_down(task)
                    .await
                    .map_err(driver_failed("Failed to tear down"))?;
                agent_session::wipe(&mut task.node);
                task.node.instance_info.clear();
                // The allocation goes with the instance, as in Ironic.
                let released = Conductor::release_allocation(&mut task.node);
                task.node.attrs.insert("instance_uuid".into(), Value::Null);
                task.node.attrs.insert("instance_name".into(), Value::Null);
                self.event(&mut task.node, "clean").await?;
                if let Some(allocation) = released {
                    self.db.delete_resource(&allocation).await?;
                }
                self.start_cleaning(task, false).await
            }
            ("adopt", state::ADOPTING) => self.adopt(task).await,
            ("rescue", state::RESCUING) => self.start_rescue(task).await,
            ("unrescue", state::UNRESCUING) => self.unrescue(task).await,
            ("service", state::SERVICING) => {
                let deploy = task.driver.deploy.clone();
                let prepared = deploy
                    .prepare_service(task)
                    .await
                    .map_err(driver_failed("Failed to prepare servicing"))?;
                self.continue_prepared(task, prepared, StepType::Service).await
            }
            (t, s) => Err(FlowError::Internal(format!("no flow for target {t} in state {s}"))),
        }
    }

    /// Adoption (Ironic's `_do_adoption`): take over a machine that already runs its OS. The
    /// boot interface is told the instance boots from its disk (`prepare_instance`); nothing is
    /// written, the power state is left as it is, and the node is `active`. A failure ends in
    /// `adopt failed` with Ironic's words and the power state forgotten.
    async fn adopt(&self, task: &mut Task) -> Result<(), FlowError> {
        let boot = task.driver.boot.clone();
        if let Err(e) = boot.prepare_instance(task).await {
            let message = format!("Error while attempting to adopt node {}: {e}.", task.node.uuid);
            tracing::error!(node = %task.node.uuid, %message, "adoption failed");
            task.node.power_state = None;
            task.node.last_error = Some(message.clone());
            fire(&mut task.node, "fail", None)?;
            self.save(&mut task.node).await?;
            self.db.add_history(&task.node.uuid, "ERROR", &message).await?;
            return Ok(());
        }
        tracing::info!(node = %task.node.uuid, "adopted");
        self.db
            .add_history(
                &task.node.uuid,
                "INFO",
                "Adopted: the node is active without a deployment",
            )
            .await?;
        self.event(&mut task.node, "done").await
    }

    /// Ironic's `node_cache_vendor`: the BMC's vendor into `properties.vendor` once; a failure
    /// is only logged.
    async fn cache_vendor(&self, task: &mut Task) {
        if task
            .node
            .properties
            .get("vendor")
            .is_some_and(|v| !v.is_null() && v != "")
        {
            return;
        }
        let management = task.driver.management.clone();
        match management.detect_vendor(&task.node).await {
            Ok(Some(vendor)) => {
                tracing::info!(node = %task.node.uuid, %vendor, "detected the vendor");
                task.node.properties.insert("vendor".into(), json!(vendor));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(node = %task.node.uuid, error = %e, "could not detect the vendor"),
        }
    }

    /// Cleaning starts: boot the agent if the deploy interface needs one, else run now.
    async fn start_cleaning(&self, task: &mut Task, manual: bool) -> Result<(), FlowError> {
        let enabled = manual
            || task
                .node
                .attr("automated_clean")
                .as_bool()
                .unwrap_or(self.config.automated_clean);
        if !enabled {
            // As Ironic's skipped automated cleaning: no step list is recorded.
            return self.finish_flow(task, StepType::Clean, &[]).await;
        }
        if !manual {
            let dii = &mut task.node.driver_internal_info;
            dii.remove(crate::step_lists::CLEANING_RUNBOOK);
            dii.remove("user_clean_steps");
            match self.cleaning_runbook(&task.node).await {
                Ok(Some((uuid, steps))) => {
                    tracing::info!(node = %task.node.uuid, runbook = %uuid, "automated cleaning runs a runbook");
                    let dii = &mut task.node.driver_internal_info;
                    dii.insert(crate::step_lists::CLEANING_RUNBOOK.into(), Value::String(uuid));
                    dii.insert("user_clean_steps".into(), Value::Array(steps));
                }
                Ok(None) => {}
                Err(e) => return Err(FlowError::Failed(e.to_string())),
            }
        }
        let deploy = task.driver.deploy.clone();
        let prepared = deploy
            .prepare_cleaning(task)
            .await
            .map_err(|source| FlowError::Driver {
                context: "Failed to prepare to clean",
                source,
            })?;
        self.continue_prepared(task, prepared, StepType::Clean).await
    }

    /// After the deploy interface prepared a step flow: wait for the agent it booted, or run
    /// the steps now.
    async fn continue_prepared(&self, task: &mut Task, prepared: StepOutcome, flow: StepType) -> Result<(), FlowError> {
        match prepared {
            StepOutcome::Wait | StepOutcome::NotStarted => self.event(&mut task.node, "wait").await,
            StepOutcome::Done => {
                self.build_step_list(task, flow)?;
                self.run_steps(task, flow).await
            }
        }
    }

    /// Compute and record `flow`'s step list: the user's list for manual cleaning and
    /// servicing, the enabled steps for automated cleaning, the driver's steps merged with the
    /// user's for deployment (reference §4.3–4.5). Nothing has run yet.
    pub(super) fn build_step_list(&self, task: &mut Task, flow: StepType) -> Result<(), FlowError> {
        let overrides = if flow == StepType::Clean {
            self.config.clean_step_priority_override.clone()
        } else {
            BTreeMap::new()
        };
        let cached = task.driver.deploy.cached_steps(&task.node, flow);
        let known = steps::collect(&task.driver, flow, &cached, &overrides);
        let user = task
            .node
            .driver_internal_info
            .get(&format!("user_{flow}_steps"))
            .and_then(Value::as_array)
            .cloned();
        let list = match (flow, user) {
            (StepType::Deploy, user) => {
                // Before the agent has told its deploy steps, the user's and the templates'
                // in-band steps cannot be checked yet: they join when the list is built again
                // with the agent's steps (`rebuild_deploy_steps`).
                let agent_known = task.node.driver_internal_info.contains_key("agent_cached_deploy_steps");
                let usable = |list: Vec<Value>| -> Vec<Value> {
                    list.into_iter()
                        .filter(|raw| {
                            agent_known
                                || steps::RESERVED.contains(&raw["step"].as_str().unwrap_or_default())
                                || known.iter().any(|k| {
                                    Some(k.interface.as_str()) == raw["interface"].as_str()
                                        && Some(k.step.as_str()) == raw["step"].as_str()
                                })
                        })
                        .collect()
                };
                let user = steps::validate_user_steps(&usable(user.unwrap_or_default()), &known, flow)
                    .map_err(FlowError::InvalidSteps)?;
                // The instance's deploy templates override the driver's steps, and the
                // user's override both (Ironic's order of precedence).
                let templates = task
                    .node
                    .driver_internal_info
                    .get(crate::step_lists::TEMPLATE_STEPS)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let templates = steps::validate_user_steps(&usable(templates), &known, flow)
                    .map_err(|e| FlowError::InvalidSteps(format!("deploy template: {e}")))?;
                let overridden = |k: &Step| user.iter().chain(&templates).any(|o| o.same_step(k));
                let mut list: Vec<Step> = known
                    .into_iter()
                    .filter(|k| k.priority() > 0 && !overridden(k))
                    .collect();
                list.extend(
                    templates
                        .into_iter()
                        .filter(|t| t.priority() > 0 && !user.iter().any(|u| u.same_step(t))),
                );
                list.extend(user.into_iter().filter(|u| u.priority() > 0));
                steps::order(list, flow)
            }
            (_, Some(user))
                if task.node.target_provision_state.as_deref() != Some(state::AVAILABLE)
                    || flow == StepType::Service
                    || task
                        .node
                        .driver_internal_info
                        .contains_key(crate::step_lists::CLEANING_RUNBOOK) =>
            {
                steps::validate_user_steps(&user, &known, flow).map_err(FlowError::InvalidSteps)?
            }
            _ => steps::automated(known, flow),
        };
        FlowRecord::new(flow, list).store(&mut task.node);
        Ok(())
    }

    /// Build the deployment's list again once the agent's deploy steps are known (it booted
    /// inside `deploy.deploy`), as Ironic does: the in-band steps that deploy templates and the
    /// user named join it. The steps that ran keep their places and the running one stays
    /// current; of the new list, the steps ordered after the running one follow it.
    pub(super) fn rebuild_deploy_steps(&self, task: &mut Task) -> Result<(), FlowError> {
        let before = FlowRecord::load(&task.node, StepType::Deploy)?;
        let Some(index) = before.index.filter(|i| *i < before.steps.len()) else {
            return self.build_step_list(task, StepType::Deploy);
        };
        let current = before.steps[index].clone();
        self.build_step_list(task, StepType::Deploy)?;
        let rebuilt = FlowRecord::load(&task.node, StepType::Deploy)?;
        let ran = &before.steps[..=index];
        let after: Vec<Step> = match rebuilt.steps.iter().position(|s| s.same_step(&current)) {
            Some(at) => rebuilt.steps[at + 1..].to_vec(),
            None => rebuilt.steps.clone(),
        };
        let mut steps = ran.to_vec();
        steps.extend(after.into_iter().filter(|s| !ran.iter().any(|r| r.same_step(s))));
        let record = FlowRecord { steps, ..before };
        record.store(&mut task.node);
        Ok(())
    }

    async fn start_deploy(&self, task: &mut Task) -> Result<(), FlowError> {
        self.build_step_list(task, StepType::Deploy)?;
        let list = task
            .node
            .driver_internal_info
            .get("deploy_steps")
            .cloned()
            .unwrap_or_default();
        self.db
            .add_history(
                &task.node.uuid,
                "INFO",
                &format!("Starting deployment with steps={list}"),
            )
            .await?;
        self.run_steps(task, StepType::Deploy).await
    }

    /// Run `flow`'s steps from where its record says. Each step is saved as running before it
    /// runs; a step that waits leaves the node in the flow's wait state, and a heartbeat (or a
    /// restart) brings it back here.
    pub(super) async fn run_steps(&self, task: &mut Task, flow: StepType) -> Result<(), FlowError> {
        let mut record = FlowRecord::load(&task.node, flow)?;
        let mut index = record.first_to_run();
        while index < record.steps.len() {
            let again = record.index == Some(index);
            // A step ends when the flow moves past it, whichever way it ended well: at once,
            // on its agent's report, or once the ramdisk it waited for came up.
            if let Some(previous) = record.index.filter(|p| *p != index).and_then(|p| record.steps.get(p)) {
                self.step_finished(task, previous).await?;
            }
            record.start_step(&mut task.node, index);
            self.save(&mut task.node).await?;
            let step = record.steps[index].clone();
            let name = format!("{}.{}", step.interface, step.step);
            tracing::info!(node = %task.node.uuid, %flow, step = %name, index, "running step");
            if !again {
                let event = format!(
                    "Step {name} started ({flow} step {} of {})",
                    index + 1,
                    record.steps.len()
                );
                self.db.add_history(&task.node.uuid, "INFO", &event).await?;
            }
            crate::metrics::metrics().step_started(&task.node.uuid, &flow.to_string(), index, &name);
            let control = reserved::FlowControl::of(&step).map_err(|e| FlowError::Step {
                flow,
                step: name.clone(),
                node: task.node.uuid.clone(),
                source: DriverError::Invalid(e),
            })?;
            if let Some(control) = control {
                if !self.run_flow_control(task, flow, &name, control).await? {
                    return Ok(());
                }
                index += 1;
                continue;
            }
            let outcome = self.execute_step(task, &step).await.map_err(|source| FlowError::Step {
                flow,
                step: name,
                node: task.node.uuid.clone(),
                source,
            })?;
            match outcome {
                StepOutcome::Done => {}
                StepOutcome::Wait => return self.event(&mut task.node, "wait").await,
                StepOutcome::NotStarted => {
                    FlowRecord::set_next(&mut task.node, flow, Next::Again);
                    return self.event(&mut task.node, "wait").await;
                }
            }
            if flow == StepType::Deploy && step.interface == "deploy" && step.step == "deploy" {
                // A fast-tracked agent told its steps inside deploy.deploy.
                self.rebuild_deploy_steps(task)?;
                record = FlowRecord::load(&task.node, flow)?;
            }
            crate::crash_point::reached(crate::crash_point::BETWEEN_STEPS);
            index += 1;
        }
        if let Some(last) = record.index.and_then(|i| record.steps.get(i)) {
            self.step_finished(task, last).await?;
        }
        let steps = record.steps;
        self.finish_flow(task, flow, &steps).await
    }

    /// The running `step` ended well: a history event with its time (from its start to now).
    pub(super) async fn step_finished(&self, task: &Task, step: &Step) -> Result<(), FlowError> {
        let took = crate::step_progress::step_seconds(&task.node)
            .map(|s| format!(" in {s} s"))
            .unwrap_or_default();
        let event = format!("Step {}.{} finished{took}", step.interface, step.step);
        self.db.add_history(&task.node.uuid, "INFO", &event).await?;
        Ok(())
    }

    /// Run one step: power steps through the power interface, everything else by the
    /// interface that declared it (the deploy interface sends in-band steps to the agent).
    async fn execute_step(&self, task: &mut Task, step: &Step) -> Result<StepOutcome, DriverError> {
        if let Some(target) = drivers::power::step_target(step) {
            drivers::power_action(task, target).await?;
            return Ok(StepOutcome::Done);
        }
        let iface = task
            .driver
            .interface(&step.interface)
            .cloned()
            .ok_or_else(|| DriverError::Invalid(format!("unknown interface {}", step.interface)))?;
        iface.execute_step(task, step).await
    }

    /// Every step ran: tear down what the flow set up and fire its last event.
    async fn finish_flow(&self, task: &mut Task, flow: StepType, list: &[Step]) -> Result<(), FlowError> {
        let manual = task.node.target_provision_state.as_deref() == Some(state::MANAGEABLE);
        task.node.current_step_mut(flow).clear();
        crate::step_progress::flow_ended(&mut task.node);
        FlowRecord::set_next(&mut task.node, flow, Next::Following);
        let dii = &mut task.node.driver_internal_info;
        for key in [
            format!("{flow}_reboot"),
            format!("user_{flow}_steps"),
            crate::step_lists::TEMPLATE_STEPS.to_owned(),
            crate::step_lists::CLEANING_RUNBOOK.to_owned(),
            format!("{flow}_step_restarts"),
            "deployment_reboot".to_owned(),
            "cleaning_reboot".to_owned(),
        ] {
            dii.remove(&key);
        }
        if flow != StepType::Deploy {
            // Deploy keeps its list and final index, in the shape operators know from the
            // deploy-steps documentation; cleaning and servicing drop theirs as upstream.
            dii.remove(&format!("{flow}_step_index"));
            if dii.contains_key(&format!("{flow}_steps")) {
                dii.insert(format!("{flow}_steps"), Value::Null);
            }
        }
        let deploy = task.driver.deploy.clone();
        match flow {
            StepType::Clean => deploy
                .tear_down_cleaning(task)
                .await
                .map_err(|source| FlowError::Driver {
                    context: "Failed to tear down cleaning",
                    source,
                })?,
            StepType::Service => deploy
                .tear_down_service(task)
                .await
                .map_err(|source| FlowError::Driver {
                    context: "Failed to tear down servicing",
                    source,
                })?,
            StepType::Deploy => {
                if !agent_session::is_alive(&task.node, &task.settings) {
                    agent_session::end_keeping_deploy_steps(&mut task.node);
                }
            }
        }
        let names: Vec<String> = list.iter().map(|s| format!("{}.{}", s.interface, s.step)).collect();
        let (what, event) = match flow {
            StepType::Clean if manual => ("Manual Cleaning", "manage"),
            StepType::Clean => ("Automated Cleaning", "done"),
            StepType::Deploy => ("Deployment", "done"),
            StepType::Service => ("Servicing", "done"),
        };
        self.db
            .add_history(
                &task.node.uuid,
                "INFO",
                &format!("{what} completed successfully with steps={names:?}"),
            )
            .await?;
        tracing::info!(node = %task.node.uuid, flow = what, "completed");
        crate::metrics::metrics().flow_ended(&task.node.uuid, "done");
        self.event(&mut task.node, event).await
    }

    /// Fail the node's flow, as upstream's error handlers do: record `message`, put a node
    /// whose clean or service step failed in maintenance with a fault, forget where the flow
    /// stood, fire `fail`, and power the ramdisk off.
    pub async fn fail_flow(&self, task: &mut Task, message: &str) {
        // A conductor whose lock was taken over (it was paused or cut off past the dead
        // timeout) must not power the node off or record a failure over its successor's work.
        if let Ok(token) = self.db.lock_token(&task.node.uuid).await
            && token != Some(task.node.lock_token)
        {
            tracing::warn!(node = %task.node.uuid, %message, "the node changed hands: not failing it");
            return;
        }
        crate::metrics::metrics().flow_ended(&task.node.uuid, "failed");
        let node = &mut task.node;
        node.last_error = Some(message.to_owned());
        let running_step = match states::flow_of(&node.provision_state) {
            Some(flow @ (StepType::Clean | StepType::Service)) => !node.current_step(flow).is_empty(),
            _ => false,
        };
        if running_step {
            node.maintenance = true;
            node.maintenance_reason = Some(message.to_owned());
            node.fault = Some(
                if node.provision_state.starts_with("clean") {
                    "clean failure"
                } else {
                    "service failure"
                }
                .to_owned(),
            );
        }
        FlowRecord::clear_all(node);
        if states::next(&node.provision_state, "fail").is_some() {
            let _ = fire(node, "fail", None);
        }
        // The ramdisk is of no more use: power off.
        let ramdisk_left = (task.driver.deploy.uses_agent()
            && [state::CLEANFAIL, state::DEPLOYFAIL, state::SERVICEFAIL].contains(&task.node.provision_state.as_str()))
            || crate::rescue::powers_off_on_failure(task);
        if ramdisk_left && let Err(e) = drivers::power_action(task, "power off").await {
            tracing::warn!(node = %task.node.uuid, error = %e, "could not power off after the failure");
        }
        if let Err(e) = self.save(&mut task.node).await {
            tracing::error!(node = %task.node.uuid, error = %e, "could not save the failed node");
        }
        if let Err(e) = self.db.add_history(&task.node.uuid, "ERROR", message).await {
            tracing::error!(node = %task.node.uuid, error = %e, "could not record the failure in the history");
        }
    }

    /// `abort` of a waiting flow (reference §4.8): it fails at once unless the running step is
    /// not abortable, in which case it is marked to stop after that step.
    pub(crate) async fn abort_flow(&self, task: &mut Task) -> Result<(), FlowError> {
        if task.node.provision_state == state::INSPECTWAIT {
            return self.abort_inspection(task).await;
        }
        if task.node.provision_state == state::RESCUEWAIT {
            return self.abort_rescue(task).await;
        }
        if task.node.provision_state == state::SERVICEFAIL {
            return self.abort_service(task, &rivet_common::JsonObject::new()).await;
        }
        let flow = states::flow_of(&task.node.provision_state);
        let step = flow.map(|f| task.node.current_step(f).clone()).unwrap_or_default();
        let flow_control = step
            .get("step")
            .and_then(Value::as_str)
            .is_some_and(reserved::FlowControl::is_flow_control);
        if let Some(flow) = flow
            && !step.is_empty()
            && step.get("abortable").and_then(Value::as_bool) != Some(true)
            && !flow_control
        {
            task.node
                .current_step_mut(flow)
                .insert("abort_after".into(), json!(true));
            self.save(&mut task.node).await?;
            return Ok(());
        }
        if flow == Some(StepType::Service) {
            return self.abort_service(task, &step).await;
        }
        let message = format!(
            "By request, the {} operation was aborted during or after the completion of step \"{}\"",
            flow.map(StepType::as_str).unwrap_or("provision"),
            step.get("step").and_then(Value::as_str).unwrap_or("-")
        );
        fire(&mut task.node, "abort", None)?;
        task.node.last_error = Some(message.clone());
        for flow in [StepType::Clean, StepType::Deploy, StepType::Service] {
            task.node.current_step_mut(flow).clear();
        }
        crate::step_progress::flow_ended(&mut task.node);
        if task.driver.deploy.uses_agent() {
            drivers::power_action(task, "power off")
                .await
                .map_err(|source| FlowError::Driver {
                    context: "Failed to power off after the abort",
                    source,
                })?;
            // The ramdisk's boot files (script, ISO, virtual CD) go too; the abort stands
            // even if that fails.
            let boot = task.driver.boot.clone();
            if let Err(e) = boot.clean_up_ramdisk(task).await {
                tracing::warn!(node = %task.node.uuid, "after the abort, cleaning up the ramdisk boot failed: {e}");
            }
        }
        self.save(&mut task.node).await?;
        self.db.add_history(&task.node.uuid, "ERROR", &message).await?;
        Ok(())
    }

    /// `abort` of a servicing, at once or after it failed (Ironic's `do_node_service_abort`):
    /// through `service failed` back to `active`, the ramdisk powered off and the instance booted
    /// from its disk again by the deploy interface's service tear-down. The instance was running
    /// before the servicing and runs after it. A tear-down that fails leaves the node `active`
    /// with the reason in `last_error`, as Ironic's does.
    pub(super) async fn abort_service(
        &self,
        task: &mut Task,
        step: &rivet_common::JsonObject,
    ) -> Result<(), FlowError> {
        let mut message = "By request, the service operation was aborted".to_owned();
        if let (Some(interface), Some(name)) = (
            step.get("interface").and_then(Value::as_str),
            step.get("step").and_then(Value::as_str),
        ) {
            message.push_str(&format!(
                " during or after the completion of step \"{interface}.{name}\""
            ));
        }
        if task.node.provision_state != state::SERVICEFAIL {
            fire(&mut task.node, "fail", None)?;
        }
        fire(&mut task.node, "abort", None)?;
        FlowRecord::clear_all(&mut task.node);
        let deploy = task.driver.deploy.clone();
        if let Err(e) = deploy.tear_down_service(task).await {
            message = format!("Failed to tear down service after aborting the operation: {e}");
            tracing::error!(node = %task.node.uuid, "{message}");
        }
        task.node.last_error = Some(message.clone());
        self.save(&mut task.node).await?;
        self.db.add_history(&task.node.uuid, "ERROR", &message).await?;
        Ok(())
    }
}
