//! The `dmi-decode` collector (IPA 13 `dmi_inspector`): BIOS, processor and memory records
//! from `dmidecode -t bios -t processor -t memory`, as text fields.
//!
//! `dmidecode` is the tool operators trust for SMBIOS, so the agent runs it and reads its text
//! as upstream does: records are separated by a blank line and start with `Handle 0x…, DMI type
//! N, …`; inside one, `Key: value` lines become string fields, and a `Key:` line with nothing
//! after it starts a list that takes the following lines without a colon.

use serde_json::{Map, Value};

/// SMBIOS record types read.
const BIOS: i64 = 0;
const PROCESSOR: i64 = 4;
const MEMORY_ARRAY: i64 = 16;
const MEMORY_DEVICE: i64 = 17;

/// The arguments upstream passes to `dmidecode`.
pub const DMIDECODE_ARGS: &[&str] = &["-t", "bios", "-t", "processor", "-t", "memory"];

/// Why the text gave no `dmi` document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmiError {
    /// A memory array record has no `Number Of Devices`; upstream lets this `KeyError` fail the
    /// collector (an inspection failure).
    #[error("'{0}'")]
    MissingKey(String),
    /// `Number Of Devices` is not a number; upstream logs it and sends `dmi: {}`.
    #[error("invalid literal for int(): {0:?}")]
    NotANumber(String),
}

/// `data["dmi"]` from `dmidecode` output: `{"bios": {...}, "cpu": [{...}], "memory": {...,
/// "Number Of Devices": <sum over arrays>, "devices": [{...}]}}`. Field names and values are
/// dmidecode's text; each record keeps its `Handle` line except the memory array.
pub fn parse(text: &str) -> Result<Value, DmiError> {
    let mut bios = Map::new();
    let mut cpus = Vec::new();
    let mut arrays = Vec::new();
    let mut devices = Vec::new();
    for block in text.split("\n\n") {
        if !block.starts_with("Handle 0x") {
            continue;
        }
        // `Handle 0x0018, DMI type 17, 27 bytes`: upstream slices the second field after the
        // length of "DMI type".
        let Some(dmi_type) = block
            .split(',')
            .nth(1)
            .map(|f| f.trim().chars().skip("DMI type".len()).collect::<String>())
            .and_then(|t| t.trim().parse::<i64>().ok())
        else {
            tracing::warn!(
                block = block.lines().next().unwrap_or_default(),
                "cannot read the DMI type of a dmidecode record"
            );
            continue;
        };
        match dmi_type {
            BIOS => bios = record(block),
            PROCESSOR => cpus.push(Value::Object(record(block))),
            MEMORY_ARRAY => arrays.push(record(block)),
            MEMORY_DEVICE => devices.push(Value::Object(record(block))),
            _ => {}
        }
    }
    let mut memory = Map::new();
    memory.insert("devices".into(), Value::Array(Vec::new()));
    if let Some(first) = arrays.first() {
        let mut count = 0i64;
        for array in &arrays {
            count += match array.get("Number Of Devices") {
                None => return Err(DmiError::MissingKey("Number Of Devices".into())),
                Some(Value::String(n)) => n.parse::<i64>().map_err(|_| DmiError::NotANumber(n.clone()))?,
                Some(other) => return Err(DmiError::NotANumber(other.to_string())),
            };
        }
        memory = first.clone();
        memory.insert("Number Of Devices".into(), Value::from(count));
        memory.remove("Handle");
    }
    if !devices.is_empty() {
        memory.insert("devices".into(), Value::Array(devices));
    }
    let mut dmi = Map::new();
    dmi.insert("bios".into(), Value::Object(bios));
    dmi.insert("cpu".into(), Value::Array(cpus));
    dmi.insert("memory".into(), Value::Object(memory));
    Ok(Value::Object(dmi))
}

