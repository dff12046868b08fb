//! The in-process delivery queue, used by the local stack and the tests. It applies the
//! partner's policy itself:
//! - no request starts sooner than the minimum interval after the previous one, retries
//!   included (see [`Pacer`]);
//! - a retryable outcome is retried after [`retry_delay`], up to the maximum number of
//!   retries, while other jobs use the free request slots in between;
//! - before its first attempt each job claims its `webhook-id` in the state bucket (see
//!   [`ClaimStore`]), so a redelivered event does not send an email twice, in this process or
//!   after a restart.
//!
//! NOTE: queued jobs stay in memory until they finish, so a very large file keeps all of its
//! jobs in memory at once (an estimated 300 bytes each). Production uses Cloud Tasks instead.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use enrichment_payload::DeliveryStatus;
use enrichment_runtime::pii;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::{DeliveryQueue, EnqueueReport, QueueError};
use crate::claims::{ClaimOutcome, ClaimStatus, ClaimStore};
use crate::deliver::{Decision, DeliveryCore};
use crate::jobs::{Job, SourceObject};
use crate::policy::{Pacer, retry_delay};

/// Partner requests in flight at once. With one request per second and a 30 s timeout, at
/// most about 30 can be outstanding; the bound guards against tiny intervals.
pub const MAX_IN_FLIGHT: usize = 32;

/// The policy the local queue applies.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPolicy {
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_jitter: bool,
    pub min_request_interval: Duration,
}

/// Handle to the queue. Clones share one queue; its worker stops when every handle is
/// dropped and the last job has finished.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
}

#[derive(Debug, Default)]
struct Shared {
    tracker: Mutex<Tracker>,
    changed: Notify,
}

/// Jobs accepted and not yet finished.
#[derive(Debug, Default)]
struct Tracker {
    pending_ids: HashSet<String>,
    per_source: HashMap<SourceObject, usize>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn finish(&self, job: &Job) {
        let mut tracker = self.lock();
        if tracker.pending_ids.remove(&job.webhook_id) {
            let source = job.source();
            if let Some(count) = tracker.per_source.get_mut(&source) {
                *count -= 1;
                if *count == 0 {
                    tracker.per_source.remove(&source);
                }
            }
        }
        drop(tracker);
        self.changed.notify_waiters();
    }
}

impl LocalQueue {
    /// Starts the queue's worker on the current Tokio runtime.
    ///
    /// Claims go to `state_bucket`, or to each job's source bucket when it is `None`.
    pub fn start(
        core: Arc<DeliveryCore>,
        claims: ClaimStore,
        state_bucket: Option<String>,
        policy: LocalPolicy,
    ) -> Self {
        let shared = Arc::new(Shared::default());
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let worker = Worker {
            shared: shared.clone(),
            core,
            claims,
            state_bucket,
            pacer: Pacer::new(policy.min_request_interval),
            policy,
            jobs_rx,
            jobs_closed: false,
            events_tx,
            events_rx,
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            next_sequence: 0,
            in_flight: 0,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        };
        tokio::spawn(worker.run());
        Self {
            shared,
            jobs: jobs_tx,
        }
    }

    /// Returns the number of jobs accepted and not yet finished.
    pub fn pending(&self) -> usize {
        self.shared.lock().pending_ids.len()
    }

    /// Waits until every job of `source` accepted so far has finished.
    pub async fn wait_for_source(&self, source: &SourceObject) {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.shared.lock().per_source.contains_key(source) {
                return;
            }
            changed.await;
        }
    }

    /// Waits until no job is pending.
    pub async fn wait_idle(&self) {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.shared.lock().pending_ids.is_empty() {
                return;
            }
            changed.await;
        }
    }
}

#[async_trait]
impl DeliveryQueue for LocalQueue {
    async fn enqueue(&self, jobs: Vec<Job>) -> Result<EnqueueReport, QueueError> {
        let mut report = EnqueueReport::default();
        let mut tracker = self.shared.lock();
        for job in jobs {
            // A job with the same id is still queued here: it will be delivered once.
            if !tracker.pending_ids.insert(job.webhook_id.clone()) {
                report.already_queued += 1;
                continue;
            }
            *tracker.per_source.entry(job.source()).or_insert(0) += 1;
            let webhook_id = job.webhook_id.clone();
            if self.jobs.send(job).is_err() {
                tracker.pending_ids.remove(&webhook_id);
                return Err(QueueError::Stopped);
            }
            report.enqueued += 1;
        }
        Ok(report)
    }
}

