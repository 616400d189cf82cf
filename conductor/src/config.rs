//! Conductor configuration: defaults, a TOML file (`--config`), flags; a higher source wins.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Command-line flags.
#[derive(Debug, Parser, Default)]
#[command(
    name = "rivet-conductor",
    version,
    about = "Rivet conductor: bare-metal provisioning, Ironic-compatible API"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address the API listens on [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    pub listen_host: Option<IpAddr>,
    /// API port [default: 6385].
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<u16>,
    /// Database: sqlite://PATH (created if missing) or postgres://USER:PASS@HOST/DB
    /// [default: sqlite://rivet.sqlite in the working directory].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Name of this conductor (lock holder) [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// noauth or http_basic [default: noauth].
    #[arg(long, value_name = "STRATEGY")]
    pub auth_strategy: Option<AuthStrategy>,
    /// htpasswd file (bcrypt) for http_basic.
    #[arg(long, value_name = "PATH")]
    pub http_basic_auth_user_file: Option<PathBuf>,
    /// Directory served at /httpboot/ (deploy kernels and ramdisks for iPXE boot).
    #[arg(long, value_name = "DIR")]
    pub http_root: Option<PathBuf>,
    /// URL agents and booting machines use to reach this API [default: http://<listen address>:<port>].
    #[arg(long, value_name = "URL")]
    pub public_endpoint: Option<String>,
    /// Log at debug level.
    #[arg(long)]
    pub debug: bool,
    /// Serve the API only: own no nodes, hand every verb and heartbeat to the node's owner
    /// through the database, run no periodic work (file key `api_only`).
    #[arg(long)]
    pub api_only: bool,
    /// Print the provision state table (Markdown) and exit.
    #[arg(long)]
    pub print_states: bool,
}

/// How API requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthStrategy {
    /// Anyone may call the API.
    #[default]
    Noauth,
    /// HTTP basic auth against an htpasswd file with bcrypt hashes.
    #[value(name = "http_basic")]
    HttpBasic,
}

