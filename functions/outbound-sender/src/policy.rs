//! The delivery policy as pure functions: which outcomes are worth a retry, how long to wait
//! before one, and when the next request to the partner may start.
//!
//! Both queues apply the same policy. Cloud Tasks applies the backoff and rate with its queue
//! settings and learns the [`classify`] verdict from the `/deliver` response. The local queue
//! calls [`retry_delay`] and [`Pacer`] itself.

use std::time::{Duration, Instant, SystemTime};

/// Maximum delay taken from a `Retry-After`. Longer values are cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The outcome of one attempt, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The partner responded with this status.
    Status(u16),
    /// No response arrived within the request timeout.
    Timeout,
    /// The connection could not be made (refused, reset, DNS).
    Connect,
    /// The request failed in another way before a status arrived.
    OtherTransport,
}

/// Whether an outcome is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// A later attempt can succeed.
    Retry,
    /// Another attempt would get the same response.
    Permanent,
}

/// Decides whether an attempt delivered, may be retried, or failed for good, and why.
pub fn classify(result: AttemptResult) -> (Verdict, &'static str) {
    match result {
        AttemptResult::Status(code) if (200..300).contains(&code) => {
            (Verdict::Delivered, "the partner accepted the request")
        }
        AttemptResult::Status(408) => (Verdict::Retry, "the partner timed out reading the request"),
        AttemptResult::Status(425) => (
            Verdict::Retry,
            "the partner asked to retry a replayed request later",
        ),
        AttemptResult::Status(429) => (Verdict::Retry, "the partner is rate limiting"),
        AttemptResult::Status(500) => (Verdict::Retry, "the partner had an internal error"),
        AttemptResult::Status(502) => (Verdict::Retry, "a gateway before the partner failed"),
        AttemptResult::Status(503) => (Verdict::Retry, "the partner is unavailable"),
        AttemptResult::Status(504) => (Verdict::Retry, "a gateway before the partner timed out"),
        AttemptResult::Status(code) if (300..400).contains(&code) => (
            Verdict::Permanent,
            "the partner redirected, and redirects are not followed",
        ),
        AttemptResult::Status(code) if (400..500).contains(&code) => (
            Verdict::Permanent,
            "the partner rejected the request, so resending it cannot help",
        ),
        AttemptResult::Status(_) => (
            Verdict::Permanent,
            "the partner responded with a status that is not known to be transient",
        ),
        AttemptResult::Timeout => (Verdict::Retry, "the request to the partner timed out"),
        AttemptResult::Connect => (Verdict::Retry, "the connection to the partner failed"),
        AttemptResult::OtherTransport => (
            Verdict::Retry,
            "the request failed in transit before the partner responded",
        ),
    }
}

/// Parses a `Retry-After` value, delay seconds or an HTTP date, into a delay from `now`,
/// clamped to [`MAX_RETRY_AFTER`]. A date in the past is a zero delay. Returns `None` for a
/// value that is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        date.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Returns the backoff before retry number `retry` (1 for the first retry): `base * 2^(retry-1)`.
///
/// `jitter` is a sample in `[0, 1)` that adds up to half of the backoff, or `None` for no jitter.
/// A `retry_after` from the partner raises the delay, never lowers it. The result is at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_delay(
    retry: u32,
    base: Duration,
    retry_after: Option<Duration>,
    jitter: Option<f64>,
) -> Duration {
    let exponent = retry.saturating_sub(1).min(31);
    let backoff = base
        .checked_mul(1u32 << exponent)
        .unwrap_or(MAX_RETRY_AFTER)
        .min(MAX_RETRY_AFTER);
    let backoff = match jitter {
        Some(sample) => backoff.mul_f64(1.0 + 0.5 * sample.clamp(0.0, 1.0)),
        None => backoff,
    };
    let delay = match retry_after {
        Some(requested) => backoff.max(requested),
        None => backoff,
    };
    delay.min(MAX_RETRY_AFTER)
}

