//! The node collection, `GET /v1/nodes` and `/v1/nodes/detail`: filters, sorting and paging
//! as Ironic's node controller does them (`get_all`), including its microversion gates and the
//! shape of the `next` link.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Value, json};

use super::{ApiError, RequestContext};
use crate::model::{NodeRecord, node_field_known};

/// Fields a short listing shows, in the order Ironic writes them in `next` links.
const DEFAULT_FIELDS: &[&str] = &[
    "instance_uuid",
    "maintenance",
    "power_state",
    "provision_state",
    "uuid",
    "name",
];

/// Filters with the microversion they need (406 below it).
const GATED_FILTERS: &[(&str, u32)] = &[
    ("provision_state", 9),
    ("driver", 16),
    ("resource_class", 21),
    ("fault", 42),
    ("conductor_group", 46),
    ("conductor", 49),
    ("owner", 50),
    ("lessee", 65),
    ("shard", 82),
    ("sharded", 82),
    ("include_children", 83),
    ("parent_node", 83),
];

/// Query parameters without a version gate.
const UNGATED: &[&str] = &[
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "maintenance",
    "associated",
    "instance_uuid",
    "chassis_uuid",
    "project",
    "retired",
    "description_contains",
];

/// Fields Ironic refuses to sort on.
const UNSORTABLE: &[&str] = &[
    "properties",
    "driver_info",
    "extra",
    "instance_info",
    "driver_internal_info",
    "clean_step",
    "deploy_step",
    "raid_config",
    "target_raid_config",
    "traits",
    "network_data",
    "service_step",
];

/// Fields that are links or documents, not columns: not sortable either.
const NOT_COLUMNS: &[&str] = &["links", "ports", "portgroups", "states", "volume", "conductor"];

/// Most nodes one page holds (Ironic `[api]max_limit`).
pub const MAX_LIMIT: usize = 1000;

/// What one listing asks for, checked.
#[derive(Debug)]
pub struct Listing {
    /// `detail` listing (`/detail` or `?detail=true`).
    pub detail: bool,
    /// The fields a short listing shows, as asked (`None`: the default ones).
    pub fields: Option<Vec<String>>,
    sort_key: String,
    sort_dir: String,
    limit: Option<usize>,
    marker: Option<String>,
    query: HashMap<String, String>,
}

fn not_acceptable(minor: u32) -> ApiError {
    ApiError::NotAcceptable(format!(
        "Request not acceptable. The minimal required API version should be 1.{minor}"
    ))
}

fn truthy(value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "y" | "t" => Ok(true),
        "false" | "0" | "no" | "off" | "n" | "f" => Ok(false),
        _ => Err(ApiError::BadRequest(format!("Invalid boolean value: {value}"))),
    }
}

