//! `rivet-fleet`: run a simulated fleet against an Ironic API (rivet-conductor or Ironic).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rivet_fleet::run::{Goal, RunOptions, run};

/// A simulated fleet of machines, each a real rivet-agent with simulated hardware, against an
/// Ironic API (rivet-conductor or upstream Ironic). The conductor must have fast track enabled
/// (agents look `manageable` nodes up) and the `fake-hardware` hardware type (or the one given).
/// Prints one line of `key=value` figures.
#[derive(Debug, Parser)]
#[command(name = "rivet-fleet", version)]
struct Cli {
    /// Ironic API endpoint; repeat to spread machines (their agents and verbs) over several.
    #[arg(long = "api", required = true, value_name = "URL")]
    apis: Vec<String>,
    /// Machines to simulate.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Only heartbeat for SECONDS once every agent is up, instead of cleaning and deploying.
    #[arg(long, value_name = "SECONDS")]
    rest: Option<u64>,
    /// Node names are PREFIX-<index>; a later run finds the earlier run's nodes.
    #[arg(long, default_value = "fleet")]
    prefix: String,
    /// Hardware type of the nodes the fleet enrolls.
    #[arg(long, default_value = "fake-hardware")]
    driver: String,
    /// Another field of the nodes the fleet enrolls, as KEY=VALUE (`boot_interface=ipxe`);
    /// repeatable.
    #[arg(long = "node-field", value_name = "KEY=VALUE", value_parser = parse_field)]
    node_fields: Vec<(String, String)>,
    /// Milliseconds each in-band step takes.
    #[arg(long, default_value_t = 5)]
    step_ms: u64,
    /// Probability (0 to 1) that an in-band step fails with a disk error.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Milliseconds between reads of the nodes' power states (the fleet's BMC).
    #[arg(long, default_value_t = 2000)]
    poll_ms: u64,
    /// Minimum milliseconds between a forced heartbeat and the previous one (upstream: 5000).
    #[arg(long, default_value_t = 5000)]
    forced_heartbeat_gap_ms: u64,
    /// Agents starting at once.
    #[arg(long, default_value_t = 64)]
    boot_concurrency: usize,
    /// Seconds a phase (enroll, boot, provide, deploy) may take before the run fails.
    #[arg(long, default_value_t = 3600)]
    phase_deadline: u64,
    /// PID of a conductor process whose peak memory and CPU time to report; repeatable.
    #[arg(long = "conductor-pid", value_name = "PID")]
    conductor_pids: Vec<u32>,
}

fn parse_field(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rivet_agent=error,rivet_fleet=info")),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if !(0.0..=1.0).contains(&cli.fail_rate) {
        tracing::error!("--fail-rate must be between 0 and 1, not {}", cli.fail_rate);
        return ExitCode::from(2);
    }
    let options = RunOptions {
        apis: cli.apis,
        nodes: cli.nodes,
        prefix: cli.prefix,
        driver: cli.driver,
        node_fields: cli.node_fields,
        goal: cli.rest.map_or(Goal::Active, |s| Goal::Rest(Duration::from_secs(s))),
        step_time: Duration::from_millis(cli.step_ms),
        fail_rate: cli.fail_rate,
        poll_interval: Duration::from_millis(cli.poll_ms.max(100)),
        forced_gap: Duration::from_millis(cli.forced_heartbeat_gap_ms),
        boot_concurrency: cli.boot_concurrency,
        phase_deadline: Duration::from_secs(cli.phase_deadline),
        conductor_pids: cli.conductor_pids,
    };
    match run(&options).await {
        Ok(report) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{report}");
                for line in report.timeline_lines() {
                    println!("{line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
