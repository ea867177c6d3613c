//! Push notifications: PushSubscriptionRequest and the SendNotification deliveries.
//!
//! This module owns push subscriptions: it validates the request (callback URL,
//! StatusFrequency 1..1440, optional Watermark), mints the subscription id, and runs
//! one delivery task per subscription that POSTs `SendNotification` envelopes to the
//! callback with PreviousWatermark / Watermark / MoreEvents chaining, sends StatusEvent
//! pings every StatusFrequency, retries a failing callback on Exchange's ladder (30 s
//! doubling) until StatusFrequency is exceeded and then drops the subscription, and
//! ends it when the callback answers `Unsubscribe`. A subscription that names the
//! watermark of an earlier one of its mailbox first gets the events after it (the hub
//! keeps the last 1024 events of every mailbox that has had a push subscription).
//! Time is scaled: one simulated minute is [`PushTiming::minute`]. Model events enter
//! through [`PushHub::publish_sim`]; push subscriptions are not in the streaming
//! registry, so Unsubscribe and the subscription limits ask this hub about them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{EventKind, MailboxAddress, SubscriptionId};
use crate::sim::model::{EventTarget, SimEvent};
use crate::sim::soap::{
    self, Element, MessageOutcome, Ns, SoapRequest, XmlWriter, NS_MESSAGES, NS_TYPES,
};
use crate::sim::{Operation, RequestContext, SimState};
use crate::sync::lock;

/// Events a push notification carries at most.
pub const MAX_EVENTS_PER_NOTIFICATION: usize = 50;
/// StatusFrequency bounds, in minutes.
pub const STATUS_FREQUENCY_RANGE: std::ops::RangeInclusive<u32> = 1..=1440;
/// The default StatusFrequency, in minutes.
pub const DEFAULT_STATUS_FREQUENCY: u32 = 30;
/// Longest callback URL Exchange accepts (exclusive).
pub const MAX_URL_LENGTH: usize = 2083;

const EVENT_QUEUE_CAPACITY: usize = 4096;
/// Events kept per mailbox (that has had a push subscription) to resume from a watermark.
const HISTORY_PER_MAILBOX: usize = 1024;
const WATERMARK_PREFIX: &str = "SIMWM:";

/// A validated PushSubscriptionRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// The callback URL.
    pub url: String,
    /// Minutes between status pings (1..1440).
    pub status_frequency: u32,
    /// The watermark to resume from, if the client sent one.
    pub watermark: Option<String>,
}

/// Why a push subscription request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Not a PushSubscriptionRequest, or malformed XML.
    #[error("not a push subscription request")]
    NotPushRequest,
    /// Empty, too long, or not http(s).
    #[error("invalid push callback url")]
    InvalidUrl,
    /// StatusFrequency outside 1..1440 or not a number.
    #[error("status frequency out of range")]
    InvalidStatusFrequency,
    /// A watermark the simulator never issued.
    #[error("invalid watermark")]
    InvalidWatermark,
}

impl PushError {
    /// The EWS response code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotPushRequest => "ErrorInvalidSubscriptionRequest",
            Self::InvalidUrl => "ErrorInvalidPushSubscriptionUrl",
            Self::InvalidStatusFrequency => "ErrorSchemaValidation",
            Self::InvalidWatermark => "ErrorInvalidWatermark",
        }
    }

    /// The message text.
    pub fn message(&self) -> &'static str {
        match self {
            Self::NotPushRequest => "The subscription request is invalid.",
            Self::InvalidUrl => "The push subscription URL is invalid.",
            Self::InvalidStatusFrequency => {
                "The request failed schema validation: StatusFrequency must be between 1 and 1440."
            }
            Self::InvalidWatermark => {
                "The watermark used for creating this subscription was not found."
            }
        }
    }
}

/// Reads and validates the PushSubscriptionRequest of a Subscribe operation.
///
/// # Errors
///
/// [`PushError`] naming the first invalid field.
pub fn parse_request(subscribe: &Element) -> Result<PushRequest, PushError> {
    let request = subscribe
        .child(Ns::Messages, "PushSubscriptionRequest")
        .ok_or(PushError::NotPushRequest)?;
    let text = |name: &str| {
        request
            .child_mt(name)
            .map(|element| element.text.trim().to_owned())
    };
    let url = text("URL").unwrap_or_default();
    let lowered = url.to_ascii_lowercase();
    if url.is_empty()
        || url.len() >= MAX_URL_LENGTH
        || !(lowered.starts_with("http://") || lowered.starts_with("https://"))
        || reqwest::Url::parse(&url).is_err()
    {
        return Err(PushError::InvalidUrl);
    }
    let status_frequency = match text("StatusFrequency") {
        None => DEFAULT_STATUS_FREQUENCY,
        Some(value) => value
            .parse::<u32>()
            .ok()
            .filter(|minutes| STATUS_FREQUENCY_RANGE.contains(minutes))
            .ok_or(PushError::InvalidStatusFrequency)?,
    };
    // exchangelib writes m:Watermark, the EWS Managed API t:Watermark: accept both.
    let watermark = text("Watermark");
    if let Some(mark) = &watermark {
        decode_watermark(mark).ok_or(PushError::InvalidWatermark)?;
    }
    Ok(PushRequest {
        url,
        status_frequency,
        watermark,
    })
}

