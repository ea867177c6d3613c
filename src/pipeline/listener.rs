//! The listener: EWS streaming subscriptions for every synced room.
//!
//! Rooms are split into affinity groups of at most `group_size` mailboxes; each group
//! is one task holding one GetStreamingEvents connection for all its subscriptions.
//! Per mailbox the task subscribes first and then queues a catch-up, so a change made
//! between the last checkpoint and the subscription is found by the sync pass, and
//! every later one arrives as an event. Events only mark mailboxes dirty: the queue and
//! the workers find out what changed. Whenever the stream may have missed something
//! (a dropped connection, silence past the heartbeat timeout, a lost subscription,
//! missed events) the affected mailboxes are queued for a catch-up too.
//!
//! The account may hold only `max_streaming_connections` streams (Exchange's
//! HangingConnectionLimit), counted by [`ConnectionSlots`]. A group that finds no free
//! slot subscribes nothing and polls instead: every `poll_interval` it queues a
//! catch-up for each of its mailboxes and tries for a slot again. When Exchange
//! refuses a stream with ErrorExceededConnectionCount anyway (another client uses the
//! same account), the group catches up, drops its subscriptions, lowers the shared
//! cap and polls until the cap grows back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::domain::{EventKind, MailboxAddress, MailboxEvent, SubscriptionId};
use crate::ews::{Affinity, ConnectionStatus, EwsClient, EwsError, StreamMessage};
use crate::health::{self, Heartbeat, Heartbeats};
use crate::metrics as m;
use crate::pipeline::queue::{Closed, Reason, WorkQueue};
use crate::pipeline::rooms::RoomDirectory;
use crate::pipeline::slots::{ConnectionSlots, SlotPermit};
use crate::store::PgStore;

/// Code of the stream error that says events were lost but the subscription lives.
const MISSED_EVENTS: &str = "ErrorMissedNotificationEvents";
/// Code of the stream error that says another connection took the subscriptions;
/// they live on and this connection ends.
const STREAM_TAKEN: &str = "ErrorNewEventStreamConnectionOpened";
/// How long a mailbox whose subscription failed (a mailbox move, throttling) waits
/// before the group tries to subscribe it again.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(5);
/// Delays between reconnect attempts: from 250 ms, doubling, at most a minute.
const RECONNECT_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(250),
    max: Duration::from_secs(60),
    jitter: 0.25,
};
/// How often "last event" times are written to the database at most.
const EVENT_TIME_FLUSH: Duration = Duration::from_secs(1);
/// How long an unsubscribe at shutdown may take.
const UNSUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Mailboxes per affinity group (1..=200).
    pub group_size: usize,
    /// Minutes a streaming connection stays open (1..=30).
    pub connection_timeout_minutes: u8,
    /// Silence after which a stream counts as dead.
    pub heartbeat_timeout: Duration,
    /// How often the `rooms` table is read for added or disabled rooms.
    pub room_refresh_interval: Duration,
    /// How often a group without a streaming connection slot catches up its mailboxes.
    pub poll_interval: Duration,
}

/// Everything a group task needs; shared by all groups.
pub struct Listener {
    /// The EWS client.
    pub ews: EwsClient,
    /// The store (room list, subscription bookkeeping).
    pub store: PgStore,
    /// Where events go.
    pub queue: Arc<WorkQueue>,
    /// The synced rooms.
    pub rooms: Arc<RoomDirectory>,
    /// Settings.
    pub settings: ListenerSettings,
    /// Where the room loop and every group task register their heartbeat.
    pub heartbeats: Arc<Heartbeats>,
    /// The account's streaming connection slots, shared by every group task.
    pub slots: Arc<ConnectionSlots>,
}

struct Group {
    members: Vec<MailboxAddress>,
    sender: watch::Sender<Vec<MailboxAddress>>,
}

