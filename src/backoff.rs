//! Capped, jittered exponential back-off: the one delay rule every retry loop uses
//! (EWS reads, streaming reconnects, failed mailbox passes), so none can run hot.

use std::time::Duration;

/// How a retry loop backs off.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first retry.
    pub first: Duration,
    /// Longest delay, however many attempts failed.
    pub max: Duration,
    /// Random extra, as a share of the delay (0.25: up to 25 % more), so failing
    /// clients do not retry in lockstep.
    pub jitter: f64,
}

impl Backoff {
    /// The delay after `attempt` failures (1 for the first): `first` doubled per
    /// earlier failure, capped at `max`, plus jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let base = self.first.saturating_mul(1 << exponent).min(self.max);
        base + base.mul_f64(rand::random::<f64>() * self.jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(2),
        jitter: 0.5,
    };

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_cap() {
        let first = RULE.delay(1);
        let third = RULE.delay(3);
        let late = RULE.delay(40);

        assert!(first >= RULE.first && first <= RULE.first.mul_f64(1.5));
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(600));
        assert!(late >= RULE.max && late <= RULE.max.mul_f64(1.5));
    }
}
