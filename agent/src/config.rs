//! Agent configuration.
//!
//! Sources, lowest to highest precedence: built-in defaults, a TOML file (`--config`), the
//! kernel command line (`ipa-*` keys, see [`crate::cmdline`]), and command-line flags. Every
//! source fills the same [`Settings`] (all fields optional); [`Settings::overlay`] stacks them and
//! [`AgentConfig::resolve`] applies defaults and checks the result. Flag names are upstream's
//! option names in kebab case, file keys the same names in snake case.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rivet_common::version::ApiVersion;
use serde::Deserialize;
use url::Url;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse; names the key and where it came from.
    #[error("invalid value {value:?} for {key} ({source_name}): {reason}")]
    Invalid {
        key: String,
        source_name: &'static str,
        value: String,
        reason: String,
    },
    /// The TOML file is unreadable or wrong.
    #[error("reading config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// Settings that cannot work together.
    #[error("{0}")]
    Conflict(String),
}

/// Seconds, as written in every source (`30`, `0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Seconds(pub f64);

impl Seconds {
    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl TryFrom<f64> for Seconds {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && (0.0..1e9).contains(&v) {
            Ok(Seconds(v))
        } else {
            Err(format!("expected a number of seconds >= 0, got {v}"))
        }
    }
}

impl FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| "expected a number of seconds".to_owned())?;
        Seconds::try_from(v)
    }
}

/// Comma-separated Ironic API URLs (`ipa-api-url`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct ApiUrls(pub Vec<Url>);

impl FromStr for ApiUrls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "mdns" {
            return Err("mDNS discovery is not supported by rivet-agent; give the API URL".into());
        }
        let mut urls = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let url = Url::parse(item).map_err(|e| format!("{item:?} is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!("{item:?} is not an http(s) URL with a host"));
            }
            urls.push(url);
        }
        if urls.is_empty() {
            return Err("no URL given".into());
        }
        Ok(ApiUrls(urls))
    }
}

impl TryFrom<String> for ApiUrls {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Lowest TLS version the agent speaks (server and client): 1.3 unless `ipa-tls-min-version=1.2`
/// (Ironic's default `[agent]tls_minimum_version` since 2026.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(try_from = "String")]
pub enum TlsMinVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    #[default]
    Tls13,
}

impl FromStr for TlsMinVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "1.2" => Ok(TlsMinVersion::Tls12),
            "1.3" => Ok(TlsMinVersion::Tls13),
            other => Err(format!("expected 1.2 or 1.3, got {other:?}")),
        }
    }
}

impl TryFrom<String> for TlsMinVersion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// An Ironic API version in a settings source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct VersionSetting(pub ApiVersion);

impl FromStr for VersionSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(VersionSetting).map_err(|e| e.to_string())
    }
}

impl TryFrom<String> for VersionSetting {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Device allowlist patterns (`/dev/loop*,/dev/vdb`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct DiskAllow(pub Vec<String>);

impl FromStr for DiskAllow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let patterns: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        parse_allowlist(&patterns)?;
        if patterns.is_empty() {
            return Err("no device pattern given".into());
        }
        Ok(DiskAllow(patterns))
    }
}

impl TryFrom<String> for DiskAllow {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Comma-separated inspection endpoints (`ipa-inspection-callback-url`), e.g.
/// `http://192.0.2.1:6385/v1/continue_inspection`. Upstream also accepts `mdns`; Rivet does not.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct CallbackUrls(pub Vec<Url>);

impl FromStr for CallbackUrls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "mdns" {
            return Err("mDNS discovery is not supported by rivet-agent; give the inspection URL".into());
        }
        s.parse::<ApiUrls>().map(|urls| CallbackUrls(urls.0))
    }
}

