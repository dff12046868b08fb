//! Keeps the partner contract in `docs/` in step with the Rust code.
//!
//! - The JSON Schemas in `docs/schemas/` name exactly the fields of the Rust payload types.
//! - A table of callback bodies goes through both the payload validator and the result schema.
//!   The schema describes the canonical form of each field, so the two agree on every body
//!   with two exceptions. Only the validator accepts inputs that it normalises (whitespace,
//!   separators, a missing URL scheme). Only the schema accepts unknown fields over 16 KiB,
//!   because no schema keyword can limit their size.
//! - Every request the sender can build validates against the request schema.
//! - The receiver's responses validate against the response schemas, and the error codes of
//!   the schema and of `docs/partners.md` are exactly the payload crate's codes.
//! - The signed example request in `docs/partners.md` carries the signature that the
//!   `standardwebhooks` crate computes, and the receiver accepts it.
//! - The guide's Python webhook endpoint accepts a request from the real sender (this test
//!   needs `python3`).
//!
//! These tests need no emulator. `tests/contract/run.sh` checks the same documents against a
//! running receiver.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use enrichment_payload::email::normalize_email;
use enrichment_payload::result::KNOWN_FIELDS;
use enrichment_payload::{EnrichmentResult, ErrorCode, OutboundRequest};
use enrichment_runtime::config::Env;
use enrichment_runtime::pubsub::{MemoryPublisher, PublishError};
use inbound_receiver::auth::Authenticator;
use inbound_receiver::{AppState, Config, router};
use pretty_assertions::assert_eq;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const RESULT_SCHEMA: &str = "docs/schemas/enrichment-result.schema.json";
const REQUEST_SCHEMA: &str = "docs/schemas/enrichment-request.schema.json";
const SUCCESS_SCHEMA: &str = "docs/schemas/success-response.schema.json";
const ERROR_SCHEMA: &str = "docs/schemas/error-response.schema.json";
const OPENAPI_FILE: &str = "docs/partner-api.yaml";
const GUIDE_FILE: &str = "docs/partners.md";

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
const EMAIL: &str = "jane.doe@example.com";

fn read_text(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {relative}: {err}"))
}

fn read_json(relative: &str) -> Value {
    serde_json::from_str(&read_text(relative))
        .unwrap_or_else(|err| panic!("{relative} is not JSON: {err}"))
}

fn validator(relative: &str) -> jsonschema::Validator {
    jsonschema::draft202012::new(&read_json(relative))
        .unwrap_or_else(|err| panic!("{relative} is not a valid draft 2020-12 schema: {err}"))
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("the schema has properties")
        .keys()
        .cloned()
        .collect()
}

fn string_set<'a>(values: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    values.into_iter().map(str::to_owned).collect()
}

#[test]
fn schemas_are_draft_2020_12() {
    for relative in [RESULT_SCHEMA, REQUEST_SCHEMA, SUCCESS_SCHEMA, ERROR_SCHEMA] {
        let schema = read_json(relative);
        assert_eq!(schema["$schema"], DRAFT_2020_12, "{relative}");
        let meta_errors: Vec<String> = jsonschema::meta::validate(&schema)
            .err()
            .map(|error| error.to_string())
            .into_iter()
            .collect();
        assert_eq!(meta_errors, Vec::<String>::new(), "{relative}");
    }
}

#[test]
fn openapi_references_every_schema() {
    let openapi = read_text(OPENAPI_FILE);
    assert!(
        openapi.starts_with("openapi: 3.1."),
        "{OPENAPI_FILE} is not OpenAPI 3.1"
    );
    for relative in [RESULT_SCHEMA, REQUEST_SCHEMA, SUCCESS_SCHEMA, ERROR_SCHEMA] {
        let reference = format!("$ref: \"./{}\"", relative.trim_start_matches("docs/"));
        assert!(
            openapi.contains(&reference),
            "{OPENAPI_FILE} lacks {reference}"
        );
    }
}

