//! Reading and trimming the audit trail that [`effects`](super::effects) writes with
//! every applied change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{PgStore, StoreError};

/// One applied change of one meeting row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// When it was applied.
    pub at: DateTime<Utc>,
    /// The room's address.
    pub room: String,
    /// iCalendar UID.
    pub exchange_uid: String,
    /// Original start of a series occurrence.
    pub occurrence_start: Option<DateTime<Utc>>,
    /// insert, update, cancel or link.
    pub action: String,
    /// The source of the change: `stream`, `resync` or `push`.
    pub origin: String,
    /// The row's fields before (none for an insert).
    pub before: Option<Value>,
    /// The row's fields after.
    pub after: Option<Value>,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this room (by address).
    pub room: Option<String>,
    /// Only this meeting (by UID).
    pub uid: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many (newest first).
    pub limit: i64,
}

const AUDIT_ENTRIES: &str = "\
    SELECT a.at, r.email, a.exchange_uid, a.occurrence_start, a.action, a.origin, \
        a.before, a.after \
    FROM meeting_audit a JOIN rooms r ON r.id = a.room_id \
    WHERE ($1::text IS NULL OR lower(r.email) = lower($1)) \
      AND ($2::text IS NULL OR a.exchange_uid = $2) \
      AND ($3::timestamptz IS NULL OR a.at >= $3) \
    ORDER BY a.id DESC LIMIT $4";

const PURGE_AUDIT: &str = "DELETE FROM meeting_audit WHERE at < $1";

impl PgStore {
    /// Audit entries matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.retrying(|client, _| async move {
            client
                .query(
                    AUDIT_ENTRIES,
                    &[&filter.room, &filter.uid, &filter.since, &filter.limit],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(AuditEntry {
                        at: row.try_get(0)?,
                        room: row.try_get(1)?,
                        exchange_uid: row.try_get(2)?,
                        occurrence_start: row.try_get(3)?,
                        action: row.try_get(4)?,
                        origin: row.try_get(5)?,
                        before: row.try_get(6)?,
                        after: row.try_get(7)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Deletes audit entries older than `cutoff`; returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn purge_audit(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.retrying(|client, _| async move { Ok(client.execute(PURGE_AUDIT, &[&cutoff]).await?) })
            .await
    }
}
