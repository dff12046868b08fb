//! The sender's configuration, read from environment variables and validated at start-up.

use std::fmt;
use std::time::Duration;

use base64::Engine;

use enrichment_runtime::config::{ConfigError, Env};

pub const PORT: &str = "PORT";
pub const GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
pub const PARTNER_ID: &str = "PARTNER_ID";
pub const PARTNER_WEBHOOK_URL: &str = "PARTNER_WEBHOOK_URL";
pub const PARTNER_SIGNING_SECRET: &str = "PARTNER_SIGNING_SECRET";
pub const DELIVERY_QUEUE: &str = "DELIVERY_QUEUE";
pub const CLOUD_TASKS_QUEUE: &str = "CLOUD_TASKS_QUEUE";
pub const DELIVER_URL: &str = "DELIVER_URL";
pub const DELIVER_SERVICE_ACCOUNT: &str = "DELIVER_SERVICE_ACCOUNT";
pub const REQUEST_TIMEOUT_SECS: &str = "REQUEST_TIMEOUT_SECS";
pub const MAX_RETRIES: &str = "MAX_RETRIES";
pub const RETRY_BASE_DELAY_SECS: &str = "RETRY_BASE_DELAY_SECS";
pub const RETRY_JITTER: &str = "RETRY_JITTER";
pub const MIN_REQUEST_INTERVAL_MS: &str = "MIN_REQUEST_INTERVAL_MS";
pub const INPUT_PREFIX: &str = "INPUT_PREFIX";
pub const STATE_BUCKET: &str = "STATE_BUCKET";
pub const BIGQUERY_DATASET: &str = "BIGQUERY_DATASET";
pub const DELIVERIES_TABLE: &str = "DELIVERIES_TABLE";
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";
pub const BIGQUERY_EMULATOR_HOST: &str = "BIGQUERY_EMULATOR_HOST";

/// The variables that must be set for start-up with the default queue, `cloud-tasks`.
/// With `DELIVERY_QUEUE=local` the three Cloud Tasks variables may be left unset.
pub const REQUIRED_VARS: &[&str] = &[
    GOOGLE_CLOUD_PROJECT,
    PARTNER_ID,
    PARTNER_WEBHOOK_URL,
    CLOUD_TASKS_QUEUE,
    DELIVER_URL,
    DELIVER_SERVICE_ACCOUNT,
];

pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_secs(2);
pub const DEFAULT_MIN_REQUEST_INTERVAL: Duration = Duration::from_millis(1000);
pub const DEFAULT_INPUT_PREFIX: &str = "incoming/";
pub const DEFAULT_BIGQUERY_DATASET: &str = "enrichment";
pub const DEFAULT_DELIVERIES_TABLE: &str = "deliveries";

/// Upper bound of `MAX_RETRIES`: Cloud Tasks allows at most 100 attempts per task.
const MAX_RETRIES_LIMIT: u32 = 99;
/// Upper bound of `REQUEST_TIMEOUT_SECS`: a Cloud Tasks HTTP dispatch deadline is at most
/// 30 minutes, and the deadline adds a margin to the timeout.
const REQUEST_TIMEOUT_LIMIT: Duration = Duration::from_secs(29 * 60);
/// Lower bound of `REQUEST_TIMEOUT_SECS`. Below about 100 ms even a TLS handshake with a
/// nearby server rarely completes, so every request would time out; 0.1 s still lets tests use
/// short timeouts.
const REQUEST_TIMEOUT_MIN: Duration = Duration::from_millis(100);
/// Upper bound of `MIN_REQUEST_INTERVAL_MS`: one hour. A longer gap is almost surely a typing
/// mistake, and values near `u64::MAX` overflow the pacing arithmetic.
const MIN_REQUEST_INTERVAL_LIMIT_MS: u64 = 60 * 60 * 1000;
/// Shortest signing key, in bytes after base64 decoding. An HMAC-SHA256 key this short is
/// already weak; Standard Webhooks secrets are usually 24 to 64 bytes.
const MIN_SIGNING_KEY_BYTES: usize = 16;

