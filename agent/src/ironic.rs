//! Client of the Ironic API endpoints the agent uses: version discovery, lookup, heartbeat.
//!
//! Retry policy (upstream's): a request is tried against each configured API URL in order, and
//! only connection failures move on to the next URL; the URL that answered goes to the front.
//! Lookup retries connection errors, 5xx, 409 and unusable answers with a random-exponential
//! backoff capped at `max_backoff`, plus a growing pause after each 409 (node locked), until the
//! total budget is spent. Heartbeat failures are reported to the heartbeater, which retries.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};
use rivet_common::error::IronicFault;
use rivet_common::field::Field;
use rivet_common::ironic_api::IronicRootDoc;
use rivet_common::ramdisk::{HeartbeatRequest, LookupResponse};
use rivet_common::version::{ApiVersion, REQUEST_ID_HEADER, VERSION_HEADER};
use serde_json::Value;
use url::Url;

use crate::config::LookupPolicy;

/// Highest version used for lookup (the token arrives at 1.62).
pub const LOOKUP_MAX_VERSION: ApiVersion = ApiVersion::AGENT_TOKEN;
/// Highest version used for heartbeats: 1.72 lets Rivet report progress in
/// `agent_status_message`; upstream IPA stops at 1.68.
pub const HEARTBEAT_MAX_VERSION: ApiVersion = ApiVersion::AGENT_STATUS;

/// A failed request to the Ironic API.
#[derive(Debug, thiserror::Error)]
pub enum IronicError {
    /// No URL could be reached.
    #[error("cannot reach the Ironic API ({url}): {reason}")]
    Connection { url: String, reason: String },
    /// Ironic answered with an error status.
    #[error("Error {status}: {message}")]
    Status { status: u16, message: String },
    /// Ironic answered 2xx with a body we cannot use.
    #[error("unusable answer from the Ironic API: {0}")]
    Body(String),
}

/// Lookup gave up.
#[derive(Debug, thiserror::Error)]
#[error("could not look up the node within {waited:?} ({attempts} attempts); last problem: {last}")]
pub struct LookupError {
    /// How long we tried.
    pub waited: Duration,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last: String,
}

/// What one lookup attempt ended with.
#[derive(Debug)]
pub enum LookupAttempt {
    /// The node was found.
    Found(Box<LookupResponse>),
    /// Node locked (409): pause longer before the next attempt.
    Conflict(String),
    /// Anything else worth retrying.
    Retry(String),
}

/// The fields a heartbeat may carry; [`heartbeat_body`] keeps those the version allows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatFields {
    /// Where the agent API is reachable.
    pub callback_url: String,
    /// The agent token.
    pub agent_token: Option<String>,
    /// Agent version.
    pub agent_version: String,
    /// PEM of the auto-generated certificate.
    pub agent_verify_ca: Option<String>,
    /// Progress of a long command.
    pub status_message: Option<String>,
    /// The same, measured: only for a conductor that offered to take it.
    pub step_progress: Option<rivet_common::ramdisk::StepProgress>,
}

/// The heartbeat body for a negotiated version: every field the version allows, no other.
pub fn heartbeat_body(version: ApiVersion, fields: &HeartbeatFields) -> HeartbeatRequest {
    HeartbeatRequest {
        callback_url: fields.callback_url.clone(),
        // Sent even when the agent has none (JSON null), as upstream.
        agent_token: if version >= ApiVersion::AGENT_TOKEN {
            fields.agent_token.clone().into()
        } else {
            Field::Absent
        },
        agent_version: (version >= ApiVersion::AGENT_VERSION).then(|| fields.agent_version.clone()),
        agent_verify_ca: fields
            .agent_verify_ca
            .clone()
            .filter(|_| version >= ApiVersion::AGENT_VERIFY_CA),
        agent_status: None,
        agent_status_message: fields
            .status_message
            .clone()
            .filter(|_| version >= ApiVersion::AGENT_STATUS),
        agent_step_progress: fields
            .step_progress
            .clone()
            .filter(|_| version >= ApiVersion::AGENT_STATUS),
    }
}

/// Readable text of an Ironic error body: `error_message` (JSON text or object) → faultstring,
/// else the raw body.
pub fn error_text(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return body.trim().to_owned();
    };
    match value.get("error_message") {
        Some(Value::String(inner)) => match serde_json::from_str::<IronicFault>(inner) {
            Ok(fault) => fault.faultstring,
            Err(_) => inner.clone(),
        },
        Some(Value::Object(obj)) => obj
            .get("faultstring")
            .or_else(|| obj.get("title"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| Value::Object(obj.clone()).to_string()),
        _ => body.trim().to_owned(),
    }
}