/// A job between attempts.
#[derive(Debug)]
struct Pending {
    job: Job,
    /// Attempts made so far; the next attempt's `X-CloudTasks-TaskRetryCount`.
    retry_count: u32,
    /// Token of this job's claim, after a successful claim.
    claim_token: Option<String>,
    /// Failed claim calls (storage errors), retried with the same backoff.
    claim_failures: u32,
}

/// A pending job waiting for its time, ordered by time and then arrival.
#[derive(Debug)]
struct Delayed {
    ready_at: Instant,
    sequence: u64,
    pending: Pending,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.ready_at, self.sequence) == (other.ready_at, other.sequence)
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ready_at, self.sequence).cmp(&(other.ready_at, other.sequence))
    }
}

/// Messages from attempt tasks to the worker.
#[derive(Debug)]
enum Event {
    Retry { pending: Pending, ready_at: Instant },
    Finished(Job),
}

struct Worker {
    shared: Arc<Shared>,
    core: Arc<DeliveryCore>,
    claims: ClaimStore,
    state_bucket: Option<String>,
    policy: LocalPolicy,
    pacer: Pacer,
    jobs_rx: mpsc::UnboundedReceiver<Job>,
    jobs_closed: bool,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    ready: VecDeque<Pending>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    next_sequence: u64,
    in_flight: usize,
    permits: Arc<Semaphore>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            self.take_available();
            if let Some(pending) = self.pop_due(Instant::now()) {
                self.dispatch(pending).await;
                continue;
            }
            let idle = self.ready.is_empty() && self.delayed.is_empty() && self.in_flight == 0;
            if self.jobs_closed && idle {
                return;
            }
            let next_due = self.delayed.peek().map(|Reverse(delayed)| delayed.ready_at);
            tokio::select! {
                job = self.jobs_rx.recv(), if !self.jobs_closed => match job {
                    Some(job) => self.ready.push_back(Pending::new(job)),
                    None => self.jobs_closed = true,
                },
                Some(event) = self.events_rx.recv() => self.handle(event),
                () = sleep_until_or_forever(next_due) => {}
            }
        }
    }

    fn take_available(&mut self) {
        while let Ok(event) = self.events_rx.try_recv() {
            self.handle(event);
        }
        while !self.jobs_closed {
            match self.jobs_rx.try_recv() {
                Ok(job) => self.ready.push_back(Pending::new(job)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.jobs_closed = true,
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Retry { pending, ready_at } => {
                self.in_flight -= 1;
                self.delay(pending, ready_at);
            }
            Event::Finished(job) => {
                self.in_flight -= 1;
                self.shared.finish(&job);
            }
        }
    }

    fn delay(&mut self, pending: Pending, ready_at: Instant) {
        self.next_sequence += 1;
        self.delayed.push(Reverse(Delayed {
            ready_at,
            sequence: self.next_sequence,
            pending,
        }));
    }

    /// Returns a retry whose time has come, else the oldest new job.
    fn pop_due(&mut self, now: Instant) -> Option<Pending> {
        let retry_due = self
            .delayed
            .peek()
            .is_some_and(|Reverse(delayed)| delayed.ready_at <= now);
        if retry_due {
            return self.delayed.pop().map(|Reverse(delayed)| delayed.pending);
        }
        self.ready.pop_front()
    }

    fn jitter_sample(&self) -> Option<f64> {
        self.policy.retry_jitter.then(rand::random::<f64>)
    }

    /// Claims the job if it has no claim yet, waits for its request slot, and starts the
    /// attempt in its own task.
    async fn dispatch(&mut self, mut pending: Pending) {
        let job = &pending.job;
        let bucket = self
            .state_bucket
            .clone()
            .unwrap_or_else(|| job.source_bucket.clone());
        let span = delivery_span(job);

        if pending.claim_token.is_none() {
            let claimed = self
                .claims
                .claim(&bucket, &job.webhook_id)
                .instrument(span.clone())
                .await;
            match claimed {
                Ok(ClaimOutcome::Claimed { claim_token }) => {
                    pending.claim_token = Some(claim_token)
                }
                Ok(ClaimOutcome::Taken { status }) => {
                    span.in_scope(|| match status {
                        Some(ClaimStatus::Claimed) => tracing::warn!(
                            "another job holds the claim for this email and has not finished; not sending it"
                        ),
                        _ => tracing::info!(
                            previous = ?status,
                            "this email was already handled for this file; not sending it again"
                        ),
                    });
                    self.shared.finish(job);
                    return;
                }
                Err(error) => {
                    self.claim_failed(pending, &error, &span).await;
                    return;
                }
            }
        }

        let now = Instant::now();
        let start = self.pacer.reserve(now.into_std(), now.into_std());
        sleep_until_precise(start).await;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // The timer and the permit can wake this task late. The interval counts from the real
        // start, so no request follows the previous one sooner than the interval.
        self.pacer.mark_started(std::time::Instant::now());

        self.in_flight += 1;
        let core = self.core.clone();
        let claims = self.claims.clone();
        let events = self.events_tx.clone();
        let base = self.policy.retry_base_delay;
        let jitter = self.jitter_sample();
        let attempt_task = async move {
            let retry_count = pending.retry_count;
            let (_, decision) = core.deliver_once(&pending.job, retry_count).await;
            let event = match decision {
                Decision::Final(row) => {
                    let status = match row.status {
                        DeliveryStatus::Delivered => ClaimStatus::Delivered,
                        _ => ClaimStatus::Failed,
                    };
                    let token = pending.claim_token.as_deref().unwrap_or_default();
                    if let Err(error) = claims
                        .finish(
                            &bucket,
                            &pending.job.webhook_id,
                            token,
                            status,
                            row.attempts,
                        )
                        .await
                    {
                        tracing::error!(%error, "writing the delivery record failed; it stays claimed");
                    }
                    Event::Finished(pending.job)
                }
                Decision::RetryLater { retry_after } => {
                    let next_retry = retry_count + 1;
                    let delay = retry_delay(next_retry, base, retry_after, jitter);
                    pending.retry_count = next_retry;
                    Event::Retry {
                        pending,
                        ready_at: Instant::now() + delay,
                    }
                }
            };
            drop(permit);
            // The worker outlives its tasks, so the channel is open.
            let _ = events.send(event);
        };
        tokio::spawn(attempt_task.instrument(span));
    }

    /// Retries a failed claim call after the retry backoff; after `max_retries` failures the
    /// job fails without any request to the partner.
    async fn claim_failed(
        &mut self,
        mut pending: Pending,
        error: &enrichment_runtime::storage::StorageError,
        span: &tracing::Span,
    ) {
        pending.claim_failures += 1;
        if pending.claim_failures <= self.policy.max_retries {
            let delay = retry_delay(
                pending.claim_failures,
                self.policy.retry_base_delay,
                None,
                self.jitter_sample(),
            );
            span.in_scope(|| {
                tracing::warn!(%error, retry_in_secs = delay.as_secs_f64(), "claiming the delivery failed; will retry")
            });
            self.delay(pending, Instant::now() + delay);
            return;
        }
        span.in_scope(
            || tracing::error!(%error, "claiming the delivery failed; giving up without sending"),
        );
        let row = pending.job.outcome_row(
            DeliveryStatus::Failed,
            0,
            None,
            Some(format!(
                "the delivery could not be claimed in the state bucket: {error}"
            )),
            chrono::Utc::now(),
        );
        if let Err(error) = self.core.recorder.insert_outcome(&row).await {
            span.in_scope(
                || tracing::error!(%error, "inserting the delivery row failed; the row is lost"),
            );
        }
        self.shared.finish(&pending.job);
    }
}

impl Pending {
    fn new(job: Job) -> Self {
        Self {
            job,
            retry_count: 0,
            claim_token: None,
            claim_failures: 0,
        }
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Creates the span of one delivery: its ids, and the email only as a keyed hash.
pub fn delivery_span(job: &Job) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        webhook_id = %job.webhook_id,
        partner_id = %job.partner_id,
        tenant_id = %job.tenant_id,
        email_hash = %pii::hash(&job.input_email),
        bucket = %job.source_bucket,
        object = %job.source_object,
        generation = job.source_generation,
    )
}

/// Tokio's timer wakes up to about 1 ms late, which would stretch every interval by that much
/// because the pacer counts from the real start. The last `PRECISE_SLEEP_MARGIN` is slept on a
/// blocking thread, whose sleep is accurate to tens of microseconds on Linux.
const PRECISE_SLEEP_MARGIN: Duration = Duration::from_millis(2);

/// Sleeps until `deadline`, to within a fraction of a millisecond.
async fn sleep_until_precise(deadline: std::time::Instant) {
    let coarse = deadline
        .checked_sub(PRECISE_SLEEP_MARGIN)
        .unwrap_or(deadline);
    tokio::time::sleep_until(Instant::from_std(coarse)).await;
    let remaining = deadline.saturating_duration_since(std::time::Instant::now());
    if !remaining.is_zero() {
        // A failed blocking task only means the sleep ended early; the pacer still counts the
        // next interval from the real start.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(remaining)).await;
    }
}
