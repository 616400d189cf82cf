//! Image writing on real block devices: a test image server on loopback (plain HTTP/1.1 over a
//! TCP listener, so it can also cut a response in the middle), a loop device over a file holding
//! "old" contents, and the agent reached through its device allowlist.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{LoopDevice, TOKEN, base_settings, command, resolve, run};

const IMAGE_LEN: usize = 6 << 20;
const DISK_LEN: u64 = 16 << 20;
const OLD: u8 = 0x55;

/// A raw "disk image": pseudo-random bytes with an MBR disk signature 0x12345678.
fn image() -> Vec<u8> {
    let mut data = Vec::with_capacity(IMAGE_LEN);
    let mut x: u32 = 0x1234_5678;
    while data.len() < IMAGE_LEN {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    data[510] = 0x55;
    data[511] = 0xaa;
    data
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

struct ImageServer {
    url: String,
    hits: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    mut sock: tokio::net::TcpStream,
    image: Arc<Vec<u8>>,
    files: Arc<HashMap<String, Vec<u8>>>,
    flaky_failed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    }
    let request = String::from_utf8_lossy(&buf[..len]).to_string();
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let range = request
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(|r| r.trim().trim_end_matches('-').to_owned())
        })
        .and_then(|r| r.parse::<usize>().ok());
    let send = |status: &str, extra: String, body: Vec<u8>, declared: usize| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n{extra}\r\n"
        );
        (head, body)
    };
    let (head, body) = match (path.as_str(), range) {
        (p, _) if files.contains_key(p) => {
            let body = files[p].clone();
            let n = body.len();
            send("200 OK", String::new(), body, n)
        }
        ("/disk.raw" | "/bad.raw", _) => send("200 OK", String::new(), image.to_vec(), image.len()),
        ("/disk.raw.sha256", _) => {
            let text = format!("{}  disk.raw\n", sha256(&image)).into_bytes();
            let n = text.len();
            send("200 OK", String::new(), text, n)
        }
        ("/flaky.raw", _) if !flaky_failed.swap(true, Ordering::SeqCst) => {
            send("503 Service Unavailable", String::new(), Vec::new(), 0)
        }
        ("/flaky.raw", _) => send("200 OK", String::new(), image.to_vec(), image.len()),
        ("/qcow.raw", _) => {
            let body = b"QFI\xfb\x00\x00\x00\x03 pretending to be raw".to_vec();
            let n = body.len();
            send("200 OK", String::new(), body, n)
        }
        ("/truncated.raw", Some(from)) => {
            let rest = image[from..].to_vec();
            let n = rest.len();
            send(
                "206 Partial Content",
                format!("Content-Range: bytes {from}-{}/{}\r\n", image.len() - 1, image.len()),
                rest,
                n,
            )
        }
        // Always cut short, and no resuming: every attempt fails.
        ("/short.raw", _) => send("200 OK", String::new(), image[..IMAGE_LEN / 2].to_vec(), image.len()),
        // Promise the whole image, send half, then close the connection.
        ("/truncated.raw", None) => send("200 OK", String::new(), image[..IMAGE_LEN / 2].to_vec(), image.len()),
        _ => send("404 Not Found", String::new(), Vec::new(), 0),
    };
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(&body).await;
    let _ = sock.shutdown().await;
}

async fn image_server(image: Arc<Vec<u8>>) -> ImageServer {
    image_server_with(image, HashMap::new()).await
}

/// The image server, also serving `files` by path.
async fn image_server_with(image: Arc<Vec<u8>>, files: HashMap<String, Vec<u8>>) -> ImageServer {
    let files = Arc::new(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&hits);
    let flaky_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(respond(
                sock,
                Arc::clone(&image),
                Arc::clone(&files),
                Arc::clone(&flaky_failed),
            ));
        }
    });
    ImageServer { url, hits, task }
}

async fn agent_for(device: &LoopDevice) -> rivet_agent::RunningAgent {
    agent_spooling_to(device, None).await
}

async fn agent_spooling_to(device: &LoopDevice, spool: Option<&Path>) -> rivet_agent::RunningAgent {
    let mut settings = base_settings();
    settings.standalone = Some(true);
    settings.agent_token = Some(TOKEN.into());
    settings.disk_allow = Some(device.path.parse().expect("pattern"));
    settings.hardware_managers_dir = Some("/nonexistent".into());
    settings.image_download_connection_timeout = Some("2".parse().expect("seconds"));
    settings.image_download_connection_retries = Some(3);
    settings.image_download_connection_retry_interval = Some("0.05".parse().expect("seconds"));
    settings.image_spool_dir = spool.map(Path::to_path_buf);
    rivet_agent::start(resolve(settings)).await.expect("agent starts")
}

/// Run the `write_image` deploy step for `url`, as a conductor does.
async fn write_image(agent: &rivet_agent::RunningAgent, device: &LoopDevice, url: &str, checksum: &str) -> Value {
    write_image_as(agent, device, url, checksum, "raw").await
}

