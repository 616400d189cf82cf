//! The Redfish client that the `redfish` power and management interfaces and the
//! `redfish-virtual-media` boot interface share: a native client (HTTP basic authentication)
//! for a node's BMC, as Ironic's `redfish` hardware type drives it.
//!
//! `driver_info`: `redfish_address` (required; `https://host[:port]`, `http://...`, or a bare
//! host meaning https), `redfish_system_id` (the system's path, e.g.
//! `/redfish/v1/Systems/1`; optional when the BMC has exactly one system), `redfish_username`,
//! `redfish_password`, `redfish_verify_ca` (`true` — the host's CA bundle —, `false`, or the path
//! of a PEM bundle; default `true`).

use std::time::Duration;

use serde_json::Value;

use crate::drivers::DriverError;
use crate::model::NodeRecord;

/// Longest one Redfish request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn text(node: &NodeRecord, key: &str) -> Option<String> {
    node.driver_info
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// How the BMC's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VerifyCa {
    System,
    Off,
    Bundle(String),
}

fn verify_ca(node: &NodeRecord) -> Result<VerifyCa, DriverError> {
    match node.driver_info.get("redfish_verify_ca") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => Ok(VerifyCa::System),
        Some(Value::Bool(false)) => Ok(VerifyCa::Off),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(VerifyCa::System),
            "false" | "no" | "0" | "off" => Ok(VerifyCa::Off),
            _ if s.starts_with('/') => Ok(VerifyCa::Bundle(s.clone())),
            _ => Err(DriverError::Invalid(format!(
                "Invalid value {s:?} for redfish_verify_ca: a boolean or the absolute path of a CA bundle"
            ))),
        },
        Some(other) => Err(DriverError::Invalid(format!(
            "Invalid value {other} for redfish_verify_ca: a boolean or the absolute path of a CA bundle"
        ))),
    }
}

