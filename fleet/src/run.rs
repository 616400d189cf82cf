//! One fleet run: enroll N machines (or find them from an earlier run), boot their agents, then
//! either keep them heartbeating for a while or take them `manageable` → `available` →
//! `active`, and report what it took.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::agent::AgentTuning;
use crate::api::Api;
use crate::fleet::Fleet;
use crate::machine::MachineControl;
use crate::stats::{Gap, Heartbeats, Summary, proc_kib, timeline, tree_cpu_seconds, tree_peak_rss_kib};

/// What a run does once every agent is up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Only heartbeat, for this long (nothing is provisioned).
    Rest(Duration),
    /// Clean (`provide`) and then deploy (`active`) every node.
    Active,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// API endpoints; node `i`'s agent and verbs use endpoint `i mod len`.
    pub apis: Vec<String>,
    /// Machines.
    pub nodes: usize,
    /// Node names are `<prefix>-<index>`, so a second run finds the first run's nodes.
    pub prefix: String,
    /// Hardware type of enrolled nodes (`fake-hardware`: fake power and management).
    pub driver: String,
    /// More top-level fields of enrolled nodes (`boot_interface`, …), as strings.
    pub node_fields: Vec<(String, String)>,
    /// What to do once the agents are up.
    pub goal: Goal,
    /// Time each in-band step takes.
    pub step_time: Duration,
    /// Probability that an in-band step fails.
    pub fail_rate: f64,
    /// How often the fleet reads power states (its BMC).
    pub poll_interval: Duration,
    /// A forced heartbeat comes at least this long after the previous one (upstream: 5 s).
    pub forced_gap: Duration,
    /// Agents starting at once.
    pub boot_concurrency: usize,
    /// Give up when a phase takes longer than this.
    pub phase_deadline: Duration,
    /// Conductor processes whose memory and CPU time to report.
    pub conductor_pids: Vec<u32>,
}

/// One phase's wall-clock time.
#[derive(Debug, Clone)]
pub struct Phase {
    /// `enroll`, `boot`, `rest`, `provide`, `deploy`.
    pub name: &'static str,
    /// Wall-clock time.
    pub took: Duration,
}

/// Memory and CPU of one conductor process and its descendants during the measured window.
#[derive(Debug, Clone, Copy)]
pub struct ProcessFigures {
    /// PID.
    pub pid: u32,
    /// Peak resident memory (VmHWM) in MiB at the end.
    pub peak_rss_mib: f64,
    /// User + system CPU seconds spent in the window.
    pub cpu_s: f64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Machines.
    pub nodes: usize,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// Heartbeat round trips seen by the agents during the measured window (after boot).
    pub heartbeats: Summary,
    /// Conductor processes.
    pub conductors: Vec<ProcessFigures>,
    /// This process's peak resident memory in MiB.
    pub fleet_peak_rss_mib: f64,
    /// Where the measured window's time went, machine by machine (see [`timeline`]).
    pub timeline: Vec<Gap>,
}

impl Report {
    /// The timeline as lines of text, one per pair of consecutive events.
    pub fn timeline_lines(&self) -> Vec<String> {
        self.timeline
            .iter()
            .map(|g| {
                format!(
                    "timeline {:>5} × {} → {}: p50 {:.3} s, max {:.3} s",
                    g.count, g.from, g.to, g.p50_s, g.max_s
                )
            })
            .collect()
    }
}

impl fmt::Display for Report {
    /// One line of `key=value` pairs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nodes={}", self.nodes)?;
        for phase in &self.phases {
            write!(f, " {}_s={:.1}", phase.name, phase.took.as_secs_f64())?;
        }
        let h = &self.heartbeats;
        write!(
            f,
            " heartbeats={} heartbeats_failed={} heartbeat_ms_p50={:.2} heartbeat_ms_p99={:.2} heartbeat_ms_max={:.2}",
            h.count, h.failed, h.p50, h.p99, h.max
        )?;
        for c in &self.conductors {
            write!(
                f,
                " conductor_{}_peak_rss_mib={:.1} conductor_{}_cpu_s={:.1}",
                c.pid, c.peak_rss_mib, c.pid, c.cpu_s
            )?;
        }
        write!(f, " fleet_peak_rss_mib={:.1}", self.fleet_peak_rss_mib)
    }
}

