//! Running the host programs drivers shell out to (`ipmitool`, `xorriso`): bounded in time,
//! killed when abandoned, and failures told as the program's own error output.

use std::time::Duration;

use super::DriverError;

/// Run `cmd` (described as `what`) for at most `timeout`; its stdout. `install_hint` completes
/// "… is not installed on the conductor host" when the program is missing.
pub async fn output(
    mut cmd: tokio::process::Command,
    what: &str,
    timeout: Duration,
    install_hint: &str,
) -> Result<String, DriverError> {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| DriverError::Failed(format!("{what} timed out after {timeout:?}")))?
        .map_err(|e| {
            DriverError::Failed(if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} is not installed on the conductor host{install_hint}")
            } else {
                format!("{what}: {e}")
            })
        })?;
    if !out.status.success() {
        return Err(DriverError::Failed(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
