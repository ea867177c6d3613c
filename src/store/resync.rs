//! What the periodic resync needs from the store: the rows of a window, the series
//! to re-materialise as the window rolls, a forced rewrite that repairs drift, and
//! the per-room resync notes (`last_resync_at`, `last_full_resync_at`,
//! `drift_repaired`).
//!
//! A rewrite holds the room's `mailbox_sync` row locked like [`PgStore::apply`] and
//! writes at the stored checkpoint without moving it, so it never races a worker's
//! pass: whichever commits second sees the other's rows. In a dry run it locks and
//! keeps the dry run's own progress instead, and is planned, not written.

use chrono::{DateTime, Utc};

use super::apply::{ApplyOutcome, ChangeOrigin, ItemWrite, MailboxBatch, Repairs};
use super::meetings::meeting_row;
use super::{MeetingRow, PgStore, RoomId, StoreError};
use crate::domain::ItemId;

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
    /// stored checkpoint, in one transaction; the checkpoint does not move. The
    /// forced rewrites and cancellations go through the same write path as a pass
    /// (audit trail with origin `resync`, rules, queued issues); a dry run plans them.
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
        let forced = rewrite
            .forced
            .iter()
            .map(|(uid, start)| {
                let version = rewrite
                    .items
                    .iter()
                    .filter(|item| &item.uid == uid)
                    .map(|item| item.last_modified)
                    .max()
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                (uid.clone(), *start, version)
            })
            .collect();
        let repairs = Repairs {
            forced,
            cancel_rows: rewrite.cancel_rows.clone(),
            since: Some(rewrite.started_at),
            ..Repairs::default()
        };
        let batch = MailboxBatch {
            room_id: room,
            expected_sync_state: None,
            new_sync_state: None,
            items: rewrite.items.clone(),
            removed_items: Vec::new(),
            completes_initial_sync: false,
            origin: ChangeOrigin::Resync,
        };
        self.apply_at_checkpoint(&batch, &repairs).await
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
