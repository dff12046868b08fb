//! Authentication of partner callbacks: Standard Webhooks signatures or bearer tokens.
//!
//! Signatures are computed with the `standardwebhooks` crate. Its `Webhook::verify` is not used
//! because its timestamp tolerance is fixed at 5 minutes (version 1.0.1), while
//! `SIGNATURE_TOLERANCE_SECS` sets it here. So this module checks the timestamp itself, signs
//! `id.timestamp.body` with each configured secret and compares the result with every `v1`
//! signature in the header in constant time.

use std::fmt;

use base64::Engine;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use standardwebhooks::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook,
};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &str = "v1";

/// Decodes a `whsec_` secret into its key bytes, or `None` when it is not `whsec_` followed by
/// non-empty standard base64.
pub fn signing_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    (!key.is_empty()).then_some(key)
}

/// Reason a request was not authenticated. Messages are safe to return to the caller: they never
/// contain a secret, a token or an expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing {0} header; sign the request with Standard Webhooks.")]
    MissingHeader(&'static str),
    #[error("Invalid webhook-timestamp header; send the signing time in Unix seconds.")]
    InvalidTimestamp,
    #[error(
        "The webhook-timestamp is more than {tolerance_secs} seconds in the past; sign each \
         request with the current time."
    )]
    TimestampTooOld { tolerance_secs: u64 },
    #[error(
        "The webhook-timestamp is more than {tolerance_secs} seconds in the future; check the \
         sender's clock."
    )]
    TimestampInFuture { tolerance_secs: u64 },
    #[error(
        "Invalid webhook-signature: no v1 signature matches the body with a configured secret."
    )]
    InvalidSignature,
    #[error("Missing bearer token; send an Authorization: Bearer <token> header.")]
    MissingBearerToken,
    #[error("Invalid bearer token.")]
    InvalidBearerToken,
}

impl AuthError {
    /// Returns a short stable reason for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingHeader(_) => "missing_signature_header",
            AuthError::InvalidTimestamp => "invalid_timestamp",
            AuthError::TimestampTooOld { .. } => "timestamp_too_old",
            AuthError::TimestampInFuture { .. } => "timestamp_in_future",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::MissingBearerToken => "missing_bearer_token",
            AuthError::InvalidBearerToken => "invalid_bearer_token",
        }
    }

    /// Reports whether the error is about a bearer token, so the response carries
    /// `WWW-Authenticate: Bearer`.
    pub fn is_bearer(&self) -> bool {
        matches!(
            self,
            AuthError::MissingBearerToken | AuthError::InvalidBearerToken
        )
    }
}

/// Checks callbacks against the configured authentication mode.
pub struct Authenticator {
    mode: Mode,
}

enum Mode {
    Signature {
        webhooks: Vec<Webhook>,
        tolerance_secs: u64,
    },
    /// SHA-256 digests of the tokens, so comparisons take the same time whatever the length.
    Bearer {
        token_digests: Vec<[u8; 32]>,
    },
    None,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            Mode::Signature { webhooks, .. } => format!("signature ({} secrets)", webhooks.len()),
            Mode::Bearer { token_digests } => format!("bearer ({} tokens)", token_digests.len()),
            Mode::None => "none".to_string(),
        };
        f.debug_struct("Authenticator")
            .field("mode", &mode)
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator. Secrets were validated by [`crate::config::Config`]; one that
    /// does not decode is skipped.
    pub fn new(config: &AuthConfig) -> Self {
        let mode = match config {
            AuthConfig::Signature { secrets, tolerance } => Mode::Signature {
                webhooks: secrets
                    .iter()
                    .filter_map(|secret| signing_key(secret.expose()))
                    .filter_map(|key| Webhook::from_bytes(key).ok())
                    .collect(),
                tolerance_secs: tolerance.as_secs(),
            },
            AuthConfig::Bearer { tokens } => Mode::Bearer {
                token_digests: tokens
                    .iter()
                    .map(|token| Sha256::digest(token.expose().as_bytes()).into())
                    .collect(),
            },
            AuthConfig::None => Mode::None,
        };
        Authenticator { mode }
    }

    /// Checks a request's headers and raw body; `now_unix_secs` is the current Unix time.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix_secs: i64,
    ) -> Result<(), AuthError> {
        match &self.mode {
            Mode::Signature {
                webhooks,
                tolerance_secs,
            } => verify_signature(webhooks, *tolerance_secs, headers, body, now_unix_secs),
            Mode::Bearer { token_digests } => verify_bearer(token_digests, headers),
            Mode::None => Ok(()),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, AuthError> {
    let value = headers.get(name).ok_or(AuthError::MissingHeader(name))?;
    // A header that is not visible ASCII cannot carry a valid id, time or signature.
    value.to_str().map_err(|_| match name {
        HEADER_WEBHOOK_TIMESTAMP => AuthError::InvalidTimestamp,
        _ => AuthError::InvalidSignature,
    })
}

fn verify_signature(
    webhooks: &[Webhook],
    tolerance_secs: u64,
    headers: &HeaderMap,
    body: &[u8],
    now_unix_secs: i64,
) -> Result<(), AuthError> {
    let id = header(headers, HEADER_WEBHOOK_ID)?;
    let timestamp = header(headers, HEADER_WEBHOOK_TIMESTAMP)?;
    let signatures = header(headers, HEADER_WEBHOOK_SIGNATURE)?;

    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| AuthError::InvalidTimestamp)?;
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    if now_unix_secs.saturating_sub(timestamp) > tolerance {
        return Err(AuthError::TimestampTooOld { tolerance_secs });
    }
    if timestamp.saturating_sub(now_unix_secs) > tolerance {
        return Err(AuthError::TimestampInFuture { tolerance_secs });
    }

    let candidates: Vec<&str> = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .map(|(_, signature)| signature)
        .collect();

    let mut matched = false;
    for webhook in webhooks {
        // `sign` (standardwebhooks 1.0.1) fails only for a body that is not UTF-8. Such a
        // body is rejected as unsigned.
        let Ok(expected) = webhook.sign(id, timestamp, body) else {
            return Err(AuthError::InvalidSignature);
        };
        let expected = expected
            .split_once(',')
            .map_or(expected.as_str(), |(_, signature)| signature);
        for candidate in &candidates {
            matched |= bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()));
        }
    }

    if matched {
        Ok(())
    } else {
        Err(AuthError::InvalidSignature)
    }
}

