//! Client of the agent's command API (reference §2): conductor → agent.
//!
//! Commands go to `{agent_url}/v1/commands/?wait=...&agent_token=...`. TLS is pinned to the
//! certificate the agent sent in its heartbeat (`agent_verify_ca`), or plain HTTP for agents
//! without TLS. Failures are classified for the engine: a busy agent (409) and an agent that
//! cannot be reached (rebooting) mean "retry on the next heartbeat"; anything else is an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivet_common::JsonObject;
use rivet_common::command::{CommandList, CommandRequest, CommandResult, CommandStatus};
use rivet_common::error::Fault;
use serde_json::Value;

use crate::model::NodeRecord;

/// Why a call to the agent failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentClientError {
    /// The agent could not be reached (not booted yet, rebooting, network): retry later.
    #[error("agent at {url} is not reachable: {reason}")]
    Connection { url: String, reason: String },
    /// The agent is running another command: retry later.
    #[error("agent is busy: {0}")]
    InProgress(String),
    /// The agent refused the request.
    #[error("agent API error {status}: {message}")]
    Api { status: u16, message: String },
    /// The node has no agent session (no callback URL yet).
    #[error("node {0} has no agent callback URL: the agent has not heartbeated yet")]
    NoAgent(String),
    /// A polled command did not finish in time.
    #[error("agent command {0} did not finish in time")]
    Timeout(String),
    /// The answer is not what an agent sends.
    #[error("invalid answer from the agent: {0}")]
    Invalid(String),
}

impl AgentClientError {
    /// Worth retrying on the next heartbeat.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AgentClientError::Connection { .. } | AgentClientError::InProgress(_)
        )
    }
}

/// Timeouts and attempts (`[agent]` options of Ironic).
#[derive(Debug, Clone, Copy)]
pub struct AgentClientConfig {
    /// Per-request timeout (`command_timeout`, 60 s).
    pub command_timeout: Duration,
    /// Attempts on connection failure (`max_command_attempts`, 3).
    pub max_attempts: u32,
    /// Between polls of a polled command (`command_wait_interval`, 6 s).
    pub poll_interval: Duration,
    /// Polls before giving up (`command_wait_attempts`, 100).
    pub poll_attempts: u32,
    /// Lowest TLS version spoken to agents (`[agent]tls_minimum_version`, 1.3).
    pub tls_minimum: crate::tls::TlsMinimum,
}

impl Default for AgentClientConfig {
    fn default() -> Self {
        AgentClientConfig {
            command_timeout: Duration::from_secs(60),
            max_attempts: 3,
            poll_interval: Duration::from_secs(6),
            poll_attempts: 100,
            tls_minimum: crate::tls::TlsMinimum::Tls13,
        }
    }
}

/// HTTP clients per pinned certificate, so thousands of agents do not each cost a TLS setup.
#[derive(Debug, Default)]
struct ClientCache {
    by_cert: HashMap<String, reqwest::Client>,
}

/// The agent client of one conductor.
#[derive(Debug, Clone)]
pub struct AgentClient {
    config: AgentClientConfig,
    plain: reqwest::Client,
    pinned: Arc<Mutex<ClientCache>>,
}

/// Trust an agent's certificate: chain validation to the pinned certificate as usual, and the
/// pinned certificate itself when the agent presents exactly it. The second covers IPA's
/// self-signed certificates, signed with ECDSA-SHA512, which webpki does not verify; the
/// presented certificate being byte-for-byte the one the agent sent with its (token-
/// authenticated) heartbeat is the stronger check, and the handshake signature still proves the
/// agent holds its key.
fn tls_config_pinned(pem: &str, minimum: crate::tls::TlsMinimum) -> Result<rustls::ClientConfig, String> {
    crate::tls::trusting_at_least(pem.as_bytes(), "agent_verify_ca", true, minimum)
}