/// `write_image` with `disk_format` set to `format`.
async fn write_image_as(
    agent: &rivet_agent::RunningAgent,
    device: &LoopDevice,
    url: &str,
    checksum: &str,
    format: &str,
) -> Value {
    let info = json!({"id": url.rsplit('/').next(), "urls": [url], "disk_format": format, "container_format": null,
        "stream_raw_images": true, "os_hash_algo": "sha256", "os_hash_value": checksum, "node_uuid": "n"});
    let params = json!({"step": {"interface": "deploy", "step": "write_image", "args": {"image_info": info, "configdrive": null}},
        "node": {"uuid": "n", "properties": {"root_device": {"name": device.path}}, "instance_info": {}},
        "ports": []});
    command(agent, "deploy.execute_deploy_step", params).await
}

fn disk(device: &LoopDevice) -> Vec<u8> {
    let mut data = Vec::new();
    std::fs::File::open(&device.path)
        .expect("open")
        .read_to_end(&mut data)
        .expect("read");
    data
}

fn assert_written(device: &LoopDevice, image: &[u8]) {
    let data = disk(device);
    assert_eq!(data.len() as u64, DISK_LEN);
    assert!(data[..image.len()] == *image, "the image is on the disk byte for byte");
    assert!(
        data[image.len()..].iter().all(|b| *b == OLD),
        "nothing beyond the image was touched"
    );
}

fn assert_unbootable(device: &LoopDevice) {
    let data = disk(device);
    assert!(
        data[..1 << 20].iter().all(|b| *b == 0),
        "the first MiB is zeroed so the disk cannot boot"
    );
}

#[tokio::test]
async fn a_raw_image_is_streamed_to_disk_byte_for_byte() {
    let image = Arc::new(image());
    let server = image_server(Arc::clone(&image)).await;
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_for(&device).await;
    let r = write_image(&agent, &device, &format!("{}/disk.raw", server.url), &sha256(&image)).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(
        r["command_result"]["deploy_result"],
        json!({"result": format!("prepare_image: image (disk.raw) written to device {} root_uuid=0x12345678", device.path)})
    );
    assert_written(&device, &image);
    let uuids = command(&agent, "standby.get_partition_uuids", json!({})).await;
    assert_eq!(
        uuids["command_result"],
        json!({"root uuid": "0x12345678"}),
        "the shape upstream reports for whole-disk images"
    );
    agent.shutdown();
}

