//! In-band inspection (IPA 13 `inspector.py`): at start-up, before lookup, the agent collects
//! the inspection data with the configured collectors and posts it to the inspection endpoint
//! (Ironic's `POST /v1/continue_inspection`), then goes on to lookup and heartbeats.
//!
//! The data is one JSON object: the keys each collector adds, in collector order, then `error`
//! (null, or the failures). A collector that fails adds to the failures and the next still
//! runs; the data is posted anyway (Ironic's `ramdisk_error` hook then fails the inspection
//! with that text, as for IPA), and inspection counts as failed. An unknown collector name is an
//! error before anything runs: upstream then posts only `{"error": …}`, and so does Rivet.
//! Whatever happens, the agent carries on to lookup; the node UUID from a successful inspection
//! is passed to it, as upstream does.
//!
//! | collector | adds |
//! |---|---|
//! | `default` | `inventory`, `root_disk` (when a disk ≥ 4 GiB exists), `boot_interface`, `configuration` |
//! | `logs` | `logs`: base64 tar.gz of the system logs |
//! | `pci-devices` | `pci_devices` ([`pci`]) |
//! | `numa-topology` | `numa_topology` ([`numa`]) |
//! | `dmi-decode` | `dmi` ([`dmi`]) |
//! | `lldp` | `lldp_raw`: `{interface: [[type, hex], …]}` ([`crate::inventory::lldp`]) |
//! | `usb-devices` | `usb_devices` ([`usb`]) |
//! | `extra-hardware` | `data`: the JSON of `hardware-detect` |
//!
//! To add a collector: a [`Collector`] variant with upstream's name in [`Collector::ALL`], a
//! function reading through a [`SysRoot`] (so tests use a fake tree), and its arm in
//! [`Collector::collect`].

pub mod callback;
pub mod dmi;
pub mod numa;
pub mod pci;
pub mod usb;

use std::time::Duration;

use rivet_common::JsonObject;
use rivet_common::inventory::{Disk, Inventory};
use rivet_common::ramdisk::LookupResponse;
use serde_json::{Value, json};

use crate::config::InspectionConfig;
use crate::inventory::{self, SysRoot};
use crate::state::AgentState;

/// How often the DHCP wait looks at the interfaces (upstream `_DHCP_RETRY_INTERVAL`).
const DHCP_POLL: Duration = Duration::from_secs(2);
/// How long `dmidecode` may run.
const DMIDECODE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `hardware-detect` may run (benchmarks included).
const HARDWARE_DETECT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Journal lines the `logs` collector sends (upstream `journald_max_lines`).
const LOGS_JOURNAL_LINES: u32 = 10_000;

/// Why inspection failed. The agent logs it and carries on to lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectionError {
    /// Names that are not collectors (upstream's stevedore message).
    #[error("Failed to load collector {0}")]
    UnknownCollectors(String),
    /// One or more collectors failed; the data went out with this text as `error`.
    #[error("{0}")]
    Collectors(String),
    /// The data could not be delivered.
    #[error(transparent)]
    Post(#[from] callback::PostError),
    /// The data could not be serialised.
    #[error("cannot serialise the inspection data: {0}")]
    Encode(String),
    /// No HTTP client could be built (TLS material).
    #[error("cannot prepare the HTTP client: {0}")]
    Client(String),
}

/// The inspection collectors, by upstream's entry-point names (IPA 13 `setup.cfg`,
/// `ironic_python_agent.inspector.collectors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    /// The inventory and what Ironic derives from it.
    Default,
    /// System logs.
    Logs,
    /// PCI devices.
    PciDevices,
    /// NUMA topology.
    NumaTopology,
    /// `dmidecode` records.
    DmiDecode,
    /// LLDP of every interface.
    Lldp,
    /// Generic USB devices.
    UsbDevices,
    /// `hardware-detect` output.
    ExtraHardware,
}

