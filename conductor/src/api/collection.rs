//! Listing the resources stored as documents (port groups, volume connectors and targets) as
//! Ironic lists its collections: `marker`, `limit` with a `next` link, `sort_key`, `sort_dir`,
//! `fields`, `detail` (Ironic's `api/controllers/v1/collection.py` and `utils.py`).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{ApiError, RequestContext, fields_param};
use crate::model::StoredResource;

/// What a listing shows and how its `next` link reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Listing {
    /// The collection's path under `/v1/` in `next` links (`portgroups`, `volume/connectors`).
    pub path: &'static str,
    /// The key of the list in the answer (`portgroups`, `connectors`, `targets`).
    pub key: &'static str,
    /// Fields of a short listing (links are always shown); empty: every field.
    pub short: &'static [&'static str],
    /// Fields Ironic refuses to sort by.
    pub unsortable: &'static [&'static str],
}

/// A boolean as oslo's `bool_from_string(strict=True)` reads it: a JSON boolean, or one of
/// true/false, 1/0, yes/no, on/off, y/n, t/f in any case.
pub(super) fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "y" | "t" => Some(true),
            "false" | "0" | "no" | "off" | "n" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `sort_dir` of a listing's query: `asc` (the default) or `desc`. Errors: 400 otherwise.
pub(super) fn sort_dir(query: &HashMap<String, String>) -> Result<&str, ApiError> {
    let sort_dir = query.get("sort_dir").map_or("asc", String::as_str);
    if ["asc", "desc"].contains(&sort_dir) {
        Ok(sort_dir)
    } else {
        Err(ApiError::BadRequest(format!(
            "Invalid sort direction: {sort_dir}. Acceptable values are 'asc' or 'desc'"
        )))
    }
}

/// `limit` of a listing's query: a positive count, or none. Errors: 400 otherwise.
pub(super) fn limit(query: &HashMap<String, String>) -> Result<Option<usize>, ApiError> {
    query
        .get("limit")
        .map(|text| {
            text.parse::<i64>()
                .ok()
                .filter(|l| *l > 0)
                .and_then(|l| usize::try_from(l).ok())
                .ok_or_else(|| ApiError::BadRequest("Limit must be positive".into()))
        })
        .transpose()
}

fn truthy(text: &str) -> Result<bool, ApiError> {
    boolean(&json!(text)).ok_or_else(|| ApiError::BadRequest(format!("Invalid value for detail: {text}")))
}

