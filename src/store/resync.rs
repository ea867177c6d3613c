//! What the periodic resync needs from the store: the rows of a window, the series
//! to re-materialise as the window rolls, a forced rewrite that repairs drift, and
//! the per-room resync notes (`last_resync_at`, `last_full_resync_at`,
//! `drift_repaired`).
//!
//! A rewrite holds the room's `mailbox_sync` row locked like [`PgStore::apply`] and
//! writes at the stored checkpoint without moving it, so it never races a worker's
//! pass: whichever commits second sees the other's rows.

use chrono::{DateTime, Utc};

use super::apply::{apply_in, ApplyOutcome, ItemWrite, MailboxBatch, ORIGIN_RESYNC};
use super::meetings::meeting_row;
use super::{MeetingRow, PgStore, RoomId, StoreError};
use crate::domain::{ItemId, SyncState};

/// A repair of one room, computed by comparing Exchange with the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The current truth of the items whose rows are missing or differ.
    pub items: Vec<ItemWrite>,
    /// Rows (UID, occurrence start) whose content differs from Exchange although
    /// they carry the same version: their version guard is lifted for this write.
    pub forced: Vec<(String, Option<DateTime<Utc>>)>,
    /// Ids of confirmed rows Exchange does not have: they are cancelled unless
    /// something wrote them after `started_at`.
    pub cancel_rows: Vec<i64>,
    /// When the comparison started (database clock).
    pub started_at: DateTime<Utc>,
}

/// Makes sure the room has a `mailbox_sync` row.
const ENSURE_MAILBOX_SYNC: &str = "\
    INSERT INTO mailbox_sync (room_id) SELECT id FROM rooms WHERE id = $1 \
    ON CONFLICT (room_id) DO NOTHING";

const LOCK_CHECKPOINT: &str = "SELECT sync_state FROM mailbox_sync WHERE room_id = $1 FOR UPDATE";

/// Clears the change key of the forced rows whose stored version is not newer than
/// the fetched one, so the upsert guard lets the same version in again.
const LIFT_GUARD: &str = "\
    UPDATE meetings m SET exchange_change_key = NULL \
    FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) \
        AS f(uid, occurrence_start, last_modified) \
    WHERE m.room_id = $1 AND m.source = 'exchange' AND m.exchange_uid = f.uid \
      AND coalesce(m.occurrence_start, '-infinity') = coalesce(f.occurrence_start, '-infinity') \
      AND (m.exchange_last_modified IS NULL OR m.exchange_last_modified <= f.last_modified)";

const CANCEL_ROWS: &str = "\
    UPDATE meetings SET status = 'cancelled', updated_at = now() \
    WHERE room_id = $1 AND id = ANY($2::bigint[]) AND status = 'confirmed' \
      AND source = 'exchange' AND (fetched_at IS NULL OR fetched_at < $3)";

impl PgStore {
    /// The rows of a room that overlap `[from, to)`, by start.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn meetings_overlapping(
        &self,
        room: RoomId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MeetingRow>, StoreError> {
        const SQL: &str = "\
            SELECT id, room_id, exchange_uid, occurrence_start, subject, starts_at, ends_at, \
                is_all_day, organizer_email, organizer_user_id, status, source, \
                exchange_item_id, exchange_change_key, exchange_last_modified, fetched_at, \
                updated_at \
            FROM meetings WHERE room_id = $1 AND starts_at < $3 AND ends_at > $2 \
            ORDER BY starts_at, id";
        let rows = self
            .retrying(
                |client, _| async move { Ok(client.query(SQL, &[&room.0, &from, &to]).await?) },
            )
            .await?;
        rows.iter()
            .map(meeting_row)
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(StoreError::from)
    }