impl Listener {
    /// Keeps the groups in step with the `rooms` table until `cancel` fires: new or
    /// re-enabled rooms join a group (a new one when all are full), disabled ones leave
    /// theirs and are unsubscribed.
    pub async fn run(self: Arc<Self>, tracker: TaskTracker, cancel: CancellationToken) {
        let mut groups: Vec<Group> = Vec::new();
        let heartbeat = self.heartbeats.register(health::LOOP_ROOMS);
        loop {
            heartbeat.beat();
            match self.store.enabled_rooms().await {
                Ok(rooms) => {
                    metrics::gauge!(m::ROOMS_ENABLED).set(rooms.len() as f64);
                    let (added, removed) = self.rooms.replace(rooms);
                    if !added.is_empty() || !removed.is_empty() {
                        info!(
                            added = added.len(),
                            removed = removed.len(),
                            "Synced rooms changed"
                        );
                    }
                    self.regroup(&mut groups, added, removed, &tracker, &cancel);
                }
                Err(err) => warn!(error = %err, "Could not read the rooms to sync"),
            }
            if !health::idle(&heartbeat, self.settings.room_refresh_interval, &cancel).await {
                break;
            }
        }
    }

    fn regroup(
        self: &Arc<Self>,
        groups: &mut Vec<Group>,
        mut added: Vec<MailboxAddress>,
        removed: Vec<MailboxAddress>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        let removed: HashSet<MailboxAddress> = removed.into_iter().collect();
        let mut changed: HashSet<usize> = HashSet::new();
        for (index, group) in groups.iter_mut().enumerate() {
            let before = group.members.len();
            group.members.retain(|mailbox| !removed.contains(mailbox));
            if group.members.len() != before {
                changed.insert(index);
            }
        }
        added.sort();
        let size = self.settings.group_size.clamp(1, 200);
        for mailbox in added {
            let index = match groups.iter().position(|group| group.members.len() < size) {
                Some(index) => index,
                None => {
                    let (sender, receiver) = watch::channel(Vec::new());
                    let listener = self.clone();
                    let group_cancel = cancel.child_token();
                    tracker.spawn(async move { listener.run_group(receiver, group_cancel).await });
                    groups.push(Group {
                        members: Vec::new(),
                        sender,
                    });
                    groups.len() - 1
                }
            };
            groups[index].members.push(mailbox);
            changed.insert(index);
        }
        for index in changed {
            let group = &groups[index];
            group.sender.send_replace(group.members.clone());
        }
    }

    /// Runs one affinity group: subscriptions plus one streaming connection, or a
    /// periodic catch-up while no connection slot is free.
    async fn run_group(
        self: Arc<Self>,
        mut members: watch::Receiver<Vec<MailboxAddress>>,
        cancel: CancellationToken,
    ) {
        let mut state = GroupState::default();
        let mut permit: Option<SlotPermit> = None;
        let mut failures = 0u32;
        let heartbeat = self.heartbeats.register(health::LOOP_STREAMS);
        loop {
            heartbeat.beat();
            if cancel.is_cancelled() {
                break;
            }
            let wanted = members.borrow_and_update().clone();
            if wanted.is_empty() {
                permit = None;
            } else if permit.is_none() {
                permit = self.slots.try_acquire();
            }
            if permit.is_none() && !wanted.is_empty() {
                if !self
                    .poll(&mut state, &wanted, &mut members, &cancel, &heartbeat)
                    .await
                {
                    break;
                }
                continue;
            }
            self.set_polled(&mut state, &[]).await;
            if let Err(Closed) = self.reconcile(&mut state, &wanted, &heartbeat).await {
                break;
            }
            if state.by_subscription.is_empty() {
                // Nothing to stream: the slot goes back for another group meanwhile.
                permit = None;
                tokio::select! {
                    _ = members.changed() => {}
                    awake = health::idle(&heartbeat, retry_delay(failures.max(1)), &cancel) => {
                        if !awake {
                            break;
                        }
                    }
                }
                continue;
            }
            let end = self
                .stream(&mut state, &mut members, &cancel, &heartbeat)
                .await;
            match end {
                StreamEnd::Cancelled | StreamEnd::QueueClosed => break,
                StreamEnd::Renew | StreamEnd::MembersChanged => failures = 0,
                StreamEnd::ConnectionRefused => {
                    if let Err(Closed) = self.fall_back(&mut state, permit.take()).await {
                        break;
                    }
                }
                StreamEnd::Failed { reason, catch_up } => {
                    failures += 1;
                    metrics::counter!(m::RECONNECTS, "reason" => reason).increment(1);
                    if catch_up && self.catch_up_all(&state).await.is_err() {
                        break;
                    }
                    if !health::idle(&heartbeat, retry_delay(failures), &cancel).await {
                        break;
                    }
                }
            }
        }
        self.set_polled(&mut state, &[]).await;
        self.unsubscribe_all(&mut state).await;
    }