impl TryFrom<String> for CallbackUrls {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// A comma-separated list of names (`ipa-inspection-collectors=default,logs`); blanks are
/// dropped, so an empty value is an empty list. Names are checked when used, as upstream does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct NameList(pub Vec<String>);

impl FromStr for NameList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(NameList(
            s.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

impl TryFrom<String> for NameList {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Declares [`Settings`] once for flags, file and kernel command line, with its overlay.
macro_rules! settings {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty ),* $(,)?) => {
        /// One source of settings; `None` means "this source does not say".
        #[derive(Debug, Clone, Default, PartialEq, Parser, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[command(disable_help_flag = true, disable_version_flag = true)]
        pub struct Settings {
            $( $(#[$meta])* pub $name: Option<$ty>, )*
        }

        impl Settings {
            /// `top` wins wherever it says something.
            pub fn overlay(self, top: Settings) -> Settings {
                Settings { $( $name: top.$name.or(self.$name), )* }
            }
        }
    };
}

settings! {
    /// Ironic API URL(s), comma-separated (kernel: ipa-api-url).
    #[arg(long, value_name = "URLS")]
    api_url: ApiUrls,
    /// Run without lookup and heartbeats, for debugging; commands still need --agent-token.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    standalone: bool,
    /// Address the command API listens on [default: ::, or 0.0.0.0 without IPv6].
    #[arg(long, value_name = "IP")]
    listen_host: IpAddr,
    /// Port the command API listens on [default: 9999].
    #[arg(long, value_name = "PORT")]
    listen_port: u16,
    /// Host put into the callback URL [default: detected from the route to the API].
    #[arg(long, value_name = "HOST")]
    advertise_host: String,
    /// Port put into the callback URL [default: the listen port].
    #[arg(long, value_name = "PORT")]
    advertise_port: u16,
    /// Use the IPv4 address of this interface as the advertise host.
    #[arg(long, value_name = "NAME")]
    network_interface: String,
    /// Pre-shared agent token (virtual media boots); lookup tokens replace it.
    #[arg(long, value_name = "TOKEN")]
    agent_token: String,
    /// Sent as X-OpenStack-Request-ID on API requests.
    #[arg(long, value_name = "ID")]
    global_request_id: String,
    /// Give up looking the node up after this many seconds [default: 600].
    #[arg(long, value_name = "SECONDS")]
    lookup_timeout: Seconds,
    /// Initial and minimum pause between lookup attempts [default: 1].
    #[arg(long, value_name = "SECONDS")]
    lookup_interval: Seconds,
    /// Timeout of one request to the Ironic API [default: 30].
    #[arg(long, value_name = "SECONDS")]
    http_request_timeout: Seconds,
    /// Rounds of advertise-address detection [default: 6].
    #[arg(long, value_name = "N")]
    ip_lookup_attempts: u32,
    /// Pause between rounds of advertise-address detection [default: 10].
    #[arg(long, value_name = "SECONDS")]
    ip_lookup_sleep: Seconds,
    /// Use this Ironic API version instead of discovering it.
    #[arg(long, value_name = "X.Y")]
    ironic_api_version: VersionSetting,
    /// Do not verify TLS certificates of the Ironic API and image servers.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    insecure: bool,
    /// CA bundle for verifying the Ironic API and image servers.
    #[arg(long, value_name = "PATH")]
    cafile: PathBuf,
    /// Client certificate for outgoing HTTPS.
    #[arg(long, value_name = "PATH")]
    certfile: PathBuf,
    /// Client key for outgoing HTTPS.
    #[arg(long, value_name = "PATH")]
    keyfile: PathBuf,
    /// Static certificate of the command API (with --tls-key-file).
    #[arg(long, value_name = "PATH")]
    tls_cert_file: PathBuf,
    /// Static key of the command API (with --tls-cert-file).
    #[arg(long, value_name = "PATH")]
    tls_key_file: PathBuf,
    /// Only effect as upstream: true disables the auto-generated certificate.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    listen_tls: bool,
    /// Generate a self-signed certificate when Ironic supports it (API >= 1.68) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    enable_auto_tls: bool,
    /// Lowest TLS version, 1.2 or 1.3 [default: 1.2]; lookup may raise it.
    #[arg(long, value_name = "VERSION")]
    tls_min_version: TlsMinVersion,
    /// Keep at most this many command results [default: 64].
    #[arg(long, value_name = "N")]
    command_history_limit: usize,
    /// Allow power off, reboot and other whole-machine actions outside a detected ramdisk.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    i_am_a_ramdisk: bool,
    /// Directory that receives the rescue password [default: /etc/ipa-rescue-config].
    #[arg(long, value_name = "PATH")]
    rescue_config_dir: PathBuf,
    /// Devices the agent may see and modify, as /dev glob patterns, comma-separated
    /// (e.g. '/dev/loop*'). Without it, destructive work runs only in a ramdisk.
    #[arg(long, value_name = "PATTERNS")]
    disk_allow: DiskAllow,
    /// Directory of executable vendor hardware managers [default: /etc/rivet/managers.d].
    #[arg(long, value_name = "PATH")]
    hardware_managers_dir: PathBuf,
    /// Longest a vendor executable step may run unless the step sets its own timeout [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    hardware_manager_step_timeout: Seconds,
    /// Longest wait for an image server to connect or send more data [default: 60].
    #[arg(long, value_name = "SECONDS")]
    image_download_connection_timeout: Seconds,
    /// Retries of an interrupted image download [default: 9].
    #[arg(long, value_name = "N")]
    image_download_connection_retries: u32,
    /// Pause between image download attempts [default: 10].
    #[arg(long, value_name = "SECONDS")]
    image_download_connection_retry_interval: Seconds,
    /// Disk-backed directory for the parts of an image that cannot be streamed (a qcow2 file
    /// whose tables come after its data); never a tmpfs. Without it such images are refused.
    #[arg(long, value_name = "PATH")]
    image_spool_dir: PathBuf,
    /// Where to post inspection data at start-up, comma-separated (kernel:
    /// ipa-inspection-callback-url) [default: none; with --inspection-collectors and an API URL,
    /// each API URL + /v1/continue_inspection].
    #[arg(long, value_name = "URLS")]
    inspection_callback_url: CallbackUrls,
    /// Inspection collectors, comma-separated (kernel: ipa-inspection-collectors)
    /// [default: default,logs].
    #[arg(long, value_name = "NAMES")]
    inspection_collectors: NameList,
    /// Longest wait for the PXE interface (or every interface) to get an IPv4 address before
    /// inspection; 0 disables the wait (kernel: ipa-inspection-dhcp-wait-timeout) [default: 60].
    #[arg(long, value_name = "SECONDS")]
    inspection_dhcp_wait_timeout: u64,
    /// Wait for every interface, not only the PXE one, to get an address before inspection
    /// (kernel: ipa-inspection-dhcp-all-interfaces) [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    inspection_dhcp_all_interfaces: bool,
    /// Benchmarks the extra-hardware collector asks hardware-detect for, comma-separated
    /// (cpu, disk, mem; kernel: ipa-inspection-benchmarks) [default: none].
    #[arg(long, value_name = "NAMES")]
    inspection_benchmarks: NameList,
    /// Listen for LLDP on every interface whenever the inventory is collected, and report the
    /// TLVs in each interface's `lldp` (kernel: ipa-collect-lldp) [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    collect_lldp: bool,
    /// How long to listen for LLDP frames (kernel: ipa-lldp-timeout) [default: 30].
    #[arg(long, value_name = "SECONDS")]
    lldp_timeout: Seconds,
    /// Log at debug level (kernel: ipa-debug).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    debug: bool,
    /// Log lines as `text` or `json`, one object a line (kernel: rivet-log-format)
    /// [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: rivet_common::logging::LogFormat,
}

/// The agent's command line: every setting, plus where to read files from.
#[derive(Debug, Parser)]
#[command(
    name = "rivet-agent",
    version,
    about = "Rivet provisioning agent (wire-compatible with ironic-python-agent)"
)]
pub struct Cli {
    /// TOML file with settings (snake_case keys of the flags below).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Kernel command line to read ipa-* keys from.
    #[arg(long, value_name = "PATH", default_value = "/proc/cmdline")]
    pub kernel_cmdline: PathBuf,
    /// Every other setting.
    #[command(flatten)]
    pub settings: Settings,
}

impl Cli {
    /// Parse an argv (first item is the program name).
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args)
    }
}