#[test]
fn result_schema_names_rust_fields() {
    let schema = read_json(RESULT_SCHEMA);
    assert_eq!(property_names(&schema), string_set(KNOWN_FIELDS));
    assert_eq!(schema["required"], json!(["input_email"]));
    assert_eq!(schema["additionalProperties"], json!(true));

    // Every field of the Rust type except `extra`, which holds the unknown fields.
    let example = &schema["examples"][0];
    let result = EnrichmentResult::from_json(example).expect("the schema's example is valid");
    let serialized = serde_json::to_value(&result).unwrap();
    let mut rust_fields: BTreeSet<String> =
        serialized.as_object().unwrap().keys().cloned().collect();
    assert!(
        rust_fields.remove("extra"),
        "EnrichmentResult has no extra field"
    );
    assert_eq!(rust_fields, property_names(&schema));
}

#[test]
fn request_schema_names_rust_fields() {
    let schema = read_json(REQUEST_SCHEMA);
    let body = OutboundRequest::new("tenant-12345", EMAIL).to_json_bytes();
    let body: Map<String, Value> = serde_json::from_slice(&body).unwrap();
    let rust_fields: BTreeSet<String> = body.keys().cloned().collect();

    assert_eq!(property_names(&schema), rust_fields);
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(required, rust_fields);
    assert_eq!(schema["additionalProperties"], json!(false));
}

/// How the result schema relates to the payload validator on one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Both accept, or both reject.
    Agree,
    /// Only the validator accepts: it normalises the value into the canonical form that the
    /// schema describes.
    Normalised,
    /// Only the schema accepts: the body breaks a size limit that no schema keyword expresses.
    SizeLimit,
}

struct ResultCase {
    name: &'static str,
    body: Value,
    /// `Ok` when the validator accepts, else every `(field, code)` it reports, in order.
    expected: Result<(), Vec<(&'static str, ErrorCode)>>,
    relation: Relation,
}

fn accepted(name: &'static str, body: Value) -> ResultCase {
    ResultCase {
        name,
        body,
        expected: Ok(()),
        relation: Relation::Agree,
    }
}

fn normalised(name: &'static str, body: Value) -> ResultCase {
    ResultCase {
        name,
        body,
        expected: Ok(()),
        relation: Relation::Normalised,
    }
}

fn rejected(name: &'static str, body: Value, errors: &[(&'static str, ErrorCode)]) -> ResultCase {
    ResultCase {
        name,
        body,
        expected: Err(errors.to_vec()),
        relation: Relation::Agree,
    }
}

/// Returns the body `{"input_email": EMAIL, field: value}`.
fn with(field: &str, value: Value) -> Value {
    let mut body = json!({ "input_email": EMAIL });
    body[field] = value;
    body
}

/// Returns a body with `count` unknown fields named `field_0`, `field_1`, ...
fn with_unknown_fields(count: usize) -> Value {
    let mut body = json!({ "input_email": EMAIL });
    for index in 0..count {
        body[format!("field_{index}")] = json!(index);
    }
    body
}

