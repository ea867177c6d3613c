//! Fault injection: the misbehaviours of a real Exchange, switched on at will.
//!
//! This module owns the set of active faults and answers the questions the rest of
//! the simulator asks on its hot paths: "should this request fail, wait, or be cut
//! short?", "should open streams drop or stall?", "does this mailbox owe a
//! ErrorMissedNotificationEvents?", "is this mailbox moving?". Faults arrive as JSON
//! on `POST /_sim/faults` (or [`Faults::inject`]) and all go away on
//! `DELETE /_sim/faults` ([`Faults::heal`]). One-shot faults that act on other parts
//! of the simulator (dropping every subscription) are carried out by the caller, which
//! owns those parts; this module only records them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::domain::MailboxAddress;
use crate::sim::limits::{Limits, RouteHeaders};
use crate::sim::soap;
use crate::sim::{Layer, RequestContext, ResponseLayer, SimControl, SimState};
use crate::sync::lock;

/// The control path of faults.
pub const FAULTS_PATH: &str = "/_sim/faults";

/// The message text of ErrorServerBusy.
pub const SERVER_BUSY_TEXT: &str =
    "The server cannot service this request right now. Try again later.";

/// How long a mailbox move keeps answering ErrorMailboxMoveInProgress by default.
pub const DEFAULT_MOVE_DURATION: Duration = Duration::from_secs(10);

/// The message text of a subscription killed by a mailbox move (as Exchange Online
/// words it).
pub const MOVE_STARTED_TEXT: &str =
    "The subscription is no longer valid. Event type = MailboxMoveStarted.";

/// One fault, as posted to `/_sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Cut every open GetStreamingEvents connection (no Closed message).
    DropStreams,
    /// Keep open streams (and new ones) silent: no events, no heartbeats.
    StallStreams,
    /// An Exchange restart: every subscription is gone.
    ExpireSubscriptions,
    /// ErrorMissedNotificationEvents on the next stream message of these mailboxes
    /// (or of `count` random mailboxes when none are named).
    MissedEvents {
        /// Mailboxes to hit.
        #[serde(default)]
        mailboxes: Vec<MailboxAddress>,
        /// How many random mailboxes to hit when `mailboxes` is empty.
        #[serde(default)]
        count: Option<usize>,
    },
    /// ErrorServerBusy with BackOffMilliseconds for every request, for a while.
    ServerBusy {
        /// The back-off hint.
        backoff_ms: u64,
        /// How long the fault lasts.
        duration_s: u64,
    },
    /// Answer a share of requests with a bare HTTP status before any SOAP.
    HttpStatus {
        /// The status code (e.g. 503).
        status: u16,
        /// Share of requests hit, 0..=1.
        #[serde(default = "always")]
        rate: f64,
        /// Operations hit; empty means all.
        #[serde(default)]
        operations: Vec<String>,
    },
    /// Delay responses.
    Latency {
        /// The delay.
        ms: u64,
        /// Operations delayed; empty means all.
        #[serde(default)]
        operations: Vec<String>,
    },
    /// Cut a share of (non-streaming) response bodies in the middle.
    TruncateResponses {
        /// Share of responses cut, 0..=1.
        rate: f64,
    },
    /// A stale replica: a share of GetItem answers for singles, masters and
    /// exceptions carry an older version of the item (an earlier LastModifiedTime,
    /// another ChangeKey and subject) than the change log or the master's
    /// ModifiedOccurrences listed.
    StaleReads {
        /// Share of items served stale, 0..=1.
        rate: f64,
    },
    /// A stale replica for exceptions only: a share of GetItem answers for modified
    /// occurrences carry an older version of the exception than its master's
    /// ModifiedOccurrences lists, while singles and masters are current.
    StaleExceptions {
        /// Share of exceptions served stale, 0..=1.
        rate: f64,
    },
    /// A mailbox move: its subscriptions die with ErrorInvalidSubscription
    /// (MailboxMoveStarted), requests get ErrorMailboxMoveInProgress for a while, then
    /// the mailbox has a new back end (new GroupingInformation).
    MailboxMove {
        /// The mailbox that moves.
        email: MailboxAddress,
        /// How long the move lasts (default 10 s).
        #[serde(default)]
        duration_s: Option<u64>,
    },
}

fn always() -> f64 {
    1.0
}

