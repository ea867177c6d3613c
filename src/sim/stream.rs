//! Subscriptions, their event queues, and GetStreamingEvents response streams.
//!
//! [`SubscriptionRegistry`] holds every live subscription. Model changes are published
//! to the subscriptions of the changed mailbox: each gets the shared event (an `Arc`)
//! appended to its bounded queue, and the stream that has the subscription attached is
//! woken through its `Notify`. A queue that overflows is cleared and flagged, and the
//! next stream reports ErrorMissedNotificationEvents for it.
//!
//! A stream is a `futures` stream driven by the HTTP body itself (no task per stream):
//! each poll drains up to 50 events per subscription into Notifications, packs several
//! envelopes into one buffer and hands it out in randomly cut chunks. It writes a
//! heartbeat after `heartbeat_interval` of silence and a final `Closed` envelope after
//! `ConnectionTimeout` minutes (or at shutdown). Dropping the body detaches the stream.
//!
//! Push and pull delivery (outside this module) use the same queues through
//! [`Subscription::take_events`].

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::{EventKind, MailboxAddress};

use super::model::{mix, EventTarget, SimEvent, FOLDER_CHANGE_KEY};
use super::soap::{escape_into, MessageOutcome, XmlWriter, CONTENT_TYPE_XML, TIME_FORMAT};
use super::SimState;

/// Most events in one Notification (Exchange takes up to 50 queued events).
pub const MAX_EVENTS_PER_NOTIFICATION: usize = 50;
/// Most subscription ids in one GetStreamingEvents request.
pub const MAX_STREAM_SUBSCRIPTIONS: usize = 200;
/// Bytes gathered before a burst of envelopes is handed to the body.
const BURST_BYTES: usize = 64 * 1024;
/// Text of ErrorSubscriptionNotFound.
pub const TEXT_SUBSCRIPTION_NOT_FOUND: &str = "The specified subscription was not found.";

/// How a subscription delivers events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// GetStreamingEvents.
    Streaming,
    /// SendNotification POSTs to a URL.
    Push,
    /// GetEvents polling.
    Pull,
}

/// A bit set of the event kinds a subscription asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventMask(u16);

impl EventMask {
    /// Every kind.
    pub const ALL: Self = Self(u16::MAX);

    fn bit(kind: EventKind) -> u16 {
        1 << match kind {
            EventKind::Created => 0,
            EventKind::Modified => 1,
            EventKind::Deleted => 2,
            EventKind::Moved => 3,
            EventKind::Copied => 4,
            EventKind::FreeBusyChanged => 5,
            EventKind::Status => 6,
            EventKind::NewMail => 7,
        }
    }

    /// Adds a kind.
    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= Self::bit(kind);
    }

    /// Whether the kind is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// Whether no kind is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses an EWS `t:EventType` value.
    pub fn parse_kind(name: &str) -> Option<EventKind> {
        Some(match name {
            "CreatedEvent" => EventKind::Created,
            "ModifiedEvent" => EventKind::Modified,
            "DeletedEvent" => EventKind::Deleted,
            "MovedEvent" => EventKind::Moved,
            "CopiedEvent" => EventKind::Copied,
            "FreeBusyChangedEvent" => EventKind::FreeBusyChanged,
            "NewMailEvent" => EventKind::NewMail,
            _ => return None,
        })
    }
}

/// Why a subscription stopped working (reported on its next stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadReason {
    /// The EWS response code, e.g. `ErrorSubscriptionNotFound`.
    pub code: &'static str,
    /// The message text.
    pub text: String,
}

/// The mutable part of a subscription.
#[derive(Debug, Default)]
pub struct SubscriptionQueue {
    /// Events not yet delivered, oldest first.
    pub events: VecDeque<Arc<SimEvent>>,
    /// Events were dropped; the next stream reports ErrorMissedNotificationEvents.
    pub missed: bool,
    /// The subscription is dead; the next stream reports this and drops it.
    pub dead: Option<DeadReason>,
    /// The id of the stream that has this subscription attached (0: none).
    stream: u64,
    /// Wakes the attached stream; set and cleared by the stream.
    waker: Option<Arc<Notify>>,
}