/// The TOML file (all keys optional; unknown keys are errors).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen_host: Option<IpAddr>,
    pub listen_port: Option<u16>,
    pub database_url: Option<String>,
    pub host: Option<String>,
    pub auth_strategy: Option<AuthStrategy>,
    pub http_basic_auth_user_file: Option<PathBuf>,
    /// URL clients and agents use to reach this API (links, iPXE scripts).
    pub public_endpoint: Option<String>,
    /// Directory served at /httpboot/.
    pub http_root: Option<PathBuf>,
    /// URL of the http root as BMCs reach it (virtual media) [default: <public endpoint>/httpboot].
    pub external_http_url: Option<String>,
    /// Directory a TFTP server serves (`pxe` boot).
    pub tftp_root: Option<PathBuf>,
    /// SYSLINUX's isolinux.bin, for deploy ISOs.
    pub isolinux_bin: Option<PathBuf>,
    /// SYSLINUX's ldlinux.c32 (BIOS), for deploy ISOs and the TFTP root.
    pub ldlinux_c32: Option<PathBuf>,
    pub enabled_hardware_types: Option<Vec<String>>,
    /// `kind = ["impl", ...]` per interface kind.
    pub enabled_interfaces: Option<BTreeMap<String, Vec<String>>>,
    /// `kind = "impl"` per interface kind.
    pub default_interfaces: Option<BTreeMap<String, String>>,
    pub automated_clean: Option<bool>,
    pub node_locked_retry_attempts: Option<u32>,
    pub node_locked_retry_interval: Option<f64>,
    pub allow_deleting_available_nodes: Option<bool>,
    /// The bonding mode of a port group created without one (Ironic's `default_portgroup_mode`).
    pub default_portgroup_mode: Option<String>,
    /// Seconds sent to agents as `heartbeat_timeout` (they beat every 30–60 % of it).
    pub ramdisk_heartbeat_timeout: Option<u64>,
    /// Refuse heartbeats whose callback URL is not https.
    pub require_tls: Option<bool>,
    pub clean_callback_timeout: Option<u64>,
    pub deploy_callback_timeout: Option<u64>,
    pub service_callback_timeout: Option<u64>,
    /// Seconds a rescue ramdisk may take to call back (Ironic's `rescue_callback_timeout`).
    pub rescue_callback_timeout: Option<u64>,
    pub check_provision_state_interval: Option<f64>,
    /// Keep agents running between cleaning and deployment.
    pub fast_track: Option<bool>,
    pub fast_track_timeout: Option<u64>,
    /// Per-request timeout of commands to agents.
    pub agent_command_timeout: Option<f64>,
    /// Lowest TLS version between conductor and agents, "1.2" or "1.3" (Ironic's
    /// `[agent]tls_minimum_version`, default 1.3): sent to agents at lookup and required by
    /// the conductor's agent client.
    pub agent_tls_minimum_version: Option<String>,
    /// Times the power state is read after the agent was asked to power off at the end of a
    /// deployment, before powering off through the BMC (Ironic's
    /// `[agent]post_deploy_get_power_state_retries`, default 6; 0 powers off at once).
    pub agent_post_deploy_get_power_state_retries: Option<u32>,
    /// Seconds between those reads (Ironic's `[agent]post_deploy_get_power_state_retry_interval`,
    /// default 5).
    pub agent_post_deploy_get_power_state_retry_interval: Option<f64>,
    /// `interface.step = priority` for clean steps (0 disables a step in automated cleaning).
    pub clean_step_priority_override: Option<BTreeMap<String, i64>>,
    /// This conductor's group (Ironic's `[conductor]conductor_group`): it owns only nodes whose
    /// `conductor_group` is the same.
    pub conductor_group: Option<String>,
    /// Seconds between refreshes of this conductor's membership row (Ironic's
    /// `[conductor]heartbeat_interval`, default 10).
    pub heartbeat_interval: Option<f64>,
    /// Seconds after which a conductor whose row was not refreshed is dead and its nodes are
    /// taken over (Ironic's `[conductor]heartbeat_timeout`, default 60).
    pub heartbeat_timeout: Option<f64>,
    /// Record every node lock in the `node_locks` table (audits, the take-over tests).
    pub lock_history: Option<bool>,
    /// Serve the API only (as `--api-only`).
    pub api_only: Option<bool>,
    /// Inspection: hooks, ports, timeouts, built-in rules (Ironic's `[inspector]`).
    pub inspector: Option<crate::inspection::config::InspectorFile>,
    /// Enrolment of unknown machines that post inspection data (Ironic's `[auto_discovery]`).
    pub auto_discovery: Option<crate::inspection::config::AutoDiscoveryFile>,
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct ConductorConfig {
    pub listen_host: IpAddr,
    pub listen_port: u16,
    pub database_url: String,
    pub host: String,
    pub auth_strategy: AuthStrategy,
    pub htpasswd: Option<PathBuf>,
    pub public_endpoint: Option<String>,
    pub http_root: Option<PathBuf>,
    pub external_http_url: Option<String>,
    pub tftp_root: Option<PathBuf>,
    pub isolinux_bin: PathBuf,
    pub ldlinux_c32: PathBuf,
    pub enabled_hardware_types: Vec<String>,
    pub enabled_interfaces: BTreeMap<String, Vec<String>>,
    pub default_interfaces: BTreeMap<String, String>,
    pub automated_clean: bool,
    pub lock_policy: crate::task::LockPolicy,
    pub allow_deleting_available_nodes: bool,
    pub default_portgroup_mode: String,
    pub debug: bool,
    pub ramdisk_heartbeat_timeout: u64,
    pub require_tls: bool,
    pub agent_tls_minimum_version: crate::tls::TlsMinimum,
    pub clean_callback_timeout: Duration,
    pub deploy_callback_timeout: Duration,
    pub service_callback_timeout: Duration,
    pub rescue_callback_timeout: Duration,
    pub check_provision_state_interval: Duration,
    pub fast_track: bool,
    pub fast_track_timeout: Duration,
    pub agent: crate::agent_client::AgentClientConfig,
    /// Polls of the power state after asking the agent to power off, and their interval.
    pub power_off_polls: (u32, Duration),
    pub clean_step_priority_override: BTreeMap<String, i64>,
    /// Inspection settings (`[inspector]`).
    pub inspector: crate::inspection::config::InspectorConfig,
    /// Auto-discovery settings (`[auto_discovery]`).
    pub auto_discovery: crate::inspection::config::AutoDiscovery,
    /// Membership and ownership among several conductors.
    pub cluster: crate::cluster::ClusterConfig,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is unreadable or wrong.
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// Settings that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// An http(s) URL with a host, or a clear error naming the setting: every URL setting ends up in
/// API links, kernel command lines or BMC requests, where a bad one fails far from its cause.
fn check_url(setting: &str, value: &Option<String>) -> Result<(), ConfigError> {
    let Some(text) = value else {
        return Ok(());
    };
    let invalid = |why: String| ConfigError::Invalid(format!("{setting} {text:?} is not a usable URL: {why}"));
    let url = url::Url::parse(text).map_err(|e| invalid(format!("{e} (write it as http://HOST:PORT)")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme is {:?}; use http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it has a query or fragment".into()));
    }
    Ok(())
}

impl ConductorConfig {
    /// Stack the sources: defaults < file < flags.
    pub fn resolve(cli: &Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let public_endpoint = cli.public_endpoint.clone().or(file.public_endpoint);
        check_url("--public-endpoint (public_endpoint)", &public_endpoint)?;
        check_url("external_http_url", &file.external_http_url)?;
        let cluster = crate::cluster::ClusterConfig {
            conductor_group: file.conductor_group.clone().unwrap_or_default().to_lowercase(),
            heartbeat_interval: Duration::from_secs_f64(file.heartbeat_interval.unwrap_or(10.0).clamp(0.05, 3600.0)),
            heartbeat_timeout: Duration::from_secs_f64(file.heartbeat_timeout.unwrap_or(60.0).clamp(0.1, 86400.0)),
            lock_history: file.lock_history.unwrap_or(false),
            api_only: cli.api_only || file.api_only.unwrap_or(false),
        };
        if cluster.heartbeat_timeout <= cluster.heartbeat_interval * 2 {
            return Err(ConfigError::Invalid(format!(
                "heartbeat_timeout ({} s) must be more than twice heartbeat_interval ({} s): a live conductor would be taken for dead",
                cluster.heartbeat_timeout.as_secs_f64(),
                cluster.heartbeat_interval.as_secs_f64()
            )));
        }
        let agent_tls_minimum_version = match file.agent_tls_minimum_version.as_deref() {
            None | Some("1.3") => crate::tls::TlsMinimum::Tls13,
            Some("1.2") => crate::tls::TlsMinimum::Tls12,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "agent_tls_minimum_version must be \"1.2\" or \"1.3\", not {other:?}"
                )));
            }
        };
        let auth_strategy = cli.auth_strategy.or(file.auth_strategy).unwrap_or_default();
        let htpasswd = cli.http_basic_auth_user_file.clone().or(file.http_basic_auth_user_file);
        if auth_strategy == AuthStrategy::HttpBasic && htpasswd.is_none() {
            return Err(ConfigError::Invalid(
                "auth_strategy http_basic needs http_basic_auth_user_file".into(),
            ));
        }
        let host = cli
            .host
            .clone()
            .or(file.host)
            .or_else(system_hostname)
            .unwrap_or_else(|| "rivet-conductor".into());
        let inspector = crate::inspection::config::InspectorConfig::resolve(file.inspector.clone().unwrap_or_default())
            .map_err(ConfigError::Invalid)?;
        let enabled_hardware_types: Vec<String> = file.enabled_hardware_types.clone().unwrap_or_else(|| {
            crate::drivers::registry::DEFAULT_ENABLED_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        let auto_discovery = crate::inspection::config::AutoDiscovery::resolve(
            file.auto_discovery.clone().unwrap_or_default(),
            &enabled_hardware_types,
        )
        .map_err(ConfigError::Invalid)?;
        Ok(ConductorConfig {
            listen_host: cli
                .listen_host
                .or(file.listen_host)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            listen_port: cli.listen_port.or(file.listen_port).unwrap_or(6385),
            database_url: cli
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| "sqlite://rivet.sqlite".into()),
            host,
            auth_strategy,
            htpasswd,
            public_endpoint,
            http_root: cli.http_root.clone().or(file.http_root),
            external_http_url: file.external_http_url,
            tftp_root: file.tftp_root,
            isolinux_bin: file
                .isolinux_bin
                .unwrap_or_else(|| "/usr/lib/ISOLINUX/isolinux.bin".into()),
            ldlinux_c32: file
                .ldlinux_c32
                .unwrap_or_else(|| "/usr/lib/syslinux/modules/bios/ldlinux.c32".into()),
            enabled_hardware_types,
            enabled_interfaces: file.enabled_interfaces.unwrap_or_default(),
            default_interfaces: file.default_interfaces.unwrap_or_default(),
            automated_clean: file.automated_clean.unwrap_or(true),
            lock_policy: crate::task::LockPolicy {
                attempts: file.node_locked_retry_attempts.unwrap_or(3).max(1),
                interval: Duration::from_secs_f64(file.node_locked_retry_interval.unwrap_or(1.0).clamp(0.01, 60.0)),
            },
            allow_deleting_available_nodes: file.allow_deleting_available_nodes.unwrap_or(true),
            default_portgroup_mode: file
                .default_portgroup_mode
                .clone()
                .unwrap_or_else(|| "active-backup".to_owned()),
            debug: cli.debug,
            ramdisk_heartbeat_timeout: file.ramdisk_heartbeat_timeout.unwrap_or(300).max(1),
            require_tls: file.require_tls.unwrap_or(true),
            agent_tls_minimum_version,
            clean_callback_timeout: Duration::from_secs(file.clean_callback_timeout.unwrap_or(1800)),
            deploy_callback_timeout: Duration::from_secs(file.deploy_callback_timeout.unwrap_or(1800)),
            service_callback_timeout: Duration::from_secs(file.service_callback_timeout.unwrap_or(1800)),
            rescue_callback_timeout: Duration::from_secs(file.rescue_callback_timeout.unwrap_or(1800)),
            check_provision_state_interval: Duration::from_secs_f64(
                file.check_provision_state_interval.unwrap_or(60.0).clamp(0.05, 86400.0),
            ),
            fast_track: file.fast_track.unwrap_or(false),
            fast_track_timeout: Duration::from_secs(file.fast_track_timeout.unwrap_or(300).min(300)),
            agent: crate::agent_client::AgentClientConfig {
                command_timeout: Duration::from_secs_f64(file.agent_command_timeout.unwrap_or(60.0).clamp(0.1, 3600.0)),
                tls_minimum: agent_tls_minimum_version,
                ..Default::default()
            },
            power_off_polls: (
                file.agent_post_deploy_get_power_state_retries.unwrap_or(6).min(1000),
                Duration::from_secs_f64(
                    file.agent_post_deploy_get_power_state_retry_interval
                        .unwrap_or(5.0)
                        .clamp(0.0, 300.0),
                ),
            ),
            clean_step_priority_override: file.clean_step_priority_override.unwrap_or_default(),
            cluster,
            inspector,
            auto_discovery,
        })
    }

    /// Read the file named by `--config`, if any.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        Self::resolve(cli, file)
    }

    /// A configuration for tests and embedding: SQLite at `database_url`, loopback, port 0.
    pub fn for_tests(database_url: String) -> Self {
        let cli = Cli {
            listen_host: Some(IpAddr::from([127, 0, 0, 1])),
            listen_port: Some(0),
            database_url: Some(database_url),
            host: Some("test-conductor".into()),
            ..Default::default()
        };
        let mut config = Self::resolve(&cli, FileConfig::default()).expect("test defaults are valid");
        config.lock_policy = crate::task::LockPolicy {
            attempts: 20,
            interval: Duration::from_millis(50),
        };
        config
    }
}

fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
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
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let cli = Cli::parse_from(["rivet-conductor", "--listen-port", "7000"]);
        let file: FileConfig = toml::from_str("listen_port = 6000\nhost = \"c1\"\n").expect("valid");
        let config = ConductorConfig::resolve(&cli, file).expect("valid");
        assert_eq!((config.listen_port, config.host.as_str()), (7000, "c1"));
        assert_eq!(config.database_url, "sqlite://rivet.sqlite");
        assert!(
            toml::from_str::<FileConfig>("listen_prot = 1\n").is_err(),
            "unknown keys are errors"
        );
        for (flag, file, want) in [
            ("127.0.0.1:6385", "", "is not a usable URL"),
            ("ftp://h/", "", "the scheme is \"ftp\""),
            ("http://h/?x=1", "", "has a query"),
            (
                "http://h:6385",
                "external_http_url = \"10.0.0.1/httpboot\"",
                "external_http_url",
            ),
            (
                "http://h:6385",
                "agent_tls_minimum_version = \"1.1\"",
                "must be \"1.2\" or \"1.3\"",
            ),
        ] {
            let cli = Cli::parse_from(["rivet-conductor", "--public-endpoint", flag]);
            let err = ConductorConfig::resolve(&cli, toml::from_str(file).expect("toml")).expect_err(flag);
            assert!(err.to_string().contains(want), "{flag} {file}: {err}");
        }
        let cli = Cli::parse_from(["rivet-conductor", "--public-endpoint", "https://ironic.example:6385"]);
        let config = ConductorConfig::resolve(&cli, FileConfig::default()).expect("valid");
        assert_eq!(
            config.agent_tls_minimum_version,
            crate::tls::TlsMinimum::Tls13,
            "Ironic's default"
        );
        let cli = Cli::parse_from(["rivet-conductor", "--auth-strategy", "http_basic"]);
        assert!(
            ConductorConfig::resolve(&cli, FileConfig::default()).is_err(),
            "http_basic needs a user file"
        );
    }

    #[test]
    fn post_deploy_power_state_reads_follow_ironics_settings() {
        let cli = Cli::parse_from(["rivet-conductor"]);
        let config = ConductorConfig::resolve(&cli, FileConfig::default()).expect("valid");
        assert_eq!(config.power_off_polls, (6, Duration::from_secs(5)), "Ironic's defaults");
        let file: FileConfig = toml::from_str(
            "agent_post_deploy_get_power_state_retries = 0
agent_post_deploy_get_power_state_retry_interval = 0.5
",
        )
        .expect("valid");
        let config = ConductorConfig::resolve(&cli, file).expect("valid");
        assert_eq!(config.power_off_polls, (0, Duration::from_millis(500)));
    }
}
