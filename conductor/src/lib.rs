//! rivet-conductor: keeps nodes in a database, serves Ironic's API, and drives nodes through
//! the provisioning state machine with their drivers.
//!
//! Modules: [`config`], [`db`] (schema and queries), [`model`] (records and API documents),
//! [`states`] (the state table), [`task`] (node locks), [`drivers`] (the driver model),
//! [`steps`] (step ordering and validation), [`engine`] (operator verbs), [`flow`] (the step
//! flows: record, runner, heartbeats, resume), [`ramdisk`] (lookup and heartbeat checks),
//! [`agent_session`] (what the conductor keeps about a running agent), [`api`] (HTTP).

pub mod agent_client;
pub mod agent_session;
pub mod allocation;
pub mod api;
pub mod cluster;
pub mod config;
pub mod configdrive;
pub mod crash_point;
pub mod db;
pub mod drivers;
pub mod engine;
pub mod flow;
pub mod inspection;
pub mod metrics;
pub mod model;
pub mod periodic;
pub mod raid;
pub mod ramdisk;
pub mod rescue;
pub mod states;
pub mod step_lists;
pub mod step_progress;
pub mod steps;
pub mod task;
pub mod time;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::{AuthStrategy, ConductorConfig};
use crate::db::Database;
use crate::drivers::{DriverExtensions, DriverRegistry, DriverSettings};
use crate::engine::Conductor;
use crate::task::NodeLocks;

/// Why the conductor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Database connection or migration.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// Configuration problem.
    #[error("{0}")]
    Config(String),
    /// The API port.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A started conductor.
#[derive(Debug)]
pub struct RunningConductor {
    /// Where the API listens.
    pub local_addr: SocketAddr,
    /// The engine (tests inspect the database through it).
    pub conductor: Arc<Conductor>,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl RunningConductor {
    /// Stop accepting requests and wait for the server to end.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.send_replace(true);
        let result = self.server.await.map_err(std::io::Error::other)?;
        if !self.conductor.config.cluster.api_only {
            let _ = self.conductor.db.conductor_offline(self.conductor.locks.host()).await;
        }
        result
    }

    /// `http://addr` of the API.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }
}

/// Connect the database, recover, and serve the API.
pub async fn start(config: ConductorConfig) -> Result<RunningConductor, StartError> {
    start_with(config, DriverExtensions::default()).await
}

/// Like [`start`], with extra driver implementations (other BMCs, a simulated lab in tests).
pub async fn start_with(config: ConductorConfig, extensions: DriverExtensions) -> Result<RunningConductor, StartError> {
    let db = Database::connect(&config.database_url, config.cluster.heartbeat_timeout)
        .await?
        .with_lock_history(config.cluster.lock_history)
        .with_history(&config.host, config.node_history_max_size);
    let drivers = DriverRegistry::new(
        config.enabled_hardware_types.clone(),
        config.enabled_interfaces.clone(),
        config.default_interfaces.clone(),
        extensions,
    )
    .map_err(StartError::Config)?;
    let users = match config.auth_strategy {
        AuthStrategy::Noauth => None,
        AuthStrategy::HttpBasic => {
            let path = config
                .htpasswd
                .clone()
                .ok_or_else(|| StartError::Config("http_basic needs a user file".into()))?;
            Some(Arc::new(api::auth_users(&path).map_err(StartError::Config)?))
        }
    };
    let addr = SocketAddr::new(config.listen_host, config.listen_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let api_url = match &config.public_endpoint {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if local_addr.ip().is_unspecified() => {
            tracing::warn!(
                "no public_endpoint configured: telling agents to use loopback; set public_endpoint for real machines"
            );
            format!("http://127.0.0.1:{}", local_addr.port())
        }
        None => format!("http://{local_addr}"),
    };
    let boot_files = drivers::boot::assets::BootFiles {
        http_root: config.http_root.clone(),
        external_http_url: config
            .external_http_url
            .clone()
            .unwrap_or_else(|| format!("{api_url}/httpboot")),
        tftp_root: config.tftp_root.clone(),
        isolinux_bin: config.isolinux_bin.clone(),
        ldlinux_c32: config.ldlinux_c32.clone(),
    };
    let settings = Arc::new(DriverSettings {
        boot_files,
        api_url,
        power_off_polls: config.power_off_polls,
        fast_track: config.fast_track,
        fast_track_timeout: config.fast_track_timeout,
        inspection_kernel_params: config.inspector.extra_kernel_params.clone(),
    });
    let locks = NodeLocks::new(db.clone(), config.host.clone(), config.lock_policy);
    let conductor = Arc::new(Conductor {
        db,
        drivers,
        locks,
        agent: agent_client::AgentClient::new(config.agent),
        settings,
        heartbeat_slots: Arc::new(tokio::sync::Semaphore::new(64)),
        members: Default::default(),
        config: config.clone(),
    });
    let api_only = config.cluster.api_only;
    let membership = async {
        conductor.register().await?;
        conductor.membership_tick().await?;
        if !api_only {
            conductor.recover_on_start().await?;
            conductor.resume_allocations().await?;
        }
        Ok::<_, engine::EngineError>(())
    };
    membership.await.map_err(|e| StartError::Config(e.to_string()))?;
    let app = api::app(api::AppState {
        conductor: Arc::clone(&conductor),
        users,
    })
    .into_make_service_with_connect_info::<SocketAddr>();
    let (shutdown, mut stop) = tokio::sync::watch::channel(false);
    if !api_only {
        periodic::spawn(
            Arc::clone(&conductor),
            config.check_provision_state_interval,
            stop.clone(),
        );
        cluster::work::spawn(Arc::clone(&conductor), stop.clone());
    }
    cluster::takeover::spawn(Arc::clone(&conductor), stop.clone());
    periodic::spawn_fleet_sampler(Arc::clone(&conductor), stop.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(%local_addr, host = %config.host, database = %redact(&config.database_url), "conductor API serving");
    Ok(RunningConductor {
        local_addr,
        conductor,
        server,
        shutdown,
    })
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