/// The fields of one record (upstream `_parse_handle_block`).
fn record(block: &str) -> Map<String, Value> {
    let mut rows = Map::new();
    let mut list: Option<String> = None;
    for line in block.lines().map(str::trim) {
        if let Some((key, value)) = line.split_once(':') {
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                rows.insert(key.to_owned(), Value::Array(Vec::new()));
                list = Some(key.to_owned());
            } else {
                rows.insert(key.to_owned(), Value::String(value.to_owned()));
                list = None;
            }
        } else if line.contains("Handle 0x") {
            rows.insert("Handle".into(), Value::String(line.to_owned()));
        } else if let Some(Value::Array(items)) = list.as_ref().and_then(|k| rows.get_mut(k)) {
            items.push(Value::String(line.to_owned()));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// dmidecode 3.x output for a small server (one socket, two DIMM slots, one filled).
    const SAMPLE: &str = "# dmidecode 3.4
Getting SMBIOS data from sysfs.
SMBIOS 3.2.0 present.

Handle 0x0000, DMI type 0, 26 bytes
BIOS Information
\tVendor: Example Firmware Inc.
\tVersion: 2.14.1
\tRelease Date: 03/06/2024
\tROM Size: 32 MB
\tCharacteristics:
\t\tPCI is supported
\t\tBIOS is upgradeable
\tBIOS Revision: 2.14

Handle 0x0400, DMI type 4, 48 bytes
Processor Information
\tSocket Designation: CPU1
\tType: Central Processor
\tVersion: Example CPU 16-Core
\tCore Count: 16
\tThread Count: 32

Handle 0x1000, DMI type 16, 23 bytes
Physical Memory Array
\tLocation: System Board Or Motherboard
\tUse: System Memory
\tMaximum Capacity: 2 TB
\tNumber Of Devices: 2

Handle 0x1100, DMI type 17, 84 bytes
Memory Device
\tArray Handle: 0x1000
\tSize: 32 GB
\tLocator: A1
\tType: DDR4

Handle 0x1101, DMI type 17, 84 bytes
Memory Device
\tArray Handle: 0x1000
\tSize: No Module Installed
\tLocator: A2

Handle 0x7F00, DMI type 127, 4 bytes
End Of Table
";

    #[test]
    fn parses_like_upstream() {
        let dmi = parse(SAMPLE).expect("parses");
        assert_eq!(
            dmi,
            json!({
                "bios": {
                    "Handle": "Handle 0x0000, DMI type 0, 26 bytes",
                    "Vendor": "Example Firmware Inc.",
                    "Version": "2.14.1",
                    "Release Date": "03/06/2024",
                    "ROM Size": "32 MB",
                    "Characteristics": ["PCI is supported", "BIOS is upgradeable"],
                    "BIOS Revision": "2.14",
                },
                "cpu": [{
                    "Handle": "Handle 0x0400, DMI type 4, 48 bytes",
                    "Socket Designation": "CPU1",
                    "Type": "Central Processor",
                    "Version": "Example CPU 16-Core",
                    "Core Count": "16",
                    "Thread Count": "32",
                }],
                "memory": {
                    "Location": "System Board Or Motherboard",
                    "Use": "System Memory",
                    "Maximum Capacity": "2 TB",
                    "Number Of Devices": 2,
                    "devices": [
                        {"Handle": "Handle 0x1100, DMI type 17, 84 bytes", "Array Handle": "0x1000",
                         "Size": "32 GB", "Locator": "A1", "Type": "DDR4"},
                        {"Handle": "Handle 0x1101, DMI type 17, 84 bytes", "Array Handle": "0x1000",
                         "Size": "No Module Installed", "Locator": "A2"},
                    ],
                },
            })
        );
        let keys: Vec<&String> = dmi.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["bios", "cpu", "memory"]);
    }

    #[test]
    fn empty_and_broken_output() {
        assert_eq!(
            parse("# dmidecode 3.4\n").expect("parses"),
            json!({"bios": {}, "cpu": [], "memory": {"devices": []}})
        );
        let no_count = "Handle 0x1000, DMI type 16, 23 bytes\nPhysical Memory Array\n\tUse: System Memory\n";
        assert_eq!(parse(no_count), Err(DmiError::MissingKey("Number Of Devices".into())));
        assert_eq!(
            parse(&no_count.replace("Use: System Memory", "Number Of Devices: many")),
            Err(DmiError::NotANumber("many".into()))
        );
        let odd_type = "Handle 0x0001, DMI type x, 4 bytes\nOdd\n\tKey: value\n";
        assert_eq!(
            parse(odd_type).expect("skipped"),
            json!({"bios": {}, "cpu": [], "memory": {"devices": []}})
        );
    }
}
