//! Scale benchmark: N simulated nodes taken from manageable to active by one rivet-conductor.
//!
//! The conductor runs as its own process (release build, SQLite), so its peak RSS and CPU time
//! are its own. The agents are real rivet-agent instances in this process, one per node, with a
//! simulated hardware manager (no disk is touched), heartbeating over loopback HTTPS. Fast track
//! keeps each agent running from cleaning through deployment, as upstream does when enabled, so
//! no BMC is involved. Heartbeat latency is the conductor's own time to answer each heartbeat,
//! read from its request log.
//!
//!   cargo run --release -p rivet-tests --bin scale-bench -- NODES [HEARTBEAT_TIMEOUT] [--heartbeat-only SECONDS]
//!
//! `--heartbeat-only SECONDS` measures a fleet at rest instead: every agent looked up and
//! heartbeating (fast track keeps `manageable` nodes' agents in session) for SECONDS, and
//! nothing provisioned.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rivet_tests::lab::{MachineControl, SimHardwareManager, boot_agent};
use serde_json::{Value, json};

fn proc_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .header("X-OpenStack-Ironic-API-Version", "latest");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{path}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Ask every node in `uuids` for provision `target`, then wait (up to 30 min) until all of them
/// reach `want`.
async fn move_all<'a>(
    http: &reqwest::Client,
    base: &str,
    uuids: impl ExactSizeIterator<Item = &'a String>,
    target: &str,
    want: &str,
) -> anyhow::Result<()> {
    let count = uuids.len();
    for uuid in uuids {
        call(
            http,
            base,
            reqwest::Method::PUT,
            &format!("/v1/nodes/{uuid}/states/provision"),
            Some(json!({ "target": target })),
        )
        .await?;
    }
    wait_all(http, base, want, count, Instant::now() + Duration::from_secs(1800)).await
}

