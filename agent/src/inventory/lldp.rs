//! LLDP (IEEE 802.1AB): the switch port each interface is cabled to, as raw TLVs.
//!
//! As IPA 13 does (`netutils.get_lldp_info`, `GenericHardwareManager.collect_lldp_data`), the
//! agent listens on each interface with an `AF_PACKET` socket for ethertype 0x88cc, keeps the
//! first LLDP frame per interface, and reports its TLVs undecoded as `[type, hex of the value]`
//! pairs; Ironic's `parse_lldp` and `local_link_connection` inspection hooks decode them.
//!
//! Differences from upstream, all towards safety and bounded time:
//! * one deadline for the whole capture (upstream restarts its `select` timeout after each
//!   frame, so N interfaces can take N × `lldp_timeout`);
//! * the interface is made promiscuous through a `PACKET_MR_PROMISC` membership of the socket,
//!   which the kernel drops when the socket closes, even if the agent dies (upstream flips
//!   `IFF_PROMISC` with `SIOCSIFFLAGS` and flips it back);
//! * an interface that is down is not listened on (it could not hear anything; it reports `[]`
//!   as upstream's would after its timeout), and one whose socket cannot be opened is left out
//!   instead of failing every interface;
//! * parsing stops after the End TLV, so the zero padding of short frames is not reported as
//!   more End TLVs, and a frame whose TLVs overrun it is discarded (802.1AB §9.2.7.7.1) while
//!   listening goes on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::SysRoot;

/// Ethertype of LLDP frames.
pub const LLDP_ETHERTYPE: u16 = 0x88cc;
/// Ethertype of an 802.1Q VLAN tag.
const VLAN_ETHERTYPE: u16 = 0x8100;
/// Type of the End Of LLDPDU TLV.
pub const END_TLV: u8 = 0;
/// Destination MAC, source MAC, ethertype.
const ETHERNET_HEADER: usize = 14;
/// Receive buffer: an LLDPDU fits an untagged 1500-byte payload; room for jumbo frames.
const FRAME_BUFFER: usize = 9216;

/// One TLV as reported: type (7 bits) and the value's bytes in lower-case hex.
pub type RawTlv = (u32, String);

/// Why a frame is not a usable LLDPDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LldpError {
    /// Shorter than an Ethernet header.
    #[error("frame of {0} bytes is shorter than an Ethernet header")]
    ShortFrame(usize),
    /// Another protocol.
    #[error("frame has ethertype {0:#06x}, not LLDP (0x88cc)")]
    NotLldp(u16),
    /// A TLV claims more bytes than the frame holds.
    #[error("TLV of type {tlv_type} at offset {offset} claims {length} bytes but only {left} remain")]
    Truncated {
        /// TLV type.
        tlv_type: u8,
        /// Offset of the TLV header in the LLDPDU.
        offset: usize,
        /// Length the header claims.
        length: usize,
        /// Bytes after the header.
        left: usize,
    },
}

/// The TLVs of an LLDPDU (the frame's payload): `(type, value)` in order, up to and including
/// the End TLV. Each TLV header is 16 bits, big-endian: type in the top 7 bits, value length in
/// the low 9 (802.1AB §8.4). A missing End TLV is tolerated, as upstream does; a TLV that
/// overruns the buffer is an error.
pub fn parse_lldpdu(pdu: &[u8]) -> Result<Vec<(u8, &[u8])>, LldpError> {
    let mut tlvs = Vec::new();
    let mut offset = 0;
    while pdu.len() - offset >= 2 {
        let header = u16::from_be_bytes([pdu[offset], pdu[offset + 1]]);
        let tlv_type = (header >> 9) as u8;
        let length = usize::from(header & 0x01ff);
        let left = pdu.len() - offset - 2;
        if length > left {
            return Err(LldpError::Truncated {
                tlv_type,
                offset,
                length,
                left,
            });
        }
        let value = &pdu[offset + 2..offset + 2 + length];
        tlvs.push((tlv_type, value));
        offset += 2 + length;
        if tlv_type == END_TLV {
            break;
        }
    }
    Ok(tlvs)
}

