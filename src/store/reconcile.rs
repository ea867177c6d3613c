//! Reconciliation after a complete enumeration of a room's calendar.
//!
//! Deletions only reach [`PgStore::apply`] as `removed_items` when Exchange reports
//! them. A sync that restarts from an empty state (the checkpoint was rejected or lost)
//! reports only what exists, so items deleted meanwhile would stay confirmed forever.
//! [`PgStore::reconcile_full_sync`] closes that gap: once every page of such a sync is
//! applied, rows whose item was not seen, and which nothing wrote since the sync
//! started, are cancelled and their items tombstoned.

use chrono::{DateTime, Utc};

use super::apply::{ApplyOutcome, ChangeOrigin, MailboxBatch, Repairs};
use super::{PgStore, RoomId, StoreError};
use crate::domain::ItemId;

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
    /// sync from an empty state applied), removes the items of confirmed rows that
    /// are not in `seen` and were not written since `started_at` (from
    /// [`PgStore::database_time`] before the first page): they are tombstoned and
    /// their Exchange rows cancelled, through the same write path as any removal
    /// (audit trail, rules, flagged services, queued issues; a plan in a dry run).
    /// `completes_initial_sync` ends the room's initial sync in the same
    /// transaction, so what the reconciliation finds still counts as found during
    /// it. The checkpoint does not move.
    ///
    /// Calling it after an incomplete enumeration would cancel live meetings.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown room, [`StoreError::Unavailable`] or
    /// [`StoreError::Database`].
    pub async fn reconcile_full_sync(
        &self,
        room: RoomId,
        seen: &[ItemId],
        started_at: DateTime<Utc>,
        origin: ChangeOrigin,
        completes_initial_sync: bool,
    ) -> Result<ApplyOutcome, StoreError> {
        let batch = MailboxBatch {
            room_id: room,
            expected_sync_state: None,
            new_sync_state: None,
            items: Vec::new(),
            removed_items: Vec::new(),
            completes_initial_sync,
            origin,
        };
        let repairs = Repairs {
            seen: Some(seen.iter().map(|item| item.as_str().to_owned()).collect()),
            since: Some(started_at),
            ..Repairs::default()
        };
        let outcome = self.apply_at_checkpoint(&batch, &repairs).await?;
        if outcome.cancelled > 0 {
            tracing::info!(
                room_id = room.0,
                cancelled = outcome.cancelled,
                dry_run = self.dry_run,
                "Cancelled meetings a full sync no longer found"
            );
        }
        Ok(outcome)
    }
}
