//! Error documents on the wire.
//!
//! * [`Fault`]: the body of every 4xx/5xx answer from the agent API (`{faultcode, faultstring}`).
//! * [`ErrorDoc`]: a serialised agent error inside a command result (`command_error`).
//! * [`IronicError`]: the body of every 4xx/5xx answer from the Ironic API, whose
//!   `error_message` is itself a JSON document encoded as a string.

use serde::{Deserialize, Serialize};

/// The whole cause chain of an error in one line ("error sending request: connection refused"),
/// for the messages either side puts in its answers, logs and `last_error`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An HTTP client's error in one line with its whole cause chain ("error sending request for
/// url (http://10.0.0.5:9999/v1/commands/): client error (Connect): tcp connect error:
/// Connection refused (os error 111)"), with every URL's credentials cut off (see
/// [`without_url_secrets`]): the text goes to logs and `last_error`.
pub fn http_error(err: &dyn std::error::Error) -> String {
    without_url_secrets(&error_chain(err))
}

/// `text` with the secrets of each `http://` or `https://` URL in it removed: the query string
/// (agent tokens travel as `?agent_token=…`, temporary image URLs carry their signature there)
/// and the user information (`user:password@`).
pub fn without_url_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|s| rest.find(s)).min() {
        out.push_str(&rest[..at]);
        let url = &rest[at..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ',' | ']'))
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        let url = url.split_once('?').map_or(url, |(base, _)| base);
        let (scheme, tail) = url.split_once("://").unwrap_or(("", url));
        let authority_end = tail.find('/').unwrap_or(tail.len());
        let tail = match tail[..authority_end].rfind('@') {
            Some(at) => &tail[at + 1..],
            None => tail,
        };
        out.push_str(scheme);
        out.push_str("://");
        out.push_str(tail);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `faultcode` value for client errors (status < 500).
pub const FAULT_CLIENT: &str = "Client";
/// `faultcode` value for server errors (status >= 500).
pub const FAULT_SERVER: &str = "Server";

/// The agent API's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// `Client` or `Server`.
    pub faultcode: String,
    /// Human-readable reason. The conductor pattern-matches "agent is busy" in it.
    pub faultstring: String,
}

impl Fault {
    /// A fault for an HTTP status: `Server` for codes >= 500, else `Client`.
    pub fn for_status(status: u16, faultstring: impl Into<String>) -> Self {
        Fault {
            faultcode: if status >= 500 { FAULT_SERVER } else { FAULT_CLIENT }.to_owned(),
            faultstring: faultstring.into(),
        }
    }
}

/// An agent error serialised into a command result: `{type, code, message, details}`.
///
/// `type` is the upstream error class name (`CleaningError`, `VersionMismatch`, ...), which the
/// conductor inspects; `details` is what operators see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDoc {
    /// Upstream error class name.
    #[serde(rename = "type")]
    pub kind: String,
    /// HTTP-like status code of the error class.
    pub code: u16,
    /// Fixed text of the error class.
    pub message: String,
    /// Text of this error instance.
    pub details: String,
}

/// The Ironic API's error body: `{"error_message": "<json text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IronicError {
    /// A JSON document encoded as a string (see [`IronicFault`]).
    pub error_message: String,
}

/// The document inside [`IronicError::error_message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IronicFault {
    /// `Client` or `Server`.
    pub faultcode: String,
    /// Human-readable reason.
    pub faultstring: String,
    /// Always `null` unless Ironic runs in debug mode.
    pub debuginfo: Option<String>,
}

impl IronicError {
    /// Wrap a fault the way Ironic does.
    pub fn new(status: u16, faultstring: impl Into<String>) -> Self {
        let fault = IronicFault {
            faultcode: if status >= 500 { FAULT_SERVER } else { FAULT_CLIENT }.to_owned(),
            faultstring: faultstring.into(),
            debuginfo: None,
        };
        IronicError {
            error_message: serde_json::to_string(&fault).expect("a struct of strings serialises"),
        }
    }

    /// The readable reason: the inner `faultstring`, else the raw `error_message` text.
    pub fn faultstring(&self) -> String {
        match serde_json::from_str::<IronicFault>(&self.error_message) {
            Ok(fault) => fault.faultstring,
            Err(_) => self.error_message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_secrets_are_cut_from_error_texts() {
        let cases = [
            (
                "error sending request for url (http://10.0.0.5:9999/v1/commands/?wait=true&agent_token=s3cret): refused",
                "error sending request for url (http://10.0.0.5:9999/v1/commands/): refused",
            ),
            (
                "https://a/b?x=1 and http://c/d?agent_token=t",
                "https://a/b and http://c/d",
            ),
            (
                "fetching (http://glance:pw@10.0.0.1:8080/i?temp_url_sig=s): 403",
                "fetching (http://10.0.0.1:8080/i): 403",
            ),
            ("http://user@h/p", "http://h/p"),
            ("no url here", "no url here"),
            ("http://plain/path", "http://plain/path"),
        ];
        for (text, want) in cases {
            assert_eq!(without_url_secrets(text), want);
        }
    }

    #[test]
    fn ironic_error_nests_a_fault() {
        let err = IronicError::new(400, "Invalid or missing agent token received.");
        assert_eq!(
            err.error_message,
            r#"{"faultcode":"Client","faultstring":"Invalid or missing agent token received.","debuginfo":null}"#
        );
        assert_eq!(err.faultstring(), "Invalid or missing agent token received.");
        assert_eq!(Fault::for_status(503, "x").faultcode, "Server");
    }
}
