//! Posting the inspection data (IPA 13 `inspector.call_inspector`).
//!
//! `POST <callback URL>` with the data as JSON, `Content-Type` and `Accept` JSON, the global
//! request id when configured, and no API version header: Ironic then serves its
//! inspector-compatible form, answering `{"uuid": "<node>"}` without issuing an agent token
//! (`ironic/api/controllers/v1/ramdisk.py`, `ContinueInspectionController.post`), so the
//! lookup that follows still receives the token.
//!
//! Retry policy (upstream's): the URLs are tried in order and only a connection failure moves
//! on to the next; a connection failure of the last URL, a 5xx or a 409 is retried after
//! [`InspectionRetry::pause`], [`InspectionRetry::attempts`] times in all; any other 4xx is
//! final. Unlike upstream, a timeout is retried like a connection failure (upstream lets a
//! read timeout escape and the agent process dies), and running out of attempts is an error the
//! agent logs before carrying on to lookup (upstream's agent exits and is restarted).

use reqwest::StatusCode;
use rivet_common::version::REQUEST_ID_HEADER;
use serde_json::Value;
use url::Url;

use crate::config::InspectionRetry;

/// Why the data could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The endpoint refused the data (a final 4xx); upstream's message.
    #[error("error {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The endpoint's message.
        message: String,
    },
    /// No attempt got a usable answer.
    #[error("the inspection data could not be posted ({attempts} attempts); last problem: {last}")]
    Unreachable {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: String,
    },
    /// The endpoint accepted the data but its answer is not JSON.
    #[error("unusable answer from the inspection endpoint: {0}")]
    BadAnswer(String),
}

/// One attempt's failure that is worth another attempt.
struct Transient(String);

/// Post `body` (JSON text) to the first of `urls` that answers, retrying within `retry`; the
/// answer's JSON document.
///
/// # Errors
/// [`PostError::Refused`] for a final 4xx answer, [`PostError::Unreachable`] when
/// every attempt failed, [`PostError::BadAnswer`] when a 2xx/3xx answer is not JSON.
pub async fn post(
    http: &reqwest::Client,
    urls: &[Url],
    body: &[u8],
    request_id: Option<&str>,
    retry: &InspectionRetry,
) -> Result<Value, PostError> {
    let attempts = retry.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let problem = match post_once(http, urls, body, request_id).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(final_error)) => return Err(final_error),
            Err(Transient(problem)) => problem,
        };
        if attempt >= attempts {
            return Err(PostError::Unreachable {
                attempts,
                last: problem,
            });
        }
        let pause = retry.pause(attempt);
        tracing::warn!(attempt, reason = %problem, ?pause, "posting the inspection data failed; retrying");
        tokio::time::sleep(pause).await;
    }
}

/// One attempt over the URLs: the answer, a final error, or a transient problem.
async fn post_once(
    http: &reqwest::Client,
    urls: &[Url],
    body: &[u8],
    request_id: Option<&str>,
) -> Result<Result<Value, PostError>, Transient> {
    let mut answer = None;
    for (i, url) in urls.iter().enumerate() {
        tracing::info!(url = %url, "posting the inspection data");
        let mut request = http
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_vec());
        if let Some(id) = request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        match request.send().await {
            Ok(response) => {
                answer = Some(response);
                break;
            }
            Err(e) => {
                let reason = rivet_common::error::http_error(&e);
                if i + 1 == urls.len() {
                    return Err(Transient(format!("{url}: {reason}")));
                }
                tracing::warn!(url = %url, error = %reason, "connection error; trying the next URL");
            }
        }
    }
    let Some(response) = answer else {
        return Ok(Err(PostError::Unreachable {
            attempts: 0,
            last: "no inspection URL configured".into(),
        }));
    };
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| Transient(format!("reading the answer: {}", rivet_common::error::http_error(&e))))?;
    if status.is_server_error() || status == StatusCode::CONFLICT {
        return Err(Transient(format!(
            "answered {}: {}",
            status.as_u16(),
            crate::ironic::error_text(&text)
        )));
    }
    if status.is_client_error() {
        return Ok(Err(PostError::Refused {
            status: status.as_u16(),
            message: crate::ironic::error_text(&text),
        }));
    }
    Ok(serde_json::from_str(&text).map_err(|e| PostError::BadAnswer(format!("not JSON: {e}"))))
}
