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

use rivet_fleet::agent::{AgentTuning, boot_agent};
use rivet_fleet::machine::{Journal, MachineControl, SimHardwareManager};
use serde_json::{Value, json};

const NODES: usize = 50;
/// `RIVET_CRASH_NODES` overrides [`NODES`] (smaller runs while debugging).
fn nodes() -> usize {
    std::env::var("RIVET_CRASH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(NODES)
}
const KILLS: usize = 5;
/// Of [`KILLS`], how many land while nodes clean (the rest while they deploy).
const CLEANING_KILLS: usize = 2;
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
    /// `RIVET_CONDUCTOR_CRASH_AT` for the next start.
    crash_at: Option<String>,
    /// How often the process ended by itself (a crash point fired).
    crashes: usize,
}

impl Conductor {
    fn new(dir: &Path, port: u16) -> Conductor {
        let binary = rivet_tests::api::conductor_binary();
        let config = dir.join("conductor.toml");
        std::fs::write(
            &config,
            format!(
                "listen_host = \"127.0.0.1\"\nlisten_port = {port}\nhost = \"crash-test-conductor\"\n\
                 database_url = \"sqlite://{}/rivet.sqlite\"\nenabled_hardware_types = [\"fake-hardware\"]\n\
                 ramdisk_heartbeat_timeout = 3\ncheck_provision_state_interval = 0.5\nfast_track = true\n\
                 max_conductor_wait_step_seconds = 60\n",
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
            crash_at: None,
            crashes: 0,
        }
    }

    /// A conductor on a free loopback port, its database in `dir`, started.
    fn started(dir: &Path) -> Conductor {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut conductor = Conductor::new(dir, port);
        conductor.start();
        conductor
    }

    /// The conductor's log lines about one node, for failure messages.
    fn log_of(&self, uuid: &str) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains(uuid)).collect::<Vec<_>>().join("\n")
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
        let mut command = Command::new(&self.binary);
        if let Some(point) = self.crash_at.take() {
            command.env(rivet_conductor::crash_point::ENV, point);
        }
        let child = command
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("conductor starts");
        self.child = Some(child);
    }

    /// Whether the process ended by itself (a crash point); then it is reaped.
    fn died(&mut self) -> bool {
        let gone = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if gone {
            self.child = None;
            self.crashes += 1;
        }
        gone
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
    rivet_tests::api::call(http, method, url, body.as_ref(), BUDGET).await
}

