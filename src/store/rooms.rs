//! Rooms, users and the per-mailbox sync notes: checkpoint, subscription, last
//! event, last error and the progress of the first full synchronisation.

use chrono::{DateTime, Utc};

use super::{strip_nul, InitialSync, PgStore, Room, RoomId, StoreError, UserId};
use crate::domain::{MailboxAddress, SubscriptionId, SyncState};

/// What an operator wants to know about one room's sync (for `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStatus {
    /// The room.
    pub room: Room,
    /// Whether the room is synchronised.
    pub sync_enabled: bool,
    /// A checkpoint is stored.
    pub has_sync_state: bool,
    /// The current notification subscription.
    pub subscription_id: Option<SubscriptionId>,
    /// Since when the room is polled for want of a streaming connection slot.
    pub polled_since: Option<DateTime<Utc>>,
    /// When a notification for the room was last seen.
    pub last_event_at: Option<DateTime<Utc>>,
    /// When a batch for the room was last written.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The last error, until cleared.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Confirmed meetings of the room.
    pub confirmed_meetings: i64,
    /// Whether the booking system treats the room as coexisting with Exchange.
    pub coexistence_enabled: bool,
    /// Why the initial sync failed, when it did.
    pub initial_sync_error: Option<String>,
    /// When the last incremental or full resync succeeded.
    pub last_resync_at: Option<DateTime<Utc>>,
    /// When the last full reconciliation succeeded.
    pub last_full_resync_at: Option<DateTime<Utc>>,
    /// Differences full reconciliations found and repaired, in total.
    pub drift_repaired: i64,
    /// Confirmed meetings whose organizer is not a known user.
    pub unknown_organizers: i64,
}

impl PgStore {
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

    /// Every room with `sync_enabled`, by id. In a dry run, a room's initial sync is
    /// the dry run's own.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn enabled_rooms(&self) -> Result<Vec<Room>, StoreError> {
        const SQL: &str = "SELECT id, email, name, initial_sync FROM rooms \
                           WHERE sync_enabled ORDER BY id";
        // A dry run's initial sync is its own: done once the dry run enumerated the
        // room (or the live sync had, when the dry run began).
        const DRY_RUN_SQL: &str = "\
            SELECT r.id, r.email, r.name, \
                CASE WHEN d.initial_sync_complete THEN 'complete' ELSE r.initial_sync END \
            FROM rooms r LEFT JOIN dry_run_sync d ON d.room_id = r.id \
            WHERE r.sync_enabled ORDER BY r.id";
        let sql = if self.dry_run { DRY_RUN_SQL } else { SQL };
        let rows = self
            .retrying(|client, _| async move { Ok(client.query(sql, &[]).await?) })
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
        if self.dry_run {
            return self.dry_run_sync_state(room).await;
        }
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
            SET subscription_id = EXCLUDED.subscription_id, \
                polled_since = CASE WHEN EXCLUDED.subscription_id IS NULL \
                    THEN mailbox_sync.polled_since END, \
                updated_at = now()";
        let id = id.map(SubscriptionId::as_str);
        let count = self
            .retrying(|client, _| async move { Ok(client.execute(SQL, &[&room.0, &id]).await?) })
            .await?;
        found(count, room)
    }

    /// Records which rooms are polled (`true`: their group found no streaming
    /// connection slot) and which stream again. A polled room holds no subscription.
    /// Unknown rooms are ignored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn record_polled(&self, rooms: &[(RoomId, bool)]) -> Result<(), StoreError> {
        const SQL: &str = "\
            INSERT INTO mailbox_sync (room_id, polled_since) \
            SELECT changed.room_id, CASE WHEN changed.polled THEN now() END \
            FROM unnest($1::bigint[], $2::bool[]) AS changed(room_id, polled) \
            JOIN rooms ON rooms.id = changed.room_id \
            ORDER BY changed.room_id \
            ON CONFLICT (room_id) DO UPDATE \
            SET polled_since = CASE WHEN EXCLUDED.polled_since IS NULL THEN NULL \
                    ELSE coalesce(mailbox_sync.polled_since, EXCLUDED.polled_since) END, \
                subscription_id = CASE WHEN EXCLUDED.polled_since IS NULL \
                    THEN mailbox_sync.subscription_id END, \
                updated_at = now()";
        if rooms.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = rooms.iter().map(|(room, _)| room.0).collect();
        let polled: Vec<bool> = rooms.iter().map(|(_, polled)| *polled).collect();
        let (ids, polled) = (&ids, &polled);
        self.retrying(|client, _| async move { Ok(client.execute(SQL, &[ids, polled]).await?) })
            .await?;
        Ok(())
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
        if self.dry_run {
            // `rooms` is a booking table; a dry run's progress is in `dry_run_sync`.
            return Ok(());
        }
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
        if self.dry_run {
            return self.reset_dry_run_sync_state(room).await;
        }
        const SQL: &str = "UPDATE mailbox_sync SET sync_state = NULL, updated_at = now() \
                           WHERE room_id = $1";
        self.retrying(|client, _| async move { Ok(client.execute(SQL, &[&room.0]).await?) })
            .await?;
        Ok(())
    }

    /// The sync status of every room, enabled or not, by id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn room_statuses(&self) -> Result<Vec<RoomStatus>, StoreError> {
        const SQL: &str = "\
            SELECT r.id, r.email, r.name, r.initial_sync, r.sync_enabled, \
                s.sync_state IS NOT NULL, s.subscription_id, s.last_event_at, \
                s.last_sync_at, s.last_error, s.last_error_at, \
                (SELECT count(*) FROM meetings m \
                 WHERE m.room_id = r.id AND m.status = 'confirmed'), \
                r.coexistence_enabled, r.initial_sync_error, s.last_resync_at, \
                s.last_full_resync_at, coalesce(s.drift_repaired, 0), \
                (SELECT count(*) FROM meetings m \
                 WHERE m.room_id = r.id AND m.status = 'confirmed' \
                   AND m.organizer_email IS NOT NULL AND m.organizer_user_id IS NULL), \
                s.polled_since \
            FROM rooms r LEFT JOIN mailbox_sync s ON s.room_id = r.id \
            ORDER BY r.id";
        let rows = self
            .retrying(|client, _| async move { Ok(client.query(SQL, &[]).await?) })
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RoomStatus {
                    room: Room {
                        id: RoomId(row.try_get(0)?),
                        email: MailboxAddress::new(row.try_get(1)?),
                        name: row.try_get(2)?,
                        initial_sync: row.try_get(3)?,
                    },
                    sync_enabled: row.try_get(4)?,
                    has_sync_state: row.try_get::<_, Option<bool>>(5)?.unwrap_or(false),
                    subscription_id: row.try_get::<_, Option<String>>(6)?.map(SubscriptionId),
                    last_event_at: row.try_get(7)?,
                    last_sync_at: row.try_get(8)?,
                    last_error: row.try_get(9)?,
                    last_error_at: row.try_get(10)?,
                    confirmed_meetings: row.try_get(11)?,
                    coexistence_enabled: row.try_get(12)?,
                    initial_sync_error: row.try_get(13)?,
                    last_resync_at: row.try_get(14)?,
                    last_full_resync_at: row.try_get(15)?,
                    drift_repaired: row.try_get(16)?,
                    unknown_organizers: row.try_get(17)?,
                    polled_since: row.try_get(18)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(StoreError::from)
    }
}

fn found(count: u64, room: RoomId) -> Result<(), StoreError> {
    if count == 0 {
        Err(StoreError::NotFound(format!("room {room}")))
    } else {
        Ok(())
    }
}