/// The TLVs of a whole Ethernet frame as upstream reports them (`[type, hex]`). The frame may
/// carry one 802.1Q tag (the kernel usually strips it before the socket sees the frame).
pub fn frame_tlvs(frame: &[u8]) -> Result<Vec<RawTlv>, LldpError> {
    if frame.len() < ETHERNET_HEADER {
        return Err(LldpError::ShortFrame(frame.len()));
    }
    let mut payload = ETHERNET_HEADER;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype == VLAN_ETHERTYPE {
        if frame.len() < ETHERNET_HEADER + 4 {
            return Err(LldpError::ShortFrame(frame.len()));
        }
        ethertype = u16::from_be_bytes([frame[16], frame[17]]);
        payload += 4;
    }
    if ethertype != LLDP_ETHERTYPE {
        return Err(LldpError::NotLldp(ethertype));
    }
    Ok(parse_lldpdu(&frame[payload..])?
        .into_iter()
        .map(|(t, value)| (u32::from(t), hex(value)))
        .collect())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Whether the interface is administratively up (`IFF_UP` in `/sys/class/net/<name>/flags`);
/// unreadable flags count as up.
fn is_up(root: &SysRoot, name: &str) -> bool {
    root.read(&format!("sys/class/net/{name}/flags"))
        .and_then(|flags| u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok())
        .is_none_or(|flags| flags & 1 != 0)
}

/// LLDP for every interface upstream lists (physical, bond, VLAN; `lo` never), by name: the
/// first frame's TLVs, or `[]` when the interface is down or nothing came within `timeout`
/// (IPA 13 `collect_lldp_data` with no names). Interfaces whose socket cannot be opened are
/// left out, as are all when there is none to listen on.
pub async fn collect(root: &SysRoot, timeout: Duration) -> BTreeMap<String, Vec<RawTlv>> {
    let names: Vec<String> = super::interface_names(root).into_iter().filter(|n| n != "lo").collect();
    let (up, down): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| is_up(root, n));
    let mut out = capture(&up, timeout).await;
    for name in down {
        tracing::info!(interface = %name, "interface is down: no LLDP listened for");
        out.insert(name, Vec::new());
    }
    out
}

