//! The `rivet-conductor` binary.

use std::process::ExitCode;

use clap::Parser;
use rivet_conductor::config::{Cli, ConductorConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_states {
        #[allow(clippy::print_stdout)]
        {
            print!("{}", rivet_conductor::states::markdown_table());
        }
        return ExitCode::SUCCESS;
    }
    let config = match ConductorConfig::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            // Logging is not set up before the configuration is known.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("rivet-conductor: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let default = if config.debug { "debug" } else { "info" };
    rivet_common::logging::init(&format!("{default},sqlx=warn,hyper=info"), config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let running = match rivet_conductor::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGTERM handler");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        }
        match running.stop().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "API server failed");
                ExitCode::FAILURE
            }
        }
    })
}
