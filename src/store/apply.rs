//! The one write path from Exchange to `meetings`: [`PgStore::apply`].
//!
//! A [`MailboxBatch`] carries the whole current truth of some items of one room, the
//! items that left the calendar, and the checkpoint the changes were computed from. It
//! is written in one transaction that holds the room's `mailbox_sync` row locked, so
//! the checkpoint advances exactly together with the rows it stands for.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::effects::{self, IssueRouting};
use super::plan;
use super::{strip_nul, MeetingStatus, PgStore, RoomId, StoreError};
use crate::domain::{ChangeKey, ItemId, SyncState};

/// One meeting (a single meeting, or one occurrence of a series) as Exchange has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingWrite {
    /// Original start of a series occurrence; `None` for a single meeting.
    pub occurrence_start: Option<DateTime<Utc>>,
    /// Subject line.
    pub subject: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// All-day meeting.
    pub is_all_day: bool,
    /// Organizer's address, when known.
    pub organizer_email: Option<String>,
    /// Confirmed, or cancelled by the organizer.
    pub status: MeetingStatus,
    /// The version of the modified occurrence (exception) the row's subject and
    /// status come from; `None` for a single meeting or an unmodified occurrence.
    pub exception: Option<ExceptionVersion>,
}

/// The version of an exception (a modified occurrence), which Exchange stamps apart
/// from its series master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionVersion {
    /// Change key of the exception version fetched.
    pub change_key: ChangeKey,
    /// Last-modified time of the exception version fetched.
    pub last_modified: DateTime<Utc>,
}

/// The whole current truth of one Exchange item (a single or a series) inside `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemWrite {
    /// Item id in the room's calendar.
    pub item_id: ItemId,
    /// Change key of the version fetched.
    pub change_key: ChangeKey,
    /// Last-modified time of the version fetched.
    pub last_modified: DateTime<Utc>,
    /// iCalendar UID.
    pub uid: String,
    /// The time range `meetings` covers (start inclusive, end exclusive): rows of this
    /// UID starting inside it and absent from `meetings` are cancelled.
    pub window: (DateTime<Utc>, DateTime<Utc>),
    /// Every meeting of the item inside the window.
    pub meetings: Vec<MeetingWrite>,
}

/// Changes to one room's calendar, computed from one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxBatch {
    /// The room.
    pub room_id: RoomId,
    /// Compare-and-set: the checkpoint these changes were computed from.
    pub expected_sync_state: Option<SyncState>,
    /// The checkpoint to store with the changes (None: leave it).
    pub new_sync_state: Option<SyncState>,
    /// Current versions of items.
    pub items: Vec<ItemWrite>,
    /// Items that left the calendar (deleted, moved out, ErrorItemNotFound).
    pub removed_items: Vec<ItemId>,
    /// Set initial_sync = complete (and completed_at) in the same transaction.
    pub completes_initial_sync: bool,
    /// What caused these changes, as the audit trail records it.
    pub origin: ChangeOrigin,
}

/// The source of a change, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOrigin {
    /// A pass started by a streaming notification, or by the catch-up that follows
    /// every (re)subscription.
    Stream,
    /// The periodic resync, a full reconciliation or `booking-sync resync`.
    Resync,
    /// A pass started by a pushed notification (a push receiver, such as Microsoft
    /// Graph change notifications).
    Push,
}

impl ChangeOrigin {
    /// The name stored in `meeting_audit.origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Resync => "resync",
            Self::Push => "push",
        }
    }
}

/// What [`PgStore::apply`] did, in meeting rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// New rows.
    pub inserted: u64,
    /// Rows overwritten with a newer version.
    pub updated: u64,
    /// Rows that already held this very version.
    pub unchanged: u64,
    /// Rows not written because the store holds a newer version, the item is
    /// tombstoned, or a newer copy came in the same batch.
    pub stale_skipped: u64,
    /// Rows set to cancelled because their occurrence or item disappeared.
    pub cancelled: u64,
}