fn result_cases() -> Vec<ResultCase> {
    use ErrorCode::*;
    vec![
        // Accepted by both.
        accepted(
            "every field",
            json!({
                "input_email": EMAIL,
                "work_email": "jane@acme.io",
                "phone_number": "+14155552671",
                "linkedin_url": "https://www.linkedin.com/in/jane-doe",
                "name": "Jane Doe",
                "company_domain": "acme.io",
                "tenant_id": "tenant-12345"
            }),
        ),
        accepted("only input_email", json!({ "input_email": EMAIL })),
        accepted(
            "null optional fields",
            json!({
                "input_email": EMAIL, "work_email": null, "phone_number": null,
                "linkedin_url": null, "name": null, "company_domain": null, "tenant_id": null
            }),
        ),
        accepted(
            "plus-addressing",
            with("work_email", json!("jane+crm@acme.io")),
        ),
        accepted(
            "mixed-case email",
            with("work_email", json!("Jane.Doe@Example.COM")),
        ),
        accepted(
            "every atext character",
            with("work_email", json!("!#$%&'*+/=?^_`{|}~-@example.com")),
        ),
        accepted(
            "dotted local part",
            with("work_email", json!("a.b.c@x.y.example.org")),
        ),
        accepted(
            "documented phone",
            with("phone_number", json!("+1234567890")),
        ),
        accepted("7-digit phone", with("phone_number", json!("+1234567"))),
        accepted(
            "15-digit phone",
            with("phone_number", json!("+123456789012345")),
        ),
        accepted(
            "documented linkedin_url",
            with("linkedin_url", json!("https://linkedin.com/in/user")),
        ),
        accepted(
            "linkedin subdomain over http",
            with("linkedin_url", json!("http://uk.linkedin.com/in/x")),
        ),
        accepted(
            "bare linkedin host",
            with("linkedin_url", json!("https://linkedin.com")),
        ),
        accepted(
            "sub.domain",
            with("company_domain", json!("sub.company.co.uk")),
        ),
        accepted(
            "hyphenated domain",
            with("company_domain", json!("my-company.io")),
        ),
        accepted("accented name", with("name", json!("José Ñúñez-O'Brien"))),
        accepted(
            "name of 256 characters",
            with("name", json!("é".repeat(256))),
        ),
        accepted("blank name is absent", with("name", json!("   "))),
        accepted(
            "tenant_id of 128 characters",
            with("tenant_id", json!("t".repeat(128))),
        ),
        accepted(
            "unknown fields kept",
            with("score", json!({ "confidence": 0.9 })),
        ),
        accepted("50 unknown fields", with_unknown_fields(50)),
        // Rejected by both.
        rejected("empty body object", json!({}), &[("input_email", Missing)]),
        rejected(
            "null input_email",
            with("input_email", Value::Null),
            &[("input_email", Missing)],
        ),
        rejected(
            "empty input_email",
            with("input_email", json!("")),
            &[("input_email", Missing)],
        ),
        rejected(
            "numeric input_email",
            with("input_email", json!(42)),
            &[("input_email", WrongType)],
        ),
        rejected(
            "email without dot",
            with("input_email", json!("a@b")),
            &[("input_email", InvalidEmail)],
        ),
        rejected(
            "email without @",
            with("input_email", json!("jane.example.com")),
            &[("input_email", InvalidEmail)],
        ),
        rejected(
            "domain literal",
            with("work_email", json!("a@[127.0.0.1]")),
            &[("work_email", InvalidEmail)],
        ),
        rejected(
            "display name",
            with("work_email", json!("Jane <jane@example.com>")),
            &[("work_email", InvalidEmail)],
        ),
        rejected(
            "email of 255 characters",
            with(
                "work_email",
                json!(format!("{}@{}.com", "l".repeat(64), "d".repeat(186))),
            ),
            &[("work_email", TooLong)],
        ),
        rejected(
            "phone with leading zero",
            with("phone_number", json!("+0123456789")),
            &[("phone_number", InvalidE164)],
        ),
        rejected(
            "national phone",
            with("phone_number", json!("4155552671")),
            &[("phone_number", InvalidE164)],
        ),
        rejected(
            "6-digit phone",
            with("phone_number", json!("+123456")),
            &[("phone_number", InvalidE164)],
        ),
        rejected(
            "16-digit phone",
            with("phone_number", json!("+1234567890123456")),
            &[("phone_number", InvalidE164)],
        ),
        rejected(
            "phone with letters",
            with("phone_number", json!("+1-800-FLOWERS")),
            &[("phone_number", InvalidE164)],
        ),
        rejected(
            "numeric phone",
            with("phone_number", json!(14155552671_u64)),
            &[("phone_number", WrongType)],
        ),
        rejected(
            "other host",
            with("linkedin_url", json!("https://evil.example/in/x")),
            &[("linkedin_url", NotLinkedin)],
        ),
        rejected(
            "linkedin as subdomain of another host",
            with(
                "linkedin_url",
                json!("https://linkedin.com.evil.example/in/x"),
            ),
            &[("linkedin_url", NotLinkedin)],
        ),
        rejected(
            "ftp URL",
            with("linkedin_url", json!("ftp://linkedin.com/in/x")),
            &[("linkedin_url", InvalidUrl)],
        ),
        rejected(
            "URL with password",
            with("linkedin_url", json!("https://user:pass@linkedin.com/in/x")),
            &[("linkedin_url", InvalidUrl)],
        ),
        rejected(
            "name with newline",
            with("name", json!("Jane\nDoe")),
            &[("name", ControlCharacters)],
        ),
        rejected(
            "name of 257 characters",
            with("name", json!("é".repeat(257))),
            &[("name", TooLong)],
        ),
        rejected(
            "boolean name",
            with("name", json!(true)),
            &[("name", WrongType)],
        ),
        rejected(
            "domain without dot",
            with("company_domain", json!("company")),
            &[("company_domain", InvalidDomain)],
        ),
        rejected(
            "IP address domain",
            with("company_domain", json!("192.168.0.1")),
            &[("company_domain", InvalidDomain)],
        ),
        rejected(
            "underscore domain",
            with("company_domain", json!("exa_mple.com")),
            &[("company_domain", InvalidDomain)],
        ),
        rejected(
            "email as domain",
            with("company_domain", json!("jane@company.com")),
            &[("company_domain", InvalidDomain)],
        ),
        rejected(
            "tenant_id of 129 characters",
            with("tenant_id", json!("t".repeat(129))),
            &[("tenant_id", TooLong)],
        ),
        rejected(
            "tenant_id with CR",
            with("tenant_id", json!("tenant\r1")),
            &[("tenant_id", ControlCharacters)],
        ),
        rejected(
            "51 unknown fields",
            with_unknown_fields(51),
            &[("extra", TooManyFields)],
        ),
        rejected("array body", json!([EMAIL]), &[("body", NotAnObject)]),
        rejected("string body", json!(EMAIL), &[("body", NotAnObject)]),
        rejected(
            "every failing field listed",
            json!({
                "input_email": "a@b",
                "phone_number": "0044 20 7946 0958",
                "linkedin_url": "https://example.com/in/jane",
                "name": "Jane\tDoe"
            }),
            &[
                ("input_email", InvalidEmail),
                ("phone_number", InvalidE164),
                ("linkedin_url", NotLinkedin),
                ("name", ControlCharacters),
            ],
        ),
        // Accepted by the validator only, after normalisation.
        normalised(
            "padded input_email",
            with("input_email", json!("  jane.doe@example.com \n")),
        ),
        normalised(
            "internationalised domain",
            with("work_email", json!("info@bücher.de")),
        ),
        normalised(
            "quoted local part",
            with("work_email", json!("\"john smith\"@example.com")),
        ),
        normalised("empty optional field", with("work_email", json!(""))),
        normalised(
            "phone with separators",
            with("phone_number", json!("+1 (415) 555-2671")),
        ),
        normalised(
            "linkedin without scheme",
            with("linkedin_url", json!("linkedin.com/in/jane-doe")),
        ),
        normalised(
            "uppercase linkedin URL",
            with("linkedin_url", json!("HTTPS://WWW.LinkedIn.COM/in/Jane")),
        ),
        normalised(
            "pasted company URL",
            with("company_domain", json!("https://www.Company.com/about")),
        ),
        normalised(
            "company domain with dot",
            with("company_domain", json!("Company.COM.")),
        ),
        normalised(
            "internationalised company",
            with("company_domain", json!("bücher.de")),
        ),
        normalised("name with outer tab", with("name", json!("\tJane Doe\n"))),
        normalised("empty name", with("name", json!(""))),
        // Accepted by the schema only.
        ResultCase {
            name: "unknown fields over 16 KiB",
            body: with("notes", json!("x".repeat(16 * 1024))),
            expected: Err(vec![("extra", TooLarge)]),
            relation: Relation::SizeLimit,
        },
    ]
}

