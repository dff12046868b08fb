//! Signing secrets for one start of the stack.

use base64::Engine as _;

/// Returns a new Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn new_webhook_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Returns the key bytes of a `whsec_` secret as hex, the form `openssl dgst -macopt hexkey:`
/// takes; `None` when the secret is not base64.
pub fn secret_key_hex(secret: &str) -> Option<String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .map(hex::encode)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn new_secret_is_usable_and_fresh() {
        let first = new_webhook_secret();
        let second = new_webhook_secret();
        assert!(first.starts_with("whsec_"), "{first}");
        assert_ne!(first, second);
        assert_eq!(secret_key_hex(&first).map(|key| key.len()), Some(64));
        assert!(standardwebhooks::Webhook::new(&first).is_ok());
    }

    #[test]
    fn key_hex_of_known_secret() {
        assert_eq!(
            secret_key_hex("whsec_AAEC/w==").as_deref(),
            Some("000102ff")
        );
        assert_eq!(secret_key_hex("whsec_not base64!"), None);
    }
}
