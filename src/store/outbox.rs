//! The notification outbox: issues waiting for a digest, and the digests sent.
//!
//! Issues enter `sync_issues` with the write that found them
//! ([`effects`](super::effects)); here they leave it. A recipient is due when their
//! oldest waiting issue has waited a whole digest interval, no digest went to them
//! within the interval, (for users) fewer than the daily cap went out in the last 24
//! hours, and no digest of theirs is still being sent.
//!
//! Sending is claim, send, mark: [`PgStore::claim_digest`] commits the digest in state
//! `sending` with the message id its email will carry and takes its issues out of the
//! queue; the caller sends; [`PgStore::mark_digest_sent`] records that it went out. A
//! claim left `sending` (a crash or a failed send between the two) is listed by
//! [`PgStore::sending_digests`] with its issues, for the caller to resolve: ask the
//! transport whether that message id went out, and send it again only if not.

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

impl PendingIssue {
    /// Reads `id, rule, details, created_at` (the column order of the issue queries).
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.try_get(0)?,
            rule: row.try_get(1)?,
            details: row.try_get(2)?,
            created_at: row.try_get(3)?,
        })
    }
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

/// A digest claimed for sending: its row, the message id its email carries, and the
/// issues it lists.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDigest {
    /// Row id in `notification_digests`.
    pub id: i64,
    /// The Internet message id of its email, angle brackets included; the same on
    /// every attempt.
    pub message_id: String,
    /// Subject line as claimed.
    pub subject: String,
    /// When it was claimed.
    pub claimed_at: DateTime<Utc>,
    /// Sends tried so far (before this one).
    pub send_attempts: i32,
    /// Recipient, audience and issues.
    pub digest: DueDigest,
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
          WHERE d.recipient = w.recipient AND d.audience = w.audience \
            AND (d.sent_at > $1 OR d.state = 'sending')) \
      AND (w.audience = 'admin' OR (SELECT count(*) FROM notification_digests d \
          WHERE d.recipient = w.recipient AND d.audience = 'user' AND d.sent_at > $2) < $3) \
    ORDER BY w.oldest";

const WAITING_ISSUES: &str = "\
    SELECT id, rule, details, created_at FROM sync_issues \
    WHERE recipient = $1 AND audience = $2 AND digest_id IS NULL ORDER BY id LIMIT $3";

const CLAIM_DIGEST: &str = "\
    INSERT INTO notification_digests \
        (recipient, audience, subject, issue_count, sent_at, claimed_at, state, message_id) \
    VALUES ($1, $2, $3, $4, $5, $5, 'sending', $6) RETURNING id";

const SENDING_DIGESTS: &str = "\
    SELECT id, recipient, audience, subject, message_id, claimed_at, send_attempts \
    FROM notification_digests WHERE state = 'sending' AND claimed_at <= $1 ORDER BY id";

const DIGEST_ISSUES: &str = "\
    SELECT id, rule, details, created_at FROM sync_issues WHERE digest_id = $1 ORDER BY id";

const MARK_SENT: &str = "\
    UPDATE notification_digests SET state = 'sent', sent_at = $2 \
    WHERE id = $1 AND state = 'sending'";

const COUNT_ATTEMPT: &str = "\
    UPDATE notification_digests SET send_attempts = send_attempts + 1 \
    WHERE id = $1 AND state = 'sending'";

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
                    .map(PendingIssue::from_row)
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

    /// Claims `digest` for sending at `now` under `subject`, with the Internet message
    /// id `message_id` (unique; angle brackets included): commits its row in state
    /// `sending` and takes its issues out of the queue.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when retries ran out, [`StoreError::Database`]
    /// otherwise.
    pub async fn claim_digest(
        &self,
        digest: &DueDigest,
        subject: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<ClaimedDigest, StoreError> {
        let ids: Vec<i64> = digest.issues.iter().map(|issue| issue.id).collect();
        let count = i32::try_from(ids.len()).unwrap_or(i32::MAX);
        let ids = &ids;
        let id = self
            .retrying(|mut client, _| async move {
                let tx = client.transaction().await?;
                let id: i64 = tx
                    .query_one(
                        CLAIM_DIGEST,
                        &[
                            &digest.recipient,
                            &digest.audience.as_str(),
                            &subject,
                            &count,
                            &now,
                            &message_id,
                        ],
                    )
                    .await?
                    .try_get(0)?;
                tx.execute(TAKE_ISSUES, &[&id, ids]).await?;
                tx.commit().await?;
                Ok(id)
            })
            .await?;
        Ok(ClaimedDigest {
            id,
            message_id: message_id.to_owned(),
            subject: subject.to_owned(),
            claimed_at: now,
            send_attempts: 0,
            digest: digest.clone(),
        })
    }

    /// The digests still `sending` that were claimed at or before `claimed_by`, oldest
    /// first, each with the issues it took.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when retries ran out, [`StoreError::Database`]
    /// otherwise.
    pub async fn sending_digests(
        &self,
        claimed_by: DateTime<Utc>,
    ) -> Result<Vec<ClaimedDigest>, StoreError> {
        self.retrying(|client, _| async move {
            let mut claimed = Vec::new();
            for row in client.query(SENDING_DIGESTS, &[&claimed_by]).await? {
                let id: i64 = row.try_get(0)?;
                let audience: String = row.try_get(2)?;
                let issues = client
                    .query(DIGEST_ISSUES, &[&id])
                    .await?
                    .iter()
                    .map(PendingIssue::from_row)
                    .collect::<Result<Vec<_>, StoreError>>()?;
                claimed.push(ClaimedDigest {
                    id,
                    message_id: row.try_get(4)?,
                    subject: row.try_get(3)?,
                    claimed_at: row.try_get(5)?,
                    send_attempts: row.try_get(6)?,
                    digest: DueDigest {
                        recipient: row.try_get(1)?,
                        audience: IssueAudience::parse(&audience),
                        issues,
                    },
                });
            }
            Ok(claimed)
        })
        .await
    }

    /// Counts one attempt at sending the claimed digest `id` (before it is made).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when retries ran out, [`StoreError::Database`]
    /// otherwise.
    pub async fn count_send_attempt(&self, id: i64) -> Result<(), StoreError> {
        self.retrying(|client, _| async move {
            client.execute(COUNT_ATTEMPT, &[&id]).await?;
            Ok(())
        })
        .await
    }

    /// Records that the claimed digest `id` went out at `sent_at`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when retries ran out, [`StoreError::Database`]
    /// otherwise.
    pub async fn mark_digest_sent(
        &self,
        id: i64,
        sent_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.retrying(|client, _| async move {
            client.execute(MARK_SENT, &[&id, &sent_at]).await?;
            Ok(())
        })
        .await
    }
}