/// The agent's `/metrics` over HTTP: promtool accepts it, and the value of `series`.
async fn metric(agent: &rivet_agent::RunningAgent, series: &str) -> f64 {
    let response = crate::support::http()
        .get(format!("{}/metrics", crate::support::base(agent)))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    let promtool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/promtool");
    assert!(
        promtool.exists(),
        "{} is missing: run bash deps/install",
        promtool.display()
    );
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(out.status.success(), "promtool: {out:?}\n{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

#[tokio::test]
async fn the_metrics_count_the_image_bytes_written() {
    let image = Arc::new(image());
    let server = image_server(Arc::clone(&image)).await;
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_for(&device).await;
    // Other tests in this process write images too: the counter only grows.
    let before = metric(&agent, "rivet_agent_image_bytes_written_total").await;
    let r = write_image(&agent, &device, &format!("{}/disk.raw", server.url), &sha256(&image)).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let after = metric(&agent, "rivet_agent_image_bytes_written_total").await;
    assert!(after - before >= IMAGE_LEN as f64, "{before} then {after}");
    agent.shutdown();
}

#[tokio::test]
async fn checksum_files_503_and_interrupted_downloads_recover() {
    let image = Arc::new(image());
    let server = image_server(Arc::clone(&image)).await;
    // A checksum file URL (legacy `checksum`), through standby.prepare_image.
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_for(&device).await;
    let node_info = json!({"node": {"uuid": "n", "properties": {"root_device": {"name": device.path}}}, "config": {"heartbeat_timeout": 300}});
    command(&agent, "poll.set_node_info", json!({"node_info": node_info})).await;
    let info = json!({"id": "disk.raw", "urls": [format!("{}/disk.raw", server.url)], "disk_format": "raw", "checksum": format!("{}/disk.raw.sha256", server.url)});
    let r = command(&agent, "standby.prepare_image", json!({"image_info": info})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert!(
        r["command_result"]["result"]
            .as_str()
            .expect("result")
            .starts_with("prepare_image: image (disk.raw) written"),
        "{r}"
    );
    assert_written(&device, &image);
    agent.shutdown();
    // 503 once, then the image.
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_for(&device).await;
    let before = server.hits.load(Ordering::SeqCst);
    let r = write_image(&agent, &device, &format!("{}/flaky.raw", server.url), &sha256(&image)).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(server.hits.load(Ordering::SeqCst) - before, 2, "retried after the 503");
    assert_written(&device, &image);
    agent.shutdown();
    // Cut in the middle, resumed with a Range request.
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_for(&device).await;
    let r = write_image(
        &agent,
        &device,
        &format!("{}/truncated.raw", server.url),
        &sha256(&image),
    )
    .await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_written(&device, &image);
    agent.shutdown();
}

#[tokio::test]
async fn failures_leave_the_disk_unbootable_with_a_clear_error() {
    let image = Arc::new(image());
    let server = image_server(Arc::clone(&image)).await;
    let cases = [
        ("bad.raw", "0".repeat(64), "ImageChecksumError", "expected 0000"),
        (
            "missing.raw",
            sha256(&image),
            "ImageDownloadError",
            "HTTP 404 Not Found; not retried",
        ),
        ("qcow.raw", sha256(&image), "InvalidImage", "qcow2"),
        (
            "short.raw",
            sha256(&image),
            "ImageDownloadError",
            "giving up after 4 attempts",
        ),
    ];
    for (name, checksum, kind, text) in cases {
        let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
        let agent = agent_for(&device).await;
        let r = write_image(&agent, &device, &format!("{}/{name}", server.url), &checksum).await;
        assert_eq!(r["command_status"], "FAILED", "{name}: {r}");
        assert_eq!(r["command_error"]["type"], kind, "{name}: {r}");
        let details = r["command_error"]["details"].as_str().expect("details");
        assert!(
            details.contains(text) && details.contains("left unbootable"),
            "{name}: {details}"
        );
        assert_unbootable(&device);
        agent.shutdown();
    }
    // A disk smaller than the image: the write fails in the middle.
    let device = LoopDevice::with_content(4 << 20, Some(OLD), false);
    let agent = agent_for(&device).await;
    let r = write_image(&agent, &device, &format!("{}/disk.raw", server.url), &sha256(&image)).await;
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(r["command_error"]["type"], "ImageWriteError", "{r}");
    assert!(
        r["command_error"]["details"]
            .as_str()
            .expect("details")
            .contains("left unbootable"),
        "{r}"
    );
    assert_unbootable(&device);
    agent.shutdown();
}

#[tokio::test]
async fn progress_is_reported_from_first_byte_to_verification() {
    let image = Arc::new(image());
    let server = image_server(Arc::clone(&image)).await;
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let (progress, seen) = rivet_agent::progress::Progress::recording();
    let config = resolve(base_settings());
    let info = json!({"id": "disk.raw", "urls": [format!("{}/disk.raw", server.url)], "disk_format": "raw",
        "os_hash_algo": "sha256", "os_hash_value": sha256(&image)});
    let node = json!({"uuid": "n", "properties": {"root_device": {"name": device.path}}});
    let job = rivet_agent::image::ImageJob {
        info: serde_json::from_value(info).expect("image_info"),
        node: Some(serde_json::from_value(node).expect("node")),
        root_device: None,
        devices: rivet_agent::disk::devices::DeviceView::new(Some(vec![device.path.parse().expect("pattern")]), false),
        progress,
        http: rivet_agent::image::image_client(
            &config.client_tls,
            config.tls_min_version,
            config.image_download.stall_timeout,
        )
        .expect("client"),
        policy: config.image_download,
        md5_allowed: false,
        spool_dir: None,
        configdrive: None,
    };
    rivet_agent::image::prepare_image(job).await.expect("written");
    assert_written(&device, &image);
    let reports = seen.lock().expect("lock").clone();
    let seen: Vec<String> = reports.iter().map(|r| r.message.clone()).collect();
    let first = seen.first().expect("a progress report");
    assert!(
        first.starts_with(&format!("writing image disk.raw to {}: ", device.path)) && first.contains(" of 6 MiB ("),
        "{seen:?}"
    );
    // The numbers behind the text: bytes of the whole image, which the server announced.
    let measure = reports[0].measure.expect("the write is measured");
    assert_eq!(measure.unit, rivet_agent::progress::Unit::Bytes);
    assert_eq!(measure.total, Some(image.len() as u64));
    assert!(measure.done > 0 && measure.done <= image.len() as u64, "{measure:?}");
    assert!(measure.rate.is_some_and(|r| r > 0.0), "{measure:?}");
    assert_eq!(
        seen.last().expect("a final report"),
        &format!(
            "image disk.raw downloaded and verified (6 MiB, sha256); writing the first MiB of {}",
            device.path
        )
    );
}

/// A 12 MiB raw disk with a 2 MiB hole of zeros (so qcow2 leaves it unallocated) and a
/// partially zero cluster run, as qemu-img sees real disks.
fn sparse_image() -> Vec<u8> {
    let mut data = image();
    data.extend_from_slice(&image());
    data[(7 << 20)..(9 << 20)].iter_mut().for_each(|b| *b = 0);
    data[(10 << 20)..(10 << 20) + 3000].iter_mut().for_each(|b| *b = 0);
    data
}

/// Run `qemu-img` (qemu-utils) with `args` in `dir`.
fn qemu_img(dir: &Path, args: &[&str]) {
    run(std::process::Command::new("qemu-img").current_dir(dir).args(args));
}

/// Assert the disk holds `raw` then zeros up to `virtual_len`, and its old content after that.
fn assert_converted(device: &LoopDevice, raw: &[u8], virtual_len: usize) {
    let data = disk(device);
    assert!(data[..raw.len()] == *raw, "the image is on the disk byte for byte");
    assert!(
        data[raw.len()..virtual_len].iter().all(|b| *b == 0),
        "the grown tail reads as zeros"
    );
    assert!(
        data[virtual_len..].iter().all(|b| *b == OLD),
        "nothing beyond the image was touched"
    );
}

#[tokio::test]
async fn qcow2_images_are_converted_while_streaming() {
    let raw = sparse_image();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("disk.raw"), &raw).expect("raw");
    let variants: [(&str, &[&str]); 3] = [
        ("plain.qcow2", &[]),
        ("compressed.qcow2", &["-c"]),
        ("small-clusters.qcow2", &["-o", "cluster_size=4096,compat=0.10"]),
    ];
    let mut files = HashMap::new();
    for (name, extra) in variants {
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["disk.raw", name]);
        qemu_img(dir.path(), &args);
        files.insert(format!("/{name}"), std::fs::read(dir.path().join(name)).expect("qcow2"));
    }
    let server = image_server_with(Arc::new(image()), files.clone()).await;
    for (name, _) in variants {
        let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
        let agent = agent_for(&device).await;
        let url = format!("{}/{name}", server.url);
        let r = write_image_as(&agent, &device, &url, &sha256(&files[&format!("/{name}")]), "qcow2").await;
        assert_eq!(r["command_status"], "SUCCEEDED", "{name}: {r}");
        assert_converted(&device, &raw, raw.len());
        agent.shutdown();
    }
    // Declared qcow2 but raw: refused.
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_for(&device).await;
    let r = write_image_as(
        &agent,
        &device,
        &format!("{}/disk.raw", server.url),
        &sha256(&image()),
        "qcow2",
    )
    .await;
    assert_eq!(r["command_error"]["type"], "InvalidImage", "{r}");
    let details = r["command_error"]["details"].as_str().expect("details");
    assert!(details.contains("is raw but was declared qcow2"), "{details}");
    agent.shutdown();
}

#[tokio::test]
async fn qcow2_tables_after_their_data_are_spooled_to_disk_never_ram() {
    // Growing a qcow2 moves its L1 table to the end of the file: no cluster can be placed until
    // the last bytes arrive, so 12 MiB must wait somewhere.
    let raw = sparse_image();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("disk.raw"), &raw).expect("raw");
    qemu_img(
        dir.path(),
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4096",
            "disk.raw",
            "grown.qcow2",
        ],
    );
    qemu_img(dir.path(), &["resize", "-f", "qcow2", "grown.qcow2", "14M"]);
    let grown = std::fs::read(dir.path().join("grown.qcow2")).expect("qcow2");
    let checksum = sha256(&grown);
    let server = image_server_with(Arc::new(image()), HashMap::from([("/grown.qcow2".to_owned(), grown)])).await;
    let url = format!("{}/grown.qcow2", server.url);

    // Without a spool directory: a clear error naming the setting.
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_for(&device).await;
    let r = write_image_as(&agent, &device, &url, &checksum, "qcow2").await;
    assert_eq!(r["command_status"], "FAILED", "{r}");
    let details = r["command_error"]["details"].as_str().expect("details");
    assert!(
        details.contains("before the table that maps them")
            && details.contains("image_spool_dir")
            && details.contains("left unbootable"),
        "{details}"
    );
    assert_unbootable(&device);
    agent.shutdown();

    // With one on disk (the test's target directory, not a tmpfs): written byte for byte.
    let spool = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("spool dir");
    let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
    let agent = agent_spooling_to(&device, Some(spool.path())).await;
    let r = write_image_as(&agent, &device, &url, &checksum, "qcow2").await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_converted(&device, &raw, 14 << 20);
    assert_eq!(
        std::fs::read_dir(spool.path()).expect("spool").count(),
        0,
        "the spool file is gone"
    );
    agent.shutdown();
}

