//! One call of a manager executable, run so that nothing it does can escape the agent's control.
//!
//! * **Its own process group.** The program leads a new process group; whatever it starts stays
//!   in that group (unless it calls `setsid` itself). A call ends when the group is empty: an
//!   answer written by a program whose background child is still flashing firmware is not the
//!   end of the step. A timeout, or the caller giving up (an aborted command, a stopped agent),
//!   kills the whole group with SIGKILL.
//! * **The group id cannot be recycled under us.** The leader is reaped only after the group was
//!   seen empty or was killed: until then its zombie keeps the id in use, so a signal to the
//!   group can only reach the program's own processes.
//! * **Bounded memory.** Stdout is read in chunks: one JSON object (an answer or a progress
//!   line) may hold [`Limits::object`] bytes, all of stdout [`Limits::output`]; stderr keeps only
//!   its last [`STDERR_TAIL`] bytes. The request is written from its own task, so a program that
//!   writes before it reads cannot deadlock with the agent.
//! * **Bounded time.** Everything above happens within the call's timeout.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::progress::{Measure, Progress, Report, Unit};

/// Environment variable telling the program which protocol version it speaks to.
pub const PROTOCOL_ENV: (&str, &str) = ("RIVET_MANAGER_PROTOCOL", "1");

/// Request keys also given as environment variables: `(key, variable)`.
pub const REQUEST_ENV: [(&str, &str); 3] = [
    ("method", "RIVET_MANAGER_METHOD"),
    ("step", "RIVET_MANAGER_STEP"),
    ("step_type", "RIVET_MANAGER_STEP_TYPE"),
];

/// How much of stderr is kept for the error message.
pub const STDERR_TAIL: usize = 4096;

/// Longest progress message passed on to heartbeats, in characters.
pub const PROGRESS_CHARS: usize = 1024;

/// How often the group is looked at once the program closed its output.
const GROUP_POLL: Duration = Duration::from_millis(25);

/// How long the agent waits for killed processes to disappear.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Progress lines closer together than this are coalesced (the latest wins).
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Output limits of one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single JSON object (answer or progress line), in bytes.
    pub object: usize,
    /// Largest total stdout of one call, in bytes.
    pub output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            object: 4 << 20,
            output: 64 << 20,
        }
    }
}

/// Why a call failed: the text after "hardware manager <program>: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

/// What a finished call produced.
#[derive(Debug)]
struct Finished {
    answer: Option<Value>,
    status: ExitStatus,
    stderr_tail: String,
}

/// Kills the group on drop unless disarmed: a cancelled call leaves nothing behind.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is the outcome we want.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `program` once with `request` on stdin; the answer is the last JSON object on stdout that
/// is not a `{"progress": str}` line. Errors say what went wrong in words for an operator.
pub async fn call(
    program: &Path,
    request: &Value,
    timeout: Duration,
    limits: Limits,
    progress: &Progress,
) -> Result<Value, Failure> {
    let method = request["method"].as_str().unwrap_or("?").to_owned();
    let mut text = serde_json::to_vec(request).map_err(|e| Failure(e.to_string()))?;
    text.push(b'\n');
    let mut command = tokio::process::Command::new(program);
    command.env(PROTOCOL_ENV.0, PROTOCOL_ENV.1);
    // The request's scalar keys as variables too, so a shell program needs no JSON parsing to
    // know what it is asked.
    for (key, var) in REQUEST_ENV {
        match request.get(key).and_then(Value::as_str) {
            Some(value) => command.env(var, value),
            None => command.env_remove(var),
        };
    }
    let mut child = command
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure(format!("cannot start: {e}")))?;
    let leader = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| Failure("started but has no process id".into()))?;
    // Declared after `child`, so it is dropped (and kills the group) before `child` is.
    let mut guard = GroupGuard { pgid: Some(leader) };
    let deadline = Instant::now() + timeout;

    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A program that ignores its input may close stdin early; that is not an error.
            let _ = stdin.write_all(&text).await;
        }
    });
    let stderr = child.stderr.take();
    let stderr_task = tokio::spawn(async move {
        match stderr {
            Some(stderr) => read_tail(stderr).await,
            None => String::new(),
        }
    });
    let stdout = child.stdout.take();

    let work = async {
        let answer = match stdout {
            Some(stdout) => read_answers(stdout, &method, limits, progress).await?,
            None => None,
        };
        wait_for_group(leader).await;
        Ok::<_, Failure>(answer)
    };
    let outcome = tokio::time::timeout_at(deadline, work).await;
    writer.abort();
    let answer = match outcome {
        Ok(Ok(answer)) => answer,
        Ok(Err(failure)) => {
            let left = stop_group(&mut guard, leader).await;
            let _ = child.wait().await;
            return Err(Failure(format!("{}{}", failure.0, killed_note(left))));
        }
        Err(_) => {
            let left = stop_group(&mut guard, leader).await;
            let _ = child.wait().await;
            return Err(Failure(format!(
                "did not finish {method} within {} s{}",
                timeout.as_secs_f64(),
                killed_note(left)
            )));
        }
    };
    // The group is empty; the leader's zombie still holds the id, so this reaches nobody else.
    guard.kill();
    guard.pgid = None;
    let status = child.wait().await.map_err(|e| Failure(e.to_string()))?;
    let stderr_tail = stderr_task.await.unwrap_or_default();
    finish(
        &method,
        Finished {
            answer,
            status,
            stderr_tail,
        },
    )
}

