//! IP networks for the inspection's address checks: the rules' `in-net` operator (lenient, as
//! netaddr's `IPNetwork` that Ironic's rules use: host bits are dropped) and the
//! `physical-network` hook's `physical_network_cidr_map` (strict, as Python's
//! `ipaddress.ip_network`, which refuses `192.0.2.1/24`).

use std::net::IpAddr;

/// An IPv4 or IPv6 network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u32,
}

impl Cidr {
    /// `ADDRESS[/PREFIX]` (no prefix: one address), host bits allowed; `None` when it is not a
    /// network.
    pub fn parse_lenient(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse().ok().filter(|p| *p <= bits)?,
            None => bits,
        };
        Some(Cidr { network, prefix })
    }

    /// As [`Cidr::parse_lenient`], but a network with host bits set is refused, as Python's
    /// `ipaddress.ip_network` refuses it. Errors: the reason, in words.
    pub fn parse_strict(text: &str) -> Result<Cidr, String> {
        let cidr = Cidr::parse_lenient(text).ok_or_else(|| format!("{text:?} is not an IP network"))?;
        if to_bits(cidr.network) & !cidr.mask() != 0 {
            return Err(format!("{text:?} has host bits set"));
        }
        Ok(cidr)
    }

    /// Whether `address` is in this network (never for the other IP version).
    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.network.is_ipv4()
            && to_bits(address) & self.mask() == to_bits(self.network) & self.mask()
    }

    /// The prefix as a mask over the address's bits (right-aligned in a u128).
    fn mask(&self) -> u128 {
        let bits = if self.network.is_ipv4() { 32 } else { 128 };
        let shift = bits - self.prefix;
        let all = if bits == 32 { u128::from(u32::MAX) } else { u128::MAX };
        if shift >= 128 { 0 } else { (all << shift) & all }
    }
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn networks_contain_their_addresses_and_no_others() {
        let net = Cidr::parse_strict("192.0.2.0/24").expect("a network");
        assert!(net.contains(ip("192.0.2.77")));
        assert!(!net.contains(ip("192.0.3.1")));
        assert!(!net.contains(ip("::ffff:192.0.2.77")), "another IP version");
        let v6 = Cidr::parse_strict("2001:db8::/64").expect("a network");
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(
            Cidr::parse_strict("0.0.0.0/0")
                .expect("all")
                .contains(ip("203.0.113.9"))
        );
        assert!(Cidr::parse_strict("192.0.2.7").expect("one").contains(ip("192.0.2.7")));
    }

    #[test]
    fn strict_networks_have_no_host_bits_and_lenient_ones_drop_them() {
        assert_eq!(
            Cidr::parse_strict("192.0.2.1/24"),
            Err("\"192.0.2.1/24\" has host bits set".to_owned())
        );
        assert!(
            Cidr::parse_lenient("192.0.2.1/24")
                .expect("lenient")
                .contains(ip("192.0.2.200"))
        );
        for bad in ["192.0.2.0/33", "nonsense", "192.0.2.0/x", ""] {
            assert!(Cidr::parse_strict(bad).is_err(), "{bad}");
        }
    }
}
