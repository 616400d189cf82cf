//! Running the system tools the agent relies on (sfdisk, mkfs, efibootmgr, grub-install):
//! with `LC_ALL=C`, their stderr in the error, and a missing tool named as such so a ramdisk
//! builder knows what to add.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{AgentError, ErrorKind};

/// Run `tool` with `args` (and `input` on stdin); its stdout, or an error of `kind`.
pub fn run(kind: ErrorKind, tool: &str, args: &[&str], input: Option<&str>) -> Result<String, AgentError> {
    let failed = |what: String| AgentError::new(kind, what);
    let mut child = Command::new(tool)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(if e.kind() == std::io::ErrorKind::NotFound {
                format!("{tool} is not installed in this ramdisk; it is needed for this step")
            } else {
                format!("running {tool}: {e}")
            })
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| failed(format!("{tool}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| failed(format!("{tool}: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "{tool} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `tool` is on the PATH.
pub fn exists(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Run `tool` with `args` on the async runtime, killed after `timeout`; its stdout, or a
/// sentence saying what went wrong (not installed, timed out, exit status with stderr).
pub async fn output_within(tool: &str, args: &[String], timeout: std::time::Duration) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return Err(format!("{tool} did not finish within {timeout:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{tool} is not installed in this ramdisk"));
        }
        Ok(Err(e)) => return Err(format!("running {tool}: {e}")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(format!(
            "{tool} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
