//! What the running agent knows and shares between its parts: configuration, the node from
//! lookup, the token, the lifecycle (serving, locked down, rescued) and the wish for a heartbeat.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rivet_common::image::ImageInfo;
use rivet_common::node::Node;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::config::AgentConfig;
use crate::disk::devices::DeviceView;
use crate::error::{AgentError, ErrorKind};
use crate::hardware::{ImageWriter, Managers};
use crate::image::{self, ImageJob, image_client, validate};
use crate::progress::{Progress, Report};

/// Where the agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Serving the API and heartbeating.
    Serving,
    /// `system.lockdown`: stop the API and heartbeats, then bring interfaces down.
    Lockdown,
    /// `rescue.finalize_rescue`: stop the API and heartbeats and exit.
    Rescued,
}

/// Shared agent state.
#[derive(Debug)]
pub struct AgentState {
    /// Resolved configuration.
    pub config: AgentConfig,
    /// Epoch seconds when the agent started (`/v1/status`).
    pub started_at: f64,
    /// Loaded hardware managers, best first.
    pub managers: Managers,
    /// The devices managers may see and touch.
    pub devices: DeviceView,
    node: RwLock<Option<Node>>,
    token: RwLock<Option<String>>,
    lifecycle: watch::Sender<Lifecycle>,
    heartbeat_wanted: Notify,
    status: Mutex<Option<Status>>,
    partition_uuids: Mutex<Option<Value>>,
    lookup_config: RwLock<Option<rivet_common::ramdisk::LookupConfig>>,
}

/// The latest progress report of the running command, and when its first report came.
#[derive(Debug, Clone)]
struct Status {
    report: Report,
    since: Instant,
}

/// What a lookup answer meant for the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOutcome {
    /// A fresh token was stored.
    Fresh,
    /// The conductor masked the token and the agent already holds one (pre-shared).
    KeptPreShared,
    /// The conductor masked the token and the agent has none: it cannot authenticate.
    MaskedWithoutToken,
    /// No usable token in the answer (old conductor); whatever the agent holds is kept.
    NoneGiven,
}

impl AgentState {
    /// Fresh state; the token starts as the pre-shared one, if any.
    pub fn new(config: AgentConfig, managers: Managers, devices: DeviceView) -> Self {
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let token = config.agent_token.clone();
        AgentState {
            config,
            started_at,
            managers,
            devices,
            node: RwLock::new(None),
            token: RwLock::new(token),
            lifecycle: watch::channel(Lifecycle::Serving).0,
            heartbeat_wanted: Notify::new(),
            status: Mutex::new(None),
            partition_uuids: Mutex::new(None),
            lookup_config: RwLock::new(None),
        }
    }

