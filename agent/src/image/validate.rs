//! Checking `image_info` before a command is accepted (upstream's validator: answered 400).

use rivet_common::image::ImageInfo;

use crate::error::{AgentError, ErrorKind};

/// Check `image_info` before accepting the command (upstream's validator, answered 400).
pub fn validate(info: &ImageInfo, md5_allowed: bool) -> Result<(), AgentError> {
    let invalid = |m: String| AgentError::new(ErrorKind::InvalidCommandParams, m);
    if info.id.is_empty() {
        return Err(invalid("image_info.id is required".into()));
    }
    if info.urls.is_empty() {
        return Err(invalid("image_info.urls must name at least one URL".into()));
    }
    match (
        info.os_hash_algo.as_option(),
        info.os_hash_value.as_option(),
        info.checksum.as_option(),
    ) {
        (Some(a), Some(v), _) if !a.is_empty() && !v.is_empty() => Ok(()),
        (Some(_), None, _) | (None, Some(_), _) => {
            Err(invalid("os_hash_algo and os_hash_value must be given together".into()))
        }
        (_, _, Some(c))
            if c.starts_with("http://")
                || c.starts_with("https://")
                || c.len() > 32
                || (md5_allowed && !c.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(invalid(
            "image_info needs os_hash_algo and os_hash_value, or a checksum".into(),
        )),
    }
}
