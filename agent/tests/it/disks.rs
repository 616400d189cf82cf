//! Cleaning on real block devices: loop devices over files made by the test, reached only
//! through the agent's device allowlist. Each erase step is checked by reading the device back.

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::{LoopDevice, TOKEN, base_settings, command, resolve, run};

async fn agent_for(device: &LoopDevice) -> rivet_agent::RunningAgent {
    agent_for_all(&[device]).await
}

async fn clean_step(agent: &rivet_agent::RunningAgent, step: &str, dii: Value) -> Value {
    let params = json!({"step": {"step": step, "priority": 0, "interface": "deploy"},
        "node": {"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {}, "instance_info": {}, "driver_internal_info": dii},
        "ports": []});
    command(agent, "clean.execute_clean_step", params).await
}

/// Write a GPT with one Linux partition over the whole of `path` (a test's loop device).
fn gpt_with_one_partition(path: &str) {
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", path])
        .stdin(Stdio::piped())
        .spawn()
        .expect("sfdisk");
    std::io::Write::write_all(sfdisk.stdin.as_mut().expect("stdin"), b"label: gpt\n,,L\n").expect("write table");
    assert!(sfdisk.wait().expect("sfdisk").success());
}

fn read_at(path: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(path).expect("open device");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf).expect("read");
    buf
}