impl Fault {
    /// The fault's kind as it appears in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DropStreams => "drop_streams",
            Self::StallStreams => "stall_streams",
            Self::ExpireSubscriptions => "expire_subscriptions",
            Self::MissedEvents { .. } => "missed_events",
            Self::ServerBusy { .. } => "server_busy",
            Self::HttpStatus { .. } => "http_status",
            Self::Latency { .. } => "latency",
            Self::TruncateResponses { .. } => "truncate_responses",
            Self::StaleReads { .. } => "stale_reads",
            Self::StaleExceptions { .. } => "stale_exceptions",
            Self::MailboxMove { .. } => "mailbox_move",
        }
    }
}

/// What the dispatcher must do with a request before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFault {
    /// Answer HTTP 500 with an ErrorServerBusy SOAP fault carrying this back-off.
    ServerBusy {
        /// The back-off hint.
        backoff: Duration,
    },
    /// Answer this bare HTTP status.
    HttpStatus(u16),
}

/// What open streams should do, as a value streams watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StreamFaults {
    /// Bumped by every `drop_streams`: a stream opened under an older generation ends
    /// abruptly (no Closed message).
    pub drop_generation: u64,
    /// While set, streams send nothing at all (no events, no heartbeats).
    pub stall: bool,
}

/// Where a moving mailbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveState {
    /// Requests for the mailbox fail with ErrorMailboxMoveInProgress.
    InProgress,
    /// The move finished; the mailbox lives on a new back end.
    Done,
}

/// The active faults. Shared by the dispatcher, the streams and the control API.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
    limits: Arc<Limits>,
    /// Streams watch this to react at once to drop/stall; the sender lives here for as
    /// long as the simulator, so receivers never see it closed while it runs.
    streams: watch::Sender<StreamFaults>,
}

#[derive(Debug, Default)]
struct State {
    busy: Option<(Duration, Instant)>,
    http_status: Option<(u16, f64, Vec<String>)>,
    latency: Option<(Duration, Vec<String>)>,
    truncate_rate: f64,
    stale_rate: f64,
    stale_exception_rate: f64,
    moves: HashMap<MailboxAddress, Move>,
    injected: Vec<Fault>,
}

#[derive(Debug, Clone)]
struct Move {
    until: Instant,
    relocated: bool,
}