/// Listen on each of `interfaces` until one LLDP frame arrived on it or `timeout` (one deadline
/// for all) passed; each interface's TLVs, `[]` when nothing came. Frames that are not valid
/// LLDPDUs are skipped with a warning. An interface whose socket cannot be opened, or fails
/// while reading, is logged and left out. Needs `CAP_NET_RAW`, and a Tokio runtime with I/O.
pub async fn capture(interfaces: &[String], timeout: Duration) -> BTreeMap<String, Vec<RawTlv>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut listeners = tokio::task::JoinSet::new();
    for name in interfaces {
        let socket = match sys::LldpSocket::open(name) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(interface = %name, error = %e, "cannot listen for LLDP on this interface");
                continue;
            }
        };
        let name = name.clone();
        tracing::info!(interface = %name, ?timeout, "waiting for LLDP");
        listeners.spawn(async move {
            let heard = match tokio::time::timeout_at(deadline, first_lldpdu(&name, &socket)).await {
                Ok(heard) => heard,
                Err(_) => {
                    tracing::warn!(interface = %name, "LLDP timed out");
                    Some(Vec::new())
                }
            };
            (name, heard)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = listeners.join_next().await {
        match joined {
            Ok((name, Some(tlvs))) => drop(out.insert(name, tlvs)),
            Ok((_, None)) => {}
            Err(e) => tracing::error!(error = %e, "an LLDP listener crashed"),
        }
    }
    out
}

/// The TLVs of the first valid LLDP frame on `socket`; `None` when reading fails.
async fn first_lldpdu(name: &str, socket: &sys::LldpSocket) -> Option<Vec<RawTlv>> {
    let mut buf = vec![0u8; FRAME_BUFFER];
    loop {
        let len = match socket.recv(&mut buf).await {
            Ok(len) => len,
            Err(e) => {
                tracing::error!(interface = %name, error = %e, "reading LLDP failed; interface skipped");
                return None;
            }
        };
        match frame_tlvs(&buf[..len]) {
            Ok(tlvs) => {
                tracing::info!(interface = %name, tlvs = tlvs.len(), "LLDP received");
                return Some(tlvs);
            }
            Err(e) => tracing::warn!(interface = %name, error = %e, "invalid LLDP frame ignored"),
        }
    }
}

/// The raw socket. Every `unsafe` of this module is here.
mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};

    use nix::libc;
    use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use super::LLDP_ETHERTYPE;

    /// An `AF_PACKET` socket bound to one interface and ethertype 0x88cc, holding a promiscuous
    /// membership on it (released by the kernel when the socket closes).
    #[derive(Debug)]
    pub(super) struct LldpSocket {
        fd: AsyncFd<OwnedFd>,
    }

    impl LldpSocket {
        /// Open, bind and make promiscuous; errors name the step that failed.
        pub(super) fn open(interface: &str) -> io::Result<LldpSocket> {
            let context = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
            let index = nix::net::if_::if_nametoindex(interface)
                .map_err(|e| context("no such interface", io::Error::from(e)))?;
            let index = libc::c_int::try_from(index)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
            // Protocol 0: nothing is received before `bind` names the interface and ethertype.
            let fd = nix::sys::socket::socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(|e| context("opening a packet socket (needs CAP_NET_RAW)", io::Error::from(e)))?;
            let addr = libc::sockaddr_ll {
                sll_family: libc::AF_PACKET as libc::c_ushort,
                sll_protocol: LLDP_ETHERTYPE.to_be(),
                sll_ifindex: index,
                sll_hatype: 0,
                sll_pkttype: 0,
                sll_halen: 0,
                sll_addr: [0; 8],
            };
            // SAFETY: `fd` is an open socket we own; `addr` is a fully initialised
            // `sockaddr_ll` that lives across the call, and the length passed is its size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const addr).cast::<libc::sockaddr>(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(context("binding the packet socket", io::Error::last_os_error()));
            }
            let membership = libc::packet_mreq {
                mr_ifindex: index,
                mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            // SAFETY: `fd` is an open packet socket we own; `membership` is a fully initialised
            // `packet_mreq` that lives across the call, and the length passed is its size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_ADD_MEMBERSHIP,
                    (&raw const membership).cast::<libc::c_void>(),
                    size_of::<libc::packet_mreq>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(context("making the interface promiscuous", io::Error::last_os_error()));
            }
            // SAFETY: the `AsyncFd` takes ownership of `fd`, an open socket; an `OwnedFd` is only
            // closed when dropped, so the descriptor stays open and the same for as long as the
            // `AsyncFd` holds it.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
            Ok(LldpSocket { fd })
        }

        /// One whole frame (Ethernet header included) into `buf`; its length.
        pub(super) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            loop {
                let mut ready = self.fd.readable().await?;
                match ready.try_io(|fd| {
                    nix::sys::socket::recv(fd.as_raw_fd(), buf, MsgFlags::empty()).map_err(io::Error::from)
                }) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLV header and value.
    fn tlv(tlv_type: u8, value: &[u8]) -> Vec<u8> {
        let header = (u16::from(tlv_type) << 9) | value.len() as u16;
        let mut out = header.to_be_bytes().to_vec();
        out.extend_from_slice(value);
        out
    }

    /// A frame as a switch sends it: nearest-bridge multicast, chassis id (subtype 4, MAC), port
    /// id (subtype 5, interface name), TTL 120, system name, End, then zero padding.
    fn switch_frame() -> Vec<u8> {
        let mut frame = vec![
            0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x88, 0xcc,
        ];
        frame.extend(tlv(1, &[4, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        frame.extend(tlv(2, b"\x05Ethernet1/7"));
        frame.extend(tlv(3, &[0, 120]));
        frame.extend(tlv(5, b"leaf-01.example"));
        frame.extend(tlv(END_TLV, &[]));
        frame.resize(frame.len().max(60), 0);
        frame
    }

    #[test]
    fn a_switch_frame_gives_upstreams_pairs() {
        let got = frame_tlvs(&switch_frame()).expect("valid");
        let want: Vec<RawTlv> = vec![
            (1, "04525400123456".into()),
            (2, "0545746865726e6574312f37".into()),
            (3, "0078".into()),
            (5, "6c6561662d30312e6578616d706c65".into()),
            (0, String::new()),
        ];
        assert_eq!(got, want, "padding after End is not reported");
        let json = serde_json::to_value(&got).expect("serialises");
        assert_eq!(json[0], serde_json::json!([1, "04525400123456"]), "[type, hex] pairs");
    }

    #[test]
    fn tlv_headers_split_7_and_9_bits() {
        // Organisationally specific TLV (127) with a 300-byte value: the length needs the ninth bit.
        let value = vec![0xab; 300];
        let pdu = [tlv(127, &value), tlv(END_TLV, &[])].concat();
        assert_eq!(&pdu[..2], &[0xff, 0x2c]);
        let tlvs = parse_lldpdu(&pdu).expect("valid");
        assert_eq!(tlvs.len(), 2);
        assert_eq!((tlvs[0].0, tlvs[0].1.len()), (127, 300));
        assert_eq!(tlvs[1], (END_TLV, &[][..]));
    }

    #[test]
    fn malformed_frames_are_refused() {
        let mut truncated = switch_frame()[..14].to_vec();
        truncated.extend([0x02, 0x07, b'x']);
        assert_eq!(
            frame_tlvs(&truncated),
            Err(LldpError::Truncated {
                tlv_type: 1,
                offset: 0,
                length: 7,
                left: 1
            })
        );
        assert_eq!(frame_tlvs(&[0; 10]), Err(LldpError::ShortFrame(10)));
        let mut ipv4 = switch_frame();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(frame_tlvs(&ipv4), Err(LldpError::NotLldp(0x0800)));
    }

    #[test]
    fn missing_end_and_vlan_tags_are_tolerated() {
        let mut frame = switch_frame()[..14].to_vec();
        frame.extend(tlv(3, &[0, 30]));
        assert_eq!(
            frame_tlvs(&frame),
            Ok(vec![(3, "001e".to_owned())]),
            "no End TLV, as upstream"
        );
        let mut tagged = switch_frame();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        assert_eq!(frame_tlvs(&tagged), frame_tlvs(&switch_frame()));
    }

    #[test]
    fn down_interfaces_are_not_listened_on() {
        let dir = tempfile::tempdir().expect("tmp");
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("sys/class/net/eno1/device/vendor", "0x8086\n");
        write("sys/class/net/eno1/flags", "0x1002\n");
        write("sys/class/net/eno2/flags", "0x1003\n");
        let root = SysRoot(dir.path().to_owned());
        assert!(!is_up(&root, "eno1"));
        assert!(is_up(&root, "eno2"));
        assert!(is_up(&root, "missing"), "unknown flags count as up");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let got = runtime.block_on(collect(&root, Duration::from_secs(60)));
        assert_eq!(
            got,
            BTreeMap::from([("eno1".to_owned(), Vec::new())]),
            "eno1 is down (reported empty at once); eno2 has no device link, so it is not listed"
        );
    }
}