/// One subscription: its mailbox, filter, owner and event queue.
#[derive(Debug)]
pub struct Subscription {
    /// Opaque base64 id.
    pub id: String,
    /// The subscribed mailbox.
    pub mailbox: MailboxAddress,
    /// Delivery kind.
    pub kind: SubscriptionKind,
    /// Event kinds asked for.
    pub event_types: EventMask,
    /// The account that created it (only it may stream it), when auth is on.
    pub owner: Option<String>,
    /// The back end it lives on, when affinity is simulated.
    pub backend: Option<usize>,
    limit: usize,
    queue: Mutex<SubscriptionQueue>,
}

impl Subscription {
    /// Locks the queue (briefly; never across an await).
    pub fn queue(&self) -> MutexGuard<'_, SubscriptionQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up to `max` queued events, oldest first.
    pub fn take_events(&self, max: usize) -> Vec<Arc<SimEvent>> {
        let mut queue = self.queue();
        let count = queue.events.len().min(max);
        queue.events.drain(..count).collect()
    }

    /// Marks the subscription dead with a code; its stream reports it and ends.
    pub fn kill(&self, code: &'static str, text: impl Into<String>) {
        let mut queue = self.queue();
        queue.dead = Some(DeadReason {
            code,
            text: text.into(),
        });
        if let Some(waker) = &queue.waker {
            waker.notify_one();
        }
    }

    /// Marks events as lost: the next stream reports ErrorMissedNotificationEvents.
    pub fn mark_missed(&self) {
        let mut queue = self.queue();
        queue.missed = true;
        queue.events.clear();
        if let Some(waker) = &queue.waker {
            waker.notify_one();
        }
    }

    fn push(&self, event: &Arc<SimEvent>) -> bool {
        if !self.event_types.contains(event.kind) {
            return false;
        }
        let mut queue = self.queue();
        if queue.dead.is_some() {
            return false;
        }
        if queue.events.len() >= self.limit {
            queue.events.clear();
            queue.missed = true;
        } else {
            queue.events.push_back(event.clone());
        }
        if let Some(waker) = &queue.waker {
            waker.notify_one();
        }
        true
    }
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_id: HashMap<String, Arc<Subscription>>,
    by_mailbox: HashMap<MailboxAddress, Vec<Arc<Subscription>>>,
}

/// Every live subscription, by id and by mailbox.
#[derive(Debug)]
pub struct SubscriptionRegistry {
    seed: u64,
    next_id: AtomicU64,
    next_stream: AtomicU64,
    open_streams: AtomicUsize,
    inner: Mutex<RegistryInner>,
}

/// What a new subscription is.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// The mailbox.
    pub mailbox: MailboxAddress,
    /// Delivery kind.
    pub kind: SubscriptionKind,
    /// Event kinds.
    pub event_types: EventMask,
    /// Creating account.
    pub owner: Option<String>,
    /// Back end.
    pub backend: Option<usize>,
    /// Queue bound.
    pub limit: usize,
}

impl SubscriptionRegistry {
    /// An empty registry whose ids derive from the seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            next_id: AtomicU64::new(1),
            next_stream: AtomicU64::new(1),
            open_streams: AtomicUsize::new(0),
            inner: Mutex::new(RegistryInner::default()),
        }
    }

    fn inner(&self) -> MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a subscription with a fresh opaque id.
    pub fn subscribe(&self, new: NewSubscription) -> Arc<Subscription> {
        let number = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(40);
        bytes.extend_from_slice(b"\x29\x00SIMSUB");
        bytes.extend_from_slice(&number.to_be_bytes());
        bytes.extend_from_slice(&mix(self.seed, number).to_be_bytes());
        bytes.extend_from_slice(&(new.backend.unwrap_or(0) as u32).to_be_bytes());
        let subscription = Arc::new(Subscription {
            id: BASE64.encode(bytes),
            mailbox: new.mailbox,
            kind: new.kind,
            event_types: new.event_types,
            owner: new.owner,
            backend: new.backend,
            limit: new.limit.max(1),
            queue: Mutex::new(SubscriptionQueue::default()),
        });
        let mut inner = self.inner();
        inner
            .by_id
            .insert(subscription.id.clone(), subscription.clone());
        inner
            .by_mailbox
            .entry(subscription.mailbox.clone())
            .or_default()
            .push(subscription.clone());
        subscription
    }

    /// A subscription by id.
    pub fn get(&self, id: &str) -> Option<Arc<Subscription>> {
        self.inner().by_id.get(id).cloned()
    }

    /// Removes a subscription; a stream that has it attached reports it as not found.
    pub fn remove(&self, id: &str) -> Option<Arc<Subscription>> {
        let mut inner = self.inner();
        let subscription = inner.by_id.remove(id)?;
        if let Some(list) = inner.by_mailbox.get_mut(&subscription.mailbox) {
            list.retain(|s| s.id != id);
        }
        drop(inner);
        subscription.kill("ErrorSubscriptionNotFound", TEXT_SUBSCRIPTION_NOT_FOUND);
        Some(subscription)
    }

    /// Every live subscription.
    pub fn all(&self) -> Vec<Arc<Subscription>> {
        self.inner().by_id.values().cloned().collect()
    }

    /// The live subscriptions of a mailbox.
    pub fn of_mailbox(&self, mailbox: &MailboxAddress) -> Vec<Arc<Subscription>> {
        self.inner()
            .by_mailbox
            .get(mailbox)
            .cloned()
            .unwrap_or_default()
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.inner().by_id.len()
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of open streams.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// Queues events for every subscription of the mailbox; returns the deliveries.
    pub fn publish(&self, mailbox: &MailboxAddress, events: &[SimEvent]) -> usize {
        let subscriptions = self.of_mailbox(mailbox);
        if subscriptions.is_empty() {
            return 0;
        }
        let mut delivered = 0;
        for event in events {
            let event = Arc::new(event.clone());
            for subscription in &subscriptions {
                if subscription.push(&event) {
                    delivered += 1;
                }
            }
        }
        delivered
    }
}

