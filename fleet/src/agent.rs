//! Starting a real rivet-agent for a simulated machine, tuned for loopback.

use std::sync::Arc;
use std::time::Duration;

use rivet_agent::commands::{Command, Registry};
use rivet_agent::config::{AgentConfig, BootParams, HeartbeatObserver, HeartbeatTiming, LookupPolicy, Settings};
use rivet_agent::hardware::HardwareManager;
use serde_json::Value;

use crate::machine::SimHardwareManager;

/// How a simulated machine's agent talks to the conductor.
#[derive(Debug, Clone)]
pub struct AgentTuning {
    /// A forced heartbeat (after an asynchronous command ends) never comes sooner than this after
    /// the previous one; upstream's is 5 s.
    pub forced_gap: Duration,
    /// One HTTP client for every agent of the fleet (`None`: one each, as on real machines).
    pub http: Option<reqwest::Client>,
    /// Told every heartbeat's round trip.
    pub observer: Option<HeartbeatObserver>,
    /// Called when the agent is asked to power the machine off (`standby.power_off`); the
    /// command then succeeds, as a real machine's would just before it goes down. `None`:
    /// the agent refuses, as rivet-agent outside a ramdisk does.
    pub power_off: Option<PowerOffHook>,
}

/// What a simulated machine does when its agent powers it off.
#[derive(Clone)]
pub struct PowerOffHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for PowerOffHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PowerOffHook")
    }
}

impl AgentTuning {
    /// Each agent with its own client and no observer, forced heartbeats `forced_gap` apart.
    pub fn with_gap(forced_gap: Duration) -> Self {
        AgentTuning {
            forced_gap,
            http: None,
            observer: None,
            power_off: None,
        }
    }
}

/// Start a real agent that looks itself up at `api_url` (plain HTTP or HTTPS), with its command
/// API on an ephemeral loopback port. Lookup is retried every 50–500 ms for up to 2 minutes;
/// the answer comes once the lookup succeeded. Errors: the agent's own start-up errors.
///
/// Panics if `api_url` is not a URL (callers check operator input first).
pub async fn boot_agent(
    api_url: &str,
    manager: Arc<SimHardwareManager>,
    tuning: &AgentTuning,
) -> Result<rivet_agent::RunningAgent, rivet_agent::StartError> {
    let settings = Settings {
        api_url: Some(api_url.parse().expect("valid URL")),
        listen_host: Some("127.0.0.1".parse().expect("ip")),
        listen_port: Some(0),
        hardware_managers_dir: Some("/nonexistent/rivet-managers".into()),
        ..Default::default()
    };
    let mut config = AgentConfig::resolve(settings, BootParams::default(), false).expect("valid agent settings");
    config.lookup = LookupPolicy {
        total: Duration::from_secs(120),
        interval: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        conflict_pauses: vec![Duration::from_millis(50)],
    };
    config.heartbeat = HeartbeatTiming {
        error_retry: (Duration::from_millis(200), Duration::from_millis(400)),
        forced_min_gap: tuning.forced_gap,
    };
    config.http_request_timeout = Duration::from_secs(30);
    config.shared_http = tuning.http.clone();
    config.heartbeat_observer = tuning.observer.clone();
    let registry = simulated_registry(tuning.power_off.clone(), manager.journal(), manager.node().to_owned());
    rivet_agent::start_with(config, registry, vec![manager as Arc<dyn HardwareManager>]).await
}

/// The agent's commands, with those that act on the machine itself simulated, never touching
/// this host: the boot loader "installs" (Ironic asks for one after every UEFI deployment), and
/// with a `power_off` hook the machine "powers off" (at the end of a deployment). Both answer
/// as a real agent does when they succeed: a `null` result.
fn simulated_registry(power_off: Option<PowerOffHook>, journal: crate::machine::Journal, node: String) -> Registry {
    let mut registry = rivet_agent::default_registry();
    registry.register(
        "image",
        "install_bootloader",
        Command::asynchronous(|_, _: serde_json::Map<String, Value>| async { Ok(Value::Null) }),
    );
    // The rescue user lives in the machine's ramdisk: the simulated machine only journals the
    // password hash it was given; the agent then stops serving, as a real one does.
    let rescue_journal = journal.clone();
    registry.register(
        "rescue",
        "finalize_rescue",
        Command::sync(
            move |state: Arc<rivet_agent::state::AgentState>, args: serde_json::Map<String, Value>| {
                let hashed = args.get("hashed").and_then(Value::as_bool).unwrap_or(false);
                let password = args.get("rescue_password").and_then(Value::as_str).unwrap_or_default();
                rescue_journal.log(format!(
                    "{node}: rescue user set up (hashed {hashed}, {})",
                    &password[..password.len().min(3)]
                ));
                state.set_lifecycle(rivet_agent::state::Lifecycle::Rescued);
                async { Ok(Value::Null) }
            },
        ),
    );
    if let Some(hook) = power_off {
        registry.register(
            "standby",
            "power_off",
            Command::asynchronous(move |_, _: serde_json::Map<String, Value>| {
                (hook.0)();
                async { Ok(Value::Null) }
            }),
        );
    }
    registry
}
