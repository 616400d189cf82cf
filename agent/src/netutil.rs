//! Finding the address the conductor can reach the agent on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::Url;

/// True for addresses a conductor cannot use (unspecified, IPv6 link-local).
fn unusable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_unicast_link_local(),
    }
}

/// The local source address the kernel picks to reach `peer`. A connected UDP socket sends
/// nothing; it only asks the routing table (the native form of `ip route get`).
fn source_for(peer: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(peer).ok()?;
    socket.local_addr().ok().map(|a| a.ip()).filter(|ip| !unusable(ip))
}

/// The address routed towards the first reachable API URL, tried for `attempts` rounds.
pub async fn detect_advertise_ip(urls: &[Url], attempts: u32, pause: Duration) -> Result<IpAddr, String> {
    for round in 0..attempts {
        for url in urls {
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let Ok(addrs) = tokio::net::lookup_host((host, port)).await else {
                continue;
            };
            if let Some(ip) = addrs.filter_map(source_for).next() {
                return Ok(ip);
            }
        }
        if round + 1 < attempts {
            tokio::time::sleep(pause).await;
        }
    }
    Err(format!(
        "no local address routes to any of the API URLs after {attempts} rounds"
    ))
}

/// First IPv4 address of a network interface.
pub fn interface_ipv4(name: &str) -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        let v4 = ifa.address.as_ref()?.as_sockaddr_in()?.ip();
        (ifa.interface_name == name).then_some(IpAddr::V4(v4))
    })
}

/// `http://host:port` with IPv6 literals bracketed, no trailing slash.
pub fn callback_url(scheme: &str, host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("{scheme}://[{v6}]:{port}"),
        _ => format!("{scheme}://{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_bracket_ipv6() {
        assert_eq!(callback_url("https", "192.0.2.10", 9999), "https://192.0.2.10:9999");
        assert_eq!(callback_url("http", "2001:db8::1", 9999), "http://[2001:db8::1]:9999");
        assert_eq!(callback_url("http", "agent.example", 80), "http://agent.example:80");
    }

    #[tokio::test]
    async fn loopback_api_is_reached_from_loopback() {
        let url = Url::parse("http://127.0.0.1:6385").expect("url");
        let ip = detect_advertise_ip(&[url], 1, Duration::ZERO).await.expect("routable");
        assert!(ip.is_loopback(), "{ip}");
    }
}
