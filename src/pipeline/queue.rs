//! The bounded work queue between the listener and the workers.
//!
//! Entries are keyed by mailbox: every event for a mailbox that is already waiting is
//! merged into its entry (repeats of the same item count as coalesced), so a burst of
//! events for one room costs one sync pass. An entry becomes ready `coalesce_window`
//! after its first event, which lets the several events of one user action arrive
//! first. At most one worker holds a mailbox at a time; events that arrive meanwhile
//! wait in a fresh entry that becomes ready once the worker is done.
//!
//! Capacity counts distinct mailboxes. A producer adding a new mailbox to a full queue
//! waits, which slows the listener down instead of buffering without bound.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::{ItemId, MailboxAddress};
use crate::metrics as m;
use crate::store::ChangeOrigin;

/// Item hints kept per entry; past this the entry just means "sync the mailbox".
const MAX_ITEM_HINTS: usize = 256;

/// Why a mailbox needs a sync pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A notification named an item of the mailbox.
    Event,
    /// The mailbox (re)subscribed, or lost events: catch up from the stored state.
    CatchUp,
    /// The periodic resync queued its catch-up of every room.
    Resync,
    /// A pushed notification (a push receiver, such as Microsoft Graph change
    /// notifications) named the mailbox.
    Push,
}

impl Reason {
    /// The source of the changes a pass queued for `reasons` finds, as the audit
    /// trail records it: a streaming event or push notification names its source,
    /// the catch-up after a (re)subscription belongs to the stream, and only a pass
    /// the periodic resync alone asked for is a resync.
    pub fn origin(reasons: &[Self]) -> ChangeOrigin {
        if reasons.contains(&Self::Event) {
            ChangeOrigin::Stream
        } else if reasons.contains(&Self::Push) {
            ChangeOrigin::Push
        } else if reasons.contains(&Self::CatchUp) || reasons.is_empty() {
            ChangeOrigin::Stream
        } else {
            ChangeOrigin::Resync
        }
    }
}

/// A mailbox taken off the queue by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// The mailbox to sync.
    pub mailbox: MailboxAddress,
    /// Items the events named (a hint; the sync pass finds every change).
    pub item_hints: Vec<ItemId>,
    /// Why it was queued (every reason merged into the entry).
    pub reasons: Vec<Reason>,
    /// When the first event of the entry arrived.
    pub first_event_at: Instant,
}

/// Returned by [`WorkQueue::push`] after [`WorkQueue::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the work queue is closed")]
pub struct Closed;

struct Entry {
    first_event_at: Instant,
    ready_at: Instant,
    items: HashSet<ItemId>,
    reasons: Vec<Reason>,
}

#[derive(Default)]
struct State {
    entries: HashMap<MailboxAddress, Entry>,
    order: VecDeque<MailboxAddress>,
    /// Mailboxes a worker holds, with the first event of the entry it took (the
    /// change is not committed until the worker calls `done`).
    in_flight: HashMap<MailboxAddress, Instant>,
    closed: bool,
}

/// Bounded, coalescing queue of mailboxes that need a sync pass.
pub struct WorkQueue {
    state: Mutex<State>,
    /// Woken on every change of `state`; waiters re-check their condition.
    changed: Notify,
    capacity: usize,
    coalesce_window: Duration,
}

impl WorkQueue {
    /// Creates a queue holding at most `capacity` distinct mailboxes (at least 1).
    pub fn new(capacity: usize, coalesce_window: Duration) -> Self {
        let capacity = capacity.max(1);
        metrics::gauge!(m::QUEUE_CAPACITY).set(capacity as f64);
        Self {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            capacity,
            coalesce_window,
        }
    }

