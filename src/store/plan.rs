//! Dry run: every batch is decided as in a live run, then rolled back and kept as a
//! plan instead.
//!
//! A dry-run apply writes the batch inside a savepoint exactly as
//! [`PgStore::apply`] would (upsert guard, cancellations, rules, audit), reads back
//! what the write did (its audit rows and queued issues), rolls the savepoint back and
//! records that as plan entries. So the booking tables never change, and the plan is
//! what the live code decides, not a second implementation of it. Dry-run progress
//! lives in `dry_run_sync`, apart from the live checkpoint in `mailbox_sync`, so a
//! switch to live starts from the live checkpoint and loses nothing; it begins at the
//! live checkpoint, so the plan is what switching to live would do from there.
//!
//! The same holds for the writes a full enumeration (cancelling what it did not see)
//! and a resync (forced rewrites, cancelled extra rows) decide: they run through the
//! same savepoint. The plan keeps the latest decision per meeting, issues included,
//! relative to the booking tables as they are, and routes issues by the room's live
//! initial sync, as a live run from here would.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use serde::Serialize;

use super::apply::{apply_in, ApplyOutcome, MailboxBatch, Repairs};
use super::effects::IssueRouting;
use super::{strip_nul, PgStore, RoomId, StoreError};
use crate::domain::{ItemId, SyncState};

/// What a dry run found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// Meetings that would be inserted.
    pub inserts: u64,
    /// Meetings that would be updated.
    pub updates: u64,
    /// Meetings that would be cancelled.
    pub cancellations: u64,
    /// Out-of-sync issues, by rule.
    pub issues: BTreeMap<String, u64>,
    /// The digests that would go out: recipient, audience, issues listed.
    pub emails: Vec<PlannedEmail>,
    /// Issues nobody could be told about (no fallback owner or administrator set).
    pub issues_without_recipient: u64,
}

/// One recipient of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedEmail {
    /// Lower-case address.
    pub recipient: String,
    /// `user` or `admin`.
    pub audience: String,
    /// Issues their digest would list.
    pub issues: u64,
}

impl std::fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "meetings to insert: {}", self.inserts)?;
        writeln!(f, "meetings to update: {}", self.updates)?;
        writeln!(f, "meetings to cancel: {}", self.cancellations)?;
        let total: u64 = self.issues.values().sum();
        writeln!(f, "out-of-sync issues: {total}")?;
        for (rule, count) in &self.issues {
            writeln!(f, "  {rule}: {count}")?;
        }
        writeln!(f, "emails that would be sent: {}", self.emails.len())?;
        for email in &self.emails {
            writeln!(
                f,
                "  to {} ({}): {} issue(s)",
                email.recipient, email.audience, email.issues
            )?;
        }
        if self.issues_without_recipient > 0 {
            writeln!(
                f,
                "issues nobody would be told about (set notifications.fallback_owner or admin): {}",
                self.issues_without_recipient
            )?;
        }
        Ok(())
    }
}

/// A room's dry-run progress starts where its live progress is: a dry run then plans
/// what switching (back) to live would do from the live checkpoint.
const ENSURE_DRY_RUN_SYNC: &str = "\
    INSERT INTO dry_run_sync (room_id, sync_state, initial_sync_complete) \
    SELECT r.id, s.sync_state, r.initial_sync = 'complete' FROM rooms r \
    LEFT JOIN mailbox_sync s ON s.room_id = r.id WHERE r.id = $1 \
    ON CONFLICT (room_id) DO NOTHING";

const LOCK_DRY_RUN_SYNC: &str = "\
    SELECT sync_state FROM dry_run_sync WHERE room_id = $1 FOR UPDATE";

const ENSURE_MAILBOX_SYNC: &str = "\
    INSERT INTO mailbox_sync (room_id) SELECT id FROM rooms WHERE id = $1 \
    ON CONFLICT (room_id) DO NOTHING";

/// Inside the savepoint only: makes the live write path see dry-run progress.
const PRETEND_PROGRESS: &str = "\
    UPDATE mailbox_sync SET sync_state = $2 WHERE room_id = $1";