impl Settings {
    /// Read a TOML settings file; unknown keys are errors.
    pub fn from_toml(path: &std::path::Path, text: &str) -> Result<Settings, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Retry budget of the lookup (upstream: tenacity random-exponential with extra 409 pauses).
#[derive(Debug, Clone, PartialEq)]
pub struct LookupPolicy {
    /// Give up after this long.
    pub total: Duration,
    /// Minimum (and first) backoff.
    pub interval: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Extra pauses after successive 409 answers; the last repeats.
    pub conflict_pauses: Vec<Duration>,
}

/// Upstream's default inspection collectors (IPA 13 `config.INSPECTION_DEFAULT_COLLECTORS`).
pub const DEFAULT_INSPECTION_COLLECTORS: &[&str] = &["default", "logs"];

/// How the inspection data is posted again after a failure (IPA 13 `inspector.call_inspector`:
/// tenacity, 5 attempts, `wait_exponential(multiplier=1.5, min=5, max=30)`). The pause after
/// failed attempt `n` (from 1) is `base × 2^(n-1)`, clamped to `[min, max]`: 5, 5, 6 and 12 s.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionRetry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// `base` of the pause.
    pub base: Duration,
    /// Shortest pause.
    pub min: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for InspectionRetry {
    fn default() -> Self {
        InspectionRetry {
            attempts: 5,
            base: Duration::from_millis(1500),
            min: Duration::from_secs(5),
            max: Duration::from_secs(30),
        }
    }
}

impl InspectionRetry {
    /// The pause after failed attempt `attempt` (counted from 1).
    pub fn pause(&self, attempt: u32) -> Duration {
        let grown = self.base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(60) as i32);
        Duration::from_secs_f64(grown.min(self.max.as_secs_f64())).max(self.min)
    }
}

