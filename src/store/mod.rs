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
mod error;
mod migrations;
mod sql_enum;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use crate::config::DatabaseConfig;
use crate::domain::{ChangeKey, ItemId, MailboxAddress, SubscriptionId, SyncState};

pub use apply::{ApplyOutcome, ItemWrite, MailboxBatch, MeetingWrite};
pub use error::{BoxError, StoreError};
pub use migrations::SchemaStatus;

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
/// First back-off between attempts; doubles each time.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest back-off between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
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
struct AttemptTimedOut(Duration);

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
        };
        drop(store.pool.get().await?);
        Ok(store)
    }

    /// Closes the pool: running transactions finish, new ones fail as unavailable.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Creates the room or updates its name and `sync_enabled`; returns its id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn upsert_room(
        &self,
        email: &MailboxAddress,
        name: &str,
        sync_enabled: bool,
    ) -> Result<RoomId, StoreError> {
        const SQL: &str = "\
            WITH room AS ( \
                INSERT INTO rooms (email, name, sync_enabled) VALUES ($1, $2, $3) \
                ON CONFLICT ((lower(email))) DO UPDATE \
                SET name = EXCLUDED.name, sync_enabled = EXCLUDED.sync_enabled, \
                    updated_at = now() \
                RETURNING id \
            ), state AS ( \
                INSERT INTO mailbox_sync (room_id) SELECT id FROM room \
                ON CONFLICT (room_id) DO NOTHING \
            ) \
            SELECT id FROM room";
        let name = strip_nul(name);
        let name = name.as_str();
        let row = self
            .retrying(|client, _| async move {
                Ok(client
                    .query_one(SQL, &[&email.as_str(), &name, &sync_enabled])
                    .await?)
            })
            .await?;
        Ok(RoomId(row.get(0)))
    }

    /// Turns synchronisation of a room on or off; `false` when no such room exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn set_room_sync_enabled(
        &self,
        email: &MailboxAddress,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE rooms SET sync_enabled = $2, updated_at = now() \
                           WHERE lower(email) = lower($1)";
        let count = self
            .retrying(|client, _| async move {
                Ok(client.execute(SQL, &[&email.as_str(), &enabled]).await?)
            })
            .await?;
        Ok(count > 0)
    }

    /// Creates the user or updates the display name; returns the id. Meetings already
    /// organised by that address and not yet linked to a user are linked to this one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn upsert_user(
        &self,
        email: &MailboxAddress,
        display_name: &str,
    ) -> Result<UserId, StoreError> {
        const SQL: &str = "\
            WITH person AS ( \
                INSERT INTO users (email, display_name) VALUES ($1, $2) \
                ON CONFLICT ((lower(email))) DO UPDATE \
                SET display_name = EXCLUDED.display_name, updated_at = now() \
                RETURNING id \
            ), linked AS ( \
                UPDATE meetings SET organizer_user_id = (SELECT id FROM person), \
                    updated_at = now() \
                WHERE organizer_user_id IS NULL AND organizer_email IS NOT NULL \
                  AND lower(organizer_email) = lower($1) \
            ) \
            SELECT id FROM person";
        let display_name = strip_nul(display_name);
        let display_name = display_name.as_str();
        let row = self
            .retrying(|client, _| async move {
                Ok(client
                    .query_one(SQL, &[&email.as_str(), &display_name])
                    .await?)
            })
            .await?;
        Ok(UserId(row.get(0)))
    }

    /// Every room with `sync_enabled`, by id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn enabled_rooms(&self) -> Result<Vec<Room>, StoreError> {
        const SQL: &str = "SELECT id, email, name, initial_sync FROM rooms \
                           WHERE sync_enabled ORDER BY id";
        let rows = self
            .retrying(|client, _| async move { Ok(client.query(SQL, &[]).await?) })
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Room {
                    id: RoomId(row.try_get(0)?),
                    email: MailboxAddress::new(row.try_get(1)?),
                    name: row.try_get(2)?,
                    initial_sync: row.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(StoreError::from)
    }

    /// The stored SyncFolderItems checkpoint of a room (`None`: start from scratch).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn sync_state(&self, room: RoomId) -> Result<Option<SyncState>, StoreError> {
        const SQL: &str = "SELECT sync_state FROM mailbox_sync WHERE room_id = $1";
        let row = self
            .retrying(|client, _| async move { Ok(client.query_opt(SQL, &[&room.0]).await?) })
            .await?;
        let state: Option<String> = match row {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        Ok(state.map(SyncState))
    }

    /// Records the room's current notification subscription (`None`: it has none).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown room, [`StoreError::Unavailable`] or
    /// [`StoreError::Database`].
    pub async fn record_subscription(
        &self,
        room: RoomId,
        id: Option<&SubscriptionId>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "\
            INSERT INTO mailbox_sync (room_id, subscription_id) \
            SELECT id, $2 FROM rooms WHERE id = $1 \
            ON CONFLICT (room_id) DO UPDATE \
            SET subscription_id = EXCLUDED.subscription_id, updated_at = now()";
        let id = id.map(SubscriptionId::as_str);
        let count = self
            .retrying(|client, _| async move { Ok(client.execute(SQL, &[&room.0, &id]).await?) })
            .await?;
        found(count, room)
    }

    /// Records when notifications were last seen, for many rooms in one statement.
    /// A time never moves backwards; unknown rooms are ignored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn record_events(&self, seen: &[(RoomId, DateTime<Utc>)]) -> Result<(), StoreError> {
        const SQL: &str = "\
            INSERT INTO mailbox_sync (room_id, last_event_at) \
            SELECT seen.room_id, max(seen.at) \
            FROM unnest($1::bigint[], $2::timestamptz[]) AS seen(room_id, at) \
            JOIN rooms ON rooms.id = seen.room_id \
            GROUP BY seen.room_id \
            ORDER BY seen.room_id \
            ON CONFLICT (room_id) DO UPDATE \
            SET last_event_at = GREATEST(mailbox_sync.last_event_at, EXCLUDED.last_event_at), \
                updated_at = now()";
        if seen.is_empty() {
            return Ok(());
        }
        let rooms: Vec<i64> = seen.iter().map(|(room, _)| room.0).collect();
        let times: Vec<DateTime<Utc>> = seen.iter().map(|(_, at)| *at).collect();
        let (rooms, times) = (&rooms, &times);
        self.retrying(|client, _| async move { Ok(client.execute(SQL, &[rooms, times]).await?) })
            .await?;
        Ok(())
    }

    /// Records the room's last error (`None` clears it; `last_error_at` keeps the
    /// time of the last error seen).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown room, [`StoreError::Unavailable`] or
    /// [`StoreError::Database`].
    pub async fn record_error(&self, room: RoomId, error: Option<&str>) -> Result<(), StoreError> {
        const SQL: &str = "\
            INSERT INTO mailbox_sync (room_id, last_error, last_error_at) \
            SELECT id, $2::text, CASE WHEN $2::text IS NULL THEN NULL ELSE now() END \
            FROM rooms WHERE id = $1 \
            ON CONFLICT (room_id) DO UPDATE \
            SET last_error = EXCLUDED.last_error, \
                last_error_at = COALESCE(EXCLUDED.last_error_at, mailbox_sync.last_error_at), \
                updated_at = now()";
        let error = error.map(strip_nul);
        let error = error.as_deref();
        let count = self
            .retrying(|client, _| async move { Ok(client.execute(SQL, &[&room.0, &error]).await?) })
            .await?;
        found(count, room)
    }

    /// Sets the progress of the room's first full synchronisation, with the reason
    /// for a failure (cleared otherwise). `Complete` also stamps the completion time.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown room, [`StoreError::Unavailable`] or
    /// [`StoreError::Database`].
    pub async fn set_initial_sync(
        &self,
        room: RoomId,
        state: InitialSync,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "\
            UPDATE rooms SET initial_sync = $2, initial_sync_error = $3, \
                initial_sync_completed_at = CASE WHEN $2 = 'complete' THEN now() \
                    ELSE initial_sync_completed_at END, \
                updated_at = now() \
            WHERE id = $1";
        let reason = reason.map(strip_nul);
        let reason = reason.as_deref();
        let state = state.as_str();
        let count = self
            .retrying(|client, _| async move {
                Ok(client.execute(SQL, &[&room.0, &state, &reason]).await?)
            })
            .await?;
        found(count, room)
    }

    /// Forgets the room's checkpoint (Exchange rejected it): the next sync starts
    /// from scratch.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn reset_sync_state(&self, room: RoomId) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE mailbox_sync SET sync_state = NULL, updated_at = now() \
                           WHERE room_id = $1";
        self.retrying(|client, _| async move { Ok(client.execute(SQL, &[&room.0]).await?) })
            .await?;
        Ok(())
    }

    /// Every meeting row of a room, by start.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn meetings(&self, room: RoomId) -> Result<Vec<MeetingRow>, StoreError> {
        const SQL: &str = "\
            SELECT id, room_id, exchange_uid, occurrence_start, subject, starts_at, ends_at, \
                is_all_day, organizer_email, organizer_user_id, status, source, \
                exchange_item_id, exchange_change_key, exchange_last_modified, fetched_at, \
                updated_at \
            FROM meetings WHERE room_id = $1 ORDER BY starts_at, id";
        let rows = self
            .retrying(|client, _| async move { Ok(client.query(SQL, &[&room.0]).await?) })
            .await?;
        rows.iter()
            .map(meeting_row)
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(StoreError::from)
    }

    /// Number of meeting rows in all rooms.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn meeting_count(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT count(*) FROM meetings";
        let row = self
            .retrying(|client, _| async move { Ok(client.query_one(SQL, &[]).await?) })
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Deletes tombstones older than `age`; returns how many went.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn purge_tombstones(&self, age: Duration) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM deleted_items \
                           WHERE deleted_at < now() - make_interval(secs => $1)";
        let seconds = age.as_secs_f64();
        self.retrying(|client, _| async move { Ok(client.execute(SQL, &[&seconds]).await?) })
            .await
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
                    let delay = backoff(number);
                    tracing::warn!(attempt = number + 1, ?delay, error = %error_chain(&err), "Retrying a database transaction");
                    tokio::time::sleep(delay).await;
                    number += 1;
                }
                other => return other,
            }
        }
    }
}

