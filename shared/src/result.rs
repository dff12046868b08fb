//! The inbound enrichment result: normalisation and validation of a partner's callback body.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::email::{self, MAX_EMAIL_CHARS};
use crate::fields::{
    self, MAX_DOMAIN_INPUT_CHARS, MAX_NAME_CHARS, MAX_TENANT_ID_CHARS, MAX_URL_CHARS, Normalizer,
};
use crate::validation::{ErrorCode, FieldError, ValidationErrors};

/// Top-level fields with a rule of their own. Every other key goes to `extra`.
pub const KNOWN_FIELDS: [&str; 7] = [
    "input_email",
    "work_email",
    "phone_number",
    "linkedin_url",
    "name",
    "company_domain",
    "tenant_id",
];

/// Maximum number of unknown top-level fields kept in `extra`.
pub const MAX_EXTRA_FIELDS: usize = 50;
/// Maximum size of `extra` serialised as compact JSON, in bytes.
pub const MAX_EXTRA_BYTES: usize = 16 * 1024;
/// Maximum nesting of arrays and objects inside one value of `extra`: `{"k": [[1]]}` has a
/// value of depth 2. The results sink parses `extra` again inside the Pub/Sub record, and
/// serde_json stops at 128 levels, so a deep value would pass here and fail there.
pub const MAX_EXTRA_DEPTH: usize = 32;

/// Field name reported for errors about the body as a whole.
pub const BODY_FIELD: &str = "body";
/// Field name reported for the limits on unknown fields.
pub const EXTRA_FIELD: &str = "extra";

/// A normalised, valid enrichment result.
///
/// Build it with [`EnrichmentResult::from_json`] or [`EnrichmentResult::from_slice`], which
/// apply every rule. Optional fields are `None` when the partner sent them as absent, `""`
/// or `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrichmentResult {
    /// The email the platform sent for enrichment, trimmed, with its domain lowercased.
    pub input_email: String,
    pub work_email: Option<String>,
    /// E.164, for example `+14155552671`.
    pub phone_number: Option<String>,
    /// An http(s) URL on linkedin.com or a subdomain.
    pub linkedin_url: Option<String>,
    pub name: Option<String>,
    /// A lowercase host name, punycode for internationalised domains.
    pub company_domain: Option<String>,
    /// The tenant id a partner echoed from the outbound request, if any.
    pub tenant_id: Option<String>,
    /// Unknown top-level fields, kept as sent.
    pub extra: Map<String, Value>,
}

impl EnrichmentResult {
    /// Parses, normalises and validates a raw callback body.
    ///
    /// Invalid JSON and a body that is not an object are one error on field `body`
    /// (`invalid_json` or `not_an_object`). Otherwise every failing field is listed.
    pub fn from_slice(body: &[u8]) -> Result<Self, ValidationErrors> {
        let value: Value = serde_json::from_slice(body).map_err(|error| {
            FieldError::new(
                BODY_FIELD,
                ErrorCode::InvalidJson,
                format!(
                    "The body is not valid JSON (error at line {}, column {}); send a JSON object.",
                    error.line(),
                    error.column()
                ),
            )
        })?;
        Self::from_json(&value)
    }

    /// Normalises and validates a callback body that is already parsed.
    pub fn from_json(value: &Value) -> Result<Self, ValidationErrors> {
        let Value::Object(object) = value else {
            return Err(FieldError::new(
                BODY_FIELD,
                ErrorCode::NotAnObject,
                format!(
                    "The body is a JSON {}; send a JSON object with at least input_email.",
                    json_type_name(value)
                ),
            )
            .into());
        };

        let extra: Map<String, Value> = object
            .iter()
            .filter(|(key, _)| !KNOWN_FIELDS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Self::from_parts(object, extra)
    }

    /// Validates the known fields found in `fields` (other keys there are ignored) together
    /// with an `extra` object, reporting every failing field in field order.
    pub fn from_parts(
        fields: &Map<String, Value>,
        extra: Map<String, Value>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let mut check = |name: &'static str, normalize: Normalizer| {
            check_field(fields, name, normalize, &mut errors)
        };

        let input_email = check("input_email", email::normalize_email);
        let work_email = check("work_email", email::normalize_email);
        let phone_number = check("phone_number", fields::normalize_phone_number);
        let linkedin_url = check("linkedin_url", fields::normalize_linkedin_url);
        let name = check("name", fields::normalize_name);
        let company_domain = check("company_domain", fields::normalize_company_domain);
        let tenant_id = check("tenant_id", fields::normalize_tenant_id);

        if input_email.is_none() && errors.codes_for("input_email").is_empty() {
            errors.push(error_for("input_email", ErrorCode::Missing));
        }
        check_extra(&extra, &mut errors);

        match input_email {
            Some(input_email) if errors.is_empty() => Ok(Self {
                input_email,
                work_email,
                phone_number,
                linkedin_url,
                name,
                company_domain,
                tenant_id,
                extra,
            }),
            _ => Err(errors),
        }
    }
}