/// The delivery queue (`DELIVERY_QUEUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueConfig {
    /// Cloud Tasks: one HTTP task per email, dispatched to this service's `/deliver`.
    CloudTasks(CloudTasksConfig),
    /// The in-process paced queue, for the local stack and tests.
    Local,
}

/// Settings of the Cloud Tasks queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudTasksConfig {
    /// Full queue path, `projects/P/locations/L/queues/Q` (`CLOUD_TASKS_QUEUE`).
    pub queue_path: String,
    /// This service's delivery endpoint, such as `https://sender-abc.a.run.app/deliver`
    /// (`DELIVER_URL`).
    pub deliver_url: String,
    /// Service account whose OIDC token Cloud Tasks sends to `/deliver`
    /// (`DELIVER_SERVICE_ACCOUNT`).
    pub service_account: String,
}

impl CloudTasksConfig {
    /// Returns the OIDC audience: the service URL, which is `deliver_url` without its path,
    /// because Cloud Run accepts tokens whose audience is the service URL.
    pub fn audience(&self) -> String {
        match reqwest::Url::parse(&self.deliver_url) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => self.deliver_url.clone(),
        }
    }
}

/// A Standard Webhooks signing secret (`whsec_` and base64). Its `Debug` output hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// Checks that `secret` decodes as a Standard Webhooks secret with a key of at least
    /// [`MIN_SIGNING_KEY_BYTES`] bytes.
    pub fn new(secret: impl Into<String>) -> Result<Self, ConfigError> {
        let secret = secret.into().trim().to_string();
        let invalid = || {
            ConfigError::invalid_secret(
                PARTNER_SIGNING_SECRET,
                format!(
                    "a Standard Webhooks secret: whsec_ followed by the base64 of a key of at \
                     least {MIN_SIGNING_KEY_BYTES} bytes"
                ),
            )
        };
        standardwebhooks::Webhook::new(&secret).map_err(|_| invalid())?;
        // `Webhook::new` (standardwebhooks 1.0.1) accepts an empty key, so the length is
        // checked on the same decoding: without the prefix, standard base64.
        let encoded = secret.strip_prefix("whsec_").unwrap_or(&secret);
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| invalid())?;
        if key.len() < MIN_SIGNING_KEY_BYTES {
            return Err(invalid());
        }
        Ok(Self(secret))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<hidden>)")
    }
}