/// Full-jitter back-off for the attempt after `attempt`.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// The error and its sources on one line, for logs.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// PostgreSQL text cannot hold NUL characters; they are dropped rather than letting
/// one hostile subject block a mailbox forever.
fn strip_nul(text: &str) -> String {
    text.replace('\0', "")
}

fn found(count: u64, room: RoomId) -> Result<(), StoreError> {
    if count == 0 {
        Err(StoreError::NotFound(format!("room {room}")))
    } else {
        Ok(())
    }
}

fn meeting_row(row: &tokio_postgres::Row) -> Result<MeetingRow, tokio_postgres::Error> {
    Ok(MeetingRow {
        id: row.try_get("id")?,
        room_id: RoomId(row.try_get("room_id")?),
        exchange_uid: row.try_get("exchange_uid")?,
        occurrence_start: row.try_get("occurrence_start")?,
        subject: row.try_get("subject")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        is_all_day: row.try_get("is_all_day")?,
        organizer_email: row.try_get("organizer_email")?,
        organizer_user_id: row
            .try_get::<_, Option<i64>>("organizer_user_id")?
            .map(UserId),
        status: row.try_get("status")?,
        source: row.try_get("source")?,
        exchange_item_id: row
            .try_get::<_, Option<String>>("exchange_item_id")?
            .map(ItemId),
        exchange_change_key: row
            .try_get::<_, Option<String>>("exchange_change_key")?
            .map(ChangeKey),
        exchange_last_modified: row.try_get("exchange_last_modified")?,
        fetched_at: row.try_get("fetched_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod test_db;
#[cfg(test)]
mod tests;
