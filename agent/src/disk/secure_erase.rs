//! Firmware erase for `erase_devices`, before falling back to overwriting (reference §6.5):
//! NVMe `format` with a secure erase setting (cryptographic when the controller supports it,
//! else user data erase), and ATA Security Erase Unit (enhanced when supported) when the drive
//! supports the security feature set and is not frozen. Drives that offer neither are
//! overwritten by the caller. Operators switch each method off with upstream's
//! `driver_internal_info` keys `agent_enable_nvme_secure_erase` and
//! `agent_enable_ata_secure_erase`.

use serde_json::Value;

use crate::error::{AgentError, ErrorKind};
use crate::tools;

/// What firmware erase achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The device erased itself by this method.
    Erased(&'static str),
    /// Not possible here (the reason is logged); overwrite instead.
    Unavailable(String),
}

/// Which firmware methods may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// NVMe format with secure erase.
    pub nvme: bool,
    /// ATA Security Erase Unit.
    pub ata: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { nvme: true, ata: true }
    }
}

fn failed(what: impl std::fmt::Display) -> AgentError {
    AgentError::new(ErrorKind::BlockDeviceErase, what.to_string())
}

fn run(tool: &str, args: &[&str]) -> Result<String, AgentError> {
    tools::run(ErrorKind::BlockDeviceErase, tool, args, None)
}

/// The NVMe Secure Erase Setting to format with: 2 (cryptographic) when Format NVM Attributes
/// bit 2 says the controller supports it, else 1 (user data erase).
pub fn nvme_erase_setting(id_ctrl_json: &str) -> Result<u8, String> {
    let doc: Value = serde_json::from_str(id_ctrl_json).map_err(|e| format!("nvme id-ctrl output: {e}"))?;
    let fna = doc
        .get("fna")
        .and_then(Value::as_u64)
        .ok_or("nvme id-ctrl output has no fna")?;
    Ok(if fna & 0b100 != 0 { 2 } else { 1 })
}

/// The security section of `hdparm -I`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtaSecurity {
    /// The security feature set is supported.
    pub supported: bool,
    /// A password is set.
    pub enabled: bool,
    /// The drive is locked.
    pub locked: bool,
    /// Security commands are refused until a power cycle.
    pub frozen: bool,
    /// Enhanced erase is supported.
    pub enhanced: bool,
}

/// Parse the `Security:` section of `hdparm -I` output.
pub fn ata_security(hdparm: &str) -> AtaSecurity {
    let mut s = AtaSecurity::default();
    let mut inside = false;
    for line in hdparm.lines() {
        if line.starts_with("Security:") {
            inside = true;
            continue;
        }
        if inside && !line.starts_with([' ', '\t']) && !line.trim().is_empty() {
            break;
        }
        if !inside {
            continue;
        }
        let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match words.as_str() {
            "supported" => s.supported = true,
            "enabled" => s.enabled = true,
            "locked" => s.locked = true,
            "frozen" => s.frozen = true,
            "supported: enhanced erase" => s.enhanced = true,
            _ => {}
        }
    }
    s
}

/// Erase `device` with its own firmware if it can; `Unavailable` means overwrite it instead.
pub fn erase(device: &str, policy: Policy) -> Result<Outcome, AgentError> {
    let name = device.rsplit('/').next().unwrap_or(device);
    if name.starts_with("nvme") {
        if !policy.nvme {
            return Ok(Outcome::Unavailable(
                "NVMe secure erase is disabled for this node".into(),
            ));
        }
        if !tools::exists("nvme") {
            return Ok(Outcome::Unavailable("nvme-cli is not installed in this ramdisk".into()));
        }
        let setting = nvme_erase_setting(&run("nvme", &["id-ctrl", device, "-o", "json"])?).map_err(failed)?;
        run("nvme", &["format", device, "-s", &setting.to_string(), "-f"])?;
        return Ok(Outcome::Erased(if setting == 2 {
            "NVMe cryptographic format"
        } else {
            "NVMe user data erase format"
        }));
    }
    if !policy.ata {
        return Ok(Outcome::Unavailable(
            "ATA secure erase is disabled for this node".into(),
        ));
    }
    if !tools::exists("hdparm") {
        return Ok(Outcome::Unavailable("hdparm is not installed in this ramdisk".into()));
    }
    // Not an ATA device (loop, virtio, most SAS) when hdparm cannot identify it.
    let Ok(identify) = run("hdparm", &["-I", device]) else {
        return Ok(Outcome::Unavailable(format!("{device} does not answer ATA IDENTIFY")));
    };
    let security = ata_security(&identify);
    if !security.supported {
        return Ok(Outcome::Unavailable(format!("{device} does not support ATA security")));
    }
    if security.frozen {
        return Ok(Outcome::Unavailable(format!(
            "{device} is security frozen (the firmware froze it at boot; a suspend/resume or hot plug unfreezes it)"
        )));
    }
    if security.enabled || security.locked {
        return Ok(Outcome::Unavailable(format!(
            "{device} already has an ATA security password this agent does not know"
        )));
    }
    run("hdparm", &["--user-master", "u", "--security-set-pass", "NULL", device])?;
    let erase = if security.enhanced {
        "--security-erase-enhanced"
    } else {
        "--security-erase"
    };
    run("hdparm", &["--user-master", "u", erase, "NULL", device])?;
    let after = ata_security(&run("hdparm", &["-I", device])?);
    if after.enabled {
        return Err(failed(format!(
            "{device}: ATA security erase finished but security is still enabled"
        )));
    }
    Ok(Outcome::Erased(if security.enhanced {
        "ATA enhanced security erase"
    } else {
        "ATA security erase"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDPARM: &str = "\n/dev/sda:\n\nATA device, with non-removable media\n\tModel Number:       EXAMPLE SSD\n\
Security: \n\tMaster password revision code = 65534\n\t\tsupported\n\tnot\tenabled\n\tnot\tlocked\n\
\tnot\tfrozen\n\tnot\texpired: security count\n\t\tsupported: enhanced erase\n\
\t2min for SECURITY ERASE UNIT. 2min for ENHANCED SECURITY ERASE UNIT.\n\
Logical Unit WWN Device Identifier: 5002538d00000000\n";

    #[test]
    fn hdparm_security_sections_are_read() {
        assert_eq!(
            ata_security(HDPARM),
            AtaSecurity {
                supported: true,
                enhanced: true,
                ..Default::default()
            }
        );
        let frozen = HDPARM.replace("\tnot\tfrozen", "\t\tfrozen");
        assert!(ata_security(&frozen).frozen);
        assert_eq!(ata_security("/dev/vda:\n"), AtaSecurity::default());
    }

    #[test]
    fn nvme_crypto_erase_when_the_controller_offers_it() {
        assert_eq!(nvme_erase_setting(r#"{"vid": 5197, "fna": 4}"#), Ok(2));
        assert_eq!(nvme_erase_setting(r#"{"vid": 5197, "fna": 0}"#), Ok(1));
        assert!(nvme_erase_setting("{}").is_err());
    }

    #[test]
    fn devices_without_firmware_erase_are_left_to_overwriting() {
        let off = Policy {
            nvme: false,
            ata: false,
        };
        // Names no machine has: the policy answers before any tool could look at a device.
        assert!(
            matches!(erase("/dev/nvme-rivet-test0n1", off), Ok(Outcome::Unavailable(why)) if why.contains("disabled"))
        );
        assert!(matches!(erase("/dev/rivet-test-sdx", off), Ok(Outcome::Unavailable(why)) if why.contains("disabled")));
    }
}