impl Faults {
    /// An empty fault set over the simulator's limits (mailbox moves relocate there).
    pub fn new(limits: Arc<Limits>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            limits,
            streams: watch::channel(StreamFaults::default()).0,
        }
    }

    /// Records a fault and returns the mailboxes it hits (`missed_events`,
    /// `mailbox_move`). `mailboxes` is the population `missed_events` picks from when
    /// it names none. Effects on subscriptions (expiring them, marking events missed,
    /// killing a moving mailbox's subscriptions) are the caller's to carry out.
    pub fn inject(&self, fault: Fault, mailboxes: &[MailboxAddress]) -> Vec<MailboxAddress> {
        let now = Instant::now();
        let mut hit = Vec::new();
        let mut state = lock(&self.state);
        match &fault {
            Fault::DropStreams => {
                self.streams
                    .send_modify(|streams| streams.drop_generation += 1);
            }
            Fault::StallStreams => {
                self.streams.send_modify(|streams| streams.stall = true);
            }
            Fault::ExpireSubscriptions => {}
            Fault::MissedEvents {
                mailboxes: named,
                count,
            } => {
                if named.is_empty() {
                    let mut rng = rand::thread_rng();
                    let wanted = count.unwrap_or(1).min(mailboxes.len());
                    let picked = rand::seq::index::sample(&mut rng, mailboxes.len(), wanted);
                    hit.extend(picked.into_iter().map(|index| mailboxes[index].clone()));
                } else {
                    hit.extend(named.iter().cloned());
                }
            }
            Fault::ServerBusy {
                backoff_ms,
                duration_s,
            } => {
                state.busy = Some((
                    Duration::from_millis(*backoff_ms),
                    now + Duration::from_secs(*duration_s),
                ));
            }
            Fault::HttpStatus {
                status,
                rate,
                operations,
            } => state.http_status = Some((*status, *rate, operations.clone())),
            Fault::Latency { ms, operations } => {
                state.latency = Some((Duration::from_millis(*ms), operations.clone()));
            }
            Fault::TruncateResponses { rate } => state.truncate_rate = *rate,
            Fault::StaleReads { rate } => state.stale_rate = *rate,
            Fault::StaleExceptions { rate } => state.stale_exception_rate = *rate,
            Fault::MailboxMove { email, duration_s } => {
                let length = duration_s.map_or(DEFAULT_MOVE_DURATION, Duration::from_secs);
                state.moves.insert(
                    email.clone(),
                    Move {
                        until: now + length,
                        relocated: false,
                    },
                );
                hit.push(email.clone());
            }
        }
        state.injected.push(fault);
        hit
    }

    /// Removes every fault. Finished mailbox moves stay where they moved to.
    pub fn heal(&self) {
        *lock(&self.state) = State::default();
        self.streams.send_modify(|streams| streams.stall = false);
    }

    /// The faults injected since the last heal, in order.
    pub fn injected(&self) -> Vec<Fault> {
        lock(&self.state).injected.clone()
    }

    /// Decides whether a request for `operation` fails before it runs.
    pub fn request_fault(&self, operation: &str) -> Option<RequestFault> {
        let mut state = lock(&self.state);
        if let Some((backoff, until)) = state.busy {
            if Instant::now() < until {
                return Some(RequestFault::ServerBusy { backoff });
            }
            state.busy = None;
        }
        let (status, rate, operations) = state.http_status.as_ref()?;
        (applies(operations, operation) && hit(*rate)).then_some(RequestFault::HttpStatus(*status))
    }

    /// The delay to add to a response for `operation`.
    pub fn latency(&self, operation: &str) -> Option<Duration> {
        let state = lock(&self.state);
        let (delay, operations) = state.latency.as_ref()?;
        applies(operations, operation).then_some(*delay)
    }

    /// Cuts `body` in the middle when a truncate fault hits.
    pub fn maybe_truncate(&self, body: String) -> String {
        let rate = lock(&self.state).truncate_rate;
        if rate <= 0.0 || !hit(rate) {
            return body;
        }
        let mut cut = body.len() / 2;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body[..cut].to_owned()
    }

    /// Whether the next GetItem answer for one item (an exception when `exception`)
    /// is served from a stale replica.
    pub fn stale_read(&self, exception: bool) -> bool {
        let state = lock(&self.state);
        let rate = if exception {
            state.stale_rate.max(state.stale_exception_rate)
        } else {
            state.stale_rate
        };
        drop(state);
        rate > 0.0 && hit(rate)
    }

    /// The current stream faults.
    pub fn stream_faults(&self) -> StreamFaults {
        *self.streams.borrow()
    }

    /// A receiver that sees every stream fault change, for open streams to `select!` on.
    pub fn watch_streams(&self) -> watch::Receiver<StreamFaults> {
        self.streams.subscribe()
    }

    /// Where a mailbox's move stands, if it is moving or moved. The first call after
    /// the move ends relocates the mailbox to a new back end.
    pub fn move_state(&self, mailbox: &MailboxAddress) -> Option<MoveState> {
        let mut state = lock(&self.state);
        let moving = state.moves.get_mut(mailbox)?;
        if Instant::now() < moving.until {
            return Some(MoveState::InProgress);
        }
        if !moving.relocated {
            moving.relocated = true;
            self.limits.relocate(mailbox);
        }
        Some(MoveState::Done)
    }
}

/// The SOAP code and text for a request about a mailbox whose move is in progress.
pub const MOVE_IN_PROGRESS: (&str, &str) = (
    "ErrorMailboxMoveInProgress",
    "The mailbox is being moved. Try again later.",
);

/// The request layer that applies request faults: ErrorServerBusy, bare HTTP
/// statuses, ErrorMailboxMoveInProgress for a moving mailbox, and latency.
pub fn layer() -> Layer {
    Arc::new(|state: Arc<SimState>, context: RequestContext, _request| {
        Box::pin(async move {
            match state.faults.request_fault(&context.operation) {
                Some(RequestFault::ServerBusy { backoff }) => {
                    return Err(soap::fault_response(
                        "ErrorServerBusy",
                        SERVER_BUSY_TEXT,
                        Some(millis(backoff)),
                    ));
                }
                Some(RequestFault::HttpStatus(status)) => {
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return Err(status.into_response());
                }
                None => {}
            }
            let anchor = RouteHeaders::from_headers(&context.headers).anchor;
            let moving = context
                .mailbox
                .iter()
                .chain(anchor.iter())
                .any(|mailbox| state.faults.move_state(mailbox) == Some(MoveState::InProgress));
            if moving {
                let (code, text) = MOVE_IN_PROGRESS;
                return Err(soap::fault_response(code, text, None));
            }
            if let Some(delay) = state.faults.latency(&context.operation) {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = state.shutdown.cancelled() => {}
                }
            }
            Ok(context)
        })
    })
}

