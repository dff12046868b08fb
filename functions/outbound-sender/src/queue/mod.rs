//! The delivery queue between reading a file and sending its emails, chosen by
//! `DELIVERY_QUEUE`: Cloud Tasks in production, an in-process paced queue locally.

use async_trait::async_trait;

use crate::jobs::Job;

pub mod cloud_tasks;
pub mod local;

pub use cloud_tasks::CloudTasksQueue;
pub use local::LocalQueue;

/// Counts from one enqueue call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Jobs added to the queue.
    pub enqueued: usize,
    /// Jobs that the queue already held or had done (a redelivered event).
    pub already_queued: usize,
}

impl EnqueueReport {
    pub fn add(&mut self, other: EnqueueReport) {
        self.enqueued += other.enqueued;
        self.already_queued += other.already_queued;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Some jobs could not be enqueued; enqueueing them again later may work. Jobs already
    /// enqueued stay queued, and enqueueing them again is a no-op.
    #[error("{failed} of {total} job(s) could not be enqueued: {message}")]
    Enqueue {
        failed: usize,
        total: usize,
        message: String,
        report: EnqueueReport,
    },
    /// The queue has stopped and takes no more jobs.
    #[error("the delivery queue has stopped")]
    Stopped,
}

/// Takes jobs for delivery. Enqueueing the same job twice must not deliver it twice.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    async fn enqueue(&self, jobs: Vec<Job>) -> Result<EnqueueReport, QueueError>;
}
