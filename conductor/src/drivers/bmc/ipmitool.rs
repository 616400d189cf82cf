//! The IPMI client the `ipmitool` power and management interfaces share: the real `ipmitool`
//! over IPMI LAN (lanplus by default), as Ironic's `ipmi` hardware type runs it.
//!
//! `driver_info`: `ipmi_address` (required), `ipmi_port` (623), `ipmi_username`,
//! `ipmi_password`, `ipmi_protocol_version` (`2.0` → lanplus, `1.5` → lan). The password goes to
//! ipmitool through the environment (`-E`), never on a command line other users can read.

use std::time::Duration;

use serde_json::Value;

use crate::drivers::DriverError;
use crate::model::NodeRecord;

/// Longest one ipmitool call may take (it retries internally).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Connection details from `driver_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    address: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    interface: &'static str,
}

fn text(node: &NodeRecord, key: &str) -> Option<String> {
    match node.driver_info.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn target(node: &NodeRecord) -> Result<Target, DriverError> {
    let address = text(node, "ipmi_address").ok_or_else(|| {
        DriverError::Invalid(format!(
            "Missing the following IPMI credentials in node's driver_info: ['ipmi_address']. Node {}",
            node.uuid
        ))
    })?;
    let port = match text(node, "ipmi_port") {
        Some(p) => p
            .parse()
            .map_err(|_| DriverError::Invalid(format!("ipmi_port {p:?} is not a port number")))?,
        None => 623,
    };
    let interface = match text(node, "ipmi_protocol_version").as_deref() {
        None | Some("2.0") => "lanplus",
        Some("1.5") => "lan",
        Some(other) => {
            return Err(DriverError::Invalid(format!(
                "Invalid IPMI protocol version value {other}, the valid value can be one of 1.5, 2.0"
            )));
        }
    };
    Ok(Target {
        address,
        port,
        username: text(node, "ipmi_username"),
        password: text(node, "ipmi_password"),
        interface,
    })
}

/// Check the node's IPMI settings (`ipmi_address`, port, protocol version).
pub(crate) fn check_driver_info(node: &NodeRecord) -> Result<(), DriverError> {
    target(node).map(|_| ())
}

/// Run `ipmitool <args>` against the node's BMC; its stdout.
pub(crate) async fn ipmitool(node: &NodeRecord, args: &[&str]) -> Result<String, DriverError> {
    let t = target(node)?;
    let port = t.port.to_string();
    let mut cmd = tokio::process::Command::new("ipmitool");
    cmd.args(["-I", t.interface, "-H", &t.address, "-p", &port, "-L", "ADMINISTRATOR"]);
    if let Some(user) = &t.username {
        cmd.args(["-U", user]);
    }
    // -E reads the password from IPMI_PASSWORD.
    cmd.arg("-E").env("IPMI_PASSWORD", t.password.as_deref().unwrap_or(""));
    cmd.args(args);
    let what = format!("ipmitool {} at {}:{}", args.join(" "), t.address, t.port);
    crate::drivers::tool::output(cmd, &what, CALL_TIMEOUT, "").await
}

/// Parse `chassis power status` output.
pub(crate) fn parse_power(out: &str) -> Result<&'static str, DriverError> {
    let lower = out.to_ascii_lowercase();
    if lower.contains("power is on") {
        Ok("power on")
    } else if lower.contains("power is off") {
        Ok("power off")
    } else {
        Err(DriverError::Failed(format!(
            "unexpected ipmitool power status {:?}",
            out.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_status_lines_as_ipmitool_prints_them() {
        assert_eq!(parse_power("Chassis Power is on\n").ok(), Some("power on"));
        assert_eq!(parse_power("Chassis Power is off\n").ok(), Some("power off"));
        assert!(parse_power("Error: Unable to establish IPMI v2 / RMCP+ session").is_err());
    }

    #[test]
    fn driver_info_is_checked() {
        let mut node = NodeRecord::default();
        assert!(matches!(target(&node), Err(DriverError::Invalid(m)) if m.contains("ipmi_address")));
        node.driver_info.insert("ipmi_address".into(), "127.0.0.1".into());
        node.driver_info.insert("ipmi_port".into(), 9001.into());
        node.driver_info.insert("ipmi_protocol_version".into(), "1.5".into());
        let t = target(&node).expect("target");
        assert_eq!((t.port, t.interface), (9001, "lan"));
        node.driver_info.insert("ipmi_port".into(), "x".into());
        assert!(target(&node).is_err());
    }
}