/// Normalises one optional string field. Returns `None` when it is absent, `null`, empty
/// after trimming, or invalid (the error is pushed).
fn check_field(
    fields: &Map<String, Value>,
    name: &'static str,
    normalize: Normalizer,
    errors: &mut ValidationErrors,
) -> Option<String> {
    let raw = match fields.get(name) {
        None | Some(Value::Null) => return None,
        Some(Value::String(raw)) => raw.trim(),
        Some(other) => {
            errors.push(FieldError::new(
                name,
                ErrorCode::WrongType,
                format!(
                    "{name} must be a string, not a JSON {}.",
                    json_type_name(other)
                ),
            ));
            return None;
        }
    };
    if raw.is_empty() {
        return None;
    }
    match normalize(raw) {
        Ok(value) => Some(value),
        Err(code) => {
            errors.push(error_for(name, code));
            None
        }
    }
}

/// Applies the count, size and nesting limits to the unknown fields.
fn check_extra(extra: &Map<String, Value>, errors: &mut ValidationErrors) {
    if extra.len() > MAX_EXTRA_FIELDS {
        errors.push(FieldError::new(
            EXTRA_FIELD,
            ErrorCode::TooManyFields,
            format!(
                "The body has {} unknown fields; at most {MAX_EXTRA_FIELDS} are kept, so send fewer.",
                extra.len()
            ),
        ));
    }
    let size = serde_json::to_vec(extra).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_EXTRA_BYTES {
        errors.push(FieldError::new(
            EXTRA_FIELD,
            ErrorCode::TooLarge,
            format!(
                "The unknown fields take {size} bytes as JSON; at most {MAX_EXTRA_BYTES} bytes are kept."
            ),
        ));
    }
    if extra
        .values()
        .any(|value| exceeds_depth(value, MAX_EXTRA_DEPTH))
    {
        errors.push(FieldError::new(
            EXTRA_FIELD,
            ErrorCode::TooLarge,
            format!(
                "An unknown field nests arrays or objects more than {MAX_EXTRA_DEPTH} levels \
                 deep; send flatter values."
            ),
        ));
    }
}

/// Checks whether `value` nests arrays and objects more than `max_depth` levels deep. The
/// walk stops below `max_depth`, so the recursion stays bounded whatever the input.
fn exceeds_depth(value: &Value, max_depth: usize) -> bool {
    match value {
        Value::Array(items) => {
            max_depth == 0 || items.iter().any(|item| exceeds_depth(item, max_depth - 1))
        }
        Value::Object(map) => {
            max_depth == 0 || map.values().any(|item| exceeds_depth(item, max_depth - 1))
        }
        _ => false,
    }
}

