//! The LLDP TLVs the `local-link-connection` hook reads: chassis ID (type 1, kept only when
//! its subtype is a MAC address), port ID (type 2) and system name (type 5), from the raw
//! `[type, "hex"]` pairs an agent reports per interface.
//!
//! Upstream: `ironic/drivers/modules/inspector/hooks/local_link_connection.py` and
//! `lldp_tlvs.py` (IEEE 802.1AB §8.5).

use serde_json::Value;

const CHASSIS_ID: u64 = 1;
const PORT_ID: u64 = 2;
const SYSTEM_NAME: u64 = 5;
/// Chassis ID subtype: a MAC address.
const CHASSIS_MAC: u8 = 4;
/// Port ID subtypes: a MAC address; a network address (first byte the address family).
const PORT_MAC: u8 = 3;
const PORT_NETWORK: u8 = 4;

/// `switch_id`, `port_id` and `switch_info` from `tlvs`, in that TLV order; `None` when a value
/// is not hexadecimal (Ironic then leaves the port alone).
pub fn local_link(tlvs: &[Value]) -> Option<Vec<(&'static str, String)>> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for tlv in tlvs {
        let (Some(kind), Some(hex)) = (tlv.get(0).and_then(Value::as_u64), tlv.get(1).and_then(Value::as_str)) else {
            continue;
        };
        let data = decode_hex(hex)?;
        let (item, value) = match kind {
            CHASSIS_ID => match data.split_first() {
                Some((&CHASSIS_MAC, mac)) if mac.len() == 6 => ("switch_id", format_mac(mac)),
                _ => continue,
            },
            PORT_ID => match data.split_first() {
                Some((&PORT_MAC, mac)) if mac.len() == 6 => ("port_id", format_mac(mac)),
                Some((&PORT_NETWORK, addr)) => ("port_id", network_address(addr)?),
                Some((_, text)) if !text.is_empty() => ("port_id", String::from_utf8_lossy(text).into_owned()),
                _ => continue,
            },
            SYSTEM_NAME if !data.is_empty() => ("switch_info", String::from_utf8_lossy(&data).into_owned()),
            _ => continue,
        };
        if !out.iter().any(|(k, _)| *k == item) {
            out.push((item, value));
        }
    }
    Some(out)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// An IANA address family byte then the address (1 IPv4, 2 IPv6).
fn network_address(data: &[u8]) -> Option<String> {
    match data.split_first()? {
        (1, a) if a.len() == 4 => Some(std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()),
        (2, a) if a.len() == 16 => {
            let octets: [u8; 16] = a.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(octets).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn switch_port_and_name_from_a_real_looking_lldpdu() {
        // Chassis ID subtype 4 (MAC), port ID subtype 7 (locally assigned: "Ethernet1/3"),
        // system name "sw-rack12".
        let tlvs = json!([
            [1, "04885a92ec5459"],
            [2, "0745746865726e6574312f33"],
            [3, "0078"],
            [5, "73772d7261636b3132"],
        ]);
        let found = local_link(tlvs.as_array().expect("list")).expect("parsed");
        assert_eq!(
            found,
            vec![
                ("switch_id", "88:5a:92:ec:54:59".to_owned()),
                ("port_id", "Ethernet1/3".to_owned()),
                ("switch_info", "sw-rack12".to_owned()),
            ]
        );
    }

    #[test]
    fn a_chassis_named_by_text_is_not_a_switch_id_and_bad_hex_is_refused() {
        let tlvs = json!([[1, "0773772d31"], [2, "03885a92ec5459"]]);
        let found = local_link(tlvs.as_array().expect("list")).expect("parsed");
        assert_eq!(found, vec![("port_id", "88:5a:92:ec:54:59".to_owned())]);
        assert_eq!(local_link(json!([[2, "zz"]]).as_array().expect("list")), None);
    }
}
