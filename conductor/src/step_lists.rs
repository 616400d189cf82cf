//! Deploy templates and runbooks put to use: the steps of the templates an instance's traits
//! name join its deployment, and a runbook named in a `clean` or `service` request becomes its
//! step list (Ironic's `conductor/steps.py` `_get_all_deployment_steps` and the node API's
//! `_handle_runbook`).

use rivet_common::steps::StepType;
use serde_json::{Value, json};

use crate::engine::{Conductor, EngineError, ProvisionRequest};
use crate::model::{NodeRecord, ResourceKind};

/// Set (to the runbook's UUID) while automated cleaning runs a runbook's steps, which wait in
/// `user_clean_steps` as a manual cleaning's do.
pub const CLEANING_RUNBOOK: &str = "automated_cleaning_runbook";

/// A runbook's steps as a step list: in their `order`, with their arguments.
fn runbook_steps(runbook: &crate::model::StoredResource) -> Vec<Value> {
    let mut steps: Vec<Value> = runbook.get("steps").as_array().cloned().unwrap_or_default();
    steps.sort_by_key(|s| s["order"].as_u64().unwrap_or(u64::MAX));
    steps
        .into_iter()
        .map(|s| json!({"interface": s["interface"], "step": s["step"], "args": s["args"]}))
        .collect()
}

/// Where the steps of an instance's deploy templates are kept for its deployment (resolved when
/// the deployment is requested, so a resumed deployment runs the same steps).
pub const TEMPLATE_STEPS: &str = "template_deploy_steps";

