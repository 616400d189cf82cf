//! Log output of both programs: human text (the default) or one JSON object per line
//! (`--log-format json`) for log collectors. In JSON each line carries its event's fields at
//! the top level (`node`, `request_id`, ...) beside `timestamp`, `level`, `target` and
//! `message`, with the fields of the span it ran in (an API request's `request_id`) under
//! `span`.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-01T10:00:00Z  INFO target: message key=value`, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: use text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Install the global subscriber: `RUST_LOG` if set, else `default_filter` (an `EnvFilter`
/// directive such as `info,sqlx=warn`), in `format`, to standard error.
pub fn init(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(" TEXT ".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!(
            "yaml"
                .parse::<LogFormat>()
                .expect_err("unknown")
                .contains("text or json")
        );
        assert_eq!(LogFormat::Json.to_string(), "json");
    }
}
