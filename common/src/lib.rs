//! Wire types shared by `rivet-agent` and `rivet-conductor`.
//!
//! Everything that crosses the wire between an agent and a conductor lives here, in the shapes
//! that OpenStack Ironic and ironic-python-agent (IPA) use, so that either half of Rivet can talk
//! to the upstream other half. The fixtures captured from the real upstream programs
//! (`tests/fixtures/upstream/`) parse into these types and serialise back to equal JSON (see
//! `tests/fixtures.rs`).
//!
//! Rules for adding a type:
//! * Messages from peers are parsed tolerantly: unknown fields are kept in an `extra` map where
//!   the message may be echoed back, and ignored otherwise. Peers add fields between releases.
//! * Where upstream distinguishes an absent key from `null`, use [`field::Field`].
//! * Our own configuration files are strict (`deny_unknown_fields`); they do not live here.

pub mod agent_api;
pub mod command;
pub mod crypt;
pub mod error;
pub mod field;
pub mod hints;
pub mod image;
pub mod inventory;
pub mod ironic_api;
pub mod logging;
pub mod node;
pub mod ramdisk;
pub mod steps;
pub mod version;

/// A JSON object, as the peers send them.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// JSON's name for the type of `value`, with its article ("a number", "an object"), for error
/// messages that say what a client sent instead of what was expected.
pub fn json_type(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