fn finish(method: &str, done: Finished) -> Result<Value, Failure> {
    if !done.status.success() {
        let tail = done.stderr_tail.trim();
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        };
        return Err(Failure(format!("{method} failed with {}{tail}", done.status)));
    }
    done.answer
        .ok_or_else(|| Failure(format!("gave no answer to {method}")))
}

fn killed_note(left: usize) -> String {
    match left {
        0 => "; its processes were stopped".into(),
        n => format!("; {n} of its processes could not be stopped"),
    }
}

/// Kill the whole group, wait (bounded) until it is gone, and answer how many processes remain.
async fn stop_group(guard: &mut GroupGuard, leader: Pid) -> usize {
    guard.kill();
    let until = Instant::now() + KILL_GRACE;
    loop {
        let left = live_members(leader);
        if left == 0 || Instant::now() >= until {
            guard.pgid = None;
            return left;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Wait until the leader has exited (without reaping it) and no other process of its group is
/// alive. The caller bounds the wait.
async fn wait_for_group(leader: Pid) {
    loop {
        if leader_exited(leader) && live_members(leader) == 0 {
            return;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Whether the leader has exited; it stays a zombie (not reaped) so its id stays taken.
fn leader_exited(leader: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(leader), flags) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        // ECHILD: already reaped, so certainly exited.
        Err(_) => true,
    }
}

/// Processes of the group `pgid` that are alive (not zombies), from `/proc/<pid>/stat`.
pub fn live_members(pgid: Pid) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid.as_raw()) && state != Some("Z") && state != Some("X")
        })
        .count()
}