    /// Adds an event for `mailbox`, merging it into a waiting entry when there is one.
    /// Waits while the queue is full and the mailbox has no entry yet.
    ///
    /// # Errors
    /// [`Closed`] once the queue is closed.
    pub async fn push(
        &self,
        mailbox: &MailboxAddress,
        item: Option<&ItemId>,
        reason: Reason,
    ) -> Result<(), Closed> {
        let mut waited = false;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(Closed);
                }
                if let Some(entry) = state.entries.get_mut(mailbox) {
                    merge(entry, item, reason);
                    return Ok(());
                }
                if state.entries.len() < self.capacity {
                    let now = Instant::now();
                    let mut entry = Entry {
                        first_event_at: now,
                        ready_at: now + self.coalesce_window,
                        items: HashSet::new(),
                        reasons: Vec::new(),
                    };
                    merge(&mut entry, item, reason);
                    state.entries.insert(mailbox.clone(), entry);
                    state.order.push_back(mailbox.clone());
                    metrics::counter!(m::QUEUE_ENQUEUED).increment(1);
                    metrics::gauge!(m::QUEUE_DEPTH).set(state.entries.len() as f64);
                    drop(state);
                    self.changed.notify_waiters();
                    return Ok(());
                }
            }
            if !waited {
                metrics::counter!(m::QUEUE_FULL_WAITS).increment(1);
                waited = true;
            }
            notified.await;
        }
    }

    /// Queues `mailbox` again after `delay`, for a pass that failed, keeping the
    /// reasons of that pass. Never waits: a worker must not block on the queue it
    /// drains (the entry count stays bounded by the number of mailboxes). Does nothing
    /// once the queue is closed.
    pub fn retry(&self, mailbox: &MailboxAddress, reasons: &[Reason], delay: Duration) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let ready_at = Instant::now() + delay;
        // A retry of the held mailbox keeps the age of the changes it still owes.
        let first_event_at = state
            .in_flight
            .get(mailbox)
            .copied()
            .unwrap_or_else(Instant::now);
        if let Some(entry) = state.entries.get_mut(mailbox) {
            entry.ready_at = entry.ready_at.max(ready_at);
            entry.first_event_at = entry.first_event_at.min(first_event_at);
            for reason in reasons {
                merge(entry, None, *reason);
            }
        } else {
            let mut entry = Entry {
                first_event_at,
                ready_at,
                items: HashSet::new(),
                reasons: Vec::new(),
            };
            for reason in reasons {
                merge(&mut entry, None, *reason);
            }
            state.entries.insert(mailbox.clone(), entry);
            state.order.push_back(mailbox.clone());
            metrics::counter!(m::QUEUE_ENQUEUED).increment(1);
        }
        metrics::gauge!(m::QUEUE_DEPTH).set(state.entries.len() as f64);
        drop(state);
        self.changed.notify_waiters();
    }

    /// Takes the next ready mailbox that no other worker holds, waiting for one.
    /// Returns `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<WorkItem> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_ready = {
                let mut state = self.lock();
                let now = Instant::now();
                let draining = state.closed;
                match take_ready(&mut state, now, draining) {
                    Ok(work) => {
                        metrics::counter!(m::QUEUE_DEQUEUED).increment(1);
                        metrics::gauge!(m::QUEUE_DEPTH).set(state.entries.len() as f64);
                        drop(state);
                        self.changed.notify_waiters();
                        return Some(work);
                    }
                    Err(next_ready) => {
                        if state.closed && state.entries.is_empty() {
                            return None;
                        }
                        next_ready
                    }
                }
            };
            match next_ready {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Releases a mailbox taken by [`pop`](Self::pop), so its next entry can be taken.
    pub fn done(&self, mailbox: &MailboxAddress) {
        self.lock().in_flight.remove(mailbox);
        self.changed.notify_waiters();
    }

    /// Stops intake: later pushes fail, waiting producers return, and workers drain
    /// what is queued (ignoring the coalesce window) and then see `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Mailboxes waiting (not counting ones a worker holds with no new events).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// `true` when no mailbox waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` when nothing waits and no worker holds a mailbox.
    pub fn is_idle(&self) -> bool {
        let state = self.lock();
        state.entries.is_empty() && state.in_flight.is_empty()
    }

    /// When the oldest change not committed yet arrived: the first event of the
    /// oldest entry, waiting or held by a worker.
    pub fn oldest_event_at(&self) -> Option<Instant> {
        let state = self.lock();
        state
            .entries
            .values()
            .map(|entry| entry.first_event_at)
            .chain(state.in_flight.values().copied())
            .min()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a bug in this module; the
        // state stays consistent (every mutation is a single step), so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn merge(entry: &mut Entry, item: Option<&ItemId>, reason: Reason) {
    let mut coalesced = false;
    if let Some(item) = item {
        if entry.items.contains(item) {
            coalesced = true;
        } else if entry.items.len() < MAX_ITEM_HINTS {
            entry.items.insert(item.clone());
        }
    }
    if entry.reasons.contains(&reason) {
        coalesced |= item.is_none();
    } else {
        entry.reasons.push(reason);
    }
    if coalesced {
        metrics::counter!(m::QUEUE_COALESCED).increment(1);
    }
}

/// Takes the first ready entry whose mailbox no worker holds; otherwise returns when
/// the earliest waiting entry becomes ready (None: nothing can become ready by itself).
fn take_ready(
    state: &mut State,
    now: Instant,
    draining: bool,
) -> Result<WorkItem, Option<Instant>> {
    let mut next_ready: Option<Instant> = None;
    let mut found = None;
    for (position, mailbox) in state.order.iter().enumerate() {
        if state.in_flight.contains_key(mailbox) {
            continue;
        }
        let Some(entry) = state.entries.get(mailbox) else {
            continue;
        };
        if draining || entry.ready_at <= now {
            found = Some(position);
            break;
        }
        next_ready = Some(next_ready.map_or(entry.ready_at, |at| at.min(entry.ready_at)));
    }
    let Some(position) = found else {
        return Err(next_ready);
    };
    let mailbox = state
        .order
        .remove(position)
        .expect("position comes from iterating the same deque");
    let entry = state
        .entries
        .remove(&mailbox)
        .expect("every queued mailbox has an entry");
    state
        .in_flight
        .insert(mailbox.clone(), entry.first_event_at);
    Ok(WorkItem {
        mailbox,
        item_hints: entry.items.into_iter().collect(),
        reasons: entry.reasons,
        first_event_at: entry.first_event_at,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn mailbox(name: &str) -> MailboxAddress {
        MailboxAddress::new(name)
    }

    fn item(id: &str) -> ItemId {
        ItemId(id.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_events_for_one_mailbox_become_one_entry() {
        let queue = WorkQueue::new(4, Duration::from_millis(100));

        for _ in 0..10 {
            queue
                .push(&mailbox("a@x"), Some(&item("1")), Reason::Event)
                .await
                .unwrap();
        }
        queue
            .push(&mailbox("a@x"), Some(&item("2")), Reason::Event)
            .await
            .unwrap();

        assert_eq!(queue.len(), 1);
        let work = queue.pop().await.unwrap();
        let mut hints = work.item_hints.clone();
        hints.sort();
        assert_eq!(hints, vec![item("1"), item("2")]);
        assert_eq!(work.reasons, vec![Reason::Event]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_waits_for_the_coalesce_window() {
        let queue = WorkQueue::new(4, Duration::from_secs(2));
        let start = Instant::now();

        queue
            .push(&mailbox("a@x"), None, Reason::Event)
            .await
            .unwrap();
        let work = queue.pop().await.unwrap();

        assert_eq!(work.mailbox, mailbox("a@x"));
        assert!(Instant::now() - start >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_makes_the_producer_wait_until_a_worker_takes_an_entry() {
        let queue = Arc::new(WorkQueue::new(2, Duration::ZERO));
        queue
            .push(&mailbox("a@x"), None, Reason::Event)
            .await
            .unwrap();
        queue
            .push(&mailbox("b@x"), None, Reason::Event)
            .await
            .unwrap();

        let producer = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.push(&mailbox("c@x"), None, Reason::Event).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!producer.is_finished());
        assert_eq!(queue.len(), 2);

        // An event for a mailbox already queued never waits.
        queue
            .push(&mailbox("a@x"), None, Reason::CatchUp)
            .await
            .unwrap();

        let first = queue.pop().await.unwrap();
        producer.await.unwrap().unwrap();
        assert_eq!(first.mailbox, mailbox("a@x"));
        assert_eq!(first.reasons, vec![Reason::Event, Reason::CatchUp]);
        assert_eq!(queue.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn one_mailbox_is_held_by_one_worker_at_a_time() {
        let queue = Arc::new(WorkQueue::new(4, Duration::ZERO));
        queue
            .push(&mailbox("a@x"), None, Reason::Event)
            .await
            .unwrap();
        let held = queue.pop().await.unwrap();

        queue
            .push(&mailbox("a@x"), Some(&item("9")), Reason::Event)
            .await
            .unwrap();
        let second_worker = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!second_worker.is_finished());

        queue.done(&held.mailbox);
        let next = second_worker.await.unwrap().unwrap();
        assert_eq!(next.mailbox, mailbox("a@x"));
        assert_eq!(next.item_hints, vec![item("9")]);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_drains_what_is_queued_and_then_ends() {
        let queue = WorkQueue::new(4, Duration::from_secs(60));
        queue
            .push(&mailbox("a@x"), None, Reason::Event)
            .await
            .unwrap();

        queue.close();

        assert!(queue
            .push(&mailbox("b@x"), None, Reason::Event)
            .await
            .is_err());
        let work = queue.pop().await.unwrap();
        queue.done(&work.mailbox);
        assert_eq!(queue.pop().await, None);
        assert!(queue.is_idle());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_its_delay_even_in_a_full_queue() {
        let queue = WorkQueue::new(1, Duration::ZERO);
        queue
            .push(&mailbox("a@x"), None, Reason::Event)
            .await
            .unwrap();
        let start = Instant::now();

        queue.retry(&mailbox("b@x"), &[Reason::CatchUp], Duration::from_secs(5));
        let first = queue.pop().await.unwrap();
        let second = queue.pop().await.unwrap();

        assert_eq!(first.mailbox, mailbox("a@x"));
        assert_eq!(second.mailbox, mailbox("b@x"));
        assert!(Instant::now() - start >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_change_counts_until_committed_even_across_a_retry() {
        let queue = WorkQueue::new(4, Duration::ZERO);
        let start = Instant::now();
        queue
            .push(&mailbox("a@x"), None, Reason::Event)
            .await
            .unwrap();

        let work = queue.pop().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(queue.oldest_event_at(), Some(start), "held by a worker");
        queue.retry(&work.mailbox, &work.reasons, Duration::from_secs(1));
        queue.done(&work.mailbox);
        assert_eq!(queue.oldest_event_at(), Some(start), "queued for a retry");

        let again = queue.pop().await.unwrap();
        queue.done(&again.mailbox);
        assert_eq!(queue.oldest_event_at(), None, "committed");
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_under_a_flood_of_distinct_items() {
        let queue = WorkQueue::new(1, Duration::ZERO);

        for index in 0..10_000 {
            let id = item(&index.to_string());
            queue
                .push(&mailbox("a@x"), Some(&id), Reason::Event)
                .await
                .unwrap();
        }

        let work = queue.pop().await.unwrap();
        assert_eq!(work.item_hints.len(), MAX_ITEM_HINTS);
    }

    #[test]
    fn a_pass_records_the_source_that_asked_for_it() {
        use Reason::{CatchUp, Event, Push, Resync};

        assert_eq!(Reason::origin(&[Event]), ChangeOrigin::Stream);
        assert_eq!(Reason::origin(&[CatchUp]), ChangeOrigin::Stream);
        assert_eq!(Reason::origin(&[Resync]), ChangeOrigin::Resync);
        assert_eq!(Reason::origin(&[Push]), ChangeOrigin::Push);
        assert_eq!(Reason::origin(&[Resync, Event]), ChangeOrigin::Stream);
        assert_eq!(Reason::origin(&[Resync, CatchUp]), ChangeOrigin::Stream);
        assert_eq!(Reason::origin(&[Resync, Push]), ChangeOrigin::Push);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_keeps_the_reasons_of_the_failed_pass() {
        let queue = WorkQueue::new(4, Duration::ZERO);
        queue
            .push(&mailbox("a@x"), None, Reason::Resync)
            .await
            .unwrap();
        let work = queue.pop().await.unwrap();

        queue.retry(&work.mailbox, &work.reasons, Duration::from_secs(1));
        queue.done(&work.mailbox);
        let again = queue.pop().await.unwrap();

        assert_eq!(again.reasons, vec![Reason::Resync]);
    }
}
