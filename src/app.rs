//! Wires the service together: store, EWS client, queue, listener, workers, HTTP.
//!
//! This is the only module that knows every component. It starts them in order
//! (database and schema first, then the HTTP listener and the supervisor, then
//! workers, then the subscriptions), and stops them in the reverse order: intake
//! first, then the queue drains within the grace period, then the workers end, and
//! the HTTP listener and the supervisor (which keeps pinging the watchdog while the
//! queue drains) stop last.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, ExchangeAuth};
use crate::domain::MailboxAddress;
use crate::ews::{EwsAuth, EwsClient, EwsConfig};
use crate::health::{Health, Heartbeats};
use crate::notify::{MailSender, Notifier, SmtpSender};
use crate::pipeline::listener::{Listener, ListenerSettings};
use crate::pipeline::queue::WorkQueue;
use crate::pipeline::resync::{Resync, ResyncSettings};
use crate::pipeline::rooms::RoomDirectory;
use crate::pipeline::slots::ConnectionSlots;
use crate::pipeline::worker::{SyncWindow, Workers};
use crate::store::{IssueRouting, PgStore, SchemaStatus};
use crate::{http, metrics as m, supervisor, systemd};

/// The User-Agent the service sends to Exchange (kept stable for allow lists).
pub const USER_AGENT: &str = concat!("booking-sync/", env!("CARGO_PKG_VERSION"));

/// A started service.
pub struct Service {
    /// The queue between listener and workers.
    pub queue: Arc<WorkQueue>,
    /// The synced rooms.
    pub rooms: Arc<RoomDirectory>,
    /// The store.
    pub store: PgStore,
    /// Where `/metrics`, `/healthz` and `/readyz` answer.
    pub http_addr: SocketAddr,
    /// Readiness and the core loops' heartbeats.
    pub health: Health,
    intake: CancellationToken,
    workers: CancellationToken,
    root: CancellationToken,
    tracker: TaskTracker,
}

/// What a shutdown left undone.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownReport {
    /// Mailboxes still queued when the grace period ended (their changes stay covered
    /// by the stored checkpoint and are picked up at the next start).
    pub left_in_queue: usize,
    /// Whether everything finished within the grace period.
    pub drained: bool,
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(m::DURATION_BUCKETS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            m::describe();
            crate::ews::init_metrics();
            handle
        })
        .clone()
}

impl Service {
    /// Starts every component.
    ///
    /// # Errors
    /// When the database is unreachable, the schema is not current, the EWS client
    /// cannot be built, or the HTTP address cannot be bound.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let metrics = metrics_handle();
        let store = PgStore::connect(&config.database)
            .await
            .context("connecting to the database")?;
        let store = syncing_store(config, store);
        if config.dry_run {
            info!("Dry run: changes are planned, not written; see `booking-sync plan`");
        }
        match store.schema_status().await.context("reading the schema version")? {
            SchemaStatus::Current => {}
            SchemaStatus::Outdated { pending } => bail!(
                "the database schema is out of date ({} migration(s) pending): run `booking-sync migrate` first",
                pending.len()
            ),
            SchemaStatus::Newer { unknown } => bail!(
                "the database schema is newer than this booking-sync ({} unknown migration(s)): upgrade booking-sync",
                unknown.len()
            ),
        }
        let ews = EwsClient::new(ews_config(config)).context("setting up the EWS client")?;

        let root = CancellationToken::new();
        let intake = root.child_token();
        let workers_token = root.child_token();
        let tracker = TaskTracker::new();
        let queue = Arc::new(WorkQueue::new(
            config.pipeline.queue_capacity,
            config.pipeline.coalesce_window,
        ));
        let rooms = Arc::new(RoomDirectory::default());
        let heartbeats = Arc::new(Heartbeats::default());
        let health = Health {
            store: store.clone(),
            rooms: rooms.clone(),
            queue: queue.clone(),
            heartbeats: heartbeats.clone(),
            stall_after: config.pipeline.stall_timeout,
        };

        let http_addr = http::spawn(
            config.http.listen,
            http::HttpState {
                metrics,
                health: health.clone(),
            },
            &tracker,
            root.child_token(),
        )
        .await
        .with_context(|| format!("listening for HTTP on {}", config.http.listen))?;
        {
            let health = health.clone();
            let token = root.child_token();
            let watchdog = systemd::watchdog_timeout();
            tracker.spawn(async move { supervisor::run(health, watchdog, token).await });
        }

        let workers = Arc::new(Workers {
            heartbeats: heartbeats.clone(),
            ..workers(
                config,
                ews.clone(),
                store.clone(),
                queue.clone(),
                rooms.clone(),
            )
        });
        for _ in 0..config.pipeline.workers.max(1) {
            let workers = workers.clone();
            let token = workers_token.clone();
            tracker.spawn(async move { workers.run(token).await });
        }
        if config.resync.enabled {
            let resync = Arc::new(Resync {
                workers: workers.clone(),
                settings: resync_settings(config),
            });
            let token = intake.clone();
            tracker.spawn(async move { resync.run(token).await });
        } else {
            info!("Periodic resync is off ([resync] enabled = false)");
        }

        {
            let store = store.clone();
            let retention = config.audit.retention;
            let token = root.child_token();
            tracker.spawn(async move { purge_audit(store, retention, token).await });
        }
        if let Some(notifier) = build_notifier(config, &store, &ews) {
            let token = root.child_token();
            tracker.spawn(async move { notifier.run(token).await });
        }