#[tokio::test]
async fn unsafe_or_oversized_qcow2_images_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    qemu_img(dir.path(), &["create", "-f", "qcow2", "base.qcow2", "4M"]);
    qemu_img(
        dir.path(),
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "overlay.qcow2",
        ],
    );
    qemu_img(
        dir.path(),
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "data_file=data.raw",
            "external.qcow2",
            "4M",
        ],
    );
    qemu_img(dir.path(), &["create", "-f", "qcow2", "huge.qcow2", "1G"]);
    let cases = [
        ("overlay.qcow2", "InvalidImage", "backing file"),
        ("external.qcow2", "InvalidImage", "external data file"),
        ("huge.qcow2", "ImageWriteError", "holds only"),
    ];
    let files = cases
        .iter()
        .map(|(name, ..)| (format!("/{name}"), std::fs::read(dir.path().join(name)).expect("qcow2")))
        .collect::<HashMap<_, _>>();
    let server = image_server_with(Arc::new(image()), files.clone()).await;
    for (name, kind, text) in cases {
        let device = LoopDevice::with_content(DISK_LEN, Some(OLD), false);
        let agent = agent_for(&device).await;
        let url = format!("{}/{name}", server.url);
        let r = write_image_as(&agent, &device, &url, &sha256(&files[&format!("/{name}")]), "qcow2").await;
        assert_eq!(r["command_error"]["type"], kind, "{name}: {r}");
        let details = r["command_error"]["details"].as_str().expect("details");
        assert!(details.contains(text), "{name}: {details}");
        let data = disk(&device);
        assert!(
            data[1 << 20..data.len() - (1 << 20)].iter().all(|b| *b == OLD),
            "{name}: nothing but the first and last MiB was touched"
        );
        agent.shutdown();
    }
}