impl ApplyOutcome {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ApplyOutcome) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.stale_skipped += other.stale_skipped;
        self.cancelled += other.cancelled;
    }
}

/// Column arrays of the meeting rows of one batch, one entry per row.
#[derive(Default)]
struct MeetingColumns<'a> {
    uid: Vec<String>,
    occurrence_start: Vec<Option<DateTime<Utc>>>,
    subject: Vec<String>,
    starts_at: Vec<DateTime<Utc>>,
    ends_at: Vec<DateTime<Utc>>,
    is_all_day: Vec<bool>,
    organizer_email: Vec<Option<String>>,
    status: Vec<&'static str>,
    item_id: Vec<&'a str>,
    change_key: Vec<&'a str>,
    last_modified: Vec<DateTime<Utc>>,
    exception_change_key: Vec<Option<&'a str>>,
    exception_last_modified: Vec<Option<DateTime<Utc>>>,
}

/// Column arrays describing the live items of a batch, for cancelling what they lost.
#[derive(Default)]
struct ItemColumns<'a> {
    uid: Vec<String>,
    window_start: Vec<DateTime<Utc>>,
    window_end: Vec<DateTime<Utc>>,
    last_modified: Vec<DateTime<Utc>>,
    change_key: Vec<&'a str>,
    kept_uid: Vec<String>,
    kept_occurrence_start: Vec<Option<DateTime<Utc>>>,
}

/// Identifies a meeting row inside a room: UID and occurrence.
type RowKey<'a> = (&'a str, Option<DateTime<Utc>>);

/// Makes sure the room has a `mailbox_sync` row (rooms the booking system inserted
/// have none yet).
const ENSURE_MAILBOX_SYNC: &str = "\
    INSERT INTO mailbox_sync (room_id) SELECT id FROM rooms WHERE id = $1 \
    ON CONFLICT (room_id) DO NOTHING";

const LOCK_MAILBOX_SYNC: &str = "SELECT sync_state FROM mailbox_sync WHERE room_id = $1 FOR UPDATE";

const INSERT_TOMBSTONES: &str = "\
    INSERT INTO deleted_items (room_id, exchange_item_id) \
    SELECT $1, item_id FROM unnest($2::text[]) AS removed(item_id) \
    ON CONFLICT (room_id, exchange_item_id) DO NOTHING";

const FIND_TOMBSTONES: &str = "\
    SELECT exchange_item_id FROM deleted_items \
    WHERE room_id = $1 AND exchange_item_id = ANY($2::text[])";