#[test]
fn result_schema_and_validator_agree() {
    let schema = validator(RESULT_SCHEMA);
    for case in result_cases() {
        let name = case.name;
        let outcome = EnrichmentResult::from_json(&case.body)
            .map(|_| ())
            .map_err(|errors| {
                errors
                    .errors()
                    .iter()
                    .map(|error| (error.field.clone(), error.code))
                    .collect::<Vec<_>>()
            });
        let expected = case.expected.clone().map_err(|errors| {
            errors
                .into_iter()
                .map(|(field, code)| (field.to_owned(), code))
                .collect::<Vec<_>>()
        });
        assert_eq!(outcome, expected, "validator, case {name:?}");

        let schema_valid = schema.is_valid(&case.body);
        let expected_schema_valid = match case.relation {
            Relation::Agree => case.expected.is_ok(),
            Relation::Normalised => false,
            Relation::SizeLimit => true,
        };
        assert_eq!(
            schema_valid,
            expected_schema_valid,
            "schema, case {name:?}: {:?}",
            schema_errors(&schema, &case.body)
        );
    }
}

#[test]
fn result_schema_examples_are_valid() {
    let schema_json = read_json(RESULT_SCHEMA);
    let schema = validator(RESULT_SCHEMA);
    for example in schema_json["examples"].as_array().unwrap() {
        assert_eq!(schema_errors(&schema, example), Vec::<String>::new());
        assert!(EnrichmentResult::from_json(example).is_ok(), "{example}");
    }
    for (field, property) in schema_json["properties"].as_object().unwrap() {
        for example in property["examples"].as_array().unwrap() {
            let body = with(field, example.clone());
            assert_eq!(
                schema_errors(&schema, &body),
                Vec::<String>::new(),
                "{field}"
            );
            assert!(
                EnrichmentResult::from_json(&body).is_ok(),
                "{field}: {example}"
            );
        }
    }
}

