//! Typed reads of environment variables, with errors that name the variable, the rejected value
//! and what was expected.
//!
//! An empty or all-whitespace value counts as unset, because deployment tools often write an
//! empty string for "no value".
//!
//! Code that reads its configuration takes an [`Env`], so tests can pass a fixed map instead of
//! changing the process environment. The free functions read the process environment.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// The variable that names the Google Cloud project.
pub const GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
pub const PARTNER_ID: &str = "PARTNER_ID";

const BUCKET_EXPECTED: &str = "a Cloud Storage bucket name such as my-archive (without gs://)";

/// Longest accepted `PARTNER_ID`, in characters.
pub const MAX_PARTNER_ID_CHARS: usize = 64;

/// A configuration value that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: expected {expected}")]
    Missing { name: String, expected: String },
    #[error("{name}={value:?} is invalid: expected {expected}")]
    Invalid {
        name: String,
        value: String,
        expected: String,
    },
    /// An invalid secret. The value is left out so that it cannot reach a log.
    #[error("{name} is invalid (value hidden because it is a secret): expected {expected}")]
    InvalidSecret { name: String, expected: String },
}

impl ConfigError {
    /// Builds a [`ConfigError::Invalid`] for a value of variable `name`.
    pub fn invalid(name: &str, value: &str, expected: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// Builds a [`ConfigError::InvalidSecret`], which never carries the value.
    pub fn invalid_secret(name: &str, expected: impl Into<String>) -> Self {
        ConfigError::InvalidSecret {
            name: name.to_string(),
            expected: expected.into(),
        }
    }

    /// Builds a [`ConfigError::Missing`].
    pub fn missing(name: &str, expected: impl Into<String>) -> Self {
        ConfigError::Missing {
            name: name.to_string(),
            expected: expected.into(),
        }
    }

    /// Returns the name of the variable at fault.
    pub fn variable(&self) -> &str {
        match self {
            ConfigError::Missing { name, .. }
            | ConfigError::Invalid { name, .. }
            | ConfigError::InvalidSecret { name, .. } => name,
        }
    }
}

/// Source of configuration values: the process environment or a fixed map.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `None` reads the process environment.
    fixed: Option<BTreeMap<String, String>>,
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Env { fixed: None }
    }

    /// Reads only the given pairs; every other variable is unset.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let fixed = pairs
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        Env { fixed: Some(fixed) }
    }

    /// Returns the value of `name`, or `None` when it is unset or blank.
    ///
    /// A value that is not valid UTF-8 is an error (its bytes are not shown).
    pub fn optional(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let value = match &self.fixed {
            Some(map) => map.get(name).cloned(),
            None => match std::env::var(name) {
                Ok(value) => Some(value),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(ConfigError::invalid_secret(name, "valid UTF-8 text"));
                }
            },
        };
        Ok(value.filter(|value| !value.trim().is_empty()))
    }

    /// Returns the value of `name`, or an error when it is unset or blank.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name)?
            .ok_or_else(|| ConfigError::missing(name, "a non-empty value"))
    }

    /// Parses `name` with [`FromStr`] after trimming it, or returns `default` when it is unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name)? {
            None => Ok(default),
            Some(value) => value.trim().parse::<T>().map_err(|err| {
                let expected = format!("a value of type {} ({err})", short_type_name::<T>());
                ConfigError::invalid(name, &value, expected)
            }),
        }
    }

    /// Reads a positive number of seconds (such as `10` or `2.5`) of at most
    /// [`MAX_DURATION`], or returns `default` when `name` is unset.
    pub fn duration_secs(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(value) = self.optional(name)? else {
            return Ok(default);
        };
        let max_secs = MAX_DURATION.as_secs();
        let expected = format!("a positive number of seconds up to {max_secs}, such as 10 or 2.5");
        let duration = parse_positive_secs(&value)
            .ok_or_else(|| ConfigError::invalid(name, &value, expected.clone()))?;
        if duration > MAX_DURATION {
            return Err(ConfigError::invalid(name, &value, expected));
        }
        Ok(duration)
    }

    /// Reads a number of seconds from `min` to `max` (both included), or returns `default`
    /// when `name` is unset. A `min` of zero still rejects zero and negative values.
    pub fn duration_secs_in(
        &self,
        name: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = self.optional(name)? else {
            return Ok(default);
        };
        let expected = format!(
            "a number of seconds from {} to {}, such as 10 or 2.5",
            min.as_secs_f64(),
            max.as_secs_f64()
        );
        let duration = parse_positive_secs(&value)
            .filter(|duration| (min..=max).contains(duration))
            .ok_or_else(|| ConfigError::invalid(name, &value, expected))?;
        Ok(duration)
    }

    /// Reads an emulator address such as `PUBSUB_EMULATOR_HOST` and returns it as a base URL,
    /// or `None` when it is unset. See [`emulator_url`].
    pub fn emulator_endpoint(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.optional(name)? {
            None => Ok(None),
            Some(value) => emulator_url(&value)
                .map(Some)
                .ok_or_else(|| ConfigError::invalid(name, &value, EMULATOR_EXPECTED)),
        }
    }

    /// Reads `GOOGLE_CLOUD_PROJECT`, which must be set.
    pub fn google_cloud_project(&self) -> Result<String, ConfigError> {
        let value = self.required(GOOGLE_CLOUD_PROJECT)?;
        let project = value.trim();
        let valid = project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'));
        if !valid {
            return Err(ConfigError::invalid(
                GOOGLE_CLOUD_PROJECT,
                &value,
                "a project id such as my-project (letters, digits, '-', '.', ':')",
            ));
        }
        Ok(project.to_string())
    }

    /// Reads `PARTNER_ID`, which appears in Cloud Storage paths and message attributes, so it is
    /// limited to letters, digits, `.`, `_` and `-`.
    pub fn partner_id(&self) -> Result<String, ConfigError> {
        let value = self.required(PARTNER_ID)?;
        let partner_id = value.trim();
        let valid = partner_id.chars().count() <= MAX_PARTNER_ID_CHARS
            && partner_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(ConfigError::invalid(
                PARTNER_ID,
                &value,
                format!("up to {MAX_PARTNER_ID_CHARS} letters, digits, '.', '_' or '-'"),
            ));
        }
        Ok(partner_id.to_string())
    }

    /// Reads a BigQuery dataset or table id (letters, digits and underscores, at most 1,024
    /// characters), or returns `default` when the variable is unset.
    pub fn bigquery_id_or(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let Some(value) = self.optional(name)? else {
            return Ok(default.to_string());
        };
        let id = value.trim();
        let valid = id.len() <= 1024 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ConfigError::invalid(
                name,
                &value,
                "a BigQuery id of letters, digits and underscores, such as enrichment",
            ));
        }
        Ok(id.to_string())
    }

    /// Reads a required Cloud Storage bucket name (see [`Env::optional_bucket`]).
    pub fn bucket(&self, name: &str) -> Result<String, ConfigError> {
        match self.optional_bucket(name)? {
            Some(bucket) => Ok(bucket),
            None => Err(ConfigError::missing(name, BUCKET_EXPECTED)),
        }
    }

    /// Reads a bucket name: 3 to 222 characters of lowercase letters, digits, `-`, `_` and `.`,
    /// starting and ending with a letter or digit (Cloud Storage naming rules).
    pub fn optional_bucket(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.optional(name)? else {
            return Ok(None);
        };
        let bucket = value.trim();
        let allowed = bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        let ends_alphanumeric =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid = (3..=222).contains(&bucket.len())
            && allowed
            && ends_alphanumeric(bucket.chars().next())
            && ends_alphanumeric(bucket.chars().last());
        if !valid {
            return Err(ConfigError::invalid(name, &value, BUCKET_EXPECTED));
        }
        Ok(Some(bucket.to_string()))
    }
}