/// Inside the savepoint only, while the room's live initial sync has not run: the
/// booking-owned rows the dry run planned to link to an Exchange item are linked, so
/// a later removal of that item, or the end of the initial sync, judges them as a
/// live run from scratch would (it links them, or reports them never seen).
const PRETEND_LINKS: &str = "\
    UPDATE meetings m SET exchange_item_id = p.after->>'exchange_item_id', \
        exchange_change_key = p.after->>'exchange_change_key' \
    FROM plan_entries p, rooms r \
    WHERE r.id = $1 AND r.initial_sync <> 'complete' \
      AND p.room_id = $1 AND p.action = 'link' AND m.room_id = $1 AND m.source = 'booking' \
      AND m.exchange_uid = p.exchange_uid \
      AND coalesce(m.occurrence_start, '-infinity') = coalesce(p.occurrence_start, '-infinity') \
      AND NOT (p.exchange_uid = ANY($2::text[]))";

const AUDIT_MARK: &str = "SELECT coalesce(max(id), 0) FROM meeting_audit";
const ISSUES_MARK: &str = "SELECT coalesce(max(id), 0) FROM sync_issues";

const DECIDED_ROWS: &str = "\
    SELECT room_id, exchange_uid, occurrence_start, action, before, after FROM meeting_audit \
    WHERE id > $1 ORDER BY id";
const DECIDED_ISSUES: &str = "\
    SELECT dedupe_key, rule, room_id, recipient, audience, details FROM sync_issues \
    WHERE id > $1 ORDER BY id";

/// A batch carries the whole current truth of its items, and the booking tables do
/// not move during a dry run, so the decisions about a batch's items replace every
/// earlier decision about them: a meeting created and deleted again plans nothing, as
/// a live run from here would do nothing. Issues go the same way, and so do the
/// issues of the rows the batch decided about beyond its items (the cancellations of a
/// full enumeration or a resync): those are re-decided row by row.
const FORGET_ISSUES: &str = "\
    WITH forgotten AS ( \
        SELECT unnest($2::text[]) AS uid \
        UNION SELECT exchange_uid FROM plan_entries \
            WHERE room_id = $1 AND after->>'exchange_item_id' = ANY($3::text[]) \
        UNION SELECT exchange_uid FROM meetings \
            WHERE room_id = $1 AND exchange_item_id = ANY($3::text[]) \
    ), decided AS ( \
        SELECT * FROM unnest($4::text[], $5::timestamptz[]) AS d(uid, occurrence_start) \
    ) \
    DELETE FROM plan_issues i WHERE i.decided_in = $1 \
      AND (i.exchange_uid IN (SELECT uid FROM forgotten) \
        OR EXISTS (SELECT 1 FROM decided d WHERE d.uid = i.exchange_uid \
            AND d.occurrence_start IS NOT DISTINCT FROM \
                (i.details->>'occurrence_start')::timestamptz))";
const FORGET_DECISIONS: &str = "\
    DELETE FROM plan_entries WHERE room_id = $1 \
      AND (exchange_uid = ANY($2::text[]) OR after->>'exchange_item_id' = ANY($3::text[]))";

const UPSERT_PLAN_ENTRY: &str = "\
    INSERT INTO plan_entries (room_id, exchange_uid, occurrence_start, action, before, after) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT ON CONSTRAINT plan_entries_key DO UPDATE SET \
        action = EXCLUDED.action, before = EXCLUDED.before, after = EXCLUDED.after, \
        planned_at = now()";

const INSERT_PLAN_ISSUE: &str = "\
    INSERT INTO plan_issues (dedupe_key, rule, room_id, recipient, audience, details, \
        decided_in, exchange_uid) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (dedupe_key) DO UPDATE SET recipient = EXCLUDED.recipient, \
        audience = EXCLUDED.audience, details = EXCLUDED.details, \
        decided_in = EXCLUDED.decided_in, exchange_uid = EXCLUDED.exchange_uid, \
        planned_at = now()";

const STORE_DRY_RUN_PROGRESS: &str = "\
    UPDATE dry_run_sync SET sync_state = COALESCE($2, sync_state), \
        initial_sync_complete = initial_sync_complete OR $3, updated_at = now() \
    WHERE room_id = $1";