fn verify_bearer(token_digests: &[[u8; 32]], headers: &HeaderMap) -> Result<(), AuthError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingBearerToken)?
        .to_str()
        .map_err(|_| AuthError::InvalidBearerToken)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MissingBearerToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingBearerToken);
    }

    let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    let mut matched = false;
    for expected in token_digests {
        matched |= bool::from(digest.ct_eq(expected));
    }
    if matched {
        Ok(())
    } else {
        Err(AuthError::InvalidBearerToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use http::HeaderValue;
    use pretty_assertions::assert_eq;
    use std::time::Duration;

    const SECRET_OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECRET_NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"input_email":"jane.doe@example.com"}"#;

    fn signature_auth(secrets: &[&str], tolerance_secs: u64) -> Authenticator {
        Authenticator::new(&AuthConfig::Signature {
            secrets: secrets.iter().map(|secret| Secret::new(*secret)).collect(),
            tolerance: Duration::from_secs(tolerance_secs),
        })
    }

    fn signed_headers(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let signature = Webhook::new(secret)
            .unwrap()
            .sign(id, timestamp, body)
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_WEBHOOK_ID, HeaderValue::from_str(id).unwrap());
        headers.insert(HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_str(&signature).unwrap(),
        );
        headers
    }

    #[test]
    fn signing_key_cases() {
        assert_eq!(signing_key("whsec_AAEC"), Some(vec![0, 1, 2]));
        assert_eq!(signing_key("AAEC"), None);
        assert_eq!(signing_key("whsec_"), None);
        assert_eq!(signing_key("whsec_not base64"), None);
    }

    /// The signing scheme matches the published Standard Webhooks example.
    #[test]
    fn signature_matches_spec_example() {
        let auth = signature_auth(&[SECRET_NEW], 300);
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER_WEBHOOK_ID,
            HeaderValue::from_static("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
        );
        headers.insert(HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from(1649367553));
        headers.insert(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_static("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="),
        );
        assert_eq!(auth.verify(&headers, body, 1649367553), Ok(()));
    }

    #[test]
    fn signature_valid_with_either_secret() {
        let auth = signature_auth(&[SECRET_NEW, SECRET_OLD], 300);
        let headers = signed_headers(SECRET_OLD, "msg_1", NOW, BODY);
        assert_eq!(auth.verify(&headers, BODY, NOW), Ok(()));
        let headers = signed_headers(SECRET_NEW, "msg_1", NOW, BODY);
        assert_eq!(auth.verify(&headers, BODY, NOW), Ok(()));
    }

    #[test]
    fn signature_among_several_in_header() {
        let auth = signature_auth(&[SECRET_OLD], 300);
        let mut headers = signed_headers(SECRET_OLD, "msg_1", NOW, BODY);
        let valid = headers[HEADER_WEBHOOK_SIGNATURE]
            .to_str()
            .unwrap()
            .to_string();
        let combined = format!("v1,AAAA v2,{} {valid}", &valid[3..]);
        headers.insert(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_str(&combined).unwrap(),
        );
        assert_eq!(auth.verify(&headers, BODY, NOW), Ok(()));
    }

    #[test]
    fn signature_rejections() {
        let auth = signature_auth(&[SECRET_OLD], 300);
        let good = signed_headers(SECRET_OLD, "msg_1", NOW, BODY);

        assert_eq!(
            auth.verify(&good, br#"{"input_email":"other@example.com"}"#, NOW),
            Err(AuthError::InvalidSignature)
        );
        let other_secret = signed_headers(SECRET_NEW, "msg_1", NOW, BODY);
        assert_eq!(
            auth.verify(&other_secret, BODY, NOW),
            Err(AuthError::InvalidSignature)
        );
        let mut other_id = good.clone();
        other_id.insert(HEADER_WEBHOOK_ID, HeaderValue::from_static("msg_2"));
        assert_eq!(
            auth.verify(&other_id, BODY, NOW),
            Err(AuthError::InvalidSignature)
        );
        let mut wrong_version = good.clone();
        let valid = good[HEADER_WEBHOOK_SIGNATURE].to_str().unwrap();
        wrong_version.insert(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_str(&valid.replacen("v1,", "v1a,", 1)).unwrap(),
        );
        assert_eq!(
            auth.verify(&wrong_version, BODY, NOW),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn signature_missing_headers() {
        let auth = signature_auth(&[SECRET_OLD], 300);
        let good = signed_headers(SECRET_OLD, "msg_1", NOW, BODY);
        for name in [
            HEADER_WEBHOOK_ID,
            HEADER_WEBHOOK_TIMESTAMP,
            HEADER_WEBHOOK_SIGNATURE,
        ] {
            let mut headers = good.clone();
            headers.remove(name);
            assert_eq!(
                auth.verify(&headers, BODY, NOW),
                Err(AuthError::MissingHeader(name)),
                "without {name}"
            );
        }
    }

    #[test]
    fn signature_timestamp_tolerance() {
        let auth = signature_auth(&[SECRET_OLD], 300);
        let cases: &[(i64, Result<(), AuthError>)] = &[
            (NOW - 300, Ok(())),
            (NOW + 300, Ok(())),
            (
                NOW - 301,
                Err(AuthError::TimestampTooOld {
                    tolerance_secs: 300,
                }),
            ),
            (
                NOW + 301,
                Err(AuthError::TimestampInFuture {
                    tolerance_secs: 300,
                }),
            ),
            (
                NOW - 600,
                Err(AuthError::TimestampTooOld {
                    tolerance_secs: 300,
                }),
            ),
        ];
        for (timestamp, expected) in cases {
            let headers = signed_headers(SECRET_OLD, "msg_1", *timestamp, BODY);
            assert_eq!(
                &auth.verify(&headers, BODY, NOW),
                expected,
                "timestamp {timestamp}"
            );
        }
    }

    /// A tolerance above the crate's fixed 5 minutes is honoured.
    #[test]
    fn signature_tolerance_above_five_minutes() {
        let auth = signature_auth(&[SECRET_OLD], 900);
        let headers = signed_headers(SECRET_OLD, "msg_1", NOW - 600, BODY);
        assert_eq!(auth.verify(&headers, BODY, NOW), Ok(()));
    }

    #[test]
    fn signature_invalid_timestamp() {
        let auth = signature_auth(&[SECRET_OLD], 300);
        let mut headers = signed_headers(SECRET_OLD, "msg_1", NOW, BODY);
        headers.insert(
            HEADER_WEBHOOK_TIMESTAMP,
            HeaderValue::from_static("2024-01-01T00:00:00Z"),
        );
        assert_eq!(
            auth.verify(&headers, BODY, NOW),
            Err(AuthError::InvalidTimestamp)
        );
    }

    #[test]
    fn signature_body_not_utf8() {
        let auth = signature_auth(&[SECRET_OLD], 300);
        let headers = signed_headers(SECRET_OLD, "msg_1", NOW, BODY);
        assert_eq!(
            auth.verify(&headers, &[0xff, 0xfe], NOW),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn bearer_cases() {
        let auth = Authenticator::new(&AuthConfig::Bearer {
            tokens: vec![Secret::new("token-one"), Secret::new("token-two")],
        });
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            auth.verify(&headers, BODY, NOW)
        };
        assert_eq!(with("Bearer token-one"), Ok(()));
        assert_eq!(with("bearer token-two"), Ok(()));
        assert_eq!(
            with("Bearer token-three"),
            Err(AuthError::InvalidBearerToken)
        );
        assert_eq!(with("Bearer token-on"), Err(AuthError::InvalidBearerToken));
        assert_eq!(
            with("Basic dXNlcjpwYXNz"),
            Err(AuthError::MissingBearerToken)
        );
        assert_eq!(with("token-one"), Err(AuthError::MissingBearerToken));
        assert_eq!(
            auth.verify(&HeaderMap::new(), BODY, NOW),
            Err(AuthError::MissingBearerToken)
        );
    }

    #[test]
    fn none_accepts_everything() {
        let auth = Authenticator::new(&AuthConfig::None);
        assert_eq!(auth.verify(&HeaderMap::new(), BODY, NOW), Ok(()));
    }

    #[test]
    fn debug_hides_secrets() {
        let auth = signature_auth(&[SECRET_OLD, SECRET_NEW], 300);
        assert_eq!(
            format!("{auth:?}"),
            "Authenticator { mode: \"signature (2 secrets)\" }"
        );
    }
}