/// The batch upsert. Rows owned by the booking system keep their content and only get
/// their Exchange link columns. The guard lets a version in only when it is newer, or
/// equally old with a different change key. An exception row carries two versions,
/// its master's and its own: it is never overwritten by an older exception (whatever
/// the master's version), and a newer exception under the same master version is
/// let in. The final SELECT reads the snapshot taken
/// before the INSERT, so for rows the guard refused it sees the stored change key.
/// Row keys are compared with `=` (null occurrences apart, or mapped to `-infinity`)
/// rather than `IS NOT DISTINCT FROM`, which no index or hash can use, and exclusions
/// use `NOT IN`, which PostgreSQL runs as a hashed subplan: a series puts hundreds of
/// rows under one UID, and a nested loop over them costs tens of milliseconds.
const UPSERT_MEETINGS: &str = "\
    WITH input AS ( \
        SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[], \
            $6::timestamptz[], $7::bool[], $8::text[], $9::text[], $10::text[], $11::text[], \
            $12::timestamptz[], $13::text[], $14::timestamptz[]) \
        AS t(uid, occurrence_start, subject, starts_at, ends_at, is_all_day, \
            organizer_email, status, item_id, change_key, last_modified, \
            exception_change_key, exception_last_modified) \
    ), written AS ( \
        INSERT INTO meetings AS m (room_id, exchange_uid, occurrence_start, subject, \
            starts_at, ends_at, is_all_day, organizer_email, organizer_user_id, status, \
            source, exchange_item_id, exchange_change_key, exchange_last_modified, \
            exception_change_key, exception_last_modified, fetched_at, updated_at) \
        SELECT $1, i.uid, i.occurrence_start, i.subject, i.starts_at, i.ends_at, \
            i.is_all_day, i.organizer_email, u.id, i.status, 'exchange', i.item_id, \
            i.change_key, i.last_modified, i.exception_change_key, \
            i.exception_last_modified, now(), now() \
        FROM input i LEFT JOIN users u ON lower(u.email) = lower(i.organizer_email) \
        ON CONFLICT ON CONSTRAINT meetings_occurrence_key DO UPDATE SET \
            subject = CASE WHEN m.source = 'exchange' THEN EXCLUDED.subject ELSE m.subject END, \
            starts_at = CASE WHEN m.source = 'exchange' THEN EXCLUDED.starts_at \
                ELSE m.starts_at END, \
            ends_at = CASE WHEN m.source = 'exchange' THEN EXCLUDED.ends_at ELSE m.ends_at END, \
            is_all_day = CASE WHEN m.source = 'exchange' THEN EXCLUDED.is_all_day \
                ELSE m.is_all_day END, \
            organizer_email = CASE WHEN m.source = 'exchange' THEN EXCLUDED.organizer_email \
                ELSE m.organizer_email END, \
            organizer_user_id = CASE WHEN m.source = 'exchange' \
                THEN EXCLUDED.organizer_user_id ELSE m.organizer_user_id END, \
            status = CASE WHEN m.source = 'exchange' THEN EXCLUDED.status ELSE m.status END, \
            exchange_item_id = EXCLUDED.exchange_item_id, \
            exchange_change_key = EXCLUDED.exchange_change_key, \
            exchange_last_modified = EXCLUDED.exchange_last_modified, \
            exception_change_key = EXCLUDED.exception_change_key, \
            exception_last_modified = EXCLUDED.exception_last_modified, \
            fetched_at = now(), \
            updated_at = now() \
        WHERE ((m.exchange_last_modified IS NULL \
                OR m.exchange_last_modified < EXCLUDED.exchange_last_modified \
                OR (m.exchange_last_modified = EXCLUDED.exchange_last_modified \
                    AND m.exchange_change_key IS DISTINCT FROM EXCLUDED.exchange_change_key)) \
               AND NOT coalesce(EXCLUDED.exception_last_modified < m.exception_last_modified, \
                   false)) \
           OR (m.exchange_last_modified = EXCLUDED.exchange_last_modified \
               AND m.exchange_change_key = EXCLUDED.exchange_change_key \
               AND EXCLUDED.exception_last_modified IS NOT NULL \
               AND (m.exception_last_modified IS NULL \
                    OR m.exception_last_modified < EXCLUDED.exception_last_modified \
                    OR (m.exception_last_modified = EXCLUDED.exception_last_modified \
                        AND m.exception_change_key IS DISTINCT FROM \
                            EXCLUDED.exception_change_key))) \
        RETURNING (xmax = 0) AS inserted, exchange_uid, occurrence_start \
    ) \
    SELECT \
        (SELECT count(*) FROM written WHERE inserted), \
        (SELECT count(*) FROM written WHERE NOT inserted), \
        (SELECT count(*) FROM input i \
         CROSS JOIN LATERAL ( \
             SELECT s.exchange_change_key, s.exception_change_key FROM meetings s \
             WHERE s.room_id = $1 AND s.exchange_uid = i.uid \
               AND s.occurrence_start = i.occurrence_start \
             UNION ALL \
             SELECT s.exchange_change_key, s.exception_change_key FROM meetings s \
             WHERE i.occurrence_start IS NULL AND s.room_id = $1 \
               AND s.exchange_uid = i.uid AND s.occurrence_start IS NULL \
         ) stored \
         WHERE stored.exchange_change_key = i.change_key \
           AND stored.exception_change_key IS NOT DISTINCT FROM i.exception_change_key \
           AND (i.uid, coalesce(i.occurrence_start, '-infinity')) NOT IN ( \
               SELECT w.exchange_uid, coalesce(w.occurrence_start, '-infinity') \
               FROM written w))";