/// Every node's provision state, or `None` while the conductor does not answer.
async fn states(http: &reqwest::Client, base: &str) -> Option<Vec<(String, String, Value)>> {
    let answer = http
        .get(format!("{base}/v1/nodes/detail?limit=1000"))
        .header("X-OpenStack-Ironic-API-Version", "1.115")
        .send()
        .await
        .ok()?;
    let body: Value = answer.json().await.ok()?;
    Some(
        body["nodes"]
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["uuid"].as_str().unwrap_or_default().to_owned(),
                    n["provision_state"].as_str().unwrap_or_default().to_owned(),
                    n["last_error"].clone(),
                )
            })
            .collect(),
    )
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
        if conductor.died() {
            // A crash point fired: start again, without it.
            conductor.start();
        }
        let Some(now) = states(http, &conductor.url).await else {
            assert!(
                Instant::now() < until,
                "the conductor does not answer\n{}",
                conductor.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let failed: Vec<_> = now.iter().filter(|(_, s, _)| s.contains("fail")).collect();
        assert!(failed.is_empty(), "failed nodes: {failed:#?}\n{}", conductor.log_tail());
        if now.iter().all(|(_, s, _)| s == want) {
            return kills;
        }
        if Instant::now() >= until {
            let stuck: Vec<_> = now.iter().filter(|(_, s, _)| s != want).collect();
            let history = match stuck.first() {
                Some((uuid, _, _)) => {
                    let url = format!("{}/v1/nodes/{uuid}", conductor.url);
                    let history = call(http, &format!("{url}/history"), reqwest::Method::GET, None)
                        .await
                        .1;
                    let node = call(http, &url, reqwest::Method::GET, None).await.1;
                    json!({"history": history, "driver_internal_info": node["driver_internal_info"]})
                }
                None => Value::Null,
            };
            panic!(
                "not all {want} in time: {stuck:?}\nhistory of the first: {history}\n{}",
                conductor.log_tail()
            );
        }
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

/// Send `target` to every node, starting the conductor again if a crash point ends it. A verb
/// whose answer was lost with the conductor may have been applied: its retry may be refused
/// (400, the node moved on), which `drive` then sees through the node's state.
async fn set_all(http: &reqwest::Client, conductor: &mut Conductor, uuids: &[String], target: &str) {
    let until = Instant::now() + BUDGET;
    for uuid in uuids {
        let mut retried = false;
        loop {
            if conductor.died() {
                conductor.start();
            }
            let sent = http
                .put(format!("{}/v1/nodes/{uuid}/states/provision", conductor.url))
                .header("X-OpenStack-Ironic-API-Version", "1.115")
                .json(&json!({ "target": target }))
                .send()
                .await;
            match sent {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let body = answer.text().await.unwrap_or_default();
                    assert!(status == 202 || retried, "{target} {uuid}: {status} {body}");
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < until, "{target} {uuid}: {e}\n{}", conductor.log_tail());
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The phase a crash point is armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Cleaning,
    Deploying,
}

/// One test at a time: the kills must land while nodes move, which a second test competing for
/// the two cores would make a matter of luck.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a run saw.
struct Run {
    cleaning_kills: usize,
    deploy_kills: usize,
    /// Deaths at a crash point.
    crashes: usize,
    elapsed: Duration,
}

/// `count` nodes from enroll to active, with SIGKILLs every `every` and, if given, a crash point
/// armed at the start of one phase; every node must reach active and no in-band step may run
/// twice.
async fn run(count: usize, every: Option<Duration>, crash: Option<(&str, Phase)>) -> Run {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conductor = Conductor::started(dir.path());
    let http = http();
    let base = conductor.url.clone();
    let started = Instant::now();

    let journal = Journal::default();
    let mut uuids = Vec::new();
    let mut agents = Vec::new();
    for i in 0..count {
        let mac = format!("52:54:00:17:{:02x}:{:02x}", i / 256, i % 256);
        let uuid = rivet_tests::api::enroll_simulated(&http, &base, &format!("crash-{i}"), &mac, None, BUDGET).await;
        let manager = SimHardwareManager::new(&uuid, &mac, Arc::new(MachineControl::default()), journal.clone());
        uuids.push(uuid);
        agents.push(manager);
    }
    set_all(&http, &mut conductor, &uuids, "manage").await;
    let mut no_kills = 0;
    drive(&http, &mut conductor, "manageable", None, &mut no_kills).await;
    // The agents boot once the nodes wait for them (a power action before would end the session
    // they looked up, and a fake power action cannot reboot them), and run from then on, whatever
    // happens to the conductor.
    set_all(&http, &mut conductor, &uuids, "provide").await;
    drive(&http, &mut conductor, "clean wait", None, &mut no_kills).await;
    // A crash point is armed by starting the conductor again with it, while every node waits.
    let arm = |conductor: &mut Conductor, phase: Phase| {
        if let Some((point, armed)) = crash
            && armed == phase
        {
            conductor.kill();
            conductor.crash_at = Some(point.to_owned());
            conductor.start();
        }
    };
    arm(&mut conductor, Phase::Cleaning);
    // Booted side by side: an agent's start waits for its lookup, which a crash point may
    // interrupt until `drive` starts the conductor again.
    let booting: Vec<_> = agents
        .into_iter()
        .map(|manager| {
            let base = base.clone();
            tokio::spawn(
                async move { boot_agent(&base, Arc::new(manager), &AgentTuning::with_gap(Duration::ZERO)).await },
            )
        })
        .collect();
    let mut kills_left = if every.is_some() { CLEANING_KILLS } else { 0 };
    let cleaning_kills = drive(&http, &mut conductor, "available", every, &mut kills_left).await;
    let mut kills_left = if every.is_some() { KILLS - cleaning_kills } else { 0 };
    arm(&mut conductor, Phase::Deploying);
    set_all(&http, &mut conductor, &uuids, "active").await;
    let deploy_kills = drive(&http, &mut conductor, "active", every, &mut kills_left).await;
    let elapsed = started.elapsed();
    let mut running = Vec::new();
    for agent in booting {
        running.push(agent.await.expect("agent task").expect("agent starts"));
    }

    // No in-band step ran twice on any agent.
    let seen = journal.entries();
    for uuid in &uuids {
        for step in ["erase_devices_metadata", "erase_devices", "write_image"] {
            let entry = format!("{uuid}: agent {step}");
            let runs = seen.iter().filter(|e| **e == entry).count();
            assert_eq!(runs, 1, "{uuid} ran {step} {runs} times\n{}", conductor.log_of(uuid));
        }
    }
    for agent in &running {
        agent.shutdown();
    }
    conductor.kill();
    Run {
        cleaning_kills,
        deploy_kills,
        crashes: conductor.crashes,
        elapsed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conductor_killed_while_nodes_clean_and_deploy_loses_none() {
    let every = match std::env::var("RIVET_CRASH_KILL_EVERY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => Some(KILL_EVERY),
    };
    let count = nodes();
    let Run {
        cleaning_kills,
        deploy_kills,
        elapsed,
        ..
    } = run(count, every, None).await;
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
}

/// The conductor dies at each named step boundary (`rivet_conductor::crash_point`) once, in the
/// phase where that boundary first comes: in cleaning before and after an agent command is sent
/// and between two steps, in deployment at a power action. Every node still reaches active.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conductor_dying_at_each_step_boundary_loses_no_node() {
    use rivet_conductor::crash_point::{AGENT_COMMAND_SENT, BEFORE_AGENT_COMMAND, BETWEEN_STEPS, POWER_ACTION};
    let cases = [
        (BEFORE_AGENT_COMMAND, Phase::Cleaning),
        (AGENT_COMMAND_SENT, Phase::Cleaning),
        (BETWEEN_STEPS, Phase::Deploying),
        (POWER_ACTION, Phase::Deploying),
    ];
    for (point, phase) in cases {
        let Run { crashes, elapsed, .. } = run(5, None, Some((point, phase))).await;
        assert_eq!(crashes, 1, "{point} fired once in {phase:?}");
        #[allow(clippy::print_stdout, reason = "the figures go in BENCHMARKS.md")]
        {
            println!(
                "conductor crash point {point} ({phase:?}): 5 nodes all active in {:.1} s",
                elapsed.as_secs_f64()
            );
        }
    }
}

/// A conductor killed while one node is held by a `hold` step and another pauses in a `wait`
/// step (the `fake` deploy interface: no agent). The held node is not in a working state, so the
/// restart leaves it held, and `unhold` carries it on; the pause is a working state whose step
/// repeats harmlessly, so it runs again. Both end `manageable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conductor_killed_during_hold_and_wait_steps_loses_neither() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conductor = Conductor::started(dir.path());
    let http = http();
    let base = conductor.url.clone();
    let mut uuids = Vec::new();
    for name in ["held", "paused"] {
        let body = json!({"driver": "fake-hardware", "deploy_interface": "fake", "name": name});
        let (status, node) = call(&http, &format!("{base}/v1/nodes"), reqwest::Method::POST, Some(body)).await;
        assert_eq!(status, 201, "{node}");
        uuids.push(node["uuid"].as_str().expect("uuid").to_owned());
    }
    set_all(&http, &mut conductor, &uuids, "manage").await;
    drive(&http, &mut conductor, "manageable", None, &mut 0).await;
    let (held, paused) = (&uuids[0], &uuids[1]);
    for (uuid, steps) in [
        (held, json!([{"interface": "deploy", "step": "hold"}])),
        (
            paused,
            json!([{"interface": "deploy", "step": "wait", "args": {"seconds": 5}}]),
        ),
    ] {
        let body = json!({"target": "clean", "clean_steps": steps});
        let url = format!("{base}/v1/nodes/{uuid}/states/provision");
        let (status, answer) = call(&http, &url, reqwest::Method::PUT, Some(body)).await;
        assert_eq!(status, 202, "{answer}");
    }
    let until = |uuid: &str, want: &'static str| {
        let (http, url) = (http.clone(), format!("{base}/v1/nodes/{uuid}"));
        async move {
            let deadline = Instant::now() + BUDGET;
            loop {
                let (_, node) = call(&http, &url, reqwest::Method::GET, None).await;
                let state = node["provision_state"].as_str().unwrap_or_default().to_owned();
                if state == want {
                    return node;
                }
                assert!(!state.ends_with("failed"), "{url}: {node}");
                assert!(Instant::now() < deadline, "{url} never reached {want}: {node}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until(held, "clean hold").await;
    let node = until(paused, "cleaning").await;
    assert_eq!(node["clean_step"]["step"], "wait", "{node}");

    conductor.kill();
    conductor.start();
    until(paused, "manageable").await;
    let (_, history) = call(
        &http,
        &format!("{base}/v1/nodes/{paused}/history"),
        reqwest::Method::GET,
        None,
    )
    .await;
    assert!(
        history
            .to_string()
            .contains("stopped during clean step deploy.wait; the step runs again"),
        "{history}\n{}",
        conductor.log_of(paused)
    );
    let node = until(held, "clean hold").await;
    assert_eq!(
        node["clean_step"]["step"], "hold",
        "still held after the restart: {node}"
    );
    let url = format!("{base}/v1/nodes/{held}/states/provision");
    let (status, answer) = call(&http, &url, reqwest::Method::PUT, Some(json!({"target": "unhold"}))).await;
    assert_eq!(status, 202, "{answer}");
    until(held, "manageable").await;
    conductor.kill();
}