/// The answer for `records` (already filtered) under `query`. `show(record, fields)` renders
/// one record at the request's version, `None` meaning every field. `detail_path` is true for
/// `.../detail`.
///
/// Errors: 400 for a bad limit, sort key or direction, an unknown field, or `fields` with
/// `detail`; 404 for an unknown marker.
pub(super) fn list(
    ctx: &RequestContext,
    listing: &Listing,
    label: &str,
    mut records: Vec<StoredResource>,
    query: &HashMap<String, String>,
    detail_path: bool,
    show: impl Fn(&StoredResource, Option<&[String]>) -> Value,
) -> Result<Value, ApiError> {
    let fields = fields_param(query.get("fields"));
    let detail = match query.get("detail") {
        Some(d) => truthy(d)?,
        None => false,
    };
    if detail && fields.is_some() {
        return Err(ApiError::BadRequest(
            "Can not specify ?detail=True and fields in the same request.".into(),
        ));
    }
    // The fields a record of this version has, to check `fields` and `sort_key` against.
    let known: Vec<String> = records
        .first()
        .map(|r| show(r, None))
        .or_else(|| Some(json!({})))
        .and_then(|d| d.as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    if let Some(wanted) = &fields
        && !records.is_empty()
    {
        let unknown: Vec<&str> = wanted
            .iter()
            .filter(|f| !known.contains(f))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "Field(s) \"{}\" are not valid",
                unknown.join(", ")
            )));
        }
    }
    let sort_key = query.get("sort_key").map_or("id", String::as_str);
    let sort_dir = sort_dir(query)?;
    if listing.unsortable.contains(&sort_key)
        || (sort_key != "id" && !records.is_empty() && !known.iter().any(|k| k == sort_key))
    {
        return Err(ApiError::BadRequest(format!(
            "The sort_key value {sort_key} is an invalid field for sorting"
        )));
    }
    if sort_key != "id" {
        // Each record rendered once for its key, not once per comparison.
        let mut keyed: Vec<(Value, StoredResource)> = records
            .into_iter()
            .map(|r| (show(&r, None).get(sort_key).cloned().unwrap_or(Value::Null), r))
            .collect();
        keyed.sort_by(|a, b| super::node_list::compare(&a.0, &b.0));
        records = keyed.into_iter().map(|(_, r)| r).collect();
    }
    if sort_dir == "desc" {
        records.reverse();
    }
    if let Some(marker) = query.get("marker") {
        let at = records
            .iter()
            .position(|r| &r.uuid == marker)
            .ok_or_else(|| ApiError::NotFound(format!("{label} {marker} could not be found.")))?;
        records.drain(..=at);
    }
    let limit = limit(query)?;
    if let Some(limit) = limit {
        records.truncate(limit);
    }
    let short: Option<Vec<String>> = if detail_path || detail || listing.short.is_empty() && fields.is_none() {
        None
    } else {
        Some(fields.unwrap_or_else(|| listing.short.iter().map(|f| (*f).to_owned()).collect()))
    };
    let mut shown: Vec<String> = short.clone().unwrap_or_default();
    if !shown.is_empty() {
        shown.push("links".into());
    }
    let items: Vec<Value> = records
        .iter()
        .map(|r| show(r, (!shown.is_empty()).then_some(shown.as_slice())))
        .collect();
    let mut doc = json!({ listing.key: items });
    if let (Some(limit), Some(last)) = (limit, records.last())
        && records.len() == limit
    {
        let path = if detail_path {
            format!("{}/detail", listing.path)
        } else {
            listing.path.to_owned()
        };
        let mut params = format!("sort_key={sort_key}&sort_dir={sort_dir}&");
        if let Some(d) = query.get("detail") {
            params.push_str(&format!("detail={}&", if truthy(d)? { "True" } else { "False" }));
        }
        if let Some(fields) = &short {
            params.push_str(&format!("fields={}&", fields.join(",")));
        }
        doc["next"] = json!(format!(
            "{}/v1/{path}?{params}limit={limit}&marker={}",
            ctx.base, last.uuid
        ));
    }
    Ok(doc)
}

/// One stored resource as the API shows it at `ctx`'s version: each field of `table` (name,
/// first minor version) that the version has and `fields` asks for, with `links` to
/// `/v1/<path>/<uuid>` and, for each of `sub_links`, links to `/v1/<path>/<uuid>/<sub>`.
pub(super) fn render(
    resource: &StoredResource,
    table: &[(&str, u32)],
    ctx: &RequestContext,
    path: &str,
    sub_links: &[&str],
    fields: Option<&[String]>,
) -> Value {
    let mut doc = rivet_common::JsonObject::new();
    for (field, minor) in table {
        if ctx.version.minor < *minor || fields.is_some_and(|f| !f.iter().any(|w| w == field)) {
            continue;
        }
        let value = match *field {
            "uuid" => json!(resource.uuid),
            "node_uuid" => json!(resource.node_uuid),
            "created_at" => json!(resource.created_at),
            "updated_at" => json!(resource.updated_at),
            "links" => crate::model::links(&ctx.base, &format!("{path}/{}", resource.uuid)),
            sub if sub_links.contains(&sub) => {
                crate::model::links(&ctx.base, &format!("{path}/{}/{sub}", resource.uuid))
            }
            other => resource.get(other),
        };
        doc.insert((*field).to_owned(), value);
    }
    Value::Object(doc)
}
