//! The bundled Exchange simulator: a fake EWS server with a JSON control API.
//!
//! Tests, the `demo` and `simulate` subcommands and the benchmarks run the sync service
//! against it. [`Simulator::start`] binds a listener and serves:
//! - `POST /EWS/Exchange.asmx`: SOAP requests, parsed by [`soap`], passed through the
//!   request [`Layers`] (auth, limits, faults) and dispatched by `ops` to the
//!   operations, which read and change the calendar [`model`];
//! - `/_sim/...`: the control API ([`control`]) with the same operations as
//!   [`SimControl`].
//!
//! Every change of the model produces notification events, which [`stream`] queues per
//! subscription and writes into open GetStreamingEvents responses. The simulator never
//! touches PostgreSQL or the sync service's modules other than `domain` and
//! `recurrence`.

pub mod auth;
pub mod autodiscover;
pub mod control;
pub mod directory;
pub mod faults;
pub mod limits;
pub mod model;
pub mod ops;
pub mod push;
pub mod soap;
pub mod stream;
pub mod workload;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::MailboxAddress;

pub use model::{
    AppointmentPatch, AppointmentRef, DeleteMode, MailboxInfo, MailboxKind, NewAppointment,
    NewMailbox, TruthEntry,
};
pub use workload::{Workload, WorkloadMix, WorkloadReport};

/// The path of the EWS endpoint.
pub const EWS_PATH: &str = "/EWS/Exchange.asmx";

/// How the simulator behaves. Tests shrink the intervals; everything else has
/// Exchange-like defaults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Room mailboxes seeded at start (`room-001@{domain}`...).
    pub rooms: usize,
    /// User mailboxes seeded at start (`user-001@{domain}`, alias `u001@{domain}`).
    pub users: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Mail domain of the seeded mailboxes.
    pub domain: String,
    /// Idle time after which an open stream gets a heartbeat envelope.
    pub heartbeat_interval: Duration,
    /// The length of one `ConnectionTimeout` minute (60 s; tests use about 1 s).
    pub minute: Duration,
    /// Simulated mailbox back ends (for affinity).
    pub backends: usize,
    /// Share of workload deletes that are soft (MovedEvent) rather than hard.
    pub soft_delete_ratio: f64,
    /// Share of updates that emit a duplicate ModifiedEvent.
    pub duplicate_event_ratio: f64,
    /// Events kept per subscription while no stream reads them; beyond this the
    /// subscription gets ErrorMissedNotificationEvents.
    pub max_queued_events: usize,
    /// Authentication mode, accounts and token lifetime.
    pub auth: auth::AuthConfig,
    /// Per-account limits (connections, subscriptions, request budget).
    pub limits: limits::LimitsConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rooms: 10,
            users: 10,
            seed: 1,
            domain: "contoso.example".into(),
            heartbeat_interval: Duration::from_secs(40),
            minute: Duration::from_secs(60),
            backends: 4,
            soft_delete_ratio: 0.8,
            duplicate_event_ratio: 0.1,
            max_queued_events: 10_000,
            auth: auth::AuthConfig::default(),
            limits: limits::LimitsConfig::default(),
        }
    }
}

/// Errors of the control operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A value is invalid (HTTP 400).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Something named does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// Something exists already (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
}

/// What one SOAP request carries through the layers to the operation.
///
/// The dispatcher fills `headers`, `operation`, `server_version`, `impersonation` and
/// `mailbox`; layers may change `principal`, `mailbox` and `backend`, and add
/// `response_headers` (e.g. `Set-Cookie`), which are copied onto the response.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The HTTP request headers.
    pub headers: HeaderMap,
    /// Local name of the operation element, e.g. `GetItem`.
    pub operation: String,
    /// `RequestServerVersion/@Version`.
    pub server_version: Option<String>,
    /// The raw `ExchangeImpersonation` target, as sent.
    pub impersonation: Option<String>,
    /// The authenticated account, when an auth layer sets it.
    pub principal: Option<String>,
    /// The mailbox the request acts on (impersonated, resolved to its primary address).
    pub mailbox: Option<MailboxAddress>,
    /// The back end the request is routed to, when a limits layer sets it.
    pub backend: Option<usize>,
    /// Headers to add to the response.
    pub response_headers: HeaderMap,
    /// Held until the response body ends (a stream's connection slot); dropping it
    /// frees what it holds.
    pub body_guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The future a [`Layer`] returns: the (possibly changed) context, or a finished response.
