//! rivet-fleet against a real rivet-conductor process (issue 18): a healthy fleet reaches
//! `active` and reports its phases and timeline; a fleet whose disks fail ends the run with the
//! failed nodes and the agent's own error, and nothing is left running.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rivet_fleet::run::{Goal, RunOptions, run};

/// A rivet-conductor on SQLite in `dir`, stopped when dropped.
struct Conductor {
    child: Child,
    url: String,
}

impl Conductor {
    fn start(dir: &std::path::Path) -> Conductor {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let config = dir.join("conductor.toml");
        std::fs::write(
            &config,
            format!(
                "listen_host = \"127.0.0.1\"\nlisten_port = {port}\nhost = \"fleet-test\"\n\
                 database_url = \"sqlite://{}/rivet.sqlite\"\nenabled_hardware_types = [\"fake-hardware\"]\n\
                 fast_track = true\nagent_post_deploy_get_power_state_retries = 0\n\
                 [default_interfaces]\ndeploy = \"direct\"\n",
                dir.display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.join("conductor.log")).expect("log");
        let child = Command::new(rivet_tests::api::conductor_binary())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("conductor starts");
        Conductor {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(url: &str, prefix: &str, fail_rate: f64) -> RunOptions {
    RunOptions {
        apis: vec![url.to_owned()],
        nodes: 6,
        prefix: prefix.into(),
        driver: "fake-hardware".into(),
        node_fields: Vec::new(),
        goal: Goal::Active,
        step_time: Duration::from_millis(5),
        fail_rate,
        poll_interval: Duration::from_millis(200),
        forced_gap: Duration::from_secs(5),
        boot_concurrency: 4,
        phase_deadline: Duration::from_secs(120),
        conductor_pids: Vec::new(),
    }
}

async fn wait_until_up(url: &str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_goes_to_active_and_a_failing_one_reports_why() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let conductor = Conductor::start(dir.path());
    wait_until_up(&conductor.url).await;

    let report = run(&options(&conductor.url, "healthy", 0.0))
        .await
        .expect("the fleet reaches active");
    assert_eq!(report.nodes, 6);
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name).collect();
    assert_eq!(phases, ["enroll", "boot", "provide", "deploy"]);
    // Every machine ran its steps in order, and the timeline says how long each gap was.
    for (from, to) in [
        ("agent erase_devices_metadata done", "agent erase_devices"),
        ("agent erase_devices done", "agent write_image"),
    ] {
        let gap = report
            .timeline
            .iter()
            .find(|g| g.from == from && g.to == to)
            .unwrap_or_else(|| panic!("no {from} → {to} in {:?}", report.timeline));
        assert_eq!(gap.count, 6, "{gap:?}");
    }
    let line = report.to_string();
    assert!(line.starts_with("nodes=6 enroll_s="), "{line}");

    // A second run finds the first run's nodes by name: they are active, so it refuses clearly.
    let again = run(&options(&conductor.url, "healthy", 0.0))
        .await
        .expect_err("active nodes");
    assert!(
        again
            .to_string()
            .contains("is \"active\": a run starts from enroll or manageable"),
        "{again}"
    );

    // Every in-band step fails: the run ends with the failed nodes and the agent's error.
    let failed = run(&options(&conductor.url, "failing", 1.0))
        .await
        .expect_err("cleaning fails");
    let message = failed.to_string();
    assert!(message.contains("6 nodes failed (0 reached available)"), "{message}");
    assert!(message.contains("clean failed"), "{message}");
    assert!(
        message.contains("simulated failure: /dev/sda reported a medium error"),
        "{message}"
    );
}