/// The MAC address of machine `index` of a fleet whose nodes are named `<prefix>-<index>`:
/// locally administered, `02:<a byte of the prefix's hash>:<index as 4 bytes>`, so fleets with
/// different prefixes can share a conductor.
pub fn mac_of(prefix: &str, index: usize) -> String {
    let tag = prefix.bytes().fold(0u8, |h, b| h.wrapping_mul(31).wrapping_add(b));
    let i = index as u32;
    format!(
        "02:{tag:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        i >> 24,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn progress(message: &str) {
    tracing::info!("{message}");
}

/// Run the fleet as `options` says. Errors: bad options, API errors while enrolling or moving
/// nodes, a node in a `… failed` state (with its `last_error`), or a phase past its deadline.
/// Every agent is stopped before it returns, whatever the outcome.
pub async fn run(options: &RunOptions) -> anyhow::Result<Report> {
    if options.apis.is_empty() || options.nodes == 0 {
        bail!("a run needs at least one API endpoint and one node");
    }
    if options.nodes > 1 << 24 {
        bail!(
            "at most {} machines: their MAC addresses are 3 bytes of the index",
            1 << 24
        );
    }
    for url in &options.apis {
        url::Url::parse(url).with_context(|| format!("API endpoint {url:?} is not a URL"))?;
    }
    let apis: Vec<Api> = options
        .apis
        .iter()
        .map(|u| Api::new(u))
        .collect::<anyhow::Result<_>>()?;
    let mut phases = Vec::new();

    let (files_url, image_server) = serve_image().await?;
    let started = Instant::now();
    progress(&format!("enrolling {} machines", options.nodes));
    let enrolled = enroll(&apis, options, &files_url).await;
    let uuids = match enrolled {
        Ok(uuids) => uuids,
        Err(e) => {
            image_server.abort();
            return Err(e);
        }
    };
    wait_for(&apis[0], &uuids, "manageable", options.phase_deadline).await?;
    phases.push(Phase {
        name: "enroll",
        took: started.elapsed(),
    });

    let heartbeats = Arc::new(Heartbeats::default());
    // One connection pool for the whole fleet: ten thousand agents each holding a connection
    // would need more file descriptors than a process gets.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let tuning = AgentTuning {
        forced_gap: options.forced_gap,
        http: Some(http),
        observer: Some(heartbeats.observer()),
        // Set per machine by the fleet.
        power_off: None,
    };
    let fleet = Fleet::new(tuning, options.boot_concurrency);
    for (i, uuid) in uuids.iter().enumerate() {
        let control = Arc::new(MachineControl::new(options.step_time, options.fail_rate));
        fleet.add(uuid, &mac_of(&options.prefix, i), &apis[i % apis.len()].base, control);
    }
    let (stop, stopped) = watch::channel(false);
    let follower = tokio::spawn(Arc::clone(&fleet).follow(apis[0].clone(), options.poll_interval, stopped));
    let outcome = drive(&apis, &uuids, &fleet, &heartbeats, options, &mut phases).await;
    stop.send_replace(true);
    let _ = follower.await;
    fleet.shutdown();
    image_server.abort();
    let (conductors, heartbeats, window_start) = outcome?;
    Ok(Report {
        timeline: timeline(&fleet.journal.timed(), window_start),
        nodes: options.nodes,
        phases,
        heartbeats,
        conductors,
        fleet_peak_rss_mib: proc_kib(std::process::id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0,
    })
}

/// Boot, then the goal; the conductors' figures and the heartbeats of the measured window.
async fn drive(
    apis: &[Api],
    uuids: &[String],
    fleet: &Arc<Fleet>,
    heartbeats: &Heartbeats,
    options: &RunOptions,
    phases: &mut Vec<Phase>,
) -> anyhow::Result<(Vec<ProcessFigures>, Summary, Instant)> {
    let started = Instant::now();
    progress(&format!("booting {} agents", uuids.len()));
    let deadline = started + options.phase_deadline;
    while fleet.running() < uuids.len() {
        let failed = fleet.failed_boots();
        if failed > 0 {
            bail!("{failed} agents failed to start (lookup refused or timed out); see the log");
        }
        if Instant::now() > deadline {
            bail!("only {}/{} agents up in time", fleet.running(), uuids.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phases.push(Phase {
        name: "boot",
        took: started.elapsed(),
    });

    heartbeats.reset();
    let window_start = Instant::now();
    let cpu_before: Vec<f64> = options.conductor_pids.iter().map(|&p| tree_cpu_seconds(p)).collect();
    match options.goal {
        Goal::Rest(window) => {
            progress(&format!("heartbeats only, for {} s", window.as_secs()));
            tokio::time::sleep(window).await;
            phases.push(Phase {
                name: "rest",
                took: window,
            });
        }
        Goal::Active => {
            for (name, target, want) in [("provide", "provide", "available"), ("deploy", "active", "active")] {
                progress(&format!("{name}: {} nodes to {want}", uuids.len()));
                let started = Instant::now();
                verb_all(apis, uuids, "provision", &json!({"target": target})).await?;
                wait_for(&apis[0], uuids, want, options.phase_deadline).await?;
                phases.push(Phase {
                    name,
                    took: started.elapsed(),
                });
            }
        }
    }
    let conductors = options
        .conductor_pids
        .iter()
        .zip(cpu_before)
        .map(|(&pid, before)| ProcessFigures {
            pid,
            peak_rss_mib: tree_peak_rss_kib(pid) as f64 / 1024.0,
            cpu_s: tree_cpu_seconds(pid) - before,
        })
        .collect();
    Ok((conductors, heartbeats.summary(), window_start))
}

/// Find or create the nodes `<prefix>-0` … and their ports; power on and `manage` those that
/// are new. Node `i` is enrolled through endpoint `i mod len`, 16 at a time. The UUIDs in order.
async fn enroll(apis: &[Api], options: &RunOptions, files_url: &str) -> anyhow::Result<Vec<String>> {
    let mut uuids = vec![String::new(); options.nodes];
    let mut tasks = JoinSet::new();
    for i in 0..options.nodes {
        if tasks.len() >= 16
            && let Some(done) = tasks.join_next().await
        {
            let (index, uuid): (usize, String) = done??;
            uuids[index] = uuid;
        }
        let api = apis[i % apis.len()].clone();
        let name = format!("{}-{i}", options.prefix);
        let mac = mac_of(&options.prefix, i);
        let mut fields = serde_json::Map::new();
        for (key, value) in &options.node_fields {
            fields.insert(key.clone(), json!(value));
        }
        fields.insert("driver".into(), json!(options.driver));
        fields.insert("name".into(), json!(name));
        fields.insert(
            "driver_info".into(),
            json!({"deploy_kernel": format!("{files_url}/deploy.kernel"),
                   "deploy_ramdisk": format!("{files_url}/deploy.ramdisk")}),
        );
        let image_url = format!("{files_url}/disk.raw");
        tasks.spawn(async move {
            enroll_one(&api, Value::Object(fields), &mac, &image_url)
                .await
                .map(|uuid| (i, uuid))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (index, uuid) = done??;
        uuids[index] = uuid;
    }
    Ok(uuids)
}

/// Serve, on loopback, the image the fleet's nodes deploy and the deploy kernel and ramdisk
/// their `driver_info` names: Ironic checks that an HTTP image answers (a HEAD request) before
/// it deploys, and a network boot interface (`ipxe`) caches the kernel and ramdisk. The
/// simulated machines never download any of them, so the image's checksum is a placeholder.
/// The base URL (`http://127.0.0.1:<port>/rivet-fleet`).
async fn serve_image() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/rivet-fleet", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/rivet-fleet/{file}",
        axum::routing::get(|| async { "rivet-fleet: a simulated file\n" }),
    );
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "image server stopped");
        }
    });
    Ok((url, server))
}

