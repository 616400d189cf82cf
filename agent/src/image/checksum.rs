//! Which checksum an image must match (reference §7.4): `os_hash_algo` + `os_hash_value`, else
//! the legacy `checksum` (a digest, or the URL of a checksum file), the algorithm chosen by the
//! digest's length. MD5 only when the conductor allows it. Digests compare case-insensitively
//! (upstream compares case-sensitively, a known trap).

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use crate::error::{AgentError, ErrorKind};

/// A running hash of one of the supported algorithms.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
    Md5(Md5),
}

impl Hasher {
    /// A hasher for `algorithm` (`sha256`, `sha512`, `md5`).
    pub fn new(algorithm: &str) -> Option<Hasher> {
        Some(match algorithm.to_ascii_lowercase().as_str() {
            "sha256" => Hasher::Sha256(Sha256::new()),
            "sha512" => Hasher::Sha512(Sha512::new()),
            "md5" => Hasher::Md5(Md5::new()),
            _ => return None,
        })
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    /// Lower-case hex digest.
    pub fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The algorithm a bare digest implies by its length.
pub fn algorithm_for(digest: &str, md5_allowed: bool) -> Result<&'static str, AgentError> {
    let hex = digest.chars().all(|c| c.is_ascii_hexdigit());
    match (digest.len(), hex) {
        (128, true) => Ok("sha512"),
        (64, true) => Ok("sha256"),
        (32, true) if md5_allowed => Ok("md5"),
        (32, true) => Err(AgentError::new(
            ErrorKind::ImageChecksum,
            "MD5 checksums are not allowed by the conductor; give a SHA-256 or SHA-512 digest",
        )),
        _ => Err(AgentError::new(
            ErrorKind::ImageChecksum,
            format!("cannot tell the algorithm of checksum {digest:?}: give os_hash_algo"),
        )),
    }
}

/// Find the digest for `file_name` in a checksum file (`<hash>  <name>`, `<hash> *<name>`,
/// `SHA256 (<name>) = <hash>`, or a single bare hash).
pub fn parse_checksum_file(text: &str, file_name: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let is_digest = |w: &str| [32, 64, 128].contains(&w.len()) && w.chars().all(|c| c.is_ascii_hexdigit());
    if lines.len() == 1 && !lines[0].contains(char::is_whitespace) && is_digest(lines[0]) {
        return Some(lines[0].to_ascii_lowercase());
    }
    for line in lines {
        let named = line.ends_with(&format!(" {file_name}"))
            || line.ends_with(&format!("*{file_name}"))
            || line.contains(&format!("({file_name})"));
        if !named {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for candidate in [words.first(), words.last()].into_iter().flatten() {
            if is_digest(candidate) {
                return Some(candidate.to_ascii_lowercase());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_algorithms() {
        let mut h = Hasher::new("sha256").expect("known");
        h.update(b"abc");
        assert_eq!(
            h.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(algorithm_for(&"a".repeat(128), false).expect("sha512"), "sha512");
        assert_eq!(algorithm_for(&"A".repeat(64), false).expect("sha256"), "sha256");
        assert!(
            algorithm_for(&"a".repeat(32), false).is_err(),
            "md5 refused when not allowed"
        );
        assert_eq!(algorithm_for(&"a".repeat(32), true).expect("md5"), "md5");
        assert!(algorithm_for("xyz", true).is_err());
    }

    #[test]
    fn checksum_files_in_every_common_form() {
        let d = "e".repeat(64);
        assert_eq!(
            parse_checksum_file(&format!("{d}\n"), "disk.raw").as_deref(),
            Some(d.as_str())
        );
        assert_eq!(
            parse_checksum_file(
                &format!("# c\n{} other.raw\n{d}  disk.raw\n", "f".repeat(64)),
                "disk.raw"
            )
            .as_deref(),
            Some(d.as_str())
        );
        assert_eq!(
            parse_checksum_file(&format!("{d} *disk.raw\n"), "disk.raw").as_deref(),
            Some(d.as_str())
        );
        assert_eq!(
            parse_checksum_file(&format!("SHA256 (disk.raw) = {}\n", d.to_uppercase()), "disk.raw").as_deref(),
            Some(d.as_str())
        );
        assert_eq!(parse_checksum_file(&format!("{d}  other.raw\n"), "disk.raw"), None);
    }
}