/// Run `program` with `args` (e2fsprogs, dosfstools, util-linux); its output.
fn tool(program: &str, args: &[&str]) -> String {
    run(std::process::Command::new(program).args(args))
}

/// `blkid -p` of a device as KEY=VALUE pairs.
fn blkid(device: &str) -> HashMap<String, String> {
    tool("blkid", &["-p", "-o", "export", device])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `(start, size)` in sectors and type of each partition, from `sfdisk --json`.
fn table(device: &str) -> (String, Vec<(u64, u64, String)>) {
    let json: Value = serde_json::from_str(&tool("sfdisk", &["--json", device])).expect("sfdisk json");
    let t = &json["partitiontable"];
    let parts = t["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().expect("start"),
                p["size"].as_u64().expect("size"),
                p["type"].as_str().expect("type").to_owned(),
            )
        })
        .collect();
    (t["label"].as_str().expect("label").to_owned(), parts)
}

/// A config drive as Ironic sends it: a 1 MiB FAT file system labelled config-2, gzipped, base64.
fn config_drive(dir: &Path) -> String {
    config_drive_of(dir, 1024, None)
}

/// A config drive of `kib` KiB, with `marker` bytes filling its last KiB when given (inside the
/// FAT data area: still a FAT image, and recognisable on the disk afterwards).
fn config_drive_of(dir: &Path, kib: u64, marker: Option<u8>) -> String {
    use base64::Engine;
    use std::io::Write;
    let path = dir.join(format!("cd-{kib}.img"));
    let _ = std::fs::remove_file(&path);
    tool(
        "mkfs.vfat",
        &["-C", path.to_str().expect("utf-8"), &kib.to_string(), "-n", "config-2"],
    );
    let mut data = std::fs::read(&path).expect("config drive");
    if let Some(byte) = marker {
        let len = data.len();
        data[len - 1024..].fill(byte);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).expect("gzip");
    base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))
}

/// A whole-disk GPT image of `mib` MiB with one 4 MiB partition, its table laid out for
/// `sector`-byte sectors.
fn gpt_image(dir: &Path, mib: u64, sector: u32) -> Vec<u8> {
    let path = dir.join(format!("gpt-{mib}-{sector}.img"));
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(mib << 20))
        .expect("image file");
    // sfdisk lays a file out in 512-byte sectors; other sizes through a loop device over it.
    let loop_dev = (sector != 512).then(|| {
        tool(
            "losetup",
            &[
                "--find",
                "--show",
                "--sector-size",
                &sector.to_string(),
                path.to_str().expect("utf-8"),
            ],
        )
        .trim()
        .to_owned()
    });
    let target = loop_dev
        .clone()
        .unwrap_or_else(|| path.to_str().expect("utf-8").to_owned());
    let mut sfdisk = std::process::Command::new("sfdisk")
        .args(["--quiet", &target])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk");
    {
        use std::io::Write;
        let mut stdin = sfdisk.stdin.take().expect("stdin");
        stdin.write_all(b"label: gpt\nsize=4MiB, type=L\n").expect("script");
    }
    let ok = sfdisk.wait().expect("sfdisk").success();
    if let Some(dev) = &loop_dev {
        tool("losetup", &["-d", dev]);
    }
    assert!(ok, "sfdisk made the image's table");
    std::fs::read(&path).expect("image")
}

/// Deploy `image` as a whole-disk image to `device`, with `configdrive` when given.
async fn deploy_whole_disk(device: &LoopDevice, image: Vec<u8>, configdrive: Option<String>) -> Value {
    let server = image_server_with(
        Arc::new(image.clone()),
        HashMap::from([("/whole.img".to_owned(), image.clone())]),
    )
    .await;
    let agent = agent_for(device).await;
    let info = json!({"id": "whole.img", "urls": [format!("{}/whole.img", server.url)], "disk_format": "raw",
        "os_hash_algo": "sha256", "os_hash_value": sha256(&image)});
    let params = json!({"step": {"interface": "deploy", "step": "write_image",
            "args": {"image_info": info, "configdrive": configdrive}},
        "node": {"uuid": "n", "properties": {"root_device": {"name": device.path}}},
        "ports": []});
    let r = command(&agent, "deploy.execute_deploy_step", params).await;
    agent.shutdown();
    r
}

