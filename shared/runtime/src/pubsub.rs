//! Publishing to a Pub/Sub topic.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_pubsub::retry_policy::RetryableErrors;
use tokio::sync::mpsc;

/// Publishes one message and returns the id Pub/Sub assigned to it.
///
/// A returned id means the message is durably stored by Pub/Sub.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    async fn publish(
        &self,
        data: Vec<u8>,
        attributes: BTreeMap<String, String>,
    ) -> Result<String, PublishError>;
}

/// Why a publish failed. Every variant is worth a retry by the caller's client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("publish timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("publish failed: {0}")]
    Failed(String),
}

/// Builds the full topic path from a topic id or a full `projects/P/topics/T` path.
///
/// A topic id is combined with `project`. A full path is kept as given, so a topic in another
/// project works. Ids follow Pub/Sub's rules: 3 to 255 characters of letters, digits and
/// `-_.~+%`, starting with a letter, and not starting with `goog`.
pub fn topic_path(project: &str, topic: &str) -> Result<String, InvalidTopic> {
    let topic = topic.trim();
    let (project, id) = match topic.strip_prefix("projects/") {
        Some(rest) => match rest.split_once("/topics/") {
            Some((project, id)) => (project, id),
            None => return Err(InvalidTopic(topic.to_string())),
        },
        None => (project, topic),
    };
    let project_valid = !project.is_empty()
        && project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'));
    if !project_valid || !is_valid_topic_id(id) {
        return Err(InvalidTopic(topic.to_string()));
    }
    Ok(format!("projects/{project}/topics/{id}"))
}

fn is_valid_topic_id(id: &str) -> bool {
    (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.to_ascii_lowercase().starts_with("goog")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '%'))
}

/// A topic that is neither a valid topic id nor a `projects/P/topics/T` path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid topic {0:?}: expected a topic id (3 to 255 characters, starting with a letter) or \
     projects/PROJECT/topics/TOPIC"
)]
pub struct InvalidTopic(pub String);

/// A failure to build the Pub/Sub client, such as missing credentials.
#[derive(Debug, thiserror::Error)]
#[error("failed to create the Pub/Sub publisher for {topic}: {message}")]
pub struct BuildError {
    pub topic: String,
    pub message: String,
}

/// Publisher on the official `google-cloud-pubsub` client, for Pub/Sub or its emulator.
///
/// Build one per process and share it. With the defaults of google-cloud-pubsub 1.7, the client
/// batches messages that concurrent requests publish within 10 ms into one `Publish` call.
#[derive(Debug, Clone)]
pub struct GooglePublisher {
    client: google_cloud_pubsub::client::Publisher,
    topic: String,
    timeout: Duration,
}

impl GooglePublisher {
    /// Creates a publisher for `topic`, a full `projects/P/topics/T` path (see [`topic_path`]).
    ///
    /// With `emulator_endpoint` (a base URL such as `http://127.0.0.1:8085`, see
    /// [`crate::config::emulator_url`]) it talks to the emulator without credentials, because
    /// `google-cloud-pubsub` 1.x ignores `PUBSUB_EMULATOR_HOST`. Otherwise it uses Application
    /// Default Credentials.
    ///
    /// Each publish fails with [`PublishError::Timeout`] after `timeout`, and the client stops
    /// retrying by then as well.
    pub async fn connect(
        topic: &str,
        emulator_endpoint: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let mut builder = google_cloud_pubsub::client::Publisher::builder(topic)
            .with_retry_policy(RetryableErrors.with_time_limit(timeout));
        if let Some(endpoint) = emulator_endpoint {
            builder = builder.with_endpoint(endpoint).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let client = builder.build().await.map_err(|err| BuildError {
            topic: topic.to_string(),
            message: error_chain(&err),
        })?;
        Ok(GooglePublisher {
            client,
            topic: topic.to_string(),
            timeout,
        })
    }

    /// Returns the full topic path.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends every buffered message now and waits for the outcome; call it before exit.
    pub async fn flush(&self) {
        self.client.flush().await;
    }
}

#[async_trait]
impl Publisher for GooglePublisher {
    async fn publish(
        &self,
        data: Vec<u8>,
        attributes: BTreeMap<String, String>,
    ) -> Result<String, PublishError> {
        let message = google_cloud_pubsub::model::Message::new()
            .set_data(data)
            .set_attributes(attributes);
        // NOTE: a message whose RPC is already in flight when the timeout fires may still be
        // stored. The caller then reports a failure for a message that exists, and the retry
        // that follows publishes a duplicate with the same delivery id.
        match tokio::time::timeout(self.timeout, self.client.publish(message)).await {
            Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(Err(err)) => Err(PublishError::Failed(error_chain(&err))),
            Ok(Ok(id)) => Ok(id),
        }
    }
}

/// Formats an error with its sources, since the client's outer messages hide the cause.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A message stored by [`MemoryPublisher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    pub id: String,
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: chrono::DateTime<chrono::Utc>,
}

