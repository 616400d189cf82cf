//! Discovery documents of the agent API (`GET /`, `GET /v1/`, `GET /v1/status`).

use serde::{Deserialize, Serialize};

/// Where upstream's documents point readers for API docs.
pub const AGENT_DOCS_URL: &str = "https://docs.openstack.org/ironic-python-agent/";

/// A hyperlink in a discovery document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Target URL.
    pub href: String,
    /// Relation: `self`, `bookmark`, `describedby`.
    pub rel: String,
    /// Media type, only on `describedby` links.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Link {
    /// A link without a media type.
    pub fn new(href: impl Into<String>, rel: &str) -> Self {
        Link {
            href: href.into(),
            rel: rel.to_owned(),
            media_type: None,
        }
    }

    /// The two links upstream puts on every version entry.
    pub fn version_links(root: &str) -> Vec<Link> {
        vec![
            Link::new(format!("{root}/v1"), "self"),
            Link {
                href: AGENT_DOCS_URL.into(),
                rel: "describedby".into(),
                media_type: Some("text/html".into()),
            },
        ]
    }
}

/// One API version entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// `v1`.
    pub id: String,
    /// Links to the version.
    pub links: Vec<Link>,
}

/// `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootDoc {
    /// Product name.
    pub name: String,
    /// Product description.
    pub description: String,
    /// Every version served.
    pub versions: Vec<VersionEntry>,
    /// The version used when the client names none.
    pub default_version: VersionEntry,
}

/// A media type entry in the v1 document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaType {
    /// `application/json`.
    pub base: String,
    /// Vendor media type.
    #[serde(rename = "type")]
    pub media_type: String,
}

/// `GET /v1/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Doc {
    /// Links to the commands collection.
    pub commands: Vec<Link>,
    /// Links to the status document.
    pub status: Vec<Link>,
    /// Media types spoken.
    pub media_types: Vec<MediaType>,
    /// `v1`.
    pub id: String,
    /// Self and documentation links.
    pub links: Vec<Link>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// Float epoch seconds when the agent started; null before it did.
    pub started_at: Option<f64>,
    /// Agent version.
    pub version: String,
}
