//! Pub/Sub emulator administration over its REST API: topics, pull and push subscriptions,
//! publish, pull and acknowledge.
//!
//! ```no_run
//! # async fn demo() {
//! use integration_tests::pubsub::PubsubAdmin;
//! let admin = PubsubAdmin::from_env();
//! let topic = admin.create_topic("results-abc").await;
//! admin.create_subscription("results-abc-pull", "results-abc").await;
//! // ... publish to `topic` ...
//! let messages = admin
//!     .pull_exactly("results-abc-pull", 1, std::time::Duration::from_secs(10))
//!     .await;
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

use crate::require_env;

/// A message pulled from a subscription, with its data decoded from base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub ack_id: String,
    pub message_id: String,
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: String,
}

/// REST client for one project on the Pub/Sub emulator.
#[derive(Debug, Clone)]
pub struct PubsubAdmin {
    client: reqwest::Client,
    /// `http://host:port`.
    base_url: String,
    project: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<WireReceivedMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReceivedMessage {
    ack_id: String,
    message: WireMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    message_id: String,
    #[serde(default)]
    publish_time: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishResponse {
    message_ids: Vec<String>,
}

impl PubsubAdmin {
    /// Uses `PUBSUB_EMULATOR_HOST` and `GOOGLE_CLOUD_PROJECT`, panicking when either is unset.
    pub fn from_env() -> Self {
        PubsubAdmin::new(
            &require_env("PUBSUB_EMULATOR_HOST"),
            &require_env("GOOGLE_CLOUD_PROJECT"),
        )
    }

    /// Creates a client for `emulator_host` (`host:port`, optionally with `http://`).
    pub fn new(emulator_host: &str, project: &str) -> Self {
        enrichment_runtime::server::install_crypto_provider();
        let base_url = enrichment_runtime::config::emulator_url(emulator_host)
            .unwrap_or_else(|| panic!("invalid Pub/Sub emulator address {emulator_host:?}"));
        PubsubAdmin {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("failed to build the HTTP client"),
            base_url,
            project: project.to_string(),
        }
    }

    /// Returns the emulator's base URL, `http://host:port`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// Returns `projects/P/topics/ID`.
    pub fn topic_path(&self, topic_id: &str) -> String {
        format!("projects/{}/topics/{topic_id}", self.project)
    }

    /// Returns `projects/P/subscriptions/ID`.
    pub fn subscription_path(&self, subscription_id: &str) -> String {
        format!("projects/{}/subscriptions/{subscription_id}", self.project)
    }

    /// Creates a topic and returns its full path.
    pub async fn create_topic(&self, topic_id: &str) -> String {
        let path = self.topic_path(topic_id);
        self.put(&path, json!({})).await;
        path
    }

    /// Creates a pull subscription on an existing topic and returns its full path. It receives
    /// only messages published after this call.
    pub async fn create_subscription(&self, subscription_id: &str, topic_id: &str) -> String {
        let path = self.subscription_path(subscription_id);
        let body = json!({"topic": self.topic_path(topic_id), "ackDeadlineSeconds": 60});
        self.put(&path, body).await;
        path
    }

    /// Creates a push subscription that posts each message to `endpoint`, wrapped in the
    /// standard push envelope, and returns its full path.
    pub async fn create_push_subscription(
        &self,
        subscription_id: &str,
        topic_id: &str,
        endpoint: &str,
    ) -> String {
        let path = self.subscription_path(subscription_id);
        let body = json!({
            "topic": self.topic_path(topic_id),
            "ackDeadlineSeconds": 60,
            "pushConfig": {"pushEndpoint": endpoint},
        });
        self.put(&path, body).await;
        path
    }

    /// Publishes one message and returns its id.
    pub async fn publish(
        &self,
        topic_id: &str,
        data: &[u8],
        attributes: &BTreeMap<String, String>,
    ) -> String {
        let url = format!("{}/v1/{}:publish", self.base_url, self.topic_path(topic_id));
        let body = json!({"messages": [{"data": STANDARD.encode(data), "attributes": attributes}]});
        let response: PublishResponse = self.post_json(&url, body).await;
        response
            .message_ids
            .into_iter()
            .next()
            .expect("the emulator returned no message id")
    }

    /// Pulls up to `max_messages` without waiting for new ones and without acknowledging them.
    pub async fn pull(&self, subscription_id: &str, max_messages: u32) -> Vec<ReceivedMessage> {
        let url = format!(
            "{}/v1/{}:pull",
            self.base_url,
            self.subscription_path(subscription_id)
        );
        let body = json!({"maxMessages": max_messages, "returnImmediately": true});
        let response: PullResponse = self.post_json(&url, body).await;
        response
            .received_messages
            .into_iter()
            .map(|received| ReceivedMessage {
                ack_id: received.ack_id,
                message_id: received.message.message_id,
                data: STANDARD
                    .decode(received.message.data)
                    .expect("the emulator returned data that is not base64"),
                attributes: received.message.attributes,
                publish_time: received.message.publish_time,
            })
            .collect()
    }

    /// Acknowledges messages so they are not delivered again.
    pub async fn acknowledge(&self, subscription_id: &str, ack_ids: &[String]) {
        if ack_ids.is_empty() {
            return;
        }
        let url = format!(
            "{}/v1/{}:acknowledge",
            self.base_url,
            self.subscription_path(subscription_id)
        );
        let _: serde_json::Value = self.post_json(&url, json!({"ackIds": ack_ids})).await;
    }

    /// Pulls and acknowledges until `count` messages have arrived, panicking after `timeout`
    /// or when more than `count` arrive.
    pub async fn pull_exactly(
        &self,
        subscription_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        while messages.len() < count {
            let batch = self.pull(subscription_id, 100).await;
            let ack_ids: Vec<String> = batch.iter().map(|message| message.ack_id.clone()).collect();
            self.acknowledge(subscription_id, &ack_ids).await;
            messages.extend(batch);
            if messages.len() >= count {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "received {} of {count} messages on {subscription_id} within {timeout:?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            messages.len(),
            count,
            "more messages than expected on {subscription_id}"
        );
        messages
    }

    async fn put(&self, path: &str, body: serde_json::Value) {
        let url = format!("{}/v1/{path}", self.base_url);
        let response = self
            .client
            .put(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("PUT {url} failed: {err}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {url} returned {status}: {text}");
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: serde_json::Value,
    ) -> T {
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url} failed: {err}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url} returned {status}: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("POST {url} returned unexpected JSON ({err}): {text}"))
    }
}