pub type LayerFuture = Pin<Box<dyn Future<Output = Result<RequestContext, Response>> + Send>>;

/// A step every SOAP request passes before dispatch (auth, limits, faults).
///
/// It gets the shared state, the context and the parsed request; returning
/// `Err(response)` answers the request with that response and skips the operation.
pub type Layer =
    Arc<dyn Fn(Arc<SimState>, RequestContext, Arc<soap::SoapRequest>) -> LayerFuture + Send + Sync>;

/// The future a [`ResponseLayer`] returns.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A step every SOAP response passes after dispatch (latency, truncation), in order.
///
/// It gets the shared state, the operation's local name and the response.
pub type ResponseLayer =
    Arc<dyn Fn(Arc<SimState>, String, Response) -> ResponseFuture + Send + Sync>;

/// The future an [`Operation`] returns.
pub type OperationFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// An extra SOAP operation handler (registered by name in [`Layers::operations`]).
pub type Operation = Arc<
    dyn Fn(Arc<SimState>, RequestContext, Arc<soap::SoapRequest>) -> OperationFuture + Send + Sync,
>;

/// The hook surface for auth, limits, faults and extra operations.
///
/// `build_layers` fills it once at start; the dispatcher runs `layers` in order after
/// parsing a request (so unparseable XML gets its fault first), then dispatches: first
/// an entry of `operations` keyed "{Operation}/{first child}" (for example
/// "Subscribe/PushSubscriptionRequest"), then the built-in operations, then an entry
/// keyed by the operation name alone (for example "ResolveNames").
#[derive(Clone, Default)]
pub struct Layers {
    /// Steps run in order before dispatch.
    pub layers: Vec<Layer>,
    /// Steps run in order on every response of a parsed request (faults included).
    pub responses: Vec<ResponseLayer>,
    /// Extra operations by local name (e.g. `ResolveNames`).
    pub operations: BTreeMap<&'static str, Operation>,
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layers")
            .field("layers", &self.layers.len())
            .field("responses", &self.responses.len())
            .field("operations", &self.operations.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds the request layers from the configuration. Auth, limits and faults register here.
fn build_layers(_config: &SimConfig) -> Layers {
    let mut operations = BTreeMap::new();
    directory::register(&mut operations);
    push::register(&mut operations);
    Layers {
        layers: vec![auth::layer(), faults::layer(), limits::layer()],
        responses: vec![faults::response_layer()],
        operations,
    }
}

/// Routes beyond EWS and the control API (autodiscover, token endpoint, faults).
fn extension_routes() -> Router<Arc<SimState>> {
    Router::new()
        .merge(auth::routes())
        .merge(autodiscover::routes())
        .merge(directory::routes())
        .merge(faults::routes())
}

/// Request and event counters.
#[derive(Debug, Default)]
pub struct StatsCounters {
    /// Events put on subscription queues.
    pub events_published: AtomicU64,
    /// Events written into streams.
    pub events_streamed: AtomicU64,
    /// Envelopes written into streams (events, heartbeats, final).
    pub stream_envelopes: AtomicU64,
    /// Subscriptions named in ErrorMissedNotificationEvents written into streams.
    pub missed_reported: AtomicU64,
    /// SOAP requests by "operation/outcome".
    pub requests: Mutex<BTreeMap<String, u64>>,
    /// GetItem answers served from a stale replica.
    pub stale_reads_served: AtomicU64,
    /// Of those, exceptions.
    pub stale_exceptions_served: AtomicU64,
}

impl StatsCounters {
    /// Counts one item served from a stale replica.
    pub fn count_stale_read(&self, exception: bool) {
        self.stale_reads_served.fetch_add(1, Ordering::Relaxed);
        if exception {
            self.stale_exceptions_served.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one request of an operation with an outcome (`success`, `error`, `fault`).
    pub fn count_request(&self, operation: &str, outcome: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests
            .entry(format!("{operation}/{outcome}"))
            .or_insert(0) += 1;
    }
}

/// A snapshot of the simulator's counters (`GET /_sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Mailboxes.
    pub mailboxes: usize,
    /// Calendar items (singles and masters).
    pub items: usize,
    /// Changes recorded in the change logs.
    pub changes: u64,
    /// Live subscriptions.
    pub subscriptions: usize,
    /// Open GetStreamingEvents streams.
    pub open_streams: usize,
    /// The most GetStreamingEvents streams each authenticated account (`anonymous`
    /// without authentication) held open at once.
    #[serde(default)]
    pub peak_streams_by_account: BTreeMap<String, usize>,
    /// GetStreamingEvents requests refused with ErrorExceededConnectionCount.
    #[serde(default)]
    pub connection_refusals: u64,
    /// Events put on subscription queues.
    pub events_published: u64,
    /// Events written into streams.
    pub events_streamed: u64,
    /// Envelopes written into streams.
    pub stream_envelopes: u64,
    /// Subscriptions named in ErrorMissedNotificationEvents written into streams.
    pub missed_reported: u64,
    /// SOAP requests by "operation/outcome".
    pub requests: BTreeMap<String, u64>,
    /// GetItem answers served from a stale replica (the stale-read faults).
    #[serde(default)]
    pub stale_reads_served: u64,
    /// Of those, exceptions.
    #[serde(default)]
    pub stale_exceptions_served: u64,
    /// Messages sent with CreateItem.
    pub messages_sent: usize,
    /// Push delivery counters.
    pub push: push::PushStats,
    /// Kinds of the faults injected since the last heal.
    pub faults: Vec<String>,
}

/// State shared by every request handler, stream and the control API.
#[derive(Debug)]
pub struct SimState {
    /// The configuration the simulator started with.
    pub config: SimConfig,
    /// The calendar model; lock briefly, never across an await.
    pub model: Mutex<model::Model>,
    /// Live subscriptions and their event queues.
    pub subscriptions: stream::SubscriptionRegistry,
    /// Counters.
    pub stats: StatsCounters,
    /// Hooks installed at start.
    pub layers: Layers,
    /// Cancelled by [`SimHandle::shutdown`]; streams and background work stop on it.
    pub shutdown: CancellationToken,
    /// Tracks background tasks (workloads run with `wait: false`).
    pub tasks: TaskTracker,
    /// Random decisions during operation (duplicate events, chunk splits), seeded.
    pub rng: Mutex<rand::rngs::SmallRng>,
    /// Authentication and impersonation.
    pub auth: auth::Authenticator,
    /// Back ends, affinity and per-account limits.
    pub limits: Arc<limits::Limits>,
    /// Injected faults.
    pub faults: faults::Faults,
    /// Push subscriptions and their delivery tasks (stopped by `shutdown`).
    pub push: Arc<push::PushHub>,
    /// Mail sent with CreateItem (and the copies kept in Sent Items).
    pub sent: directory::SentLog,
}

impl SimState {
    /// Locks the model (a poisoned lock is taken over: the model has no invariants
    /// a panicking reader could break).
    pub fn model(&self) -> MutexGuard<'_, model::Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A random number in `[0, 1)` from the seeded generator.
    pub fn random_unit(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gen::<f64>()
    }

    /// Hands a batch of events to the mailbox's subscriptions.
    pub fn publish(&self, batch: model::EventBatch) {
        if let Some(mailbox) = &batch.mailbox {
            self.push.publish_sim(mailbox, &batch.events);
            let delivered = self.subscriptions.publish(mailbox, &batch.events);
            self.stats
                .events_published
                .fetch_add(delivered as u64, Ordering::Relaxed);
        }
    }
}

/// The simulator's entry point.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Seeds the mailboxes, binds `config.listen` and serves until [`SimHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// Fails when the listener cannot be bound or the seed mailboxes are invalid.
    pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the simulator to {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let mut model = model::Model::new(config.seed);
        seed_mailboxes(&mut model, &config).context("seeding mailboxes")?;
        let shutdown = CancellationToken::new();
        let limits = Arc::new(limits::Limits::new(
            config.limits.clone(),
            u16::try_from(config.backends).unwrap_or(u16::MAX),
        ));
        let state = Arc::new(SimState {
            auth: auth::Authenticator::new(config.auth.clone()),
            faults: faults::Faults::new(limits.clone()),
            limits,
            push: Arc::new(push::PushHub::new(
                push::PushTiming {
                    minute: config.minute,
                },
                shutdown.child_token(),
            )),
            sent: directory::SentLog::default(),
            layers: build_layers(&config),
            subscriptions: stream::SubscriptionRegistry::new(config.seed),
            rng: Mutex::new(rand::SeedableRng::seed_from_u64(config.seed ^ 0x51AD)),
            config,
            model: Mutex::new(model),
            stats: StatsCounters::default(),
            shutdown,
            tasks: TaskTracker::new(),
        });
        let router = Router::new()
            .merge(ops::routes(state.clone()))
            .merge(control::routes(state.clone()))
            .merge(extension_routes().with_state(state.clone()));
        let token = state.shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        });
        tracing::info!(%addr, "Simulator listening");
        Ok(SimHandle {
            addr,
            state,
            server,
        })
    }
}