/// Cancels the rows a series lost: same UID, confirmed, starting inside the item's
/// window, older than the item, and not among the item's meetings. The cancelled row
/// takes the item's version stamp so a replay of an older version that still had the
/// occurrence cannot confirm it again.
const CANCEL_DROPPED_OCCURRENCES: &str = "\
    WITH items AS ( \
        SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], \
            $5::timestamptz[], $6::text[]) \
        AS t(uid, window_start, window_end, last_modified, change_key) \
    ), kept AS ( \
        SELECT * FROM unnest($7::text[], $8::timestamptz[]) AS k(uid, occurrence_start) \
    ) \
    UPDATE meetings m SET status = 'cancelled', \
        exchange_last_modified = items.last_modified, \
        exchange_change_key = items.change_key, \
        fetched_at = now(), updated_at = now() \
    FROM items \
    WHERE m.room_id = $1 AND m.exchange_uid = items.uid \
      AND m.source = 'exchange' AND m.status = 'confirmed' \
      AND m.starts_at >= items.window_start AND m.starts_at < items.window_end \
      AND m.exchange_last_modified < items.last_modified \
      AND (m.exchange_uid, coalesce(m.occurrence_start, '-infinity')) NOT IN ( \
          SELECT kept.uid, coalesce(kept.occurrence_start, '-infinity') FROM kept)";

const CANCEL_REMOVED_ITEMS: &str = "\
    UPDATE meetings SET status = 'cancelled', updated_at = now() \
    WHERE room_id = $1 AND exchange_item_id = ANY($2::text[]) \
      AND status = 'confirmed' AND source = 'exchange'";

const STORE_CHECKPOINT: &str = "\
    UPDATE mailbox_sync SET sync_state = COALESCE($2, sync_state), last_sync_at = now(), \
        updated_at = now() \
    WHERE room_id = $1";

const COMPLETE_INITIAL_SYNC: &str = "\
    UPDATE rooms SET initial_sync = 'complete', initial_sync_completed_at = now(), \
        initial_sync_error = NULL, updated_at = now() \
    WHERE id = $1";

/// Items of a room whose rows are confirmed, that a complete enumeration of the
/// folder did not see, and that nothing wrote since it began. `NOT IN` runs as a
/// hashed subplan, which matters with thousands of items.
const UNSEEN_ITEMS: &str = "\
    SELECT DISTINCT exchange_item_id FROM meetings \
    WHERE room_id = $1 AND status = 'confirmed' AND exchange_item_id IS NOT NULL \
      AND fetched_at < $3 \
      AND exchange_item_id NOT IN (SELECT unnest($2::text[]))";

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

/// Writes that a full enumeration or a resync comparison decides on top of what
/// Exchange listed. They run inside the batch's transaction, after its snapshot, so
/// the audit trail, the rules and a dry run's plan see them like any other write.
#[derive(Debug, Clone, Default)]
pub(super) struct Repairs {
    /// Every item a complete enumeration of the folder listed: items of confirmed
    /// rows not among them (and not written since `since`) are removed.
    pub seen: Option<Vec<String>>,
    /// Rows (UID, occurrence, version of the fetched item) whose content differs
    /// from Exchange at the same version: their version guard is lifted.
    pub forced: Vec<(String, Option<DateTime<Utc>>, DateTime<Utc>)>,
    /// Ids of confirmed Exchange rows to cancel unless written since `since`.
    pub cancel_rows: Vec<i64>,
    /// When the enumeration or comparison began (database clock).
    pub since: Option<DateTime<Utc>>,
}