/// Ironic API client of one agent.
#[derive(Debug)]
pub struct IronicClient {
    urls: Mutex<Vec<Url>>,
    http: reqwest::Client,
    fixed_version: Option<ApiVersion>,
    discovered: Mutex<Option<ApiVersion>>,
    request_id: Option<String>,
}

impl IronicClient {
    /// A client over `urls` (at least one) using `http` for transport.
    pub fn new(
        urls: Vec<Url>,
        http: reqwest::Client,
        fixed_version: Option<ApiVersion>,
        request_id: Option<String>,
    ) -> Self {
        IronicClient {
            urls: Mutex::new(urls),
            http,
            fixed_version,
            discovered: Mutex::new(None),
            request_id,
        }
    }

    /// The same client over another transport (after lookup raised the TLS floor); the
    /// discovered version is kept.
    pub fn with_http(&self, http: reqwest::Client) -> Self {
        IronicClient {
            urls: Mutex::new(self.urls()),
            http,
            fixed_version: self.fixed_version,
            discovered: Mutex::new(
                *self
                    .discovered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
            request_id: self.request_id.clone(),
        }
    }

    fn urls(&self) -> Vec<Url> {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn prefer(&self, url: &Url) {
        let mut urls = self.urls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pos) = urls.iter().position(|u| u == url) {
            let u = urls.remove(pos);
            urls.insert(0, u);
        }
    }

    /// Send to each URL in turn until one answers at the HTTP level.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        version: Option<ApiVersion>,
        body: Option<&HeartbeatRequest>,
    ) -> Result<(StatusCode, String), IronicError> {
        let mut last = None;
        for base in self.urls() {
            let url = format!("{}{path}", base.as_str().trim_end_matches('/'));
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::CONTENT_TYPE, "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(v) = version {
                req = req.header(VERSION_HEADER, v.to_string());
            }
            if let Some(id) = &self.request_id {
                req = req.header(REQUEST_ID_HEADER, id);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            match req.send().await {
                Ok(resp) => {
                    self.prefer(&base);
                    let status = resp.status();
                    let text = resp.text().await.map_err(|e| IronicError::Connection {
                        url: url.clone(),
                        reason: rivet_common::error::http_error(&e),
                    })?;
                    return Ok((status, text));
                }
                Err(e) => {
                    let reason = rivet_common::error::http_error(&e);
                    tracing::warn!(url, error = %reason, "Ironic API not reachable");
                    last = Some(IronicError::Connection { url, reason });
                }
            }
        }
        Err(last.unwrap_or(IronicError::Connection {
            url: "(none)".into(),
            reason: "no API URL configured".into(),
        }))
    }

    /// The server's default version (`GET /`), cached after the first success; 1.31 while
    /// unknown, so discovery is retried on the next call.
    pub async fn api_version(&self) -> ApiVersion {
        self.discover_version().await.unwrap_or(ApiVersion::AGENT_MIN)
    }

