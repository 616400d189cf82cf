//! Inspection at start-up against the fake conductor: the data's shape, upstream's retries,
//! errors carried in `error`, and lookup afterwards; LLDP heard on a veth pair inside a network
//! namespace the test creates (nothing outside it is touched).

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use rivet_agent::config::{AgentConfig, InspectionRetry};
use serde_json::Value;

use crate::support::{FakeConductor, LookupReply, NODE_UUID, base_settings, resolve};

const ISSUED: &str = "issued-token-0123456789-0123456789-abcdefgh";
const REQUEST_ID: &str = "req-5f2d7f4e-3f2b-4a57-9d0b-7e0f1c2a3b4c";

fn found() -> LookupReply {
    LookupReply::Found {
        token: Some(ISSUED.into()),
        heartbeat_timeout: 3600,
    }
}

/// An agent configuration that inspects at `callback` with `collectors`, then looks itself up
/// at `conductor`; upstream's retry count with millisecond pauses.
fn inspecting(conductor: &FakeConductor, callback: &str, collectors: &str) -> AgentConfig {
    let mut settings = base_settings();
    settings.api_url = Some(conductor.url().parse().expect("url"));
    settings.inspection_callback_url = Some(callback.parse().expect("callback url"));
    settings.inspection_collectors = Some(collectors.parse().expect("names"));
    settings.inspection_dhcp_wait_timeout = Some(0);
    settings.global_request_id = Some(REQUEST_ID.into());
    settings.disk_allow = Some("/dev/rivet-test-none".parse().expect("pattern"));
    let mut config = resolve(settings);
    config.inspection.as_mut().expect("inspection enabled").retry = InspectionRetry {
        attempts: 5,
        base: Duration::from_millis(1),
        min: Duration::from_millis(10),
        max: Duration::from_millis(40),
    };
    config
}

fn keys(body: &Value) -> Vec<&str> {
    body.as_object().expect("object").keys().map(String::as_str).collect()
}

/// The `node_uuid` the lookup asked for, if any.
fn looked_up_uuid(conductor: &FakeConductor) -> Option<String> {
    let recorded = conductor.snapshot();
    let (_, query) = recorded.lookups.first().expect("a lookup");
    let query = query.clone().unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "node_uuid")
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn inspection_retries_then_lookup_uses_the_node_uuid() {
    let conductor =
        FakeConductor::start_with_inspection(Some("1.115"), vec![found()], vec![202], vec![503, 409, 202]).await;
    let callback = format!("{}/v1/continue_inspection", conductor.url());
    let config = inspecting(
        &conductor,
        &callback,
        "default,logs,pci-devices,numa-topology,usb-devices",
    );
    let agent = rivet_agent::start(config).await.expect("agent starts");
    conductor.wait_heartbeats(1).await;
    let recorded = conductor.snapshot();

    assert_eq!(recorded.inspections.len(), 3, "503 and 409 are retried, 202 ends it");
    let (headers, body) = &recorded.inspections[2];
    assert_eq!(recorded.inspections[0].1, *body, "every attempt sends the same data");
    assert_eq!(
        headers.get("X-OpenStack-Ironic-API-Version"),
        None,
        "no version header: Ironic answers without issuing a token"
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["X-OpenStack-Request-ID"], REQUEST_ID);

    let mut want = vec![
        "inventory",
        "root_disk",
        "boot_interface",
        "configuration",
        "logs",
        "pci_devices",
    ];
    if body.get("root_disk").is_none() {
        want.retain(|k| *k != "root_disk");
    }
    if body.get("numa_topology").is_some() {
        want.push("numa_topology");
    }
    want.extend(["usb_devices", "error"]);
    assert_eq!(keys(body), want, "collector order, then error");
    assert_eq!(body["error"], Value::Null);
    assert_eq!(
        body["configuration"]["collectors"],
        serde_json::json!(["default", "logs", "pci-devices", "numa-topology", "usb-devices"])
    );
    assert_eq!(
        body["configuration"]["managers"][0],
        serde_json::json!({"name": "generic_hardware_manager", "version": "1.2"})
    );
    assert!(body["inventory"]["interfaces"].is_array() && body["inventory"]["cpu"]["count"].is_u64());
    assert!(
        body["inventory"]["disks"].as_array().expect("disks").is_empty(),
        "allowlist hides every disk"
    );
    assert!(body["pci_devices"].is_array() && body["usb_devices"].is_array());
    let logs = base64::engine::general_purpose::STANDARD
        .decode(body["logs"].as_str().expect("base64 text"))
        .expect("base64");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(logs.as_slice())
        .read_to_end(&mut tar)
        .expect("gzip");

    assert_eq!(
        looked_up_uuid(&conductor).as_deref(),
        Some(NODE_UUID),
        "lookup passes the UUID inspection returned"
    );
    assert_eq!(agent.node_uuid.as_deref(), Some(NODE_UUID));
    assert_eq!(
        recorded.heartbeats[0].1["agent_token"], ISSUED,
        "the token comes from lookup"
    );
    agent.shutdown();
}

