//! `/v1/nodes/{node}/traits` (API 1.37): the node's traits, the names deploy templates and
//! allocations match on. Stored with the node (`traits`, shown in the node document).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, RequestContext, parse_body};
use crate::engine::EngineError;
use crate::model::NodeRecord;

/// Most traits a node may have (Ironic `MAX_TRAITS_PER_NODE`).
pub const MAX_TRAITS: usize = 50;

/// Namespaces of the standard traits (the `os_traits` library); anything else must be custom.
const STANDARD_PREFIXES: &[&str] = &["COMPUTE_", "HW_", "MISC_", "OWNER_", "STORAGE_"];

/// Whether `trait_` is a valid trait name: at most 255 characters of `A-Z`, `0-9` and `_`,
/// starting with `CUSTOM_` or a standard namespace.
pub fn valid_trait(trait_: &str) -> bool {
    trait_.len() <= 255
        && trait_
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && std::iter::once("CUSTOM_")
            .chain(STANDARD_PREFIXES.iter().copied())
            .any(|p| trait_.len() > p.len() && trait_.starts_with(p))
}

fn invalid(trait_: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "Invalid trait {trait_:?}. A valid trait must be no longer than 255 characters. Standard traits are defined in the os_traits library. A custom trait must start with the prefix CUSTOM_ and use the following characters: A-Z, 0-9 and _"
    ))
}

/// The node's traits.
pub fn traits_of(node: &NodeRecord) -> Vec<String> {
    node.attr("traits")
        .as_array()
        .map(|list| list.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Change the node's traits under its lock with `change`, which may refuse; saved after.
async fn change_traits(
    state: &AppState,
    ident: &str,
    change: impl FnOnce(&mut Vec<String>, &str) -> Result<(), ApiError>,
) -> Result<StatusCode, ApiError> {
    let conductor = &state.conductor;
    let node = conductor.node(ident).await?;
    let lock = conductor.locks.acquire(&node.uuid).await.map_err(EngineError::from)?;
    let outcome = async {
        let mut node = conductor.node(&node.uuid).await?;
        let mut traits = traits_of(&node);
        change(&mut traits, &node.uuid)?;
        // Ironic lists a node's traits in the order of its trait table's key: sorted.
        traits.sort();
        if traits.len() > MAX_TRAITS {
            return Err(ApiError::BadRequest(format!(
                "Could not modify traits for node {}: would exceed the maximum of {MAX_TRAITS}",
                node.uuid
            )));
        }
        node.attrs.insert("traits".into(), json!(traits));
        conductor.save(&mut node).await?;
        Ok(())
    }
    .await;
    lock.release().await?;
    outcome.map(|()| StatusCode::NO_CONTENT)
}

/// Below 1.37 the node controller has no traits: it refuses to write the node (405) and finds
/// nothing to delete (404).
fn before_traits(ctx: &RequestContext, write: bool) -> Result<(), ApiError> {
    if ctx.version.minor >= 37 {
        return Ok(());
    }
    Err(if write {
        ApiError::NoMethod
    } else {
        ApiError::NotFound("The resource could not be found.".into())
    })
}

/// `GET .../traits`: `{"traits": [...]}`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = state.conductor.node(&ident).await?;
    // Below 1.37 Ironic reads the path as the node with `fields=traits`: not acceptable.
    if ctx.version.minor < 37 {
        return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
    }
    Ok(Json(json!({"traits": traits_of(&node)})))
}

/// Body of `PUT .../traits`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetTraits {
    traits: Vec<String>,
}

/// `PUT .../traits`: replace them all.
pub(super) async fn set(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    before_traits(&ctx, true)?;
    let request: SetTraits = parse_body(&body)?;
    if let Some(bad) = request.traits.iter().find(|t| !valid_trait(t)) {
        return Err(invalid(bad));
    }
    change_traits(&state, &ident, |traits, _| {
        traits.clear();
        for t in request.traits {
            if !traits.contains(&t) {
                traits.push(t);
            }
        }
        Ok(())
    })
    .await
}

/// `PUT .../traits/{trait}`: add one.
pub(super) async fn add(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, trait_)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    before_traits(&ctx, true)?;
    if !valid_trait(&trait_) {
        return Err(invalid(&trait_));
    }
    change_traits(&state, &ident, |traits, _| {
        if !traits.contains(&trait_) {
            traits.push(trait_);
        }
        Ok(())
    })
    .await
}

/// `DELETE .../traits`: remove them all.
pub(super) async fn clear(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    before_traits(&ctx, false)?;
    change_traits(&state, &ident, |traits, _| {
        traits.clear();
        Ok(())
    })
    .await
}

/// `DELETE .../traits/{trait}`: remove one; 404 when the node does not have it.
pub(super) async fn remove(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((ident, trait_)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    before_traits(&ctx, false)?;
    change_traits(&state, &ident, |traits, node| {
        let before = traits.len();
        traits.retain(|t| *t != trait_);
        if traits.len() == before {
            return Err(ApiError::NotFound(format!("Node {node} doesn't have a trait {trait_}")));
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::valid_trait;

    #[test]
    fn traits_are_custom_or_standard_upper_case_names() {
        assert!(valid_trait("CUSTOM_GOLD"));
        assert!(valid_trait("HW_CPU_X86_AVX2"));
        assert!(!valid_trait("CUSTOM_"));
        assert!(!valid_trait("custom_gold"));
        assert!(!valid_trait("GOLD"));
        assert!(!valid_trait(&format!("CUSTOM_{}", "A".repeat(250))));
    }
}
