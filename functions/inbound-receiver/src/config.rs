//! The receiver's configuration, read from the environment and validated at start-up.

use std::fmt;
use std::time::Duration;

use enrichment_runtime::config::{ConfigError, Env};
use enrichment_runtime::pubsub::topic_path;
use enrichment_runtime::server;

pub const PARTNER_ID: &str = "PARTNER_ID";
pub const RESULTS_TOPIC: &str = "RESULTS_TOPIC";
pub const AUTH_MODE: &str = "AUTH_MODE";
pub const WEBHOOK_SECRETS: &str = "WEBHOOK_SECRETS";
pub const BEARER_TOKENS: &str = "BEARER_TOKENS";
pub const SIGNATURE_TOLERANCE_SECS: &str = "SIGNATURE_TOLERANCE_SECS";
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
pub const PUBSUB_EMULATOR_HOST: &str = "PUBSUB_EMULATOR_HOST";
pub const PUBLISH_TIMEOUT_SECS: &str = "PUBLISH_TIMEOUT_SECS";

/// The variables that must be set for start-up in every auth mode. The default mode,
/// `signature`, also requires `WEBHOOK_SECRETS`, and `bearer` requires `BEARER_TOKENS`.
pub const REQUIRED_VARS: &[&str] = &["GOOGLE_CLOUD_PROJECT", PARTNER_ID, RESULTS_TOPIC];

pub const DEFAULT_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted range of `PUBLISH_TIMEOUT_SECS`. A publish that takes longer than 10 minutes has
/// failed, and the partner's HTTP client gives up long before that.
pub const MIN_PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_PUBLISH_TIMEOUT: Duration = Duration::from_secs(600);

/// Shortest accepted signing key of a `WEBHOOK_SECRETS` entry, in bytes after base64
/// decoding. Shorter keys can be guessed; generated secrets have 24 to 32 bytes.
pub const MIN_SIGNING_KEY_BYTES: usize = 16;

/// Largest accepted `MAX_BODY_BYTES`: Pub/Sub's limit on one message is 10 MB.
pub const MAX_BODY_BYTES_LIMIT: usize = 10_000_000;

pub use enrichment_runtime::config::MAX_PARTNER_ID_CHARS;

/// The receiver's configuration. Debug output hides the secrets and tokens.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen port (`PORT`, default 8080). Unused under AWS Lambda.
    pub port: u16,
    /// `GOOGLE_CLOUD_PROJECT`.
    pub project: String,
    /// The partner this instance serves (`PARTNER_ID`), written into every record.
    pub partner_id: String,
    /// Full `projects/P/topics/T` path built from `RESULTS_TOPIC`.
    pub results_topic: String,
    /// Authentication of callbacks (`AUTH_MODE` and its secrets).
    pub auth: AuthConfig,
    /// Largest accepted request body in bytes (`MAX_BODY_BYTES`, default 65536).
    pub max_body_bytes: usize,
    /// Base URL of the Pub/Sub emulator from `PUBSUB_EMULATOR_HOST`, if set.
    pub pubsub_emulator: Option<String>,
    /// Time limit of one publish (`PUBLISH_TIMEOUT_SECS`, 1 to 600 s, default 10 s).
    pub publish_timeout: Duration,
}

/// Authentication mode for callbacks.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// Standard Webhooks signatures (`AUTH_MODE=signature`, the default).
    Signature {
        /// `WEBHOOK_SECRETS`, tried in order so a secret can be rotated.
        secrets: Vec<Secret>,
        /// Largest accepted distance between `webhook-timestamp` and the clock, in either
        /// direction (`SIGNATURE_TOLERANCE_SECS`, default 300 s).
        tolerance: Duration,
    },
    /// `Authorization: Bearer <token>` (`AUTH_MODE=bearer`), any of `BEARER_TOKENS`.
    Bearer { tokens: Vec<Secret> },
    /// No authentication (`AUTH_MODE=none`), for local runs only.
    None,
}

impl AuthConfig {
    /// Returns the `AUTH_MODE` value this configuration came from.
    pub fn mode(&self) -> &'static str {
        match self {
            AuthConfig::Signature { .. } => "signature",
            AuthConfig::Bearer { .. } => "bearer",
            AuthConfig::None => "none",
        }
    }
}