fn seed_mailboxes(model: &mut model::Model, config: &SimConfig) -> Result<(), SimError> {
    for number in 1..=config.rooms {
        model.add_mailbox(NewMailbox {
            email: format!("room-{number:03}@{}", config.domain),
            display_name: format!("Room {number:03}"),
            kind: MailboxKind::Room,
            aliases: Vec::new(),
        })?;
    }
    for number in 1..=config.users {
        model.add_mailbox(NewMailbox {
            email: format!("user-{number:03}@{}", config.domain),
            display_name: format!("User {number:03}"),
            kind: MailboxKind::User,
            aliases: vec![format!("u{number:03}@{}", config.domain)],
        })?;
    }
    Ok(())
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    /// The server task; it ends when `state.shutdown` is cancelled and streams close.
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://{addr}/EWS/Exchange.asmx`.
    pub fn ews_url(&self) -> String {
        format!("{}{EWS_PATH}", self.base_url())
    }

    /// The in-process control API.
    pub fn control(&self) -> SimControl {
        SimControl {
            state: self.state.clone(),
        }
    }

    /// Stops serving: open streams end, background workloads stop, the listener closes.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        self.state.tasks.close();
        self.state.tasks.wait().await;
        self.state.push.closed().await;
        if let Err(err) = self.server.await {
            tracing::warn!(error = %err, "Simulator server task failed");
        }
    }
}