/// The kind of a pushed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PushEventKind {
    /// `t:CreatedEvent`.
    Created,
    /// `t:ModifiedEvent`.
    Modified,
    /// `t:DeletedEvent`.
    Deleted,
    /// `t:MovedEvent`.
    Moved,
    /// `t:CopiedEvent`.
    Copied,
    /// `t:FreeBusyChangedEvent`.
    FreeBusyChanged,
}

impl PushEventKind {
    fn element(self) -> &'static str {
        match self {
            Self::Created => "CreatedEvent",
            Self::Modified => "ModifiedEvent",
            Self::Deleted => "DeletedEvent",
            Self::Moved => "MovedEvent",
            Self::Copied => "CopiedEvent",
            Self::FreeBusyChanged => "FreeBusyChangedEvent",
        }
    }
}

/// One item or folder event, as pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// What happened.
    pub kind: PushEventKind,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// `true` for a folder event (FolderId), `false` for an item event (ItemId).
    pub is_folder: bool,
    /// The (new) id of the item or folder.
    pub id: String,
    /// Its change key.
    pub change_key: String,
    /// The (new) parent folder id.
    pub parent_folder_id: String,
    /// Moves and copies: the old id and the old parent folder id.
    pub old: Option<(String, String)>,
    /// Folder modifications: the unread count.
    pub unread_count: Option<u32>,
}

impl PushEvent {
    /// Converts a model event; `None` for kinds push never carries (status, new mail).
    pub fn from_sim(event: &SimEvent) -> Option<Self> {
        let kind = match event.kind {
            EventKind::Created => PushEventKind::Created,
            EventKind::Modified => PushEventKind::Modified,
            EventKind::Deleted => PushEventKind::Deleted,
            EventKind::Moved => PushEventKind::Moved,
            EventKind::Copied => PushEventKind::Copied,
            EventKind::FreeBusyChanged => PushEventKind::FreeBusyChanged,
            EventKind::Status | EventKind::NewMail => return None,
        };
        let (is_folder, id, change_key) = match &event.target {
            EventTarget::Item(id, change_key) => (false, id.to_string(), change_key.to_string()),
            EventTarget::Folder(id) => (true, id.to_string(), String::new()),
        };
        let old = match (&event.old_item, &event.old_parent_folder_id) {
            (Some((old_id, _)), Some(old_parent)) => {
                Some((old_id.to_string(), old_parent.to_string()))
            }
            _ => None,
        };
        Some(Self {
            kind,
            timestamp: event.timestamp,
            is_folder,
            id,
            change_key,
            parent_folder_id: event.parent_folder_id.to_string(),
            old,
            unread_count: event.unread_count,
        })
    }
}

/// How a subscription's deliveries ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushEnd {
    /// The callback answered `Unsubscribe`.
    Unsubscribed,
    /// The callback failed for longer than StatusFrequency.
    GaveUp,
    /// The simulator removed it (restart, shutdown, fault).
    Removed,
}

/// Counters of the push machinery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushStats {
    /// Notifications carrying events that the callback accepted.
    pub notifications_delivered: u64,
    /// Status pings the callback accepted.
    pub status_pings_delivered: u64,
    /// Failed POST attempts (errors, timeouts, non-200 answers).
    pub failed_attempts: u64,
    /// Subscriptions dropped after the retry ladder ran out.
    pub subscriptions_dropped: u64,
    /// Subscriptions ended by an `Unsubscribe` answer.
    pub subscriptions_unsubscribed: u64,
}

/// The simulated clock for push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushTiming {
    /// The length of one simulated minute.
    pub minute: Duration,
}

impl PushTiming {
    fn minutes(self, count: u32) -> Duration {
        self.minute * count
    }

    fn first_retry(self) -> Duration {
        self.minute / 2
    }
}