impl PgStore {
    /// The one write path: writes a batch in one transaction and returns what
    /// happened.
    ///
    /// Items tombstoned in the room are skipped; meetings are upserted with one
    /// statement guarded against older versions; occurrences a series lost and rows
    /// of removed items are cancelled; removed items are tombstoned; the checkpoint is
    /// stored. Transient failures retry the whole transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError::CheckpointMoved`] when the stored checkpoint is not
    /// `expected_sync_state` (nothing written), [`StoreError::NotFound`] for an
    /// unknown room, [`StoreError::Unavailable`] when retries ran out,
    /// [`StoreError::Database`] otherwise.
    pub async fn apply(&self, batch: &MailboxBatch) -> Result<ApplyOutcome, StoreError> {
        let repairs = &Repairs::default();
        let outcome = self
            .retrying(|mut client, attempt| async move {
                let mut tx = client.transaction().await?;
                let outcome = if self.dry_run {
                    plan::apply_dry(&mut tx, batch, attempt > 0, &self.routing, repairs).await?
                } else {
                    apply_in(&tx, batch, attempt > 0, &self.routing, repairs).await?
                };
                tx.commit().await?;
                Ok(outcome)
            })
            .await?;
        tracing::debug!(
            room_id = batch.room_id.0,
            inserted = outcome.inserted,
            updated = outcome.updated,
            unchanged = outcome.unchanged,
            stale_skipped = outcome.stale_skipped,
            cancelled = outcome.cancelled,
            "Applied a mailbox batch"
        );
        Ok(outcome)
    }

