//! `log.collect_system_logs`: a gzip tarball (base64) of the journal or `/var/log` and the
//! output of diagnostic commands, for the conductor to store when something fails.
//!
//! Unlike upstream, every member is capped so a huge log cannot exhaust the ramdisk's memory.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;

use crate::commands::NoParams;
use crate::commands::{Command, CommandOutcome, Registry};
use crate::error::{AgentError, ErrorKind};
use crate::hardware::Managers;
use crate::state::AgentState;

/// Largest member kept (bytes); longer output is truncated with a note.
const MEMBER_CAP: usize = 16 << 20;
/// Largest total of `/var/log` files collected when there is no journal.
const VAR_LOG_CAP: u64 = 64 << 20;
/// How long one diagnostic command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Member name, program and arguments of each diagnostic command.
const COMMANDS: &[(&str, &str, &[&str])] = &[
    ("journal", "journalctl", &["--full", "--no-pager", "-b"]),
    ("df", "df", &["-a"]),
    ("dmesg", "dmesg", &[]),
    ("efibootmgr", "efibootmgr", &["-v"]),
    ("ip_addr", "ip", &["addr"]),
    ("lsblk", "lsblk", &[]),
    ("lsblk-full", "lsblk", &["--all", "--bytes", "--output-all", "--pairs"]),
    ("mount", "mount", &[]),
    ("ps", "ps", &["au"]),
];

pub(super) fn register(registry: &mut Registry) {
    registry.register("log", "collect_system_logs", Command::sync(collect_system_logs));
}

async fn run_capped(program: &str, args: &[&str]) -> Option<Vec<u8>> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await.ok()?.ok()?;
    if !output.status.success() && output.stdout.is_empty() {
        return None;
    }
    Some(cap(output.stdout))
}

fn cap(mut data: Vec<u8>) -> Vec<u8> {
    if data.len() > MEMBER_CAP {
        data.truncate(MEMBER_CAP);
        data.extend_from_slice(b"\n[rivet-agent: truncated]\n");
    }
    data
}

fn var_log_files(dir: &Path, budget: &mut u64, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            var_log_files(&path, budget, out);
        } else if meta.is_file()
            && meta.len() <= *budget
            && let Ok(data) = std::fs::read(&path)
        {
            *budget -= meta.len();
            out.push((path.to_string_lossy().trim_start_matches('/').to_owned(), cap(data)));
        }
    }
}

fn tarball(members: Vec<(String, Vec<u8>)>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        builder.append_data(&mut header, &name, data.as_slice())?;
    }
    let mut gz = builder.into_inner()?;
    gz.flush()?;
    gz.finish()
}

async fn collect_system_logs(state: Arc<AgentState>, _: NoParams) -> CommandOutcome {
    let archive = system_logs(&state.managers, None).await?;
    Ok(json!({ "system_logs": archive }))
}

/// The system logs as base64 of a gzip tarball: the journal (its last `journal_lines` lines
/// when given, as the inspection `logs` collector asks for 10000) or `/var/log`, the diagnostic
/// commands, and every manager's members. Errors only when the archive cannot be built.
pub(crate) async fn system_logs(managers: &Managers, journal_lines: Option<u32>) -> Result<String, AgentError> {
    let mut members = Vec::new();
    for (name, program, args) in COMMANDS {
        let mut args = args.to_vec();
        let lines = journal_lines.map(|n| n.to_string());
        if *name == "journal"
            && let Some(lines) = &lines
        {
            args.extend(["-n", lines.as_str()]);
        }
        if let Some(output) = run_capped(program, &args).await {
            members.push((name.to_string(), output));
        }
    }
    if let Ok(mdstat) = std::fs::read("/proc/mdstat") {
        members.push(("mdstat".into(), mdstat));
    }
    if !members.iter().any(|(n, _)| n == "journal") {
        let files = tokio::task::spawn_blocking(|| {
            let mut out = Vec::new();
            var_log_files(Path::new("/var/log"), &mut VAR_LOG_CAP.clone(), &mut out);
            out
        })
        .await
        .unwrap_or_default();
        members.extend(files);
    }
    members.extend(
        managers
            .system_logs()
            .await
            .into_iter()
            .map(|(name, data)| (name, cap(data))),
    );
    let count = members.len();
    let archive = tokio::task::spawn_blocking(move || tarball(members))
        .await
        .map_err(|e| AgentError::new(ErrorKind::CommandExecution, e.to_string()))?
        .map_err(|e| AgentError::new(ErrorKind::CommandExecution, format!("building the log archive: {e}")))?;
    tracing::info!(members = count, bytes = archive.len(), "system logs collected");
    Ok(base64::engine::general_purpose::STANDARD.encode(archive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn tarball_round_trips_and_caps() {
        let big = vec![b'x'; MEMBER_CAP + 10];
        let gz = tarball(vec![("a".into(), b"hello".to_vec()), ("big".into(), cap(big))]).expect("builds");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            seen.push((entry.path().expect("path").to_string_lossy().into_owned(), data.len()));
        }
        assert_eq!(seen[0], ("a".to_owned(), 5));
        assert!(seen[1].1 <= MEMBER_CAP + 64);
    }
}