#[test]
fn sender_requests_match_request_schema() {
    let schema = validator(REQUEST_SCHEMA);
    let long_tenant = "t".repeat(128);
    let longest_email = format!(
        "{}@{}.{}.{}.com",
        "l".repeat(64),
        "d".repeat(61),
        "d".repeat(61),
        "e".repeat(61)
    );
    let emails = [
        "jane.doe@example.com",
        "Jane.Doe@Example.COM",
        "user+tag@example.com",
        "\"john smith\"@example.com",
        "info@BÜCHER.de",
        "info@xn--bcher-kva.de",
        "a@b.co",
        longest_email.as_str(),
    ];
    for tenant in [
        "tenant-12345",
        "t",
        long_tenant.as_str(),
        "Tenant with spaces",
    ] {
        for raw in emails {
            let email = normalize_email(raw).unwrap_or_else(|code| panic!("{raw}: {code}"));
            let body: Value =
                serde_json::from_slice(&OutboundRequest::new(tenant, email).to_json_bytes())
                    .unwrap();
            assert_eq!(
                schema_errors(&schema, &body),
                Vec::<String>::new(),
                "{body}"
            );
        }
    }

    let invalid = [
        json!({ "tenant_id": "t", "input_email": EMAIL, "extra": 1 }),
        json!({ "input_email": EMAIL }),
        json!({ "tenant_id": "", "input_email": EMAIL }),
        json!({ "tenant_id": "t".repeat(129), "input_email": EMAIL }),
        json!({ "tenant_id": "a\nb", "input_email": EMAIL }),
        json!({ "tenant_id": "t", "input_email": "a@b" }),
        json!({ "tenant_id": "t", "input_email": "jane@Example.com" }),
    ];
    for body in invalid {
        assert!(!schema.is_valid(&body), "{body}");
    }
}

/// Every error code. [`listed`] stops compiling when `ErrorCode` gains a variant, so this list
/// cannot fall behind.
const ALL_CODES: [ErrorCode; 13] = [
    ErrorCode::Missing,
    ErrorCode::WrongType,
    ErrorCode::InvalidEmail,
    ErrorCode::InvalidE164,
    ErrorCode::InvalidUrl,
    ErrorCode::NotLinkedin,
    ErrorCode::InvalidDomain,
    ErrorCode::TooLong,
    ErrorCode::ControlCharacters,
    ErrorCode::TooManyFields,
    ErrorCode::TooLarge,
    ErrorCode::InvalidJson,
    ErrorCode::NotAnObject,
];

/// Reports whether `code` is in [`ALL_CODES`], with a match that must name every variant.
fn listed(code: ErrorCode) -> bool {
    match code {
        ErrorCode::Missing
        | ErrorCode::WrongType
        | ErrorCode::InvalidEmail
        | ErrorCode::InvalidE164
        | ErrorCode::InvalidUrl
        | ErrorCode::NotLinkedin
        | ErrorCode::InvalidDomain
        | ErrorCode::TooLong
        | ErrorCode::ControlCharacters
        | ErrorCode::TooManyFields
        | ErrorCode::TooLarge
        | ErrorCode::InvalidJson
        | ErrorCode::NotAnObject => ALL_CODES.contains(&code),
    }
}

