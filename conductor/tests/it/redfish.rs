//! The `redfish` hardware type against a real Redfish BMC emulator: sushy-tools' fake driver
//! (PyPI). `.ci/setup` installs it into `.venv/` and points `RIVET_SUSHY_EMULATOR` at it; the
//! lab (`lab/rivet-lab --redfish`) takes a QEMU VM behind it through deployment.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestConductor, call, client, wait_for};

const SYSTEM: &str = "/redfish/v1/Systems/27946b59-9e44-4fa7-8e91-f3527a1ef094";
const MAC: &str = "52:54:00:ab:cd:01";

fn sushy_emulator() -> PathBuf {
    if let Ok(path) = std::env::var("RIVET_SUSHY_EMULATOR") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/sushy-emulator");
    assert!(
        venv.exists(),
        "sushy-emulator is needed: run `bash .ci/test` (it installs sushy-tools into .venv/) or set RIVET_SUSHY_EMULATOR"
    );
    venv
}

/// A running sushy-emulator with one fake system; stopped on drop.
struct Bmc {
    url: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Bmc {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.path().join("sushy.conf");
        std::fs::write(
            &config,
            format!(
                "SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = '{state}'\n\
                 SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{uuid}', 'name': 'node0', 'power_state': 'Off', \
                 'external_notifier': False, 'nics': [{{'mac': '{MAC}'}}]}}]\n",
                state = dir.path().display(),
                uuid = SYSTEM.rsplit('/').next().expect("uuid"),
            ),
        )
        .expect("config");
        let child = tokio::process::Command::new(sushy_emulator())
            .args(["--config"])
            .arg(&config)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .env("TMPDIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("sushy-emulator starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while client().get(format!("{url}/redfish/v1/")).send().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "sushy-emulator did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Bmc {
            url,
            _child: child,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }
}

async fn conductor(http_root: &std::path::Path, tftp_root: Option<&std::path::Path>) -> TestConductor {
    let (http_root, tftp_root) = (http_root.to_owned(), tftp_root.map(ToOwned::to_owned));
    TestConductor::start_with(move |c| {
        c.enabled_hardware_types = vec!["redfish".into()];
        c.http_root = Some(http_root);
        c.tftp_root = tftp_root;
        c.check_provision_state_interval = Duration::from_millis(200);
    })
    .await
}

async fn enroll(c: &TestConductor, bmc: &Bmc) -> String {
    let (status, node) = call(
        Method::POST,
        c.url("/v1/nodes"),
        Some(json!({
            "name": "node0", "driver": "redfish",
            "driver_info": {"redfish_address": bmc.url, "deploy_kernel": "kernel", "deploy_ramdisk": "ramdisk",
                            "kernel_append_params": "console=ttyS0"},
        })),
    )
    .await;
    assert_eq!(status, 201, "{node}");
    assert_eq!(node["power_interface"], "redfish");
    assert_eq!(node["management_interface"], "redfish");
    assert_eq!(node["boot_interface"], "redfish-virtual-media");
    let uuid = node["uuid"].as_str().expect("uuid").to_owned();
    let (status, port) = call(
        Method::POST,
        c.url("/v1/ports"),
        Some(json!({"address": MAC, "node_uuid": uuid})),
    )
    .await;
    assert_eq!(status, 201, "{port}");
    uuid
}

/// A provision or power verb the API accepts (202).
async fn put_state(c: &TestConductor, node: &str, kind: &str, target: &str) {
    let (status, body) = call(
        Method::PUT,
        c.url(&format!("/v1/nodes/{node}/states/{kind}")),
        Some(json!({"target": target})),
    )
    .await;
    assert_eq!(status, 202, "{kind} {target}: {body}");
}

/// manage, then provide: automated cleaning boots the ramdisk and waits for its agent.
async fn start_cleaning(c: &TestConductor, node: &str) {
    put_state(c, node, "provision", "manage").await;
    wait_for(c, node, "provision_state", "manageable").await;
    put_state(c, node, "provision", "provide").await;
    wait_for(c, node, "provision_state", "clean wait").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn power_goes_through_the_redfish_bmc() {
    let bmc = Bmc::start().await;
    let root = tempfile::tempdir().expect("tempdir");
    let c = conductor(root.path(), None).await;
    let node = enroll(&c, &bmc).await;

    let (_, validate) = call(Method::GET, c.url(&format!("/v1/nodes/{node}/validate")), None).await;
    assert_eq!(validate["power"]["result"], true, "{validate}");
    assert_eq!(validate["boot"]["result"], true, "{validate}");

    // The emulator applies power changes a few seconds later, as real BMCs do; the conductor
    // records the state the system reaches.
    put_state(&c, &node, "power", "power on").await;
    wait_for(&c, &node, "power_state", "power on").await;
    assert_eq!(bmc.get(SYSTEM).await["PowerState"], "On");

    put_state(&c, &node, "power", "power off").await;
    wait_for(&c, &node, "power_state", "power off").await;
    assert_eq!(bmc.get(SYSTEM).await["PowerState"], "Off");

    // A BMC that is not there is a clear error, not a hang.
    let (status, body) = call(
        Method::PATCH,
        c.url(&format!("/v1/nodes/{node}")),
        Some(json!([{"op": "replace", "path": "/driver_info/redfish_address", "value": "http://127.0.0.1:9"}])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    put_state(&c, &node, "power", "power on").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let doc = loop {
        let (_, doc) = call(Method::GET, c.url(&format!("/v1/nodes/{node}")), None).await;
        if doc["target_power_state"].is_null() {
            break doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the power action never ended: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = doc["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("the BMC is unreachable"), "{doc}");
    assert_eq!(doc["power_state"], "power off", "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cleaning_boots_the_ramdisk_from_a_virtual_cd_with_the_kernel_parameters() {
    let bmc = Bmc::start().await;
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("kernel"), b"not really a kernel").expect("kernel");
    std::fs::write(root.path().join("ramdisk"), b"not really a ramdisk").expect("ramdisk");
    let c = conductor(root.path(), None).await;
    let node = enroll(&c, &bmc).await;

    // The conductor built the ISO, had the BMC insert it, chose the CD and powered on; now it
    // waits for the agent.
    start_cleaning(&c, &node).await;
    let iso_name = format!("boot-{node}.iso");
    let cd = bmc.get(&format!("{SYSTEM}/VirtualMedia/Cd")).await;
    assert_eq!(cd["Inserted"], true, "{cd}");
    assert_eq!(cd["Image"], c.url(&format!("/httpboot/{iso_name}")), "{cd}");
    let system = bmc.get(SYSTEM).await;
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Cd", "{system}");
    assert_eq!(system["PowerState"], "On", "{system}");

    let iso = client()
        .get(c.url(&format!("/httpboot/{iso_name}")))
        .send()
        .await
        .expect("ISO")
        .bytes()
        .await
        .expect("ISO bytes");
    assert_eq!(&iso[0x8001..0x8006], b"CD001", "an ISO 9660 image");
    let text = String::from_utf8_lossy(&iso);
    let want = format!(
        "append initrd=/initrd boot_method=vmedia ipa-api-url={} BOOTIF=01-52-54-00-ab-cd-01 console=ttyS0",
        c.running.url()
    );
    assert!(
        text.contains(&want),
        "isolinux.cfg holds the kernel command line {want:?}"
    );
    assert!(text.contains("not really a ramdisk"), "the ramdisk is on the CD");

    // Aborting powers off, ejects the CD and removes the ISO.
    put_state(&c, &node, "provision", "abort").await;
    wait_for(&c, &node, "provision_state", "clean failed").await;
    let cd = bmc.get(&format!("{SYSTEM}/VirtualMedia/Cd")).await;
    assert_eq!(cd["Inserted"], false, "{cd}");
    assert!(!root.path().join(&iso_name).exists(), "the ISO is removed");
    assert_eq!(bmc.get(SYSTEM).await["PowerState"], "Off");
}

#[tokio::test(flavor = "multi_thread")]
async fn pxe_boot_writes_the_tftp_root_and_removes_it_on_abort() {
    let bmc = Bmc::start().await;
    let root = tempfile::tempdir().expect("tempdir");
    let tftp = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("kernel"), b"kernel").expect("kernel");
    std::fs::write(root.path().join("ramdisk"), b"ramdisk").expect("ramdisk");
    let c = conductor(root.path(), Some(tftp.path())).await;
    let node = enroll(&c, &bmc).await;
    let (status, body) = call(
        Method::PATCH,
        c.url(&format!("/v1/nodes/{node}")),
        Some(json!([{"op": "replace", "path": "/boot_interface", "value": "pxe"}])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    start_cleaning(&c, &node).await;
    let by_mac = tftp.path().join("pxelinux.cfg/01-52-54-00-ab-cd-01");
    let config = std::fs::read_to_string(&by_mac).expect("the port's MAC names the node's config");
    assert_eq!(
        config,
        format!(
            "default deploy\nprompt 0\nlabel deploy\n  kernel {node}/deploy_kernel\n  append initrd={node}/deploy_ramdisk \
             ipa-api-url={} console=ttyS0\n  ipappend 2\n",
            c.running.url()
        )
    );
    assert_eq!(
        std::fs::read(tftp.path().join(&node).join("deploy_ramdisk")).expect("ramdisk"),
        b"ramdisk"
    );
    assert_eq!(bmc.get(SYSTEM).await["Boot"]["BootSourceOverrideTarget"], "Pxe");

    put_state(&c, &node, "provision", "abort").await;
    wait_for(&c, &node, "provision_state", "clean failed").await;
    assert!(
        !by_mac.exists() && !tftp.path().join(&node).exists(),
        "the node's TFTP files are removed"
    );
}

/// `/v1/nodes/{node}/vmedia` through `redfish` management: an image the BMC fetches itself
/// (`http`) on the CD, one the conductor downloads and serves (`local`, the default) on the
/// USB stick drive, the drives listed, and each detached by type, then all.
#[tokio::test(flavor = "multi_thread")]
async fn virtual_media_attaches_lists_and_detaches_through_the_bmc() {
    let bmc = Bmc::start().await;
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("tools.iso"), b"an operator's tools image").expect("iso");
    std::fs::write(root.path().join("config.img"), b"a configuration stick").expect("img");
    let c = conductor(root.path(), None).await;
    let node = enroll(&c, &bmc).await;
    let vmedia = c.url(&format!("/v1/nodes/{node}/vmedia"));

    let iso_url = c.url("/httpboot/tools.iso");
    let attach = |device_type: &str, url: &str, source: Option<&str>| {
        let mut body = json!({"device_type": device_type, "image_url": url});
        if let Some(source) = source {
            body["image_download_source"] = json!(source);
        }
        call(Method::POST, vmedia.clone(), Some(body))
    };
    let (status, body) = attach("cdrom", &iso_url, Some("http")).await;
    assert_eq!(status, 204, "{body}");
    let cd = bmc.get(&format!("{SYSTEM}/VirtualMedia/Cd")).await;
    assert_eq!(
        (cd["Inserted"].clone(), cd["Image"].clone()),
        (json!(true), json!(iso_url)),
        "{cd}"
    );

    let (status, body) = attach("disk", &c.url("/httpboot/config.img"), None).await;
    assert_eq!(status, 204, "{body}");
    let published = root.path().join(format!("vmedia-{node}-disk.img"));
    assert_eq!(
        std::fs::read(&published).expect("the conductor serves its copy"),
        b"a configuration stick"
    );
    let stick = bmc.get(&format!("{SYSTEM}/VirtualMedia/Floppy")).await;
    assert_eq!(stick["Inserted"], true, "{stick}");
    assert!(
        stick["Image"]
            .as_str()
            .is_some_and(|i| i.ends_with(&format!("vmedia-{node}-disk.img"))),
        "{stick}"
    );

    let (status, drives) = call(Method::GET, vmedia.clone(), None).await;
    assert_eq!(status, 200, "{drives}");
    let inserted: Vec<&Value> = drives
        .as_array()
        .expect("a list")
        .iter()
        .filter(|d| d["inserted"] == true)
        .collect();
    assert_eq!(inserted.len(), 2, "{drives}");
    assert!(
        drives
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["image"] == json!(iso_url))
    );

    let (status, body) = call(Method::DELETE, format!("{vmedia}?device_types=cdrom"), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(bmc.get(&format!("{SYSTEM}/VirtualMedia/Cd")).await["Inserted"], false);
    assert_eq!(
        bmc.get(&format!("{SYSTEM}/VirtualMedia/Floppy")).await["Inserted"],
        true
    );
    let (status, body) = call(Method::DELETE, vmedia.clone(), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        bmc.get(&format!("{SYSTEM}/VirtualMedia/Floppy")).await["Inserted"],
        false
    );
    assert!(!published.exists(), "the served copy is removed on detach");

    // Bad requests are refused before anything reaches the BMC.
    let (status, body) = attach("tape", &iso_url, None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = attach("cdrom", "ftp://127.0.0.1/x.iso", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(crate::support::fault(&body).contains("Unsupported or missing URL scheme: ftp"));
    let (status, body) = call(Method::DELETE, format!("{vmedia}?device_types=tape"), None).await;
    assert_eq!(status, 400, "{body}");
    let (_, shown) = call(Method::GET, c.url(&format!("/v1/nodes/{node}")), None).await;
    assert_eq!(shown["last_error"], Value::Null, "{shown}");
}