impl Conductor {
    /// The deploy steps of the deploy templates named by `instance_info.traits`, in trait
    /// order; recorded in the node for [`TEMPLATE_STEPS`], or removed when none match.
    pub async fn resolve_deploy_templates(&self, node: &mut NodeRecord) -> Result<(), EngineError> {
        let traits: Vec<String> = node
            .instance_info
            .get("traits")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let mut steps = Vec::new();
        let mut names = Vec::new();
        for name in &traits {
            if let Some(template) = self.db.resource(ResourceKind::DeployTemplate, name).await? {
                names.push(name.clone());
                steps.extend(template.get("steps").as_array().cloned().unwrap_or_default());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for step in &steps {
            let pair = (
                step["interface"].as_str().unwrap_or_default(),
                step["step"].as_str().unwrap_or_default(),
            );
            if !seen.insert(pair) {
                return Err(EngineError::Invalid(format!(
                    "Duplicate deploy steps in the deploy templates {names:?} of node {}: interface: {}, step: {}. A step may appear in one of an instance's templates only.",
                    node.uuid, pair.0, pair.1
                )));
            }
        }
        if steps.is_empty() {
            node.driver_internal_info.remove(TEMPLATE_STEPS);
        } else {
            tracing::info!(node = %node.uuid, templates = ?names, "deploy templates add their steps");
            node.driver_internal_info
                .insert(TEMPLATE_STEPS.into(), Value::Array(steps));
        }
        Ok(())
    }

    /// Turn `req.runbook` into the request's clean or service steps (and `disable_ramdisk`),
    /// with Ironic's checks: the API version has runbooks (1.92, else 400), the runbook exists
    /// (404), the node is approved for it (from 1.112 the node has one of the runbook's
    /// traits, before it a trait named like the runbook; else 400), the target is `clean` or
    /// `service` and names no steps of its own (400). Steps run in their `order`.
    pub async fn apply_runbook(
        &self,
        node: &NodeRecord,
        req: &mut ProvisionRequest,
        minor: u32,
    ) -> Result<(), EngineError> {
        let Some(ident) = req.runbook.clone() else {
            return Ok(());
        };
        if minor < 92 {
            // Ironic's request schema of those versions has no `runbook`.
            return Err(EngineError::Invalid(format!(
                "Additional properties are not allowed ('runbook' was unexpected): runbooks need API 1.92, the request used 1.{minor}"
            )));
        }
        let runbook = self
            .db
            .resource(ResourceKind::Runbook, &ident)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("Runbook {ident} could not be found.")))?;
        let node_traits = crate::api::node_traits(node);
        if minor >= 112 {
            let runbook_traits: Vec<String> = serde_json::from_value(runbook.get("traits")).unwrap_or_default();
            if runbook_traits.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "Runbook {} has no traits configured. Please ask an administrator to add traits to the runbook.",
                    runbook.uuid
                )));
            }
            if !runbook_traits.iter().any(|t| node_traits.contains(t)) {
                let mut sorted = runbook_traits.clone();
                sorted.sort();
                return Err(EngineError::Invalid(format!(
                    "This runbook has not been approved for use on this node {}. The node does not have any of the runbook's traits {sorted:?}. Please ask an administrator to add a matching trait to your node.",
                    node.uuid
                )));
            }
        } else if !runbook
            .get("name")
            .as_str()
            .is_some_and(|n| node_traits.iter().any(|t| t == n))
        {
            return Err(EngineError::Invalid(format!(
                "This runbook has not been approved for use on this node {}. Please ask an administrator to add it to your node traits.",
                node.uuid
            )));
        }
        let steps = runbook_steps(&runbook);
        let flow = match req.target.as_str() {
            "clean" => StepType::Clean,
            "service" => StepType::Service,
            _ => {
                return Err(EngineError::Invalid(
                    "\"runbooks\" is only valid when setting target provision state to any of ['clean', 'service']"
                        .into(),
                ));
            }
        };
        let own = if flow == StepType::Clean {
            &mut req.clean_steps
        } else {
            &mut req.service_steps
        };
        if own.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(EngineError::Invalid(format!(
                "Please provide either \"{flow}_steps\" or a runbook, but not both."
            )));
        }
        *own = Some(steps);
        if runbook.get("disable_ramdisk") == Value::Bool(true) {
            req.disable_ramdisk = Some(true);
        }
        tracing::info!(node = %node.uuid, runbook = %runbook.uuid, %flow, "runbook gives the steps");
        Ok(())
    }

    /// The runbook automated cleaning of `node` runs, by the `automated_cleaning_*` settings
    /// (Ironic's `_get_steps_for_automated_cleaning`): the node's `driver_info.cleaning_runbook`
    /// when `automated_cleaning_runbook_from_node` allows it, else the runbook of its
    /// resource class, else `automated_cleaning_runbook`. `Ok(None)`: the interfaces' steps.
    /// The runbook's UUID and its steps in order.
    ///
    /// # Errors
    ///
    /// The message cleaning fails with, in Ironic's words: the runbook is not found, the node
    /// has none of its traits (with `automated_cleaning_runbook_validate_traits`), or the
    /// source is `runbook` and none is configured.
    pub async fn cleaning_runbook(&self, node: &NodeRecord) -> Result<Option<(String, Vec<Value>)>, EngineError> {
        use crate::config::CleaningStepSource;
        let settings = &self.config.cleaning_runbooks;
        if settings.source == CleaningStepSource::Autogenerated {
            return Ok(None);
        }
        // Ironic answers 500 (a NodeCleaningFailure); 400 as for a manual cleaning's runbook
        // that the node is not approved for, with the words Ironic logs (docs/compatibility.md).
        let failed = |reason: String| EngineError::Invalid(format!("Failed to clean node {}: {reason}", node.uuid));
        let resource_class = node.attr("resource_class").as_str().unwrap_or_default().to_owned();
        let mut ident = settings
            .by_resource_class
            .get(&resource_class)
            .or(settings.default.as_ref())
            .cloned();
        if settings.from_node
            && let Some(own) = node.driver_info.get("cleaning_runbook").and_then(Value::as_str)
        {
            ident = Some(own.to_owned());
        }
        let Some(ident) = ident else {
            if settings.source == CleaningStepSource::Runbook {
                return Err(failed(format!(
                    "Unable to perform cleaning for node {}: configuration requires runbook for automated cleaning and none was configured.",
                    node.uuid
                )));
            }
            return Ok(None);
        };
        let runbook = self
            .db
            .resource(ResourceKind::Runbook, &ident)
            .await?
            .ok_or_else(|| failed(format!("Runbook {ident} could not be found.")))?;
        if settings.validate_traits {
            let name = runbook.get("name").as_str().unwrap_or_default().to_owned();
            let runbook_traits: Vec<String> = serde_json::from_value(runbook.get("traits")).unwrap_or_default();
            let node_traits = crate::api::node_traits(node);
            if runbook_traits.is_empty() {
                return Err(failed(format!(
                    "Automated cleaning runbook {name} is not valid for node {}. Runbook has no traits configured.",
                    node.uuid
                )));
            }
            if !runbook_traits.iter().any(|t| node_traits.contains(t)) {
                let mut sorted = runbook_traits;
                sorted.sort();
                // Ironic prints the Python list.
                let listed: Vec<String> = sorted.iter().map(|t| format!("'{t}'")).collect();
                return Err(failed(format!(
                    "Automated cleaning runbook {name} is not valid for node {}. None of the runbook's traits [{}] match a node trait.",
                    node.uuid,
                    listed.join(", ")
                )));
            }
        }
        Ok(Some((runbook.uuid.clone(), runbook_steps(&runbook))))
    }
}