/// Find node `fields.name` or create it from `fields` (with the `direct` deploy interface unless
/// `fields` names one, and an instance image at `image_url`) and its port `mac`; power on and
/// `manage` it if it is new. Its UUID.
async fn enroll_one(api: &Api, mut fields: Value, mac: &str, image_url: &str) -> anyhow::Result<String> {
    let name = fields["name"].as_str().context("node name")?.to_owned();
    let (status, node) = api.request(Method::GET, &format!("/v1/nodes/{name}"), None).await?;
    let node = match status {
        200 => {
            // An earlier run's image server is gone: point the node at this run's.
            let patch = json!([{"op": "add", "path": "/instance_info/image_source", "value": image_url}]);
            api.call_retrying(Method::PATCH, &format!("/v1/nodes/{name}"), Some(&patch))
                .await?
        }
        404 => {
            if fields.get("deploy_interface").is_none() {
                fields["deploy_interface"] = json!("direct");
            }
            fields["instance_info"] = json!({"image_source": image_url,
                "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64),
                "image_disk_format": "raw"});
            let node = api.call(Method::POST, "/v1/nodes", Some(&fields)).await?;
            let uuid = node["uuid"].as_str().context("node without uuid")?;
            api.call(
                Method::POST,
                "/v1/ports",
                Some(&json!({"address": mac, "node_uuid": uuid})),
            )
            .await?;
            node
        }
        _ => bail!("{}/v1/nodes/{name}: {status}: {node}", api.base),
    };
    let uuid = node["uuid"].as_str().context("node without uuid")?.to_owned();
    match node["provision_state"].as_str().unwrap_or("") {
        "enroll" => {
            let verbs = [
                ("power", json!({"target": "power on"})),
                ("provision", json!({"target": "manage"})),
            ];
            for (verb, body) in verbs {
                api.call_retrying(Method::PUT, &format!("/v1/nodes/{uuid}/states/{verb}"), Some(&body))
                    .await?;
            }
        }
        "manageable" if node["power_state"] != "power on" => {
            api.call_retrying(
                Method::PUT,
                &format!("/v1/nodes/{uuid}/states/power"),
                Some(&json!({"target": "power on"})),
            )
            .await?;
        }
        "manageable" => {}
        other => bail!(
            "node {name} ({uuid}) is {other:?}: a run starts from enroll or manageable; \
             delete the fleet's nodes or move them back to manageable"
        ),
    }
    Ok(uuid)
}