#[tokio::test]
async fn an_unknown_collector_posts_only_the_error_and_lookup_goes_on() {
    let conductor = FakeConductor::start_with_inspection(Some("1.115"), vec![found()], vec![202], vec![400]).await;
    let callback = format!("{}/v1/continue_inspection", conductor.url());
    let agent = rivet_agent::start(inspecting(&conductor, &callback, "default,nope"))
        .await
        .expect("agent starts");
    conductor.wait_heartbeats(1).await;
    let recorded = conductor.snapshot();
    assert_eq!(recorded.inspections.len(), 1, "a 400 is not retried");
    assert_eq!(
        recorded.inspections[0].1,
        serde_json::json!({
            "error": "The following errors were encountered:\n* Failed to load collector {'nope'}"
        }),
        "nothing is collected, as upstream"
    );
    assert_eq!(
        looked_up_uuid(&conductor),
        None,
        "failed inspection: lookup by MAC only"
    );
    agent.shutdown();
}

#[tokio::test]
async fn a_failed_collector_is_reported_and_the_rest_is_sent() {
    if rivet_agent::tools::exists("hardware-detect") {
        // The collector would succeed on this machine; the failure path needs its absence.
        return;
    }
    let conductor = FakeConductor::start_with_inspection(Some("1.115"), vec![found()], vec![202], vec![202]).await;
    let callback = format!("{}/v1/continue_inspection", conductor.url());
    let agent = rivet_agent::start(inspecting(&conductor, &callback, "extra-hardware,pci-devices"))
        .await
        .expect("agent starts");
    conductor.wait_heartbeats(1).await;
    let recorded = conductor.snapshot();
    let body = &recorded.inspections[0].1;
    assert_eq!(keys(body), ["pci_devices", "error"]);
    assert_eq!(
        body["error"],
        "The following errors were encountered:\n* failed to run hardware-detect utility: \
         hardware-detect is not installed in this ramdisk"
    );
    assert_eq!(
        looked_up_uuid(&conductor),
        None,
        "upstream raises after posting, so the UUID is not used"
    );
    agent.shutdown();
}

#[tokio::test]
async fn an_unreachable_endpoint_costs_bounded_attempts() {
    let conductor = FakeConductor::start(Some("1.115"), vec![found()], vec![202]).await;
    // A port nobody listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/v1/continue_inspection", closed.local_addr().expect("addr"));
    drop(closed);
    // Two dead URLs: each attempt tries both, every attempt fails, inspection gives up after
    // upstream's five and the agent carries on to lookup.
    let config = inspecting(&conductor, &format!("{dead},{dead}"), "pci-devices");
    let agent = rivet_agent::start(config).await.expect("agent starts after giving up");
    conductor.wait_heartbeats(1).await;
    assert!(conductor.snapshot().inspections.is_empty());
    assert_eq!(looked_up_uuid(&conductor), None);
    agent.shutdown();
}

