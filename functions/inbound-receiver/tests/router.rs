//! Handler tests: requests through the router with an in-memory publisher.

mod router_support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::SubsecRound;
use enrichment_runtime::pubsub::PublishError;
use inbound_receiver::config::{AuthConfig, Secret};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use router_support::{
    FULL_RESULT, OTHER_SECRET, SECRET, app, now, send, signature_auth, signed, unsigned,
};

fn error_body(message: &str) -> Value {
    json!({"status": "error", "message": message, "errors": []})
}

#[tokio::test]
async fn signed_result_published() {
    let (router, publisher) = app(signature_auth());
    let before = chrono::Utc::now();

    let (status, _, body) = send(&router, signed(SECRET, "msg_1", now(), FULL_RESULT)).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "status": "success",
            "message": "Enrichment data received and processed",
            "input_email": "jane.doe@example.com",
            "message_id": "1",
        })
    );

    let messages = publisher.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].attributes,
        BTreeMap::from([
            ("partner_id".to_string(), "acme".to_string()),
            ("schema_version".to_string(), "1".to_string()),
            ("delivery_id".to_string(), "msg_1".to_string()),
        ])
    );

    let mut data: Value = serde_json::from_slice(&messages[0].data).unwrap();
    let received_at = data["received_at"].take();
    let received_at = chrono::DateTime::parse_from_rfc3339(received_at.as_str().unwrap()).unwrap();
    assert!(received_at >= before.trunc_subsecs(6), "{received_at}");
    assert!(received_at <= chrono::Utc::now(), "{received_at}");
    assert_eq!(
        data,
        json!({
            "schema_version": 1,
            "partner_id": "acme",
            "delivery_id": "msg_1",
            "received_at": null,
            "result": {
                "input_email": "jane.doe@example.com",
                "work_email": "jane@acme.io",
                "phone_number": "+1234567890",
                "linkedin_url": "https://linkedin.com/in/user",
                "name": "Jane Doe",
                "company_domain": "company.com",
                "tenant_id": null,
            },
            "extra": {},
        })
    );
}

#[tokio::test]
async fn input_email_echoed_as_sent() {
    let (router, publisher) = app(signature_auth());
    let body = r#"{"input_email":"  Jane.Doe@Example.COM ","name":" Jane "}"#;

    let (status, _, body) = send(&router, signed(SECRET, "msg_2", now(), body)).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["input_email"], "Jane.Doe@Example.COM");
    let data: Value = serde_json::from_slice(&publisher.messages()[0].data).unwrap();
    assert_eq!(data["result"]["input_email"], "Jane.Doe@example.com");
    assert_eq!(data["result"]["name"], "Jane");
}

#[tokio::test]
async fn rotated_secret_accepted() {
    let auth = AuthConfig::Signature {
        secrets: vec![Secret::new(OTHER_SECRET), Secret::new(SECRET)],
        tolerance: Duration::from_secs(300),
    };
    let (router, _) = app(auth);

    let (status, _, _) = send(&router, signed(SECRET, "msg_1", now(), FULL_RESULT)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&router, signed(OTHER_SECRET, "msg_2", now(), FULL_RESULT)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn charset_parameter_accepted() {
    let (router, _) = app(AuthConfig::None);
    let request = unsigned("application/json; charset=UTF-8", FULL_RESULT);

    let (status, _, _) = send(&router, request).await;

    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unsigned_is_401() {
    let (router, publisher) = app(signature_auth());

    let (status, headers, body) = send(&router, unsigned("application/json", FULL_RESULT)).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        error_body("Missing webhook-id header; sign the request with Standard Webhooks.")
    );
    assert_eq!(headers.get(header::WWW_AUTHENTICATE), None);
    assert_eq!(publisher.messages().len(), 0);
}

#[tokio::test]
async fn wrong_signature_is_401() {
    let (router, publisher) = app(signature_auth());

    let request = signed(OTHER_SECRET, "msg_1", now(), FULL_RESULT);
    let (status, _, body) = send(&router, request).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        error_body(
            "Invalid webhook-signature: no v1 signature matches the body with a configured secret."
        )
    );
    assert_eq!(publisher.messages().len(), 0);
}

#[tokio::test]
async fn stale_and_future_timestamps_are_401() {
    let (router, _) = app(signature_auth());

    let (status, _, body) = send(&router, signed(SECRET, "msg_1", now() - 600, FULL_RESULT)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        error_body(
            "The webhook-timestamp is more than 300 seconds in the past; sign each request with \
             the current time."
        )
    );

    let (status, _, body) = send(&router, signed(SECRET, "msg_1", now() + 600, FULL_RESULT)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        error_body(
            "The webhook-timestamp is more than 300 seconds in the future; check the sender's \
             clock."
        )
    );
}

#[tokio::test]
async fn bearer_token_checked() {
    let auth = AuthConfig::Bearer {
        tokens: vec![Secret::new("token-123")],
    };
    let (router, publisher) = app(auth);

    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer token-123")
        .body(Body::from(FULL_RESULT))
        .unwrap();
    let (status, _, _) = send(&router, request).await;
    assert_eq!(status, StatusCode::OK);

    // Without a webhook-id header the delivery id is a new UUID v4.
    let delivery_id = &publisher.messages()[0].attributes["delivery_id"];
    let uuid = uuid::Uuid::parse_str(delivery_id).unwrap();
    assert_eq!(uuid.get_version_num(), 4);

    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer token-456")
        .body(Body::from(FULL_RESULT))
        .unwrap();
    let (status, headers, body) = send(&router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, error_body("Invalid bearer token."));
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn webhook_id_used_without_signature() {
    let (router, publisher) = app(AuthConfig::None);
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .header("webhook-id", "partner-delivery-7")
        .body(Body::from(FULL_RESULT))
        .unwrap();

    let (status, _, _) = send(&router, request).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        publisher.messages()[0].attributes["delivery_id"],
        "partner-delivery-7"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (router, publisher) = app(signature_auth());
    let padding = "x".repeat(70 * 1024);
    let body = format!(r#"{{"input_email":"jane.doe@example.com","note":"{padding}"}}"#);

    let (status, _, response) = send(&router, signed(SECRET, "msg_1", now(), &body)).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response,
        error_body("The body is larger than the limit of 65536 bytes.")
    );
    assert_eq!(publisher.messages().len(), 0);
}

/// A streamed body without `Content-Length` is cut off at the limit as well.
#[tokio::test]
async fn oversized_stream_is_413() {
    let (router, _) = app(AuthConfig::None);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..70).map(|_| Ok(vec![b' '; 1024])).collect();
    let body = Body::from_stream(futures::stream::iter(chunks));

    let (status, _, response) = send(&router, unsigned("application/json", body)).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response,
        error_body("The body is larger than the limit of 65536 bytes.")
    );
}