/// Opens a GetStreamingEvents response for already-validated ids and timeout.
pub fn open_stream(state: Arc<SimState>, ids: Vec<String>, timeout_minutes: u32) -> Response {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for id in ids {
        match state.subscriptions.get(&id) {
            Some(subscription) if subscription.kind == SubscriptionKind::Streaming => {
                known.push(subscription)
            }
            _ => unknown.push(id),
        }
    }
    let rng_seed = state.config.seed ^ state.subscriptions.next_stream.load(Ordering::Relaxed);
    let mut first = true;
    if !unknown.is_empty() {
        // Exchange delivers nothing for the good ids when any id is bad.
        let text = error_envelope(
            &mut first,
            "ErrorSubscriptionNotFound",
            TEXT_SUBSCRIPTION_NOT_FOUND,
            &unknown,
        );
        return stream_response(Body::from(text));
    }
    let stream_id = state
        .subscriptions
        .next_stream
        .fetch_add(1, Ordering::Relaxed);
    let notify = Arc::new(Notify::new());
    for subscription in &known {
        let mut queue = subscription.queue();
        if let Some(previous) = queue.waker.replace(notify.clone()) {
            previous.notify_one();
        }
        queue.stream = stream_id;
    }
    state
        .subscriptions
        .open_streams
        .fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let stream_state = StreamState {
        deadline: now + state.config.minute * timeout_minutes,
        last_write: now,
        heartbeat: state.config.heartbeat_interval,
        faults: state.faults.watch_streams(),
        drop_generation: state.faults.stream_faults().drop_generation,
        dropped: false,
        state,
        subscriptions: known,
        stream_id,
        notify,
        pending: BytesMut::new(),
        finished: false,
        first,
        rng: SmallRng::seed_from_u64(rng_seed),
    };
    let body = futures::stream::unfold(stream_state, |mut stream| async move {
        match stream.next_chunk().await {
            Some(chunk) => Some((Ok(chunk), stream)),
            None if std::mem::take(&mut stream.dropped) => {
                let reset = std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "stream dropped by an injected fault",
                );
                Some((Err(reset), stream))
            }
            None => None,
        }
    });
    stream_response(Body::from_stream(body))
}

fn stream_response(body: Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE_XML)],
        body,
    )
        .into_response()
}

/// One open stream; dropping it (client gone, body finished) detaches its subscriptions.
struct StreamState {
    state: Arc<SimState>,
    subscriptions: Vec<Arc<Subscription>>,
    stream_id: u64,
    /// Created by the stream, shared with its subscriptions' queues; publishers wake it.
    notify: Arc<Notify>,
    pending: BytesMut,
    finished: bool,
    first: bool,
    deadline: Instant,
    last_write: Instant,
    heartbeat: std::time::Duration,
    rng: SmallRng,
    /// Stream faults (drop, stall) from `faults`; the sender lives in the shared state.
    faults: tokio::sync::watch::Receiver<crate::sim::faults::StreamFaults>,
    /// The drop generation when the stream opened; a newer one drops it.
    drop_generation: u64,
    /// Set when a fault dropped the stream: the body ends with an error, not cleanly.
    dropped: bool,
}