#[tokio::test]
async fn a_dead_first_url_moves_on_to_the_next() {
    let conductor = FakeConductor::start_with_inspection(Some("1.115"), vec![found()], vec![202], vec![202]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/v1/continue_inspection", closed.local_addr().expect("addr"));
    drop(closed);
    let live = format!("{}/v1/continue_inspection", conductor.url());
    let agent = rivet_agent::start(inspecting(&conductor, &format!("{dead},{live}"), "numa-topology"))
        .await
        .expect("agent starts");
    conductor.wait_heartbeats(1).await;
    assert_eq!(conductor.snapshot().inspections.len(), 1);
    assert_eq!(looked_up_uuid(&conductor).as_deref(), Some(NODE_UUID));
    agent.shutdown();
}

/// LLDP on a veth pair inside a new network namespace: one end hears the frame the other
/// sends; a silent interface reports `[]` at the deadline; a missing one is left out. The
/// namespace (and its interfaces) disappears with the thread. Needs root, as the device tests.
#[test]
fn lldp_is_heard_on_a_veth_pair_in_a_private_namespace() {
    use nix::libc;

    let heard = std::thread::spawn(|| {
        // SAFETY: `unshare(CLONE_NEWNET)` moves only this thread into a fresh network
        // namespace; no memory is involved, and the thread never returns to the host's.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) needs root: {}",
            std::io::Error::last_os_error()
        );
        for args in [
            "link add rvt0 type veth peer name rvt1",
            "link add rvt2 type veth peer name rvt3",
            "link set rvt0 up",
            "link set rvt1 up",
            "link set rvt2 up",
            "link set rvt3 up",
        ] {
            crate::support::run(std::process::Command::new("ip").args(args.split(' ')));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let names: Vec<String> = ["rvt0", "rvt2", "rvt-missing"].map(String::from).to_vec();
            let capture =
                tokio::spawn(
                    async move { rivet_agent::inventory::lldp::capture(&names, Duration::from_secs(3)).await },
                );
            let sender = sender_on("rvt1");
            while !capture.is_finished() {
                // Carrier may take a moment; send until the capture is done.
                let _ = nix::sys::socket::send(
                    std::os::fd::AsRawFd::as_raw_fd(&sender),
                    &lldp_frame(),
                    nix::sys::socket::MsgFlags::empty(),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            capture.await.expect("capture ran")
        })
    })
    .join()
    .expect("namespace thread");
    let want: Vec<(u32, String)> = vec![
        (1, "04525400abcdef".into()),
        (2, "0573776f7264".into()),
        (3, "0078".into()),
        (5, "6c6561662d3031".into()),
        (0, String::new()),
    ];
    assert_eq!(
        heard,
        std::collections::BTreeMap::from([("rvt0".to_owned(), want), ("rvt2".to_owned(), Vec::new())])
    );
}

/// An LLDP frame: chassis id (subtype 4, MAC), port id (subtype 5, interface name `sword`),
/// TTL 120, system name, End, padded to the Ethernet minimum.
fn lldp_frame() -> Vec<u8> {
    let tlv = |t: u16, v: &[u8]| [((t << 9) | v.len() as u16).to_be_bytes().to_vec(), v.to_vec()].concat();
    let mut frame = vec![
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x88, 0xcc,
    ];
    frame.extend(tlv(1, &[4, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]));
    frame.extend(tlv(2, b"\x05sword"));
    frame.extend(tlv(3, &[0, 120]));
    frame.extend(tlv(5, b"leaf-01"));
    frame.extend(tlv(0, &[]));
    frame.resize(60, 0);
    frame
}

/// A packet socket that sends whole frames out of `interface` (in the current namespace).
fn sender_on(interface: &str) -> std::os::fd::OwnedFd {
    use nix::libc;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};

    let index = nix::net::if_::if_nametoindex(interface).expect("interface exists");
    let fd = nix::sys::socket::socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)
        .expect("packet socket");
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `fd` is an open socket we own; `addr` is an initialised `sockaddr_ll` that lives
    // across the call, and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&raw const addr).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    fd
}
