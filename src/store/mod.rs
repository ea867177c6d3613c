//! PostgreSQL store: migrations, rooms, users, meetings and per-mailbox sync state.
//!
//! `store` is the only module that holds SQL. Its API speaks domain terms: the pipeline
//! hands it a [`MailboxBatch`] (the current truth of some Exchange items plus the
//! checkpoint they were computed from) and [`PgStore::apply`] writes it in one
//! transaction that never lets an older version overwrite a newer one and never lets a
//! deleted item come back. Everything else is bookkeeping around that: rooms and users,
//! the sync checkpoint, subscription and error notes, and the schema migrations.
//!
//! It does not talk to Exchange, decide what a meeting is, or schedule work: callers
//! decide, the store records. Transient database failures are retried here (whole
//! transaction, fresh connection, capped jittered back-off) and surface as
//! [`StoreError::Unavailable`] only when retries run out.

mod apply;
mod audit;
mod effects;
mod error;
mod meetings;
mod migrations;
mod outbox;
mod plan;
mod reconcile;
mod resync;
mod room_admin;
mod rooms;
mod sql_enum;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use crate::config::DatabaseConfig;
use crate::domain::{ChangeKey, ItemId, MailboxAddress};

pub use apply::{
    ApplyOutcome, ChangeOrigin, ExceptionVersion, ItemWrite, MailboxBatch, MeetingWrite,
};
pub use audit::{AuditEntry, AuditFilter};
pub use effects::IssueRouting;
pub use error::{BoxError, StoreError};
pub use migrations::SchemaStatus;
pub use outbox::{ClaimedDigest, DueDigest, IssueAudience, PendingIssue};
pub use plan::{PlanSummary, PlannedEmail};
pub use resync::Rewrite;
pub use room_admin::CoexistenceChange;
pub use rooms::RoomStatus;

/// Database id of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub i64);

/// Database id of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Progress of a room's first full synchronisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialSync {
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Done: the room's meetings are complete.
    Complete,
    /// Gave up; `initial_sync_error` says why.
    Failed,
}

/// Whether a meeting takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingStatus {
    /// It takes place.
    Confirmed,
    /// It was cancelled, deleted, or dropped from its series; the row stays.
    Cancelled,
}

/// Who owns a meeting row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingSource {
    /// Written by booking-sync from Exchange.
    Exchange,
    /// Written by the booking system; booking-sync only links its Exchange fields.
    Booking,
}

/// A room whose calendar is synchronised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Database id.
    pub id: RoomId,
    /// Primary SMTP address of the room mailbox.
    pub email: MailboxAddress,
    /// Display name.
    pub name: String,
    /// Progress of the first full synchronisation.
    pub initial_sync: InitialSync,
}

/// One row of `meetings`, every contract column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRow {
    /// Row id.
    pub id: i64,
    /// The room.
    pub room_id: RoomId,
    /// iCalendar UID.
    pub exchange_uid: String,
    /// Original start of a series occurrence; `None` for a single meeting.
    pub occurrence_start: Option<DateTime<Utc>>,
    /// Subject line.
    pub subject: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// All-day meeting.
    pub is_all_day: bool,
    /// Organizer's address, when known.
    pub organizer_email: Option<String>,
    /// Organizer as a known user.
    pub organizer_user_id: Option<UserId>,
    /// Confirmed or cancelled.
    pub status: MeetingStatus,
    /// Who owns the row.
    pub source: MeetingSource,
    /// Exchange item id of the item the row came from.
    pub exchange_item_id: Option<ItemId>,
    /// Change key of the version written.
    pub exchange_change_key: Option<ChangeKey>,
    /// Last-modified time of the version written.
    pub exchange_last_modified: Option<DateTime<Utc>>,
    /// When booking-sync last wrote the row from Exchange.
    pub fetched_at: Option<DateTime<Utc>>,
    /// Last change of the row.
    pub updated_at: DateTime<Utc>,
}

/// How often a transaction is tried before [`StoreError::Unavailable`].
const MAX_ATTEMPTS: u32 = 4;
/// Back-off between attempts: from 100 ms, doubling, at most 2 s.
const RETRY_BACKOFF: crate::backoff::Backoff = crate::backoff::Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(2),
    jitter: 0.5,
};
/// Idle time before TCP keep-alive probes start.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// `application_name` when the URL sets none.
const APPLICATION_NAME: &str = "booking-sync";