impl Drop for StreamState {
    fn drop(&mut self) {
        for subscription in &self.subscriptions {
            let mut queue = subscription.queue();
            if queue.stream == self.stream_id {
                queue.stream = 0;
                queue.waker = None;
            }
        }
        self.state
            .subscriptions
            .open_streams
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl StreamState {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if crate::sim::faults::hold_stream(
                &mut self.faults,
                self.drop_generation,
                &self.state.shutdown,
            )
            .await
            {
                self.dropped = !self.finished || !self.pending.is_empty();
                self.pending.clear();
                self.finished = true;
                return None;
            }
            if !self.pending.is_empty() {
                return Some(self.cut_chunk());
            }
            if self.finished {
                return None;
            }
            if let Some(text) = self.terminal_envelope() {
                self.write(text);
                self.finished = true;
                continue;
            }
            if self.drain_events() {
                continue;
            }
            let now = Instant::now();
            if now >= self.deadline {
                let text = status_envelope(&mut self.first, "Closed");
                self.write(text);
                self.finished = true;
                continue;
            }
            let idle_deadline = self.last_write + self.heartbeat;
            if now >= idle_deadline {
                let text = status_envelope(&mut self.first, "OK");
                self.write(text);
                continue;
            }
            let wake_at = idle_deadline.min(self.deadline);
            tokio::select! {
                () = self.notify.notified() => {}
                () = tokio::time::sleep_until(wake_at) => {}
                _ = self.faults.changed() => {}
                () = self.state.shutdown.cancelled() => {
                    let text = status_envelope(&mut self.first, "Closed");
                    self.write(text);
                    self.finished = true;
                }
            }
        }
    }

