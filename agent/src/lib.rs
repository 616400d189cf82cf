//! rivet-agent: the in-ramdisk provisioning agent, wire-compatible with ironic-python-agent.
//!
//! Start-up ([`start`]): inspect when configured ([`inspection`]), look the node up through the
//! Ironic API, choose how to serve (plain, static TLS, or an auto-generated certificate when
//! Ironic is new enough), serve the command API, and heartbeat with jitter until a lockdown, a
//! rescue, or a shutdown.
//!
//! Modules: [`config`] and [`cmdline`] (settings), [`ironic`] (lookup/heartbeat client),
//! [`heartbeat`], [`api`] (HTTP), [`commands`] (registry and execution), `extensions`
//! (the commands), [`inventory`], [`inspection`], [`tls`], [`netutil`], [`state`].

pub mod api;
pub mod blockdev;
pub mod cmdline;
pub mod commands;
pub mod config;
pub mod disk;
pub mod error;
mod extensions;
pub mod hardware;
pub mod heartbeat;
pub mod image;
pub mod inspection;
pub mod inventory;
pub mod ironic;
pub mod metrics;
pub mod netutil;
pub mod progress;
pub mod state;
pub mod tls;
pub mod tools;

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivet_common::version::ApiVersion;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::AppState;
use crate::commands::Executor;
use crate::config::{AgentConfig, ServerTls, TlsMinVersion};
use crate::disk::devices::DeviceView;
use crate::hardware::{HardwareManager, Managers};
use crate::heartbeat::Heartbeater;
use crate::ironic::IronicClient;
use crate::state::{AgentState, Lifecycle, TokenOutcome};

/// Agent version, reported in heartbeats and `/v1/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long in-flight requests may finish when the API stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material could not be prepared.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The API port is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// Lookup failed within its budget.
    #[error(transparent)]
    Lookup(#[from] ironic::LookupError),
    /// Ironic issued the token to an earlier boot and masks it now; without a pre-shared token
    /// this agent can never authenticate (upstream idles silently here).
    #[error(
        "the conductor answered the lookup with a masked token: a token was already issued for this node \
         and this agent has none (give one with ipa-agent-token, or reset the node's agent session)"
    )]
    MaskedToken,
    /// No address to advertise.
    #[error("cannot determine the callback address: {0}")]
    Advertise(String),
    /// Two hardware managers share a name.
    #[error(transparent)]
    Managers(#[from] hardware::DuplicateManager),
}

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped by a signal or [`RunningAgent::shutdown`].
    Shutdown,
    /// `system.lockdown`.
    Lockdown,
    /// `rescue.finalize_rescue`.
    Rescued,
}

/// Set by the Rivet ramdisk's init in PID 1's environment.
const RAMDISK_MARKER: &[u8] = b"RIVET_RAMDISK=1";

fn pid1_is_ramdisk() -> bool {
    std::fs::read("/proc/1/environ").is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == RAMDISK_MARKER))
}

/// The agent's configuration from every source, as `rivet-agent` reads it: the config file
/// (`--config`), the kernel command line (`--kernel-cmdline`, `ipa-*` keys), then the flags in
/// `cli`; whether this is a ramdisk from PID 1's `RIVET_RAMDISK=1`. Agents built with extra
/// managers (docs/vendor-guide.md) call it so they read the same settings.
pub fn load_config(cli: config::Cli) -> anyhow::Result<AgentConfig> {
    let file = match &cli.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            config::Settings::from_toml(path, &text)?
        }
        None => config::Settings::default(),
    };
    let cmdline_text = std::fs::read_to_string(&cli.kernel_cmdline).unwrap_or_default();
    let kernel = cmdline::parse_kernel_settings(&cmdline_text)?;
    for key in &kernel.ignored {
        tracing::debug!(key, "kernel parameter not used by rivet-agent");
    }
    let settings = file.overlay(kernel.settings).overlay(cli.settings);
    Ok(AgentConfig::resolve(settings, kernel.boot, pid1_is_ramdisk())?)
}

/// A started agent.
#[derive(Debug)]
pub struct RunningAgent {
    /// Where the API listens.
    pub local_addr: SocketAddr,
    /// What the conductor is told (`None` in standalone mode).
    pub callback_url: Option<String>,
    /// The node's UUID from lookup.
    pub node_uuid: Option<String>,
    /// Shared state.
    pub state: Arc<AgentState>,
    /// PEM of the auto-generated certificate, if any.
    pub verify_ca: Option<String>,
    server: JoinHandle<std::io::Result<()>>,
    handle: axum_server::Handle<SocketAddr>,
    stop_heartbeats: watch::Sender<bool>,
    heartbeater: Option<JoinHandle<()>>,
}