#[test]
fn every_code_listed() {
    let rust_codes: BTreeSet<String> = ALL_CODES
        .iter()
        .filter(|code| listed(**code))
        .map(|code| code.as_str().to_owned())
        .collect();
    assert_eq!(rust_codes.len(), ALL_CODES.len());

    let schema = read_json(ERROR_SCHEMA);
    let schema_codes: BTreeSet<String> =
        schema["properties"]["errors"]["items"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|code| code.as_str().unwrap().to_owned())
            .collect();
    assert_eq!(schema_codes, rust_codes);

    let guide = read_text(GUIDE_FILE);
    let guide_codes: BTreeSet<String> = guide
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(code, _)| code.to_owned())
        .filter(|code| {
            code.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        })
        .collect();
    let documented: BTreeSet<String> = guide_codes.intersection(&rust_codes).cloned().collect();
    assert_eq!(documented, rust_codes, "codes in the table of {GUIDE_FILE}");
}

/// Returns the body of the code block of `guide` whose info string has `title="TITLE"`.
fn titled_block(guide: &str, title: &str) -> String {
    let marker = format!("title=\"{title}\"");
    let mut lines = guide.lines();
    lines
        .by_ref()
        .find(|line| line.starts_with("```") && line.contains(&marker))
        .unwrap_or_else(|| panic!("{GUIDE_FILE} has no block titled {title}"));
    let block: Vec<&str> = lines.take_while(|line| !line.starts_with("```")).collect();
    block.join("\n")
}

#[test]
fn documented_signature_verifies() {
    let guide = read_text(GUIDE_FILE);
    let secret = titled_block(&guide, "example-secret").trim().to_owned();
    let request = titled_block(&guide, "signed-request-example");
    let (head, body) = request
        .split_once("\n\n")
        .expect("headers, blank line, body");

    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (name, value) = line.split_once(':').unwrap();
        let name = header::HeaderName::from_bytes(name.trim().to_lowercase().as_bytes()).unwrap();
        headers.insert(name, HeaderValue::from_str(value.trim()).unwrap());
    }
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();

    let signature = standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .sign(&header("webhook-id"), timestamp, body.as_bytes())
        .unwrap();
    assert_eq!(header("webhook-signature"), signature);

    let request_body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        schema_errors(&validator(REQUEST_SCHEMA), &request_body),
        Vec::<String>::new()
    );

    // The receiver verifies with the same rules, at the documented time and 301 s later.
    let config = receiver_config(&[("AUTH_MODE", "signature"), ("WEBHOOK_SECRETS", &secret)]);
    let authenticator = Authenticator::new(&config.auth);
    assert_eq!(
        authenticator.verify(&headers, body.as_bytes(), timestamp),
        Ok(())
    );
    assert!(
        authenticator
            .verify(&headers, body.as_bytes(), timestamp + 301)
            .is_err()
    );
}

/// Runs the guide's Python webhook endpoint and makes the real sender deliver one signed
/// request to it: the guide's verification code must accept the sender's signature.
#[tokio::test]
async fn sender_passes_documented_verifier() {
    let guide = read_text(GUIDE_FILE);
    let secret = titled_block(&guide, "example-secret").trim().to_owned();
    let endpoint_code = titled_block(&guide, "receive-request");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = EndpointProcess(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(&endpoint_code)
            .env("WEBHOOK_SECRET", &secret)
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the guide's receive-request example"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the receive-request example did not listen on port {port} within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let url = format!("http://127.0.0.1:{port}/your/webhook");
    let config = outbound_sender::Config::from_source(&Env::from_pairs([
        ("GOOGLE_CLOUD_PROJECT", "test-project"),
        ("PARTNER_ID", "contract-partner"),
        ("PARTNER_WEBHOOK_URL", url.as_str()),
        ("PARTNER_SIGNING_SECRET", secret.as_str()),
        ("DELIVERY_QUEUE", "local"),
    ]))
    .expect("valid sender configuration");
    let deliverer = outbound_sender::deliver::Deliverer::new(&config).unwrap();
    let job = outbound_sender::Job {
        webhook_id: format!("msg_{}", "ab".repeat(32)),
        partner_id: "contract-partner".into(),
        tenant_id: "tenant-12345".into(),
        input_email: EMAIL.into(),
        source_bucket: "bucket".into(),
        source_object: "incoming/tenant-12345/emails.csv".into(),
        source_generation: 1,
        line: 2,
        created_at: chrono::Utc::now(),
    };

    let attempt = deliverer.attempt(&job).await;
    assert_eq!(attempt.http_status(), Some(202), "{attempt:?}");

    let output = endpoint.stop();
    assert_eq!(output, format!("{} tenant-12345 {EMAIL}\n", job.webhook_id));
}

/// The guide's example endpoint, killed when dropped so a failed test leaves no process.
struct EndpointProcess(std::process::Child);

impl EndpointProcess {
    /// Stops the endpoint and returns what it printed.
    fn stop(mut self) -> String {
        self.0.kill().unwrap();
        let mut output = String::new();
        std::io::Read::read_to_string(self.0.stdout.as_mut().unwrap(), &mut output).unwrap();
        output
    }
}

impl Drop for EndpointProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn receiver_config(auth: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("GOOGLE_CLOUD_PROJECT", "test-project"),
        ("PARTNER_ID", "contract-partner"),
        ("RESULTS_TOPIC", "results"),
    ];
    pairs.extend_from_slice(auth);
    Config::from_env_with(&Env::from_pairs(pairs)).expect("valid receiver configuration")
}

