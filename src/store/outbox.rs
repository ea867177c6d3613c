//! The notification outbox: issues waiting for a digest, and the digests sent.
//!
//! Issues enter `sync_issues` with the write that found them
//! ([`effects`](super::effects)); here they leave it. A recipient is due when their
//! oldest waiting issue has waited a whole digest interval, no digest went to them
//! within the interval, and (for users) fewer than the daily cap went out in the last
//! 24 hours. The caller sends, then records the digest, which takes its issues out of
//! the queue: a crash between the two sends that digest again, never loses it.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::{PgStore, StoreError};

/// Who an issue is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueAudience {
    /// The person concerned (organizer, fallback owner).
    User,
    /// The administrator's report of a room's initial sync.
    Admin,
}

impl IssueAudience {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "admin" {
            Self::Admin
        } else {
            Self::User
        }
    }
}

/// An issue waiting for a digest.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingIssue {
    /// Row id.
    pub id: i64,
    /// Rule name.
    pub rule: String,
    /// What to show: meeting, rooms, times, services.
    pub details: Value,
    /// When it was found.
    pub created_at: DateTime<Utc>,
}

/// The issues one recipient is due to receive.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDigest {
    /// Lower-case address.
    pub recipient: String,
    /// User or administrator.
    pub audience: IssueAudience,
    /// The waiting issues, oldest first.
    pub issues: Vec<PendingIssue>,
}

/// The most issues one digest lists; the rest wait for the next.
const MAX_ISSUES_PER_DIGEST: i64 = 200;

const DUE_RECIPIENTS: &str = "\
    WITH waiting AS ( \
        SELECT recipient, audience, min(created_at) AS oldest FROM sync_issues \
        WHERE digest_id IS NULL AND recipient IS NOT NULL GROUP BY recipient, audience \
    ) \
    SELECT w.recipient, w.audience FROM waiting w \
    WHERE w.oldest <= $1 \
      AND NOT EXISTS (SELECT 1 FROM notification_digests d \
          WHERE d.recipient = w.recipient AND d.audience = w.audience AND d.sent_at > $1) \
      AND (w.audience = 'admin' OR (SELECT count(*) FROM notification_digests d \
          WHERE d.recipient = w.recipient AND d.audience = 'user' AND d.sent_at > $2) < $3) \
    ORDER BY w.oldest";

const WAITING_ISSUES: &str = "\
    SELECT id, rule, details, created_at FROM sync_issues \
    WHERE recipient = $1 AND audience = $2 AND digest_id IS NULL ORDER BY id LIMIT $3";

const INSERT_DIGEST: &str = "\
    INSERT INTO notification_digests (recipient, audience, subject, issue_count, sent_at) \
    VALUES ($1, $2, $3, $4, $5) RETURNING id";

const TAKE_ISSUES: &str = "\
    UPDATE sync_issues SET digest_id = $1 WHERE id = ANY($2::bigint[]) AND digest_id IS NULL";

impl PgStore {
    /// The digests due at `now` with the given interval and per-user daily cap.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when retries ran out, [`StoreError::Database`]
    /// otherwise.
    pub async fn due_digests(
        &self,
        now: DateTime<Utc>,
        interval: std::time::Duration,
        daily_cap: u32,
    ) -> Result<Vec<DueDigest>, StoreError> {
        let interval = Duration::from_std(interval).unwrap_or(Duration::MAX);
        let cutoff = now - interval;
        let day_ago = now - Duration::days(1);
        let cap = i64::from(daily_cap);
        self.retrying(|client, _| async move {
            let mut due = Vec::new();
            for row in client
                .query(DUE_RECIPIENTS, &[&cutoff, &day_ago, &cap])
                .await?
            {
                let recipient: String = row.try_get(0)?;
                let audience: String = row.try_get(1)?;
                let issues = client
                    .query(
                        WAITING_ISSUES,
                        &[&recipient, &audience, &MAX_ISSUES_PER_DIGEST],
                    )
                    .await?
                    .iter()
                    .map(|issue| {
                        Ok(PendingIssue {
                            id: issue.try_get(0)?,
                            rule: issue.try_get(1)?,
                            details: issue.try_get(2)?,
                            created_at: issue.try_get(3)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                due.push(DueDigest {
                    recipient,
                    audience: IssueAudience::parse(&audience),
                    issues,
                });
            }
            Ok(due)
        })
        .await
    }

    /// Records that `digest` went out at `sent_at` under `subject`; its issues leave
    /// the queue.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when retries ran out, [`StoreError::Database`]
    /// otherwise.
    pub async fn record_digest(
        &self,
        digest: &DueDigest,
        subject: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ids: Vec<i64> = digest.issues.iter().map(|issue| issue.id).collect();
        let count = i32::try_from(ids.len()).unwrap_or(i32::MAX);
        let ids = &ids;
        self.retrying(|mut client, _| async move {
            let tx = client.transaction().await?;
            let id: i64 = tx
                .query_one(
                    INSERT_DIGEST,
                    &[
                        &digest.recipient,
                        &digest.audience.as_str(),
                        &subject,
                        &count,
                        &sent_at,
                    ],
                )
                .await?
                .try_get(0)?;
            tx.execute(TAKE_ISSUES, &[&id, ids]).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
