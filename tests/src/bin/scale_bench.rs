//! Scale benchmark: rivet-fleet against conductors this program starts and stops.
//!
//!   scale-bench --target rivet   --nodes 1000                      one rivet-conductor, SQLite
//!   scale-bench --target rivet   --nodes 1000 --conductors 3       three on a private PostgreSQL
//!   scale-bench --target ironic  --nodes 100 --venv .venv          upstream Ironic (all-in-one, SQLite)
//!   scale-bench --target compare --nodes 100 --venv .venv          Ironic, then Rivet, same settings
//!   … --rest 300                                                  heartbeats only, for 300 s
//!
//! Conductors run as their own processes (build them with `cargo build --release`), so their
//! peak memory and CPU time are theirs alone; the fleet (every machine a real rivet-agent with
//! simulated hardware) runs in this process. Both sides get the same settings: fake power,
//! `direct` deploy, fast track, automated cleaning, the given ramdisk heartbeat timeout, and no
//! post-deploy power-state polling (a fake BMC never reports the agent's soft power off). The
//! one difference: Rivet's nodes are `fake-hardware` (fake boot and management); Ironic's are
//! `manual-management` with `noop` management and `ipxe` boot, because Ironic's fake management
//! cannot set the boot device to disk and fails every `direct` deployment at its end. Prints
//! one `key=value` line per target, then its timeline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use rivet_fleet::run::{Goal, RunOptions, run};
use rivet_tests::postgres::Postgres;

#[derive(Debug, Parser)]
#[command(name = "scale-bench")]
struct Cli {
    /// `rivet`, `ironic`, or `compare` (Ironic, then Rivet).
    #[arg(long, default_value = "rivet")]
    target: String,
    /// Machines.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// rivet-conductor processes; more than one share a private PostgreSQL.
    #[arg(long, default_value_t = 1)]
    conductors: usize,
    /// Heartbeat only, for SECONDS, instead of taking the fleet to active.
    #[arg(long, value_name = "SECONDS")]
    rest: Option<u64>,
    /// Ramdisk heartbeat timeout sent to agents (they beat every 30–60 % of it).
    #[arg(long, default_value_t = 60)]
    heartbeat_timeout: u64,
    /// Milliseconds each simulated in-band step takes.
    #[arg(long, default_value_t = 5)]
    step_ms: u64,
    /// The virtualenv with Ironic (`--target ironic|compare`).
    #[arg(long, default_value = ".venv")]
    venv: PathBuf,
    /// Seconds a phase (enroll, boot, provide, deploy) may take before the run fails.
    #[arg(long, default_value_t = 3600)]
    phase_deadline: u64,
}