/// The in-process control API: the same operations as the JSON API under `/_sim/`.
#[derive(Debug, Clone)]
pub struct SimControl {
    state: Arc<SimState>,
}

impl SimControl {
    /// Wraps shared state (used by the HTTP control API).
    pub fn from_state(state: Arc<SimState>) -> Self {
        Self { state }
    }

    /// The shared state, for hooks that need more than these operations.
    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// Adds a mailbox.
    ///
    /// # Errors
    ///
    /// [`SimError::Invalid`] for a bad address, [`SimError::Conflict`] for a taken one.
    pub fn add_mailbox(&self, mailbox: NewMailbox) -> Result<(), SimError> {
        self.state.model().add_mailbox(mailbox)
    }

    /// Every mailbox.
    pub fn mailboxes(&self) -> Vec<MailboxInfo> {
        self.state.model().mailboxes()
    }

    /// Creates an appointment in a mailbox.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox, [`SimError::Invalid`] for bad values,
    /// [`SimError::Conflict`] for a UID that exists in that calendar.
    pub fn create_appointment(
        &self,
        mailbox: &str,
        appointment: NewAppointment,
    ) -> Result<AppointmentRef, SimError> {
        let (reference, batch) = self.state.model().create(mailbox, appointment)?;
        self.state.publish(batch);
        Ok(reference)
    }