/// Locks the room's dry-run progress (creating it from the live progress) and
/// returns its checkpoint.
pub(super) async fn lock_progress(
    tx: &Transaction<'_>,
    room: RoomId,
) -> Result<Option<String>, StoreError> {
    tx.execute(ENSURE_DRY_RUN_SYNC, &[&room.0]).await?;
    let Some(row) = tx.query_opt(LOCK_DRY_RUN_SYNC, &[&room.0]).await? else {
        return Err(StoreError::NotFound(format!("room {room}")));
    };
    Ok(row.try_get(0)?)
}

/// Applies `batch` (and `repairs`) as a dry run: decides, plans, rolls back.
pub(super) async fn apply_dry(
    tx: &mut Transaction<'_>,
    batch: &MailboxBatch,
    retry: bool,
    routing: &IssueRouting,
    repairs: &Repairs,
) -> Result<ApplyOutcome, StoreError> {
    let room = batch.room_id;
    let stored = lock_progress(tx, room).await?;
    let expected = batch.expected_sync_state.as_ref().map(SyncState::as_str);
    let new_state = batch.new_sync_state.as_ref().map(SyncState::as_str);
    let committed_before = retry && new_state.is_some() && stored.as_deref() == new_state;
    if stored.as_deref() != expected && !committed_before {
        return Err(StoreError::CheckpointMoved { room });
    }
    let mut live = batch.clone();
    live.expected_sync_state = stored.clone().map(SyncState);
    let uids: Vec<String> = batch
        .items
        .iter()
        .map(|item| strip_nul(&item.uid))
        .collect();

    // Issues are routed by the room's live initial sync (the booking tables as they
    // are), as a live run from here would route them.
    let savepoint = tx.savepoint("dry_run").await?;
    savepoint.execute(ENSURE_MAILBOX_SYNC, &[&room.0]).await?;
    savepoint
        .execute(PRETEND_PROGRESS, &[&room.0, &stored])
        .await?;
    savepoint.execute(PRETEND_LINKS, &[&room.0, &uids]).await?;
    let audit_mark: i64 = savepoint.query_one(AUDIT_MARK, &[]).await?.try_get(0)?;
    let issues_mark: i64 = savepoint.query_one(ISSUES_MARK, &[]).await?.try_get(0)?;
    let outcome = apply_in(&savepoint, &live, false, routing, repairs).await?;
    let rows = savepoint.query(DECIDED_ROWS, &[&audit_mark]).await?;
    let issues = savepoint.query(DECIDED_ISSUES, &[&issues_mark]).await?;
    savepoint.rollback().await?;

    let mut decided_uid: Vec<String> = Vec::with_capacity(rows.len());
    let mut decided_start: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        Vec::with_capacity(rows.len());
    for row in &rows {
        decided_uid.push(row.try_get(1)?);
        decided_start.push(row.try_get(2)?);
    }
    let removed: Vec<&str> = batch.removed_items.iter().map(ItemId::as_str).collect();
    tx.execute(
        FORGET_ISSUES,
        &[&room.0, &uids, &removed, &decided_uid, &decided_start],
    )
    .await?;
    tx.execute(FORGET_DECISIONS, &[&room.0, &uids, &removed])
        .await?;

    for row in &rows {
        let room_id: i64 = row.try_get(0)?;
        let uid: String = row.try_get(1)?;
        let occurrence: Option<chrono::DateTime<chrono::Utc>> = row.try_get(2)?;
        let action: String = row.try_get(3)?;
        let before: Option<serde_json::Value> = row.try_get(4)?;
        let after: Option<serde_json::Value> = row.try_get(5)?;
        tx.execute(
            UPSERT_PLAN_ENTRY,
            &[&room_id, &uid, &occurrence, &action, &before, &after],
        )
        .await?;
    }
    for issue in &issues {
        let key: String = issue.try_get(0)?;
        let rule: String = issue.try_get(1)?;
        let room_id: i64 = issue.try_get(2)?;
        let recipient: Option<String> = issue.try_get(3)?;
        let audience: String = issue.try_get(4)?;
        let details: serde_json::Value = issue.try_get(5)?;
        let uid = details.get("uid").and_then(serde_json::Value::as_str);
        tx.execute(
            INSERT_PLAN_ISSUE,
            &[
                &key, &rule, &room_id, &recipient, &audience, &details, &room.0, &uid,
            ],
        )
        .await?;
    }
    tx.execute(
        STORE_DRY_RUN_PROGRESS,
        &[&room.0, &new_state, &batch.completes_initial_sync],
    )
    .await?;
    Ok(outcome)
}