        let listener = Arc::new(Listener {
            ews,
            store: store.clone(),
            queue: queue.clone(),
            rooms: rooms.clone(),
            settings: ListenerSettings {
                group_size: config.subscriptions.group_size,
                connection_timeout_minutes: config.subscriptions.connection_timeout_minutes,
                heartbeat_timeout: config.subscriptions.heartbeat_timeout,
                room_refresh_interval: config.sync.room_refresh_interval,
                poll_interval: config.subscriptions.poll_interval,
            },
            heartbeats,
            slots: ConnectionSlots::new(config.subscriptions.max_streaming_connections),
        });
        {
            let tracker_inner = tracker.clone();
            let token = intake.clone();
            tracker.spawn(async move { listener.run(tracker_inner, token).await });
        }
        info!(http = %http_addr, "Service started");
        Ok(Self {
            queue,
            rooms,
            store,
            http_addr,
            health,
            intake,
            workers: workers_token,
            root,
            tracker,
        })
    }

    /// Waits until the room list was read and every enabled room's subscription was
    /// tried once (the moment to tell systemd `READY=1`).
    pub async fn first_subscriptions(&self) {
        while !self.rooms.first_subscriptions_done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops intake, lets the workers drain the queue for up to `grace`, then stops.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        info!("Shutting down: no new events are taken");
        self.intake.cancel();
        self.queue.close();
        let deadline = Instant::now() + grace;
        let mut drained = true;
        while !self.queue.is_idle() {
            if Instant::now() >= deadline {
                drained = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left_in_queue = self.queue.len();
        if !drained {
            warn!(left_in_queue, "Grace period over, stopping with work left; the next start picks it up from the stored sync state");
        }
        self.workers.cancel();
        self.root.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            warn!("Some tasks did not stop in time");
        }
        ShutdownReport {
            left_in_queue,
            drained,
        }
    }
}

/// Deletes audit entries older than `retention`, hourly, until `cancel` fires.
async fn purge_audit(store: PgStore, retention: Duration, cancel: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(3600);
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    loop {
        let cutoff = chrono::Utc::now().checked_sub_signed(retention);
        if let (false, Some(cutoff)) = (store.is_dry_run(), cutoff) {
            match store.purge_audit(cutoff).await {
                Ok(purged) if purged > 0 => info!(purged, "Purged old audit entries"),
                Ok(_) => {}
                Err(err) => warn!(error = %err, "Purging old audit entries failed, retrying later"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// The digest sender, when notifications are on (never in dry-run mode): through the
/// SMTP relay when `[notifications.smtp]` is set, through EWS as `sender` otherwise.
pub fn build_notifier(config: &Config, store: &PgStore, ews: &EwsClient) -> Option<Notifier> {
    let settings = &config.notifications;
    if !settings.enabled || config.dry_run {
        return None;
    }
    let sender = match (&settings.smtp, settings.sender.as_deref()) {
        (Some(smtp), _) => match SmtpSender::new(smtp) {
            Ok(sender) => MailSender::Smtp(Box::new(sender)),
            Err(err) => {
                tracing::error!(
                    error = %err,
                    "Notifications are off: fix [notifications.smtp] and restart"
                );
                return None;
            }
        },
        (None, Some(mailbox)) => MailSender::Ews {
            client: ews.clone(),
            mailbox: MailboxAddress::new(mailbox),
        },
        (None, None) => return None,
    };
    Some(Notifier {
        store: store.clone(),
        sender,
        settings: settings.clone(),
    })
}

/// `store` set up to sync as `config` says: who is told about out-of-sync issues,
/// and whether changes are written or planned (`dry_run`). The service and the
/// `resync` command both sync through it.
pub fn syncing_store(config: &Config, store: PgStore) -> PgStore {
    let store = store.with_issue_routing(issue_routing(config));
    if config.dry_run {
        store.into_dry_run()
    } else {
        store
    }
}

fn issue_routing(config: &Config) -> IssueRouting {
    let notifications = &config.notifications;
    IssueRouting {
        fallback_owner: notifications.fallback_owner.clone(),
        admin: notifications.admin.clone(),
        initial_sync_to_users: notifications.initial_sync_to_users,
    }
}

/// The workers of `config` over a source, with heartbeats nobody watches (the service
/// puts its own in); the `resync` command builds them too.
pub fn workers<S>(
    config: &Config,
    source: S,
    store: PgStore,
    queue: Arc<WorkQueue>,
    rooms: Arc<RoomDirectory>,
) -> Workers<S> {
    Workers {
        source,
        store,
        queue,
        rooms,
        window: SyncWindow {
            past: chrono::Duration::days(i64::from(config.sync.window_past_days)),
            future: chrono::Duration::days(i64::from(config.sync.window_future_days)),
        },
        batch_size: config.pipeline.batch_size,
        heartbeats: Arc::new(Heartbeats::default()),
    }
}

/// The periodic resync settings of `config`.
pub fn resync_settings(config: &Config) -> ResyncSettings {
    ResyncSettings {
        interval: config.resync.interval,
        full_interval: config.resync.full_interval,
        concurrency: config.pipeline.workers.max(1),
    }
}

/// The EWS client settings of `config`.
pub fn ews_config(config: &Config) -> EwsConfig {
    let exchange = &config.exchange;
    EwsConfig {
        url: exchange.url.clone(),
        auth: match &exchange.auth {
            ExchangeAuth::None => EwsAuth::None,
            ExchangeAuth::Basic { username, password } => EwsAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
        },
        impersonation: exchange.impersonation,
        server_version: exchange.server_version.clone(),
        request_timeout: exchange.request_timeout,
        max_concurrent_requests: exchange.max_concurrent_requests,
        user_agent: USER_AGENT.to_owned(),
    }
}