    /// The node from lookup or the last step command.
    pub fn node(&self) -> Option<Node> {
        self.node.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Remember the node (lookup, `get_*_steps`, `execute_*_step`).
    pub fn set_node(&self, node: Node) {
        *self.node.write().unwrap_or_else(PoisonError::into_inner) = Some(node);
    }

    /// The token this agent holds.
    pub fn token(&self) -> Option<String> {
        self.token.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replace the token.
    pub fn set_token(&self, token: Option<String>) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// True iff a non-empty token was given, the agent holds one, and they are equal.
    /// The comparison takes the same time wherever the strings differ.
    pub fn token_matches(&self, given: Option<&str>) -> bool {
        let (Some(given), Some(held)) = (given, self.token()) else {
            return false;
        };
        if given.is_empty() || given.len() != held.len() {
            return false;
        }
        given.bytes().zip(held.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Ask the heartbeater for a heartbeat soon (after every asynchronous command).
    pub fn force_heartbeat(&self) {
        self.heartbeat_wanted.notify_one();
    }

    /// Resolves when a heartbeat was asked for.
    pub async fn heartbeat_requested(&self) {
        self.heartbeat_wanted.notified().await;
    }

    /// Progress of the current long command, reported in heartbeats (`agent_status_message`).
    pub fn status_message(&self) -> Option<String> {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.as_ref().map(|s| s.report.message.clone())
    }

    /// The same progress, measured (the heartbeat's `agent_step_progress`).
    pub fn step_progress(&self) -> Option<rivet_common::ramdisk::StepProgress> {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let status = status.as_ref()?;
        let measure = status.report.measure;
        Some(rivet_common::ramdisk::StepProgress {
            message: status.report.message.clone(),
            done: measure.map(|m| m.done),
            total: measure.and_then(|m| m.total),
            unit: measure.map(|m| m.unit.as_str().to_owned()),
            rate: measure.and_then(|m| m.rate),
            elapsed_seconds: status.since.elapsed().as_secs_f64(),
        })
    }

    /// Set or clear the progress of the running command. A command's reports share the time of
    /// its first one ("since"), until the progress is cleared.
    pub fn set_status(&self, report: Option<Report>) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        *status = report.map(|report| Status {
            since: status.as_ref().map_or_else(Instant::now, |s| s.since),
            report,
        });
    }

    /// Whether the conductor takes measured progress in heartbeats (rivet-conductor offers it
    /// in its lookup answer; Ironic does not).
    pub fn conductor_takes_step_progress(&self) -> bool {
        let config = self.lookup_config.read().unwrap_or_else(PoisonError::into_inner);
        config
            .as_ref()
            .is_some_and(|c| c.extra.get(rivet_common::ramdisk::STEP_PROGRESS_CONFIG_KEY) == Some(&Value::Bool(true)))
    }

    /// Partition UUIDs recorded by the last `prepare_image`.
    pub fn partition_uuids(&self) -> Option<Value> {
        self.partition_uuids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Record partition UUIDs of the image just written.
    pub fn set_partition_uuids(&self, uuids: Value) {
        *self.partition_uuids.lock().unwrap_or_else(PoisonError::into_inner) = Some(uuids);
    }

    /// Take in a lookup answer (or `poll.set_node_info`): remember the node and apply the token
    /// rules of upstream (reference §2.5).
    pub fn apply_lookup(&self, answer: &rivet_common::ramdisk::LookupResponse) -> TokenOutcome {
        use rivet_common::ramdisk::{MASKED_TOKEN, MIN_TOKEN_LEN};
        self.set_node(answer.node.clone());
        *self.lookup_config.write().unwrap_or_else(PoisonError::into_inner) = Some(answer.config.clone());
        match answer.config.agent_token.as_option().map(String::as_str) {
            Some(MASKED_TOKEN) if self.token().is_some() => TokenOutcome::KeptPreShared,
            Some(MASKED_TOKEN) => TokenOutcome::MaskedWithoutToken,
            Some(token) if token.len() >= MIN_TOKEN_LEN => {
                self.set_token(Some(token.to_owned()));
                TokenOutcome::Fresh
            }
            Some(_) => {
                tracing::warn!("the lookup answer carries an invalid (too short) token; ignoring it");
                TokenOutcome::NoneGiven
            }
            None => TokenOutcome::NoneGiven,
        }
    }

    /// The `config` of the last lookup answer (image format and checksum policy, ...).
    pub fn lookup_config(&self) -> Option<rivet_common::ramdisk::LookupConfig> {
        self.lookup_config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Current lifecycle.
    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.borrow()
    }

    /// Watch lifecycle changes.
    pub fn subscribe_lifecycle(&self) -> watch::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    /// Move to a terminal lifecycle state.
    pub fn set_lifecycle(&self, next: Lifecycle) {
        self.lifecycle.send_replace(next);
    }

    /// Progress that lands in this agent's heartbeats (`agent_status_message`, and
    /// `agent_step_progress` for rivet-conductor). For rivet-conductor a report also asks for an
    /// early heartbeat, so operators see it move (at most one every `forced_min_gap`, 5 s); Ironic
    /// gets the usual cadence, as from IPA.
    pub fn progress(self: &Arc<Self>) -> Progress {
        let state = Arc::clone(self);
        Progress::new(move |report| {
            let published = report.is_some();
            state.set_status(report);
            if published && state.conductor_takes_step_progress() {
                state.force_heartbeat();
            }
        })
    }

    /// Run `standby.prepare_image` (and the `write_image` step) for this agent: client and policy
    /// from its configuration, the node from its cache, and the partition UUIDs recorded for
    /// `standby.get_partition_uuids`.
    pub async fn prepare_image(
        &self,
        info: ImageInfo,
        configdrive: Option<&Value>,
        progress: Progress,
    ) -> Result<String, AgentError> {
        let configdrive = match configdrive {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(AgentError::new(
                    ErrorKind::InvalidCommandParams,
                    format!(
                        "configdrive must be a URL or base64 of gzipped data (the conductor builds it), not {}",
                        if other.is_object() { "an object" } else { "this" }
                    ),
                ));
            }
        };
        let md5_allowed = self
            .lookup_config()
            .and_then(|c| c.agent_md5_checksum_enable.into_option())
            .unwrap_or(true);
        validate(&info, md5_allowed)?;
        let config = &self.config;
        let node = self.node();
        let devices = &self.devices;
        let root_device = self
            .managers
            .first_answer("get_os_install_device", |manager| {
                let node = node.clone();
                async move { manager.get_os_install_device(node.as_ref(), devices).await }
            })
            .await?;
        let job = ImageJob {
            info,
            node,
            root_device,
            devices: self.devices.clone(),
            progress,
            http: image_client(
                &config.client_tls,
                config.tls_min_version,
                config.image_download.stall_timeout,
            )?,
            policy: config.image_download,
            md5_allowed,
            spool_dir: config.image_spool_dir.clone(),
            configdrive,
        };
        let written = image::prepare_image(job).await?;
        self.set_partition_uuids(written.partition_uuids);
        Ok(written.message)
    }
}

#[async_trait]
impl ImageWriter for AgentState {
    async fn write_image(
        &self,
        info: ImageInfo,
        configdrive: Option<&Value>,
        progress: Progress,
    ) -> Result<String, AgentError> {
        self.prepare_image(info, configdrive, progress).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BootParams, Settings};
    use crate::progress::{Measure, Unit};

    fn state() -> Arc<AgentState> {
        let config = AgentConfig::resolve(Settings::default(), BootParams::default(), false).expect("config");
        Arc::new(AgentState::new(
            config,
            Managers::default(),
            DeviceView::new(Some(Vec::new()), false),
        ))
    }

    /// Ironic's lookup answer (captured from Ironic 39), with `offer` added to its config.
    fn lookup(offer: bool) -> rivet_common::ramdisk::LookupResponse {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/upstream/ironic/flow/conductor_lookup_200.json"
        ))
        .expect("fixture");
        let mut answer: rivet_common::ramdisk::LookupResponse =
            serde_json::from_value(fixture["body"].clone()).expect("a lookup answer");
        if offer {
            answer.config.extra.insert(
                rivet_common::ramdisk::STEP_PROGRESS_CONFIG_KEY.into(),
                Value::Bool(true),
            );
        }
        answer
    }

    #[test]
    fn measured_progress_goes_only_to_a_conductor_that_offers_to_take_it() {
        let state = state();
        let progress = state.progress();
        let measure = Measure {
            done: 5,
            total: Some(10),
            unit: Unit::Bytes,
            rate: Some(2.0),
        };
        progress.measured("writing: 5 of 10 bytes", measure);
        assert_eq!(state.status_message().as_deref(), Some("writing: 5 of 10 bytes"));
        state.apply_lookup(&lookup(false));
        assert!(!state.conductor_takes_step_progress(), "Ironic's answer offers nothing");
        state.apply_lookup(&lookup(true));
        assert!(state.conductor_takes_step_progress());
        let sent = state.step_progress().expect("progress");
        assert_eq!(
            (sent.done, sent.total, sent.unit.as_deref()),
            (Some(5), Some(10), Some("bytes"))
        );
        // The work's reports share the time of its first; clearing ends them.
        progress.measured("writing: 8 of 10 bytes", Measure { done: 8, ..measure });
        assert!(state.step_progress().expect("progress").elapsed_seconds >= sent.elapsed_seconds);
        progress.clear();
        assert_eq!((state.status_message(), state.step_progress()), (None, None));
    }
}