async fn wait_all(
    http: &reqwest::Client,
    base: &str,
    want: &str,
    count: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let list = call(
            http,
            base,
            reqwest::Method::GET,
            "/v1/nodes?fields=uuid,provision_state",
            None,
        )
        .await?;
        let nodes = list["nodes"].as_array().cloned().unwrap_or_default();
        let done = nodes.iter().filter(|n| n["provision_state"] == want).count();
        let failed: Vec<&Value> = nodes
            .iter()
            .filter(|n| n["provision_state"].as_str().is_some_and(|s| s.ends_with("failed")))
            .collect();
        if !failed.is_empty() {
            bail!("{} nodes failed, e.g. {}", failed.len(), failed[0]);
        }
        if done == count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {done}/{count} nodes reached {want} in time");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let heartbeat_timeout: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(7);
    let heartbeat_only: Option<u64> = args
        .iter()
        .position(|a| a == "--heartbeat-only")
        .map(|i| {
            args.get(i + 1)
                .and_then(|n| n.parse().ok())
                .context("--heartbeat-only SECONDS")
        })
        .transpose()?;
    let exe = std::env::current_exe()?;
    let conductor_bin = exe.with_file_name("rivet-conductor");
    if !conductor_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p rivet-conductor`",
            conductor_bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.path().join("conductor.toml");
    std::fs::write(
        &config,
        format!(
            "listen_host = \"127.0.0.1\"\nlisten_port = {port}\ndatabase_url = \"sqlite://{}/rivet.sqlite\"\nhost = \"bench\"\n\
             fast_track = true\nramdisk_heartbeat_timeout = {heartbeat_timeout}\nenabled_hardware_types = [\"fake-hardware\"]\n\
             [default_interfaces]\ndeploy = \"direct\"\n",
            dir.path().display()
        ),
    )?;
    let mut child = Command::new(&conductor_bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting rivet-conductor")?;
    let pid = child.id();
    // Collect the conductor's per-request timings of heartbeats from its log.
    let stderr = child.stderr.take().context("conductor stderr")?;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let sink = Arc::clone(&latencies);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("path=\"/v1/heartbeat/")
                && line.contains("status=202")
                && let Some(ms) = line
                    .split("ms=")
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
            {
                sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(ms);
            }
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    for _ in 0..100 {
        if call(&http, &base, reqwest::Method::GET, "/", None).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln_progress(&format!("creating {nodes} nodes"));
    let mut macs = Vec::new();
    for i in 0..nodes {
        let mac = format!(
            "52:54:{:02x}:{:02x}:{:02x}:01",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        );
        let node = call(&http, &base, reqwest::Method::POST, "/v1/nodes", Some(json!({
            "driver": "fake-hardware", "name": format!("bench-{i}"), "deploy_interface": "direct",
            "instance_info": {"image_source": "http://127.0.0.1:9/disk.raw", "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64)},
        }))).await?;
        let uuid = node["uuid"].as_str().context("uuid")?.to_owned();
        call(
            &http,
            &base,
            reqwest::Method::POST,
            "/v1/ports",
            Some(json!({"address": mac, "node_uuid": uuid})),
        )
        .await?;
        call(
            &http,
            &base,
            reqwest::Method::PUT,
            &format!("/v1/nodes/{uuid}/states/power"),
            Some(json!({"target": "power on"})),
        )
        .await?;
        call(
            &http,
            &base,
            reqwest::Method::PUT,
            &format!("/v1/nodes/{uuid}/states/provision"),
            Some(json!({"target": "manage"})),
        )
        .await?;
        macs.push((uuid, mac));
    }
    wait_all(
        &http,
        &base,
        "manageable",
        nodes,
        Instant::now() + Duration::from_secs(600),
    )
    .await?;
    eprintln_progress(&format!("booting {nodes} agents"));
    let journal = Arc::default();
    let mut agents = Vec::new();
    for (uuid, mac) in &macs {
        let control = Arc::new(MachineControl::default());
        let manager = Arc::new(SimHardwareManager::new(uuid, mac, control, Arc::clone(&journal)));
        agents.push(tokio::spawn({
            let base = base.clone();
            async move { boot_agent(&base, manager, Duration::from_secs(5)).await }
        }));
    }
    let mut running = Vec::new();
    for agent in agents {
        running.push(
            agent
                .await?
                .map_err(|e| anyhow::anyhow!("agent failed to start: {e}"))?,
        );
    }
    tokio::time::sleep(Duration::from_secs(heartbeat_timeout)).await;
    latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
    let started = Instant::now();
    let phases = match heartbeat_only {
        Some(seconds) => {
            eprintln_progress(&format!("heartbeats only, for {seconds} s"));
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            format!("window={seconds}s")
        }
        None => {
            eprintln_progress("provide + deploy");
            move_all(&http, &base, macs.iter().map(|(uuid, _)| uuid), "provide", "available").await?;
            let cleaned = started.elapsed();
            move_all(&http, &base, macs.iter().map(|(uuid, _)| uuid), "active", "active").await?;
            format!(
                "manageable->available={:.1}s manageable->active={:.1}s",
                cleaned.as_secs_f64(),
                started.elapsed().as_secs_f64()
            )
        }
    };
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let hwm = proc_field(pid, "VmHWM:").unwrap_or(0);
    let mut lat = latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    lat.sort_by(f64::total_cmp);
    let report = format!(
        "nodes={nodes} heartbeat_timeout={heartbeat_timeout}s {phases} \
         heartbeats={} heartbeat_ms_p50={:.2} heartbeat_ms_p99={:.2} heartbeat_ms_max={:.2} conductor_peak_rss_mib={:.1} conductor_cpu_s={:.1}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        hwm as f64 / 1024.0,
        cpu
    );
    for agent in &running {
        agent.shutdown();
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();
    #[allow(clippy::print_stdout)]
    {
        println!("{report}");
    }
    Ok(())
}

fn eprintln_progress(message: &str) {
    tracing::info!("{message}");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("scale-bench: {message}");
    }
}