/// The sender's settings. Each field names its variable; durations carry their unit in the
/// variable name.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Listen port (`PORT`, 8080).
    pub port: u16,
    /// Project of the BigQuery dataset (`GOOGLE_CLOUD_PROJECT`, required).
    pub project: String,
    /// The partner this instance serves (`PARTNER_ID`, required).
    pub partner_id: String,
    /// The partner's webhook, an http(s) URL (`PARTNER_WEBHOOK_URL`, required).
    pub partner_webhook_url: String,
    /// Secret for Standard Webhooks signatures; no signature headers when unset
    /// (`PARTNER_SIGNING_SECRET`).
    pub signing_secret: Option<SigningSecret>,
    /// `cloud-tasks` (default) or `local` (`DELIVERY_QUEUE`).
    pub queue: QueueConfig,
    /// Timeout of one partner request (`REQUEST_TIMEOUT_SECS`, 30 s; from 0.1 to 1740 s).
    pub request_timeout: Duration,
    /// Retries after the first attempt (`MAX_RETRIES`, 3).
    pub max_retries: u32,
    /// Delay before the first retry; retry `n` waits `base * 2^(n-1)`
    /// (`RETRY_BASE_DELAY_SECS`, 2 s; fractions such as 0.2 are allowed).
    pub retry_base_delay: Duration,
    /// Adds a random part of up to half the backoff to each retry delay (`RETRY_JITTER`, off).
    pub retry_jitter: bool,
    /// Minimum time between the starts of two requests to the partner, retries included
    /// (`MIN_REQUEST_INTERVAL_MS`, 1000 ms; at most one hour).
    pub min_request_interval: Duration,
    /// Only objects whose names start with this prefix are read (`INPUT_PREFIX`, `incoming/`;
    /// must not start with `/`).
    pub input_prefix: String,
    /// Bucket of the local queue's delivery records; the event's bucket when unset
    /// (`STATE_BUCKET`).
    pub state_bucket: Option<String>,
    /// BigQuery dataset (`BIGQUERY_DATASET`, `enrichment`).
    pub bigquery_dataset: String,
    /// Table of delivery rows (`DELIVERIES_TABLE`, `deliveries`).
    pub deliveries_table: String,
    /// Cloud Storage emulator as a base URL (`STORAGE_EMULATOR_HOST`).
    pub storage_emulator: Option<String>,
    /// BigQuery emulator as a base URL (`BIGQUERY_EMULATOR_HOST`).
    pub bigquery_emulator: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Env::process())
    }

    /// Reads the configuration from `env`; the first missing or invalid variable is the error.
    pub fn from_source(env: &Env) -> Result<Self, ConfigError> {
        let queue = match env.optional(DELIVERY_QUEUE)?.as_deref().map(str::trim) {
            None | Some("cloud-tasks") => QueueConfig::CloudTasks(CloudTasksConfig {
                queue_path: read_queue_path(env)?,
                deliver_url: read_url(env, DELIVER_URL)?,
                service_account: read_service_account(env)?,
            }),
            Some("local") => QueueConfig::Local,
            Some(other) => {
                return Err(ConfigError::invalid(
                    DELIVERY_QUEUE,
                    other,
                    "cloud-tasks or local",
                ));
            }
        };

        let signing_secret = env
            .optional(PARTNER_SIGNING_SECRET)?
            .map(SigningSecret::new)
            .transpose()?;

        let request_timeout = env.duration_secs(REQUEST_TIMEOUT_SECS, DEFAULT_REQUEST_TIMEOUT)?;
        if !(REQUEST_TIMEOUT_MIN..=REQUEST_TIMEOUT_LIMIT).contains(&request_timeout) {
            return Err(ConfigError::invalid(
                REQUEST_TIMEOUT_SECS,
                &request_timeout.as_secs_f64().to_string(),
                "from 0.1 to 1740 seconds: shorter requests cannot complete, and the Cloud \
                 Tasks dispatch deadline must stay under 30 minutes",
            ));
        }

        let max_retries: u32 = env.parse_or(MAX_RETRIES, DEFAULT_MAX_RETRIES)?;
        if max_retries > MAX_RETRIES_LIMIT {
            return Err(ConfigError::invalid(
                MAX_RETRIES,
                &max_retries.to_string(),
                "at most 99, since Cloud Tasks makes at most 100 attempts per task",
            ));
        }

        let interval_ms: u64 = env.parse_or(
            MIN_REQUEST_INTERVAL_MS,
            DEFAULT_MIN_REQUEST_INTERVAL.as_millis() as u64,
        )?;
        if interval_ms > MIN_REQUEST_INTERVAL_LIMIT_MS {
            return Err(ConfigError::invalid(
                MIN_REQUEST_INTERVAL_MS,
                &interval_ms.to_string(),
                "at most 3600000 milliseconds (one hour)",
            ));
        }

        Ok(Self {
            port: enrichment_runtime::server::port_from_env(env)?,
            project: env.google_cloud_project()?,
            partner_id: env.partner_id()?,
            partner_webhook_url: read_url(env, PARTNER_WEBHOOK_URL)?,
            signing_secret,
            queue,
            request_timeout,
            max_retries,
            retry_base_delay: env.duration_secs(RETRY_BASE_DELAY_SECS, DEFAULT_RETRY_BASE_DELAY)?,
            retry_jitter: read_bool(env, RETRY_JITTER, false)?,
            min_request_interval: Duration::from_millis(interval_ms),
            input_prefix: read_input_prefix(env)?,
            state_bucket: env.optional_bucket(STATE_BUCKET)?,
            bigquery_dataset: env.bigquery_id_or(BIGQUERY_DATASET, DEFAULT_BIGQUERY_DATASET)?,
            deliveries_table: env.bigquery_id_or(DELIVERIES_TABLE, DEFAULT_DELIVERIES_TABLE)?,
            storage_emulator: env.emulator_endpoint(STORAGE_EMULATOR_HOST)?,
            bigquery_emulator: env.emulator_endpoint(BIGQUERY_EMULATOR_HOST)?,
        })
    }

    /// Returns a configuration for the local queue with every default, for tests and the local
    /// stack.
    pub fn local(project: &str, partner_id: &str, partner_webhook_url: &str) -> Self {
        Self {
            port: enrichment_runtime::server::DEFAULT_PORT,
            project: project.to_string(),
            partner_id: partner_id.to_string(),
            partner_webhook_url: partner_webhook_url.to_string(),
            signing_secret: None,
            queue: QueueConfig::Local,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay: DEFAULT_RETRY_BASE_DELAY,
            retry_jitter: false,
            min_request_interval: DEFAULT_MIN_REQUEST_INTERVAL,
            input_prefix: DEFAULT_INPUT_PREFIX.to_string(),
            state_bucket: None,
            bigquery_dataset: DEFAULT_BIGQUERY_DATASET.to_string(),
            deliveries_table: DEFAULT_DELIVERIES_TABLE.to_string(),
            storage_emulator: None,
            bigquery_emulator: None,
        }
    }
}

