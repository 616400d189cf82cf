//! Several conductors on one PostgreSQL (issue 18): three `rivet-conductor` processes on a
//! private PostgreSQL cluster, HAProxy in front of them (round robin, health checks), and real
//! `rivet-agent` instances in this process (the lab's simulated hardware manager: no disk is
//! touched) that reach the conductors only through the balancer.
//!
//! A fourth process runs with `api_only = true`: it is one of HAProxy's backends and gets its
//! share of the verbs, and hands each (and each heartbeat) to the node's owner through the
//! database.
//!
//! The victim, conductor-2, is started with a crash point that makes it stop itself (SIGSTOP)
//! while it sends an in-band step to an agent, holding that node's lock
//! (`RIVET_CONDUCTOR_CRASH_AT=agent_command_sent:<n>:stop`), so each run hits the same moment.
//!
//! * One conductor is SIGKILLed while it holds a node's lock and nodes clean and deploy: every
//!   node must reach `active`, and the lock history (`node_locks`, `lock_history = true`) must
//!   show one holder per lock number, every lock ended, and the dead conductor's ended by the
//!   conductor that took the node over.
//! * One conductor is frozen (SIGSTOP) while it holds a node's lock, past the dead timeout: its
//!   nodes are taken over and finish; after SIGCONT its pending save is refused and no node
//!   changes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivet_fleet::agent::{AgentTuning, boot_agent};
use rivet_fleet::machine::{Journal, MachineControl, SimHardwareManager};
use rivet_tests::postgres::Postgres;
use serde_json::{Value, json};

