//! The agent-facing half of the conductor (reference §1 and §3): lookup and heartbeats. A
//! heartbeat is checked here and recorded in the agent session; the flow it wakes is the flow
//! runner's (`crate::flow`).
//!
//! Lost lookup answers: upstream mints a token at the first lookup and masks it on every later
//! one, so an agent whose first answer was lost (a slow conductor, a 30 s client timeout) can
//! never heartbeat and the node waits for the 30-minute callback timeout. Rivet remembers who
//! asked (source address and MAC set); until the first heartbeat with the token arrives, a
//! repeated lookup from the same address for the same MACs gets the same token again. Anyone
//! else gets the mask, as upstream, and once the token has been used nobody gets it again.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rivet_common::field::Field;
use rivet_common::node::Node;
use rivet_common::ramdisk::{HeartbeatRequest, LookupConfig, LookupResponse};
use rivet_common::version::ApiVersion;
use serde_json::{Value, json};

use crate::agent_session;
use crate::engine::{Conductor, EngineError};
use crate::model::{MASK, NodeRecord, mask_instance_info, mask_secrets};
use crate::states;
use crate::time::now_naive;

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Conductor {
    /// `GET /v1/lookup`.
    pub async fn lookup(
        &self,
        addresses: &[String],
        node_uuid: Option<&str>,
        version: ApiVersion,
        peer: Option<IpAddr>,
    ) -> Result<LookupResponse, EngineError> {
        let not_found = || EngineError::NotFound("Resource could not be found.".into());
        if version < ApiVersion::RAMDISK_ENDPOINTS {
            return Err(not_found());
        }
        let macs: Vec<String> = addresses.iter().filter_map(|a| crate::api::normalise_mac(a)).collect();
        if macs.is_empty() && node_uuid.is_none() {
            return Err(EngineError::Invalid(
                "One or more valid MAC addresses or node UUID required".into(),
            ));
        }
        let uuid = match node_uuid {
            Some(u) => {
                uuid::Uuid::parse_str(u)
                    .map_err(|_| EngineError::Invalid(format!("Expected a UUID but received {u}.")))?;
                u.to_owned()
            }
            None => {
                let found = self.db.nodes_by_macs(&macs).await?;
                if found.len() != 1 {
                    // Same answer for "unknown" and "ambiguous", as upstream.
                    return Err(not_found());
                }
                found[0].clone()
            }
        };
        let node = self.db.node(&uuid).await?.ok_or_else(not_found)?;
        let allowed = states::LOOKUP_ALLOWED.contains(&node.provision_state.as_str())
            || (agent_session::fast_track(&node, &self.settings)
                && states::LOOKUP_FAST_TRACK.contains(&node.provision_state.as_str()));
        if !allowed {
            tracing::info!(node = %node.uuid, state = %node.provision_state, "lookup refused in this state");
            return Err(not_found());
        }
        let token = if version >= ApiVersion::AGENT_TOKEN {
            Some(self.token_for_lookup(&node, &macs, peer).await?)
        } else {
            None
        };
        let node = self.db.node(&uuid).await?.ok_or_else(not_found)?;
        let mut dii = mask_secrets(&node.driver_internal_info);
        for key in ["agent_token_lookup", "agent_token_claimed"] {
            dii.remove(key);
        }
        // The keys IPA reads have fields; the rest (metrics, containers) are Ironic's defaults.
        let extra = json!({
            "metrics": {"backend": "noop", "prepend_host": false, "prepend_uuid": false, "prepend_host_reverse": true, "global_prefix": null},
            "metrics_statsd": {"statsd_host": "localhost", "statsd_port": 8125},
            "agent_containers": {"allow_arbitrary_containers": false, "allowed_containers": [], "container_steps_file": "/etc/ironic-python-agent.d/mysteps.yaml", "runner": "podman", "pull_options": [], "run_options": ["--rm", "--network=host"]},
            // Rivet's own: rivet-agent may send measured progress (IPA ignores the key).
            rivet_common::ramdisk::STEP_PROGRESS_CONFIG_KEY: true,
        });
        let answer = LookupResponse {
            node: Node {
                uuid: node.uuid.clone(),
                properties: Some(node.properties.clone()),
                instance_info: Some(mask_instance_info(&node.instance_info)),
                driver_info: None,
                driver_internal_info: Some(dii),
                extra: [(
                    "links".to_owned(),
                    crate::model::links(&self.settings.api_url, &format!("nodes/{}", node.uuid)),
                )]
                .into_iter()
                .collect(),
            },
            config: LookupConfig {
                heartbeat_timeout: self.config.ramdisk_heartbeat_timeout,
                agent_token: token.map_or(Field::Absent, Field::Value),
                agent_token_required: Field::Value(true),
                agent_md5_checksum_enable: Field::Value(true),
                disable_deep_image_inspection: Field::Value(false),
                permitted_image_formats: Field::Value(["raw", "gpt", "qcow2", "iso"].map(str::to_owned).to_vec()),
                agent_skip_bmc_detect: Field::Value(false),
                enable_bios_bootloader_install: Field::Value(false),
                tls_min_version: Field::Value(self.config.agent_tls_minimum_version.as_str().to_owned()),
                tls_cipher_suites: Field::Null,
                extra: extra.as_object().cloned().unwrap_or_default(),
            },
        };
        Ok(answer)
    }

    async fn token_for_lookup(
        &self,
        node: &NodeRecord,
        macs: &[String],
        peer: Option<IpAddr>,
    ) -> Result<String, EngineError> {
        let mut sorted = macs.to_vec();
        sorted.sort();
        let asker = json!({"peer": peer.map(|p| p.to_string()), "macs": sorted});
        if let Some(existing) = node
            .driver_internal_info
            .get("agent_secret_token")
            .and_then(Value::as_str)
        {
            let claimed = node
                .driver_internal_info
                .get("agent_token_claimed")
                .and_then(Value::as_bool)
                == Some(true);
            let same_asker = node.driver_internal_info.get("agent_token_lookup") == Some(&asker) && peer.is_some();
            if !claimed && same_asker {
                tracing::warn!(node = %node.uuid, "repeated lookup before the first heartbeat: sending the same token again");
                return Ok(existing.to_owned());
            }
            return Ok(MASK.to_owned());
        }
        // Minting writes the node: take the lock without waiting, as upstream (409 if busy).
        let lock = self.locks.try_acquire(&node.uuid).await?;
        let outcome = async {
            let mut fresh = self.node(&node.uuid).await?;
            if let Some(existing) = fresh
                .driver_internal_info
                .get("agent_secret_token")
                .and_then(Value::as_str)
            {
                return Ok(
                    if fresh.driver_internal_info.get("agent_token_lookup") == Some(&asker) {
                        existing.to_owned()
                    } else {
                        MASK.to_owned()
                    },
                );
            }
            let token = new_token();
            let dii = &mut fresh.driver_internal_info;
            dii.insert("agent_secret_token".into(), json!(token));
            dii.insert("agent_token_lookup".into(), asker.clone());
            dii.remove("agent_token_claimed");
            dii.remove("agent_secret_token_pregenerated");
            self.save(&mut fresh).await?;
            Ok(token)
        }
        .await;
        lock.release().await?;
        outcome
    }

    /// `POST /v1/heartbeat/{node}`: handled here by any conductor that runs node work (under
    /// the node's lock); an `api_only` conductor hands it to the node's owner.
    pub async fn heartbeat(
        self: &Arc<Self>,
        ident: &str,
        hb: HeartbeatRequest,
        version: ApiVersion,
    ) -> Result<(), EngineError> {
        if self.config.cluster.api_only {
            let node = self.node(ident).await?;
            if let Some(owner) = self.route(&node)? {
                let work = crate::cluster::work::Work::Heartbeat {
                    node: node.uuid.clone(),
                    heartbeat: hb,
                    version: version.minor,
                };
                return self.hand_over(&owner, &node.uuid, &work).await;
            }
        }
        self.heartbeat_here(ident, hb, version).await
    }

    /// A heartbeat on this conductor: checks that answer 4xx, then background processing.
    pub async fn heartbeat_here(
        self: &Arc<Self>,
        ident: &str,
        hb: HeartbeatRequest,
        version: ApiVersion,
    ) -> Result<(), EngineError> {
        if version < ApiVersion::RAMDISK_ENDPOINTS {
            return Err(EngineError::NotFound("Resource could not be found.".into()));
        }
        if hb.agent_version.is_some() && version < ApiVersion::AGENT_VERSION {
            return Err(EngineError::Invalid("Field \"agent_version\" not recognised".into()));
        }
        if (hb.agent_status.is_some() || hb.agent_status_message.is_some()) && version < ApiVersion::AGENT_STATUS {
            return Err(EngineError::Invalid(
                "Fields \"agent_status\" and \"agent_status_message\" not recognised.".into(),
            ));
        }
        if hb.agent_verify_ca.is_some() && version < ApiVersion::AGENT_VERIFY_CA {
            return Err(EngineError::Invalid(
                "Field \"agent_verify_ca\" not recognised in this version".into(),
            ));
        }
        let node = self.node(ident).await?;
        if !hb.callback_url.is_empty()
            && !url::Url::parse(&hb.callback_url).is_ok_and(|u| u.scheme().starts_with("http"))
        {
            return Err(EngineError::Invalid(
                "An issue with the supplied \"callback_url\" has been detected.".into(),
            ));
        }
        let dii = &node.driver_internal_info;
        if let Some(known) = dii.get("agent_url").and_then(Value::as_str)
            && known != hb.callback_url
        {
            return Err(EngineError::Invalid(
                "Detected change in ramdisk provided \"callback_url\"".into(),
            ));
        }
        let Some(token) = hb.agent_token.as_option() else {
            return Err(EngineError::Invalid(
                "Agent token is required for heartbeat processing.".into(),
            ));
        };
        if let Some(status) = &hb.agent_status
            && !["start", "end", "error"].contains(&status.as_str())
        {
            return Err(EngineError::Invalid(
                "Agent status is invalid. Valid states are start,end,error.".into(),
            ));
        }
        if hb.agent_version.is_none() && hb.agent_status.is_none() {
            return Err(EngineError::Invalid(
                "Agent heartbeat without agent_version: the agent must be upgraded".into(),
            ));
        }
        if dii.get("agent_secret_token").and_then(Value::as_str) != Some(token.as_str()) || token == MASK {
            return Err(EngineError::Invalid("Invalid or missing agent token received.".into()));
        }
        if self.config.require_tls && !hb.callback_url.starts_with("https://") {
            return Err(EngineError::Invalid(
                "Agent is not using TLS (https) for its callback URL, which is required by the conductor".into(),
            ));
        }
        if let (Some(known), Some(new)) = (dii.get("agent_verify_ca").and_then(Value::as_str), &hb.agent_verify_ca)
            && known != new
        {
            return Err(EngineError::Invalid(
                "Detected change in the agent's TLS certificate".into(),
            ));
        }
        if !dii.contains_key("agent_url") && node.reservation.is_some() {
            return Err(EngineError::Conflict(format!(
                "Node {} is locked by host {}, please retry",
                node.uuid,
                node.reservation.unwrap_or_default()
            )));
        }
        let me = Arc::clone(self);
        let uuid = node.uuid.clone();
        tokio::spawn(async move {
            let Ok(_slot) = me.heartbeat_slots.clone().acquire_owned().await else {
                return;
            };
            me.process_heartbeat(&uuid, hb).await;
        });
        Ok(())
    }

    async fn process_heartbeat(self: &Arc<Self>, uuid: &str, hb: HeartbeatRequest) {
        let lock = match self.locks.try_acquire(uuid).await {
            Ok(lock) => lock,
            Err(e) => {
                // Another worker holds the node: this beat is dropped, the next one comes soon.
                tracing::debug!(node = uuid, error = %e, "heartbeat dropped: node locked");
                return;
            }
        };
        let outcome = async {
            let node = self.node(uuid).await?;
            let allowed = states::HEARTBEAT_ALLOWED.contains(&node.provision_state.as_str())
                || (agent_session::fast_track(&node, &self.settings)
                    && states::HEARTBEAT_FAST_TRACK.contains(&node.provision_state.as_str()));
            if !allowed {
                tracing::info!(node = uuid, state = %node.provision_state, "heartbeat ignored in this state");
                return Ok(None);
            }
            let mut task = self.task(node).await?;
            let dii = &mut task.node.driver_internal_info;
            dii.insert("agent_url".into(), json!(hb.callback_url));
            dii.insert("agent_version".into(), json!(hb.agent_version));
            dii.insert("agent_last_heartbeat".into(), json!(now_naive()));
            dii.insert("agent_token_claimed".into(), json!(true));
            if let Some(ca) = &hb.agent_verify_ca {
                dii.insert("agent_verify_ca".into(), json!(ca));
            }
            // The message is the agent's current progress: gone when the agent stops sending it.
            match &hb.agent_status_message {
                Some(message) => dii.insert("agent_status_message".into(), json!(message)),
                None => dii.remove("agent_status_message"),
            };
            match &hb.agent_step_progress {
                Some(progress) => {
                    let written =
                        crate::step_progress::record(&mut task.node, progress, time::OffsetDateTime::now_utc());
                    crate::metrics::metrics().image_bytes_written(written);
                }
                None => crate::step_progress::clear(&mut task.node),
            }
            self.save(&mut task.node).await?;
            self.on_heartbeat(&mut task).await;
            Ok::<_, EngineError>(Some(task))
        }
        .await;
        self.release_and_watch(uuid, lock, outcome, "heartbeat").await;
    }

    /// Release `lock` after processing that ended in `outcome` (its task, if it got that far),
    /// then watch the agent command the flow waits on, if any.
    async fn release_and_watch(
        self: &Arc<Self>,
        uuid: &str,
        lock: crate::task::NodeLock,
        outcome: Result<Option<crate::drivers::Task>, EngineError>,
        what: &str,
    ) {
        let task = outcome.unwrap_or_else(|e| {
            tracing::error!(node = uuid, error = %e, "{what} processing failed");
            None
        });
        if let Err(e) = lock.release().await {
            tracing::error!(node = uuid, error = %e, "could not release the node lock");
            return;
        }
        if let Some(task) = task {
            self.watch_command(&task);
        }
    }

    /// Watch the agent command `task`'s flow now waits on (see `Task::awaiting_command`), so
    /// the flow goes on the moment it ends instead of at the agent's next heartbeat, which
    /// comes at least 5 s after the previous one. Call it with the lock released. The watch
    /// lasts at most the ramdisk heartbeat timeout; heartbeats still carry the flow on when it
    /// ends first or fails, and the two cannot both act: each takes the node's lock and reads
    /// where the agent is, as a heartbeat does.
    pub(crate) fn watch_command(self: &Arc<Self>, task: &crate::drivers::Task) {
        let Some(id) = task.awaiting_command.clone() else {
            return;
        };
        let state = task.node.provision_state.as_str();
        if states::flow_of(state).is_none_or(|f| states::wait_state(f) != state) {
            return;
        }
        let me = Arc::clone(self);
        let node = task.node.clone();
        let limit = Duration::from_secs(self.config.ramdisk_heartbeat_timeout);
        tokio::spawn(async move {
            match me.agent.wait_for_command(&node, &id, limit).await {
                Ok(result) if result.command_status.is_finished() => me.command_ended(&node.uuid).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(node = %node.uuid, command = %id, error = %e, "stopped watching the agent command; heartbeats carry on")
                }
            }
        });
    }

    /// The command a flow waited on ended: carry the flow on as a heartbeat would, without
    /// recording one.
    async fn command_ended(self: &Arc<Self>, uuid: &str) {
        let lock = match self.locks.acquire(uuid).await {
            Ok(lock) => lock,
            Err(e) => {
                tracing::debug!(node = uuid, error = %e, "agent command ended while the node was locked; the next heartbeat goes on");
                return;
            }
        };
        let outcome = async {
            let node = self.node(uuid).await?;
            let mut task = self.task(node).await?;
            self.on_heartbeat(&mut task).await;
            Ok::<_, EngineError>(Some(task))
        }
        .await;
        self.release_and_watch(uuid, lock, outcome, "agent command").await;
    }
}
