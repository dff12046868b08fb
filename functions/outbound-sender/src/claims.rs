//! Records of the local queue's deliveries, kept in a bucket so that a redelivered event (in
//! this process or after a restart) does not send an email twice.
//!
//! Each delivery has one small object `state/delivered/<webhook-id>`. It is created with
//! `ifGenerationMatch=0` as a claim before the first attempt, so of two jobs with the same
//! `webhook-id` only one proceeds, and it is overwritten with the outcome at the end.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use enrichment_payload::record::rfc3339_micros;
use enrichment_runtime::storage::{ObjectStore, StorageError, WriteOutcome};
use serde::{Deserialize, Serialize};

/// Prefix of the delivery record objects.
pub const STATE_PREFIX: &str = "state/delivered/";

/// The state of one delivery as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Claimed, with attempts still to come.
    Claimed,
    Delivered,
    Failed,
}

/// The stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub webhook_id: String,
    /// Unique to one claim call, to recognise this call's own record.
    pub claim_token: String,
    pub status: ClaimStatus,
    pub attempts: u32,
    #[serde(with = "rfc3339_micros")]
    pub updated_at: DateTime<Utc>,
}

/// The result of [`ClaimStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This caller owns the delivery and must make the attempts.
    Claimed { claim_token: String },
    /// Another job claimed it first; `status` is the status in its record.
    Taken { status: Option<ClaimStatus> },
}

/// Reads and writes delivery records.
#[derive(Clone)]
pub struct ClaimStore {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for ClaimStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimStore").finish_non_exhaustive()
    }
}

pub fn object_name(webhook_id: &str) -> String {
    format!("{STATE_PREFIX}{webhook_id}")
}

impl ClaimStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Claims the delivery `webhook_id` in `bucket` unless a record exists.
    ///
    /// NOTE: a claim whose owner stopped before writing the outcome (a crash or a redeploy
    /// between claim and last attempt) stays `claimed`, and no later event sends that email.
    /// Such records are the `state/delivered/` objects whose status is still `claimed`; delete
    /// one to let the next event for the file send the email again.
    pub async fn claim(
        &self,
        bucket: &str,
        webhook_id: &str,
    ) -> Result<ClaimOutcome, StorageError> {
        let claim_token = uuid::Uuid::new_v4().simple().to_string();
        let record = ClaimRecord {
            webhook_id: webhook_id.to_string(),
            claim_token: claim_token.clone(),
            status: ClaimStatus::Claimed,
            attempts: 0,
            updated_at: Utc::now(),
        };
        let name = object_name(webhook_id);
        let outcome = self
            .store
            .write_if_absent(bucket, &name, encode(&record), "application/json")
            .await?;
        if outcome == WriteOutcome::Created {
            return Ok(ClaimOutcome::Claimed { claim_token });
        }

        // The write may have succeeded on a try whose response was lost, and then failed its
        // precondition on the client's retry. A record with this call's token is that case.
        let existing = self.read(bucket, webhook_id).await?;
        match existing {
            Some(existing) if existing.claim_token == claim_token => {
                Ok(ClaimOutcome::Claimed { claim_token })
            }
            other => Ok(ClaimOutcome::Taken {
                status: other.map(|record| record.status),
            }),
        }
    }

    /// Overwrites the record with the final outcome.
    pub async fn finish(
        &self,
        bucket: &str,
        webhook_id: &str,
        claim_token: &str,
        status: ClaimStatus,
        attempts: u32,
    ) -> Result<(), StorageError> {
        let record = ClaimRecord {
            webhook_id: webhook_id.to_string(),
            claim_token: claim_token.to_string(),
            status,
            attempts,
            updated_at: Utc::now(),
        };
        self.store
            .write(
                bucket,
                &object_name(webhook_id),
                encode(&record),
                "application/json",
            )
            .await
    }

    /// Reads the record of `webhook_id`; `None` when there is none or it cannot be parsed.
    pub async fn read(
        &self,
        bucket: &str,
        webhook_id: &str,
    ) -> Result<Option<ClaimRecord>, StorageError> {
        let bytes = self
            .store
            .read_small(bucket, &object_name(webhook_id))
            .await?;
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}

fn encode(record: &ClaimRecord) -> bytes::Bytes {
    bytes::Bytes::from(
        serde_json::to_vec(record).expect("a record of strings and numbers serialises"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use enrichment_runtime::storage::MemoryStore;
    use pretty_assertions::assert_eq;

    #[tokio::test]
    async fn first_claim_wins() {
        let claims = ClaimStore::new(Arc::new(MemoryStore::new()));
        let first = claims.claim("state", "msg_1").await.unwrap();
        let second = claims.claim("state", "msg_1").await.unwrap();
        let ClaimOutcome::Claimed { claim_token } = first else {
            panic!("first claim was {first:?}");
        };
        assert_eq!(
            second,
            ClaimOutcome::Taken {
                status: Some(ClaimStatus::Claimed)
            }
        );

        claims
            .finish("state", "msg_1", &claim_token, ClaimStatus::Delivered, 2)
            .await
            .unwrap();
        let third = claims.claim("state", "msg_1").await.unwrap();
        assert_eq!(
            third,
            ClaimOutcome::Taken {
                status: Some(ClaimStatus::Delivered)
            }
        );

        let record = claims.read("state", "msg_1").await.unwrap().unwrap();
        assert_eq!(record.status, ClaimStatus::Delivered);
        assert_eq!(record.attempts, 2);
        assert_eq!(record.claim_token, claim_token);
    }

    #[tokio::test]
    async fn claim_storage_error_is_returned() {
        let store = Arc::new(MemoryStore::new());
        store.fail_next(StorageError::Transient("unavailable".into()));
        let claims = ClaimStore::new(store);
        let result = claims.claim("state", "msg_1").await;
        assert!(
            matches!(result, Err(StorageError::Transient(_))),
            "{result:?}"
        );
    }
}