/// Spaces out request starts: each start is at least `interval` after the previous one.
///
/// The pacer is a "next allowed instant": it keeps the start it gave last and needs no timer,
/// so tests drive it with made-up instants.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    last_start: Option<Instant>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_start: None,
        }
    }

    /// Returns the earliest instant, not before `now` or `ready_at`, at which a request may
    /// start, and records it as the latest start.
    pub fn reserve(&mut self, now: Instant, ready_at: Instant) -> Instant {
        let mut start = now.max(ready_at);
        if let Some(last) = self.last_start {
            start = start.max(last + self.interval);
        }
        self.last_start = Some(start);
        start
    }

    /// Records that the request reserved last really started at `started`, which is later than
    /// its reserved instant when the task woke late, so the next request keeps a full interval
    /// after the real start.
    pub fn mark_started(&mut self, started: Instant) {
        self.last_start = Some(self.last_start.map_or(started, |last| last.max(started)));
    }

    /// Returns the earliest instant a request could start at, without reserving it.
    pub fn next_allowed(&self, now: Instant) -> Instant {
        match self.last_start {
            Some(last) => now.max(last + self.interval),
            None => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn pacer_counts_from_late_start() {
        let origin = Instant::now();
        let interval = Duration::from_millis(50);
        let mut pacer = Pacer::new(interval);

        let first = pacer.reserve(origin, origin);
        assert_eq!(first, origin);
        // The first request woke 3 ms late: the second keeps 50 ms after the real start.
        pacer.mark_started(origin + Duration::from_millis(3));
        let second = pacer.reserve(origin, origin);
        assert_eq!(second, origin + Duration::from_millis(53));

        // A start reported earlier than the reservation does not move the schedule back.
        pacer.mark_started(origin + Duration::from_millis(10));
        let third = pacer.reserve(origin, origin);
        assert_eq!(third, origin + Duration::from_millis(103));
    }

    #[test]
    fn classify_table() {
        let cases: &[(AttemptResult, Verdict)] = &[
            (AttemptResult::Status(200), Verdict::Delivered),
            (AttemptResult::Status(202), Verdict::Delivered),
            (AttemptResult::Status(204), Verdict::Delivered),
            (AttemptResult::Status(408), Verdict::Retry),
            (AttemptResult::Status(425), Verdict::Retry),
            (AttemptResult::Status(429), Verdict::Retry),
            (AttemptResult::Status(500), Verdict::Retry),
            (AttemptResult::Status(502), Verdict::Retry),
            (AttemptResult::Status(503), Verdict::Retry),
            (AttemptResult::Status(504), Verdict::Retry),
            (AttemptResult::Timeout, Verdict::Retry),
            (AttemptResult::Connect, Verdict::Retry),
            (AttemptResult::OtherTransport, Verdict::Retry),
            (AttemptResult::Status(301), Verdict::Permanent),
            (AttemptResult::Status(307), Verdict::Permanent),
            (AttemptResult::Status(400), Verdict::Permanent),
            (AttemptResult::Status(401), Verdict::Permanent),
            (AttemptResult::Status(403), Verdict::Permanent),
            (AttemptResult::Status(404), Verdict::Permanent),
            (AttemptResult::Status(409), Verdict::Permanent),
            (AttemptResult::Status(410), Verdict::Permanent),
            (AttemptResult::Status(413), Verdict::Permanent),
            (AttemptResult::Status(422), Verdict::Permanent),
            (AttemptResult::Status(501), Verdict::Permanent),
            (AttemptResult::Status(505), Verdict::Permanent),
            (AttemptResult::Status(100), Verdict::Permanent),
        ];
        for (result, expected) in cases {
            assert_eq!(classify(*result).0, *expected, "{result:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let in_90s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        let in_2h = httpdate::fmt_http_date(now + Duration::from_secs(7200));
        let cases: &[(&str, Option<Duration>)] = &[
            ("2", Some(Duration::from_secs(2))),
            (" 120 ", Some(Duration::from_secs(120))),
            ("0", Some(Duration::ZERO)),
            ("86400", Some(MAX_RETRY_AFTER)),
            (&in_90s, Some(Duration::from_secs(90))),
            (&past, Some(Duration::ZERO)),
            (&in_2h, Some(MAX_RETRY_AFTER)),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_retry_after(value, now),
                *expected,
                "Retry-After {value:?}"
            );
        }
    }

    #[test]
    fn retry_delay_doubles_from_base() {
        let base = Duration::from_secs(2);
        let delays: Vec<Duration> = (1..=4)
            .map(|retry| retry_delay(retry, base, None, None))
            .collect();
        assert_eq!(
            delays,
            vec![
                Duration::from_secs(2),
                Duration::from_secs(4),
                Duration::from_secs(8),
                Duration::from_secs(16)
            ]
        );
        let fractional = retry_delay(3, Duration::from_millis(200), None, None);
        assert_eq!(fractional, Duration::from_millis(800));
    }

    #[test]
    fn retry_delay_takes_larger_retry_after() {
        let base = Duration::from_secs(2);
        let raised = retry_delay(1, base, Some(Duration::from_secs(5)), None);
        assert_eq!(raised, Duration::from_secs(5));
        let unchanged = retry_delay(3, base, Some(Duration::from_secs(1)), None);
        assert_eq!(unchanged, Duration::from_secs(8));
    }

    #[test]
    fn retry_delay_is_clamped() {
        let base = Duration::from_secs(2);
        assert_eq!(retry_delay(40, base, None, None), MAX_RETRY_AFTER);
        assert_eq!(retry_delay(u32::MAX, base, None, None), MAX_RETRY_AFTER);
        let asked = Some(Duration::from_secs(100_000));
        assert_eq!(retry_delay(1, base, asked, None), MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_delay_jitter_adds_up_to_half() {
        let base = Duration::from_secs(2);
        assert_eq!(
            retry_delay(1, base, None, Some(0.0)),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(1, base, None, Some(0.5)),
            Duration::from_millis(2500)
        );
        assert_eq!(
            retry_delay(2, base, None, Some(0.999)),
            Duration::from_secs(4).mul_f64(1.4995)
        );
        // Out-of-range samples are clamped.
        assert_eq!(
            retry_delay(1, base, None, Some(7.0)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn pacer_spaces_starts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut pacer = Pacer::new(ms(1000));

        assert_eq!(pacer.reserve(t0, t0), t0);
        // A job ready at once still waits for the interval.
        assert_eq!(pacer.reserve(t0 + ms(10), t0), t0 + ms(1000));
        // A retry ready later than the interval starts when it is ready.
        assert_eq!(pacer.reserve(t0 + ms(1100), t0 + ms(4000)), t0 + ms(4000));
        // After a long pause a request starts at once.
        assert_eq!(pacer.reserve(t0 + ms(9000), t0), t0 + ms(9000));
        assert_eq!(pacer.next_allowed(t0 + ms(9100)), t0 + ms(10_000));
        assert_eq!(pacer.next_allowed(t0 + ms(12_000)), t0 + ms(12_000));
    }
}
