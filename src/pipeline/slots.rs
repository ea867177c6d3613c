//! Streaming connection slots: the account's HangingConnectionLimit as the listener
//! keeps it.
//!
//! Exchange lets an account hold only so many GetStreamingEvents connections at once
//! (10 on Exchange 2016, 2019 and Online, 3 on Exchange 2013). Every affinity group
//! takes a [`SlotPermit`] before it opens its connection and holds it while it streams;
//! a group that finds no free slot keeps its mailboxes in step by polling instead.
//! When Exchange still answers ErrorExceededConnectionCount (another client shares
//! the account), [`ConnectionSlots::refused`] lowers the effective cap to what
//! Exchange accepted; the cap grows back by one slot at a time after a back-off, so a
//! full account is probed, never hammered. This module is bookkeeping only: it opens
//! no connection and knows nothing of EWS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::sync::lock;

/// How long after a refusal the cap grows by one slot again: from a minute, doubling
/// with every refusal in a row, at most 15 minutes.
pub const RAISE_BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(60),
    max: Duration::from_secs(15 * 60),
    jitter: 0.25,
};

/// The account's streaming connection slots, shared by every group task.
#[derive(Debug)]
pub struct ConnectionSlots {
    configured: usize,
    state: Mutex<SlotState>,
}

#[derive(Debug)]
struct SlotState {
    in_use: usize,
    cap: usize,
    /// Refusals since the cap was last back at the configured value.
    refusals: u32,
    /// When the lowered cap grows by one slot.
    raise_at: Option<Instant>,
}

/// One taken slot. The group task that opens a connection holds it while it streams;
/// dropping it frees the slot.
#[derive(Debug)]
pub struct SlotPermit {
    slots: Arc<ConnectionSlots>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let mut state = lock(&self.slots.state);
        state.in_use = state.in_use.saturating_sub(1);
    }
}

impl ConnectionSlots {
    /// Slots for an account that allows `configured` connections (at least one).
    pub fn new(configured: usize) -> Arc<Self> {
        let configured = configured.max(1);
        Arc::new(Self {
            configured,
            state: Mutex::new(SlotState {
                in_use: 0,
                cap: configured,
                refusals: 0,
                raise_at: None,
            }),
        })
    }

    /// Takes a free slot, or `None` when every slot under the effective cap is taken.
    /// A lowered cap whose back-off ran out grows by one slot first.
    pub fn try_acquire(self: &Arc<Self>) -> Option<SlotPermit> {
        let mut state = lock(&self.state);
        self.raise_if_due(&mut state, Instant::now());
        if state.in_use >= state.cap {
            return None;
        }
        state.in_use += 1;
        Some(SlotPermit {
            slots: Arc::clone(self),
        })
    }

    /// Exchange refused the connection `permit` was taken for: the account holds
    /// fewer connections than the cap allowed. The cap drops to the connections open
    /// besides this one, the slot is freed, and the cap grows again after
    /// [`RAISE_BACKOFF`]. Returns the new effective cap.
    pub fn refused(&self, permit: SlotPermit) -> usize {
        let cap = {
            let mut state = lock(&self.state);
            let others = state.in_use.saturating_sub(1);
            state.cap = state.cap.min(others);
            state.refusals = state.refusals.saturating_add(1);
            state.raise_at = Some(Instant::now() + RAISE_BACKOFF.delay(state.refusals));
            state.cap
        };
        drop(permit);
        cap
    }

    /// The cap in force now.
    pub fn effective_cap(&self) -> usize {
        lock(&self.state).cap
    }

    /// The cap the configuration allows.
    pub fn configured(&self) -> usize {
        self.configured
    }

    /// Slots taken now.
    pub fn in_use(&self) -> usize {
        lock(&self.state).in_use
    }