impl Collector {
    /// Every collector with its name.
    pub const ALL: [(&'static str, Collector); 8] = [
        ("default", Collector::Default),
        ("logs", Collector::Logs),
        ("pci-devices", Collector::PciDevices),
        ("numa-topology", Collector::NumaTopology),
        ("dmi-decode", Collector::DmiDecode),
        ("lldp", Collector::Lldp),
        ("usb-devices", Collector::UsbDevices),
        ("extra-hardware", Collector::ExtraHardware),
    ];

    /// The collector called `name`.
    pub fn from_name(name: &str) -> Option<Collector> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    /// Upstream's name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// The collectors named, in order (duplicates run twice, as upstream's `name_order`).
    ///
    /// # Errors
    /// [`InspectionError::UnknownCollectors`] naming every unknown name, like upstream's
    /// `Failed to load collector {'foo'}`.
    pub fn resolve(names: &[String]) -> Result<Vec<Collector>, InspectionError> {
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| Self::from_name(n).is_none())
            .map(|n| format!("'{n}'"))
            .collect();
        if !unknown.is_empty() {
            return Err(InspectionError::UnknownCollectors(format!(
                "{{{}}}",
                unknown.join(", ")
            )));
        }
        Ok(names.iter().filter_map(|n| Self::from_name(n)).collect())
    }

    /// Add this collector's keys to `data`. Problems upstream reports as failures go to
    /// `failures`; an `Err` is the collector failing as a whole (upstream: an exception, added
    /// as `collector <name> failed: <error>`).
    pub async fn collect(
        self,
        ctx: &Context<'_>,
        data: &mut JsonObject,
        failures: &mut Failures,
    ) -> Result<(), String> {
        match self {
            Collector::Default => collect_default(ctx, data).await,
            Collector::Logs => {
                match crate::extensions::log::system_logs(&ctx.state.managers, Some(LOGS_JOURNAL_LINES)).await {
                    Ok(archive) => drop(data.insert("logs".into(), Value::String(archive))),
                    // Upstream: the logs collector never reports failures.
                    Err(e) => tracing::warn!(error = %e, "failed to get system logs"),
                }
                Ok(())
            }
            Collector::PciDevices => {
                let root = ctx.root.clone();
                match tokio::task::spawn_blocking(move || pci::collect(&root))
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Ok(devices) => drop(data.insert("pci_devices".into(), to_json(&devices)?)),
                    Err(e) => failures.add(format!("Failed to get list of PCI devices: {e}")),
                }
                Ok(())
            }
            Collector::NumaTopology => {
                let root = ctx.root.clone();
                if let Some(topology) = tokio::task::spawn_blocking(move || numa::collect(&root))
                    .await
                    .map_err(|e| e.to_string())?
                {
                    data.insert("numa_topology".into(), to_json(&topology)?);
                }
                Ok(())
            }
            Collector::DmiDecode => {
                let args: Vec<String> = dmi::DMIDECODE_ARGS.iter().map(|a| a.to_string()).collect();
                let text = match crate::tools::output_within("dmidecode", &args, DMIDECODE_TIMEOUT).await {
                    Ok(text) => text,
                    Err(e) => {
                        failures.add(format!("failed to run dmidecode: {e}"));
                        return Ok(());
                    }
                };
                data.insert("dmi".into(), json!({}));
                match dmi::parse(&text) {
                    Ok(dmi) => drop(data.insert("dmi".into(), dmi)),
                    Err(e @ dmi::DmiError::MissingKey(_)) => return Err(e.to_string()),
                    Err(e) => tracing::warn!(error = %e, "failed to collect dmidecode info"),
                }
                Ok(())
            }
            Collector::Lldp => {
                let lldp = inventory::lldp::collect(&ctx.root, ctx.state.config.lldp_timeout).await;
                data.insert("lldp_raw".into(), to_json(&lldp)?);
                Ok(())
            }
            Collector::UsbDevices => {
                let root = ctx.root.clone();
                let devices = tokio::task::spawn_blocking(move || usb::collect(&root))
                    .await
                    .map_err(|e| e.to_string())?;
                data.insert("usb_devices".into(), to_json(&devices)?);
                Ok(())
            }
            Collector::ExtraHardware => {
                let mut args = Vec::new();
                if !ctx.config.benchmarks.is_empty() {
                    args.push("--benchmark".to_owned());
                    args.extend(ctx.config.benchmarks.iter().cloned());
                }
                match crate::tools::output_within("hardware-detect", &args, HARDWARE_DETECT_TIMEOUT).await {
                    Err(e) => failures.add(format!("failed to run hardware-detect utility: {e}")),
                    Ok(out) => match serde_json::from_str::<Value>(&out) {
                        Ok(found) => drop(data.insert("data".into(), found)),
                        Err(e) => failures.add(format!("JSON returned from hardware-detect cannot be decoded: {e}")),
                    },
                }
                Ok(())
            }
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// Failures gathered while collecting (upstream `utils.AccumulatedFailures`): each is logged
/// as an error when added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Record (and log) one failure.
    pub fn add(&mut self, failure: impl Into<String>) {
        let failure = failure.into();
        tracing::error!(failure = %failure, "inspection data collection failed");
        self.0.push(failure);
    }

    /// True when nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `error` value: `None`, or upstream's text listing every failure:
    /// `The following errors were encountered:\n* <first>\n* <second>`.
    pub fn error(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            let items: Vec<String> = self.0.iter().map(|f| format!("* {f}")).collect();
            format!("The following errors were encountered:\n{}", items.join("\n"))
        })
    }
}

