//! SHA-512 crypt (`$6$`) password hashes that crypt(3) verifies: glibc, libxcrypt and
//! busybox, whose `login` the rescue ramdisk runs.
//!
//! The `sha-crypt` crate's own `hash_password` draws a 16-byte salt, 22 characters once
//! encoded, and writes all 22 into the hash while the algorithm uses only the first 16: every
//! crypt(3) implementation recomputes the string with a 16-character salt and the comparison
//! fails, so no rescue login ever worked (found by the lab's `--rescue` run). A 12-byte salt is
//! exactly 16 characters.

use sha_crypt::{PasswordHasher, ShaCrypt};

/// Salt bytes whose crypt Base64 is the 16 characters the algorithm uses.
const SALT_BYTES: usize = 12;

/// `$6$rounds=5000$<16 characters>$<86 characters>` for `password`, with a random salt.
///
/// # Errors
///
/// The system's random source failed.
pub fn sha512_crypt(password: &str) -> Result<String, String> {
    let random = sha_crypt::password_hash::try_generate_salt().map_err(|e| format!("no random salt: {e}"))?;
    let hash = ShaCrypt::default()
        .hash_password_with_salt(password.as_bytes(), &random[..SALT_BYTES])
        .map_err(|e| format!("hashing: {e}"))?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_salt_is_the_sixteen_characters_crypt_uses() {
        let hash = sha512_crypt("secret").expect("hashed");
        let fields: Vec<&str> = hash.split('$').collect();
        assert_eq!(fields[..3], ["", "6", "rounds=5000"], "{hash}");
        assert_eq!(fields[3].len(), 16, "{hash}");
        assert_eq!(fields[4].len(), 86, "{hash}");
        assert_ne!(hash, sha512_crypt("secret").expect("hashed"), "a fresh salt each time");
    }

    #[test]
    fn crypt3_verifies_it() {
        // Perl's crypt is the C library's crypt(3) (libxcrypt on Debian), as login uses it.
        let hash = sha512_crypt("rescue me").expect("hashed");
        let out = std::process::Command::new("perl")
            .args(["-e", "print crypt($ARGV[0], $ARGV[1])", "rescue me", &hash])
            .output()
            .expect("perl runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), hash);
    }
}