/// In-band inspection at start-up (IPA 13 `inspector.inspect`), resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionConfig {
    /// Endpoints, tried in order until one answers.
    pub callback_urls: Vec<Url>,
    /// Collector names in run order (checked when inspection runs).
    pub collectors: Vec<String>,
    /// Longest wait for DHCP before collecting (zero: no wait).
    pub dhcp_wait_timeout: Duration,
    /// Wait for every interface rather than only the PXE one.
    pub dhcp_all_interfaces: bool,
    /// `hardware-detect --benchmark` names for the `extra-hardware` collector.
    pub benchmarks: Vec<String>,
    /// Retries of the post.
    pub retry: InspectionRetry,
}

/// Heartbeat timing that is not negotiated with Ironic.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatTiming {
    /// After a failed heartbeat, retry after U(lo, hi).
    pub error_retry: (Duration, Duration),
    /// A forced heartbeat is never sent sooner than this after the previous one.
    pub forced_min_gap: Duration,
}

impl Default for HeartbeatTiming {
    fn default() -> Self {
        HeartbeatTiming {
            error_retry: (Duration::from_secs(5), Duration::from_secs(10)),
            forced_min_gap: Duration::from_secs(5),
        }
    }
}

/// How the command API is served.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerTls {
    /// Plain HTTP.
    None,
    /// Generate a self-signed certificate if Ironic is new enough, else plain HTTP.
    Auto,
    /// A certificate and key from files.
    Static { cert: PathBuf, key: PathBuf },
}

/// How outgoing HTTPS is verified.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientTls {
    /// Accept any certificate.
    pub insecure: bool,
    /// CA bundle instead of the system store.
    pub cafile: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Boot facts from the kernel command line that are not settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BootParams {
    /// `BOOTIF`, reported verbatim as `inventory.boot.pxe_interface`.
    pub bootif: Option<String>,
    /// `boot_method` (`vmedia` for virtual media boots).
    pub boot_method: Option<String>,
}