/// Stops a running agent from elsewhere (signal handlers, tests).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    handle: axum_server::Handle<SocketAddr>,
    stop_heartbeats: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Stop serving and heartbeating; in-flight requests get a short grace period.
    pub fn shutdown(&self) {
        self.stop_heartbeats.send_replace(true);
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    }
}

impl RunningAgent {
    /// A handle that can stop this agent.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            handle: self.handle.clone(),
            stop_heartbeats: self.stop_heartbeats.clone(),
        }
    }

    /// Stop serving and heartbeating.
    pub fn shutdown(&self) {
        self.shutdown_handle().shutdown();
    }

    /// Wait until the API has stopped (lockdown, rescue, or shutdown).
    pub async fn wait(self) -> std::io::Result<Exit> {
        let served = self.server.await.map_err(std::io::Error::other)?;
        self.stop_heartbeats.send_replace(true);
        if let Some(hb) = self.heartbeater {
            let _ = hb.await;
        }
        served?;
        Ok(match self.state.lifecycle() {
            Lifecycle::Serving => Exit::Shutdown,
            Lifecycle::Lockdown => Exit::Lockdown,
            Lifecycle::Rescued => Exit::Rescued,
        })
    }
}

/// Look the node up, retrying while the conductor masks a token we do not hold (a Rivet
/// conductor re-issues the token to a retried lookup before the first heartbeat).
async fn lookup(
    client: &IronicClient,
    state: &AgentState,
    macs: &[String],
    node_uuid: Option<&str>,
) -> Result<rivet_common::ramdisk::LookupResponse, StartError> {
    let policy = &state.config.lookup;
    let deadline = Instant::now() + policy.total;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let budget = config::LookupPolicy {
            total: remaining,
            ..policy.clone()
        };
        let answer = client.lookup(macs, node_uuid, &budget).await?;
        match state.apply_lookup(&answer) {
            TokenOutcome::MaskedWithoutToken => {
                tracing::error!("lookup answered with a masked token and this agent holds none; retrying");
                if Instant::now() + policy.interval >= deadline {
                    return Err(StartError::MaskedToken);
                }
                tokio::time::sleep(policy.interval).await;
            }
            outcome => {
                tracing::info!(node = %answer.node.uuid, ?outcome, "node looked up");
                return Ok(answer);
            }
        }
    }
}

/// The built-in extensions and their commands.
pub fn default_registry() -> commands::Registry {
    extensions::registry()
}

/// Start the agent with the built-in commands and managers: lookup, TLS, API server, heartbeats.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, StartError> {
    start_with(config, default_registry(), Vec::new()).await
}

/// Start the agent with the given commands and extra hardware managers (compiled-in vendor
/// managers, test managers). The generic manager and the executables of the managers directory
/// are always loaded. The steps, in order: managers and state, inspection (when configured),
/// the session with Ironic (lookup), the listening socket, the callback address, the server's
/// TLS, the API, the heartbeats.
pub async fn start_with(
    config: AgentConfig,
    registry: commands::Registry,
    extra_managers: Vec<Arc<dyn HardwareManager>>,
) -> Result<RunningAgent, StartError> {
    let state = load_state(config, extra_managers).await?;
    let config = &state.config;
    let executor = Arc::new(Executor::new(registry, Arc::clone(&state)));
    let inspected = inspect(&state).await;
    let (session, tls_min) = open_session(&state, inspected).await?;
    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let advertise_host = advertise_host(config, session.is_some()).await?;
    let api_version = match &session {
        Some(session) => Some(session.client.api_version().await),
        None => None,
    };
    let (certified, auto) = server_certificate(config, api_version, advertise_host.as_deref(), local_addr)?;
    let scheme = if certified.is_some() { "https" } else { "http" };
    let callback_url = advertise_host
        .as_ref()
        .map(|host| netutil::callback_url(scheme, host, config.advertise_port.unwrap_or(local_addr.port())));

    let app = api::app(AppState {
        agent: Arc::clone(&state),
        executor,
        scheme,
    });
    let handle = axum_server::Handle::new();
    let server = serve(listener, app, certified.as_ref(), tls_min, handle.clone())?;
    tracing::info!(%local_addr, scheme, callback = callback_url.as_deref().unwrap_or("-"), "command API serving");

    let (stop_heartbeats, stop_rx) = watch::channel(false);
    let verify_ca = certified.filter(|_| auto).map(|k| k.cert_pem);
    let node_uuid = session.as_ref().map(|s| s.node_uuid.clone());
    let heartbeater = match (session, &callback_url) {
        (Some(session), Some(callback)) => {
            let hb = Heartbeater {
                client: session.client,
                node_uuid: session.node_uuid,
                state: Arc::clone(&state),
                heartbeat_timeout: session.heartbeat_timeout,
                callback_url: callback.clone(),
                verify_ca: verify_ca.clone(),
            };
            Some(tokio::spawn(hb.run(stop_rx)))
        }
        _ => None,
    };
    stop_when_done(&state, stop_heartbeats.clone(), handle.clone());
    Ok(RunningAgent {
        local_addr,
        callback_url,
        node_uuid,
        state,
        verify_ca,
        server,
        handle,
        stop_heartbeats,
        heartbeater,
    })
}