    fn raise_if_due(&self, state: &mut SlotState, now: Instant) {
        let Some(at) = state.raise_at else {
            return;
        };
        if now < at {
            return;
        }
        state.cap = (state.cap + 1).min(self.configured);
        if state.cap == self.configured {
            state.raise_at = None;
            state.refusals = 0;
        } else {
            state.raise_at = Some(now + RAISE_BACKOFF.delay(state.refusals));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_slots_than_configured_are_handed_out() {
        let slots = ConnectionSlots::new(2);

        let first = slots.try_acquire();
        let second = slots.try_acquire();
        let third = slots.try_acquire();

        assert!(first.is_some() && second.is_some());
        assert!(third.is_none());
        assert_eq!(slots.in_use(), 2);
    }

    #[test]
    fn a_dropped_permit_frees_its_slot_for_another_group() {
        let slots = ConnectionSlots::new(1);
        let held = slots.try_acquire().expect("a free slot");
        assert!(slots.try_acquire().is_none());

        drop(held);

        assert!(slots.try_acquire().is_some());
    }

    #[test]
    fn a_zero_configuration_still_allows_one_connection() {
        let slots = ConnectionSlots::new(0);

        assert_eq!(slots.configured(), 1);
        assert!(slots.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_lowers_the_cap_to_the_connections_exchange_accepted() {
        let slots = ConnectionSlots::new(5);
        let held: Vec<_> = (0..3).filter_map(|_| slots.try_acquire()).collect();
        let refused = slots.try_acquire().expect("a fourth slot under the cap");

        let cap = slots.refused(refused);

        assert_eq!(cap, 3);
        assert_eq!(slots.effective_cap(), 3);
        assert_eq!(slots.in_use(), 3);
        assert!(slots.try_acquire().is_none(), "the cap is full");
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_grows_back_one_slot_at_a_time_after_the_back_off() {
        let slots = ConnectionSlots::new(3);
        let only = slots.try_acquire().expect("a slot");
        assert_eq!(slots.refused(only), 0);
        assert!(slots.try_acquire().is_none(), "nothing before the back-off");

        tokio::time::advance(RAISE_BACKOFF.first.mul_f64(1.0 + RAISE_BACKOFF.jitter)).await;
        let probe = slots.try_acquire();
        let second = slots.try_acquire();

        assert!(probe.is_some(), "one slot after the back-off");
        assert!(second.is_none(), "only one");
        assert_eq!(slots.effective_cap(), 1);

        let mut held = vec![probe];
        tokio::time::advance(RAISE_BACKOFF.max.mul_f64(1.0 + RAISE_BACKOFF.jitter)).await;
        held.push(slots.try_acquire());
        tokio::time::advance(RAISE_BACKOFF.max.mul_f64(1.0 + RAISE_BACKOFF.jitter)).await;
        held.push(slots.try_acquire());
        assert!(held.iter().all(Option::is_some));
        assert_eq!(slots.effective_cap(), 3, "back at the configured cap");
        tokio::time::advance(RAISE_BACKOFF.max.mul_f64(1.0 + RAISE_BACKOFF.jitter)).await;
        assert!(
            slots.try_acquire().is_none(),
            "never above the configuration"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_in_a_row_wait_longer_before_the_next_probe() {
        let slots = ConnectionSlots::new(2);
        let first = slots.try_acquire().expect("a slot");
        slots.refused(first);
        tokio::time::advance(RAISE_BACKOFF.first.mul_f64(1.0 + RAISE_BACKOFF.jitter)).await;
        let probe = slots.try_acquire().expect("the probe slot");

        slots.refused(probe);
        tokio::time::advance(RAISE_BACKOFF.first.mul_f64(1.0 + RAISE_BACKOFF.jitter)).await;

        assert!(
            slots.try_acquire().is_none(),
            "the second refusal doubles the wait"
        );
        tokio::time::advance(RAISE_BACKOFF.first * 2).await;
        assert!(slots.try_acquire().is_some());
    }
}