fn sfdisk_verify(device: &str) -> (bool, String) {
    let out = std::process::Command::new("sfdisk")
        .args(["--verify", device])
        .output()
        .expect("sfdisk");
    (
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("not at the end"),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Issue 15: a GPT built for 512-byte sectors written to a 4096-byte-sector disk was reported
/// SUCCEEDED while the kernel saw only the protective MBR (and with a config drive the error
/// blamed the room). It is refused before anything is written, naming both sizes; so is the
/// reverse; an image built for the disk's sector size deploys.
#[tokio::test]
async fn an_image_for_another_sector_size_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (image_sector, disk_sector, configdrive) in [(512, 4096, false), (512, 4096, true), (4096, 512, false)] {
        let device = if disk_sector == 512 {
            LoopDevice::new(64 << 20)
        } else {
            LoopDevice::with_sector_size(64 << 20, disk_sector)
        };
        let cd = configdrive.then(|| config_drive(dir.path()));
        let r = deploy_whole_disk(&device, gpt_image(dir.path(), 16, image_sector), cd).await;
        assert_eq!(r["command_status"], "FAILED", "{r}");
        let details = r["command_error"]["details"].as_str().expect("details");
        assert!(
            details.contains(&format!("laid out for {image_sector}-byte sectors"))
                && details.contains(&format!("{disk_sector}-byte logical sectors"))
                && details.contains("nothing was written"),
            "{image_sector} on {disk_sector}: {details}"
        );
        assert!(!details.contains("no room"), "{details}");
    }
    let device = LoopDevice::with_sector_size(64 << 20, 4096);
    let r = deploy_whole_disk(&device, gpt_image(dir.path(), 16, 4096), Some(config_drive(dir.path()))).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let (label, parts) = table(&device.path);
    assert_eq!((label.as_str(), parts.len()), ("gpt", 2), "{parts:?}");
    let (ok, said) = sfdisk_verify(&device.path);
    assert!(ok, "{said}");
}

/// Issue 15: without a config drive the backup GPT stayed where the image ended.
#[tokio::test]
async fn the_backup_gpt_is_moved_to_the_end_after_every_whole_disk_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = LoopDevice::new(64 << 20);
    let r = deploy_whole_disk(&device, gpt_image(dir.path(), 16, 512), None).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let (ok, said) = sfdisk_verify(&device.path);
    assert!(ok, "the backup GPT is at the end of the device: {said}");
}

/// Issue 15: on disks of 64 MiB or less the config-drive placement wrapped around (sfdisk was
/// asked for sector 18446744073709549568). The drive takes the free tail when 64 MiB do not
/// fit, and a disk with no room says how much there is.
#[tokio::test]
async fn config_drives_on_small_disks_take_the_free_tail_or_say_there_is_no_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    for disk_mib in [64, 32] {
        let device = LoopDevice::new(disk_mib << 20);
        let r = deploy_whole_disk(&device, gpt_image(dir.path(), 16, 512), Some(config_drive(dir.path()))).await;
        assert_eq!(r["command_status"], "SUCCEEDED", "{disk_mib} MiB: {r}");
        let (_, parts) = table(&device.path);
        assert_eq!(parts.len(), 2, "{parts:?}");
        let (start, size, _) = parts[1];
        assert_eq!(start, (16 << 20) / 512, "right after the image, MiB-aligned");
        assert_eq!(start + size, (disk_mib << 20) / 512 - 33, "to the last usable sector");
        let cd = blkid(&format!("{}p2", device.path));
        assert_eq!(cd.get("LABEL").map(String::as_str), Some("config-2"), "{cd:?}");
    }
    // An image that fills the disk: no room, said as such, and no wrapped sector number.
    let device = LoopDevice::new(16 << 20);
    let r = deploy_whole_disk(&device, gpt_image(dir.path(), 16, 512), Some(config_drive(dir.path()))).await;
    assert_eq!(r["command_status"], "FAILED", "{r}");
    let details = r["command_error"]["details"].as_str().expect("details");
    assert!(
        details.contains("no room for a config drive") && details.contains("KiB free"),
        "{details}"
    );
    assert!(!details.contains("18446744073709"), "{details}");
}

/// Issue 15: redeploying without cleaning left the tail of the previous config drive in the
/// reused partition. A partition the agent writes holds only what it wrote.
#[tokio::test]
async fn a_redeployed_config_drive_leaves_nothing_of_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = LoopDevice::with_content(96 << 20, None, true);
    let image = gpt_image(dir.path(), 16, 512);
    let r = deploy_whole_disk(
        &device,
        image.clone(),
        Some(config_drive_of(dir.path(), 4096, Some(0xcd))),
    )
    .await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let (_, parts) = table(&device.path);
    let (start, size, _) = parts[1];
    let old_tail = (start * 512 + (4 << 20) - 1024, 1024usize);
    let read = |offset: u64, len: usize| {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&device.path).expect("open");
        f.seek(SeekFrom::Start(offset)).expect("seek");
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf).expect("read");
        buf
    };
    assert_eq!(
        read(old_tail.0, old_tail.1),
        vec![0xcd; 1024],
        "the first drive is there"
    );
    let r = deploy_whole_disk(&device, image, Some(config_drive(dir.path()))).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let (_, again) = table(&device.path);
    assert_eq!(again[1].0, start, "the same place at the end of the disk");
    let after = read(start * 512 + (1 << 20), ((size * 512) - (1 << 20)) as usize);
    assert!(
        after.iter().all(|b| *b == 0),
        "nothing of the old drive after the new one"
    );
}

const ROOT_UUID: &str = "2f6b1f5a-1f6d-4c9e-9d39-3d0f0c6b5a11";

