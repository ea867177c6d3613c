//! Reading `meetings` back, and purging old tombstones. Writing is `apply`'s job.

use std::time::Duration;

use super::{MeetingRow, PgStore, RoomId, StoreError, UserId};
use crate::domain::{ChangeKey, ItemId};

impl PgStore {
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
}

pub(super) fn meeting_row(row: &tokio_postgres::Row) -> Result<MeetingRow, tokio_postgres::Error> {
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