/// The size check comes before authentication.
#[tokio::test]
async fn size_checked_before_auth() {
    let (router, _) = app(signature_auth());
    let body = "x".repeat(70 * 1024);

    let (status, _, _) = send(&router, unsigned("application/json", body)).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn text_plain_is_415() {
    let (router, _) = app(signature_auth());
    let mut request = signed(SECRET, "msg_1", now(), FULL_RESULT);
    request
        .headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());

    let (status, _, body) = send(&router, request).await;

    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        body,
        error_body("Unsupported Content-Type; send the result as application/json.")
    );
}

#[tokio::test]
async fn missing_content_type_is_415() {
    let (router, _) = app(AuthConfig::None);
    let request = Request::post("/").body(Body::from(FULL_RESULT)).unwrap();

    let (status, _, _) = send(&router, request).await;

    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Authentication comes before the content type check.
#[tokio::test]
async fn auth_checked_before_content_type() {
    let (router, _) = app(signature_auth());

    let (status, _, _) = send(&router, unsigned("text/plain", FULL_RESULT)).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn other_methods_are_405() {
    let (router, _) = app(signature_auth());
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let request = Request::builder()
            .method(method.clone())
            .uri("/")
            .body(Body::empty())
            .unwrap();

        let (status, headers, body) = send(&router, request).await;

        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        let allow: Vec<_> = headers.get_all(header::ALLOW).iter().collect();
        assert_eq!(allow, vec!["POST"], "{method}");
        assert_eq!(
            body,
            error_body("Method not allowed; send results with POST."),
            "{method}"
        );
    }
}

#[tokio::test]
async fn invalid_fields_listed_in_one_400() {
    let (router, publisher) = app(signature_auth());
    let body = r#"{"input_email":"jane.doe@example.com","phone_number":"12345","linkedin_url":"https://example.com/in/user"}"#;

    let (status, _, response) = send(&router, signed(SECRET, "msg_1", now(), body)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        response,
        json!({
            "status": "error",
            "message": "The enrichment result is invalid; errors lists each failing field.",
            "errors": [
                {
                    "field": "phone_number",
                    "code": "invalid_e164",
                    "message": "phone_number must be an E.164 number: a plus sign, a non-zero \
                                digit and 7 to 15 digits in all, such as +14155552671.",
                },
                {
                    "field": "linkedin_url",
                    "code": "not_linkedin",
                    "message": "linkedin_url must point to linkedin.com or one of its subdomains.",
                },
            ],
        })
    );
    assert_eq!(publisher.messages().len(), 0);
}

#[tokio::test]
async fn invalid_json_is_400() {
    let (router, _) = app(AuthConfig::None);

    let (status, _, body) = send(&router, unsigned("application/json", "{\"input_email\":")).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "body");
    assert_eq!(body["errors"][0]["code"], "invalid_json");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_input_email_is_400() {
    let (router, _) = app(AuthConfig::None);

    let (status, _, body) = send(&router, unsigned("application/json", r#"{"name":"Jane"}"#)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"],
        json!([{
            "field": "input_email",
            "code": "missing",
            "message": "input_email is required; send a non-empty string.",
        }])
    );
}

#[tokio::test]
async fn publish_failure_is_503() {
    let (router, publisher) = app(signature_auth());
    publisher.set_failure(Some(PublishError::Timeout(Duration::from_secs(10))));

    let (status, headers, body) = send(&router, signed(SECRET, "msg_1", now(), FULL_RESULT)).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "10");
    assert_eq!(
        body,
        error_body("The result could not be stored; retry after 10 seconds.")
    );
}

#[tokio::test]
async fn healthz_is_200() {
    let (router, _) = app(signature_auth());
    let request = Request::get("/healthz").body(Body::empty()).unwrap();

    let (status, _, body) = send(&router, request).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn unknown_path_is_404() {
    let (router, _) = app(signature_auth());
    let request = Request::post("/results").body(Body::empty()).unwrap();

    let (status, _, body) = send(&router, request).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, error_body("Not found; send results with POST /."));
}