/// The BMC's base URL from `redfish_address`.
fn base_url(node: &NodeRecord) -> Result<url::Url, DriverError> {
    let address = text(node, "redfish_address").ok_or_else(|| {
        DriverError::Invalid(format!(
            "Missing the following Redfish properties in node {} driver_info: redfish_address",
            node.uuid
        ))
    })?;
    let with_scheme = if address.contains("://") {
        address.clone()
    } else {
        format!("https://{address}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| DriverError::Invalid(format!("Invalid Redfish address {address:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(DriverError::Invalid(format!(
            "Invalid Redfish address {address:?}: it must be an http(s) URL or a host name"
        )));
    }
    Ok(url)
}

fn tls_config(verify: &VerifyCa) -> Result<rustls::ClientConfig, DriverError> {
    let invalid = |e: String| DriverError::Invalid(format!("redfish_verify_ca: {e}"));
    match verify {
        VerifyCa::Off => Ok(crate::tls::any_certificate()),
        VerifyCa::System => crate::tls::system_roots().map_err(invalid),
        VerifyCa::Bundle(path) => {
            let pem = std::fs::read(path).map_err(|e| invalid(format!("reading {path}: {e}")))?;
            crate::tls::trusting(&pem, path, false).map_err(invalid)
        }
    }
}

/// Check the `redfish_*` keys of `driver_info` without contacting the BMC.
pub fn check_driver_info(node: &NodeRecord) -> Result<(), DriverError> {
    base_url(node)?;
    verify_ca(node).map(|_| ())
}

/// A client of one node's BMC.
#[derive(Debug, Clone)]
pub struct Redfish {
    http: reqwest::Client,
    base: url::Url,
    username: Option<String>,
    password: Option<String>,
    system_id: Option<String>,
}

/// The `error` body of a Redfish failure, as readable text.
fn redfish_message(body: &str) -> String {
    let Ok(doc) = serde_json::from_str::<Value>(body) else {
        return body.trim().chars().take(300).collect();
    };
    let error = &doc["error"];
    let extended: Vec<&str> = error["@Message.ExtendedInfo"]
        .as_array()
        .map(|infos| infos.iter().filter_map(|i| i["Message"].as_str()).collect())
        .unwrap_or_default();
    if !extended.is_empty() {
        return extended.join("; ");
    }
    error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.trim().chars().take(300).collect())
}

impl Redfish {
    /// The client for a node's `driver_info`.
    pub fn for_node(node: &NodeRecord) -> Result<Self, DriverError> {
        let base = base_url(node)?;
        let tls = tls_config(&verify_ca(node)?)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DriverError::Failed(format!("Redfish client: {e}")))?;
        Ok(Redfish {
            http,
            base,
            username: text(node, "redfish_username"),
            password: text(node, "redfish_password"),
            system_id: text(node, "redfish_system_id"),
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, DriverError> {
        self.base
            .join(path)
            .map_err(|e| DriverError::Invalid(format!("Invalid Redfish path {path:?}: {e}")))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<String, DriverError> {
        let url = self.url(path)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header("OData-Version", "4.0");
        if let Some(user) = &self.username {
            request = request.basic_auth(user, self.password.as_deref());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let what = format!("Redfish {method} {url}");
        let response = request.send().await.map_err(|e| {
            DriverError::Failed(format!(
                "{what}: the BMC is unreachable: {}",
                rivet_common::error::http_error(&e)
            ))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| DriverError::Failed(format!("{what}: reading the answer: {e}")))?;
        if !status.is_success() {
            return Err(DriverError::Failed(format!(
                "{what} failed with HTTP {}: {}",
                status.as_u16(),
                redfish_message(&text)
            )));
        }
        Ok(text)
    }

    /// GET a resource.
    pub async fn get(&self, path: &str) -> Result<Value, DriverError> {
        let text = self.send(reqwest::Method::GET, path, None).await?;
        serde_json::from_str(&text)
            .map_err(|e| DriverError::Failed(format!("Redfish GET {path}: the BMC answered invalid JSON: {e}")))
    }

    /// POST an action.
    pub async fn post(&self, path: &str, body: &Value) -> Result<(), DriverError> {
        self.send(reqwest::Method::POST, path, Some(body)).await.map(|_| ())
    }

    /// PATCH a resource.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<(), DriverError> {
        self.send(reqwest::Method::PATCH, path, Some(body)).await.map(|_| ())
    }

    /// The node's system: `redfish_system_id`, else the BMC's only system.
    pub async fn system_path(&self) -> Result<String, DriverError> {
        if let Some(id) = &self.system_id {
            return Ok(id.clone());
        }
        let systems = self.get("/redfish/v1/Systems").await?;
        let members: Vec<&str> = systems["Members"]
            .as_array()
            .map(|m| m.iter().filter_map(|s| s["@odata.id"].as_str()).collect())
            .unwrap_or_default();
        match members.as_slice() {
            [only] => Ok((*only).to_owned()),
            [] => Err(DriverError::Failed("The BMC lists no system".into())),
            many => Err(DriverError::Invalid(format!(
                "The BMC has {} systems ({}): set redfish_system_id",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// The node's system resource and its path.
    pub async fn system(&self) -> Result<(String, Value), DriverError> {
        let path = self.system_path().await?;
        let doc = self.get(&path).await?;
        Ok((path, doc))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(info: Value) -> NodeRecord {
        let mut node = NodeRecord {
            uuid: "n1".into(),
            ..Default::default()
        };
        if let Value::Object(map) = info {
            node.driver_info.extend(map);
        }
        node
    }

    #[test]
    fn addresses_default_to_https_and_bad_ones_are_named() {
        let url = base_url(&node(json!({"redfish_address": "bmc.example:8443"}))).expect("url");
        assert_eq!(url.as_str(), "https://bmc.example:8443/");
        let url = base_url(&node(json!({"redfish_address": "http://127.0.0.1:8000"}))).expect("url");
        assert_eq!(url.as_str(), "http://127.0.0.1:8000/");
        let missing = base_url(&node(json!({}))).expect_err("missing");
        assert!(missing.to_string().contains("redfish_address"), "{missing}");
        let wrong = base_url(&node(json!({"redfish_address": "ftp://bmc"}))).expect_err("scheme");
        assert!(wrong.to_string().contains("ftp://bmc"), "{wrong}");
    }

    #[test]
    fn verify_ca_takes_booleans_strings_and_paths() {
        assert_eq!(verify_ca(&node(json!({}))), Ok(VerifyCa::System));
        assert_eq!(verify_ca(&node(json!({"redfish_verify_ca": false}))), Ok(VerifyCa::Off));
        assert_eq!(
            verify_ca(&node(json!({"redfish_verify_ca": "False"}))),
            Ok(VerifyCa::Off)
        );
        assert_eq!(
            verify_ca(&node(json!({"redfish_verify_ca": "/etc/bmc-ca.pem"}))),
            Ok(VerifyCa::Bundle("/etc/bmc-ca.pem".into()))
        );
        assert!(verify_ca(&node(json!({"redfish_verify_ca": "maybe"}))).is_err());
    }

    #[test]
    fn redfish_errors_are_read_from_extended_info() {
        let body = r#"{"error": {"code": "Base.1.0.GeneralError", "message": "general",
            "@Message.ExtendedInfo": [{"Message": "The image could not be fetched."}]}}"#;
        assert_eq!(redfish_message(body), "The image could not be fetched.");
        assert_eq!(redfish_message(r#"{"error": {"message": "nope"}}"#), "nope");
        assert_eq!(redfish_message("Internal Server Error\n"), "Internal Server Error");
    }
}
