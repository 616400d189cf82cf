//! Discovery documents of the Ironic API (`GET /`, `GET /v1/`).
//!
//! Agents read `default_version.version` from the root document to negotiate microversions.

use serde::{Deserialize, Serialize};

use crate::JsonObject;
use crate::agent_api::Link;

/// One version entry of the Ironic root document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDoc {
    /// `v1`.
    pub id: String,
    /// Link to the version root.
    pub links: Vec<Link>,
    /// `CURRENT`.
    pub status: String,
    /// Lowest microversion served.
    pub min_version: String,
    /// Highest microversion served.
    pub version: String,
}

/// `GET /` of the Ironic API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IronicRootDoc {
    /// Product name.
    pub name: String,
    /// Product description.
    pub description: String,
    /// The default (and only) version.
    pub default_version: VersionDoc,
    /// Every version served.
    pub versions: Vec<VersionDoc>,
}

/// Media types of the v1 document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1MediaTypes {
    /// `application/json`.
    pub base: String,
    /// Vendor media type.
    #[serde(rename = "type")]
    pub media_type: String,
}

/// `GET /v1/` of the Ironic API: fixed keys plus one link list per resource collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IronicV1Doc {
    /// `v1`.
    pub id: String,
    /// Self and documentation links.
    pub links: Vec<Link>,
    /// Media types.
    pub media_types: V1MediaTypes,
    /// Version range.
    pub version: VersionDoc,
    /// Resource collections (`nodes`, `ports`, ...) each with self and bookmark links.
    #[serde(flatten)]
    pub resources: JsonObject,
}