/// Everything the agent needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Ironic API URLs; empty in standalone mode.
    pub api_urls: Vec<Url>,
    /// No lookup, no heartbeats.
    pub standalone: bool,
    /// Where the command API listens.
    pub listen: SocketAddr,
    /// Callback host override.
    pub advertise_host: Option<String>,
    /// Callback port override (default: the port actually bound).
    pub advertise_port: Option<u16>,
    /// Interface whose IPv4 address is advertised.
    pub network_interface: Option<String>,
    /// Pre-shared token.
    pub agent_token: Option<String>,
    /// X-OpenStack-Request-ID.
    pub global_request_id: Option<String>,
    /// Lookup retry budget.
    pub lookup: LookupPolicy,
    /// Timeout of one Ironic API request.
    pub http_request_timeout: Duration,
    /// Advertise-address detection rounds and pause.
    pub ip_lookup: (u32, Duration),
    /// Fixed Ironic API version.
    pub ironic_api_version: Option<ApiVersion>,
    /// Command API TLS.
    pub server_tls: ServerTls,
    /// Outgoing TLS.
    pub client_tls: ClientTls,
    /// TLS floor.
    pub tls_min_version: TlsMinVersion,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatTiming,
    /// Bound on remembered command results.
    pub command_history_limit: usize,
    /// Whole-machine actions (power off, reboot, interfaces down) are allowed.
    pub is_ramdisk: bool,
    /// Where finalize_rescue writes the password.
    pub rescue_config_dir: PathBuf,
    /// Marker created after rescue so a restarted agent stays idle.
    pub rescue_marker: PathBuf,
    /// Boot facts.
    pub boot: BootParams,
    /// Debug logging.
    pub debug: bool,
    /// How log lines are written.
    pub log_format: rivet_common::logging::LogFormat,
    /// Device allowlist (`None`: no allowlist).
    pub disk_allow: Option<Vec<glob::Pattern>>,
    /// Directory of executable hardware managers.
    pub hardware_managers_dir: PathBuf,
    /// Time limits of executable managers.
    pub manager_timeouts: ManagerTimeouts,
    /// Image download retries and timeouts.
    pub image_download: DownloadPolicy,
    /// Disk-backed spool directory for images that cannot be streamed.
    pub image_spool_dir: Option<PathBuf>,
    /// In-band inspection before lookup (`None`: disabled).
    pub inspection: Option<InspectionConfig>,
    /// Capture LLDP whenever the inventory is collected (`ipa-collect-lldp`).
    pub collect_lldp: bool,
    /// How long an LLDP capture listens (`ipa-lldp-timeout`).
    pub lldp_timeout: Duration,
    /// An Ironic API client shared with other agents in the same process (rivet-fleet runs
    /// thousands, which would otherwise hold one connection each); `None` builds one from
    /// `client_tls`. Never set from settings: only a program embedding agents sets it.
    pub shared_http: Option<reqwest::Client>,
    /// Told the round trip and outcome of every heartbeat (rivet-fleet's latency figures).
    pub heartbeat_observer: Option<HeartbeatObserver>,
}

/// How one heartbeat ended, for a [`HeartbeatObserver`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeartbeatOutcome<'a> {
    /// Ironic accepted it.
    Accepted,
    /// Ironic answered with an error status and this message.
    Refused {
        /// HTTP status.
        status: u16,
        /// Ironic's message.
        message: &'a str,
    },
    /// No answer, or an unusable one.
    Failed,
}

/// A callback told each heartbeat's round trip and outcome.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct HeartbeatObserver(pub Arc<dyn Fn(Duration, HeartbeatOutcome<'_>) + Send + Sync>);

impl std::fmt::Debug for HeartbeatObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeartbeatObserver")
    }
}