/// The response layer that cuts finished (non-streaming) response bodies in the
/// middle when a `truncate_responses` fault hits.
pub fn response_layer() -> ResponseLayer {
    Arc::new(
        |state: Arc<SimState>, operation: String, response: Response| {
            Box::pin(async move { truncate_response(&state, &operation, response).await })
        },
    )
}

async fn truncate_response(state: &SimState, operation: &str, response: Response) -> Response {
    if operation == "GetStreamingEvents" || lock(&state.faults.state).truncate_rate <= 0.0 {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let cut = state.faults.maybe_truncate(text);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(cut))
}

/// Records a fault and carries out its effects on subscriptions: an Exchange restart
/// removes every subscription, missed events mark the mailboxes' subscriptions, and a
/// mailbox move kills the mailbox's subscriptions with MailboxMoveStarted.
pub fn apply(state: &SimState, fault: Fault) {
    let population: Vec<MailboxAddress> = match &fault {
        Fault::MissedEvents { .. } => state
            .model()
            .mailboxes()
            .iter()
            .map(|mailbox| MailboxAddress::new(&mailbox.email))
            .collect(),
        _ => Vec::new(),
    };
    let kind = fault.kind();
    let hit = state.faults.inject(fault, &population);
    match kind {
        "expire_subscriptions" => {
            for subscription in state.subscriptions.all() {
                state.subscriptions.remove(&subscription.id);
            }
            state.push.remove_all();
        }
        "missed_events" => {
            for mailbox in &hit {
                for subscription in state.subscriptions.of_mailbox(mailbox) {
                    subscription.mark_missed();
                }
            }
        }
        "mailbox_move" => {
            for mailbox in &hit {
                for subscription in state.subscriptions.of_mailbox(mailbox) {
                    subscription.kill("ErrorInvalidSubscription", MOVE_STARTED_TEXT);
                }
                for id in state.push.of_mailbox(mailbox) {
                    state.push.remove(&id);
                }
            }
        }
        _ => {}
    }
    tracing::info!(kind, mailboxes = hit.len(), "Simulator fault injected");
}

/// The fault control routes: `POST /_sim/faults`, `DELETE /_sim/faults`, `GET /_sim/faults`.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route(
        FAULTS_PATH,
        get(list_faults).post(inject_fault).delete(heal_faults),
    )
}

impl SimControl {
    /// Injects a fault (same as `POST /_sim/faults`).
    pub fn inject_fault(&self, fault: Fault) {
        apply(&self.state, fault);
    }

    /// Removes every fault (same as `DELETE /_sim/faults`).
    pub fn heal(&self) {
        self.state.faults.heal();
    }

    /// The faults injected since the last heal.
    pub fn faults(&self) -> Vec<Fault> {
        self.state.faults.injected()
    }
}

async fn inject_fault(
    extract::State(state): extract::State<Arc<SimState>>,
    body: Result<Json<Fault>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(fault)) => {
            apply(&state, fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": format!("invalid fault: {}", err.body_text()) })),
        )
            .into_response(),
    }
}

async fn heal_faults(extract::State(state): extract::State<Arc<SimState>>) -> StatusCode {
    state.faults.heal();
    StatusCode::NO_CONTENT
}

