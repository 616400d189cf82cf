//! A field that can be absent, `null`, or set.
//!
//! Upstream Python code often distinguishes a missing key from a key holding `None` (for example
//! a deploy step carries `"argsinfo": null` while an agent step omits the key). Echoing a peer's
//! document back unchanged needs all three states.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Tri-state field: use with `#[serde(default, skip_serializing_if = "Field::is_absent")]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// The key is not in the document.
    #[default]
    Absent,
    /// The key holds `null`.
    Null,
    /// The key holds a value.
    Value(T),
}

impl<T> Field<T> {
    /// True when the key is not in the document.
    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    /// The value, if one is set.
    pub fn as_option(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }

    /// The value, if one is set, by value.
    pub fn into_option(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }
}

impl<T> From<Option<T>> for Field<T> {
    fn from(value: Option<T>) -> Self {
        match value {
            Some(v) => Field::Value(v),
            None => Field::Null,
        }
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // `skip_serializing_if` keeps Absent out of documents; a bare Absent is null.
            Field::Absent | Field::Null => serializer.serialize_none(),
            Field::Value(v) => serializer.serialize_some(v),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only called when the key is present; `#[serde(default)]` covers absence.
        Ok(Option::<T>::deserialize(deserializer)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Doc {
        #[serde(default, skip_serializing_if = "Field::is_absent")]
        f: Field<u32>,
    }

    #[test]
    fn three_states_round_trip() {
        for text in [json!({}), json!({"f": null}), json!({"f": 3})] {
            let doc: Doc = serde_json::from_value(text.clone()).expect("parses");
            assert_eq!(serde_json::to_value(&doc).expect("serialises"), text);
        }
    }
}