/// In-memory publisher for handler tests and the local stack.
///
/// It stores every message, assigns ids `"1"`, `"2"`, ... in order, sends each message to every
/// receiver from [`MemoryPublisher::subscribe`], and fails every publish while a failure is set.
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    messages: Vec<PublishedMessage>,
    failure: Option<PublishError>,
    subscribers: Vec<mpsc::UnboundedSender<PublishedMessage>>,
}

impl MemoryPublisher {
    pub fn new() -> Self {
        MemoryPublisher::default()
    }

    /// Returns a copy of the messages published so far, oldest first.
    pub fn messages(&self) -> Vec<PublishedMessage> {
        self.lock().messages.clone()
    }

    /// Makes every later publish fail with `failure` until it is cleared with `None`.
    pub fn set_failure(&self, failure: Option<PublishError>) {
        self.lock().failure = failure;
    }

    /// Returns a receiver of every message published from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<PublishedMessage> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().subscribers.push(sender);
        receiver
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while the lock was held cannot leave the vectors half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(
        &self,
        data: Vec<u8>,
        attributes: BTreeMap<String, String>,
    ) -> Result<String, PublishError> {
        let mut state = self.lock();
        if let Some(failure) = &state.failure {
            return Err(failure.clone());
        }
        let message = PublishedMessage {
            id: (state.messages.len() + 1).to_string(),
            data,
            attributes,
            publish_time: chrono::Utc::now(),
        };
        state.messages.push(message.clone());
        state
            .subscribers
            .retain(|subscriber| subscriber.send(message.clone()).is_ok());
        Ok(message.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn topic_path_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("results", Some("projects/p1/topics/results")),
            (" results ", Some("projects/p1/topics/results")),
            (
                "projects/other/topics/res-1",
                Some("projects/other/topics/res-1"),
            ),
            ("ab", None),
            ("1results", None),
            ("goog-results", None),
            ("res/ults", None),
            ("projects/other/subscriptions/x", None),
            ("projects//topics/results", None),
        ];
        for (topic, expected) in cases {
            assert_eq!(
                topic_path("p1", topic).ok().as_deref(),
                *expected,
                "topic {topic:?}"
            );
        }
    }

    #[test]
    fn invalid_topic_message() {
        assert_eq!(
            topic_path("p1", "ab").unwrap_err().to_string(),
            "invalid topic \"ab\": expected a topic id (3 to 255 characters, starting with a \
             letter) or projects/PROJECT/topics/TOPIC"
        );
    }

    #[tokio::test]
    async fn memory_publisher_ids_and_failure() {
        let publisher = MemoryPublisher::new();
        let mut receiver = publisher.subscribe();
        let attributes = BTreeMap::from([("partner_id".to_string(), "acme".to_string())]);

        assert_eq!(
            publisher.publish(b"one".to_vec(), attributes.clone()).await,
            Ok("1".to_string())
        );
        assert_eq!(
            publisher.publish(b"two".to_vec(), BTreeMap::new()).await,
            Ok("2".to_string())
        );

        publisher.set_failure(Some(PublishError::Failed("down".into())));
        assert_eq!(
            publisher.publish(b"three".to_vec(), BTreeMap::new()).await,
            Err(PublishError::Failed("down".into()))
        );
        publisher.set_failure(None);

        let messages = publisher.messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].id, "1");
        assert_eq!(messages[0].data, b"one");
        assert_eq!(messages[0].attributes, attributes);
        assert_eq!(messages[1].id, "2");

        let first = receiver.recv().await.unwrap();
        assert_eq!(first, messages[0]);
        let second = receiver.recv().await.unwrap();
        assert_eq!(second, messages[1]);
    }

    async fn emulator_publisher(addr: std::net::SocketAddr) -> GooglePublisher {
        crate::server::install_crypto_provider();
        GooglePublisher::connect(
            "projects/test-project/topics/results",
            Some(&format!("http://{addr}")),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
    }

    /// The client retries refused connections with jittered backoff until the time limit, so
    /// the outcome is either its last connection error or the timeout, depending on timing.
    #[tokio::test]
    async fn google_publisher_fails_on_closed_port() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let publisher = emulator_publisher(closed).await;

        let started = std::time::Instant::now();
        let result = publisher.publish(b"{}".to_vec(), BTreeMap::new()).await;
        let elapsed = started.elapsed();

        match result {
            Err(PublishError::Failed(message)) => {
                assert!(message.contains("Connection refused"), "message: {message}")
            }
            Err(PublishError::Timeout(timeout)) => assert_eq!(timeout, Duration::from_secs(1)),
            Ok(id) => panic!("publish to a closed port returned id {id}"),
        }
        assert!(elapsed < Duration::from_secs(3), "elapsed: {elapsed:?}");
    }

    /// A server that accepts connections but never responds makes the publish time out.
    #[tokio::test]
    async fn google_publisher_times_out_on_silent_server() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let publisher = emulator_publisher(silent.local_addr().unwrap()).await;

        let started = std::time::Instant::now();
        let result = publisher.publish(b"{}".to_vec(), BTreeMap::new()).await;
        let elapsed = started.elapsed();

        assert_eq!(result, Err(PublishError::Timeout(Duration::from_secs(1))));
        assert!(elapsed < Duration::from_secs(3), "elapsed: {elapsed:?}");
        drop(silent);
    }
}