const PLAN_COUNTS: &str = "\
    SELECT p.action, count(*) FROM plan_entries p JOIN rooms r ON r.id = p.room_id \
    WHERE $1::text IS NULL OR lower(r.email) = lower($1) GROUP BY p.action";
const PLAN_RULES: &str = "\
    SELECT i.rule, count(*) FROM plan_issues i JOIN rooms r ON r.id = i.room_id \
    WHERE $1::text IS NULL OR lower(r.email) = lower($1) GROUP BY i.rule";
const PLAN_EMAILS: &str = "\
    SELECT i.recipient, i.audience, count(*) FROM plan_issues i JOIN rooms r ON r.id = i.room_id \
    WHERE $1::text IS NULL OR lower(r.email) = lower($1) \
    GROUP BY i.recipient, i.audience ORDER BY i.audience, i.recipient";
/// The dry run's checkpoint; before its first pass, the live one (see
/// `ENSURE_DRY_RUN_SYNC`).
const DRY_RUN_STATE: &str = "\
    SELECT CASE WHEN d.room_id IS NULL THEN s.sync_state ELSE d.sync_state END \
    FROM rooms r LEFT JOIN dry_run_sync d ON d.room_id = r.id \
    LEFT JOIN mailbox_sync s ON s.room_id = r.id WHERE r.id = $1";
const RESET_DRY_RUN_STATE: &str = "\
    INSERT INTO dry_run_sync (room_id, sync_state, initial_sync_complete) \
    SELECT r.id, NULL, r.initial_sync = 'complete' FROM rooms r WHERE r.id = $1 \
    ON CONFLICT (room_id) DO UPDATE SET sync_state = NULL, updated_at = now()";

impl PgStore {
    /// The same store in dry-run mode: [`PgStore::apply`] plans instead of writing,
    /// and the sync checkpoint read and reset is the dry run's own.
    #[must_use]
    pub fn into_dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Whether this store plans instead of writing.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// What the dry run planned, for every room or for the room `room_email`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn plan_summary(&self, room_email: Option<&str>) -> Result<PlanSummary, StoreError> {
        self.retrying(|client, _| async move {
            let mut summary = PlanSummary::default();
            for row in client.query(PLAN_COUNTS, &[&room_email]).await? {
                let action: String = row.try_get(0)?;
                let count = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
                match action.as_str() {
                    "insert" => summary.inserts += count,
                    "cancel" => summary.cancellations += count,
                    _ => summary.updates += count,
                }
            }
            for row in client.query(PLAN_RULES, &[&room_email]).await? {
                let count = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
                summary.issues.insert(row.try_get(0)?, count);
            }
            for row in client.query(PLAN_EMAILS, &[&room_email]).await? {
                let recipient: Option<String> = row.try_get(0)?;
                let count = u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0);
                match recipient {
                    Some(recipient) => summary.emails.push(PlannedEmail {
                        recipient,
                        audience: row.try_get(1)?,
                        issues: count,
                    }),
                    None => summary.issues_without_recipient += count,
                }
            }
            Ok(summary)
        })
        .await
    }

    pub(super) async fn dry_run_sync_state(
        &self,
        room: RoomId,
    ) -> Result<Option<SyncState>, StoreError> {
        let row = self
            .retrying(
                |client, _| async move { Ok(client.query_opt(DRY_RUN_STATE, &[&room.0]).await?) },
            )
            .await?;
        let state: Option<String> = match row {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        Ok(state.map(SyncState))
    }

    pub(super) async fn reset_dry_run_sync_state(&self, room: RoomId) -> Result<(), StoreError> {
        self.retrying(|client, _| async move {
            client.execute(RESET_DRY_RUN_STATE, &[&room.0]).await?;
            Ok(())
        })
        .await
    }
}