/// All push subscriptions and their delivery tasks.
pub struct PushHub {
    timing: PushTiming,
    client: reqwest::Client,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Lock order: `history` before `subscriptions`, so that a subscription starting
    /// from a watermark sees every event exactly once (replayed or sent).
    history: Mutex<HashMap<MailboxAddress, VecDeque<Sequenced>>>,
    subscriptions: Mutex<HashMap<SubscriptionId, Registration>>,
    stats: Arc<SharedStats>,
    sequence: AtomicU64,
}

/// An event with its place in the hub's sequence (its watermark).
type Sequenced = (u64, PushEvent);

impl std::fmt::Debug for PushHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushHub")
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// A subscription's entry in the hub. The sender feeds its delivery task; dropping it
/// (removal) ends the task after its current delivery.
struct Registration {
    mailbox: MailboxAddress,
    events: mpsc::Sender<Vec<Sequenced>>,
    stop: CancellationToken,
}

#[derive(Debug, Default)]
struct SharedStats {
    delivered: AtomicU64,
    pings: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    unsubscribed: AtomicU64,
}

impl PushHub {
    /// Builds the hub. Its delivery tasks stop when `cancel` fires.
    pub fn new(timing: PushTiming, cancel: CancellationToken) -> Self {
        let timeout = timing
            .minute
            .clamp(Duration::from_millis(200), Duration::from_secs(30));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            timing,
            client,
            tracker: TaskTracker::new(),
            cancel,
            subscriptions: Mutex::new(HashMap::new()),
            stats: Arc::new(SharedStats::default()),
            history: Mutex::new(HashMap::new()),
            sequence: AtomicU64::new(0),
        }
    }

    /// The current watermark: the position after the newest event.
    pub fn current_watermark(&self) -> String {
        encode_watermark(self.sequence.load(Ordering::Relaxed))
    }

    /// Starts delivering to a new subscription. With a `watermark` from an earlier
    /// subscription of the mailbox, the events after it are delivered first. Returns the
    /// watermark the Subscribe response carries.
    ///
    /// # Errors
    ///
    /// [`PushError::InvalidWatermark`] for a watermark the hub never issued or one
    /// older than the events it still keeps for the mailbox.
    pub fn start(
        self: &Arc<Self>,
        id: SubscriptionId,
        mailbox: MailboxAddress,
        request: PushRequest,
    ) -> Result<String, PushError> {
        let (sender, receiver) = mpsc::channel(EVENT_QUEUE_CAPACITY);
        let stop = self.cancel.child_token();
        let mut history = lock(&self.history);
        let kept = history.entry(mailbox.clone()).or_default();
        let current = self.sequence.load(Ordering::Relaxed);
        let (start, replay) = match request.watermark.as_deref() {
            None => (current, Vec::new()),
            Some(mark) => {
                let from = decode_watermark(mark)
                    .filter(|from| *from <= current)
                    .ok_or(PushError::InvalidWatermark)?;
                let oldest = kept.front().map_or(current + 1, |(sequence, _)| *sequence);
                if kept.len() >= HISTORY_PER_MAILBOX && from + 1 < oldest {
                    return Err(PushError::InvalidWatermark);
                }
                let replay: Vec<Sequenced> = kept
                    .iter()
                    .filter(|(sequence, _)| *sequence > from)
                    .cloned()
                    .collect();
                (from, replay)
            }
        };
        if !replay.is_empty() {
            // The channel is new and empty, so the replay always fits.
            let _ = sender.try_send(replay);
        }
        lock(&self.subscriptions).insert(
            id.clone(),
            Registration {
                mailbox,
                events: sender,
                stop: stop.clone(),
            },
        );
        drop(history);
        let watermark = encode_watermark(start);
        let delivery = Delivery {
            hub: Arc::clone(self),
            id,
            request,
            previous: watermark.clone(),
            receiver,
            stop,
        };
        self.tracker.spawn(delivery.run());
        Ok(watermark)
    }

    /// Queues model events for every push subscription of `mailbox`.
    pub fn publish_sim(&self, mailbox: &MailboxAddress, events: &[SimEvent]) {
        if !lock(&self.history).contains_key(mailbox) {
            return;
        }
        let events: Vec<PushEvent> = events.iter().filter_map(PushEvent::from_sim).collect();
        self.publish(mailbox, &events);
    }

    /// Queues the events of one change, together, for every push subscription of
    /// `mailbox`, and keeps them for subscriptions that resume from a watermark. Only
    /// mailboxes that have had a push subscription are tracked.
    pub fn publish(&self, mailbox: &MailboxAddress, events: &[PushEvent]) {
        if events.is_empty() {
            return;
        }
        let mut history = lock(&self.history);
        let Some(kept) = history.get_mut(mailbox) else {
            return;
        };
        let sequenced: Vec<Sequenced> = events
            .iter()
            .map(|event| {
                let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
                (sequence, event.clone())
            })
            .collect();
        kept.extend(sequenced.iter().cloned());
        while kept.len() > HISTORY_PER_MAILBOX {
            kept.pop_front();
        }
        for registration in lock(&self.subscriptions).values() {
            if registration.mailbox == *mailbox {
                // A full queue means the callback is hopelessly behind; losing the
                // events matches Exchange dropping a subscription it cannot serve.
                let _ = registration.events.try_send(sequenced.clone());
            }
        }
    }

    /// Whether a push subscription is active.
    pub fn is_active(&self, id: &SubscriptionId) -> bool {
        lock(&self.subscriptions).contains_key(id)
    }

    /// How many push subscriptions `mailbox` has.
    pub fn count_for(&self, mailbox: &MailboxAddress) -> usize {
        lock(&self.subscriptions)
            .values()
            .filter(|registration| registration.mailbox == *mailbox)
            .count()
    }

    /// The ids of `mailbox`'s push subscriptions.
    pub fn of_mailbox(&self, mailbox: &MailboxAddress) -> Vec<SubscriptionId> {
        lock(&self.subscriptions)
            .iter()
            .filter(|(_, registration)| registration.mailbox == *mailbox)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The ids of active push subscriptions.
    pub fn active(&self) -> Vec<SubscriptionId> {
        lock(&self.subscriptions).keys().cloned().collect()
    }

    /// Ends a subscription's deliveries without telling anyone (an Exchange restart).
    pub fn remove(&self, id: &SubscriptionId) -> bool {
        match lock(&self.subscriptions).remove(id) {
            Some(registration) => {
                registration.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Ends every subscription (an Exchange restart).
    pub fn remove_all(&self) {
        for (_, registration) in lock(&self.subscriptions).drain() {
            registration.stop.cancel();
        }
    }

    /// The hub's counters.
    pub fn stats(&self) -> PushStats {
        PushStats {
            notifications_delivered: self.stats.delivered.load(Ordering::Relaxed),
            status_pings_delivered: self.stats.pings.load(Ordering::Relaxed),
            failed_attempts: self.stats.failures.load(Ordering::Relaxed),
            subscriptions_dropped: self.stats.dropped.load(Ordering::Relaxed),
            subscriptions_unsubscribed: self.stats.unsubscribed.load(Ordering::Relaxed),
        }
    }

    /// Waits until every delivery task has ended (after `cancel` fired).
    pub async fn closed(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn finish(&self, id: &SubscriptionId, end: PushEnd) {
        let counter = match end {
            PushEnd::Unsubscribed => &self.stats.unsubscribed,
            PushEnd::GaveUp => &self.stats.dropped,
            PushEnd::Removed => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        lock(&self.subscriptions).remove(id);
        tracing::debug!(?end, "Simulator push subscription ended");
    }
}

/// One subscription's delivery loop; it owns the receiving end of the event queue.
struct Delivery {
    hub: Arc<PushHub>,
    id: SubscriptionId,
    request: PushRequest,
    previous: String,
    receiver: mpsc::Receiver<Vec<Sequenced>>,
    stop: CancellationToken,
}

enum Outcome {
    Keep,
    Unsubscribe,
    GaveUp,
    Stopped,
}

impl Delivery {
    async fn run(mut self) {
        let interval = self.hub.timing.minutes(self.request.status_frequency);
        let mut pending: VecDeque<Sequenced> = VecDeque::new();
        let mut next_ping = Instant::now() + interval;
        loop {
            if pending.is_empty() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    received = self.receiver.recv() => match received {
                        Some(events) => pending.extend(events),
                        None => return,
                    },
                    () = tokio::time::sleep_until(next_ping) => {}
                }
            }
            while let Ok(events) = self.receiver.try_recv() {
                pending.extend(events);
            }
            let take = pending.len().min(MAX_EVENTS_PER_NOTIFICATION);
            let batch: Vec<Sequenced> = pending.iter().take(take).cloned().collect();
            let more = pending.len() > take;
            let (body, last) = self.render(&batch, more);
            let outcome = self.deliver(&body).await;
            match outcome {
                Outcome::Keep => {
                    self.previous = last;
                    pending.drain(..take);
                    let counter = if batch.is_empty() {
                        &self.hub.stats.pings
                    } else {
                        &self.hub.stats.delivered
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    next_ping = Instant::now() + interval;
                }
                Outcome::Unsubscribe => {
                    self.hub.finish(&self.id, PushEnd::Unsubscribed);
                    return;
                }
                Outcome::GaveUp => {
                    self.hub.finish(&self.id, PushEnd::GaveUp);
                    return;
                }
                Outcome::Stopped => return,
            }
        }
    }

    /// Renders a notification for `batch` (a status ping when empty) and returns it
    /// with the watermark of its last event.
    fn render(&self, batch: &[Sequenced], more: bool) -> (String, String) {
        let mut events = String::new();
        let mut last = self.previous.clone();
        if batch.is_empty() {
            last = self.hub.current_watermark();
            events.push_str(&format!(
                "<t:StatusEvent><t:Watermark>{last}</t:Watermark></t:StatusEvent>"
            ));
        }
        for (sequence, event) in batch {
            last = encode_watermark(*sequence);
            events.push_str(&render_event(event, &last));
        }
        let body = notification_envelope(&self.id, &self.previous, more, &events);
        (body, last)
    }

    /// POSTs with Exchange's retry ladder: 30 s (scaled), doubling, until the waits add
    /// up to more than StatusFrequency.
    async fn deliver(&self, body: &str) -> Outcome {
        let budget = self.hub.timing.minutes(self.request.status_frequency);
        let mut delay = self.hub.timing.first_retry();
        let mut waited = Duration::ZERO;
        loop {
            match self.post(body).await {
                Some(SubscriptionStatus::Ok) => return Outcome::Keep,
                Some(SubscriptionStatus::Unsubscribe) => return Outcome::Unsubscribe,
                None => {
                    self.hub.stats.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            if waited + delay > budget {
                return Outcome::GaveUp;
            }
            tokio::select! {
                () = self.stop.cancelled() => return Outcome::Stopped,
                () = tokio::time::sleep(delay) => {}
            }
            waited += delay;
            delay *= 2;
        }
    }

    async fn post(&self, body: &str) -> Option<SubscriptionStatus> {
        let response = tokio::select! {
            () = self.stop.cancelled() => return None,
            response = self
                .hub
                .client
                .post(&self.request.url)
                .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .body(body.to_owned())
                .send() => response.ok()?,
        };
        if !response.status().is_success() {
            return None;
        }
        parse_reply(&response.text().await.ok()?)
    }
}

/// Answers a Subscribe with a PushSubscriptionRequest: validates it, registers the
/// subscription with the hub and answers its SubscriptionId and Watermark.
pub fn subscribe(state: &Arc<SimState>, context: &RequestContext, operation: &Element) -> Response {
    let request = match parse_request(operation) {
        Ok(request) => request,
        Err(err) => {
            return subscribe_response(&MessageOutcome::error(err.code(), err.message()), None)
        }
    };
    let explicit = operation
        .child(Ns::Messages, "PushSubscriptionRequest")
        .and_then(|request| request.child(Ns::Types, "FolderIds"))
        .and_then(|folders| folders.child(Ns::Types, "DistinguishedFolderId"))
        .and_then(|folder| folder.child(Ns::Types, "Mailbox"))
        .and_then(|mailbox| mailbox.child(Ns::Types, "EmailAddress"))
        .and_then(|address| state.model().resolve(&address.text));
    let Some(mailbox) = explicit.or_else(|| context.mailbox.clone()) else {
        return subscribe_response(
            &MessageOutcome::error(
                "ErrorMissingEmailAddress",
                "When making a request as an account that does not have a mailbox, you must specify the mailbox primary SMTP address for any distinguished folder Ids.",
            ),
            None,
        );
    };
    let mut raw = b"PUSH".to_vec();
    raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let id = SubscriptionId(base64::engine::general_purpose::STANDARD.encode(raw));
    match state.push.start(id.clone(), mailbox, request) {
        Ok(watermark) => {
            subscribe_response(&MessageOutcome::Success, Some((id.as_str(), &watermark)))
        }
        Err(err) => subscribe_response(&MessageOutcome::error(err.code(), err.message()), None),
    }
}

/// Unsubscribe cannot end a push subscription (Exchange answers
/// ErrorInvalidPullSubscriptionId; the callback must answer `Unsubscribe` instead):
/// returns that answer when the request names one.
pub fn unsubscribe_refusal(state: &SimState, request: &SoapRequest) -> Option<Response> {
    let id = request.operation.child(Ns::Messages, "SubscriptionId")?;
    if !state.push.is_active(&SubscriptionId(id.text.clone())) {
        return None;
    }
    let mut writer = XmlWriter::envelope(false);
    writer.open_response("UnsubscribeResponse");
    writer.open_m("ResponseMessages", &[]);
    writer.open_message(
        "UnsubscribeResponseMessage",
        &MessageOutcome::error(
            "ErrorInvalidPullSubscriptionId",
            "The subscription id is not a pull or streaming subscription.",
        ),
    );
    Some(soap::xml_response(writer.finish()))
}

/// Registers the push variant of Subscribe (`Subscribe/PushSubscriptionRequest`).
pub fn register(operations: &mut BTreeMap<&'static str, Operation>) {
    operations.insert(
        "Subscribe/PushSubscriptionRequest",
        Arc::new(|state, context, request| {
            Box::pin(async move { subscribe(&state, &context, &request.operation) })
        }),
    );
}

fn subscribe_response(outcome: &MessageOutcome, created: Option<(&str, &str)>) -> Response {
    let mut writer = XmlWriter::envelope(false);
    writer.open_response("SubscribeResponse");
    writer.open_m("ResponseMessages", &[]);
    writer.open_message("SubscribeResponseMessage", outcome);
    if let Some((id, watermark)) = created {
        writer.text_m("SubscriptionId", id);
        writer.text_m("Watermark", watermark);
    }
    soap::xml_response(writer.finish())
}

/// What a callback answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// Keep sending.
    Ok,
    /// End the subscription.
    Unsubscribe,
}

/// Reads a SendNotificationResult reply; `None` when it is not one.
pub fn parse_reply(body: &str) -> Option<SubscriptionStatus> {
    let mut reader = Reader::from_str(body);
    let mut inside = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => inside = start.local_name().as_ref() == b"SubscriptionStatus",
            Event::Text(text) if inside => {
                return match text.unescape().ok()?.trim() {
                    "OK" => Some(SubscriptionStatus::Ok),
                    "Unsubscribe" => Some(SubscriptionStatus::Unsubscribe),
                    _ => None,
                };
            }
            Event::End(_) => inside = false,
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// A SendNotification envelope for one subscription.
pub fn notification_envelope(
    id: &SubscriptionId,
    previous: &str,
    more: bool,
    events: &str,
) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap11:Envelope xmlns:soap11=\"http://schemas.xmlsoap.org/soap/envelope/\">\
         <soap11:Header><t:RequestServerVersion xmlns:t=\"{NS_TYPES}\" Version=\"Exchange2010_SP2\"/></soap11:Header>\
         <soap11:Body><m:SendNotification xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:ResponseMessages>\
         <m:SendNotificationResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>\
         <m:Notification><t:SubscriptionId>{id}</t:SubscriptionId><t:PreviousWatermark>{previous}</t:PreviousWatermark>\
         <t:MoreEvents>{more}</t:MoreEvents>{events}</m:Notification></m:SendNotificationResponseMessage>\
         </m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>",
        id = escape(id.as_str()),
        previous = escape(previous),
    )
}

/// Renders one event with its watermark.
pub fn render_event(event: &PushEvent, watermark: &str) -> String {
    let element = event.kind.element();
    let id_element = if event.is_folder {
        "FolderId"
    } else {
        "ItemId"
    };
    let change_key = if event.change_key.is_empty() {
        String::new()
    } else {
        format!(" ChangeKey=\"{}\"", escape(&event.change_key))
    };
    let mut xml = format!(
        "<t:{element}><t:Watermark>{watermark}</t:Watermark><t:TimeStamp>{}</t:TimeStamp>\
         <t:{id_element} Id=\"{}\"{change_key}/><t:ParentFolderId Id=\"{}\"/>",
        event.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
        escape(&event.id),
        escape(&event.parent_folder_id),
    );
    if let Some((old_id, old_parent)) = &event.old {
        let old_element = if event.is_folder {
            "OldFolderId"
        } else {
            "OldItemId"
        };
        xml.push_str(&format!(
            "<t:{old_element} Id=\"{}\"/><t:OldParentFolderId Id=\"{}\"/>",
            escape(old_id),
            escape(old_parent)
        ));
    }
    if let Some(count) = event.unread_count {
        xml.push_str(&format!("<t:UnreadCount>{count}</t:UnreadCount>"));
    }
    xml.push_str(&format!("</t:{element}>"));
    xml
}

/// The reply a callback sends (used by tests and by demo receivers).
pub fn reply_body(status: SubscriptionStatus) -> String {
    let status = match status {
        SubscriptionStatus::Ok => "OK",
        SubscriptionStatus::Unsubscribe => "Unsubscribe",
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{NS_MESSAGES}\">\
         <s:Body><m:SendNotificationResult><m:SubscriptionStatus>{status}</m:SubscriptionStatus></m:SendNotificationResult></s:Body></s:Envelope>"
    )
}

fn encode_watermark(sequence: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{WATERMARK_PREFIX}{sequence:016x}"))
}

fn decode_watermark(watermark: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(watermark.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    u64::from_str_radix(text.strip_prefix(WATERMARK_PREFIX)?, 16).ok()
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::extract::State;
    use axum::routing::post;

    fn subscribe_body(url: &str, frequency: &str, watermark: Option<&str>) -> Element {
        let watermark = watermark
            .map(|mark| format!("<t:Watermark>{mark}</t:Watermark>"))
            .unwrap_or_default();
        let xml = format!(
            "<m:Subscribe xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:PushSubscriptionRequest>\
             <t:FolderIds><t:DistinguishedFolderId Id=\"calendar\"/></t:FolderIds>\
             <t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes>{watermark}\
             <t:StatusFrequency>{frequency}</t:StatusFrequency><t:URL>{url}</t:URL>\
             </m:PushSubscriptionRequest></m:Subscribe>"
        );
        crate::sim::soap::parse_tree(xml.as_bytes()).expect("well-formed test request")
    }

    fn event(id: &str) -> PushEvent {
        PushEvent {
            kind: PushEventKind::Created,
            timestamp: Utc::now(),
            is_folder: false,
            id: id.to_owned(),
            change_key: "ck".to_owned(),
            parent_folder_id: "calendar".to_owned(),
            old: None,
            unread_count: None,
        }
    }

    #[test]
    fn request_validation_checks_url_frequency_and_watermark() {
        let good = parse_request(&subscribe_body("https://sync.example/push", "5", None));
        let issued = encode_watermark(7);

        assert_eq!(good.map(|request| request.status_frequency), Ok(5));
        assert_eq!(
            parse_request(&subscribe_body("ftp://sync.example/push", "5", None)),
            Err(PushError::InvalidUrl)
        );
        assert_eq!(
            parse_request(&subscribe_body("https://sync.example/push", "1441", None)),
            Err(PushError::InvalidStatusFrequency)
        );
        assert_eq!(
            parse_request(&subscribe_body(
                "https://x.example/p",
                "5",
                Some("bm9wZQ==")
            )),
            Err(PushError::InvalidWatermark)
        );
        assert!(parse_request(&subscribe_body("https://x.example/p", "5", Some(&issued))).is_ok());
    }

    #[test]
    fn reply_parser_reads_both_statuses() {
        assert_eq!(
            parse_reply(&reply_body(SubscriptionStatus::Ok)),
            Some(SubscriptionStatus::Ok)
        );
        assert_eq!(
            parse_reply(&reply_body(SubscriptionStatus::Unsubscribe)),
            Some(SubscriptionStatus::Unsubscribe)
        );
        assert_eq!(parse_reply("<nonsense/>"), None);
    }

    /// A callback that records bodies and answers with a scripted status code.
    #[derive(Clone, Default)]
    struct Receiver {
        bodies: Arc<Mutex<Vec<String>>>,
        status: Arc<Mutex<u16>>,
        unsubscribe_after: Arc<Mutex<Option<usize>>>,
    }

    async fn receive(
        State(receiver): State<Receiver>,
        body: String,
    ) -> (axum::http::StatusCode, String) {
        let count = {
            let mut bodies = lock(&receiver.bodies);
            bodies.push(body);
            bodies.len()
        };
        let status = *lock(&receiver.status);
        let unsubscribe = lock(&receiver.unsubscribe_after).is_some_and(|after| count >= after);
        let reply = if unsubscribe {
            SubscriptionStatus::Unsubscribe
        } else {
            SubscriptionStatus::Ok
        };
        (
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
            reply_body(reply),
        )
    }

    async fn spawn_receiver(receiver: Receiver) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .route("/push", post(receive))
            .with_state(receiver);
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/push")
    }

    fn hub(minute: Duration) -> Arc<PushHub> {
        Arc::new(PushHub::new(
            PushTiming { minute },
            CancellationToken::new(),
        ))
    }

    async fn wait_for(condition: impl Fn() -> bool) {
        for _ in 0..400 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn events_are_chained_by_watermark_and_unsubscribe_ends_the_subscription() {
        let receiver = Receiver::default();
        *lock(&receiver.status) = 200;
        *lock(&receiver.unsubscribe_after) = Some(2);
        let url = spawn_receiver(receiver.clone()).await;
        let hub = hub(Duration::from_secs(60));
        let mailbox = MailboxAddress::new("room-1@sim.example");
        let id = SubscriptionId::from("push-1");
        let request = PushRequest {
            url,
            status_frequency: 1,
            watermark: None,
        };

        let first = hub
            .start(id.clone(), mailbox.clone(), request)
            .expect("subscription starts");
        hub.publish(&mailbox, &[event("item-1")]);
        wait_for(|| !lock(&receiver.bodies).is_empty()).await;
        hub.publish(&mailbox, &[event("item-2")]);
        wait_for(|| !hub.is_active(&id)).await;

        let bodies = lock(&receiver.bodies).clone();
        assert_eq!(bodies.len(), 2);
        assert!(bodies[0].contains(&format!(
            "<t:PreviousWatermark>{first}</t:PreviousWatermark>"
        )));
        let watermark_of_first = bodies[0]
            .split("<t:Watermark>")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap_or_default()
            .to_owned();
        assert!(bodies[1].contains(&format!(
            "<t:PreviousWatermark>{watermark_of_first}</t:PreviousWatermark>"
        )));
        assert_eq!(hub.stats().subscriptions_unsubscribed, 1);
        assert!(!hub.is_active(&id));
    }

    #[tokio::test]
    async fn failing_callback_is_retried_then_dropped_after_status_frequency() {
        let receiver = Receiver::default();
        *lock(&receiver.status) = 500;
        let url = spawn_receiver(receiver.clone()).await;
        let minute = Duration::from_millis(200);
        let hub = hub(minute);
        let request = PushRequest {
            url,
            status_frequency: 1,
            watermark: None,
        };
        let started = std::time::Instant::now();

        let id = SubscriptionId::from("push-2");
        hub.start(
            id.clone(),
            MailboxAddress::new("room-1@sim.example"),
            request,
        )
        .expect("subscription starts");
        wait_for(|| !hub.is_active(&id)).await;

        // First ping after one minute, a retry after half a minute, then the next wait
        // (a whole minute) would exceed StatusFrequency: two attempts in all.
        assert_eq!(lock(&receiver.bodies).len(), 2);
        assert!(lock(&receiver.bodies)[0].contains("<t:StatusEvent>"));
        assert!(started.elapsed() >= minute + minute / 2);
        assert_eq!(hub.stats().subscriptions_dropped, 1);
    }

    #[tokio::test]
    async fn a_subscription_resumes_after_a_watermark_and_rejects_unknown_ones() {
        let receiver = Receiver::default();
        *lock(&receiver.status) = 200;
        let url = spawn_receiver(receiver.clone()).await;
        let hub = hub(Duration::from_secs(60));
        let mailbox = MailboxAddress::new("room-1@sim.example");
        let request = |watermark: Option<String>| PushRequest {
            url: url.clone(),
            status_frequency: 30,
            watermark,
        };
        hub.start(SubscriptionId::from("old"), mailbox.clone(), request(None))
            .expect("first subscription");
        hub.publish(&mailbox, &[event("item-1")]);
        wait_for(|| !lock(&receiver.bodies).is_empty()).await;
        let after_first = lock(&receiver.bodies)[0]
            .split("<t:Watermark>")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap_or_default()
            .to_owned();
        hub.remove(&SubscriptionId::from("old"));
        hub.publish(&mailbox, &[event("item-2")]);

        let resumed = hub.start(
            SubscriptionId::from("new"),
            mailbox.clone(),
            request(Some(after_first.clone())),
        );
        wait_for(|| lock(&receiver.bodies).len() >= 2).await;
        let never_issued = hub.start(
            SubscriptionId::from("bad"),
            mailbox,
            request(Some(encode_watermark(1_000_000))),
        );

        assert_eq!(resumed, Ok(after_first.clone()));
        let replayed = lock(&receiver.bodies)[1].clone();
        assert!(
            replayed.contains("item-2") && !replayed.contains("item-1"),
            "{replayed}"
        );
        assert!(replayed.contains(&format!("<t:PreviousWatermark>{after_first}<")));
        assert_eq!(never_issued, Err(PushError::InvalidWatermark));
    }

    #[tokio::test]
    async fn more_than_fifty_events_are_split_with_more_events_set() {
        let receiver = Receiver::default();
        *lock(&receiver.status) = 200;
        let url = spawn_receiver(receiver.clone()).await;
        let hub = hub(Duration::from_secs(60));
        let mailbox = MailboxAddress::new("room-1@sim.example");
        let request = PushRequest {
            url,
            status_frequency: 30,
            watermark: None,
        };
        hub.start(SubscriptionId::from("many"), mailbox.clone(), request)
            .expect("subscription starts");
        let events: Vec<PushEvent> = (0..60)
            .map(|index| event(&format!("item-{index}")))
            .collect();

        hub.publish(&mailbox, &events);
        wait_for(|| lock(&receiver.bodies).len() >= 2).await;

        let bodies = lock(&receiver.bodies).clone();
        assert_eq!(bodies[0].matches("<t:CreatedEvent>").count(), 50);
        assert!(bodies[0].contains("<t:MoreEvents>true</t:MoreEvents>"));
        assert_eq!(bodies[1].matches("<t:CreatedEvent>").count(), 10);
        assert!(bodies[1].contains("<t:MoreEvents>false</t:MoreEvents>"));
    }
}