/// The managers (generic, compiled-in, executables of the managers directory), ranked, and the
/// agent's state around them.
async fn load_state(
    config: AgentConfig,
    extra_managers: Vec<Arc<dyn HardwareManager>>,
) -> Result<Arc<AgentState>, StartError> {
    let devices = DeviceView::new(config.disk_allow.clone(), config.is_ramdisk);
    let generic = hardware::generic::GenericHardwareManager::new(config.boot.bootif.clone())
        .with_lldp(config.collect_lldp.then_some(config.lldp_timeout));
    let mut candidates: Vec<Arc<dyn HardwareManager>> = vec![Arc::new(generic)];
    candidates.extend(extra_managers);
    candidates.extend(hardware::executable::load_dir(&config.hardware_managers_dir, config.manager_timeouts).await);
    let managers = Managers::load(candidates).await?;
    Ok(Arc::new(AgentState::new(config, managers, devices)))
}

/// What inspection at start-up leaves for lookup (upstream: the node UUID it returns, and the
/// inventory cached by `list_hardware_info`).
#[derive(Debug, Default)]
struct Inspected {
    node_uuid: Option<String>,
    inventory: Option<rivet_common::inventory::Inventory>,
}

/// Inspect when configured (IPA runs inspection before lookup, so that lookup can find a node
/// that inspection has just enrolled). A failure is logged and lookup goes on without a UUID.
async fn inspect(state: &AgentState) -> Inspected {
    let Some(config) = &state.config.inspection else {
        tracing::debug!("inspection is disabled");
        return Inspected::default();
    };
    let inspection = inspection::inspect(state, config).await;
    Inspected {
        node_uuid: inspection.outcome.ok().flatten(),
        inventory: inspection.inventory,
    }
}

/// The agent's session with Ironic, once the node is looked up.
struct Session {
    client: Arc<IronicClient>,
    node_uuid: String,
    heartbeat_timeout: Duration,
}

/// Look the node up (unless standalone or without an API URL), and the TLS floor from then on:
/// the configured one, raised to 1.3 when Ironic asks for it. The MACs come from the inventory
/// inspection sent, when there is one.
async fn open_session(
    state: &AgentState,
    inspected: Inspected,
) -> Result<(Option<Session>, TlsMinVersion), StartError> {
    let config = &state.config;
    let tls_min = config.tls_min_version;
    if config.standalone {
        tracing::info!("standalone mode: no lookup, no heartbeats");
        return Ok((None, tls_min));
    }
    if config.api_urls.is_empty() {
        tracing::warn!("no Ironic API URL configured: the agent will not heartbeat");
        return Ok((None, tls_min));
    }
    let http = match &config.shared_http {
        Some(shared) => shared.clone(),
        None => tls::http_client(&config.client_tls, tls_min, config.http_request_timeout)?,
    };
    let client = Arc::new(IronicClient::new(
        config.api_urls.clone(),
        http,
        config.ironic_api_version,
        config.global_request_id.clone(),
    ));
    let inventory = match inspected.inventory {
        Some(inventory) => inventory,
        None => state
            .managers
            .inventory(&state.devices)
            .await
            .map_err(|e| StartError::Advertise(e.to_string()))?,
    };
    let macs: Vec<String> = inventory.interfaces.iter().map(|i| i.mac_address.clone()).collect();
    if macs.is_empty() {
        tracing::warn!("no network interface with a MAC address: lookup can only succeed by node UUID");
    }
    let answer = lookup(&client, state, &macs, inspected.node_uuid.as_deref()).await?;
    let (client, tls_min) = if answer.config.tls_min_version.as_option().map(String::as_str) == Some("1.3")
        && tls_min != TlsMinVersion::Tls13
        // A shared client belongs to the program that embeds the agents; it keeps its own floor.
        && config.shared_http.is_none()
    {
        // Unlike upstream, the raised floor also applies to our own requests from now on.
        let http = tls::http_client(&config.client_tls, TlsMinVersion::Tls13, config.http_request_timeout)?;
        (Arc::new(client.with_http(http)), TlsMinVersion::Tls13)
    } else {
        (client, tls_min)
    };
    let session = Session {
        client,
        node_uuid: answer.node.uuid.clone(),
        heartbeat_timeout: Duration::from_secs(answer.config.heartbeat_timeout.max(1)),
    };
    Ok((Some(session), tls_min))
}

