//! The `rivet-agent` binary: read settings from their sources, start the agent, map the
//! outcome to an exit code.

use std::process::ExitCode;

use anyhow::Context;
use rivet_agent::Exit;
use rivet_agent::config::{AgentConfig, Cli};

fn init_tracing(debug: bool, format: rivet_common::logging::LogFormat) {
    let default = if debug { "debug" } else { "info" };
    rivet_common::logging::init(&format!("{default},hyper=info,rustls=info"), format);
}

/// Bring every network interface down after a lockdown (ramdisk only), then idle.
async fn lock_down_network() -> ! {
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            let status = tokio::process::Command::new("ip")
                .args(["link", "set", &name, "down"])
                .status()
                .await;
            tracing::warn!(interface = %name, ?status, "interface brought down for lockdown");
        }
    }
    std::future::pending().await
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let is_ramdisk = config.is_ramdisk;
    if is_ramdisk && config.rescue_marker.exists() {
        tracing::warn!(marker = %config.rescue_marker.display(), "rescue marker found: this machine is in rescue, the agent stays idle");
        std::future::pending::<()>().await;
    }
    let agent = rivet_agent::start(config).await?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    let stopper = agent.shutdown_handle();
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        }
        stopper.shutdown();
    });
    let exit = agent.wait().await?;
    if exit == Exit::Lockdown && is_ramdisk {
        lock_down_network().await;
    }
    tracing::info!(?exit, "agent stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = match rivet_agent::load_config(cli) {
        Ok(config) => config,
        Err(e) => {
            // Logging is not set up before the configuration is known; this is the one place
            // the binary reports on its own.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("rivet-agent: {e:#}");
            }
            return ExitCode::from(2);
        }
    };
    init_tracing(config.debug, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