/// What collectors read.
#[derive(Debug)]
pub struct Context<'a> {
    /// The agent: managers, device view, settings.
    pub state: &'a AgentState,
    /// Inspection settings.
    pub config: &'a InspectionConfig,
    /// Where sysfs and procfs are (`/`; a fake tree in tests).
    pub root: SysRoot,
}

/// Run `collectors` in order; the data and the failures. A collector failing as a whole is
/// recorded as `collector <name> failed: <error>` and the next one runs.
pub async fn collect_all(collectors: &[Collector], ctx: &Context<'_>) -> (JsonObject, Failures) {
    let mut data = JsonObject::new();
    let mut failures = Failures::default();
    for collector in collectors {
        tracing::info!(collector = collector.name(), "collecting inspection data");
        if let Err(e) = collector.collect(ctx, &mut data, &mut failures).await {
            failures.add(format!("collector {} failed: {e}", collector.name()));
        }
    }
    (data, failures)
}

/// The `default` collector (upstream `collect_default`): wait for DHCP, then the inventory,
/// the disk a deployment without root-device hints would choose, the PXE interface and the
/// collector and manager lists.
async fn collect_default(ctx: &Context<'_>, data: &mut JsonObject) -> Result<(), String> {
    let state = ctx.state;
    wait_for_dhcp(&ctx.root, state.config.boot.bootif.as_deref(), ctx.config).await;
    let inventory = state
        .managers
        .inventory(&state.devices)
        .await
        .map_err(|e| e.details.clone())?;
    data.insert("inventory".into(), to_json(&inventory)?);
    match guess_root_disk(&inventory.disks) {
        Some(disk) => {
            tracing::debug!(disk = %disk.name, "default root device");
            data.insert("root_disk".into(), to_json(disk)?);
        }
        None => tracing::warn!("no suitable root device detected"),
    }
    data.insert("boot_interface".into(), to_json(&inventory.boot.pxe_interface)?);
    let managers: Vec<Value> = state
        .managers
        .ranked()
        .iter()
        .map(|(_, m)| json!({ "name": m.name(), "version": m.version() }))
        .collect();
    data.insert(
        "configuration".into(),
        json!({ "collectors": ctx.config.collectors, "managers": managers }),
    );
    Ok(())
}

/// The disk a deployment without root-device hints would choose (IPA `utils.guess_root_disk`):
/// the smallest of at least 4 GiB, the first by name among equals.
pub fn guess_root_disk(disks: &[Disk]) -> Option<&Disk> {
    disks
        .iter()
        .filter(|d| d.size >= crate::disk::hints::MIN_ROOT_DISK)
        .min_by(|a, b| (a.size, &a.name).cmp(&(b.size, &b.name)))
}

/// `BOOTIF` (`01-aa-bb-cc-dd-ee-ff`) or a MAC as `aa:bb:cc:dd:ee:ff`.
fn normalize_mac(mac: &str) -> String {
    match mac.split_once('-') {
        Some((_, rest)) => rest.replace('-', ":").to_ascii_lowercase(),
        None => mac.to_ascii_lowercase(),
    }
}

/// Wait until the PXE interface (or every interface) has an IPv4 address, at most
/// `dhcp_wait_timeout` (upstream `wait_for_dhcp`); true when they have. Without `BOOTIF` and
/// without `dhcp_all_interfaces` there is nothing to wait for: false at once.
pub async fn wait_for_dhcp(root: &SysRoot, bootif: Option<&str>, config: &InspectionConfig) -> bool {
    if config.dhcp_wait_timeout.is_zero() {
        return true;
    }
    let pxe_mac = bootif.map(normalize_mac);
    if pxe_mac.is_none() && !config.dhcp_all_interfaces {
        tracing::warn!("no PXE boot interface known: not waiting for it to get an IP address");
        return false;
    }
    let deadline = tokio::time::Instant::now() + config.dhcp_wait_timeout;
    loop {
        let root_copy = root.clone();
        let interfaces = tokio::task::spawn_blocking(move || inventory::interfaces(&root_copy))
            .await
            .unwrap_or_default();
        let missing: Vec<String> = interfaces
            .into_iter()
            .filter(|i| config.dhcp_all_interfaces || Some(&i.mac_address) == pxe_mac.as_ref())
            .filter(|i| i.ipv4_address.is_none())
            .map(|i| i.name)
            .collect();
        if missing.is_empty() {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            tracing::warn!(timeout = ?config.dhcp_wait_timeout, ?missing, "not all network interfaces received IP addresses");
            return false;
        }
        tracing::debug!(?missing, "still waiting for interfaces to get IP addresses");
        tokio::time::sleep(DHCP_POLL.min(deadline - now)).await;
    }
}

