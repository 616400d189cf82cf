//! The real `baremetal` CLI (python-ironicclient) against a started rivet-conductor.
//!
//! `.ci/test` installs the CLI into `.venv/` and points `RIVET_BAREMETAL` at it. Without it this
//! test fails and says how to get it: it is never skipped silently.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::TestConductor;

fn baremetal() -> PathBuf {
    if let Ok(path) = std::env::var("RIVET_BAREMETAL") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/baremetal");
    if venv.exists() {
        return venv;
    }
    panic!(
        "the baremetal CLI is needed: run `bash .ci/test` (it installs python-ironicclient into .venv/) or set RIVET_BAREMETAL"
    );
}

struct Cli {
    bin: PathBuf,
    endpoint: String,
}

impl Cli {
    /// Run the CLI; panics with its output on failure.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .env("OS_AUTH_TYPE", "none")
            .env("OS_ENDPOINT", &self.endpoint)
            .env_remove("OS_CLOUD")
            .output()
            .expect("baremetal runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "baremetal {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let text = self.run(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("baremetal {args:?} printed no JSON ({e}): {text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baremetal_cli_drives_the_conductor() {
    let c = TestConductor::start().await;
    let cli = Cli {
        bin: baremetal(),
        endpoint: c.running.url(),
    };
    // The CLI is synchronous: run it on a blocking thread while the conductor serves.
    tokio::task::spawn_blocking(move || {
        let node = cli.json(&["node", "create", "--driver", "fake-hardware", "--name", "cli-node"]);
        let uuid = node["uuid"].as_str().expect("uuid").to_owned();
        assert_eq!(node["provision_state"], "enroll");
        let port = cli.json(&["port", "create", "52:54:00:AA:00:01", "--node", &uuid]);
        assert_eq!(port["address"], "52:54:00:aa:00:01");
        let shown = cli.json(&["node", "show", "cli-node"]);
        assert_eq!(shown["uuid"], uuid.as_str());
        let list = cli.json(&["node", "list"]);
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert_eq!(list[0]["name"], "cli-node");
        let ports = cli.json(&["port", "list"]);
        assert_eq!(ports[0]["address"], "52:54:00:aa:00:01");
        cli.run(&[
            "node",
            "set",
            "cli-node",
            "--driver-info",
            "ipmi_address=192.0.2.7",
            "--driver-info",
            "ipmi_password=hunter2",
        ]);
        let info = cli.json(&["node", "show", "cli-node", "-c", "driver_info"]);
        assert_eq!(info["driver_info"]["ipmi_address"], "192.0.2.7");
        assert_eq!(info["driver_info"]["ipmi_password"], "******", "secrets stay masked");
        cli.run(&["node", "manage", "cli-node", "--wait", "30"]);
        assert_eq!(cli.json(&["node", "show", "cli-node"])["provision_state"], "manageable");
        cli.run(&["node", "power", "on", "cli-node"]);
        let mut powered = String::new();
        for _ in 0..100 {
            powered = cli.json(&["node", "show", "cli-node", "-c", "power_state"])["power_state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if powered == "power on" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(powered, "power on");
        cli.run(&["node", "power", "off", "cli-node"]);
        for _ in 0..100 {
            powered = cli.json(&["node", "show", "cli-node", "-c", "power_state"])["power_state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if powered == "power off" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(powered, "power off");
        // The whole provisioning workflow, as an operator types it.
        let state = |cli: &Cli| cli.json(&["node", "show", "cli-node"])["provision_state"].clone();
        cli.run(&["node", "provide", "cli-node", "--wait", "60"]);
        assert_eq!(state(&cli), "available", "provided (automated cleaning ran)");
        cli.run(&["node", "deploy", "cli-node", "--wait", "60"]);
        assert_eq!(state(&cli), "active");
        cli.run(&["node", "undeploy", "cli-node", "--wait", "60"]);
        assert_eq!(state(&cli), "available", "undeployed and cleaned");
        cli.run(&["node", "manage", "cli-node", "--wait", "30"]);
        let validate = cli.json(&["node", "validate", "cli-node"]);
        assert!(
            validate
                .as_array()
                .is_some_and(|rows| rows.iter().any(|r| r["Interface"] == "power" && r["Result"] == true)),
            "{validate}"
        );
        cli.run(&["node", "delete", "cli-node"]);
        assert_eq!(cli.json(&["node", "list"]).as_array().map(Vec::len), Some(0));
    })
    .await
    .expect("CLI session");
    c.running.stop().await.expect("stops");
}