    /// Changes an appointment, or one occurrence of a series (`patch.occurrence_start`).
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox, UID or occurrence,
    /// [`SimError::Invalid`] for bad values.
    pub fn update_appointment(
        &self,
        mailbox: &str,
        uid: &str,
        patch: AppointmentPatch,
    ) -> Result<AppointmentRef, SimError> {
        let duplicate = self.state.random_unit() < self.state.config.duplicate_event_ratio;
        let (reference, batch) = self.state.model().update(mailbox, uid, patch, duplicate)?;
        self.state.publish(batch);
        Ok(reference)
    }

    /// Deletes an appointment (soft or hard), or one occurrence of a series.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox, UID or occurrence.
    pub fn delete_appointment(
        &self,
        mailbox: &str,
        uid: &str,
        mode: DeleteMode,
        occurrence_start: Option<DateTime<Utc>>,
    ) -> Result<(), SimError> {
        let batch = self
            .state
            .model()
            .delete(mailbox, uid, mode, occurrence_start)?;
        self.state.publish(batch);
        Ok(())
    }

    /// Cancels a meeting.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox or UID.
    pub fn cancel_appointment(&self, mailbox: &str, uid: &str) -> Result<AppointmentRef, SimError> {
        let (reference, batch) = self.state.model().cancel(mailbox, uid)?;
        self.state.publish(batch);
        Ok(reference)
    }

    /// The truth of a mailbox over `[from, to)`: one entry per occurrence.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox, [`SimError::Invalid`] when `to < from`.
    pub fn appointments(
        &self,
        mailbox: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TruthEntry>, SimError> {
        if to < from {
            return Err(SimError::Invalid("to is before from".into()));
        }
        self.state.model().truth(mailbox, from, to)
    }

    /// Runs a workload to completion and reports what it did.
    ///
    /// # Errors
    ///
    /// [`SimError::Invalid`] for a workload that cannot run (no rooms, empty mix).
    pub async fn run_workload(&self, workload: Workload) -> Result<WorkloadReport, SimError> {
        workload::run(self, workload).await
    }

    /// The counters.
    pub fn stats(&self) -> SimStats {
        let counts = self.state.model().counts();
        let stats = &self.state.stats;
        SimStats {
            mailboxes: counts.mailboxes,
            items: counts.items,
            changes: counts.changes,
            subscriptions: self.state.subscriptions.len(),
            open_streams: self.state.subscriptions.open_streams(),
            peak_streams_by_account: self.state.limits.peak_streams(),
            connection_refusals: self.state.limits.connection_refusals(),
            events_published: stats.events_published.load(Ordering::Relaxed),
            events_streamed: stats.events_streamed.load(Ordering::Relaxed),
            stream_envelopes: stats.stream_envelopes.load(Ordering::Relaxed),
            missed_reported: stats.missed_reported.load(Ordering::Relaxed),
            requests: stats
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            stale_reads_served: stats.stale_reads_served.load(Ordering::Relaxed),
            stale_exceptions_served: stats.stale_exceptions_served.load(Ordering::Relaxed),
            messages_sent: self.state.sent.len(),
            push: self.state.push.stats(),
            faults: self
                .state
                .faults
                .injected()
                .iter()
                .map(|fault| fault.kind().to_owned())
                .collect(),
        }
    }
}