impl AgentConfig {
    /// Apply defaults to the stacked settings and check them.
    pub fn resolve(s: Settings, boot: BootParams, pid1_is_ramdisk: bool) -> Result<AgentConfig, ConfigError> {
        let standalone = s.standalone.unwrap_or(false);
        let api_urls = s.api_url.clone().map(|u| u.0).unwrap_or_default();
        let inspection = inspection_config(&s, &api_urls, standalone);
        if standalone && !api_urls.is_empty() {
            tracing::info!("standalone mode: ignoring api_url, no lookup or heartbeats");
        }
        let default_host = if ipv6_enabled() {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::from([0, 0, 0, 0])
        };
        let server_tls = match (s.tls_cert_file, s.tls_key_file) {
            (Some(cert), Some(key)) => ServerTls::Static { cert, key },
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Conflict(
                    "tls_cert_file and tls_key_file must be given together".into(),
                ));
            }
            (None, None) if !s.listen_tls.unwrap_or(false) && s.enable_auto_tls.unwrap_or(true) => ServerTls::Auto,
            (None, None) => ServerTls::None,
        };
        let identity = match (s.certfile, s.keyfile) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Conflict(
                    "certfile and keyfile must be given together".into(),
                ));
            }
        };
        let interval = s
            .lookup_interval
            .map(Seconds::duration)
            .unwrap_or(Duration::from_secs(1));
        let rescue_config_dir = s
            .rescue_config_dir
            .unwrap_or_else(|| PathBuf::from("/etc/ipa-rescue-config"));
        Ok(AgentConfig {
            api_urls: if standalone { Vec::new() } else { api_urls },
            standalone,
            listen: SocketAddr::new(s.listen_host.unwrap_or(default_host), s.listen_port.unwrap_or(9999)),
            advertise_host: s.advertise_host,
            advertise_port: s.advertise_port,
            network_interface: s.network_interface,
            agent_token: s.agent_token.filter(|t| !t.is_empty()),
            global_request_id: s.global_request_id,
            lookup: LookupPolicy {
                total: s
                    .lookup_timeout
                    .map(Seconds::duration)
                    .unwrap_or(Duration::from_secs(600)),
                interval,
                max_backoff: Duration::from_secs(60).max(interval),
                conflict_pauses: [5, 10, 30].map(Duration::from_secs).to_vec(),
            },
            http_request_timeout: s
                .http_request_timeout
                .map(Seconds::duration)
                .unwrap_or(Duration::from_secs(30)),
            ip_lookup: (
                s.ip_lookup_attempts.unwrap_or(6).max(1),
                s.ip_lookup_sleep
                    .map(Seconds::duration)
                    .unwrap_or(Duration::from_secs(10)),
            ),
            ironic_api_version: s.ironic_api_version.map(|v| v.0),
            server_tls,
            client_tls: ClientTls {
                insecure: s.insecure.unwrap_or(false),
                cafile: s.cafile,
                identity,
            },
            tls_min_version: s.tls_min_version.unwrap_or_default(),
            heartbeat: HeartbeatTiming::default(),
            command_history_limit: s.command_history_limit.unwrap_or(64).max(1),
            is_ramdisk: s.i_am_a_ramdisk.unwrap_or(false) || pid1_is_ramdisk,
            rescue_marker: PathBuf::from("/etc/.rescued"),
            rescue_config_dir,
            boot,
            debug: s.debug.unwrap_or(false),
            log_format: s.log_format.unwrap_or_default(),
            disk_allow: match s.disk_allow {
                Some(allow) => Some(parse_allowlist(&allow.0).map_err(|reason| ConfigError::Invalid {
                    key: "disk_allow".into(),
                    source_name: "settings",
                    value: allow.0.join(","),
                    reason,
                })?),
                None => None,
            },
            hardware_managers_dir: s
                .hardware_managers_dir
                .unwrap_or_else(|| PathBuf::from("/etc/rivet/managers.d")),
            image_download: DownloadPolicy {
                stall_timeout: s
                    .image_download_connection_timeout
                    .map(Seconds::duration)
                    .unwrap_or(Duration::from_secs(60)),
                retries: s.image_download_connection_retries.unwrap_or(9),
                interval: s
                    .image_download_connection_retry_interval
                    .map(Seconds::duration)
                    .unwrap_or(Duration::from_secs(10)),
            },
            image_spool_dir: s.image_spool_dir,
            inspection,
            collect_lldp: s.collect_lldp.unwrap_or(false),
            lldp_timeout: s.lldp_timeout.map(Seconds::duration).unwrap_or(Duration::from_secs(30)),
            shared_http: None,
            heartbeat_observer: None,
            manager_timeouts: ManagerTimeouts {
                step: s
                    .hardware_manager_step_timeout
                    .map(Seconds::duration)
                    .unwrap_or(Duration::from_secs(3600)),
                ..Default::default()
            },
        })
    }
}

/// Inspection is enabled as upstream decides (IPA 13 `inspector.is_enabled`, `_get_urls`): by a
/// callback URL, or by a collector list together with API URLs (then each API URL with
/// `/v1/continue_inspection`). Never in standalone mode (IPA inspects only when not standalone).
fn inspection_config(s: &Settings, api_urls: &[Url], standalone: bool) -> Option<InspectionConfig> {
    let collectors = s
        .inspection_collectors
        .as_ref()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    let callback_urls = match &s.inspection_callback_url {
        Some(urls) => urls.0.clone(),
        None if !collectors.is_empty() => api_urls
            .iter()
            .filter_map(|u| Url::parse(&format!("{}/v1/continue_inspection", u.as_str().trim_end_matches('/'))).ok())
            .collect(),
        None => Vec::new(),
    };
    if callback_urls.is_empty() {
        return None;
    }
    if standalone {
        tracing::info!("standalone mode: inspection is not run");
        return None;
    }
    Some(InspectionConfig {
        callback_urls,
        collectors: if collectors.is_empty() {
            DEFAULT_INSPECTION_COLLECTORS.iter().map(|c| c.to_string()).collect()
        } else {
            collectors
        },
        dhcp_wait_timeout: Duration::from_secs(s.inspection_dhcp_wait_timeout.unwrap_or(60)),
        dhcp_all_interfaces: s.inspection_dhcp_all_interfaces.unwrap_or(false),
        benchmarks: s
            .inspection_benchmarks
            .as_ref()
            .map(|b| b.0.clone())
            .unwrap_or_default(),
        retry: InspectionRetry::default(),
    })
}