const TOKEN: &str = "contract-token";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn call(publisher: Arc<MemoryPublisher>, request: Request<Body>) -> Answer {
    let config = receiver_config(&[("AUTH_MODE", "bearer"), ("BEARER_TOKENS", TOKEN)]);
    let response = router(AppState::new(&config, publisher))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{status} body is not JSON ({err}): {bytes:?}"));
    Answer {
        status,
        headers,
        body,
    }
}

fn post(content_type: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post("/").header(header::CONTENT_TYPE, content_type);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(body.into()).unwrap()
}

#[tokio::test]
async fn success_response_matches_schema() {
    let publisher = Arc::new(MemoryPublisher::new());
    let body = json!({ "input_email": format!(" {EMAIL} "), "phone_number": "+1 415 555 2671" });
    let answer = call(
        publisher.clone(),
        post("application/json", Some(TOKEN), body.to_string()),
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({
            "status": "success",
            "message": "Enrichment data received and processed",
            "input_email": EMAIL,
            "message_id": "1"
        })
    );
    assert_eq!(
        schema_errors(&validator(SUCCESS_SCHEMA), &answer.body),
        Vec::<String>::new()
    );
    assert_eq!(publisher.messages().len(), 1);
}

#[tokio::test]
async fn error_responses_match_schema() {
    let schema = validator(ERROR_SCHEMA);
    let valid_body = json!({ "input_email": EMAIL }).to_string();

    let invalid = call(
        Arc::new(MemoryPublisher::new()),
        post(
            "application/json",
            Some(TOKEN),
            with("phone_number", json!("12")).to_string(),
        ),
    )
    .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.body["errors"][0]["field"], "phone_number");
    assert_eq!(invalid.body["errors"][0]["code"], "invalid_e164");
    assert_eq!(schema_errors(&schema, &invalid.body), Vec::<String>::new());

    let not_json = call(
        Arc::new(MemoryPublisher::new()),
        post("application/json", Some(TOKEN), "{"),
    )
    .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.body["errors"][0]["code"], "invalid_json");
    assert_eq!(schema_errors(&schema, &not_json.body), Vec::<String>::new());

    let unauthorized = call(
        Arc::new(MemoryPublisher::new()),
        post("application/json", Some("wrong"), valid_body.clone()),
    )
    .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorized.headers[header::WWW_AUTHENTICATE], "Bearer");

    let wrong_method = call(
        Arc::new(MemoryPublisher::new()),
        Request::get("/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers[header::ALLOW], "POST");

    let too_large = call(
        Arc::new(MemoryPublisher::new()),
        post("application/json", Some(TOKEN), "x".repeat(64 * 1024 + 1)),
    )
    .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    let not_json_type = call(
        Arc::new(MemoryPublisher::new()),
        post("text/plain", Some(TOKEN), valid_body.clone()),
    )
    .await;
    assert_eq!(not_json_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let failing = Arc::new(MemoryPublisher::new());
    failing.set_failure(Some(PublishError::Failed("emulated outage".into())));
    let unavailable = call(failing, post("application/json", Some(TOKEN), valid_body)).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = unavailable.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, inbound_receiver::error::RETRY_AFTER_SECS);

    for answer in [
        unauthorized,
        wrong_method,
        too_large,
        not_json_type,
        unavailable,
    ] {
        let status = answer.status;
        assert_eq!(
            schema_errors(&schema, &answer.body),
            Vec::<String>::new(),
            "{status}"
        );
        assert_eq!(answer.body["errors"], json!([]), "{status}");
    }
}
