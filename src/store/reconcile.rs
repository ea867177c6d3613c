//! Reconciliation after a complete enumeration of a room's calendar.
//!
//! Deletions only reach [`PgStore::apply`] as `removed_items` when Exchange reports
//! them. A sync that restarts from an empty state (the checkpoint was rejected or lost)
//! reports only what exists, so items deleted meanwhile would stay confirmed forever.
//! [`PgStore::reconcile_full_sync`] closes that gap: once every page of such a sync is
//! applied, rows whose item was not seen, and which nothing wrote since the sync
//! started, are cancelled and their items tombstoned.

use chrono::{DateTime, Utc};

use super::{PgStore, RoomId, StoreError};
use crate::domain::ItemId;

/// Tombstones the items of confirmed Exchange rows that the enumeration did not see
/// and that were not written since it started, then cancels their rows. `NOT IN`
/// runs as a hashed subplan, which matters with thousands of items.
const RECONCILE: &str = "\
    WITH seen AS ( \
        SELECT item_id FROM unnest($2::text[]) AS s(item_id) \
    ), gone AS ( \
        SELECT DISTINCT exchange_item_id FROM meetings \
        WHERE room_id = $1 AND source = 'exchange' AND status = 'confirmed' \
          AND exchange_item_id IS NOT NULL AND fetched_at < $3 \
          AND exchange_item_id NOT IN (SELECT item_id FROM seen) \
    ), tombstones AS ( \
        INSERT INTO deleted_items (room_id, exchange_item_id) \
        SELECT $1, exchange_item_id FROM gone \
        ON CONFLICT (room_id, exchange_item_id) DO NOTHING \
    ) \
    UPDATE meetings SET status = 'cancelled', updated_at = now() \
    WHERE room_id = $1 AND source = 'exchange' AND status = 'confirmed' \
      AND exchange_item_id IN (SELECT exchange_item_id FROM gone)";

/// Serialises the reconciliation with `apply` for the same room.
const LOCK_ROOM: &str = "SELECT 1 FROM mailbox_sync WHERE room_id = $1 FOR UPDATE";

impl PgStore {
    /// The database server's clock: take a sync's start time from here, so that it
    /// compares with `fetched_at` without clock skew.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn database_time(&self) -> Result<DateTime<Utc>, StoreError> {
        const SQL: &str = "SELECT clock_timestamp()";
        let row = self
            .retrying(|client, _| async move { Ok(client.query_one(SQL, &[]).await?) })
            .await?;
        Ok(row.try_get(0)?)
    }

    /// After a complete enumeration of the room's calendar folder (every page of a
    /// sync from an empty state applied), cancels the confirmed rows whose item is not
    /// in `seen` and that were not written since `started_at` (from
    /// [`PgStore::database_time`] before the first page), and tombstones those items.
    /// Returns the number of rows cancelled.
    ///
    /// Calling it after an incomplete enumeration would cancel live meetings.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for a room without sync state,
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn reconcile_full_sync(
        &self,
        room: RoomId,
        seen: &[ItemId],
        started_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if self.dry_run {
            // FIXME: a dry run does not plan the cancellations a full resync finds.
            return Ok(0);
        }
        let seen: Vec<&str> = seen.iter().map(ItemId::as_str).collect();
        let seen = &seen;
        let cancelled = self
            .retrying(|mut client, _| async move {
                let tx = client.transaction().await?;
                if tx.query_opt(LOCK_ROOM, &[&room.0]).await?.is_none() {
                    return Err(StoreError::NotFound(format!("sync state of room {room}")));
                }
                let cancelled = tx.execute(RECONCILE, &[&room.0, seen, &started_at]).await?;
                tx.commit().await?;
                Ok(cancelled)
            })
            .await?;
        if cancelled > 0 {
            tracing::info!(
                room_id = room.0,
                cancelled,
                "Cancelled meetings a full sync no longer found"
            );
        }
        Ok(cancelled)
    }
}