/// Started servers: API URLs, PIDs, and what to stop.
struct Servers {
    apis: Vec<String>,
    children: Vec<Child>,
    _postgres: Option<Postgres>,
    _dir: tempfile::TempDir,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_rivet(cli: &Cli) -> anyhow::Result<Servers> {
    let exe = std::env::current_exe()?;
    let binary = exe.with_file_name("rivet-conductor");
    if !binary.exists() {
        bail!(
            "{} not found: cargo build --release -p rivet-conductor",
            binary.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let postgres = (cli.conductors > 1).then(Postgres::start);
    let database_url = match &postgres {
        Some(pg) => pg.url(),
        None => format!("sqlite://{}/rivet.sqlite", dir.path().display()),
    };
    let mut servers = Servers {
        apis: Vec::new(),
        children: Vec::new(),
        _postgres: postgres,
        _dir: dir,
    };
    for i in 0..cli.conductors.max(1) {
        let port = free_port()?;
        let config = servers._dir.path().join(format!("c{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen_host = \"127.0.0.1\"\nlisten_port = {port}\ndatabase_url = \"{database_url}\"\nhost = \"c{i}\"\n\
                 enabled_hardware_types = [\"fake-hardware\"]\nfast_track = true\nramdisk_heartbeat_timeout = {}\n\
                 agent_post_deploy_get_power_state_retries = 0\n\
                 [enabled_interfaces]\nboot = [\"fake\"]\ndeploy = [\"direct\", \"fake\"]\npower = [\"fake\"]\nmanagement = [\"fake\"]\n\
                 [default_interfaces]\ndeploy = \"direct\"\n",
                cli.heartbeat_timeout
            ),
        )?;
        let log = std::fs::File::create(servers._dir.path().join(format!("c{i}.log")))?;
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting rivet-conductor")?;
        servers.children.push(child);
        servers.apis.push(format!("http://127.0.0.1:{port}"));
    }
    Ok(servers)
}

fn start_ironic(cli: &Cli) -> anyhow::Result<Servers> {
    let venv = std::fs::canonicalize(&cli.venv).with_context(|| format!("virtualenv {}", cli.venv.display()))?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let work = dir.path().display();
    let conf = dir.path().join("ironic.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nauth_strategy = noauth\nrpc_transport = none\nhost = bench\n\
             enabled_hardware_types = manual-management\nenabled_deploy_interfaces = direct\n\
             enabled_boot_interfaces = ipxe\nenabled_power_interfaces = fake\nenabled_management_interfaces = noop\n\
             enabled_network_interfaces = noop\n\
             [api]\nhost_ip = 127.0.0.1\nport = {port}\nramdisk_heartbeat_timeout = {}\n\
             [service_catalog]\nendpoint_override = http://127.0.0.1:{port}\n\
             [database]\nconnection = sqlite:///{work}/ironic.sqlite\n\
             [deploy]\nfast_track = True\nhttp_root = {work}/http\nhttp_url = http://127.0.0.1:9/httpboot\n\
             [pxe]\ntftp_root = {work}/tftp\ntftp_master_path = {work}/tftp/master_images\n\
             [agent]\npost_deploy_get_power_state_retries = 0\n\
             [dhcp]\ndhcp_provider = none\n",
            cli.heartbeat_timeout
        ),
    )?;
    std::fs::create_dir_all(dir.path().join("http"))?;
    std::fs::create_dir_all(dir.path().join("tftp"))?;
    let schema = Command::new(venv.join("bin/ironic-dbsync"))
        .arg("--config-file")
        .arg(&conf)
        .arg("create_schema")
        .output()
        .context("ironic-dbsync")?;
    if !schema.status.success() {
        bail!("ironic-dbsync: {}", String::from_utf8_lossy(&schema.stderr));
    }
    let log = std::fs::File::create(dir.path().join("ironic.log"))?;
    let child = Command::new(venv.join("bin/ironic"))
        .arg("--config-file")
        .arg(&conf)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting ironic")?;
    Ok(Servers {
        apis: vec![format!("http://127.0.0.1:{port}")],
        children: vec![child],
        _postgres: None,
        _dir: dir,
    })
}

/// Wait until every API answers `GET /` (up to 60 s).
async fn wait_up(servers: &Servers) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for api in &servers.apis {
        let mut up = false;
        for _ in 0..300 {
            if http.get(api).send().await.is_ok_and(|r| r.status().is_success()) {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !up {
            bail!("{api} did not answer within 60 s");
        }
    }
    Ok(())
}

async fn bench(cli: &Cli, target: &str, log_dir: &Path) -> anyhow::Result<String> {
    let servers = if target == "ironic" {
        start_ironic(cli)?
    } else {
        start_rivet(cli)?
    };
    wait_up(&servers).await?;
    // Ironic's `fake` management cannot set the boot device to disk, which every `direct`
    // deployment does at its end: `fake-hardware` nodes fail there. Its nearest equivalent is
    // `manual-management` (fake power, noop management), whose boot interface is `ipxe`.
    let (driver, node_fields) = if target == "ironic" {
        let fields = [
            ("boot_interface", "ipxe"),
            ("management_interface", "noop"),
            ("power_interface", "fake"),
        ];
        (
            "manual-management",
            fields.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
        )
    } else {
        ("fake-hardware", Vec::new())
    };
    let options = RunOptions {
        apis: servers.apis.clone(),
        nodes: cli.nodes,
        prefix: "bench".into(),
        driver: driver.into(),
        node_fields,
        goal: cli.rest.map_or(Goal::Active, |s| Goal::Rest(Duration::from_secs(s))),
        step_time: Duration::from_millis(cli.step_ms),
        fail_rate: 0.0,
        // At rest nothing changes power: the BMC reads less often, to load the conductor less.
        poll_interval: Duration::from_secs(if cli.rest.is_some() { 10 } else { 2 }),
        forced_gap: Duration::from_secs(5),
        boot_concurrency: 64,
        phase_deadline: Duration::from_secs(cli.phase_deadline),
        conductor_pids: servers.children.iter().map(Child::id).collect(),
    };
    let outcome = run(&options).await;
    if outcome.is_err() {
        // Keep the servers' logs for the post-mortem.
        let kept = log_dir.join(format!("scale-bench-{target}-{}", std::process::id()));
        let _ = Command::new("cp")
            .arg("-r")
            .arg(servers._dir.path())
            .arg(&kept)
            .status();
        tracing::error!("logs kept in {}", kept.display());
    }
    let report = outcome?;
    let mut lines = vec![format!(
        "target={target} conductors={} heartbeat_timeout={}s {report}",
        servers.children.len(),
        cli.heartbeat_timeout
    )];
    lines.extend(report.timeline_lines());
    Ok(lines.join("\n"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,rivet_agent=error,rivet_fleet=info,scale_bench=info")
            }),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let targets: &[&str] = match cli.target.as_str() {
        "rivet" => &["rivet"],
        "ironic" => &["ironic"],
        "compare" => &["ironic", "rivet"],
        other => bail!("--target is rivet, ironic or compare, not {other:?}"),
    };
    let log_dir = std::env::temp_dir();
    for target in targets {
        // Ctrl-C ends the run through the same path as an error: the servers are stopped.
        let line = tokio::select! {
            line = bench(&cli, target, &log_dir) => line?,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        };
        #[allow(clippy::print_stdout)]
        {
            println!("{line}");
        }
    }
    Ok(())
}