/// The last [`STDERR_TAIL`] bytes of a stream, read to its end.
async fn read_tail(mut stream: impl AsyncRead + Unpin) -> String {
    let mut tail: Vec<u8> = Vec::with_capacity(STDERR_TAIL);
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// Read stdout to its end: JSON objects, usually one per line (a pretty-printed object spans
/// several lines and is read whole). Progress lines go to `progress`, coalesced; the last other
/// object is the answer.
async fn read_answers(
    mut stdout: impl AsyncRead + Unpin,
    method: &str,
    limits: Limits,
    progress: &Progress,
) -> Result<Option<Value>, Failure> {
    let mut answer = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let mut last_report: Option<Instant> = None;
    let mut unreported: Option<Report> = None;
    loop {
        let read = match tokio::time::timeout(PROGRESS_EVERY, stdout.read(&mut buf)).await {
            Ok(read) => read.map_err(|e| Failure(format!("reading its output: {e}")))?,
            Err(_) => {
                // Silence: pass on the latest coalesced progress message.
                if let Some(report) = unreported.take() {
                    progress.publish(report);
                    last_report = Some(Instant::now());
                }
                continue;
            }
        };
        if read == 0 {
            // The latest message is never lost to coalescing.
            if let Some(report) = unreported.take() {
                progress.publish(report);
            }
            break;
        }
        total = total.saturating_add(read);
        if total > limits.output {
            return Err(Failure(format!(
                "wrote more than {} bytes of output for {method}",
                limits.output
            )));
        }
        for &byte in &buf[..read] {
            pending.push(byte);
            if pending.len() > limits.object {
                return Err(Failure(format!(
                    "wrote a JSON object longer than {} bytes for {method}",
                    limits.object
                )));
            }
            if byte != b'\n' {
                continue;
            }
            let Some(value) = complete_object(&mut pending, method)? else {
                continue;
            };
            match progress_message(&value) {
                Some(report) => {
                    let due = last_report.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
                    if due {
                        progress.publish(report);
                        last_report = Some(Instant::now());
                        unreported = None;
                    } else {
                        unreported = Some(report);
                    }
                }
                None => answer = Some(value),
            }
        }
    }
    if !String::from_utf8_lossy(&pending).trim().is_empty() {
        // The last object may lack its newline.
        pending.push(b'\n');
        match complete_object(&mut pending, method)? {
            Some(value) if progress_message(&value).is_none() => answer = Some(value),
            Some(_) => {}
            None => {
                return Err(Failure(format!(
                    "answered {method} with incomplete JSON: {:?}",
                    excerpt(&pending)
                )));
            }
        }
    }
    Ok(answer)
}

/// The JSON value in `pending` once it is complete (then `pending` is emptied); `None` while
/// more lines are needed.
fn complete_object(pending: &mut Vec<u8>, method: &str) -> Result<Option<Value>, Failure> {
    if pending.iter().all(u8::is_ascii_whitespace) {
        pending.clear();
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(pending) {
        Ok(value) => {
            pending.clear();
            Ok(Some(value))
        }
        Err(e) if e.is_eof() => Ok(None),
        Err(_) => Err(Failure(format!(
            "answered {method} with output that is not JSON: {:?}",
            excerpt(pending)
        ))),
    }
}

/// A progress object: `{"progress": "text"}`, optionally with its measure `"done"`, `"total"`
/// (unsigned integers) and `"unit"` (`"bytes"`, `"seconds"` or `"items"`, the default), and
/// nothing else.
/// The text is cut to [`PROGRESS_CHARS`]. Any other object is an answer.
fn progress_message(value: &Value) -> Option<Report> {
    let object = value.as_object()?;
    let text = object.get("progress")?.as_str()?;
    if object
        .keys()
        .any(|k| !matches!(k.as_str(), "progress" | "done" | "total" | "unit"))
    {
        return None;
    }
    let count = |key: &str| object.get(key).map(Value::as_u64);
    let unit = match object.get("unit").map(Value::as_str) {
        None | Some(Some("items")) => Unit::Items,
        Some(Some("seconds")) => Unit::Seconds,
        Some(Some("bytes")) => Unit::Bytes,
        Some(_) => return None,
    };
    let measure = match (count("done"), count("total")) {
        (None, None) => None,
        (Some(Some(done)), total) => Some(Measure {
            done,
            total: match total {
                None => None,
                Some(Some(total)) => Some(total),
                Some(None) => return None,
            },
            unit,
            rate: None,
        }),
        _ => return None,
    };
    Some(Report {
        message: text.chars().take(PROGRESS_CHARS).collect(),
        measure,
    })
}

fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_may_span_lines_and_garbage_is_named() {
        let mut pending = b"{\"a\":\n".to_vec();
        assert_eq!(complete_object(&mut pending, "m").expect("partial"), None);
        pending.extend_from_slice(b"1}\n");
        assert_eq!(
            complete_object(&mut pending, "m").expect("complete"),
            Some(serde_json::json!({"a": 1}))
        );
        assert!(pending.is_empty());
        let mut junk = b"Segmentation fault\n".to_vec();
        let err = complete_object(&mut junk, "run_step").expect_err("not JSON");
        assert!(
            err.0.contains("run_step") && err.0.contains("Segmentation fault"),
            "{err:?}"
        );
    }

    #[test]
    fn progress_lines_are_recognised_and_cut() {
        let text = |v: Value| progress_message(&v).map(|r| r.message);
        assert_eq!(text(serde_json::json!({"progress": "50%"})), Some("50%".into()));
        assert_eq!(text(serde_json::json!({"progress": "x", "result": 1})), None);
        assert_eq!(text(serde_json::json!({"progress": 5})), None);
        let long = "é".repeat(PROGRESS_CHARS * 2);
        let cut = text(serde_json::json!({ "progress": long })).expect("message");
        assert_eq!(cut.chars().count(), PROGRESS_CHARS);
    }

    #[test]
    fn progress_lines_may_carry_their_measure() {
        let measure = |v: Value| progress_message(&v).map(|r| r.measure);
        assert_eq!(
            measure(serde_json::json!({"progress": "flashing", "done": 3, "total": 8, "unit": "bytes"})),
            Some(Some(Measure {
                done: 3,
                total: Some(8),
                unit: Unit::Bytes,
                rate: None
            }))
        );
        assert_eq!(
            measure(serde_json::json!({"progress": "soaking", "done": 30})),
            Some(Some(Measure {
                done: 30,
                total: None,
                unit: Unit::Items,
                rate: None
            }))
        );
        // A malformed measure makes the object an answer, never a half-read report.
        for bad in [
            serde_json::json!({"progress": "x", "done": -1}),
            serde_json::json!({"progress": "x", "total": 8}),
            serde_json::json!({"progress": "x", "done": 1, "unit": "parsecs"}),
            serde_json::json!({"progress": "x", "done": 1, "total": "8"}),
        ] {
            assert_eq!(measure(bad.clone()), None, "{bad}");
        }
    }
}
