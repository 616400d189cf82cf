//! `/v1/commands/`: run, list and show commands. All need `?agent_token=`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use rivet_common::command::{CommandList, CommandResult};
use serde_json::Value;

use super::error::ApiError;
use super::shared::AppState;

/// Query parameters upstream reads: `agent_token` and `wait`.
struct CommandQuery {
    token: Option<String>,
    wait: bool,
}

fn parse_query(raw: Option<String>) -> CommandQuery {
    let pairs: HashMap<String, String> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    CommandQuery {
        wait: pairs.get("wait").is_some_and(|w| w.eq_ignore_ascii_case("true")),
        token: pairs.get("agent_token").cloned(),
    }
}

/// The token is checked before anything else, as upstream does.
fn authorize(state: &AppState, query: &CommandQuery) -> Result<(), ApiError> {
    if state.agent.token_matches(query.token.as_deref()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CommandList>, ApiError> {
    authorize(&state, &parse_query(raw))?;
    Ok(Json(CommandList {
        commands: state.executor.list(),
    }))
}

pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CommandResult>, ApiError> {
    let query = parse_query(raw);
    authorize(&state, &query)?;
    Ok(Json(state.executor.get(&id, query.wait).await?))
}

pub(super) async fn run(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Json<CommandResult>, ApiError> {
    let query = parse_query(raw);
    authorize(&state, &query)?;
    // Parsed as JSON whatever the Content-Type says, like upstream.
    let body: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let (Some(Value::String(name)), Some(Value::Object(params))) = (body.get("name"), body.get("params")) else {
        return Err(ApiError::BadCommandBody);
    };
    let result = state.executor.execute(name, params.clone(), query.wait).await?;
    Ok(Json(result))
}
