//! Root-device hints as operators write them (`properties.root_device`).
//!
//! Values are strings with an optional operator (`"<in> samsung"`, `">= 100"`), integers
//! (`size` in GiB) or booleans (`rotational`). Parsing and matching live with the agent's
//! disk code; this type only carries the document.

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// The hint document, key to raw value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RootDeviceHints(pub JsonObject);

impl RootDeviceHints {
    /// True when no hint is given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