async fn list_faults(extract::State(state): extract::State<Arc<SimState>>) -> Json<Vec<Fault>> {
    Json(state.faults.injected())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Applies stream faults to an open stream before it writes: returns `true` when the
/// stream must be dropped (a `drop_streams` newer than `generation`), and while streams
/// are stalled waits, silently, until the stall is healed, the stream is dropped or the
/// simulator shuts down.
pub async fn hold_stream(
    faults: &mut watch::Receiver<StreamFaults>,
    generation: u64,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    loop {
        let current = *faults.borrow_and_update();
        if current.drop_generation != generation {
            return true;
        }
        if !current.stall || shutdown.is_cancelled() {
            return false;
        }
        tokio::select! {
            changed = faults.changed() => {
                if changed.is_err() {
                    return false;
                }
            }
            () = shutdown.cancelled() => return false,
        }
    }
}

fn applies(operations: &[String], operation: &str) -> bool {
    operations.is_empty() || operations.iter().any(|name| name == operation)
}

fn hit(rate: f64) -> bool {
    rate >= 1.0 || (rate > 0.0 && rand::thread_rng().gen_bool(rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::limits::LimitsConfig;

    fn faults() -> Faults {
        Faults::new(Arc::new(Limits::new(LimitsConfig::default(), 4)))
    }

    fn mailbox(name: &str) -> MailboxAddress {
        MailboxAddress::new(&format!("{name}@sim.example"))
    }

    #[test]
    fn faults_parse_from_the_documented_json() {
        let busy: Fault =
            serde_json::from_str(r#"{"kind":"server_busy","backoff_ms":5000,"duration_s":30}"#)
                .expect("server_busy");
        let status: Fault = serde_json::from_str(
            r#"{"kind":"http_status","status":503,"rate":0.3,"operations":["GetItem"]}"#,
        )
        .expect("http_status");
        let bogus = serde_json::from_str::<Fault>(r#"{"kind":"meteor_strike"}"#);

        assert_eq!(busy.kind(), "server_busy");
        assert_eq!(status.kind(), "http_status");
        assert!(bogus.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn server_busy_lasts_for_its_duration_and_heal_clears_everything() {
        let faults = faults();
        faults.inject(
            Fault::ServerBusy {
                backoff_ms: 5000,
                duration_s: 30,
            },
            &[],
        );
        faults.inject(Fault::StallStreams, &[]);

        let during = faults.request_fault("GetItem");
        tokio::time::advance(Duration::from_secs(31)).await;
        let after = faults.request_fault("GetItem");
        faults.heal();

        assert_eq!(
            during,
            Some(RequestFault::ServerBusy {
                backoff: Duration::from_secs(5)
            })
        );
        assert_eq!(after, None);
        assert!(!faults.stream_faults().stall);
    }

    #[test]
    fn http_status_hits_only_the_named_operations() {
        let faults = faults();
        faults.inject(
            Fault::HttpStatus {
                status: 503,
                rate: 1.0,
                operations: vec!["GetItem".to_owned()],
            },
            &[],
        );

        assert_eq!(
            faults.request_fault("GetItem"),
            Some(RequestFault::HttpStatus(503))
        );
        assert_eq!(faults.request_fault("SyncFolderItems"), None);
    }

    #[test]
    fn missed_events_pick_random_mailboxes() {
        let faults = faults();
        let population = [mailbox("a"), mailbox("b"), mailbox("c")];

        let hit = faults.inject(
            Fault::MissedEvents {
                mailboxes: Vec::new(),
                count: Some(2),
            },
            &population,
        );

        assert_eq!(hit.len(), 2);
        assert!(hit.iter().all(|mailbox| population.contains(mailbox)));
    }

    #[tokio::test(start_paused = true)]
    async fn mailbox_move_is_in_progress_for_a_while_then_relocates() {
        let limits = Arc::new(Limits::new(LimitsConfig::default(), 4));
        let faults = Faults::new(Arc::clone(&limits));
        let room = mailbox("room-1");
        let before = limits.home(&room);
        let hit = faults.inject(
            Fault::MailboxMove {
                email: room.clone(),
                duration_s: Some(5),
            },
            &[],
        );

        let during = faults.move_state(&room);
        tokio::time::advance(Duration::from_secs(6)).await;
        let after = faults.move_state(&room);

        assert_eq!(hit, vec![room.clone()]);
        assert_eq!(during, Some(MoveState::InProgress));
        assert_eq!(after, Some(MoveState::Done));
        assert_ne!(limits.home(&room), before);
    }

    #[test]
    fn truncation_cuts_the_body_in_half() {
        let faults = faults();
        faults.inject(Fault::TruncateResponses { rate: 1.0 }, &[]);

        assert_eq!(faults.maybe_truncate("abcdefgh".to_owned()), "abcd");
    }
}