fn read_url(env: &Env, name: &str) -> Result<String, ConfigError> {
    let value = env.required(name)?;
    let value = value.trim();
    let expected = "an absolute http:// or https:// URL";
    let url =
        reqwest::Url::parse(value).map_err(|_| ConfigError::invalid(name, value, expected))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(name, value, expected));
    }
    Ok(value.to_string())
}

/// Reads `INPUT_PREFIX`. Cloud Storage object names do not start with `/` in practice (the
/// console and `gcloud` never create such names), so a prefix starting with `/` would make
/// the sender ignore every object.
fn read_input_prefix(env: &Env) -> Result<String, ConfigError> {
    let Some(value) = env.optional(INPUT_PREFIX)? else {
        return Ok(DEFAULT_INPUT_PREFIX.to_string());
    };
    if value.starts_with('/') {
        return Err(ConfigError::invalid(
            INPUT_PREFIX,
            &value,
            "an object name prefix without a leading '/', such as incoming/",
        ));
    }
    Ok(value)
}

fn read_queue_path(env: &Env) -> Result<String, ConfigError> {
    let value = env.required(CLOUD_TASKS_QUEUE)?;
    let value = value.trim();
    let parts: Vec<&str> = value.split('/').collect();
    let valid = parts.len() == 6
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "queues"
        && [parts[1], parts[3], parts[5]]
            .iter()
            .all(|part| !part.is_empty());
    if !valid {
        return Err(ConfigError::invalid(
            CLOUD_TASKS_QUEUE,
            value,
            "a queue path projects/PROJECT/locations/LOCATION/queues/QUEUE",
        ));
    }
    Ok(value.to_string())
}

fn read_service_account(env: &Env) -> Result<String, ConfigError> {
    let value = env.required(DELIVER_SERVICE_ACCOUNT)?;
    let value = value.trim();
    let valid = value
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
        && !value.contains(char::is_whitespace);
    if !valid {
        return Err(ConfigError::invalid(
            DELIVER_SERVICE_ACCOUNT,
            value,
            "a service account email such as sender@PROJECT.iam.gserviceaccount.com",
        ));
    }
    Ok(value.to_string())
}