const CONDUCTORS: usize = 3;
const NODES: usize = 24;
/// Upper bound for each phase.
const BUDGET: Duration = Duration::from_secs(240);
/// `heartbeat_timeout` of the conductors: a silent conductor is dead after this.
const DEAD_AFTER_SECS: f64 = 3.0;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One conductor process.
struct Conductor {
    host: String,
    url: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Conductor {
    /// Start a conductor; `stop_at` arms a crash point that makes it SIGSTOP itself there
    /// (`RIVET_CONDUCTOR_CRASH_AT=<point>:<n>:stop`), holding the node's lock.
    fn start(dir: &Path, host: &str, database_url: &str, api_only: bool, stop_at: Option<&str>) -> Conductor {
        let binary = rivet_tests::api::conductor_binary();
        let port = free_port();
        let config = dir.join(format!("{host}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen_host = \"127.0.0.1\"\nlisten_port = {port}\nhost = \"{host}\"\n\
                 database_url = \"{database_url}\"\nenabled_hardware_types = [\"fake-hardware\"]\n\
                 ramdisk_heartbeat_timeout = 3\ncheck_provision_state_interval = 0.5\nfast_track = true\n\
                 heartbeat_interval = 0.5\nheartbeat_timeout = {DEAD_AFTER_SECS}\nlock_history = true\napi_only = {api_only}\n"
            ),
        )
        .expect("config");
        let log = dir.join(format!("{host}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let mut command = Command::new(binary);
        if let Some(point) = stop_at {
            command.env(rivet_conductor::crash_point::ENV, point);
        }
        let child = command
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("conductor starts");
        Conductor {
            host: host.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            log,
            child: Some(child),
        }
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    /// True once the process has stopped or died (state `T` or `Z` in /proc).
    fn is_halted(&self) -> bool {
        let Some(child) = &self.child else { return true };
        process_halted(child.id())
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGKILL (std's `Child::kill`), then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ---\n{}",
            self.host,
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

/// True if process `pid` is stopped or dead (state `T`, `t` when a tracer such as CI's strace
/// sees the stop, `Z`, or gone).
fn process_halted(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('T' | 't' | 'Z'))),
        Err(_) => true,
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A frozen process cannot die of SIGKILL until it is continued.
            let _ = Command::new("kill").args(["-s", "CONT", &self.pid()]).status();
        }
        self.kill();
    }
}

/// HAProxy in front of the conductors.
struct Balancer {
    url: String,
    child: Child,
}

impl Balancer {
    fn start(dir: &Path, conductors: &[Conductor]) -> Balancer {
        let port = free_port();
        let mut config = format!(
            "global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
             frontend api\n  bind 127.0.0.1:{port}\n  default_backend conductors\n\
             backend conductors\n  balance roundrobin\n  option httpchk GET /\n  retries 3\n  option redispatch\n"
        );
        for c in conductors {
            let addr = c.url.trim_start_matches("http://");
            config.push_str(&format!("  server {} {addr} check inter 300ms fall 2 rise 2\n", c.host));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("haproxy config");
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("haproxy starts (`bash .ci/test` installs it)");
        Balancer {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    rivet_tests::api::call(http, method, url, body.as_ref(), Duration::from_secs(30)).await
}

/// Every node's document.
async fn nodes(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let (status, body) = call(
        http,
        reqwest::Method::GET,
        &format!("{base}/v1/nodes/detail?limit=1000"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["nodes"].as_array().cloned().unwrap_or_default()
}

/// The fleet under test.
struct Fleet {
    _dir: tempfile::TempDir,
    pg: Postgres,
    conductors: Vec<Conductor>,
    balancer: Balancer,
    http: reqwest::Client,
    uuids: Vec<String>,
    agents: Vec<rivet_agent::RunningAgent>,
}

impl Fleet {
    /// Three conductors, the balancer, `count` nodes taken to `clean wait`, then their agents;
    /// conductor-2 stops itself (SIGSTOP) at `stop_at`.
    async fn start(count: usize, stop_at: &str) -> Fleet {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = Postgres::start();
        // The first conductor creates the schema before the others start.
        let mut conductors = vec![Conductor::start(dir.path(), "conductor-1", &pg.url(), false, None)];
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        call(&http, reqwest::Method::GET, &format!("{}/v1/", conductors[0].url), None).await;
        for i in 2..=CONDUCTORS {
            conductors.push(Conductor::start(
                dir.path(),
                &format!("conductor-{i}"),
                &pg.url(),
                false,
                (i == 2).then_some(stop_at),
            ));
        }
        // An API-only replica: it owns nothing and hands every verb and heartbeat over.
        conductors.push(Conductor::start(dir.path(), "api-only", &pg.url(), true, None));
        for c in &conductors {
            call(&http, reqwest::Method::GET, &format!("{}/v1/", c.url), None).await;
        }
        let balancer = Balancer::start(dir.path(), &conductors);
        let mut fleet = Fleet {
            _dir: dir,
            pg,
            conductors,
            balancer,
            http,
            uuids: Vec::new(),
            agents: Vec::new(),
        };
        let journal = Journal::default();
        let mut managers = Vec::new();
        let uuids = balanced_uuids(count);
        for (i, chosen) in uuids.iter().enumerate() {
            // Verbs go to each conductor in turn: any conductor serves the whole API.
            let base = fleet.conductors[i % fleet.conductors.len()].url.clone();
            let mac = format!("52:54:00:18:{:02x}:{:02x}", i / 256, i % 256);
            let uuid = rivet_tests::api::enroll_simulated(
                &fleet.http,
                &base,
                &format!("fleet-{i}"),
                &mac,
                Some(chosen),
                Duration::from_secs(30),
            )
            .await;
            managers.push(SimHardwareManager::new(
                &uuid,
                &mac,
                Arc::new(MachineControl::default()),
                journal.clone(),
            ));
            fleet.uuids.push(uuid);
        }
        fleet.set_all("manage").await;
        fleet.wait_all("manageable").await;
        fleet.set_all("provide").await;
        fleet.wait_all("clean wait").await;
        for manager in managers {
            let agent = boot_agent(
                &fleet.balancer.url,
                Arc::new(manager),
                &AgentTuning::with_gap(Duration::ZERO),
            )
            .await
            .expect("agent starts");
            fleet.agents.push(agent);
        }
        fleet
    }

    /// The first live conductor's URL (for reads).
    fn reader(&self) -> String {
        self.conductors
            .iter()
            .find(|c| c.child.is_some())
            .map(|c| c.url.clone())
            .expect("a live conductor")
    }

    async fn set(&self, uuid: &str, target: &str, via: &str) {
        let (status, body) = call(
            &self.http,
            reqwest::Method::PUT,
            &format!("{via}/v1/nodes/{uuid}/states/provision"),
            Some(json!({ "target": target })),
        )
        .await;
        assert_eq!(status, 202, "{target} {uuid} via {via}: {body}\n{}", self.logs());
    }

    /// `target` for every node, through the conductors other than the victim (conductor-2) in
    /// turn: a victim that stops itself early (inside a lock transaction) would leave a verb
    /// sent to it unanswered; sent elsewhere, the verb is handed to it through the database and
    /// handed on when it is taken for dead.
    async fn set_all(&self, target: &str) {
        let others: Vec<&Conductor> = self
            .conductors
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, c)| c)
            .collect();
        for (i, uuid) in self.uuids.iter().enumerate() {
            self.set(uuid, target, &others[i % others.len()].url).await;
        }
    }

    fn logs(&self) -> String {
        self.conductors
            .iter()
            .map(Conductor::log_tail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every conductor's warning and error lines, by conductor.
    fn warnings(&self) -> String {
        self.conductors
            .iter()
            .map(|c| {
                let text = std::fs::read_to_string(&c.log).unwrap_or_default();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                    .collect();
                format!("--- {} ---\n{}", c.host, lines.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_all(&self, want: &str) {
        let until = Instant::now() + BUDGET;
        loop {
            let all = nodes(&self.http, &self.reader()).await;
            let failed: Vec<_> = all
                .iter()
                .filter(|n| n["provision_state"].as_str().is_some_and(|s| s.contains("fail")))
                .map(|n| (n["uuid"].clone(), n["provision_state"].clone(), n["last_error"].clone()))
                .collect();
            assert!(failed.is_empty(), "failed nodes: {failed:#?}\n{}", self.logs());
            if all.len() == self.uuids.len() && all.iter().all(|n| n["provision_state"] == want) {
                return;
            }
            let stuck: Vec<_> = all
                .iter()
                .filter(|n| n["provision_state"] != want)
                .map(|n| {
                    (
                        n["uuid"].clone(),
                        n["provision_state"].clone(),
                        n["reservation"].clone(),
                    )
                })
                .collect();
            assert!(
                Instant::now() < until,
                "not all {want} in time: {stuck:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deploy each node as soon as it is available, through the conductors other than `victim`
    /// in turn, until every node is active. `victim` stops itself at its crash point (holding a
    /// node's lock, in the middle of a step); with `kill`, a watcher SIGKILLs it the moment it
    /// stops. Answers how many nodes were cleaning and deploying when it stopped.
    async fn clean_then_deploy(&mut self, victim: usize, kill: bool) -> (usize, usize) {
        let until = Instant::now() + BUDGET;
        if kill {
            let pid = self.conductors[victim].child.as_ref().expect("running").id();
            std::thread::spawn(move || {
                while Instant::now() < until {
                    if process_halted(pid) {
                        let _ = Command::new("kill").args(["-s", "KILL", &pid.to_string()]).status();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        let mut at_stop = None;
        let mut turn = 0;
        loop {
            let all = nodes(&self.http, &self.reader()).await;
            let state = |n: &Value| n["provision_state"].as_str().unwrap_or_default().to_owned();
            let failed: Vec<_> = all
                .iter()
                .filter(|n| state(n).contains("fail"))
                .map(|n| (n["uuid"].clone(), n["last_error"].clone()))
                .collect();
            assert!(failed.is_empty(), "failed nodes: {failed:#?}\n{}", self.logs());
            if at_stop.is_none() && self.conductors[victim].is_halted() {
                let cleaning = all.iter().filter(|n| state(n).starts_with("clean")).count();
                let deploying = all
                    .iter()
                    .filter(|n| state(n).starts_with("deploy") || state(n) == "wait call-back")
                    .count();
                at_stop = Some((cleaning, deploying));
            }
            if all.iter().all(|n| state(n) == "active") {
                return at_stop.unwrap_or_else(|| {
                    panic!(
                        "{} never reached its crash point\n{}",
                        self.conductors[victim].host,
                        self.logs()
                    )
                });
            }
            assert!(Instant::now() < until, "not all active in time\n{}", self.logs());
            for node in all.iter().filter(|n| state(n) == "available") {
                let others: Vec<String> = self
                    .conductors
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != victim)
                    .map(|(_, c)| c.url.clone())
                    .collect();
                turn += 1;
                let via = &others[turn % others.len()];
                self.set(node["uuid"].as_str().expect("uuid"), "active", via).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `node_locks` as (node, token, holder, ended by).
    fn lock_history(&self) -> Vec<(String, i64, String, String)> {
        self.pg
            .query("SELECT node_uuid, token, conductor, COALESCE(released_by, '') FROM node_locks ORDER BY node_uuid, token")
            .iter()
            .map(|row| {
                let cols: Vec<&str> = row.split('|').collect();
                (
                    cols[0].to_owned(),
                    cols[1].parse().expect("token"),
                    cols[2].to_owned(),
                    cols[3].to_owned(),
                )
            })
            .collect()
    }

    fn stop_agents(&mut self) {
        for agent in self.agents.drain(..) {
            agent.shutdown();
        }
    }
}

/// `count` node UUIDs that the conductors' hash ring spreads evenly (a third each), so the
/// victim owns its share and surely reaches its crash point: random UUIDs left it one node or
/// none in some runs, and it never got there.
fn balanced_uuids(count: usize) -> Vec<String> {
    let hosts: Vec<String> = (1..=CONDUCTORS).map(|i| format!("conductor-{i}")).collect();
    let ring = rivet_conductor::cluster::HashRing::new(hosts.iter().map(String::as_str));
    let mut buckets: Vec<Vec<String>> = vec![Vec::new(); CONDUCTORS];
    let share = count.div_ceil(CONDUCTORS);
    // Each candidate lands in a bucket with probability about 1/3, so this ends quickly.
    while buckets.iter().map(Vec::len).sum::<usize>() < count {
        let uuid = uuid::Uuid::new_v4().to_string();
        let owner = ring.owner(&uuid).expect("a ring of three");
        let bucket = hosts.iter().position(|h| h == owner).expect("a known host");
        if buckets[bucket].len() < share {
            buckets[bucket].push(uuid);
        }
    }
    // Interleaved, so the verbs' round robin reaches every owner.
    (0..share)
        .flat_map(|i| buckets.iter().filter_map(move |b| b.get(i).cloned()))
        .take(count)
        .collect()
}

/// One holder per lock number (the table's key), every lock ended but a node's last, a lock
/// ended by its holder unless that holder is `dead`, whose locks end by a take-over; answers the
/// nodes whose lock was taken from `dead`.
/// On failure, the conductors' warnings and errors (`warnings`) follow the message.
fn check_lock_history(history: &[(String, i64, String, String)], dead: &str, warnings: &str) -> Vec<String> {
    assert!(!history.is_empty(), "lock_history = true records every lock");
    let mut taken_over = Vec::new();
    for (i, (node, token, holder, ended_by)) in history.iter().enumerate() {
        let last_of_node = history.get(i + 1).is_none_or(|next| next.0 != *node);
        if ended_by.is_empty() {
            assert!(
                last_of_node,
                "lock {token} of {node} held by {holder} never ended, yet a later one exists\n{warnings}"
            );
            assert_ne!(
                holder, dead,
                "the dead conductor still holds lock {token} of {node}\n{warnings}"
            );
            continue;
        }
        if holder == dead && ended_by != dead {
            taken_over.push(node.clone());
        } else {
            assert_eq!(
                ended_by, holder,
                "lock {token} of {node} held by {holder} was ended by {ended_by}\n{warnings}"
            );
        }
    }
    taken_over
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conductor_killed_while_nodes_clean_and_deploy_loses_none() {
    // conductor-2 stops itself while sending its 12th in-band step to an agent (about half of
    // what it sends in a run), holding that node's lock; the test SIGKILLs it there.
    let mut fleet = Fleet::start(NODES, "agent_command_sent:12:stop").await;
    let (cleaning, deploying) = fleet.clean_then_deploy(1, true).await;
    assert!(cleaning + deploying > 0, "nodes were on their way at the kill");
    fleet.conductors[1].kill();
    let dead = fleet.conductors[1].host.clone();
    let history = fleet.lock_history();
    let taken_over = check_lock_history(&history, &dead, &fleet.warnings());
    assert!(
        !taken_over.is_empty(),
        "the dead conductor's locks were taken over: {history:#?}"
    );
    // A taken-over node's history says who took it over from whom.
    let (_, events) = call(
        &fleet.http,
        reqwest::Method::GET,
        &format!("{}/v1/nodes/{}/history", fleet.reader(), taken_over[0]),
        None,
    )
    .await;
    assert!(
        events
            .to_string()
            .contains(&format!("Conductor {dead} holding the lock")),
        "{events}"
    );
    fleet.stop_agents();
    #[allow(clippy::print_stdout, reason = "the figures go in BENCHMARKS.md")]
    {
        println!(
            "take-over: {NODES} nodes on {CONDUCTORS} conductors, {dead} SIGKILLed in a step while {cleaning} nodes cleaned and {deploying} deployed; {} lock(s) taken over; all active",
            taken_over.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_conductor_writes_nothing_after_its_nodes_are_taken_over() {
    // conductor-2 stops itself right after an agent accepted a step, before saving the wait:
    // when it wakes, that save is the stale write the fence must refuse.
    let mut fleet = Fleet::start(NODES / 2, "agent_command_sent:6:stop").await;
    fleet.clean_then_deploy(1, false).await;
    let frozen = fleet.conductors[1].host.clone();
    // Every node is active without the frozen conductor; nothing else writes to the nodes now.
    fleet.stop_agents();
    let snapshot = |all: Vec<Value>| -> Vec<(Value, Value, Value)> {
        all.iter()
            .map(|n| (n["uuid"].clone(), n["updated_at"].clone(), n["provision_state"].clone()))
            .collect()
    };
    let before = snapshot(nodes(&fleet.http, &fleet.reader()).await);
    fleet.conductors[1].signal("CONT");
    // The woken conductor carries on from its crash point: its next save must be refused.
    let refused = || {
        std::fs::read_to_string(&fleet.conductors[1].log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("changed hands"))
            .count()
    };
    let until = Instant::now() + Duration::from_secs(30);
    while refused() == 0 {
        assert!(
            Instant::now() < until,
            "the woken conductor's save was refused\n{}",
            fleet.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And two of its membership rounds later, nothing changed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = snapshot(nodes(&fleet.http, &fleet.reader()).await);
    assert_eq!(
        before,
        after,
        "a node changed after the frozen conductor woke\n{}",
        fleet.logs()
    );
    let history = fleet.lock_history();
    let taken_over = check_lock_history(&history, &frozen, &fleet.warnings()).len();
    assert!(
        taken_over >= 1,
        "the frozen conductor's locks were taken over: {history:#?}"
    );
    let refused = refused();
    #[allow(clippy::print_stdout, reason = "the figures go in BENCHMARKS.md")]
    {
        println!(
            "freeze: {frozen} SIGSTOPped in a step past the {DEAD_AFTER_SECS} s timeout; {taken_over} lock(s) taken over; after SIGCONT {refused} stale write(s) refused, no node changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conductor_frozen_inside_a_transaction_holds_up_no_one() {
    // conductor-2 stops itself inside the transaction that takes a node's lock, holding the
    // node's row lock in PostgreSQL. The others must still refresh their membership, take its
    // nodes over once the database ends the stuck session, and finish every node; before, the
    // take-over waited on the row lock until the frozen process woke, and meanwhile the waiting
    // conductors stopped refreshing their rows and every conductor was taken for dead.
    let mut fleet = Fleet::start(NODES / 2, "in_lock_transaction:8:stop").await;
    fleet.clean_then_deploy(1, false).await;
    fleet.stop_agents();
    let before = nodes(&fleet.http, &fleet.reader()).await;
    fleet.conductors[1].signal("CONT");
    // The woken conductor finds its session ended by the database (its transaction, and the
    // lock it was taking, are gone), refreshes its row again and rejoins.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, conductor) = call(
            &fleet.http,
            reqwest::Method::GET,
            &format!("{}/v1/conductors/{}", fleet.reader(), fleet.conductors[1].host),
            None,
        )
        .await;
        if conductor["alive"] == true {
            break;
        }
        assert!(
            Instant::now() < until,
            "the woken conductor rejoined: {conductor}\n{}",
            fleet.warnings()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = nodes(&fleet.http, &fleet.reader()).await;
    let states = |all: &[Value]| -> Vec<(Value, Value, Value)> {
        all.iter()
            .map(|n| (n["uuid"].clone(), n["provision_state"].clone(), n["updated_at"].clone()))
            .collect()
    };
    assert_eq!(
        states(&before),
        states(&after),
        "a node changed after the frozen conductor woke"
    );
    assert!(after.iter().all(|n| n["provision_state"] == "active"));
}