/// A secret string whose Debug output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::from_env_with(&Env::process())
    }

    /// Reads the configuration from `env`. The first missing or invalid variable is the error.
    pub fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let port = server::port_from_env(env)?;
        let project = env.google_cloud_project()?;
        let partner_id = env.partner_id()?;

        let topic = env.required(RESULTS_TOPIC)?;
        let results_topic = topic_path(&project, &topic).map_err(|_| {
            ConfigError::invalid(
                RESULTS_TOPIC,
                &topic,
                "a topic id (3 to 255 characters, starting with a letter) or \
                 projects/PROJECT/topics/TOPIC",
            )
        })?;

        let auth = read_auth(env)?;

        let max_body_bytes = env.parse_or(MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)?;
        if max_body_bytes == 0 || max_body_bytes > MAX_BODY_BYTES_LIMIT {
            return Err(ConfigError::invalid(
                MAX_BODY_BYTES,
                &max_body_bytes.to_string(),
                format!("a number of bytes from 1 to {MAX_BODY_BYTES_LIMIT}"),
            ));
        }

        let pubsub_emulator = env.emulator_endpoint(PUBSUB_EMULATOR_HOST)?;
        let publish_timeout = env.duration_secs_in(
            PUBLISH_TIMEOUT_SECS,
            DEFAULT_PUBLISH_TIMEOUT,
            MIN_PUBLISH_TIMEOUT,
            MAX_PUBLISH_TIMEOUT,
        )?;

        Ok(Config {
            port,
            project,
            partner_id,
            results_topic,
            auth,
            max_body_bytes,
            pubsub_emulator,
            publish_timeout,
        })
    }
}

fn read_auth(env: &Env) -> Result<AuthConfig, ConfigError> {
    let mode = env
        .optional(AUTH_MODE)?
        .unwrap_or_else(|| "signature".to_string());

    match mode.trim().to_ascii_lowercase().as_str() {
        "signature" => {
            let secrets = read_webhook_secrets(env)?;
            let tolerance =
                env.duration_secs(SIGNATURE_TOLERANCE_SECS, DEFAULT_SIGNATURE_TOLERANCE)?;
            Ok(AuthConfig::Signature { secrets, tolerance })
        }
        "bearer" => {
            let value = env.optional(BEARER_TOKENS)?.ok_or_else(|| {
                ConfigError::missing(
                    BEARER_TOKENS,
                    "one or more space-separated tokens when AUTH_MODE=bearer",
                )
            })?;
            let tokens = value.split_whitespace().map(Secret::new).collect();
            Ok(AuthConfig::Bearer { tokens })
        }
        "none" => Ok(AuthConfig::None),
        _ => Err(ConfigError::invalid(
            AUTH_MODE,
            &mode,
            "signature, bearer or none",
        )),
    }
}

