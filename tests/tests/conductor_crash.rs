//! A conductor killed with SIGKILL and started again while its nodes clean and deploy (issue 17).
//!
//! One `rivet-conductor` process (SQLite, `fake-hardware` power, the agent deploy interface, fast
//! track so that the agents, which no fake power action can reboot, keep their session from
//! cleaning to deployment) and 50 real `rivet-agent` instances in this process (the lab's
//! simulated hardware manager: no disk is touched), which outlive every conductor. The conductor is killed (a real SIGKILL of the
//! process) and started again with the same `--host` and database every
//! [`KILL_EVERY`] (the first [`FIRST_KILL`] into each phase) while nodes move, [`KILLS`] times in
//! all, in both phases. Every node must reach `active`, none
//! may fail, and no in-band step may run twice on an agent (the agents' journal).
//!
//! `RIVET_CRASH_KILL_EVERY_MS=0` runs the same flows without kills (the baseline of
//! BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivet_tests::lab::{Journal, MachineControl, SimHardwareManager, boot_agent};
use serde_json::{Value, json};

const NODES: usize = 50;
/// `RIVET_CRASH_NODES` overrides [`NODES`] (smaller runs while debugging).
fn nodes() -> usize {
    std::env::var("RIVET_CRASH_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(NODES)
}
const KILLS: usize = 5;
const KILL_EVERY: Duration = Duration::from_millis(800);
/// The first kill of a phase comes this soon, so that each phase gets some.
const FIRST_KILL: Duration = Duration::from_millis(300);
/// Upper bound for the whole run.
const BUDGET: Duration = Duration::from_secs(300);

/// The conductor under test, as a child process.
struct Conductor {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    url: String,
    child: Option<Child>,
}

impl Conductor {
    fn new(dir: &Path, port: u16) -> Conductor {
        let exe = std::env::current_exe().expect("test binary");
        let binary = exe
            .parent()
            .and_then(Path::parent)
            .map(|debug| debug.join("rivet-conductor"))
            .expect("target dir");
        assert!(binary.exists(), "cargo test builds {}", binary.display());
        let config = dir.join("conductor.toml");
        std::fs::write(
            &config,
            format!(
                "listen_host = \"127.0.0.1\"\nlisten_port = {port}\nhost = \"crash-test-conductor\"\n\
                 database_url = \"sqlite://{}/rivet.sqlite\"\nenabled_hardware_types = [\"fake-hardware\"]\n\
                 ramdisk_heartbeat_timeout = 3\ncheck_provision_state_interval = 0.5\nfast_track = true\n",
                dir.display()
            ),
        )
        .expect("config");
        Conductor {
            binary,
            config,
            log: dir.join("conductor.log"),
            url: format!("http://127.0.0.1:{port}"),
            child: None,
        }
    }

    /// The end of the conductor's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("conductor starts");
        self.child = Some(child);
    }

    /// SIGKILL (std's `Child::kill`), then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// An API call, retried while the conductor is down (bounded by [`BUDGET`]).
async fn call(http: &reqwest::Client, url: &str, method: reqwest::Method, body: Option<Value>) -> (u16, Value) {
    let until = Instant::now() + BUDGET;
    loop {
        let mut request = http
            .request(method.clone(), url)
            .header("X-OpenStack-Ironic-API-Version", "1.115");
        if let Some(body) = &body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap_or_default();
                return (status, serde_json::from_str(&text).unwrap_or(Value::String(text)));
            }
            Err(e) if Instant::now() < until => {
                tracing::debug!(error = %e, "conductor unreachable; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{url}: {e}"),
        }
    }
}

/// Every node's provision state.
async fn states(http: &reqwest::Client, base: &str) -> Vec<(String, String, Value)> {
    let (status, body) = call(
        http,
        &format!("{base}/v1/nodes/detail?limit=1000"),
        reqwest::Method::GET,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["uuid"].as_str().unwrap_or_default().to_owned(),
                n["provision_state"].as_str().unwrap_or_default().to_owned(),
                n["last_error"].clone(),
            )
        })
        .collect()
}

