//! Ironic API microversions (`X-OpenStack-Ironic-API-Version: 1.N`).

use std::fmt;
use std::str::FromStr;

/// The request and response header carrying the negotiated microversion.
pub const VERSION_HEADER: &str = "X-OpenStack-Ironic-API-Version";
/// Response header: lowest microversion the server accepts.
pub const MIN_VERSION_HEADER: &str = "X-OpenStack-Ironic-API-Minimum-Version";
/// Response header: highest microversion the server accepts.
pub const MAX_VERSION_HEADER: &str = "X-OpenStack-Ironic-API-Maximum-Version";
/// Optional request id header forwarded by agents (`ipa-global-request-id`).
pub const REQUEST_ID_HEADER: &str = "X-OpenStack-Request-ID";

/// An Ironic API microversion such as `1.68`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Always 1 for the v1 API.
    pub major: u32,
    /// The microversion.
    pub minor: u32,
}

impl ApiVersion {
    /// Build `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Lowest version an agent assumes when discovery fails (upstream IPA's MIN).
    pub const AGENT_MIN: ApiVersion = ApiVersion::new(1, 31);
    /// Lookup and heartbeat endpoints exist.
    pub const RAMDISK_ENDPOINTS: ApiVersion = ApiVersion::new(1, 22);
    /// `agent_version` accepted in heartbeats.
    pub const AGENT_VERSION: ApiVersion = ApiVersion::new(1, 36);
    /// Lookup mints an agent token; heartbeats carry it.
    pub const AGENT_TOKEN: ApiVersion = ApiVersion::new(1, 62);
    /// `agent_verify_ca` accepted in heartbeats.
    pub const AGENT_VERIFY_CA: ApiVersion = ApiVersion::new(1, 68);
    /// `agent_status` / `agent_status_message` accepted in heartbeats.
    pub const AGENT_STATUS: ApiVersion = ApiVersion::new(1, 72);
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a version string is not a microversion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid API version {0:?}: expected MAJOR.MINOR, for example 1.68")]
pub struct ApiVersionError(pub String);

impl FromStr for ApiVersion {
    type Err = ApiVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ApiVersionError(s.to_owned());
        let (major, minor) = s.trim().split_once('.').ok_or_else(err)?;
        Ok(ApiVersion {
            major: major.parse().map_err(|_| err())?,
            minor: minor.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let table = [
            ("1.68", Some((1, 68))),
            (" 1.1 ", Some((1, 1))),
            ("1", None),
            ("a.b", None),
            ("", None),
        ];
        for (text, want) in table {
            let got = text.parse::<ApiVersion>().ok().map(|v| (v.major, v.minor));
            assert_eq!(got, want, "{text:?}");
        }
        assert!(ApiVersion::new(1, 9) < ApiVersion::new(1, 10));
        assert_eq!(ApiVersion::new(1, 115).to_string(), "1.115");
    }
}
