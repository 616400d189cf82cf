//! Image format detection and the declared-versus-detected rule (reference §7.5), decided on
//! the first bytes of the stream before anything is written.

use crate::error::{AgentError, ErrorKind};

/// Bytes needed to recognise every format below.
pub const SNIFF: usize = 512;

/// A detected image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Anything not recognised below: written bit for bit.
    Raw,
    /// QEMU copy-on-write v2/v3: converted while streaming.
    Qcow2,
    /// Recognised, never written.
    Refused(&'static str),
}

impl Format {
    /// The name upstream uses.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Refused(name) => name,
        }
    }
}

/// Recognise a format from the first bytes of an image.
pub fn detect(head: &[u8]) -> Format {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"QFI\xfb") {
        Format::Qcow2
    } else if at(0, b"KDMV") {
        Format::Refused("vmdk")
    } else if at(0, b"vhdxfile") {
        Format::Refused("vhdx")
    } else if at(0, b"QED\0") {
        Format::Refused("qed")
    } else if at(0, b"LUKS\xba\xbe") {
        Format::Refused("luks")
    } else if at(0x40, &0xbeda_107fu32.to_le_bytes()) {
        Format::Refused("vdi")
    } else if at(0, b"conectix") {
        Format::Refused("vpc")
    } else {
        Format::Raw
    }
}

/// Formats an operator may declare in `disk_format`.
pub fn check_declared(declared: Option<&str>) -> Result<(), AgentError> {
    match declared {
        None | Some("raw" | "gpt" | "qcow2" | "unknown") => Ok(()),
        Some(other) => Err(AgentError::new(
            ErrorKind::InvalidImage,
            format!("disk format {other} is not permitted (raw, gpt and qcow2 are); nothing was written"),
        )),
    }
}

/// The format to write `id` as, or why not: the content must be a permitted format and agree
/// with what was declared (a "raw" image that is really qcow2 is refused, and the other way round).
pub fn decide(id: &str, declared: Option<&str>, detected: Format) -> Result<Format, AgentError> {
    let refuse = |why: String| Err(AgentError::new(ErrorKind::InvalidImage, why));
    if let Format::Refused(name) = detected {
        return refuse(format!(
            "image {id} is {name}, which is not permitted (raw, gpt and qcow2 are): refusing to write it"
        ));
    }
    match (declared, detected) {
        (None | Some("unknown"), d) => Ok(d),
        (Some("raw" | "gpt"), Format::Raw) | (Some("qcow2"), Format::Qcow2) => Ok(detected),
        (Some(declared), d) => refuse(format!(
            "image {id} is {} but was declared {declared}: refusing to write it",
            d.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_their_magic() {
        let mut vdi = vec![0u8; 512];
        vdi[0x40..0x44].copy_from_slice(&0xbeda_107fu32.to_le_bytes());
        let cases: [(&[u8], Format); 5] = [
            (b"QFI\xfb\0\0\0\x03", Format::Qcow2),
            (b"KDMV\x01", Format::Refused("vmdk")),
            (&vdi, Format::Refused("vdi")),
            (&[0u8; 512], Format::Raw),
            (b"QF", Format::Raw),
        ];
        for (bytes, want) in cases {
            assert_eq!(detect(bytes), want);
        }
    }

    #[test]
    fn declared_and_detected_formats_must_agree() {
        let table = [
            (Some("raw"), Format::Raw, Ok(Format::Raw)),
            (Some("gpt"), Format::Raw, Ok(Format::Raw)),
            (Some("qcow2"), Format::Qcow2, Ok(Format::Qcow2)),
            (None, Format::Qcow2, Ok(Format::Qcow2)),
            (Some("unknown"), Format::Raw, Ok(Format::Raw)),
            (Some("raw"), Format::Qcow2, Err("is qcow2 but was declared raw")),
            (Some("qcow2"), Format::Raw, Err("is raw but was declared qcow2")),
            (None, Format::Refused("vmdk"), Err("is vmdk, which is not permitted")),
        ];
        for (declared, detected, want) in table {
            match (decide("img", declared, detected), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(e), Err(text)) => assert!(e.details.contains(text), "{}", e.details),
                (got, want) => panic!("{declared:?} {detected:?}: {got:?} vs {want:?}"),
            }
        }
        assert!(check_declared(Some("vmdk")).is_err());
        assert!(check_declared(Some("qcow2")).is_ok());
    }
}
