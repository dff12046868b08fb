//! An in-process Pub/Sub topic with one push subscription. Each published message gets an id
//! and is posted to a router as the JSON envelope Pub/Sub push sends. Like Pub/Sub push, the
//! topic posts it again with backoff until the router responds with a 2xx.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use enrichment_runtime::pubsub::{PublishError, Publisher};
use http::{Request, header};
use tokio::sync::watch;
use tower::ServiceExt as _;

/// Redelivery backoff of a push subscription: the delay doubles from `min` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushBackoff {
    pub min: Duration,
    pub max: Duration,
}

impl PushBackoff {
    /// Returns the delay before delivery attempt `attempt + 1`, after attempt `attempt`
    /// (1-based) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.min.saturating_mul(1 << doublings).min(self.max)
    }
}

impl Default for PushBackoff {
    /// Returns 100 ms doubling up to 10 s. Pub/Sub's own retry policy ranges from 10 s to
    /// 600 s, but shorter delays make a sink failure show up as a short pause.
    fn default() -> Self {
        Self {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// Counts of one push topic since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    pub published: u64,
    /// Messages the endpoint acknowledged with a 2xx.
    pub acked: u64,
    /// Push attempts that got a non-2xx response, each followed by a redelivery.
    pub nacked: u64,
}

/// A [`Publisher`] that pushes every message to `endpoint`.
#[derive(Debug, Clone)]
pub struct PushTopic {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Router,
    subscription: String,
    backoff: PushBackoff,
    first_message_id: u64,
    next_message_id: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    /// Messages published but not yet acknowledged.
    pending: watch::Sender<u64>,
}

impl PushTopic {
    /// Creates a topic whose push subscription `subscription` (a full
    /// `projects/P/subscriptions/S` name, sent in each envelope) delivers to `endpoint`.
    ///
    /// Message ids are numbers, like Pub/Sub's, starting at the creation time in milliseconds
    /// times one million. The sink uses them as insert ids, so a later run on the same warehouse
    /// must not repeat them. Runs started at least one millisecond apart get disjoint ids unless
    /// the earlier one publishes more than a million messages per millisecond between the two
    /// starts.
    pub fn new(endpoint: Router, subscription: impl Into<String>, backoff: PushBackoff) -> Self {
        let now_millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or_default();
        let first_message_id = now_millis.saturating_mul(1_000_000);
        Self {
            inner: Arc::new(Inner {
                endpoint,
                subscription: subscription.into(),
                backoff,
                first_message_id,
                next_message_id: AtomicU64::new(first_message_id),
                acked: AtomicU64::new(0),
                nacked: AtomicU64::new(0),
                pending: watch::Sender::new(0),
            }),
        }
    }

    pub fn stats(&self) -> PushStats {
        PushStats {
            published: self.inner.next_message_id.load(Ordering::Relaxed)
                - self.inner.first_message_id,
            acked: self.inner.acked.load(Ordering::Relaxed),
            nacked: self.inner.nacked.load(Ordering::Relaxed),
        }
    }

    /// Messages published and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        *self.inner.pending.borrow()
    }

    /// Waits until every published message has been acknowledged.
    pub async fn wait_idle(&self) {
        let mut pending = self.inner.pending.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = pending.wait_for(|count| *count == 0).await;
    }
}

/// Builds the push request body: `{"message": {...}, "subscription": ...}` with the message id
/// and publish time under both spellings, as the Pub/Sub emulator sends them, and the
/// `deliveryAttempt` that production sends when a dead-letter policy is set.
pub fn push_envelope(
    message_id: &str,
    data: &[u8],
    attributes: &BTreeMap<String, String>,
    publish_time: &str,
    subscription: &str,
    delivery_attempt: u32,
) -> serde_json::Value {
    let data = base64::engine::general_purpose::STANDARD.encode(data);
    serde_json::json!({
        "message": {
            "attributes": attributes,
            "data": data,
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        },
        "subscription": subscription,
        "deliveryAttempt": delivery_attempt,
    })
}

#[async_trait]
impl Publisher for PushTopic {
    async fn publish(
        &self,
        data: Vec<u8>,
        attributes: BTreeMap<String, String>,
    ) -> Result<String, PublishError> {
        let message_id = self
            .inner
            .next_message_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let publish_time = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        self.inner.pending.send_modify(|count| *count += 1);

        let inner = Arc::clone(&self.inner);
        let id = message_id.clone();
        tokio::spawn(async move {
            deliver(&inner, &id, &data, &attributes, &publish_time).await;
            inner.acked.fetch_add(1, Ordering::Relaxed);
            inner.pending.send_modify(|count| *count -= 1);
        });

        Ok(message_id)
    }
}

/// Pushes one message until the endpoint acknowledges it.
async fn deliver(
    inner: &Inner,
    message_id: &str,
    data: &[u8],
    attributes: &BTreeMap<String, String>,
    publish_time: &str,
) {
    let mut attempt = 1;
    loop {
        let envelope = push_envelope(
            message_id,
            data,
            attributes,
            publish_time,
            &inner.subscription,
            attempt,
        );
        let request = Request::post("/")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(envelope.to_string()))
            .expect("a POST with a JSON body is a valid request");

        let status = match inner.endpoint.clone().oneshot(request).await {
            Ok(response) => response.status(),
            Err(infallible) => match infallible {},
        };
        if status.is_success() {
            return;
        }

        inner.nacked.fetch_add(1, Ordering::Relaxed);
        let delay = inner.backoff.delay_after(attempt);
        tracing::warn!(
            message_id,
            attempt,
            status = status.as_u16(),
            retry_in_ms = delay.as_millis() as u64,
            "push endpoint rejected the message; redelivering"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use pretty_assertions::assert_eq;

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder {
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
        /// Statuses to respond with in order; 204 once they run out.
        script: Arc<Mutex<Vec<StatusCode>>>,
    }

    async fn record(State(recorder): State<Recorder>, body: String) -> StatusCode {
        recorder
            .bodies
            .lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap());
        let mut script = recorder.script.lock().unwrap();
        if script.is_empty() {
            StatusCode::NO_CONTENT
        } else {
            script.remove(0)
        }
    }

    fn topic_with(script: Vec<StatusCode>) -> (PushTopic, Recorder) {
        let recorder = Recorder {
            script: Arc::new(Mutex::new(script)),
            ..Recorder::default()
        };
        let router = Router::new()
            .route("/", post(record))
            .with_state(recorder.clone());
        let backoff = PushBackoff {
            min: Duration::from_millis(5),
            max: Duration::from_millis(20),
        };
        let topic = PushTopic::new(router, "projects/local/subscriptions/sink", backoff);
        (topic, recorder)
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let backoff = PushBackoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (1..=6)
            .map(|attempt| backoff.delay_after(attempt).as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn envelope_has_both_spellings() {
        let attributes = BTreeMap::from([("partner_id".to_string(), "acme".to_string())]);
        let envelope = push_envelope(
            "7",
            b"{\"a\":1}",
            &attributes,
            "2024-05-01T10:00:00.000000Z",
            "projects/local/subscriptions/sink",
            2,
        );
        assert_eq!(
            envelope,
            serde_json::json!({
                "message": {
                    "attributes": {"partner_id": "acme"},
                    "data": "eyJhIjoxfQ==",
                    "messageId": "7",
                    "message_id": "7",
                    "publishTime": "2024-05-01T10:00:00.000000Z",
                    "publish_time": "2024-05-01T10:00:00.000000Z",
                },
                "subscription": "projects/local/subscriptions/sink",
                "deliveryAttempt": 2,
            })
        );
    }

    #[tokio::test]
    async fn publish_assigns_sequential_ids() {
        let (topic, recorder) = topic_with(vec![]);
        let first = topic
            .publish(b"one".to_vec(), BTreeMap::new())
            .await
            .unwrap();
        let second = topic
            .publish(b"two".to_vec(), BTreeMap::new())
            .await
            .unwrap();
        topic.wait_idle().await;

        let first_number: u64 = first.parse().unwrap();
        let second_number: u64 = second.parse().unwrap();
        assert_eq!(second_number, first_number + 1);
        assert_eq!(first_number % 1_000_000, 0, "{first}");
        let mut ids: Vec<String> = recorder
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|body| body["message"]["messageId"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, vec![first, second]);
        assert_eq!(
            topic.stats(),
            PushStats {
                published: 2,
                acked: 2,
                nacked: 0
            }
        );
    }

    #[tokio::test]
    async fn later_topic_ids_are_higher() {
        let (earlier, _) = topic_with(vec![]);
        let earlier_id = earlier
            .publish(b"a".to_vec(), BTreeMap::new())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        let (later, _) = topic_with(vec![]);
        let later_id = later.publish(b"b".to_vec(), BTreeMap::new()).await.unwrap();

        let earlier_number: u64 = earlier_id.parse().unwrap();
        let later_number: u64 = later_id.parse().unwrap();
        assert!(later_number > earlier_number, "{later_id} <= {earlier_id}");
    }

    #[tokio::test]
    async fn non_2xx_is_redelivered_until_acked() {
        let (topic, recorder) = topic_with(vec![
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::INTERNAL_SERVER_ERROR,
        ]);
        let attributes = BTreeMap::from([("delivery_id".to_string(), "msg_1".to_string())]);
        topic.publish(b"data".to_vec(), attributes).await.unwrap();
        topic.wait_idle().await;

        let bodies = recorder.bodies.lock().unwrap().clone();
        let attempts: Vec<u64> = bodies
            .iter()
            .map(|body| body["deliveryAttempt"].as_u64().unwrap())
            .collect();
        assert_eq!(attempts, vec![1, 2, 3]);
        assert_eq!(bodies[0]["message"], bodies[2]["message"]);
        assert_eq!(bodies[2]["message"]["data"], "ZGF0YQ==");
        assert_eq!(bodies[2]["message"]["attributes"]["delivery_id"], "msg_1");
        assert_eq!(
            topic.stats(),
            PushStats {
                published: 1,
                acked: 1,
                nacked: 2
            }
        );
        assert_eq!(topic.pending(), 0);
    }
}