/// The PostgreSQL store: a connection pool and the statements that use it. Cheap to
/// clone; clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Limit for one attempt of a transaction, so a black-holed connection cannot
    /// hold a worker forever.
    attempt_timeout: Duration,
    /// Who is told about out-of-sync issues found while applying batches.
    routing: std::sync::Arc<IssueRouting>,
    /// Plan instead of writing the booking tables (see `plan`).
    dry_run: bool,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// An error raised when one attempt of a transaction runs out of time.
#[derive(Debug, thiserror::Error)]
#[error("a database transaction took longer than {0:?}")]
pub(crate) struct AttemptTimedOut(Duration);

impl PgStore {
    /// Builds the pool and checks that one connection can be opened.
    ///
    /// Connections carry `statement_timeout` from the configuration, TCP keep-alives
    /// and a TCP user timeout, so a dead peer is noticed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the server cannot be reached,
    /// [`StoreError::Database`] for a bad URL or refused credentials.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(StoreError::Database)?;
        if let Some(password) = &config.password {
            pg.password(password.expose_secret());
        }
        let timeout_option = format!(
            "-c statement_timeout={}",
            config.statement_timeout.as_millis()
        );
        let options = match pg.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {timeout_option}"),
            _ => timeout_option,
        };
        pg.options(options);
        if pg.get_application_name().is_none() {
            pg.application_name(APPLICATION_NAME);
        }
        pg.connect_timeout(config.connect_timeout);
        pg.keepalives(true);
        pg.keepalives_idle(KEEPALIVE_IDLE);
        pg.tcp_user_timeout(config.statement_timeout + config.connect_timeout);

        // Verified recycling costs one round trip per checkout and keeps connections
        // that died while idle (server restart, black hole) out of transactions.
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|err| StoreError::Unavailable(Box::new(err)))?;
        let store = Self {
            pool,
            attempt_timeout: config.statement_timeout * 2 + config.connect_timeout,
            routing: std::sync::Arc::default(),
            dry_run: false,
        };
        drop(store.pool.get().await?);
        Ok(store)
    }

    /// Checks once, without retrying, that the database answers (for readiness).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// The same store, routing the out-of-sync issues it finds as `routing` says.
    #[must_use]
    pub fn with_issue_routing(mut self, routing: IssueRouting) -> Self {
        self.routing = std::sync::Arc::new(routing);
        self
    }

    /// Closes the pool: running transactions finish, new ones fail as unavailable.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Runs `attempt` with a pooled connection, retrying transient failures on a
    /// fresh connection with capped, jittered exponential back-off. The closure gets
    /// the connection and the attempt number (0 first) and must be safe to repeat:
    /// a failed attempt's transaction is rolled back, but a commit whose answer was
    /// lost may have happened.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(Object, u32) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut number = 0;
        loop {
            let result = match self.pool.get().await {
                Ok(client) => tokio::time::timeout(self.attempt_timeout, attempt(client, number))
                    .await
                    .unwrap_or_else(|_| {
                        Err(StoreError::Unavailable(Box::new(AttemptTimedOut(
                            self.attempt_timeout,
                        ))))
                    }),
                Err(err) => Err(err.into()),
            };
            match result {
                Err(err) if err.is_transient() && number + 1 < MAX_ATTEMPTS => {
                    metrics::counter!(crate::metrics::DB_RETRIES, "class" => err.retry_class())
                        .increment(1);
                    let delay = RETRY_BACKOFF.delay(number + 1);
                    tracing::warn!(attempt = number + 1, ?delay, error = %crate::logging::error_chain(&err), "Retrying a database transaction");
                    tokio::time::sleep(delay).await;
                    number += 1;
                }
                other => return other,
            }
        }
    }
}

/// PostgreSQL text cannot hold NUL characters; they are dropped rather than letting
/// one hostile subject block a mailbox forever.
fn strip_nul(text: &str) -> String {
    text.replace('\0', "")
}

#[cfg(test)]
mod test_db;
#[cfg(test)]
mod tests;