    /// The server's default version, or `None` when the server could not be reached (then
    /// nothing is cached). A server that answers without a readable version counts as 1.31.
    async fn discover_version(&self) -> Option<ApiVersion> {
        if let Some(v) = self.fixed_version {
            return Some(v);
        }
        if let Some(v) = *self
            .discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Some(v);
        }
        match self.send(Method::GET, "/", &[], None, None).await {
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_str::<IronicRootDoc>(&body)
                    .map_err(|e| e.to_string())
                    .and_then(|doc| {
                        doc.default_version
                            .version
                            .parse::<ApiVersion>()
                            .map_err(|e| e.to_string())
                    }) {
                    Ok(v) => {
                        tracing::info!(version = %v, "Ironic API version discovered");
                        *self
                            .discovered
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v);
                        Some(v)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the Ironic API version; assuming {}", ApiVersion::AGENT_MIN);
                        Some(ApiVersion::AGENT_MIN)
                    }
                }
            }
            Ok((status, _)) => {
                tracing::warn!(
                    status = status.as_u16(),
                    "Ironic API root answered an error; assuming {}",
                    ApiVersion::AGENT_MIN
                );
                Some(ApiVersion::AGENT_MIN)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Ironic API version discovery failed");
                None
            }
        }
    }

    /// One lookup attempt.
    pub async fn lookup_once(&self, addresses: &[String], node_uuid: Option<&str>) -> LookupAttempt {
        // Looking up at 1.31 because the server did not answer `GET /` (it is restarting) would
        // be answered without a token, and the agent could never heartbeat: retry instead.
        // Found by the conductor crash test (tests/tests/conductor_crash.rs).
        let Some(version) = self.discover_version().await else {
            return LookupAttempt::Retry("the Ironic API did not answer its version discovery (GET /)".into());
        };
        let version = version.min(LOOKUP_MAX_VERSION);
        let joined = addresses.join(",");
        let mut query = vec![("addresses", joined.as_str())];
        if let Some(uuid) = node_uuid {
            query.push(("node_uuid", uuid));
        }
        let (status, body) = match self.send(Method::GET, "/v1/lookup", &query, Some(version), None).await {
            Ok(answer) => answer,
            Err(e) => return LookupAttempt::Retry(e.to_string()),
        };
        if status == StatusCode::CONFLICT {
            return LookupAttempt::Conflict(error_text(&body));
        }
        if status != StatusCode::OK {
            return LookupAttempt::Retry(format!("lookup answered {}: {}", status.as_u16(), error_text(&body)));
        }
        match parse_lookup(&body) {
            Ok(found) => LookupAttempt::Found(Box::new(found)),
            Err(e) => LookupAttempt::Retry(e),
        }
    }

    /// Look the node up, retrying within `policy`.
    pub async fn lookup(
        &self,
        addresses: &[String],
        node_uuid: Option<&str>,
        policy: &LookupPolicy,
    ) -> Result<LookupResponse, LookupError> {
        let started = Instant::now();
        let deadline = started + policy.total;
        let mut attempts = 0u32;
        let mut conflicts = 0usize;
        loop {
            attempts += 1;
            let last = match self.lookup_once(addresses, node_uuid).await {
                LookupAttempt::Found(found) => return Ok(*found),
                LookupAttempt::Conflict(msg) => {
                    let pause = policy
                        .conflict_pauses
                        .get(conflicts)
                        .or(policy.conflict_pauses.last())
                        .copied()
                        .unwrap_or_default();
                    conflicts += 1;
                    tracing::warn!(reason = %msg, ?pause, "node is locked (409); pausing before the next lookup");
                    sleep_until_or(deadline, pause).await;
                    format!("node locked: {msg}")
                }
                LookupAttempt::Retry(msg) => {
                    tracing::warn!(reason = %msg, attempt = attempts, "lookup failed");
                    msg
                }
            };
            // The whole budget is used: when the next backoff would cross the deadline, the last
            // attempt is made at the deadline instead of giving up early.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LookupError {
                    waited: started.elapsed(),
                    attempts,
                    last,
                });
            }
            let wait = lookup_backoff(policy, attempts, &mut rand::rng()).min(left);
            tokio::time::sleep(wait).await;
        }
    }

    /// Send one heartbeat.
    pub async fn heartbeat(&self, node_uuid: &str, fields: &HeartbeatFields) -> Result<(), IronicError> {
        let version = self.api_version().await.min(HEARTBEAT_MAX_VERSION);
        let body = heartbeat_body(version, fields);
        let path = format!("/v1/heartbeat/{node_uuid}");
        let (status, text) = self.send(Method::POST, &path, &[], Some(version), Some(&body)).await?;
        if status == StatusCode::ACCEPTED || status.is_success() {
            Ok(())
        } else {
            Err(IronicError::Status {
                status: status.as_u16(),
                message: error_text(&text),
            })
        }
    }
}

async fn sleep_until_or(deadline: Instant, pause: Duration) {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(pause.min(left)).await;
}

/// Backoff before lookup attempt `n + 1`: U(interval, max(interval, min(interval·2^(n-1), max))).
pub fn lookup_backoff(policy: &LookupPolicy, attempt: u32, rng: &mut impl Rng) -> Duration {
    let lo = policy.interval.as_secs_f64();
    let grown = lo * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let hi = grown.min(policy.max_backoff.as_secs_f64()).max(lo);
    Duration::from_secs_f64(if hi > lo { rng.random_range(lo..=hi) } else { lo })
}