/// Deploy a partition image (a 12 MiB ext4 root file system) with a config drive and check the
/// layout the agent made, partition by partition.
async fn deploy_partition_image(
    boot_mode: &str,
    disk_len: u64,
) -> (LoopDevice, Value, Value, rivet_agent::RunningAgent) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root.img");
    tool(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "rootfs",
            "-U",
            ROOT_UUID,
            root.to_str().expect("utf-8"),
            "12M",
        ],
    );
    let root_image = std::fs::read(&root).expect("root image");
    let server = image_server_with(
        Arc::new(image()),
        HashMap::from([("/root.img".to_owned(), root_image.clone())]),
    )
    .await;
    let device = LoopDevice::with_content(disk_len, None, false);
    let agent = agent_for(&device).await;
    let info = json!({"id": "root.img", "urls": [format!("{}/root.img", server.url)], "disk_format": "raw",
        "image_type": "partition", "root_mb": 16, "swap_mb": 4, "ephemeral_mb": 8, "ephemeral_format": "ext4",
        "os_hash_algo": "sha256", "os_hash_value": sha256(&root_image)});
    let params = json!({"step": {"interface": "deploy", "step": "write_image",
            "args": {"image_info": info, "configdrive": config_drive(dir.path())}},
        "node": {"uuid": "n", "properties": {"root_device": {"name": device.path},
            "capabilities": format!("boot_mode:{boot_mode},disk_label:gpt")}, "instance_info": {}},
        "ports": []});
    let r = command(&agent, "deploy.execute_deploy_step", params).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let uuids = command(&agent, "standby.get_partition_uuids", json!({})).await;
    let root_part = uuids["command_result"]["partitions"]["root"]
        .as_str()
        .expect("root partition");
    let mut written = vec![0u8; root_image.len()];
    std::fs::File::open(root_part)
        .and_then(|mut f| f.read_exact(&mut written))
        .expect("read root partition");
    assert!(
        written == root_image,
        "the image is in the root partition byte for byte"
    );
    (device, r, uuids["command_result"].clone(), agent)
}