/// The callback host: explicit, an interface's address, or (with a session) the route towards
/// the API.
async fn advertise_host(config: &AgentConfig, has_session: bool) -> Result<Option<String>, StartError> {
    Ok(match (&config.advertise_host, &config.network_interface) {
        (Some(host), _) => Some(host.clone()),
        (None, Some(iface)) => Some(
            netutil::interface_ipv4(iface)
                .ok_or_else(|| StartError::Advertise(format!("interface {iface} has no IPv4 address")))?
                .to_string(),
        ),
        (None, None) if has_session => {
            let (attempts, pause) = config.ip_lookup;
            Some(
                netutil::detect_advertise_ip(&config.api_urls, attempts, pause)
                    .await
                    .map_err(StartError::Advertise)?
                    .to_string(),
            )
        }
        (None, None) => None,
    })
}

/// The server's certificate: static, auto-generated for the callback IP when Ironic is new
/// enough to pin it (`agent_verify_ca`), or none (plain HTTP). The flag says auto-generated.
fn server_certificate(
    config: &AgentConfig,
    api_version: Option<ApiVersion>,
    advertise_host: Option<&str>,
    local_addr: SocketAddr,
) -> Result<(Option<tls::CertifiedKey>, bool), StartError> {
    Ok(match &config.server_tls {
        ServerTls::Static { cert, key } => (Some(tls::load_certified_key(cert, key)?), false),
        ServerTls::Auto if api_version.is_some_and(|v| v >= ApiVersion::AGENT_VERIFY_CA) => {
            let host = advertise_host.map_or_else(|| local_addr.ip().to_string(), str::to_owned);
            let ip: IpAddr = host.parse().map_err(|_| {
                StartError::Advertise(format!(
                    "auto TLS needs an IP address to certify, got {host:?} (set --advertise-host to an IP)"
                ))
            })?;
            let hostname = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "rivet-agent".into());
            (Some(tls::generate_self_signed(ip, &hostname)?), true)
        }
        _ => (None, false),
    })
}

/// Serve the command API on `listener`, over TLS with `certified` when given.
fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
    certified: Option<&tls::CertifiedKey>,
    tls_min: TlsMinVersion,
    handle: axum_server::Handle<SocketAddr>,
) -> Result<JoinHandle<std::io::Result<()>>, StartError> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let bind_error = |source| StartError::Bind { addr, source };
    Ok(match certified {
        Some(key) => {
            let rustls =
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls::server_config(key, tls_min)?));
            let server = axum_server::tls_rustls::from_tcp_rustls(listener, rustls)
                .map_err(bind_error)?
                .handle(handle);
            tokio::spawn(server.serve(app))
        }
        None => {
            let server = axum_server::from_tcp(listener).map_err(bind_error)?.handle(handle);
            tokio::spawn(server.serve(app))
        }
    })
}

/// Lockdown and rescue stop the API and heartbeats once their answer has gone out.
fn stop_when_done(state: &AgentState, stop_heartbeats: watch::Sender<bool>, handle: axum_server::Handle<SocketAddr>) {
    let mut lifecycle = state.subscribe_lifecycle();
    tokio::spawn(async move {
        if lifecycle.wait_for(|l| *l != Lifecycle::Serving).await.is_ok() {
            stop_heartbeats.send_replace(true);
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        }
    });
}