    /// Writes `batch` with `repairs` at the room's stored checkpoint (the dry run's
    /// own in a dry run) without moving it, in one transaction: a dry run plans it.
    /// `batch.expected_sync_state` and `new_sync_state` are ignored.
    pub(super) async fn apply_at_checkpoint(
        &self,
        batch: &MailboxBatch,
        repairs: &Repairs,
    ) -> Result<ApplyOutcome, StoreError> {
        let room = batch.room_id;
        self.retrying(|mut client, attempt| async move {
            let mut tx = client.transaction().await?;
            let stored = if self.dry_run {
                plan::lock_progress(&tx, room).await?
            } else {
                tx.execute(ENSURE_MAILBOX_SYNC, &[&room.0]).await?;
                let Some(row) = tx.query_opt(LOCK_MAILBOX_SYNC, &[&room.0]).await? else {
                    return Err(StoreError::NotFound(format!("room {room}")));
                };
                row.try_get::<_, Option<String>>(0)?
            };
            let batch = MailboxBatch {
                expected_sync_state: stored.map(SyncState),
                new_sync_state: None,
                ..batch.clone()
            };
            let outcome = if self.dry_run {
                plan::apply_dry(&mut tx, &batch, attempt > 0, &self.routing, repairs).await?
            } else {
                apply_in(&tx, &batch, attempt > 0, &self.routing, repairs).await?
            };
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }
}

/// Writes `batch` and `repairs` inside `tx` (the live write path, also run by a dry
/// run inside a savepoint).
pub(super) async fn apply_in(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
    retry: bool,
    routing: &IssueRouting,
    repairs: &Repairs,
) -> Result<ApplyOutcome, StoreError> {
    let room = batch.room_id;
    lock_checkpoint(tx, batch, retry).await?;
    let with_unseen;
    let batch = match (&repairs.seen, repairs.since) {
        (Some(seen), Some(since)) => {
            let mut removed = batch.removed_items.clone();
            for row in tx.query(UNSEEN_ITEMS, &[&room.0, seen, &since]).await? {
                removed.push(ItemId(row.try_get(0)?));
            }
            with_unseen = MailboxBatch {
                removed_items: removed,
                ..batch.clone()
            };
            &with_unseen
        }
        _ => batch,
    };
    let before = effects::snapshot(tx, batch, &repairs.cancel_rows).await?;
    let mut outcome = ApplyOutcome::default();
    if !repairs.forced.is_empty() {
        let uid: Vec<&str> = repairs.forced.iter().map(|f| f.0.as_str()).collect();
        let start: Vec<Option<DateTime<Utc>>> = repairs.forced.iter().map(|f| f.1).collect();
        let version: Vec<DateTime<Utc>> = repairs.forced.iter().map(|f| f.2).collect();
        tx.execute(LIFT_GUARD, &[&room.0, &uid, &start, &version])
            .await?;
    }
    if let (false, Some(since)) = (repairs.cancel_rows.is_empty(), repairs.since) {
        outcome.cancelled += tx
            .execute(CANCEL_ROWS, &[&room.0, &repairs.cancel_rows, &since])
            .await?;
    }

    let removed: Vec<&str> = batch.removed_items.iter().map(ItemId::as_str).collect();
    if !removed.is_empty() {
        tx.execute(INSERT_TOMBSTONES, &[&room.0, &removed]).await?;
    }
    let tombstoned = tombstoned_items(tx, batch).await?;
    let (live, dead): (Vec<&ItemWrite>, Vec<&ItemWrite>) = batch
        .items
        .iter()
        .partition(|item| !tombstoned.contains(item.item_id.as_str()));

    let upserted = upsert_meetings(tx, room, &live).await?;
    outcome.inserted = upserted.inserted;
    outcome.updated = upserted.updated;
    outcome.unchanged = upserted.unchanged;
    outcome.stale_skipped = upserted.stale_skipped
        + dead
            .iter()
            .map(|item| item.meetings.len() as u64)
            .sum::<u64>();
    if !live.is_empty() {
        let items = item_columns(&live);
        outcome.cancelled += tx
            .execute(
                CANCEL_DROPPED_OCCURRENCES,
                &[
                    &room.0,
                    &items.uid,
                    &items.window_start,
                    &items.window_end,
                    &items.last_modified,
                    &items.change_key,
                    &items.kept_uid,
                    &items.kept_occurrence_start,
                ],
            )
            .await?;
    }
    if !removed.is_empty() {
        outcome.cancelled += tx
            .execute(CANCEL_REMOVED_ITEMS, &[&room.0, &removed])
            .await?;
    }

    let issues = effects::record(tx, batch, before, &repairs.cancel_rows, routing).await?;
    if issues > 0 {
        tracing::debug!(room_id = room.0, issues, "Found out-of-sync issues");
    }
    let new_state = batch.new_sync_state.as_ref().map(SyncState::as_str);
    tx.execute(STORE_CHECKPOINT, &[&room.0, &new_state]).await?;
    if batch.completes_initial_sync {
        tx.execute(COMPLETE_INITIAL_SYNC, &[&room.0]).await?;
    }
    Ok(outcome)
}

/// Upserts every meeting of the live items with one statement; fills every count of
/// the outcome but `cancelled`.
async fn upsert_meetings(
    tx: &Transaction<'_>,
    room: RoomId,
    live: &[&ItemWrite],
) -> Result<ApplyOutcome, StoreError> {
    let (columns, superseded) = meeting_columns(live);
    let mut outcome = ApplyOutcome {
        stale_skipped: superseded,
        ..ApplyOutcome::default()
    };
    if columns.uid.is_empty() {
        return Ok(outcome);
    }
    let row = tx
        .query_one(
            UPSERT_MEETINGS,
            &[
                &room.0,
                &columns.uid,
                &columns.occurrence_start,
                &columns.subject,
                &columns.starts_at,
                &columns.ends_at,
                &columns.is_all_day,
                &columns.organizer_email,
                &columns.status,
                &columns.item_id,
                &columns.change_key,
                &columns.last_modified,
                &columns.exception_change_key,
                &columns.exception_last_modified,
            ],
        )
        .await?;
    outcome.inserted = count(row.try_get(0)?);
    outcome.updated = count(row.try_get(1)?);
    outcome.unchanged = count(row.try_get(2)?);
    let rows = columns.uid.len() as u64;
    outcome.stale_skipped +=
        rows.saturating_sub(outcome.inserted + outcome.updated + outcome.unchanged);
    Ok(outcome)
}

/// Locks the room's checkpoint row and checks it is the one the batch expects.
///
/// On a retry the checkpoint may already be the batch's new one: the previous
/// attempt committed but its answer was lost. The writes are idempotent, so running
/// them again is harmless and reports the rows as unchanged.
async fn lock_checkpoint(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
    retry: bool,
) -> Result<(), StoreError> {
    let room = batch.room_id;
    tx.execute(ENSURE_MAILBOX_SYNC, &[&room.0]).await?;
    let Some(row) = tx.query_opt(LOCK_MAILBOX_SYNC, &[&room.0]).await? else {
        return Err(StoreError::NotFound(format!("room {room}")));
    };
    let stored: Option<String> = row.try_get(0)?;
    let stored = stored.as_deref();
    let expected = batch.expected_sync_state.as_ref().map(SyncState::as_str);
    let committed_before = retry
        && batch.new_sync_state.is_some()
        && stored == batch.new_sync_state.as_ref().map(SyncState::as_str);
    if stored == expected || committed_before {
        Ok(())
    } else {
        Err(StoreError::CheckpointMoved { room })
    }
}

async fn tombstoned_items(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
) -> Result<HashSet<String>, StoreError> {
    if batch.items.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<&str> = batch
        .items
        .iter()
        .map(|item| item.item_id.as_str())
        .collect();
    let rows = tx.query(FIND_TOMBSTONES, &[&batch.room_id.0, &ids]).await?;
    rows.iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)
}

/// Flattens the meetings of the live items into column arrays. A row key (UID,
/// occurrence) may appear once per statement, so when several items carry the same
/// key the newest version wins (the later one on a tie); the number of rows dropped
/// that way is returned beside the columns.
fn meeting_columns<'a>(items: &[&'a ItemWrite]) -> (MeetingColumns<'a>, u64) {
    let mut chosen: HashMap<RowKey<'_>, (&ItemWrite, &MeetingWrite)> = HashMap::new();
    let mut order = Vec::new();
    let mut superseded = 0;
    for item in items {
        for meeting in &item.meetings {
            let key = (item.uid.as_str(), meeting.occurrence_start);
            match chosen.get(&key) {
                Some((held, _)) => {
                    superseded += 1;
                    if held.last_modified <= item.last_modified {
                        chosen.insert(key, (item, meeting));
                    }
                }
                None => {
                    chosen.insert(key, (item, meeting));
                    order.push(key);
                }
            }
        }
    }
    let mut columns = MeetingColumns::default();
    for key in order {
        let (item, meeting) = chosen[&key];
        columns.uid.push(strip_nul(&item.uid));
        columns.occurrence_start.push(meeting.occurrence_start);
        columns.subject.push(strip_nul(&meeting.subject));
        columns.starts_at.push(meeting.starts_at);
        columns.ends_at.push(meeting.ends_at);
        columns.is_all_day.push(meeting.is_all_day);
        columns
            .organizer_email
            .push(meeting.organizer_email.as_deref().map(strip_nul));
        columns.status.push(meeting.status.as_str());
        columns.item_id.push(item.item_id.as_str());
        columns.change_key.push(item.change_key.as_str());
        columns.last_modified.push(item.last_modified);
        columns.exception_change_key.push(
            meeting
                .exception
                .as_ref()
                .map(|exception| exception.change_key.as_str()),
        );
        columns.exception_last_modified.push(
            meeting
                .exception
                .as_ref()
                .map(|exception| exception.last_modified),
        );
    }
    (columns, superseded)
}

fn item_columns<'a>(items: &[&'a ItemWrite]) -> ItemColumns<'a> {
    let mut columns = ItemColumns::default();
    for item in items {
        let uid = strip_nul(&item.uid);
        columns.window_start.push(item.window.0);
        columns.window_end.push(item.window.1);
        columns.last_modified.push(item.last_modified);
        columns.change_key.push(item.change_key.as_str());
        for meeting in &item.meetings {
            columns.kept_uid.push(uid.clone());
            columns.kept_occurrence_start.push(meeting.occurrence_start);
        }
        columns.uid.push(uid);
    }
    columns
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
