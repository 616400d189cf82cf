//! The few Ironic API calls the fleet makes, the same against Ironic and rivet-conductor.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

/// The microversion every call asks for: 1.22 brought the ramdisk API the agents use, 1.72 is
/// the highest Ironic 39 and Rivet both serve for what the fleet reads (`fields`, `marker`).
pub const API_VERSION: &str = "1.72";

/// A client of one Ironic API endpoint (`http://host:port`, no trailing slash).
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// The endpoint.
    pub base: String,
}

impl Api {
    /// A client of `base` with a 300 s request timeout (a loaded Ironic has taken over 60 s to
    /// answer one provision verb).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .context("HTTP client")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `method path` with an optional JSON body: the JSON answer (`null` when empty). Errors:
    /// transport errors, and any status above 299 with the API's own message.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, value) = self.request(method.clone(), path, body).await?;
        if status >= 300 {
            bail!("{method} {}{path}: {status}: {}", self.base, error_message(&value));
        }
        Ok(value)
    }

    /// As [`Api::call`], but a 409 answer (a node locked by the conductor's own work) is retried
    /// every 2 s for up to 2 minutes. python-ironicclient gives up after 5 tries; a loaded Ironic
    /// holds a node's lock for longer (seen: over 35 s with 100 nodes on 2 cores), and a
    /// benchmark that gave up would measure the client, not the conductor.
    pub async fn call_retrying(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        for _ in 0..60 {
            let (status, value) = self.request(method.clone(), path, body).await?;
            if status != 409 {
                if status >= 300 {
                    bail!("{method} {}{path}: {status}: {}", self.base, error_message(&value));
                }
                return Ok(value);
            }
            tracing::debug!(path, answer = %error_message(&value), "conflict; retrying in 2 s");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        self.call(method, path, body).await
    }

    /// `method path`: the status and JSON answer, whatever the status. Errors: transport only.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-OpenStack-Ironic-API-Version", API_VERSION);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request
            .send()
            .await
            .with_context(|| format!("{method} {}{path}", self.base))?;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// Every node with the listed `fields` (comma-separated), page by page (1000 a page).
    pub async fn nodes(&self, fields: &str) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut path = format!("/v1/nodes?fields=uuid,{fields}&limit=1000");
            if let Some(marker) = &marker {
                path.push_str(&format!("&marker={marker}"));
            }
            let page = self.call(Method::GET, &path, None).await?;
            let nodes = page["nodes"].as_array().cloned().unwrap_or_default();
            let full = nodes.len() == 1000;
            marker = nodes.last().and_then(|n| n["uuid"].as_str()).map(str::to_owned);
            all.extend(nodes);
            if !full || marker.is_none() {
                return Ok(all);
            }
        }
    }
}

/// The message of an Ironic error body (`{"error_message": "{\"faultstring\": …}"}`), or the
/// body itself.
fn error_message(value: &Value) -> String {
    value["error_message"]
        .as_str()
        .and_then(|inner| serde_json::from_str::<Value>(inner).ok())
        .and_then(|inner| inner["faultstring"].as_str().map(str::to_owned))
        .unwrap_or_else(|| value.to_string())
}