/// The result of inspection at start-up.
#[derive(Debug)]
pub struct Inspection {
    /// The inventory the `default` collector sent; lookup reuses it (upstream's cache) rather
    /// than collecting again.
    pub inventory: Option<Inventory>,
    /// The node's UUID from the answer (`None` when the answer names none), or why inspection
    /// failed.
    pub outcome: Result<Option<String>, InspectionError>,
}

/// Inspect: collect with the configured collectors, post, read the answer (upstream
/// `inspector.inspect`). Never fails the agent: problems end in [`Inspection::outcome`].
pub async fn inspect(state: &AgentState, config: &InspectionConfig) -> Inspection {
    tracing::info!(collectors = ?config.collectors, "inspection is enabled");
    let ctx = Context {
        state,
        config,
        root: SysRoot::default(),
    };
    let (data, failures, unknown) = match Collector::resolve(&config.collectors) {
        Ok(collectors) => {
            let (data, failures) = collect_all(&collectors, &ctx).await;
            (data, failures, None)
        }
        Err(e) => {
            let mut failures = Failures::default();
            failures.add(e.to_string());
            (JsonObject::new(), failures, Some(e))
        }
    };
    let inventory = data
        .get("inventory")
        .and_then(|i| serde_json::from_value::<Inventory>(i.clone()).ok());
    let posted = post(state, config, data, &failures).await;
    let outcome = match (unknown, posted) {
        (Some(unknown), posted) => {
            if let Err(e) = posted {
                tracing::warn!(error = %e, "posting the inspection error failed too");
            }
            Err(unknown)
        }
        (None, Err(e)) => Err(e),
        (None, Ok(_)) if !failures.is_empty() => Err(InspectionError::Collectors(failures.error().unwrap_or_default())),
        (None, Ok(answer)) => Ok(answered_uuid(state, &answer)),
    };
    match &outcome {
        Ok(uuid) => tracing::info!(
            node = uuid.as_deref().unwrap_or("-"),
            "inspection finished successfully"
        ),
        Err(e) => tracing::error!(error = %e, "inspection failed; proceeding with lookup"),
    }
    Inspection { inventory, outcome }
}

/// Add `error` and post the data to the configured endpoints.
async fn post(
    state: &AgentState,
    config: &InspectionConfig,
    mut data: JsonObject,
    failures: &Failures,
) -> Result<Value, InspectionError> {
    data.insert("error".into(), failures.error().map_or(Value::Null, Value::String));
    if tracing::enabled!(tracing::Level::DEBUG) {
        let shown: JsonObject = data
            .iter()
            .filter(|(k, _)| k.as_str() != "logs")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let shown = Value::Object(shown);
        tracing::debug!(data = %shown, "collected inspection data");
    }
    let body = serde_json::to_vec(&data).map_err(|e| InspectionError::Encode(e.to_string()))?;
    let cfg = &state.config;
    let http = match &cfg.shared_http {
        Some(shared) => shared.clone(),
        None => crate::tls::http_client(&cfg.client_tls, cfg.tls_min_version, cfg.http_request_timeout)
            .map_err(|e| InspectionError::Client(e.to_string()))?,
    };
    Ok(callback::post(
        &http,
        &config.callback_urls,
        &body,
        cfg.global_request_id.as_deref(),
        &config.retry,
    )
    .await?)
}