/// Reads `WEBHOOK_SECRETS`: space-separated `whsec_` secrets whose rest is standard base64 of
/// a key of at least [`MIN_SIGNING_KEY_BYTES`] bytes.
fn read_webhook_secrets(env: &Env) -> Result<Vec<Secret>, ConfigError> {
    let value = env.optional(WEBHOOK_SECRETS)?.ok_or_else(|| {
        ConfigError::missing(
            WEBHOOK_SECRETS,
            "one or more space-separated whsec_ secrets when AUTH_MODE=signature",
        )
    })?;

    let mut secrets = Vec::new();
    for (index, secret) in value.split_whitespace().enumerate() {
        let Some(key) = crate::auth::signing_key(secret) else {
            return Err(ConfigError::invalid_secret(
                WEBHOOK_SECRETS,
                format!(
                    "entry {} to be whsec_ followed by non-empty standard base64",
                    index + 1
                ),
            ));
        };
        if key.len() < MIN_SIGNING_KEY_BYTES {
            return Err(ConfigError::invalid_secret(
                WEBHOOK_SECRETS,
                format!(
                    "entry {} to hold a key of at least {MIN_SIGNING_KEY_BYTES} bytes, but it \
                     holds {} bytes",
                    index + 1,
                    key.len()
                ),
            ));
        }
        secrets.push(Secret::new(secret));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECRET_B: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("GOOGLE_CLOUD_PROJECT", "test-project"),
            (PARTNER_ID, "acme"),
            (RESULTS_TOPIC, "enrichment-results"),
            (WEBHOOK_SECRETS, SECRET_A),
        ]
    }

    fn read(overrides: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = base();
        pairs.extend_from_slice(overrides);
        Config::from_env_with(&Env::from_pairs(pairs))
    }

    #[test]
    fn required_vars_each_stop_start_up() {
        let names: Vec<&str> = base()
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| *name != WEBHOOK_SECRETS)
            .collect();
        assert_eq!(names, REQUIRED_VARS.to_vec());

        for missing in REQUIRED_VARS {
            let pairs = base().into_iter().filter(|(name, _)| name != missing);
            let error = Config::from_env_with(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(error.variable(), *missing, "{error}");
        }
    }

    #[test]
    fn defaults() {
        let config = read(&[]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.project, "test-project");
        assert_eq!(config.partner_id, "acme");
        assert_eq!(
            config.results_topic,
            "projects/test-project/topics/enrichment-results"
        );
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(config.pubsub_emulator, None);
        assert_eq!(config.publish_timeout, Duration::from_secs(10));
        match config.auth {
            AuthConfig::Signature { secrets, tolerance } => {
                assert_eq!(secrets, vec![Secret::new(SECRET_A)]);
                assert_eq!(tolerance, Duration::from_secs(300));
            }
            other => panic!("expected signature mode, got {other:?}"),
        }
    }

    #[test]
    fn all_variables_set() {
        let config = read(&[
            ("PORT", "9000"),
            (RESULTS_TOPIC, "projects/other/topics/results"),
            (
                WEBHOOK_SECRETS,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            ),
            (SIGNATURE_TOLERANCE_SECS, "60"),
            (MAX_BODY_BYTES, "1024"),
            (PUBSUB_EMULATOR_HOST, "127.0.0.1:8085"),
            (PUBLISH_TIMEOUT_SECS, "2.5"),
        ])
        .unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.results_topic, "projects/other/topics/results");
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(
            config.pubsub_emulator.as_deref(),
            Some("http://127.0.0.1:8085")
        );
        assert_eq!(config.publish_timeout, Duration::from_millis(2500));
        match config.auth {
            AuthConfig::Signature { secrets, tolerance } => {
                assert_eq!(secrets, vec![Secret::new(SECRET_A), Secret::new(SECRET_B)]);
                assert_eq!(tolerance, Duration::from_secs(60));
            }
            other => panic!("expected signature mode, got {other:?}"),
        }
    }

    #[test]
    fn bearer_and_none_modes() {
        let config = read(&[(AUTH_MODE, "bearer"), (BEARER_TOKENS, "t1 t2")]).unwrap();
        match config.auth {
            AuthConfig::Bearer { tokens } => {
                assert_eq!(tokens, vec![Secret::new("t1"), Secret::new("t2")])
            }
            other => panic!("expected bearer mode, got {other:?}"),
        }

        let config = read(&[(AUTH_MODE, "none"), (WEBHOOK_SECRETS, "")]).unwrap();
        assert_eq!(config.auth.mode(), "none");
    }

    /// Each bad value stops start-up with an error naming its variable.
    #[test]
    fn invalid_values_name_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("PORT", "80x")], "PORT"),
            (&[("GOOGLE_CLOUD_PROJECT", "")], "GOOGLE_CLOUD_PROJECT"),
            (&[(PARTNER_ID, "")], PARTNER_ID),
            (&[(PARTNER_ID, "acme/evil")], PARTNER_ID),
            (&[(RESULTS_TOPIC, "")], RESULTS_TOPIC),
            (&[(RESULTS_TOPIC, "x")], RESULTS_TOPIC),
            (&[(AUTH_MODE, "hmac")], AUTH_MODE),
            (&[(WEBHOOK_SECRETS, "")], WEBHOOK_SECRETS),
            (&[(WEBHOOK_SECRETS, "plain-token")], WEBHOOK_SECRETS),
            (&[(WEBHOOK_SECRETS, "whsec_!!!")], WEBHOOK_SECRETS),
            (&[(WEBHOOK_SECRETS, "whsec_")], WEBHOOK_SECRETS),
            (&[(AUTH_MODE, "bearer")], BEARER_TOKENS),
            (&[(SIGNATURE_TOLERANCE_SECS, "0")], SIGNATURE_TOLERANCE_SECS),
            (&[(MAX_BODY_BYTES, "0")], MAX_BODY_BYTES),
            (&[(MAX_BODY_BYTES, "-1")], MAX_BODY_BYTES),
            (&[(MAX_BODY_BYTES, "20000000")], MAX_BODY_BYTES),
            (&[(PUBSUB_EMULATOR_HOST, "localhost")], PUBSUB_EMULATOR_HOST),
            (&[(PUBLISH_TIMEOUT_SECS, "soon")], PUBLISH_TIMEOUT_SECS),
            (&[(PUBLISH_TIMEOUT_SECS, "0.5")], PUBLISH_TIMEOUT_SECS),
            (&[(PUBLISH_TIMEOUT_SECS, "601")], PUBLISH_TIMEOUT_SECS),
            (&[(PUBLISH_TIMEOUT_SECS, "1e12")], PUBLISH_TIMEOUT_SECS),
            (&[(PUBLISH_TIMEOUT_SECS, "1e19")], PUBLISH_TIMEOUT_SECS),
            (
                &[(SIGNATURE_TOLERANCE_SECS, "1e19")],
                SIGNATURE_TOLERANCE_SECS,
            ),
            (&[(WEBHOOK_SECRETS, "whsec_QQ==")], WEBHOOK_SECRETS),
        ];
        for (overrides, variable) in cases {
            let mut pairs = base();
            pairs.retain(|(name, _)| !overrides.iter().any(|(key, _)| key == name));
            pairs.extend(overrides.iter().copied());
            let err = Config::from_env_with(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.variable(), *variable, "overrides {overrides:?}");
            assert!(
                err.to_string().starts_with(variable),
                "message {err} for {overrides:?}"
            );
        }
    }

    #[test]
    fn secret_errors_hide_value() {
        let err = read(&[(
            WEBHOOK_SECRETS,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_not*base64",
        )])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "WEBHOOK_SECRETS is invalid (value hidden because it is a secret): expected entry 2 \
             to be whsec_ followed by non-empty standard base64"
        );
    }

    #[test]
    fn publish_timeout_limits() {
        let config = read(&[(PUBLISH_TIMEOUT_SECS, "600")]).unwrap();
        assert_eq!(config.publish_timeout, Duration::from_secs(600));
        let config = read(&[(PUBLISH_TIMEOUT_SECS, "1")]).unwrap();
        assert_eq!(config.publish_timeout, Duration::from_secs(1));

        let err = read(&[(PUBLISH_TIMEOUT_SECS, "1e12")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PUBLISH_TIMEOUT_SECS=\"1e12\" is invalid: expected a number of seconds from 1 to \
             600, such as 10 or 2.5"
        );
    }

    #[test]
    fn short_signing_key_rejected() {
        // 15 bytes of key: one short of the minimum.
        let err = read(&[(
            WEBHOOK_SECRETS,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_MDEyMzQ1Njc4OWFiY2Rl",
        )])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "WEBHOOK_SECRETS is invalid (value hidden because it is a secret): expected entry 2 \
             to hold a key of at least 16 bytes, but it holds 15 bytes"
        );

        // 16 bytes of key: accepted.
        let config = read(&[(WEBHOOK_SECRETS, "whsec_MDEyMzQ1Njc4OWFiY2RlZg==")]).unwrap();
        assert_eq!(config.auth.mode(), "signature");
    }

    #[test]
    fn debug_hides_secrets() {
        let config = read(&[]).unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{debug}"
        );
        assert!(debug.contains("Secret([redacted])"), "{debug}");

        let config = read(&[(AUTH_MODE, "bearer"), (BEARER_TOKENS, "token-123")]).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("token-123"), "{debug}");
    }
}