/// Builds the error for a field rule, with a message that never repeats the value.
fn error_for(field: &'static str, code: ErrorCode) -> FieldError {
    let message = match (field, code) {
        (_, ErrorCode::Missing) => format!("{field} is required; send a non-empty string."),
        ("input_email" | "work_email", ErrorCode::TooLong) => {
            format!("{field} must be at most {MAX_EMAIL_CHARS} characters long.")
        }
        ("input_email" | "work_email", _) => format!(
            "{field} must be an email address such as name@example.com, with a dot in the domain."
        ),
        ("phone_number", _) => format!(
            "{field} must be an E.164 number: a plus sign, a non-zero digit and 7 to 15 digits \
             in all, such as +14155552671."
        ),
        ("linkedin_url", ErrorCode::TooLong) => {
            format!("{field} must be at most {MAX_URL_CHARS} characters long.")
        }
        ("linkedin_url", ErrorCode::NotLinkedin) => {
            format!("{field} must point to linkedin.com or one of its subdomains.")
        }
        ("linkedin_url", _) => format!(
            "{field} must be an http or https URL without a user name or password, such as \
             https://www.linkedin.com/in/name."
        ),
        ("company_domain", ErrorCode::TooLong) => {
            format!("{field} must be at most {MAX_DOMAIN_INPUT_CHARS} characters long.")
        }
        ("company_domain", _) => format!(
            "{field} must be a host name with at least one dot, such as example.com, or a URL \
             on that host."
        ),
        ("name", ErrorCode::TooLong) => {
            format!("{field} must be at most {MAX_NAME_CHARS} characters long.")
        }
        ("tenant_id", ErrorCode::TooLong) => {
            format!("{field} must be at most {MAX_TENANT_ID_CHARS} characters long.")
        }
        (_, ErrorCode::ControlCharacters) => {
            format!(
                "{field} must not contain control characters such as newlines, tabs or bidi \
                 overrides."
            )
        }
        (_, code) => format!("{field} is invalid ({code})."),
    };
    FieldError::new(field, code, message)
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn codes(errors: &ValidationErrors) -> Vec<(String, ErrorCode)> {
        errors
            .errors()
            .iter()
            .map(|error| (error.field.clone(), error.code))
            .collect()
    }

    fn only_error(body: Value) -> (String, ErrorCode) {
        let errors = EnrichmentResult::from_json(&body).unwrap_err();
        assert_eq!(errors.len(), 1, "errors: {errors}");
        codes(&errors).remove(0)
    }

    #[test]
    fn documented_payload_passes_unchanged() {
        let body = json!({
            "input_email": "jane.doe@example.com",
            "work_email": "jane@acme.io",
            "phone_number": "+1234567890",
            "linkedin_url": "https://linkedin.com/in/user",
            "name": "Jane Doe",
            "company_domain": "company.com"
        });
        let expected = EnrichmentResult {
            input_email: "jane.doe@example.com".to_owned(),
            work_email: Some("jane@acme.io".to_owned()),
            phone_number: Some("+1234567890".to_owned()),
            linkedin_url: Some("https://linkedin.com/in/user".to_owned()),
            name: Some("Jane Doe".to_owned()),
            company_domain: Some("company.com".to_owned()),
            tenant_id: None,
            extra: Map::new(),
        };
        assert_eq!(EnrichmentResult::from_json(&body), Ok(expected.clone()));
        assert_eq!(
            EnrichmentResult::from_slice(body.to_string().as_bytes()),
            Ok(expected)
        );
    }

    #[test]
    fn fields_are_normalised() {
        let body = json!({
            "input_email": "  Jane.Doe@Example.COM ",
            "work_email": "jane@ACME.io",
            "phone_number": "+1 (415) 555-2671",
            "linkedin_url": "linkedin.com/in/x",
            "name": "  Jane Doe  ",
            "company_domain": "https://www.Company.com/about",
            "tenant_id": " tenant-7 "
        });
        let expected = EnrichmentResult {
            input_email: "Jane.Doe@example.com".to_owned(),
            work_email: Some("jane@acme.io".to_owned()),
            phone_number: Some("+14155552671".to_owned()),
            linkedin_url: Some("https://linkedin.com/in/x".to_owned()),
            name: Some("Jane Doe".to_owned()),
            company_domain: Some("company.com".to_owned()),
            tenant_id: Some("tenant-7".to_owned()),
            extra: Map::new(),
        };
        assert_eq!(EnrichmentResult::from_json(&body), Ok(expected));
    }

    #[test]
    fn empty_and_null_are_absent() {
        let body = json!({
            "input_email": "a@example.com",
            "work_email": "",
            "phone_number": null,
            "linkedin_url": "   ",
            "name": null,
            "company_domain": "",
            "tenant_id": null
        });
        let expected = EnrichmentResult {
            input_email: "a@example.com".to_owned(),
            work_email: None,
            phone_number: None,
            linkedin_url: None,
            name: None,
            company_domain: None,
            tenant_id: None,
            extra: Map::new(),
        };
        assert_eq!(EnrichmentResult::from_json(&body), Ok(expected));
    }

    #[test]
    fn input_email_absent_forms_are_missing() {
        let missing = ("input_email".to_owned(), ErrorCode::Missing);
        assert_eq!(only_error(json!({})), missing);
        assert_eq!(only_error(json!({"input_email": ""})), missing);
        assert_eq!(only_error(json!({"input_email": "  "})), missing);
        assert_eq!(only_error(json!({"input_email": null})), missing);
        assert_eq!(only_error(json!({"name": "Jane"})), missing);
    }

    #[test]
    fn non_string_is_wrong_type_for_that_field() {
        for field in KNOWN_FIELDS {
            for wrong in [json!(42), json!(true), json!(["a"]), json!({"a": 1})] {
                let mut body = json!({"input_email": "a@example.com"});
                body[field] = wrong.clone();
                assert_eq!(
                    only_error(body),
                    (field.to_owned(), ErrorCode::WrongType),
                    "{field} = {wrong}"
                );
            }
        }
    }

    #[test]
    fn wrong_type_message_names_json_type() {
        let errors =
            EnrichmentResult::from_json(&json!({"input_email": "a@example.com", "name": 7}))
                .unwrap_err();
        assert_eq!(
            errors.errors()[0].message,
            "name must be a string, not a JSON number."
        );
    }

    #[test]
    fn each_rule_reports_its_code() {
        let long_name = "n".repeat(257);
        let cases: Vec<(&str, &str, ErrorCode)> = vec![
            ("input_email", "a@b", ErrorCode::InvalidEmail),
            ("input_email", "a@@b.com", ErrorCode::InvalidEmail),
            (
                "work_email",
                "Jane <jane@example.com>",
                ErrorCode::InvalidEmail,
            ),
            ("phone_number", "0044 20 7946 0958", ErrorCode::InvalidE164),
            ("phone_number", "+0123456789", ErrorCode::InvalidE164),
            ("phone_number", "+12", ErrorCode::InvalidE164),
            ("phone_number", "+1234567890123456", ErrorCode::InvalidE164),
            (
                "linkedin_url",
                "https://evil.example/in/x",
                ErrorCode::NotLinkedin,
            ),
            (
                "linkedin_url",
                "ftp://linkedin.com/in/x",
                ErrorCode::InvalidUrl,
            ),
            ("company_domain", "localhost", ErrorCode::InvalidDomain),
            ("name", "Jane\u{1b}[31mDoe", ErrorCode::ControlCharacters),
            ("name", long_name.as_str(), ErrorCode::TooLong),
            ("tenant_id", "tenant\n1", ErrorCode::ControlCharacters),
        ];
        for (field, value, code) in cases {
            let mut body = json!({"input_email": "a@example.com"});
            body[field] = json!(value);
            assert_eq!(
                only_error(body),
                (field.to_owned(), code),
                "{field} = {value:?}"
            );
        }
    }

    #[test]
    fn valid_special_addresses_pass() {
        let body = json!({"input_email": "user+tag@example.com", "work_email": "info@bücher.de"});
        let result = EnrichmentResult::from_json(&body).unwrap();
        assert_eq!(result.input_email, "user+tag@example.com");
        assert_eq!(result.work_email.as_deref(), Some("info@bücher.de"));
    }

    #[test]
    fn every_bad_field_is_listed() {
        let body = json!({
            "work_email": "a@@b.com",
            "phone_number": "+12",
            "linkedin_url": "https://evil.example/in/x",
            "name": "Jane\nDoe",
            "company_domain": "not a domain",
            "tenant_id": 5
        });
        let errors = EnrichmentResult::from_json(&body).unwrap_err();
        assert_eq!(
            codes(&errors),
            vec![
                ("work_email".to_owned(), ErrorCode::InvalidEmail),
                ("phone_number".to_owned(), ErrorCode::InvalidE164),
                ("linkedin_url".to_owned(), ErrorCode::NotLinkedin),
                ("name".to_owned(), ErrorCode::ControlCharacters),
                ("company_domain".to_owned(), ErrorCode::InvalidDomain),
                ("tenant_id".to_owned(), ErrorCode::WrongType),
                ("input_email".to_owned(), ErrorCode::Missing),
            ]
        );
    }

    #[test]
    fn messages_state_expected_form_without_value() {
        let body = json!({
            "input_email": "secret-person@@example.com",
            "phone_number": "+0 secret",
            "linkedin_url": "https://evil.example/secret",
        });
        let errors = EnrichmentResult::from_json(&body).unwrap_err();
        let messages: Vec<&str> = errors.errors().iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "input_email must be an email address such as name@example.com, with a dot in \
                 the domain.",
                "phone_number must be an E.164 number: a plus sign, a non-zero digit and 7 to 15 \
                 digits in all, such as +14155552671.",
                "linkedin_url must point to linkedin.com or one of its subdomains.",
            ]
        );
        assert!(!errors.to_string().contains("secret"), "{errors}");
    }

    #[test]
    fn unknown_fields_go_to_extra() {
        let body = json!({
            "input_email": "a@example.com",
            "score": 0.93,
            "sources": ["crm", "web"],
            "extra": {"nested": true},
            "blank": null
        });
        let result = EnrichmentResult::from_json(&body).unwrap();
        assert_eq!(
            Value::Object(result.extra),
            json!({
                "score": 0.93,
                "sources": ["crm", "web"],
                "extra": {"nested": true},
                "blank": null
            })
        );
    }

    #[test]
    fn extra_field_count_limit() {
        let mut body = json!({"input_email": "a@example.com"});
        for index in 0..MAX_EXTRA_FIELDS {
            body[format!("field_{index}")] = json!(index);
        }
        let result = EnrichmentResult::from_json(&body).unwrap();
        assert_eq!(result.extra.len(), 50);

        body["one_too_many"] = json!(true);
        let errors = EnrichmentResult::from_json(&body).unwrap_err();
        assert_eq!(
            codes(&errors),
            vec![("extra".to_owned(), ErrorCode::TooManyFields)]
        );
        assert_eq!(
            errors.errors()[0].message,
            "The body has 51 unknown fields; at most 50 are kept, so send fewer."
        );
    }

    #[test]
    fn extra_size_limit() {
        // `{"k":"` plus the value plus `"}` is 8 bytes more than the value.
        let at_limit = json!({"input_email": "a@example.com", "k": "v".repeat(16 * 1024 - 8)});
        let result = EnrichmentResult::from_json(&at_limit).unwrap();
        assert_eq!(serde_json::to_vec(&result.extra).unwrap().len(), 16384);

        let over_limit = json!({"input_email": "a@example.com", "k": "v".repeat(16 * 1024 - 7)});
        let errors = EnrichmentResult::from_json(&over_limit).unwrap_err();
        assert_eq!(
            codes(&errors),
            vec![("extra".to_owned(), ErrorCode::TooLarge)]
        );
        assert_eq!(
            errors.errors()[0].message,
            "The unknown fields take 16385 bytes as JSON; at most 16384 bytes are kept."
        );
    }

    #[test]
    fn extra_limits_both_reported() {
        let mut body = json!({"input_email": "a@example.com"});
        for index in 0..=MAX_EXTRA_FIELDS {
            body[format!("field_{index}")] = json!("x".repeat(400));
        }
        let errors = EnrichmentResult::from_json(&body).unwrap_err();
        assert_eq!(
            codes(&errors),
            vec![
                ("extra".to_owned(), ErrorCode::TooManyFields),
                ("extra".to_owned(), ErrorCode::TooLarge),
            ]
        );
    }

    /// Builds `{"input_email": ..., "deep": [[...[1]...]]}` with `depth` nested arrays.
    fn body_with_depth(depth: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..depth {
            value = json!([value]);
        }
        json!({"input_email": "a@example.com", "deep": value})
    }

    #[test]
    fn extra_depth_limit() {
        let at_limit = body_with_depth(MAX_EXTRA_DEPTH);
        let result = EnrichmentResult::from_json(&at_limit).unwrap();
        assert_eq!(result.extra["deep"], at_limit["deep"]);

        let flat = json!({"input_email": "a@example.com", "n": 1, "o": {}, "a": []});
        assert_eq!(EnrichmentResult::from_json(&flat).unwrap().extra.len(), 3);

        let expected = vec![FieldError::new(
            "extra",
            ErrorCode::TooLarge,
            "An unknown field nests arrays or objects more than 32 levels deep; send flatter \
             values.",
        )];
        let over_limit = body_with_depth(MAX_EXTRA_DEPTH + 1);
        let errors = EnrichmentResult::from_json(&over_limit).unwrap_err();
        assert_eq!(errors.errors(), expected.as_slice());

        // Objects count as levels too, and the parser's own limit of 128 is not reached.
        let mut nested = json!({});
        for _ in 0..120 {
            nested = json!({"k": nested});
        }
        let body = serde_json::to_vec(&json!({"input_email": "a@example.com", "d": nested}));
        let errors = EnrichmentResult::from_slice(&body.unwrap()).unwrap_err();
        assert_eq!(errors.errors(), expected.as_slice());
    }

    #[test]
    fn body_errors_are_single() {
        let errors = EnrichmentResult::from_slice(b"{\"input_email\": ").unwrap_err();
        assert_eq!(
            errors.errors(),
            &[FieldError::new(
                "body",
                ErrorCode::InvalidJson,
                "The body is not valid JSON (error at line 1, column 16); send a JSON object."
            )]
        );

        let errors = EnrichmentResult::from_slice(b"[\"a@example.com\"]").unwrap_err();
        assert_eq!(
            errors.errors(),
            &[FieldError::new(
                "body",
                ErrorCode::NotAnObject,
                "The body is a JSON array; send a JSON object with at least input_email."
            )]
        );

        let errors = EnrichmentResult::from_slice(b"").unwrap_err();
        assert_eq!(
            codes(&errors),
            vec![("body".to_owned(), ErrorCode::InvalidJson)]
        );
    }
}