/// `PUT /v1/nodes/<uuid>/states/<verb>` for every node, 16 at a time, node `i` through
/// endpoint `i mod len`.
async fn verb_all(apis: &[Api], uuids: &[String], verb: &str, body: &Value) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for (i, uuid) in uuids.iter().enumerate() {
        if tasks.len() >= 16
            && let Some(done) = tasks.join_next().await
        {
            done??;
        }
        let api = apis[i % apis.len()].clone();
        let path = format!("/v1/nodes/{uuid}/states/{verb}");
        let body = body.clone();
        tasks.spawn(async move { api.call_retrying(Method::PUT, &path, Some(&body)).await.map(drop) });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Wait until every node in `uuids` is in provision state `want` or has failed, reading the
/// list once a second. Errors: any node in a `… failed` state once the others have settled
/// (how many, and the first one's `last_error`), or `deadline` passed.
async fn wait_for(api: &Api, uuids: &[String], want: &str, deadline: Duration) -> anyhow::Result<()> {
    let ours: std::collections::HashSet<&str> = uuids.iter().map(String::as_str).collect();
    let until = Instant::now() + deadline;
    loop {
        let nodes = api.nodes("provision_state,last_error").await?;
        let ours: Vec<&Value> = nodes
            .iter()
            .filter(|n| n["uuid"].as_str().is_some_and(|u| ours.contains(u)))
            .collect();
        let failed: Vec<&&Value> = ours
            .iter()
            .filter(|n| n["provision_state"].as_str().is_some_and(|s| s.ends_with("failed")))
            .collect();
        let done = ours.iter().filter(|n| n["provision_state"] == want).count();
        if let Some(first) = failed.first()
            && done + failed.len() == uuids.len()
        {
            bail!(
                "{} nodes failed ({done} reached {want}), e.g. {} in {}: {}",
                failed.len(),
                first["uuid"],
                first["provision_state"],
                first["last_error"]
            );
        }
        if done == uuids.len() {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "only {done}/{} nodes reached {want} in {} s ({} failed)",
                uuids.len(),
                deadline.as_secs(),
                failed.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_unique_per_fleet_and_locally_administered() {
        assert_eq!(
            mac_of("fleet", 0x0102_0304).split(':').skip(2).collect::<Vec<_>>(),
            ["01", "02", "03", "04"]
        );
        assert!(mac_of("fleet", 7).starts_with("02:"));
        assert_ne!(mac_of("fleet", 7), mac_of("bench", 7));
        assert_ne!(mac_of("fleet", 7), mac_of("fleet", 8));
    }
}