    fn write(&mut self, text: String) {
        self.pending.extend_from_slice(text.as_bytes());
        self.last_write = Instant::now();
        self.state
            .stats
            .stream_envelopes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Hands out all pending bytes, or (randomly) only a prefix of them.
    fn cut_chunk(&mut self) -> Bytes {
        let length = self.pending.len();
        let cut = if length > 1 && self.rng.gen_bool(0.5) {
            self.rng.gen_range(1..length)
        } else {
            length
        };
        self.pending.split_to(cut).freeze()
    }

    /// A final error envelope when a subscription was taken over, died, or missed events.
    fn terminal_envelope(&mut self) -> Option<String> {
        let mut taken = Vec::new();
        let mut dead: Option<(DeadReason, Vec<String>)> = None;
        let mut missed = Vec::new();
        for subscription in &self.subscriptions {
            let mut queue = subscription.queue();
            if queue.stream != self.stream_id {
                taken.push(subscription.id.clone());
            } else if let Some(reason) = &queue.dead {
                match &mut dead {
                    Some((_, ids)) => ids.push(subscription.id.clone()),
                    None => dead = Some((reason.clone(), vec![subscription.id.clone()])),
                }
            } else if queue.missed {
                queue.missed = false;
                missed.push(subscription.id.clone());
            }
        }
        if !taken.is_empty() {
            return Some(error_envelope(
                &mut self.first,
                "ErrorNewEventStreamConnectionOpened",
                "A new event stream connection was opened for the subscription.",
                &taken,
            ));
        }
        if let Some((reason, ids)) = dead {
            for id in &ids {
                self.state.subscriptions.remove(id);
            }
            return Some(error_envelope(
                &mut self.first,
                reason.code,
                &reason.text,
                &ids,
            ));
        }
        if !missed.is_empty() {
            self.state
                .stats
                .missed_reported
                .fetch_add(missed.len() as u64, Ordering::Relaxed);
            return Some(error_envelope(
                &mut self.first,
                "ErrorMissedNotificationEvents",
                "Events were lost for the subscription; its queue overflowed.",
                &missed,
            ));
        }
        None
    }

    /// Builds envelopes from queued events; returns whether any were written.
    fn drain_events(&mut self) -> bool {
        let mut wrote = false;
        while self.pending.len() < BURST_BYTES {
            let mut writer = XmlWriter::envelope(self.first);
            let types = writer.types_prefix();
            open_stream_message(&mut writer, &MessageOutcome::Success);
            let mut notifications = 0;
            let mut events = 0;
            for subscription in &self.subscriptions {
                let batch = subscription.take_events(MAX_EVENTS_PER_NOTIFICATION);
                if batch.is_empty() {
                    continue;
                }
                if notifications == 0 {
                    writer.open_m("Notifications", &[]);
                }
                notifications += 1;
                events += batch.len();
                let out = writer.raw();
                let _ = write!(out, "<{types}:Notification><{types}:SubscriptionId>");
                escape_into(out, &subscription.id);
                let _ = write!(out, "</{types}:SubscriptionId>");
                for event in &batch {
                    write_event(out, types, event);
                }
                let _ = write!(out, "</{types}:Notification>");
            }
            if notifications == 0 {
                break;
            }
            self.first = false;
            writer.close();
            let text = writer.finish();
            self.write(text);
            self.state
                .stats
                .events_streamed
                .fetch_add(events as u64, Ordering::Relaxed);
            wrote = true;
        }
        wrote
    }
}

fn open_stream_message(writer: &mut XmlWriter, outcome: &MessageOutcome) {
    writer.open_response("GetStreamingEventsResponse");
    writer.open_m("ResponseMessages", &[]);
    writer.open_message("GetStreamingEventsResponseMessage", outcome);
}

fn status_envelope(first: &mut bool, status: &str) -> String {
    let mut writer = XmlWriter::envelope(std::mem::take(first));
    open_stream_message(&mut writer, &MessageOutcome::Success);
    writer.text_m("ConnectionStatus", status);
    writer.finish()
}

/// An Error message naming subscription ids, with ConnectionStatus Closed.
pub fn error_envelope(first: &mut bool, code: &'static str, text: &str, ids: &[String]) -> String {
    let mut writer = XmlWriter::envelope(std::mem::take(first));
    open_stream_message(&mut writer, &MessageOutcome::error(code, text));
    writer.open_m("ErrorSubscriptionIds", &[]);
    for id in ids {
        writer.text_t("SubscriptionId", id);
    }
    writer.close();
    writer.text_m("ConnectionStatus", "Closed");
    writer.finish()
}

fn event_element(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Created => "CreatedEvent",
        EventKind::Modified => "ModifiedEvent",
        EventKind::Deleted => "DeletedEvent",
        EventKind::Moved => "MovedEvent",
        EventKind::Copied => "CopiedEvent",
        EventKind::FreeBusyChanged => "FreeBusyChangedEvent",
        EventKind::Status => "StatusEvent",
        EventKind::NewMail => "NewMailEvent",
    }
}

/// Writes one event element in schema order (TimeStamp, id, parent, old id/parent, UnreadCount).
pub fn write_event(out: &mut String, t: &str, event: &SimEvent) {
    let name = event_element(event.kind);
    let _ = write!(
        out,
        "<{t}:{name}><{t}:TimeStamp>{}</{t}:TimeStamp>",
        event.timestamp.format(TIME_FORMAT)
    );
    match &event.target {
        EventTarget::Item(id, change_key) => {
            let _ = write!(out, "<{t}:ItemId Id=\"{id}\" ChangeKey=\"{change_key}\"/>");
        }
        EventTarget::Folder(id) => {
            let _ = write!(
                out,
                "<{t}:FolderId Id=\"{id}\" ChangeKey=\"{FOLDER_CHANGE_KEY}\"/>"
            );
        }
    }
    let _ = write!(
        out,
        "<{t}:ParentFolderId Id=\"{}\" ChangeKey=\"{FOLDER_CHANGE_KEY}\"/>",
        event.parent_folder_id
    );
    if let Some((id, change_key)) = &event.old_item {
        let _ = write!(
            out,
            "<{t}:OldItemId Id=\"{id}\" ChangeKey=\"{change_key}\"/>"
        );
    }
    if let Some(parent) = &event.old_parent_folder_id {
        let _ = write!(
            out,
            "<{t}:OldParentFolderId Id=\"{parent}\" ChangeKey=\"{FOLDER_CHANGE_KEY}\"/>"
        );
    }
    if let Some(count) = event.unread_count {
        let _ = write!(out, "<{t}:UnreadCount>{count}</{t}:UnreadCount>");
    }
    let _ = write!(out, "</{t}:{name}>");
}