#[tokio::test]
async fn a_partition_image_gets_upstreams_layout_and_its_config_drive() {
    let (device, r, uuids, agent) = deploy_partition_image("bios", 64 << 20).await;
    agent.shutdown();
    let p = |n: u32| format!("{}p{n}", device.path);
    assert_eq!(
        r["command_result"]["deploy_result"]["result"],
        format!(
            "prepare_image: image (root.img) written to device {} root_uuid={ROOT_UUID}",
            device.path
        )
    );
    assert_eq!(
        uuids,
        json!({"partitions": {"BIOS Boot partition": p(1), "ephemeral": p(2), "swap": p(3), "configdrive": p(4), "root": p(5)},
            "root uuid": ROOT_UUID})
    );
    let (label, parts) = table(&device.path);
    assert_eq!(label, "gpt");
    let sizes: Vec<u64> = parts.iter().map(|(_, size, _)| size / 2048).collect();
    assert_eq!(sizes, vec![1, 8, 4, 1, 16], "MiB per partition, upstream's order");
    assert_eq!(parts[0].2, "21686148-6449-6E6F-744E-656564454649", "BIOS boot");
    assert_eq!(parts[2].2, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap");
    let expect = [
        (2, "ext4", "ephemeral0"),
        (3, "swap", "swap1"),
        (4, "vfat", "config-2"),
        (5, "ext4", "rootfs"),
    ];
    for (n, fstype, fslabel) in expect {
        let found = blkid(&p(n));
        assert_eq!(
            found.get("TYPE").map(String::as_str),
            Some(fstype),
            "{}: {found:?}",
            p(n)
        );
        assert_eq!(
            found.get("LABEL").map(String::as_str),
            Some(fslabel),
            "{}: {found:?}",
            p(n)
        );
    }
    assert_eq!(blkid(&p(5)).get("UUID").map(String::as_str), Some(ROOT_UUID));
}

#[tokio::test]
async fn a_uefi_partition_image_gets_an_efi_system_partition() {
    let (device, r, uuids, agent) = deploy_partition_image("uefi", 640 << 20).await;
    // This machine did not boot with UEFI: as upstream, no NVRAM entry is attempted (the
    // firmware is never touched) and GRUB from the image is next — which the test image lacks.
    let params = json!({"root_uuid": ROOT_UUID, "efi_system_part_uuid": uuids["efi system partition uuid"],
        "prep_boot_part_uuid": null, "target_boot_mode": "uefi"});
    let bl = command(&agent, "image.install_bootloader", params).await;
    assert_eq!(bl["command_status"], "FAILED", "{bl}");
    assert!(
        bl["command_error"]["details"]
            .as_str()
            .expect("details")
            .contains("has no grub-install"),
        "{bl}"
    );
    agent.shutdown();
    let esp = blkid(&format!("{}p1", device.path));
    assert_eq!(esp.get("TYPE").map(String::as_str), Some("vfat"), "{esp:?}");
    assert_eq!(esp.get("LABEL").map(String::as_str), Some("efi-part"), "{esp:?}");
    let esp_uuid = esp.get("UUID").expect("ESP UUID");
    assert_eq!(uuids["efi system partition uuid"], json!(esp_uuid));
    let message = r["command_result"]["deploy_result"]["result"].as_str().expect("result");
    assert!(
        message.ends_with(&format!("efi_system_partition_uuid={esp_uuid}")),
        "{message}"
    );
    let (_, parts) = table(&device.path);
    assert_eq!(parts[0].1 / 2048, 550, "upstream's 550 MiB ESP");
    assert_eq!(parts[0].2, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System");
}

#[tokio::test]
async fn a_whole_disk_image_gets_its_config_drive_at_the_end_of_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An 8 MiB GPT disk image with one partition, written to a 96 MiB disk.
    let whole = dir.path().join("whole.img");
    std::fs::File::create(&whole)
        .and_then(|f| f.set_len(8 << 20))
        .expect("image file");
    let mut sfdisk = std::process::Command::new("sfdisk")
        .args(["--quiet", whole.to_str().expect("utf-8")])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk");
    {
        use std::io::Write;
        let mut stdin = sfdisk.stdin.take().expect("stdin");
        stdin.write_all(b"label: gpt\nsize=4MiB, type=L\n").expect("script");
    }
    assert!(sfdisk.wait().expect("sfdisk").success());
    let image = std::fs::read(&whole).expect("image");
    let server = image_server_with(
        Arc::new(image.clone()),
        HashMap::from([("/whole.img".to_owned(), image.clone())]),
    )
    .await;
    let device = LoopDevice::with_content(96 << 20, None, false);
    let agent = agent_for(&device).await;
    let info = json!({"id": "whole.img", "urls": [format!("{}/whole.img", server.url)], "disk_format": "raw",
        "os_hash_algo": "sha256", "os_hash_value": sha256(&image)});
    let params = json!({"step": {"interface": "deploy", "step": "write_image",
            "args": {"image_info": info, "configdrive": config_drive(dir.path())}},
        "node": {"uuid": "n", "properties": {"root_device": {"name": device.path}}},
        "ports": []});
    let r = command(&agent, "deploy.execute_deploy_step", params).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    agent.shutdown();
    let (label, parts) = table(&device.path);
    assert_eq!(label, "gpt");
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (start, size, _) = parts[1];
    assert_eq!(
        size,
        (96 << 20) / 512 - 33 - start,
        "the config drive runs to the disk's last usable sector"
    );
    assert!(size >= (63 << 20) / 512, "about 64 MiB: {size} sectors");
    let cd = blkid(&format!("{}p2", device.path));
    assert_eq!(cd.get("LABEL").map(String::as_str), Some("config-2"), "{cd:?}");
    let verify = std::process::Command::new("sfdisk")
        .args(["--verify", &device.path])
        .output()
        .expect("sfdisk");
    assert!(
        verify.status.success(),
        "the backup GPT was moved to the end: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[tokio::test]
async fn install_bootloader_says_what_is_missing_and_leaves_nothing_mounted() {
    let (device, _, _, agent) = deploy_partition_image("bios", 64 << 20).await;
    let install = |extra: Value| {
        let mut params = json!({"root_uuid": ROOT_UUID, "efi_system_part_uuid": null,
            "prep_boot_part_uuid": null, "target_boot_mode": "bios"});
        params
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        command(&agent, "image.install_bootloader", params)
    };
    // The test's root file system has no GRUB: the image must bring its boot loader.
    let r = install(json!({})).await;
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(r["command_error"]["type"], "CommandExecutionError", "{r}");
    let details = r["command_error"]["details"].as_str().expect("details");
    assert!(details.contains("has no grub-install or grub2-install"), "{details}");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    assert!(
        !mounts.contains(&format!("{}p", device.path)),
        "the root partition was unmounted again: {mounts}"
    );
    // Asked to ignore failures, as Ironic can.
    let r = install(json!({"ignore_bootloader_failure": true})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    // A whole-disk image's root "uuid" is its disk id: it brings its own boot loader.
    let r = install(json!({"root_uuid": "0x12345678"})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    // A root UUID that is not on the disk.
    let r = install(json!({"root_uuid": "00000000-0000-0000-0000-000000000000"})).await;
    let details = r["command_error"]["details"].as_str().expect("details");
    assert!(details.contains("has the root UUID 00000000"), "{details}");
    agent.shutdown();
}

/// Issue 15: a config drive that is not base64 was written verbatim and reported SUCCEEDED. The
/// agent refuses what it cannot decode, and what is not a file-system image, before writing.
#[tokio::test]
async fn a_config_drive_that_cannot_be_one_is_refused_before_writing() {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("{\"meta_data\": {".to_owned(), "it is not base64"),
        ("plain text".to_owned(), "it is not base64"),
        (
            base64::engine::general_purpose::STANDARD.encode(b"hello"),
            "neither an ISO 9660 nor a FAT file system image",
        ),
    ];
    for (value, want) in cases {
        let device = LoopDevice::with_content(32 << 20, Some(OLD), false);
        let r = deploy_whole_disk(&device, gpt_image(dir.path(), 16, 512), Some(value.clone())).await;
        assert_eq!(r["command_status"], "FAILED", "{value}: {r}");
        let details = r["command_error"]["details"].to_string();
        assert!(details.contains(want), "{value}: {details}");
        let mut data = Vec::new();
        std::fs::File::open(&device.path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .expect("read device");
        assert!(data.iter().all(|b| *b == OLD), "{value}: nothing was written");
    }
}