/// Parse a lookup answer, converting the pre-`config` format (top-level `heartbeat_timeout`).
fn parse_lookup(body: &str) -> Result<LookupResponse, String> {
    let mut value: Value = serde_json::from_str(body).map_err(|e| format!("lookup answer is not JSON: {e}"))?;
    let obj = value.as_object_mut().ok_or("lookup answer is not a JSON object")?;
    if !obj
        .get("node")
        .and_then(|n| n.get("uuid"))
        .is_some_and(Value::is_string)
    {
        return Err("lookup answer has no node.uuid".into());
    }
    if !obj.contains_key("config") {
        let timeout = obj
            .remove("heartbeat_timeout")
            .ok_or("lookup answer has neither config nor heartbeat_timeout")?;
        obj.insert("config".into(), serde_json::json!({ "heartbeat_timeout": timeout }));
    }
    serde_json::from_value(value).map_err(|e| format!("lookup answer is malformed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn fields() -> HeartbeatFields {
        HeartbeatFields {
            callback_url: "https://192.0.2.10:9999".into(),
            agent_token: Some("t".repeat(43)),
            agent_version: "0.1.0".into(),
            agent_verify_ca: Some("PEM".into()),
            status_message: Some("writing image: 10%".into()),
            step_progress: None,
        }
    }

    #[test]
    fn measured_progress_goes_with_the_status_message() {
        let fields = HeartbeatFields {
            step_progress: Some(rivet_common::ramdisk::StepProgress {
                message: "writing image: 10%".into(),
                done: Some(1),
                total: Some(10),
                unit: Some("bytes".into()),
                rate: None,
                elapsed_seconds: 2.0,
            }),
            ..fields()
        };
        let body =
            |minor| serde_json::to_value(heartbeat_body(ApiVersion::new(1, minor), &fields)).expect("serialises");
        assert_eq!(body(72)["agent_step_progress"]["total"], 10);
        assert!(body(68).get("agent_step_progress").is_none());
    }

    #[test]
    fn heartbeat_fields_follow_the_version() {
        let table: &[(ApiVersion, &[&str])] = &[
            (ApiVersion::new(1, 31), &["callback_url"]),
            (ApiVersion::new(1, 36), &["callback_url", "agent_version"]),
            (
                ApiVersion::new(1, 62),
                &["callback_url", "agent_token", "agent_version"],
            ),
            (
                ApiVersion::new(1, 68),
                &["callback_url", "agent_token", "agent_version", "agent_verify_ca"],
            ),
            (
                ApiVersion::new(1, 72),
                &[
                    "callback_url",
                    "agent_token",
                    "agent_version",
                    "agent_verify_ca",
                    "agent_status_message",
                ],
            ),
        ];
        for (version, keys) in table {
            let body = serde_json::to_value(heartbeat_body(*version, &fields())).expect("serialises");
            let got: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
            assert_eq!(&got, keys, "version {version}");
        }
        let no_token = HeartbeatFields {
            agent_token: None,
            ..fields()
        };
        let body = serde_json::to_value(heartbeat_body(ApiVersion::new(1, 68), &no_token)).expect("serialises");
        assert_eq!(body["agent_token"], Value::Null, "a missing token is sent as null");
    }

    #[test]
    fn error_text_reads_ironic_bodies() {
        let nested = r#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Invalid or missing agent token received.\", \"debuginfo\": null}"}"#;
        assert_eq!(error_text(nested), "Invalid or missing agent token received.");
        assert_eq!(error_text(r#"{"error_message": {"title": "Conflict"}}"#), "Conflict");
        assert_eq!(error_text("plain text\n"), "plain text");
    }

    #[test]
    fn lookup_backoff_is_capped_and_never_below_the_interval() {
        let policy = LookupPolicy {
            total: Duration::from_secs(600),
            interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            conflict_pauses: vec![],
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 1..40 {
            for _ in 0..50 {
                let b = lookup_backoff(&policy, attempt, &mut rng).as_secs_f64();
                let cap = 2f64.powi(attempt as i32 - 1).clamp(1.0, 60.0);
                assert!((1.0..=cap).contains(&b), "attempt {attempt}: {b}");
            }
        }
    }

    #[test]
    fn old_lookup_format_is_converted() {
        let old = r#"{"node": {"uuid": "u"}, "heartbeat_timeout": 120}"#;
        assert_eq!(parse_lookup(old).expect("converted").config.heartbeat_timeout, 120);
        assert!(parse_lookup(r#"{"node": {}}"#).is_err());
        assert!(parse_lookup("[]").is_err());
    }
}