    /// The Exchange item ids of the room's recurring series (rows with an occurrence
    /// start), leaving out tombstoned items: what a window roll re-materialises.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn series_item_ids(&self, room: RoomId) -> Result<Vec<ItemId>, StoreError> {
        const SQL: &str = "\
            SELECT DISTINCT m.exchange_item_id FROM meetings m \
            WHERE m.room_id = $1 AND m.source = 'exchange' \
              AND m.occurrence_start IS NOT NULL AND m.exchange_item_id IS NOT NULL \
              AND NOT EXISTS (SELECT 1 FROM deleted_items d \
                  WHERE d.room_id = m.room_id AND d.exchange_item_id = m.exchange_item_id) \
            ORDER BY 1";
        let rows = self
            .retrying(|client, _| async move { Ok(client.query(SQL, &[&room.0]).await?) })
            .await?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).map(ItemId))
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Writes a repair (or a window roll, with nothing forced or cancelled) at the
    /// stored checkpoint, in one transaction; the checkpoint does not move.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown room, [`StoreError::Unavailable`] or
    /// [`StoreError::Database`].
    pub async fn rewrite(
        &self,
        room: RoomId,
        rewrite: &Rewrite,
    ) -> Result<ApplyOutcome, StoreError> {
        if self.dry_run {
            // FIXME: a dry run does not plan the repairs of a resync rewrite yet.
            return Ok(ApplyOutcome::default());
        }
        let forced_uid: Vec<&str> = rewrite.forced.iter().map(|(uid, _)| uid.as_str()).collect();
        let forced_start: Vec<Option<DateTime<Utc>>> =
            rewrite.forced.iter().map(|(_, start)| *start).collect();
        let forced_version: Vec<DateTime<Utc>> = rewrite
            .forced
            .iter()
            .map(|(uid, _)| {
                rewrite
                    .items
                    .iter()
                    .filter(|item| &item.uid == uid)
                    .map(|item| item.last_modified)
                    .max()
                    .unwrap_or(DateTime::<Utc>::MIN_UTC)
            })
            .collect();
        let (forced_uid, forced_start, forced_version) =
            (&forced_uid, &forced_start, &forced_version);
        self.retrying(|mut client, attempt| async move {
            let tx = client.transaction().await?;
            tx.execute(ENSURE_MAILBOX_SYNC, &[&room.0]).await?;
            let Some(row) = tx.query_opt(LOCK_CHECKPOINT, &[&room.0]).await? else {
                return Err(StoreError::NotFound(format!("room {room}")));
            };
            let stored: Option<String> = row.try_get(0)?;
            if !forced_uid.is_empty() {
                tx.execute(
                    LIFT_GUARD,
                    &[&room.0, forced_uid, forced_start, forced_version],
                )
                .await?;
            }
            let mut cancelled = 0;
            if !rewrite.cancel_rows.is_empty() {
                cancelled = tx
                    .execute(
                        CANCEL_ROWS,
                        &[&room.0, &rewrite.cancel_rows, &rewrite.started_at],
                    )
                    .await?;
            }
            let batch = MailboxBatch {
                room_id: room,
                expected_sync_state: stored.map(SyncState),
                new_sync_state: None,
                items: rewrite.items.clone(),
                removed_items: Vec::new(),
                completes_initial_sync: false,
            };
            let mut outcome =
                apply_in(&tx, &batch, attempt > 0, &self.routing, ORIGIN_RESYNC).await?;
            outcome.cancelled += cancelled;
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }

    /// Notes a successful resync of a room: incremental, or full with the number of
    /// differences it repaired.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn record_resync(
        &self,
        room: RoomId,
        full: bool,
        drift: u64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "\
            INSERT INTO mailbox_sync (room_id, last_resync_at, last_full_resync_at, \
                drift_repaired) \
            SELECT id, now(), CASE WHEN $2 THEN now() END, $3 FROM rooms WHERE id = $1 \
            ON CONFLICT (room_id) DO UPDATE \
            SET last_resync_at = now(), \
                last_full_resync_at = CASE WHEN $2 THEN now() \
                    ELSE mailbox_sync.last_full_resync_at END, \
                drift_repaired = mailbox_sync.drift_repaired + $3, \
                updated_at = now()";
        let drift = i64::try_from(drift).unwrap_or(i64::MAX);
        self.retrying(|client, _| async move {
            Ok(client.execute(SQL, &[&room.0, &full, &drift]).await?)
        })
        .await?;
        Ok(())
    }
}
