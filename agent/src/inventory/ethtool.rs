//! Permanent MAC addresses (`ETHTOOL_GPERMADDR`), the address upstream reports in preference to
//! the current one (bonds and VLANs change the current address).

use std::os::fd::AsRawFd;

/// `SIOCETHTOOL` request number (linux/sockios.h).
const SIOCETHTOOL: u64 = 0x8946;
/// `ETHTOOL_GPERMADDR` command (linux/ethtool.h).
const ETHTOOL_GPERMADDR: u32 = 0x20;
/// Room for the longest hardware address (InfiniBand: 20 bytes).
const MAX_ADDR_LEN: usize = 32;

/// `struct ethtool_perm_addr` with its flexible array sized for any address.
#[repr(C)]
struct PermAddr {
    cmd: u32,
    size: u32,
    data: [u8; MAX_ADDR_LEN],
}

/// `struct ifreq` with the `ifr_data` member of its union (24 bytes on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: *mut PermAddr,
    _pad: [u8; 16],
}

nix::ioctl_readwrite_bad!(siocethtool, SIOCETHTOOL, IfReq);

/// The permanent MAC of `interface`, if the driver reports a non-zero one.
pub fn permanent_mac(interface: &str) -> Option<String> {
    if interface.len() >= 16 {
        return None;
    }
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let mut perm = PermAddr {
        cmd: ETHTOOL_GPERMADDR,
        size: MAX_ADDR_LEN as u32,
        data: [0; MAX_ADDR_LEN],
    };
    let mut req = IfReq {
        name: [0; 16],
        data: &mut perm,
        _pad: [0; 16],
    };
    req.name[..interface.len()].copy_from_slice(interface.as_bytes());
    // SAFETY: `req` is a correctly laid out `struct ifreq` whose `ifr_data` points at `perm`, a
    // live `ethtool_perm_addr` with `size` bytes of room; both outlive the call, and the kernel
    // writes at most `size` bytes into `perm.data`.
    unsafe { siocethtool(socket.as_raw_fd(), &mut req) }.ok()?;
    let len = (perm.size as usize).min(MAX_ADDR_LEN);
    let bytes = &perm.data[..len];
    if len == 0 || bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel() {
        assert_eq!(size_of::<IfReq>(), 40);
        assert_eq!(size_of::<PermAddr>(), 8 + MAX_ADDR_LEN);
    }

    #[test]
    fn loopback_has_no_permanent_address() {
        assert_eq!(permanent_mac("lo"), None);
        assert_eq!(permanent_mac("an-interface-name-too-long"), None);
    }
}
