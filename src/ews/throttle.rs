//! The account's throttling budget as the client sees it: one back-off gate shared by
//! every request, and the retry delays of transient failures.
//!
//! Exchange charges every request of an account to one budget. When it answers
//! ErrorServerBusy (as an HTTP 500 fault, inside a response message, or as a 503) it
//! names how long the budget is closed; [`BackoffGate`] records that and makes every
//! later request of the client wait until the gate opens again, so no request reaches
//! Exchange before the back-off expires. A throttle without a hint (a bare 503) closes
//! no gate: like other 5xx answers it is retried per request. Transport failures and 5xx answers of read
//! operations are retried by the client a few times with [`retry_delay`]: exponential,
//! capped and jittered, so a retry loop can never run hot.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::sync::lock;

/// Longest back-off taken from Exchange's hint (a bogus hint must not stop the service).
const MAX_HINTED_BACKOFF: Duration = Duration::from_secs(300);
/// First delay before retrying a transient failure.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between two retries of one request.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// When the account's budget opens again. Shared by every clone of the client.
#[derive(Debug, Default)]
pub(super) struct BackoffGate {
    /// No request may start before this instant.
    closed_until: Mutex<Option<Instant>>,
}

impl BackoffGate {
    /// Waits until the gate is open. Cancel-safe: it only sleeps.
    pub(super) async fn wait_open(&self) {
        loop {
            let until = *lock(&self.closed_until);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Closes the gate for Exchange's back-off hint (capped at five minutes, so a
    /// bogus hint cannot stop the service); a later instant already set stays.
    pub(super) fn close_for(&self, hint: Duration) -> Duration {
        let pause = hint.min(MAX_HINTED_BACKOFF);
        let until = Instant::now() + pause;
        let mut closed_until = lock(&self.closed_until);
        *closed_until = Some(closed_until.map_or(until, |old| old.max(until)));
        pause
    }

    /// The instant the gate opens, when it is closed now.
    pub(super) fn closed_until(&self) -> Option<Instant> {
        lock(&self.closed_until).filter(|until| *until > Instant::now())
    }
}

/// The delay before retry number `attempt` (1-based) of a transient failure: doubling
/// from 200 ms, capped at 5 s, plus up to 50 % jitter so clients do not retry in step.
pub(super) fn retry_delay(attempt: u32) -> Duration {
    Backoff {
        first: FIRST_RETRY_DELAY,
        max: MAX_RETRY_DELAY,
        jitter: 0.5,
    }
    .delay(attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hinted_throttle_keeps_the_gate_closed_for_the_whole_hint() {
        let gate = BackoffGate::default();
        let started = Instant::now();

        gate.close_for(Duration::from_millis(5000));
        gate.wait_open().await;

        assert!(started.elapsed() >= Duration::from_millis(5000));
        assert_eq!(gate.closed_until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_hint_never_reopens_a_gate_closed_for_longer() {
        let gate = BackoffGate::default();
        let started = Instant::now();

        gate.close_for(Duration::from_secs(10));
        gate.close_for(Duration::from_secs(1));
        gate.wait_open().await;

        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[test]
    fn a_bogus_hint_is_capped() {
        let gate = BackoffGate::default();

        let pause = gate.close_for(Duration::from_secs(86_400));

        assert_eq!(pause, MAX_HINTED_BACKOFF);
    }

    #[test]
    fn retry_delays_grow_are_capped_and_jittered() {
        let first = retry_delay(1);
        let tenth = retry_delay(10);

        assert!(first >= FIRST_RETRY_DELAY && first <= FIRST_RETRY_DELAY.mul_f64(1.5));
        assert!(tenth >= MAX_RETRY_DELAY && tenth <= MAX_RETRY_DELAY.mul_f64(1.5));
    }
}