    /// Exchange refused the group's connection: lowers the shared cap, catches up
    /// every member and drops the subscriptions; the group polls from then on.
    async fn fall_back(
        &self,
        state: &mut GroupState,
        permit: Option<SlotPermit>,
    ) -> Result<(), Closed> {
        metrics::counter!(m::RECONNECTS, "reason" => "connection_limit").increment(1);
        if let Some(refused) = permit {
            // Lowered first, so the other groups stop asking for connections now.
            let cap = self.slots.refused(refused);
            warn!(
                cap,
                configured = self.slots.configured(),
                "Exchange refused a streaming connection (ErrorExceededConnectionCount): \
                 another client uses the account's connections; lowered the cap, \
                 polling this group until it grows back"
            );
        }
        // Nothing the subscriptions caught is lost: the catch-up reads from the
        // stored checkpoint, and polling carries on from there.
        self.catch_up_all(state).await?;
        self.unsubscribe_all(state).await;
        Ok(())
    }

    /// One round of polling for a group without a connection slot: drops its
    /// subscriptions, queues a catch-up for every member, then waits `poll_interval`
    /// (or a change of members). Returns `false` when the group must stop.
    async fn poll(
        &self,
        state: &mut GroupState,
        wanted: &[MailboxAddress],
        members: &mut watch::Receiver<Vec<MailboxAddress>>,
        cancel: &CancellationToken,
        heartbeat: &Heartbeat,
    ) -> bool {
        if state.affinity.is_some() {
            self.unsubscribe_all(state).await;
            state.affinity = None;
        }
        self.set_polled(state, wanted).await;
        for mailbox in wanted {
            heartbeat.beat();
            if let Err(Closed) = self.queue.push(mailbox, None, Reason::CatchUp).await {
                return false;
            }
        }
        tokio::select! {
            _ = members.changed() => true,
            awake = health::idle(heartbeat, self.settings.poll_interval, cancel) => awake,
        }
    }

    /// Makes `polled` the group's polled mailboxes, in the room directory (gauge,
    /// coverage) and in the `rooms` status; warns when polling starts for the account
    /// and tells when it ends.
    async fn set_polled(&self, state: &mut GroupState, polled: &[MailboxAddress]) {
        let next: HashSet<MailboxAddress> = polled.iter().cloned().collect();
        if next == state.polled {
            return;
        }
        let before = self.rooms.polled_count();
        let mut changed = Vec::new();
        for mailbox in state.polled.difference(&next) {
            self.rooms.set_polled(mailbox, false);
            changed.push((mailbox.clone(), false));
        }
        for mailbox in next.difference(&state.polled) {
            self.rooms.set_polled(mailbox, true);
            changed.push((mailbox.clone(), true));
        }
        state.polled = next;
        let after = self.rooms.polled_count();
        if before == 0 && after > 0 {
            warn!(
                max_streaming_connections = self.slots.configured(),
                effective_cap = self.slots.effective_cap(),
                polled = after,
                poll_interval = ?self.settings.poll_interval,
                "More affinity groups than streaming connections: rooms without a connection \
                 are polled with SyncFolderItems until one frees up (raise \
                 subscriptions.max_streaming_connections or group_size if Exchange allows)"
            );
        } else if before > 0 && after == 0 {
            info!("Every room has a streaming connection again, polling stopped");
        }
        let rooms: Vec<(crate::store::RoomId, bool)> = changed
            .iter()
            .filter_map(|(mailbox, polled)| self.store_room_id(mailbox).map(|room| (room, *polled)))
            .collect();
        if !rooms.is_empty() {
            if let Err(err) = self.store.record_polled(&rooms).await {
                debug!(error = %err, "Could not record which rooms are polled");
            }
        }
    }