/// Maximum duration that [`Env::duration_secs`] accepts: one day. Longer values are almost surely
/// mistakes, and values near `u64::MAX` seconds make timers and `Instant` arithmetic panic.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses a finite, positive number of seconds such as `10` or `2.5`, ignoring surrounding
/// whitespace.
fn parse_positive_secs(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !(secs.is_finite() && secs > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

const EMULATOR_EXPECTED: &str = "host:port, such as 127.0.0.1:8085, optionally with http://";

/// Turns an emulator address into a base URL without a trailing slash.
///
/// Google's tools set `PUBSUB_EMULATOR_HOST` to `host:port` without a scheme, while
/// `STORAGE_EMULATOR_HOST` often carries `http://`. Both forms give `http://host:port`, and an
/// explicit `https://` is kept. Returns `None` for anything else, such as a path or a missing
/// port.
pub fn emulator_url(value: &str) -> Option<String> {
    let value = value.trim().trim_end_matches('/');
    let (scheme, authority) = match value.split_once("://") {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => (scheme, rest),
        Some(_) => return None,
        None => ("http", value),
    };

    let (host, port) = authority.rsplit_once(':')?;
    let host_valid = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !host_valid || port.parse::<u16>().is_err() {
        return None;
    }
    Some(format!("{scheme}://{host}:{port}"))
}

/// Returns the value of `name` from the process environment, or `None` when it is unset or blank.
pub fn optional(name: &str) -> Result<Option<String>, ConfigError> {
    Env::process().optional(name)
}

/// Returns the value of `name` from the process environment, or an error when it is unset.
pub fn required(name: &str) -> Result<String, ConfigError> {
    Env::process().required(name)
}

/// Parses `name` from the process environment, or returns `default` when it is unset.
pub fn env_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    Env::process().parse_or(name, default)
}

/// Reads a positive number of seconds, at most [`MAX_DURATION`], from the process environment.
pub fn duration_secs(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    Env::process().duration_secs(name, default)
}

/// Reads a number of seconds from `min` to `max` from the process environment.
pub fn duration_secs_in(
    name: &str,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    Env::process().duration_secs_in(name, default, min, max)
}

/// Reads an emulator address from the process environment as a base URL.
pub fn emulator_endpoint(name: &str) -> Result<Option<String>, ConfigError> {
    Env::process().emulator_endpoint(name)
}

/// Reads `GOOGLE_CLOUD_PROJECT` from the process environment.
pub fn google_cloud_project() -> Result<String, ConfigError> {
    Env::process().google_cloud_project()
}

/// Returns the last path segment of a type name, so messages show `u16`, not `core::u16`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn optional_treats_blank_as_unset() {
        let env = env(&[("A", ""), ("B", "  "), ("C", " x ")]);
        assert_eq!(env.optional("A"), Ok(None));
        assert_eq!(env.optional("B"), Ok(None));
        assert_eq!(env.optional("C"), Ok(Some(" x ".to_string())));
        assert_eq!(env.optional("D"), Ok(None));
    }

    #[test]
    fn required_names_missing_variable() {
        let err = env(&[]).required("PARTNER_ID").unwrap_err();
        assert_eq!(
            err.to_string(),
            "PARTNER_ID is not set: expected a non-empty value"
        );
        assert_eq!(err.variable(), "PARTNER_ID");
    }

    #[test]
    fn parse_or_uses_default_and_parses() {
        let env = env(&[("PORT", " 9090 "), ("BAD", "80a")]);
        assert_eq!(env.parse_or("PORT", 8080u16), Ok(9090));
        assert_eq!(env.parse_or("UNSET", 8080u16), Ok(8080));
        let err = env.parse_or("BAD", 8080u16).unwrap_err();
        assert_eq!(
            err.to_string(),
            "BAD=\"80a\" is invalid: expected a value of type u16 (invalid digit found in string)"
        );
    }

    #[test]
    fn duration_secs_cases() {
        let cases: &[(&str, Result<Duration, ()>)] = &[
            ("10", Ok(Duration::from_secs(10))),
            ("2.5", Ok(Duration::from_millis(2500))),
            (" 1 ", Ok(Duration::from_secs(1))),
            ("0", Err(())),
            ("-1", Err(())),
            ("NaN", Err(())),
            ("inf", Err(())),
            ("ten", Err(())),
            ("86400", Ok(Duration::from_secs(86_400))),
            ("86400.5", Err(())),
            ("1e12", Err(())),
            ("1e19", Err(())),
            ("1e300", Err(())),
        ];
        for (value, expected) in cases {
            let got = env(&[("T", value)]).duration_secs("T", Duration::from_secs(3));
            match expected {
                Ok(duration) => assert_eq!(got, Ok(*duration), "value {value:?}"),
                Err(()) => assert_eq!(
                    got,
                    Err(ConfigError::invalid(
                        "T",
                        value,
                        "a positive number of seconds up to 86400, such as 10 or 2.5"
                    )),
                    "value {value:?}"
                ),
            }
        }
        assert_eq!(
            env(&[]).duration_secs("T", Duration::from_secs(3)),
            Ok(Duration::from_secs(3))
        );
    }

    #[test]
    fn duration_secs_in_range() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(600);
        let cases: &[(&str, Result<Duration, ()>)] = &[
            ("1", Ok(Duration::from_secs(1))),
            ("2.5", Ok(Duration::from_millis(2500))),
            ("600", Ok(Duration::from_secs(600))),
            ("0.5", Err(())),
            ("0", Err(())),
            ("-5", Err(())),
            ("600.001", Err(())),
            ("1e12", Err(())),
            ("1e19", Err(())),
            ("inf", Err(())),
            ("soon", Err(())),
        ];
        for (value, expected) in cases {
            let got = env(&[("T", value)]).duration_secs_in("T", Duration::from_secs(10), min, max);
            match expected {
                Ok(duration) => assert_eq!(got, Ok(*duration), "value {value:?}"),
                Err(()) => assert_eq!(
                    got,
                    Err(ConfigError::invalid(
                        "T",
                        value,
                        "a number of seconds from 1 to 600, such as 10 or 2.5"
                    )),
                    "value {value:?}"
                ),
            }
        }
        assert_eq!(
            env(&[]).duration_secs_in("T", Duration::from_secs(10), min, max),
            Ok(Duration::from_secs(10))
        );
    }

    #[test]
    fn emulator_url_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1:8085", Some("http://127.0.0.1:8085")),
            ("localhost:8085", Some("http://localhost:8085")),
            ("http://127.0.0.1:4443", Some("http://127.0.0.1:4443")),
            ("http://127.0.0.1:4443/", Some("http://127.0.0.1:4443")),
            (
                "https://emulator.test:443",
                Some("https://emulator.test:443"),
            ),
            ("[::1]:8085", Some("http://[::1]:8085")),
            ("127.0.0.1", None),
            ("127.0.0.1:port", None),
            ("127.0.0.1:70000", None),
            ("ftp://127.0.0.1:21", None),
            ("http://127.0.0.1:8085/path", None),
            (":8085", None),
        ];
        for (value, expected) in cases {
            assert_eq!(emulator_url(value).as_deref(), *expected, "value {value:?}");
        }
    }

    #[test]
    fn emulator_endpoint_names_variable() {
        let env = env(&[("PUBSUB_EMULATOR_HOST", "nohostport")]);
        let err = env.emulator_endpoint("PUBSUB_EMULATOR_HOST").unwrap_err();
        assert_eq!(
            err.to_string(),
            "PUBSUB_EMULATOR_HOST=\"nohostport\" is invalid: expected host:port, such as \
             127.0.0.1:8085, optionally with http://"
        );
        assert_eq!(
            Env::from_pairs([("X", "")]).emulator_endpoint("X"),
            Ok(None)
        );
    }

    #[test]
    fn google_cloud_project_cases() {
        assert_eq!(
            env(&[("GOOGLE_CLOUD_PROJECT", " test-project ")]).google_cloud_project(),
            Ok("test-project".to_string())
        );
        assert_eq!(
            env(&[]).google_cloud_project(),
            Err(ConfigError::missing(
                "GOOGLE_CLOUD_PROJECT",
                "a non-empty value"
            ))
        );
        let err = env(&[("GOOGLE_CLOUD_PROJECT", "projects/p")])
            .google_cloud_project()
            .unwrap_err();
        assert_eq!(err.variable(), "GOOGLE_CLOUD_PROJECT");
    }

    #[test]
    fn invalid_secret_hides_value() {
        let err = ConfigError::invalid_secret("WEBHOOK_SECRETS", "whsec_ followed by base64");
        assert_eq!(
            err.to_string(),
            "WEBHOOK_SECRETS is invalid (value hidden because it is a secret): expected whsec_ \
             followed by base64"
        );
    }
}