#[tokio::test]
async fn erase_devices_metadata_removes_tables_and_file_systems() {
    let size = 64u64 << 20;
    let device = LoopDevice::with_content(size, None, true);
    // A GPT with one Linux partition holding an ext4 file system, made by the test.
    gpt_with_one_partition(&device.path);
    // Some kernels in containers do not rescan loop devices: let partx add what is missing.
    run(Command::new("partx").args(["--update", &device.path]));
    // No udevd here, so no /dev/loopNp1: make the file system at the partition's offset.
    let kname = device.path.trim_start_matches("/dev/").to_owned();
    let parts = rivet_agent::blockdev::partitions(&kname);
    assert_eq!(parts.len(), 1, "the kernel sees the new partition");
    let (start, len) = (parts[0].start, parts[0].size);
    run(Command::new("mkfs.ext4").args([
        "-q",
        "-F",
        "-E",
        &format!("offset={start}"),
        &device.path,
        &format!("{}k", len / 1024),
    ]));
    let disk = std::fs::File::open(&device.path).expect("open");
    assert_eq!(
        rivet_agent::disk::devices::probe_range(&disk, start, len)
            .expect("probe")
            .fstype
            .as_deref(),
        Some("ext4")
    );
    drop(disk);
    assert_eq!(
        rivet_agent::disk::devices::probe(std::path::Path::new(&device.path))
            .expect("probe")
            .pttype
            .as_deref(),
        Some("gpt")
    );

    let agent = agent_for(&device).await;
    let r = clean_step(&agent, "erase_devices_metadata", json!({})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    // Read back: both ends zero, no partition table or file system found any more.
    assert!(
        read_at(&device.path, 0, 1 << 20).iter().all(|b| *b == 0),
        "the start of the disk is zeroed"
    );
    assert!(
        read_at(&device.path, size - (1 << 20), 1 << 20).iter().all(|b| *b == 0),
        "the backup GPT is zeroed"
    );
    let after = rivet_agent::disk::devices::probe(std::path::Path::new(&device.path)).expect("probe");
    assert_eq!((after.pttype, after.fstype), (None, None), "no signature left");
    assert!(
        !std::path::Path::new(&format!("/sys/block/{kname}/{kname}p1")).exists(),
        "the kernel forgot the partition"
    );
    let disk = std::fs::File::open(&device.path).expect("open");
    assert_eq!(
        rivet_agent::disk::devices::probe_range(&disk, start, len)
            .expect("probe")
            .fstype,
        None,
        "the file system is gone"
    );
    agent.shutdown();
}

#[tokio::test]
async fn erase_devices_overwrites_every_byte() {
    let size = 24u64 << 20;
    let device = LoopDevice::with_content(size, Some(0xab), false);
    assert_eq!(read_at(&device.path, 12 << 20, 16), vec![0xab; 16]);
    let agent = agent_for(&device).await;
    let dii = json!({"agent_erase_devices_iterations": 1, "agent_erase_devices_zeroize": true, "disk_erasure_concurrency": 2});
    let r = clean_step(&agent, "erase_devices", dii).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(
        r["command_result"]["clean_result"],
        json!({ device.path.clone(): null }),
        "upstream's per-device result"
    );
    let mut file = std::fs::File::open(&device.path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        assert!(
            buf[..n].iter().all(|b| *b == 0),
            "byte {} not erased",
            seen + buf[..n].iter().position(|b| *b != 0).unwrap_or(0) as u64
        );
        seen += n as u64;
    }
    assert_eq!(seen, size);
    agent.shutdown();
}

#[tokio::test]
async fn erase_steps_are_listed_as_ipa_lists_them() {
    let device = LoopDevice::new(8 << 20);
    let agent = agent_for(&device).await;
    let r = command(
        &agent,
        "clean.get_clean_steps",
        json!({"node": {"uuid": "u"}, "ports": []}),
    )
    .await;
    let steps = &r["command_result"]["clean_steps"]["GenericHardwareManager"];
    let prio = |name: &str| {
        steps
            .as_array()
            .expect("list")
            .iter()
            .find(|s| s["step"] == name)
            .map(|s| s["priority"].clone())
    };
    assert_eq!(
        (
            prio("erase_devices_metadata"),
            prio("erase_devices"),
            prio("erase_devices_express")
        ),
        (Some(json!(99)), Some(json!(10)), Some(json!(0)))
    );
    agent.shutdown();
}

/// Issue 15: a read-only device (BMC virtual media, install media; `losetup -r` here) made
/// `erase_devices_metadata` fail. Upstream skips read-only devices in the metadata erase; the
/// full erase fails on one unless `agent_erase_skip_read_only` is set.
#[tokio::test]
async fn read_only_devices_are_skipped_by_the_metadata_erase_and_refused_by_the_full_one() {
    let device = LoopDevice::read_only(8 << 20, Some(0xab));
    let agent = agent_for(&device).await;
    let r = clean_step(&agent, "erase_devices_metadata", json!({})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(read_at(&device.path, 0, 16), vec![0xab; 16], "nothing was written");
    let r = clean_step(&agent, "erase_devices_express", json!({})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    let r = clean_step(&agent, "erase_devices", json!({})).await;
    assert_eq!(r["command_status"], "FAILED", "{r}");
    let error = r["command_error"].to_string();
    assert!(
        error.contains("is read-only and agent_erase_skip_read_only is not set"),
        "{error}"
    );
    let r = clean_step(&agent, "erase_devices", json!({"agent_erase_skip_read_only": true})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(
        read_at(&device.path, 4 << 20, 16),
        vec![0xab; 16],
        "nothing was written"
    );
    agent.shutdown();
}

/// Ironic's virtual-media floppy (label `ir-vfd-dev`) carries the agent's configuration: no
/// erase step touches it (IPA `_is_virtual_media_device`).
#[tokio::test]
async fn the_virtual_media_floppy_is_never_erased() {
    let device = LoopDevice::new(8 << 20);
    run(Command::new("mkfs.vfat").args(["-n", "ir-vfd-dev", &device.path]));
    let before = read_at(&device.path, 0, 4096);
    let agent = agent_for(&device).await;
    for step in ["erase_devices_metadata", "erase_devices"] {
        let r = clean_step(&agent, step, json!({})).await;
        assert_eq!(r["command_status"], "SUCCEEDED", "{step}: {r}");
        assert_eq!(read_at(&device.path, 0, 4096), before, "{step} left the floppy alone");
    }
    agent.shutdown();
}

/// A vendor executable that takes on `erase_block_device` (IPA's per-disk hook): it records the
/// request and answers `answer`.
fn erase_hook_manager(dir: &std::path::Path, answer: &str) {
    let record = dir.join("erase-request.json");
    let script = format!(
        "#!/bin/sh\nrequest=$(cat)\ncase \"$RIVET_MANAGER_METHOD\" in\n  \
         describe) echo '{{\"name\": \"acme_erase\", \"hooks\": [\"erase_block_device\"]}}' ;;\n  \
         evaluate) echo '{{\"support\": 3}}' ;;\n  get_steps) echo '{{\"steps\": []}}' ;;\n  \
         erase_block_device) printf '%s' \"$request\" > {}; echo '{answer}' ;;\nesac\n",
        record.display()
    );
    let path = dir.join("acme-erase");
    std::fs::write(&path, script).expect("write manager");
    std::fs::set_permissions(
        &path,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .expect("chmod");
}

#[tokio::test]
async fn a_vendor_erase_block_device_takes_the_disk_or_passes_it_on() {
    for (answer, vendor_erases) in [
        (r#"{"result": null}"#, true),
        (r#"{"incompatible": "not an Acme drive"}"#, false),
    ] {
        let size = 8u64 << 20;
        let device = LoopDevice::with_content(size, Some(0xab), false);
        let managers = tempfile::tempdir().expect("tempdir");
        erase_hook_manager(managers.path(), answer);
        let mut settings = base_settings();
        settings.standalone = Some(true);
        settings.agent_token = Some(TOKEN.into());
        settings.disk_allow = Some(format!("{0},{0}p*", device.path).parse().expect("pattern"));
        settings.hardware_managers_dir = Some(managers.path().to_owned());
        let agent = rivet_agent::start(resolve(settings)).await.expect("agent starts");
        let r = clean_step(&agent, "erase_devices", json!({})).await;
        assert_eq!(r["command_status"], "SUCCEEDED", "{answer}: {r}");
        let request: Value = serde_json::from_slice(
            &std::fs::read(managers.path().join("erase-request.json")).expect("the vendor was asked"),
        )
        .expect("request JSON");
        assert_eq!(request["disk"]["name"], json!(device.path), "{request}");
        assert_eq!(request["destructive"]["disks"], json!([device.path]), "{request}");
        let middle = read_at(&device.path, 4 << 20, 16);
        if vendor_erases {
            assert_eq!(
                middle,
                vec![0xab; 16],
                "the vendor took the disk: the generic overwrite did not run"
            );
        } else {
            assert_eq!(middle, vec![0; 16], "the vendor passed: the generic overwrite ran");
        }
        agent.shutdown();
    }
}

/// A standalone agent allowed to modify `devices` only.
async fn agent_for_all(devices: &[&LoopDevice]) -> rivet_agent::RunningAgent {
    let mut settings = base_settings();
    settings.standalone = Some(true);
    settings.agent_token = Some(TOKEN.into());
    // The device and its partitions only: `/dev/loop1*` would also match `/dev/loop10`.
    let patterns: Vec<String> = devices
        .iter()
        .flat_map(|d| [d.path.clone(), format!("{}p*", d.path)])
        .collect();
    settings.disk_allow = Some(patterns.join(",").parse().expect("patterns"));
    settings.hardware_managers_dir = Some("/nonexistent".into());
    rivet_agent::start(resolve(settings)).await.expect("agent starts")
}

async fn raid_step(agent: &rivet_agent::RunningAgent, step: &str, node_extra: Value) -> Value {
    let mut node = json!({"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {}, "instance_info": {}, "driver_internal_info": {}});
    for (k, v) in node_extra.as_object().cloned().unwrap_or_default() {
        node[k] = v;
    }
    let params = json!({"step": {"step": step, "priority": 0, "interface": "raid"}, "node": node, "ports": []});
    command(agent, "clean.execute_clean_step", params).await
}

/// Software RAID never builds over data: a holder with a partition table is refused before
/// either disk is written, with the way out in the message; and a deletion with no array and
/// no RAID member on the disks changes nothing on them.
#[tokio::test]
async fn software_raid_refuses_a_disk_with_data_and_deletes_nothing_that_is_not_raid() {
    let size = 64u64 << 20;
    let (used, empty) = (LoopDevice::with_content(size, None, true), LoopDevice::new(size));
    gpt_with_one_partition(&used.path);
    let (used_before, empty_before) = (read_at(&used.path, 0, 1 << 20), read_at(&empty.path, 0, 1 << 20));
    let agent = agent_for_all(&[&used, &empty]).await;

    let target = json!({"logical_disks": [{"raid_level": "1", "size_gb": "MAX", "controller": "software",
        "physical_disks": [used.path, empty.path]}]});
    let r = raid_step(&agent, "create_configuration", json!({"target_raid_config": target})).await;
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert_eq!(r["command_error"]["type"], "SoftwareRAIDError", "{r}");
    let message = r["command_error"]["details"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{} holds gpt", used.path)) && message.contains("raid.delete_configuration"),
        "{message}"
    );

    let r = raid_step(&agent, "create_configuration", json!({})).await;
    assert_eq!(r["command_status"], "FAILED", "{r}");
    assert!(r.to_string().contains("no target_raid_config"), "{r}");

    let r = raid_step(&agent, "delete_configuration", json!({})).await;
    assert_eq!(r["command_status"], "SUCCEEDED", "{r}");
    assert_eq!(
        r["command_result"]["clean_result"],
        json!({"deleted_arrays": [], "cleared_disks": []}),
        "{r}"
    );
    assert_eq!(
        read_at(&used.path, 0, 1 << 20),
        used_before,
        "the partitioned disk is untouched"
    );
    assert_eq!(
        read_at(&empty.path, 0, 1 << 20),
        empty_before,
        "the empty disk is untouched"
    );
    agent.shutdown();
}