/// Download retry policy (upstream `image_download_connection_*`).
#[derive(Debug, Clone, Copy)]
pub struct DownloadPolicy {
    /// Longest wait for a connection or for more data.
    pub stall_timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Pause between attempts.
    pub interval: Duration,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        DownloadPolicy {
            stall_timeout: Duration::from_secs(60),
            retries: 9,
            interval: Duration::from_secs(10),
        }
    }
}

/// How long calls to an executable hardware manager may take.
#[derive(Debug, Clone, Copy)]
pub struct ManagerTimeouts {
    /// `describe`, `evaluate`, `get_steps`.
    pub query: Duration,
    /// `run_step`, unless the step declares its own `timeout` (seconds).
    pub step: Duration,
}

impl Default for ManagerTimeouts {
    fn default() -> Self {
        ManagerTimeouts {
            query: Duration::from_secs(30),
            step: Duration::from_secs(3600),
        }
    }
}

/// Parse `--disk-allow` patterns.
pub fn parse_allowlist(patterns: &[String]) -> Result<Vec<glob::Pattern>, String> {
    patterns
        .iter()
        .map(|p| {
            if !p.starts_with("/dev/") {
                return Err(format!("device pattern {p:?} must start with /dev/"));
            }
            glob::Pattern::new(p).map_err(|e| format!("device pattern {p:?}: {e}"))
        })
        .collect()
}

fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .map(|v| v.trim() == "0")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_mirror_upstream_option_names() {
        let cli = Cli::parse_args([
            "rivet-agent",
            "--api-url",
            "http://192.0.2.1:6385",
            "--standalone",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "19999",
            "--advertise-host",
            "203.0.113.5",
            "--advertise-port",
            "443",
            "--agent-token",
            "tok",
            "--config",
            "/etc/rivet/agent.toml",
        ])
        .expect("parses");
        let s = cli.settings;
        assert_eq!(s.standalone, Some(true));
        assert_eq!(s.listen_port, Some(19999));
        assert_eq!(s.advertise_host.as_deref(), Some("203.0.113.5"));
        assert_eq!(s.agent_token.as_deref(), Some("tok"));
        assert_eq!(cli.config, Some(PathBuf::from("/etc/rivet/agent.toml")));
    }

    #[test]
    fn malformed_flag_names_the_flag() {
        let err = Cli::parse_args(["rivet-agent", "--listen-port", "abc"]).expect_err("rejected");
        assert!(err.to_string().contains("--listen-port"), "{err}");
        let err = Cli::parse_args(["rivet-agent", "--api-url", "ftp://x"]).expect_err("rejected");
        assert!(err.to_string().contains("--api-url"), "{err}");
    }

    #[test]
    fn file_is_strict_and_names_the_key() {
        let path = std::path::Path::new("agent.toml");
        let ok = Settings::from_toml(path, "listen_port = 1234\napi_url = \"http://a:1\"\n").expect("parses");
        assert_eq!(ok.listen_port, Some(1234));
        let err = Settings::from_toml(path, "listen_prot = 1\n").expect_err("unknown key");
        assert!(err.to_string().contains("listen_prot"), "{err}");
        let err = Settings::from_toml(path, "listen_port = \"x\"\n").expect_err("wrong type");
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn overlay_lets_the_top_source_win() {
        let low = Settings {
            listen_port: Some(1),
            advertise_port: Some(2),
            ..Default::default()
        };
        let top = Settings {
            listen_port: Some(3),
            ..Default::default()
        };
        let merged = low.overlay(top);
        assert_eq!((merged.listen_port, merged.advertise_port), (Some(3), Some(2)));
    }

    #[test]
    fn inspection_is_enabled_as_upstream_decides() {
        let resolve = |s: Settings| AgentConfig::resolve(s, BootParams::default(), false).expect("valid");
        let defaults = resolve(Settings::default());
        assert_eq!(defaults.inspection, None, "off without a callback URL or collectors");
        assert!(!defaults.collect_lldp);
        assert_eq!(defaults.lldp_timeout, Duration::from_secs(30));

        let by_callback = resolve(Settings {
            inspection_callback_url: Some("http://192.0.2.1:6385/v1/continue_inspection".parse().expect("url")),
            ..Default::default()
        })
        .inspection
        .expect("a callback URL enables inspection");
        assert_eq!(by_callback.collectors, ["default", "logs"]);
        assert_eq!(by_callback.dhcp_wait_timeout, Duration::from_secs(60));
        assert!(!by_callback.dhcp_all_interfaces);
        assert_eq!(by_callback.retry, InspectionRetry::default());

        let by_collectors = resolve(Settings {
            api_url: Some(
                "http://192.0.2.1:6385/,https://api.example/baremetal"
                    .parse()
                    .expect("urls"),
            ),
            inspection_collectors: Some("default,lldp".parse().expect("names")),
            ..Default::default()
        })
        .inspection
        .expect("collectors with an API URL enable inspection");
        let urls: Vec<&str> = by_collectors.callback_urls.iter().map(Url::as_str).collect();
        assert_eq!(
            urls,
            [
                "http://192.0.2.1:6385/v1/continue_inspection",
                "https://api.example/baremetal/v1/continue_inspection"
            ]
        );
        assert_eq!(by_collectors.collectors, ["default", "lldp"]);

        let collectors_alone = Settings {
            inspection_collectors: Some("default".parse().expect("names")),
            ..Default::default()
        };
        assert_eq!(resolve(collectors_alone).inspection, None, "no URL to post to");
        let standalone = Settings {
            standalone: Some(true),
            inspection_callback_url: Some("http://192.0.2.1/".parse().expect("url")),
            ..Default::default()
        };
        assert_eq!(
            resolve(standalone).inspection,
            None,
            "upstream never inspects standalone"
        );
    }

    #[test]
    fn inspection_flags_parse() {
        let cli = Cli::parse_args([
            "rivet-agent",
            "--inspection-callback-url",
            "http://192.0.2.1:6385/v1/continue_inspection",
            "--inspection-collectors",
            "default,lldp",
            "--inspection-dhcp-wait-timeout",
            "5",
            "--inspection-dhcp-all-interfaces",
            "--collect-lldp",
            "--lldp-timeout",
            "1.5",
        ])
        .expect("parses");
        let s = cli.settings;
        assert_eq!(
            s.inspection_collectors,
            Some(NameList(vec!["default".into(), "lldp".into()]))
        );
        assert_eq!(s.inspection_dhcp_wait_timeout, Some(5));
        assert_eq!(s.inspection_dhcp_all_interfaces, Some(true));
        assert_eq!(s.collect_lldp, Some(true));
        assert_eq!(s.lldp_timeout, Some(Seconds(1.5)));
        let cfg = AgentConfig::resolve(s, BootParams::default(), false).expect("valid");
        assert!(cfg.collect_lldp);
        assert_eq!(cfg.lldp_timeout, Duration::from_millis(1500));
        let file = Settings::from_toml(
            std::path::Path::new("agent.toml"),
            "inspection_callback_url = \"http://a:1/v1/continue_inspection\"\ncollect_lldp = true\n",
        )
        .expect("file keys are the snake_case names");
        assert_eq!(file.collect_lldp, Some(true));
    }

    #[test]
    fn inspection_retry_pauses_follow_tenacity() {
        let retry = InspectionRetry::default();
        let pauses: Vec<Duration> = (1..retry.attempts).map(|n| retry.pause(n)).collect();
        assert_eq!(pauses, [5000, 5000, 6000, 12000].map(Duration::from_millis));
        assert_eq!(retry.pause(40), Duration::from_secs(30), "capped");
    }

    #[test]
    fn resolve_applies_defaults_and_checks_pairs() {
        let cfg = AgentConfig::resolve(Settings::default(), BootParams::default(), false).expect("defaults work");
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.lookup.total, Duration::from_secs(600));
        assert_eq!(cfg.server_tls, ServerTls::Auto);
        assert!(!cfg.is_ramdisk);
        let half = Settings {
            tls_cert_file: Some("c".into()),
            ..Default::default()
        };
        assert!(AgentConfig::resolve(half, BootParams::default(), false).is_err());
    }
}