/// The node UUID of an answer: upstream reads `uuid` (Ironic's inspector-compatible answer). A
/// conductor answering in the lookup shape (`node`, `config`) is honoured like a lookup answer,
/// so a token it issues is kept for the heartbeats.
fn answered_uuid(state: &AgentState, answer: &Value) -> Option<String> {
    if let Ok(lookup) = serde_json::from_value::<LookupResponse>(answer.clone()) {
        let outcome = state.apply_lookup(&lookup);
        tracing::info!(node = %lookup.node.uuid, ?outcome, "the inspection answer carries the lookup document");
        return Some(lookup.node.uuid);
    }
    answer.get("uuid").and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    use crate::config::{AgentConfig, BootParams, InspectionRetry, Settings};
    use crate::disk::devices::DeviceView;
    use crate::hardware::Managers;

    /// Write `text` at `rel` under `root`, making directories.
    pub(crate) fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn config(collectors: &[&str]) -> InspectionConfig {
        InspectionConfig {
            callback_urls: vec!["http://127.0.0.1:9/v1/continue_inspection".parse().expect("url")],
            collectors: collectors.iter().map(|c| c.to_string()).collect(),
            dhcp_wait_timeout: Duration::ZERO,
            dhcp_all_interfaces: false,
            benchmarks: Vec::new(),
            retry: InspectionRetry::default(),
        }
    }

    fn state() -> AgentState {
        let cfg = AgentConfig::resolve(Settings::default(), BootParams::default(), false).expect("config");
        AgentState::new(cfg, Managers::default(), DeviceView::new(Some(Vec::new()), false))
    }

    #[test]
    fn names_resolve_as_upstream() {
        for (name, collector) in Collector::ALL {
            assert_eq!(Collector::from_name(name), Some(collector));
            assert_eq!(collector.name(), name);
        }
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Collector::resolve(&names(&["default", "logs", "default"])),
            Ok(vec![Collector::Default, Collector::Logs, Collector::Default])
        );
        let err = Collector::resolve(&names(&["default", "nope", "Logs"])).expect_err("unknown");
        assert_eq!(err.to_string(), "Failed to load collector {'nope', 'Logs'}");
    }

    #[test]
    fn failures_read_as_upstream() {
        let mut failures = Failures::default();
        assert_eq!(failures.error(), None);
        failures.add("collector default failed: boom");
        failures.add("failed to run dmidecode: not installed");
        assert_eq!(
            failures.error().as_deref(),
            Some(
                "The following errors were encountered:\n* collector default failed: boom\n\
                 * failed to run dmidecode: not installed"
            )
        );
    }

    #[test]
    fn root_disk_is_the_smallest_big_enough() {
        let disk = |name: &str, gib: u64| Disk {
            name: name.into(),
            size: gib << 30,
            ..Default::default()
        };
        let disks = vec![
            disk("/dev/sdc", 100),
            disk("/dev/sdb", 2),
            disk("/dev/sda", 100),
            disk("/dev/sdd", 8),
        ];
        assert_eq!(guess_root_disk(&disks).map(|d| d.name.as_str()), Some("/dev/sdd"));
        assert_eq!(guess_root_disk(&disks[..3]).map(|d| d.name.as_str()), Some("/dev/sda"));
        assert_eq!(guess_root_disk(&disks[1..2]), None);
    }

    #[test]
    fn pxe_macs_normalise() {
        assert_eq!(normalize_mac("01-52-54-00-AA-00-01"), "52:54:00:aa:00:01");
        assert_eq!(normalize_mac("52:54:00:AA:00:01"), "52:54:00:aa:00:01");
    }

    #[tokio::test]
    async fn dhcp_wait_ends_at_once_when_there_is_nothing_to_wait_for() {
        let dir = tempfile::tempdir().expect("tmp");
        write(dir.path(), "sys/class/net/eth0/device/vendor", "0x1af4\n");
        write(dir.path(), "sys/class/net/eth0/address", "52:54:00:aa:00:01\n");
        let root = SysRoot(dir.path().to_owned());
        let mut cfg = config(&["default"]);
        assert!(
            wait_for_dhcp(&root, None, &cfg).await,
            "a zero timeout disables the wait"
        );
        cfg.dhcp_wait_timeout = Duration::from_secs(3600);
        assert!(
            !wait_for_dhcp(&root, None, &cfg).await,
            "no BOOTIF: nothing known to wait for"
        );
        assert!(
            wait_for_dhcp(&root, Some("01-52-54-00-bb-00-02"), &cfg).await,
            "the PXE MAC is not among the interfaces: nothing missing"
        );
    }

    #[tokio::test]
    async fn a_failed_collector_does_not_stop_the_others() {
        let dir = tempfile::tempdir().expect("tmp");
        let r = dir.path();
        write(r, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 1024 kB\n");
        write(r, "sys/class/net/.keep", "");
        let state = state();
        let cfg = config(&["pci-devices", "default", "numa-topology", "usb-devices"]);
        let ctx = Context {
            state: &state,
            config: &cfg,
            root: SysRoot(r.to_owned()),
        };
        let collectors = Collector::resolve(&cfg.collectors).expect("known");
        let (data, failures) = collect_all(&collectors, &ctx).await;
        let keys: Vec<&String> = data.keys().collect();
        assert_eq!(keys, ["numa_topology", "usb_devices"], "later collectors still ran");
        assert_eq!(data["numa_topology"]["ram"], json!([{"numa_node": 0, "size_kb": 1024}]));
        assert_eq!(data["usb_devices"], json!([]));
        let error = failures.error().expect("failures");
        assert!(error.contains("* Failed to get list of PCI devices: "), "{error}");
        assert!(
            error.contains("* collector default failed: Could not find method: list_hardware_info"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_default_collector_gives_upstreams_keys() {
        use async_trait::async_trait;
        use rivet_common::inventory::{Boot, NetworkInterface};

        use crate::hardware::{HardwareManager, ManagerError, SupportLevel};

        #[derive(Debug)]
        struct Fake;
        #[async_trait]
        impl HardwareManager for Fake {
            fn class_name(&self) -> String {
                "FakeManager".into()
            }
            fn version(&self) -> String {
                "1.7".into()
            }
            async fn evaluate_hardware_support(&self) -> SupportLevel {
                SupportLevel::MAINLINE
            }
            async fn list_hardware_info(&self, _: &DeviceView) -> Result<Inventory, ManagerError> {
                Ok(Inventory {
                    interfaces: vec![NetworkInterface {
                        name: "eth0".into(),
                        mac_address: "52:54:00:aa:00:01".into(),
                        ..Default::default()
                    }],
                    disks: vec![Disk {
                        name: "/dev/vda".into(),
                        size: 10 << 30,
                        ..Default::default()
                    }],
                    cpu: rivet_common::inventory::Cpu {
                        socket_count: Some(1),
                        ..Default::default()
                    },
                    boot: Boot {
                        current_boot_mode: "uefi".into(),
                        pxe_interface: Some("01-52-54-00-aa-00-01".into()),
                    },
                    ..Default::default()
                })
            }
        }
        let managers = Managers::load(vec![std::sync::Arc::new(Fake)]).await.expect("loads");
        let cfg = AgentConfig::resolve(Settings::default(), BootParams::default(), false).expect("config");
        let state = AgentState::new(cfg, managers, DeviceView::new(Some(Vec::new()), false));
        let inspection = config(&["default"]);
        let ctx = Context {
            state: &state,
            config: &inspection,
            root: SysRoot::default(),
        };
        let (data, failures) = collect_all(&[Collector::Default], &ctx).await;
        assert!(failures.is_empty(), "{failures:?}");
        let keys: Vec<&String> = data.keys().collect();
        assert_eq!(keys, ["inventory", "root_disk", "boot_interface", "configuration"]);
        assert_eq!(data["inventory"]["interfaces"][0]["lldp"], Value::Null);
        assert_eq!(data["root_disk"]["name"], "/dev/vda");
        assert_eq!(data["boot_interface"], "01-52-54-00-aa-00-01");
        assert_eq!(
            data["configuration"],
            json!({"collectors": ["default"], "managers": [{"name": "FakeManager", "version": "1.7"}]})
        );
        // Every key of IPA's inventory is there, with the same disk shape as in `root_disk`.
        let captured: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/upstream/ipa/post_poll_get_hardware_info.json"
            ))
            .expect("fixture"),
        )
        .expect("json");
        let upstream = &captured["body"]["command_result"];
        let key_set = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        for path in [
            "",
            "/cpu",
            "/memory",
            "/system_vendor",
            "/boot",
            "/interfaces/0",
            "/disks/0",
        ] {
            let ours = data["inventory"].pointer(path).expect("ours");
            let theirs = upstream.pointer(path).expect("upstream");
            let (mut ours_keys, theirs_keys) = (key_set(ours), key_set(theirs));
            if path.is_empty() {
                // `bmc_mac` is omitted when unknown, as upstream; the fixture machine had none.
                ours_keys.retain(|k| k != "bmc_mac");
            }
            assert_eq!(ours_keys, theirs_keys, "inventory{path}");
        }
        assert_eq!(key_set(&data["root_disk"]), key_set(&upstream["disks"][0]));
    }
}