fn read_bool(env: &Env, name: &str, default: bool) -> Result<bool, ConfigError> {
    let Some(value) = env.optional(name)? else {
        return Ok(default);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(name, &value, "true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn production_pairs() -> Vec<(&'static str, &'static str)> {
        vec![
            (GOOGLE_CLOUD_PROJECT, "acme-prod"),
            (PARTNER_ID, "acme"),
            (
                PARTNER_WEBHOOK_URL,
                "https://partner.example.com/hooks/enrich",
            ),
            (
                CLOUD_TASKS_QUEUE,
                "projects/acme-prod/locations/europe-west1/queues/partner-acme",
            ),
            (DELIVER_URL, "https://sender-abc-ew.a.run.app/deliver"),
            (
                DELIVER_SERVICE_ACCOUNT,
                "tasks@acme-prod.iam.gserviceaccount.com",
            ),
        ]
    }

    #[test]
    fn required_vars_are_the_production_minimum() {
        let names: Vec<&str> = production_pairs().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, REQUIRED_VARS.to_vec());

        let config = Config::from_source(&Env::from_pairs(production_pairs())).unwrap();
        assert_eq!(config.project, "acme-prod");
        assert_eq!(config.partner_id, "acme");

        for missing in REQUIRED_VARS {
            let pairs = production_pairs()
                .into_iter()
                .filter(|(name, _)| name != missing);
            let error = Config::from_source(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(error.variable(), *missing, "{error}");
        }
    }

    #[test]
    fn defaults_with_production_minimum() {
        let config = Config::from_source(&Env::from_pairs(production_pairs())).unwrap();
        let expected = Config {
            port: 8080,
            project: "acme-prod".into(),
            partner_id: "acme".into(),
            partner_webhook_url: "https://partner.example.com/hooks/enrich".into(),
            signing_secret: None,
            queue: QueueConfig::CloudTasks(CloudTasksConfig {
                queue_path: "projects/acme-prod/locations/europe-west1/queues/partner-acme".into(),
                deliver_url: "https://sender-abc-ew.a.run.app/deliver".into(),
                service_account: "tasks@acme-prod.iam.gserviceaccount.com".into(),
            }),
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            retry_base_delay: Duration::from_secs(2),
            retry_jitter: false,
            min_request_interval: Duration::from_millis(1000),
            input_prefix: "incoming/".into(),
            state_bucket: None,
            bigquery_dataset: "enrichment".into(),
            deliveries_table: "deliveries".into(),
            storage_emulator: None,
            bigquery_emulator: None,
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn local_queue_needs_no_cloud_tasks_vars() {
        let env = Env::from_pairs([
            (GOOGLE_CLOUD_PROJECT, "test-project"),
            (PARTNER_ID, "acme"),
            (PARTNER_WEBHOOK_URL, "http://127.0.0.1:9/webhook"),
            (DELIVERY_QUEUE, "local"),
            (RETRY_BASE_DELAY_SECS, "0.2"),
            (MIN_REQUEST_INTERVAL_MS, "150"),
            (REQUEST_TIMEOUT_SECS, "0.5"),
            (MAX_RETRIES, "2"),
            (RETRY_JITTER, "true"),
            (PARTNER_SIGNING_SECRET, SECRET),
            (STATE_BUCKET, "state-bucket"),
            (STORAGE_EMULATOR_HOST, "127.0.0.1:4443"),
            (BIGQUERY_EMULATOR_HOST, "127.0.0.1:9050"),
            (INPUT_PREFIX, "drop/"),
        ]);

        let config = Config::from_source(&env).unwrap();
        assert_eq!(config.queue, QueueConfig::Local);
        assert_eq!(config.retry_base_delay, Duration::from_millis(200));
        assert_eq!(config.min_request_interval, Duration::from_millis(150));
        assert_eq!(config.request_timeout, Duration::from_millis(500));
        assert_eq!(config.max_retries, 2);
        assert!(config.retry_jitter);

        assert_eq!(
            config.signing_secret.as_ref().map(SigningSecret::expose),
            Some(SECRET)
        );
        assert_eq!(config.state_bucket.as_deref(), Some("state-bucket"));
        assert_eq!(
            config.storage_emulator.as_deref(),
            Some("http://127.0.0.1:4443")
        );
        assert_eq!(
            config.bigquery_emulator.as_deref(),
            Some("http://127.0.0.1:9050")
        );
        assert_eq!(config.input_prefix, "drop/");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let cases: &[(&str, &str)] = &[
            (DELIVERY_QUEUE, "pubsub"),
            (PARTNER_WEBHOOK_URL, "partner.example.com/hook"),
            (PARTNER_WEBHOOK_URL, "ftp://partner.example.com/hook"),
            (DELIVER_URL, "/deliver"),
            (CLOUD_TASKS_QUEUE, "partner-acme"),
            (CLOUD_TASKS_QUEUE, "projects/p/locations//queues/q"),
            (DELIVER_SERVICE_ACCOUNT, "tasks"),
            (PARTNER_SIGNING_SECRET, "whsec_!!!"),
            (REQUEST_TIMEOUT_SECS, "0"),
            (REQUEST_TIMEOUT_SECS, "1800"),
            (REQUEST_TIMEOUT_SECS, "1e-12"),
            (REQUEST_TIMEOUT_SECS, "0.09"),
            (PARTNER_SIGNING_SECRET, "whsec_"),
            // 15 bytes of key: one short of the minimum.
            (PARTNER_SIGNING_SECRET, "whsec_MDEyMzQ1Njc4OWFiY2Rl"),
            (MIN_REQUEST_INTERVAL_MS, "18446744073709551615"),
            (MIN_REQUEST_INTERVAL_MS, "3600001"),
            (INPUT_PREFIX, "/"),
            (INPUT_PREFIX, "/incoming/"),
            (MAX_RETRIES, "-1"),
            (MAX_RETRIES, "100"),
            (RETRY_BASE_DELAY_SECS, "soon"),
            (MIN_REQUEST_INTERVAL_MS, "1.5"),
            (RETRY_JITTER, "sometimes"),
            (PARTNER_ID, "acme partners"),
            (STATE_BUCKET, "State Bucket"),
            (BIGQUERY_DATASET, "enrichment-prod"),
            (DELIVERIES_TABLE, "deliveries;drop"),
            (STORAGE_EMULATOR_HOST, "localhost"),
            (PORT, "http"),
        ];
        for (name, value) in cases {
            let mut pairs = production_pairs();
            pairs.retain(|(existing, _)| existing != name);
            pairs.push((name, value));
            let error = Config::from_source(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(error.variable(), *name, "{name}={value:?} gave {error}");
        }
    }

    #[test]
    fn secret_is_hidden() {
        let mut pairs = production_pairs();
        pairs.push((PARTNER_SIGNING_SECRET, "whsec_not base64"));
        let error = Config::from_source(&Env::from_pairs(pairs)).unwrap_err();
        assert!(!error.to_string().contains("not base64"), "{error}");

        let secret = SigningSecret::new(SECRET).unwrap();
        assert_eq!(format!("{secret:?}"), "SigningSecret(<hidden>)");
    }

    #[test]
    fn signing_key_minimum_is_16_bytes() {
        let sixteen_bytes = "whsec_MDEyMzQ1Njc4OWFiY2RlZg==";
        let secret = SigningSecret::new(sixteen_bytes).unwrap();
        assert_eq!(secret.expose(), sixteen_bytes);

        let error = SigningSecret::new("whsec_").unwrap_err();
        assert_eq!(
            error.to_string(),
            "PARTNER_SIGNING_SECRET is invalid (value hidden because it is a secret): expected a \
             Standard Webhooks secret: whsec_ followed by the base64 of a key of at least 16 bytes"
        );
    }

    #[test]
    fn audience_is_service_url() {
        let config = CloudTasksConfig {
            queue_path: "projects/p/locations/l/queues/q".into(),
            deliver_url: "https://sender-abc-ew.a.run.app/deliver".into(),
            service_account: "a@p.iam.gserviceaccount.com".into(),
        };
        assert_eq!(config.audience(), "https://sender-abc-ew.a.run.app");
    }
}
