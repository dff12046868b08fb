//! Keyed hashes of personal data (emails, phones, names) for logs.
//!
//! Logs never carry these values, only `HMAC-SHA256(LOG_HASH_KEY, value)` cut to 12 hex
//! characters. With the deployment's key, the three functions log the same hash for the same
//! email, so a reader can follow one contact across them. Without the key, a reader cannot
//! recover an email by hashing guesses.
//!
//! Values are trimmed and lowercased before hashing, so ` Jane@Example.com` and
//! `jane@example.com` share a hash whichever function logs them.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{ConfigError, Env};

/// The variable that contains the hash key.
pub const LOG_HASH_KEY: &str = "LOG_HASH_KEY";

/// Shortest accepted `LOG_HASH_KEY`, in bytes. A shorter key could be found by brute force.
pub const MIN_KEY_BYTES: usize = 16;

/// Length of a hash in the logs, in hex characters (48 bits).
pub const HASH_HEX_CHARS: usize = 12;

/// Computes keyed hashes of personal data.
#[derive(Clone)]
pub struct PiiHasher {
    key: Vec<u8>,
}

impl std::fmt::Debug for PiiHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiHasher").finish_non_exhaustive()
    }
}

/// Origin of a [`PiiHasher`]'s key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `LOG_HASH_KEY`.
    Configured,
    /// A random per-process key, because `LOG_HASH_KEY` is unset.
    Random,
}

impl PiiHasher {
    /// Creates a hasher with the given key bytes.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        PiiHasher { key: key.into() }
    }

    /// Creates a hasher with a random 32-byte key. Its hashes match no other process.
    pub fn random() -> Self {
        PiiHasher::new(rand::random::<[u8; 32]>().to_vec())
    }

    /// Creates a hasher from `LOG_HASH_KEY` (its UTF-8 bytes are the key), or a random one when
    /// the variable is unset.
    pub fn from_env(env: &Env) -> Result<(Self, KeySource), ConfigError> {
        match env.optional(LOG_HASH_KEY)? {
            Some(key) if key.len() < MIN_KEY_BYTES => Err(ConfigError::invalid_secret(
                LOG_HASH_KEY,
                format!("at least {MIN_KEY_BYTES} bytes of random text"),
            )),
            Some(key) => Ok((PiiHasher::new(key.into_bytes()), KeySource::Configured)),
            None => Ok((PiiHasher::random(), KeySource::Random)),
        }
    }

    /// Hashes `value` after trimming and lowercasing it.
    pub fn hash(&self, value: &str) -> String {
        let normalised = value.trim().to_lowercase();
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .expect("HMAC-SHA256 accepts keys of any length");
        mac.update(normalised.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = hex::encode(digest);
        hex.truncate(HASH_HEX_CHARS);
        hex
    }
}

static GLOBAL: OnceLock<PiiHasher> = OnceLock::new();

/// Sets the process-wide hasher that [`hash`] uses. Returns `false`, leaving the existing one in
/// place, when it was already set.
pub fn install(hasher: PiiHasher) -> bool {
    GLOBAL.set(hasher).is_ok()
}

/// Reads `LOG_HASH_KEY` and installs the process-wide hasher; [`crate::logging::init`] calls
/// this. Logs one warning when the key is unset, since hashes then differ between processes.
pub fn init_from_env(env: &Env) -> Result<(), ConfigError> {
    let (hasher, source) = PiiHasher::from_env(env)?;
    if install(hasher) && source == KeySource::Random {
        tracing::warn!(
            "{LOG_HASH_KEY} is not set: hashes of personal data in logs use a random \
             per-process key and will not match other processes"
        );
    }
    Ok(())
}

/// Returns the keyed hash of `value` for logs, using the process-wide hasher.
///
/// Before [`install`] or [`init_from_env`] runs (for example in unit tests), a random key is
/// installed silently.
pub fn hash(value: &str) -> String {
    GLOBAL.get_or_init(PiiHasher::random).hash(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn hash_matches_hmac_sha256_prefix() {
        // Expected value from: printf 'jane@example.com' | openssl dgst -sha256 -hmac 'test-key-0123456789'
        let hasher = PiiHasher::new("test-key-0123456789");
        assert_eq!(hasher.hash("jane@example.com"), "a3052ec90a8e");
    }

    #[test]
    fn hash_normalises_case_and_space() {
        let hasher = PiiHasher::new("test-key-0123456789");
        assert_eq!(
            hasher.hash("  Jane@Example.COM "),
            hasher.hash("jane@example.com")
        );
    }

    #[test]
    fn hash_depends_on_key() {
        let first = PiiHasher::new("test-key-0123456789");
        let second = PiiHasher::new("other-key-0123456789");
        assert_ne!(
            first.hash("jane@example.com"),
            second.hash("jane@example.com")
        );
    }

    #[test]
    fn from_env_reads_key_or_generates() {
        let env = Env::from_pairs([(LOG_HASH_KEY, "test-key-0123456789")]);
        let (hasher, source) = PiiHasher::from_env(&env).unwrap();
        assert_eq!(source, KeySource::Configured);
        assert_eq!(hasher.hash("jane@example.com"), "a3052ec90a8e");

        let (_, source) = PiiHasher::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(source, KeySource::Random);
    }

    #[test]
    fn from_env_rejects_short_key_without_echo() {
        let env = Env::from_pairs([(LOG_HASH_KEY, "short")]);
        let err = PiiHasher::from_env(&env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LOG_HASH_KEY is invalid (value hidden because it is a secret): expected at least 16 \
             bytes of random text"
        );
    }

    #[test]
    fn debug_hides_key() {
        let hasher = PiiHasher::new("test-key-0123456789");
        assert_eq!(format!("{hasher:?}"), "PiiHasher { .. }");
    }
}