/// Drive every node to `want` (failing at once on a failure state), killing and restarting the
/// conductor every `every` while some node is still on its way; answers the kills made.
async fn drive(
    http: &reqwest::Client,
    conductor: &mut Conductor,
    want: &str,
    every: Option<Duration>,
    kills_left: &mut usize,
) -> usize {
    let mut kills = 0;
    let until = Instant::now() + BUDGET;
    let mut next_kill = every.map(|_| Instant::now() + FIRST_KILL);
    loop {
        let now = states(http, &conductor.url).await;
        let failed: Vec<_> = now.iter().filter(|(_, s, _)| s.contains("fail")).collect();
        assert!(failed.is_empty(), "failed nodes: {failed:#?}\n{}", conductor.log_tail());
        if now.iter().all(|(_, s, _)| s == want) {
            return kills;
        }
        assert!(
            Instant::now() < until,
            "not all {want} in time: {:?}\n{}",
            now.iter().filter(|(_, s, _)| s != want).collect::<Vec<_>>(),
            conductor.log_tail()
        );
        if let (Some(at), Some(every)) = (next_kill, every)
            && Instant::now() >= at
            && *kills_left > 0
        {
            conductor.kill();
            conductor.start();
            kills += 1;
            *kills_left -= 1;
            next_kill = Some(Instant::now() + every);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_all(http: &reqwest::Client, base: &str, uuids: &[String], target: &str) {
    for uuid in uuids {
        let (status, body) = call(
            http,
            &format!("{base}/v1/nodes/{uuid}/states/provision"),
            reqwest::Method::PUT,
            Some(json!({ "target": target })),
        )
        .await;
        assert_eq!(status, 202, "{target} {uuid}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conductor_killed_while_nodes_clean_and_deploy_loses_none() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let every = match std::env::var("RIVET_CRASH_KILL_EVERY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => Some(KILL_EVERY),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut conductor = Conductor::new(dir.path(), port);
    conductor.start();
    let http = http();
    let base = conductor.url.clone();
    let started = Instant::now();

    let journal: Journal = Arc::default();
    let mut uuids = Vec::new();
    let mut agents = Vec::new();
    let count = nodes();
    for i in 0..count {
        let mac = format!("52:54:00:17:{:02x}:{:02x}", i / 256, i % 256);
        let (status, node) = call(
            &http,
            &format!("{base}/v1/nodes"),
            reqwest::Method::POST,
            Some(json!({
                "driver": "fake-hardware", "deploy_interface": "direct", "name": format!("crash-{i}"),
                "instance_info": {"image_source": "http://127.0.0.1:9/images/disk.raw",
                    "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64), "image_disk_format": "raw"},
            })),
        )
        .await;
        assert_eq!(status, 201, "{node}");
        let uuid = node["uuid"].as_str().expect("uuid").to_owned();
        let (status, port) = call(
            &http,
            &format!("{base}/v1/ports"),
            reqwest::Method::POST,
            Some(json!({"address": mac, "node_uuid": uuid})),
        )
        .await;
        assert_eq!(status, 201, "{port}");
        let manager = SimHardwareManager::new(&uuid, &mac, Arc::new(MachineControl::default()), Arc::clone(&journal));
        uuids.push(uuid);
        agents.push(manager);
    }
    set_all(&http, &base, &uuids, "manage").await;
    let mut no_kills = 0;
    drive(&http, &mut conductor, "manageable", None, &mut no_kills).await;
    // The agents boot once the nodes wait for them (a power action before would end the session
    // they looked up, and a fake power action cannot reboot them), and run from then on, whatever
    // happens to the conductor.
    set_all(&http, &base, &uuids, "provide").await;
    drive(&http, &mut conductor, "clean wait", None, &mut no_kills).await;
    let mut running = Vec::new();
    for manager in agents {
        running.push(
            boot_agent(&base, Arc::new(manager), Duration::ZERO)
                .await
                .expect("agent starts"),
        );
    }
    let mut kills_left = if every.is_some() { KILLS } else { 0 };
    let cleaning_kills = drive(&http, &mut conductor, "available", every, &mut kills_left).await;
    set_all(&http, &base, &uuids, "active").await;
    let deploy_kills = drive(&http, &mut conductor, "active", every, &mut kills_left).await;
    let elapsed = started.elapsed();

    // No in-band step ran twice on any agent.
    let seen = journal.lock().expect("journal").clone();
    for uuid in &uuids {
        for step in ["erase_devices_metadata", "erase_devices", "write_image"] {
            let entry = format!("{uuid}: agent {step}");
            let runs = seen.iter().filter(|e| **e == entry).count();
            assert_eq!(runs, 1, "{uuid} ran {step} {runs} times");
        }
    }
    if every.is_some() {
        assert!(
            cleaning_kills + deploy_kills == KILLS && cleaning_kills > 0 && deploy_kills > 0,
            "the conductor was killed {KILLS} times while nodes were on their way, in both phases \
             (cleaning {cleaning_kills}, deploying {deploy_kills})"
        );
    }
    #[allow(clippy::print_stdout, reason = "the figures go in BENCHMARKS.md")]
    {
        println!(
            "conductor crash: {count} nodes, {} kills (cleaning {cleaning_kills}, deploying {deploy_kills}), all active in {:.1} s",
            cleaning_kills + deploy_kills,
            elapsed.as_secs_f64()
        );
    }
    for agent in &running {
        agent.shutdown();
    }
    conductor.kill();
}