impl AgentClient {
    /// A client with these timeouts.
    pub fn new(config: AgentClientConfig) -> Self {
        let plain = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::no_roots())
            .timeout(config.command_timeout)
            .connect_timeout(config.command_timeout.min(Duration::from_secs(10)))
            .build()
            .expect("a plain HTTP client builds");
        AgentClient {
            config,
            plain,
            pinned: Arc::new(Mutex::new(ClientCache::default())),
        }
    }

    fn http_for(&self, node: &NodeRecord) -> Result<reqwest::Client, AgentClientError> {
        let Some(pem) = node.driver_internal_info.get("agent_verify_ca").and_then(Value::as_str) else {
            return Ok(self.plain.clone());
        };
        let mut cache = self.pinned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = cache.by_cert.get(pem) {
            return Ok(client.clone());
        }
        let tls = tls_config_pinned(pem, self.config.tls_minimum).map_err(AgentClientError::Invalid)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(self.config.command_timeout)
            .connect_timeout(self.config.command_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| AgentClientError::Invalid(e.to_string()))?;
        if cache.by_cert.len() > 4096 {
            cache.by_cert.clear();
        }
        cache.by_cert.insert(pem.to_owned(), client.clone());
        Ok(client)
    }

    fn base(node: &NodeRecord) -> Result<String, AgentClientError> {
        node.driver_internal_info
            .get("agent_url")
            .and_then(Value::as_str)
            .map(|u| format!("{}/v1/commands/", u.trim_end_matches('/')))
            .ok_or_else(|| AgentClientError::NoAgent(node.uuid.clone()))
    }

    fn token(node: &NodeRecord) -> Option<String> {
        node.driver_internal_info
            .get("agent_secret_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn error_from(status: u16, body: &str) -> AgentClientError {
        let message = serde_json::from_str::<Fault>(body)
            .map(|f| f.faultstring)
            .unwrap_or_else(|_| body.trim().to_owned());
        if status == 409 || message.to_ascii_lowercase().contains("agent is busy") {
            AgentClientError::InProgress(message)
        } else {
            AgentClientError::Api { status, message }
        }
    }

    async fn post_once(
        &self,
        node: &NodeRecord,
        request: &CommandRequest,
        wait: bool,
    ) -> Result<CommandResult, AgentClientError> {
        let name = request.name.as_str();
        let url = Self::base(node)?;
        let mut query = vec![("wait", if wait { "true".to_owned() } else { "false".to_owned() })];
        if let Some(token) = Self::token(node) {
            query.push(("agent_token", token));
        }
        let http = self.http_for(node)?;
        let response = http.post(&url).query(&query).json(request).send().await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                // The agent may have received the command and lost the answer: if the last
                // command is this one and still running, take it (reference §2.2 step 1).
                if let Ok(list) = self.commands_once(node).await
                    && let Some(last) = list.last()
                    && name.ends_with(&format!(".{}", last.command_name))
                    && last.command_status == CommandStatus::Running
                {
                    return Ok(last.clone());
                }
                return Err(AgentClientError::Connection {
                    url,
                    reason: rivet_common::error::http_error(&e),
                });
            }
        };
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| AgentClientError::Connection {
            url: url.clone(),
            reason: rivet_common::error::http_error(&e),
        })?;
        if status >= 400 {
            return Err(Self::error_from(status, &body));
        }
        let result: CommandResult =
            serde_json::from_str(&body).map_err(|e| AgentClientError::Invalid(format!("{e}: {body}")))?;
        if result.command_error.as_ref().is_some_and(|e| e.kind == "TypeError") {
            return Err(AgentClientError::Api {
                status: 400,
                message: result.command_error.map(|e| e.details).unwrap_or_default(),
            });
        }
        Ok(result)
    }

    /// Run the command `name` (`<extension>.<command>`) with keyword arguments `params`;
    /// connection failures are retried up to `max_attempts` times.
    pub async fn command(
        &self,
        node: &NodeRecord,
        name: &str,
        params: JsonObject,
        wait: bool,
    ) -> Result<CommandResult, AgentClientError> {
        let request = CommandRequest {
            name: name.to_owned(),
            params,
        };
        let mut last = None;
        for _ in 0..self.config.max_attempts.max(1) {
            match self.post_once(node, &request, wait).await {
                Err(e @ AgentClientError::Connection { .. }) => last = Some(e),
                other => return Self::counted(name, other),
            }
        }
        Self::counted(
            name,
            Err(last.unwrap_or_else(|| AgentClientError::NoAgent(node.uuid.clone()))),
        )
    }

    /// Count a refused, unreachable or failed command in the metrics; answer `result`.
    fn counted(name: &str, result: Result<CommandResult, AgentClientError>) -> Result<CommandResult, AgentClientError> {
        let failed = match &result {
            Ok(done) => done.command_status == CommandStatus::Failed,
            Err(AgentClientError::InProgress(_)) => false,
            Err(_) => true,
        };
        if failed {
            crate::metrics::metrics().agent_command_failed(name);
        }
        result
    }

    /// Run a command without waiting, then poll the command list until it finishes.
    pub async fn command_polled(
        &self,
        node: &NodeRecord,
        name: &str,
        params: JsonObject,
    ) -> Result<CommandResult, AgentClientError> {
        let started = self.command(node, name, params, false).await?;
        if started.command_status.is_finished() {
            return Ok(started);
        }
        for _ in 0..self.config.poll_attempts {
            tokio::time::sleep(self.config.poll_interval).await;
            let list = self.commands(node).await?;
            if let Some(done) = list
                .iter()
                .rev()
                .find(|c| c.id == started.id)
                .filter(|c| c.command_status.is_finished())
            {
                return Ok(done.clone());
            }
        }
        Err(AgentClientError::Timeout(name.to_owned()))
    }

    async fn commands_once(&self, node: &NodeRecord) -> Result<Vec<CommandResult>, AgentClientError> {
        let url = Self::base(node)?;
        let mut query = Vec::new();
        if let Some(token) = Self::token(node) {
            query.push(("agent_token", token));
        }
        let http = self.http_for(node)?;
        let response = http
            .get(&url)
            .query(&query)
            .send()
            .await
            .map_err(|e| AgentClientError::Connection {
                url: url.clone(),
                reason: rivet_common::error::http_error(&e),
            })?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| AgentClientError::Connection {
            url,
            reason: rivet_common::error::http_error(&e),
        })?;
        if status >= 400 {
            return Err(Self::error_from(status, &body));
        }
        let list: CommandList =
            serde_json::from_str(&body).map_err(|e| AgentClientError::Invalid(format!("{e}: {body}")))?;
        Ok(list.commands)
    }

    /// Wait until command `id` ends, for at most `limit`: IPA's long poll, `GET
    /// /v1/commands/<id>?wait=true` (`ironic_python_agent/api/app.py`, `api_get_command`).
    /// The command as it ended. Errors: no agent, connection errors (a `limit` that passes
    /// first is one), the agent's error answers.
    pub async fn wait_for_command(
        &self,
        node: &NodeRecord,
        id: &str,
        limit: Duration,
    ) -> Result<CommandResult, AgentClientError> {
        let url = format!("{}{id}", Self::base(node)?);
        let mut query = vec![("wait", "true".to_owned())];
        if let Some(token) = Self::token(node) {
            query.push(("agent_token", token));
        }
        let http = self.http_for(node)?;
        let connection = |e: reqwest::Error| AgentClientError::Connection {
            url: url.clone(),
            reason: rivet_common::error::http_error(&e),
        };
        let response = http
            .get(&url)
            .query(&query)
            .timeout(limit)
            .send()
            .await
            .map_err(connection)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(connection)?;
        if status >= 400 {
            return Err(Self::error_from(status, &body));
        }
        serde_json::from_str(&body).map_err(|e| AgentClientError::Invalid(format!("{e}: {body}")))
    }

    /// The agent's command list, oldest first.
    pub async fn commands(&self, node: &NodeRecord) -> Result<Vec<CommandResult>, AgentClientError> {
        let mut last = None;
        for _ in 0..self.config.max_attempts.max(1) {
            match self.commands_once(node).await {
                Err(e @ AgentClientError::Connection { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| AgentClientError::NoAgent(node.uuid.clone())))
    }
}

/// The message to show for a failed command: `details`, else `message`.
pub fn command_error_text(result: &CommandResult) -> String {
    match &result.command_error {
        Some(e) if !e.details.is_empty() => e.details.clone(),
        Some(e) => e.message.clone(),
        None => "Invalid agent response".into(),
    }
}