impl Listing {
    /// Check the query of a listing; `detail_path` for `/v1/nodes/detail`.
    ///
    /// # Errors
    /// 406 for a parameter the microversion does not have, 400 for an unknown parameter, a bad
    /// value or a sort key Ironic refuses.
    pub fn parse(ctx: &RequestContext, query: HashMap<String, String>, detail_path: bool) -> Result<Self, ApiError> {
        let minor = ctx.version.minor;
        let mut unexpected: Vec<&str> = Vec::new();
        for key in query.keys() {
            let key = key.as_str();
            if let Some((_, needed)) = GATED_FILTERS.iter().find(|(k, _)| *k == key) {
                if minor < *needed {
                    return Err(not_acceptable(*needed));
                }
            } else if key == "instance_name" {
                if minor < 104 {
                    return Err(ApiError::NotAcceptable(
                        "instance_name is not acceptable in this API version".into(),
                    ));
                }
            } else if (key == "fields" || key == "detail") && !detail_path {
                // Checked below.
            } else if !UNGATED.contains(&key) {
                unexpected.push(key);
            }
        }
        if !unexpected.is_empty() {
            unexpected.sort_unstable();
            return Err(ApiError::BadRequest(format!(
                "Unexpected arguments: {}",
                unexpected.join(", ")
            )));
        }
        let detail = match query.get("detail") {
            Some(d) if !detail_path => {
                let asked = truthy(d)?;
                if minor < 43 {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid query parameter ?detail={d} received."
                    )));
                }
                asked
            }
            _ => detail_path,
        };
        let fields = match query.get("fields") {
            Some(raw) if !detail_path => {
                if minor < 8 {
                    return Err(ApiError::NotAcceptable("Request not acceptable.".into()));
                }
                if detail {
                    return Err(ApiError::BadRequest(
                        "Can not specify ?detail=True and fields in the same request.".into(),
                    ));
                }
                let mut fields: Vec<String> = Vec::new();
                for f in raw
                    .split(',')
                    .map(|f| f.trim().to_ascii_lowercase())
                    .filter(|f| !f.is_empty())
                {
                    if !node_field_known(&f, ctx.version) {
                        return Err(field_refused(&f));
                    }
                    if !fields.contains(&f) {
                        fields.push(f);
                    }
                }
                Some(fields)
            }
            _ => None,
        };
        let sort_key = query.get("sort_key").cloned().unwrap_or_else(|| "id".into());
        if UNSORTABLE.contains(&sort_key.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "The sort_key value \"{sort_key}\" is an invalid field for sorting"
            )));
        }
        if sort_key != "id" && !node_field_known(&sort_key, ctx.version) {
            return Err(if node_field_known(&sort_key, super::MAX_VERSION) {
                ApiError::NotAcceptable("Request not acceptable.".into())
            } else {
                ApiError::BadRequest(format!(
                    "The sort_key value \"{sort_key}\" is an invalid field for sorting"
                ))
            });
        }
        if NOT_COLUMNS.contains(&sort_key.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "The sort_key value \"{sort_key}\" is an invalid field for sorting"
            )));
        }
        let sort_dir = query.get("sort_dir").cloned().unwrap_or_else(|| "asc".into());
        if !["asc", "desc"].contains(&sort_dir.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "Invalid sort direction: {sort_dir}. Acceptable values are 'asc' or 'desc'"
            )));
        }
        let limit = match query.get("limit") {
            None => None,
            Some(l) => match l.parse::<i64>() {
                Ok(n) if n > 0 => Some(usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)),
                Ok(_) => return Err(ApiError::BadRequest("Limit must be positive".into())),
                Err(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid limit {l:?}: expected a positive integer"
                    )));
                }
            },
        };
        Ok(Listing {
            detail,
            fields,
            sort_key,
            sort_dir,
            limit,
            marker: query.get("marker").cloned(),
            query,
        })
    }

    fn keeps(&self, node: &NodeRecord) -> Result<bool, ApiError> {
        let q = &self.query;
        let attr = |name: &str| node.attr(name);
        let equal = |name: &str, value: &Value| q.get(name).is_none_or(|want| value.as_str() == Some(want.as_str()));
        let keep = q.get("provision_state").is_none_or(|s| *s == node.provision_state)
            && q.get("driver").is_none_or(|d| *d == node.driver)
            && equal("resource_class", &attr("resource_class"))
            && equal("fault", &json!(node.fault))
            && equal("conductor_group", &attr("conductor_group"))
            && equal("owner", &attr("owner"))
            && equal("lessee", &attr("lessee"))
            && equal("instance_uuid", &attr("instance_uuid"))
            && equal("instance_name", &attr("instance_name"))
            && equal("chassis_uuid", &attr("chassis_uuid"))
            && q.get("project").is_none_or(|p| {
                attr("owner").as_str() == Some(p.as_str()) || attr("lessee").as_str() == Some(p.as_str())
            })
            && q.get("description_contains").is_none_or(|d| {
                attr("description")
                    .as_str()
                    .is_some_and(|text| text.contains(d.as_str()))
            })
            && q.get("shard").is_none_or(|list| {
                let shard = attr("shard");
                list.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .any(|s| shard.as_str() == Some(s.as_str()))
            });
        if !keep {
            return Ok(false);
        }
        for (name, value) in [
            ("maintenance", node.maintenance),
            ("retired", attr("retired").as_bool().unwrap_or(false)),
            ("associated", !attr("instance_uuid").is_null()),
            ("sharded", !attr("shard").is_null()),
        ] {
            if let Some(want) = q.get(name)
                && truthy(want)? != value
            {
                return Ok(false);
            }
        }
        let parent = attr("parent_node");
        let children_wanted = match (q.get("parent_node"), q.get("include_children")) {
            (Some(p), _) => parent.as_str() == Some(p.as_str()),
            (None, Some(c)) => truthy(c)? || parent.is_null(),
            (None, None) => parent.is_null(),
        };
        Ok(children_wanted)
    }

    fn sort_value(&self, node: &NodeRecord, doc: &Value) -> Value {
        match self.sort_key.as_str() {
            "id" => json!(node.created_at),
            key => doc.get(key).cloned().unwrap_or(Value::Null),
        }
    }

    /// Filter, sort and page `nodes` (oldest first, as stored); the page and whether a full
    /// page was cut (a `next` link is due).
    ///
    /// # Errors
    /// 404 for an unknown marker, 400 for a bad boolean filter.
    pub fn select(
        &self,
        nodes: Vec<NodeRecord>,
        docs: impl Fn(&NodeRecord) -> Value,
    ) -> Result<Vec<NodeRecord>, ApiError> {
        let mut kept = Vec::new();
        for node in nodes {
            if self.keeps(&node)? {
                kept.push(node);
            }
        }
        // Ironic sorts in the database (NULL first ascending) and then by id.
        let mut keyed: Vec<(Value, usize, NodeRecord)> = kept
            .into_iter()
            .enumerate()
            .map(|(i, n)| (self.sort_value(&n, &docs(&n)), i, n))
            .collect();
        keyed.sort_by(|(a, ia, _), (b, ib, _)| {
            let primary = compare(a, b);
            let primary = if self.sort_dir == "desc" {
                primary.reverse()
            } else {
                primary
            };
            primary.then(ia.cmp(ib))
        });
        let mut nodes: Vec<NodeRecord> = keyed.into_iter().map(|(_, _, n)| n).collect();
        if let Some(marker) = &self.marker {
            let pos = nodes
                .iter()
                .position(|n| &n.uuid == marker)
                .ok_or_else(|| ApiError::NotFound(format!("Marker {marker} could not be found.")))?;
            nodes.drain(..=pos);
        }
        // `instance_uuid` lists at most the one node, without paging (as Ironic).
        if let Some(limit) = self.limit.filter(|_| !self.query.contains_key("instance_uuid")) {
            nodes.truncate(limit);
        }
        Ok(nodes)
    }

    /// The `next` link after `page`, when the page is full: Ironic's parameters in Ironic's
    /// order (sort, true flags, detail, fields, limit, marker).
    pub fn next_link(&self, ctx: &RequestContext, path: &str, page: &[NodeRecord]) -> Option<String> {
        let limit = self
            .limit
            .filter(|l| page.len() == *l && !self.query.contains_key("instance_uuid"))?;
        let last = page.last()?;
        let mut params = vec![
            format!("sort_key={}", self.sort_key),
            format!("sort_dir={}", self.sort_dir),
        ];
        for flag in ["associated", "maintenance", "retired"] {
            if self.query.get(flag).is_some_and(|v| truthy(v).unwrap_or(false)) {
                params.push(format!("{flag}=True"));
            }
        }
        if let Some(d) = self.query.get("detail").filter(|_| path == "nodes") {
            params.push(format!("detail={d}"));
        }
        if path == "nodes" && !self.detail {
            let fields = self
                .fields
                .clone()
                .unwrap_or_else(|| DEFAULT_FIELDS.iter().map(|f| (*f).to_owned()).collect());
            params.push(format!("fields={}", fields.join(",")));
        }
        params.push(format!("limit={limit}"));
        params.push(format!("marker={}", last.uuid));
        Some(format!("{}/v1/{path}?{}", ctx.base, params.join("&")))
    }
}

/// Why a node field the requested microversion does not show is refused: a field of a newer
/// microversion is "not acceptable" (406), an unknown one invalid (400).
pub(super) fn field_refused(field: &str) -> ApiError {
    if node_field_known(field, super::MAX_VERSION) {
        ApiError::NotAcceptable("Request not acceptable.".into())
    } else {
        ApiError::BadRequest(format!("Field(s) \"{field}\" are not valid"))
    }
}

/// SQL's order for sorting: NULL first, then booleans, numbers, strings.
pub(super) fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) | Value::Object(_) => 4,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}