    /// Subscribes wanted mailboxes that have no subscription and drops the others.
    async fn reconcile(
        &self,
        state: &mut GroupState,
        wanted: &[MailboxAddress],
        heartbeat: &Heartbeat,
    ) -> Result<(), Closed> {
        state.resubscribe_at = None;
        let wanted_set: HashSet<&MailboxAddress> = wanted.iter().collect();
        let anchor_gone = state
            .affinity
            .as_ref()
            .is_some_and(|affinity| !wanted_set.contains(affinity.anchor()));
        if anchor_gone || state.affinity.is_none() {
            // A new anchor means a new affinity: every member subscribes again under it.
            self.unsubscribe_all(state).await;
            let mut sorted = wanted.to_vec();
            sorted.sort();
            state.affinity = sorted.first().cloned().map(Affinity::new);
        }
        let Some(affinity) = state.affinity.as_ref() else {
            return Ok(());
        };
        let leaving: Vec<MailboxAddress> = state
            .by_mailbox
            .keys()
            .filter(|mailbox| !wanted_set.contains(mailbox))
            .cloned()
            .collect();
        for mailbox in leaving {
            if let Some(id) = state.by_mailbox.remove(&mailbox) {
                state.by_subscription.remove(&id);
                self.rooms.set_subscribed(&mailbox, false);
                if let Err(err) = self.ews.unsubscribe(&mailbox, affinity, &id).await {
                    debug!(error = %err, "Unsubscribe failed; the subscription will expire");
                }
                if let Some(room) = self.store_room_id(&mailbox) {
                    let _ = self.store.record_subscription(room, None).await;
                }
            }
        }
        for mailbox in wanted {
            if state.by_mailbox.contains_key(mailbox) {
                continue;
            }
            heartbeat.beat();
            match self.ews.subscribe_streaming(mailbox, affinity).await {
                Ok(id) => {
                    self.rooms.set_subscribed(mailbox, true);
                    if let Some(room) = self.store_room_id(mailbox) {
                        if let Err(err) = self.store.record_subscription(room, Some(&id)).await {
                            debug!(error = %err, "Could not record the subscription");
                        }
                    }
                    state.by_subscription.insert(id.clone(), mailbox.clone());
                    state.by_mailbox.insert(mailbox.clone(), id);
                    // Subscribed first, now catch up: nothing falls in between.
                    self.queue.push(mailbox, None, Reason::CatchUp).await?;
                }
                Err(err) => {
                    self.rooms.set_subscribed(mailbox, false);
                    warn!(error = %err, "Subscribing a room failed, retrying later");
                    state.resubscribe_at = Some(Instant::now() + SUBSCRIBE_RETRY);
                    if let Some(room) = self.store_room_id(mailbox) {
                        let _ = self
                            .store
                            .record_error(room, Some(&crate::logging::error_chain(&err)))
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn stream(
        &self,
        state: &mut GroupState,
        members: &mut watch::Receiver<Vec<MailboxAddress>>,
        cancel: &CancellationToken,
        heartbeat: &Heartbeat,
    ) -> StreamEnd {
        let Some(affinity) = state.affinity.as_ref() else {
            return StreamEnd::MembersChanged;
        };
        let ids: Vec<SubscriptionId> = state.by_subscription.keys().cloned().collect();
        let opened = tokio::select! {
            opened = self.ews.get_streaming_events(affinity, &ids, self.settings.connection_timeout_minutes) => opened,
            _ = cancel.cancelled() => return StreamEnd::Cancelled,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) => return self.open_failed(state, err),
        };
        metrics::gauge!(m::STREAMS_OPEN).increment(1.0);
        let mut seen = EventTimes::default();
        let mut last_message_at = Instant::now();
        let resubscribe = state.resubscribe_at;
        let end = loop {
            // `next_message` is cancel-safe, so the idle tick may interrupt it.
            let next = tokio::select! {
                next = stream.next_message() => Some(next),
                _ = tokio::time::sleep(health::IDLE_TICK) => None,
                _ = members.changed() => break StreamEnd::MembersChanged,
                // Mailboxes whose subscription failed get another try.
                () = sleep_until_some(resubscribe) => break StreamEnd::MembersChanged,
                _ = cancel.cancelled() => break StreamEnd::Cancelled,
            };
            heartbeat.beat();
            let Some(next) = next else {
                if last_message_at.elapsed() >= self.settings.heartbeat_timeout {
                    warn!("Streaming connection silent past the heartbeat timeout, reconnecting");
                    break StreamEnd::Failed {
                        reason: "silence",
                        catch_up: true,
                    };
                }
                continue;
            };
            last_message_at = Instant::now();
            let message = match next {
                Err(err) => {
                    warn!(error = %err, "Streaming connection failed, reconnecting");
                    break StreamEnd::Failed {
                        reason: "error",
                        catch_up: true,
                    };
                }
                Ok(None) => {
                    break StreamEnd::Failed {
                        reason: "ended",
                        catch_up: true,
                    }
                }
                Ok(Some(message)) => message,
            };
            match self.handle_message(state, message, &mut seen).await {
                Ok(None) => {}
                Ok(Some(end)) => break end,
                Err(Closed) => break StreamEnd::QueueClosed,
            }
        };
        seen.flush(self).await;
        metrics::gauge!(m::STREAMS_OPEN).decrement(1.0);
        end
    }

    fn open_failed(&self, state: &mut GroupState, err: EwsError) -> StreamEnd {
        match err {
            EwsError::ConnectionLimit => StreamEnd::ConnectionRefused,
            EwsError::SubscriptionGone { .. } => {
                // Every subscription of the connection is gone (an Exchange restart):
                // drop them all; the next reconcile subscribes and catches up.
                warn!(error = %err, "Subscriptions of a group are gone, resubscribing");
                metrics::counter!(m::RESUBSCRIPTIONS, "reason" => "gone")
                    .increment(state.by_subscription.len() as u64);
                self.forget_all(state);
                StreamEnd::Failed {
                    reason: "subscriptions_gone",
                    catch_up: false,
                }
            }
            err => {
                warn!(error = %err, "Opening a streaming connection failed");
                StreamEnd::Failed {
                    reason: "open_failed",
                    catch_up: false,
                }
            }
        }
    }

    async fn handle_message(
        &self,
        state: &mut GroupState,
        message: StreamMessage,
        seen: &mut EventTimes,
    ) -> Result<Option<StreamEnd>, Closed> {
        for notification in message.notifications {
            let Some(mailbox) = state
                .by_subscription
                .get(&notification.subscription_id)
                .cloned()
            else {
                continue;
            };
            let mut distinct: HashSet<&MailboxEvent> =
                HashSet::with_capacity(notification.events.len());
            for event in &notification.events {
                metrics::counter!(m::EVENTS_RECEIVED, "type" => event.kind.as_str()).increment(1);
                if event.kind == EventKind::Status {
                    continue;
                }
                if !distinct.insert(event) {
                    // Exchange repeats an event now and then; the queue coalesces it.
                    metrics::counter!(m::EVENTS_DUPLICATE).increment(1);
                }
                self.queue
                    .push(
                        &mailbox,
                        event.item_id.as_ref().or(event.old_item_id.as_ref()),
                        Reason::Event,
                    )
                    .await?;
            }
            seen.mark(&mailbox);
        }
        seen.flush_if_due(self).await;
        if let Some(error) = message.error {
            if error.code == MISSED_EVENTS {
                // The subscriptions live on; only the missed changes need a catch-up.
                let affected = state.mailboxes_of(&error.subscription_ids);
                metrics::counter!(m::RESUBSCRIPTIONS, "reason" => "missed")
                    .increment(affected.len() as u64);
                for mailbox in affected {
                    self.queue.push(&mailbox, None, Reason::CatchUp).await?;
                }
            } else if matches!(error.to_error(), EwsError::ConnectionLimit) {
                // The connection was refused in its first message: the account holds
                // as many streams as Exchange allows.
                return Ok(Some(StreamEnd::ConnectionRefused));
            } else if error.code == STREAM_TAKEN {
                // The subscriptions live on another connection now; reopen ours
                // (after the reconnect delay, so two readers cannot ping-pong fast).
                warn!(
                    count = error.subscription_ids.len(),
                    "Another streaming connection took the subscriptions, reopening"
                );
                return Ok(Some(StreamEnd::Failed {
                    reason: "stream_taken",
                    catch_up: true,
                }));
            } else if !error.subscription_ids.is_empty() {
                warn!(code = %error.code, count = error.subscription_ids.len(), "Subscriptions reported dead, resubscribing them");
                metrics::counter!(m::RESUBSCRIPTIONS, "reason" => "dead")
                    .increment(error.subscription_ids.len() as u64);
                for id in &error.subscription_ids {
                    if let Some(mailbox) = state.forget(id) {
                        self.rooms.set_subscribed(&mailbox, false);
                    }
                }
                return Ok(Some(StreamEnd::MembersChanged));
            } else {
                warn!(code = %error.code, "Streaming connection reported an error");
                return Ok(Some(StreamEnd::Failed {
                    reason: "stream_error",
                    catch_up: true,
                }));
            }
        }
        if message.connection_status == Some(ConnectionStatus::Closed) {
            debug!("Streaming connection reached its timeout, renewing");
            return Ok(Some(StreamEnd::Renew));
        }
        Ok(None)
    }

    async fn catch_up_all(&self, state: &GroupState) -> Result<(), Closed> {
        for mailbox in state.by_mailbox.keys() {
            self.queue.push(mailbox, None, Reason::CatchUp).await?;
        }
        Ok(())
    }

    async fn unsubscribe_all(&self, state: &mut GroupState) {
        if let Some(affinity) = state.affinity.as_ref() {
            for (id, mailbox) in &state.by_subscription {
                let unsubscribe = self.ews.unsubscribe(mailbox, affinity, id);
                if let Ok(Err(err)) = tokio::time::timeout(UNSUBSCRIBE_TIMEOUT, unsubscribe).await {
                    debug!(error = %err, "Unsubscribe failed; the subscription will expire");
                }
            }
        }
        self.forget_all(state);
    }

    /// Drops every subscription of the group from the books (not from Exchange).
    fn forget_all(&self, state: &mut GroupState) {
        for mailbox in state.by_mailbox.keys() {
            self.rooms.set_subscribed(mailbox, false);
        }
        state.forget_all();
    }

    fn store_room_id(&self, mailbox: &MailboxAddress) -> Option<crate::store::RoomId> {
        self.rooms.room_id(mailbox)
    }
}

#[derive(Default)]
struct GroupState {
    affinity: Option<Affinity>,
    /// Set when a wanted mailbox could not be subscribed: the open stream ends then
    /// so the next reconcile tries again.
    resubscribe_at: Option<Instant>,
    by_subscription: HashMap<SubscriptionId, MailboxAddress>,
    by_mailbox: HashMap<MailboxAddress, SubscriptionId>,
    /// Members polled because the group has no connection slot.
    polled: HashSet<MailboxAddress>,
}

impl GroupState {
    /// Drops one subscription; returns its mailbox.
    fn forget(&mut self, id: &SubscriptionId) -> Option<MailboxAddress> {
        let mailbox = self.by_subscription.remove(id)?;
        self.by_mailbox.remove(&mailbox);
        Some(mailbox)
    }

    fn forget_all(&mut self) {
        self.by_subscription.clear();
        self.by_mailbox.clear();
    }

    fn mailboxes_of(&self, ids: &[SubscriptionId]) -> Vec<MailboxAddress> {
        if ids.is_empty() {
            return self.by_mailbox.keys().cloned().collect();
        }
        ids.iter()
            .filter_map(|id| self.by_subscription.get(id).cloned())
            .collect()
    }
}

enum StreamEnd {
    Cancelled,
    QueueClosed,
    Renew,
    MembersChanged,
    /// Exchange refused the connection: the account holds its HangingConnectionLimit.
    ConnectionRefused,
    Failed {
        reason: &'static str,
        catch_up: bool,
    },
}

/// Last event time per mailbox, written to the database at most once a second.
#[derive(Default)]
struct EventTimes {
    pending: HashSet<MailboxAddress>,
    flushed_at: Option<Instant>,
}

impl EventTimes {
    fn mark(&mut self, mailbox: &MailboxAddress) {
        self.pending.insert(mailbox.clone());
    }

    async fn flush_if_due(&mut self, listener: &Listener) {
        let due = self
            .flushed_at
            .is_none_or(|at| at.elapsed() >= EVENT_TIME_FLUSH);
        if due {
            self.flush(listener).await;
        }
    }

    async fn flush(&mut self, listener: &Listener) {
        self.flushed_at = Some(Instant::now());
        if self.pending.is_empty() {
            return;
        }
        let now = Utc::now();
        let seen: Vec<_> = self
            .pending
            .drain()
            .filter_map(|mailbox| listener.rooms.room_id(&mailbox).map(|room| (room, now)))
            .collect();
        if let Err(err) = listener.store.record_events(&seen).await {
            debug!(error = %err, "Could not record event times");
        }
    }
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn retry_delay(attempt: u32) -> Duration {
    RECONNECT_BACKOFF.delay(attempt)
}
