//! What a write did to each meeting row, and what follows from it: the audit trail,
//! the out-of-sync issues the [`rules`](crate::rules) find, the services they flag.
//!
//! [`PgStore::apply`](super::PgStore::apply) takes a [`Snapshot`] of the rows a batch
//! can touch before writing and calls [`record`] after, inside the same transaction:
//! so an audit row, a flagged service and a queued issue exist exactly when the change
//! they stand for was committed, and a replay (which changes nothing) adds nothing.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use serde_json::{json, Value};
use tokio_postgres::Row;

use super::apply::{ItemWrite, MailboxBatch, MeetingWrite};
use super::{strip_nul, StoreError};
use crate::domain::ItemId;
use crate::rules::{
    self, Audience, ExchangeCopy, Issue, MeetingChange, MeetingState, OtherRoomCopy,
};

/// Who is told about the issues the rules find.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueRouting {
    /// Told about unknown organizers, and about issues of meetings without organizer.
    pub fallback_owner: Option<String>,
    /// Receives the report of issues found during a room's initial sync.
    pub admin: Option<String>,
    /// Issues found during a room's initial sync go to the organizers themselves
    /// (`true`) or to the administrator's report (`false`, the default).
    pub initial_sync_to_users: bool,
}

/// The rows a batch can touch, as they were before it.
pub(super) struct Snapshot {
    rows: HashMap<i64, StoredRow>,
}

/// A meeting row with the fields the audit records.
#[derive(Debug, Clone)]
struct StoredRow {
    state: MeetingState,
    is_all_day: bool,
    item_id: Option<String>,
}

const ROW_COLUMNS: &str = "m.id, m.room_id, m.exchange_uid, m.occurrence_start, m.subject, \
    m.starts_at, m.ends_at, m.is_all_day, m.organizer_email, \
    m.organizer_user_id IS NOT NULL, m.status = 'cancelled', m.source = 'booking', \
    m.exchange_change_key, m.exchange_item_id";

const ALL_DAY_COLUMN: usize = 7;
const ITEM_ID_COLUMN: usize = 13;

fn touched_rows_sql() -> String {
    format!(
        "SELECT {ROW_COLUMNS} FROM meetings m WHERE m.room_id = $1 \
         AND (m.exchange_uid = ANY($2::text[]) OR m.exchange_item_id = ANY($3::text[]) \
              OR m.id = ANY($4::bigint[]))"
    )
}

fn never_seen_sql() -> String {
    format!(
        "SELECT {ROW_COLUMNS} FROM meetings m WHERE m.room_id = $1 AND m.source = 'booking' \
         AND m.status = 'confirmed' AND m.exchange_item_id IS NULL AND m.ends_at > now()"
    )
}

fn other_rooms_sql() -> String {
    format!(
        "SELECT {ROW_COLUMNS}, (SELECT count(*) FROM meeting_services s \
             WHERE s.meeting_id = m.id AND s.status IN ('active', 'needs_attention')) \
         FROM meetings m WHERE m.room_id <> $1 AND m.exchange_uid = ANY($2::text[])"
    )
}

const ACTIVE_SERVICES: &str = "\
    SELECT meeting_id, count(*) FROM meeting_services \
    WHERE meeting_id = ANY($1::bigint[]) AND status = 'active' GROUP BY meeting_id";

const LISTED_SERVICES: &str = "\
    SELECT meeting_id, kind, description, deadline FROM meeting_services \
    WHERE meeting_id = ANY($1::bigint[]) AND status <> 'cancelled' ORDER BY id";

const FLAG_SERVICES: &str = "\
    UPDATE meeting_services SET status = 'needs_attention', updated_at = now() \
    WHERE meeting_id = ANY($1::bigint[]) AND status = 'active'";

const ROOM_NAMES: &str = "SELECT id, name, email FROM rooms WHERE id = ANY($1::bigint[])";

const ROOM_INITIAL_SYNC: &str = "SELECT initial_sync FROM rooms WHERE id = $1";

const INSERT_ISSUES: &str = "\
    INSERT INTO sync_issues (dedupe_key, rule, room_id, meeting_id, recipient, audience, \
        details) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], \
        $6::text[], $7::jsonb[]) \
    ON CONFLICT ON CONSTRAINT sync_issues_dedupe_key DO NOTHING";

const INSERT_AUDIT: &str = "\
    INSERT INTO meeting_audit (room_id, meeting_id, exchange_uid, occurrence_start, action, \
        origin, before, after) \
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], \
        $5::text[], $6::text[], $7::jsonb[], $8::jsonb[])";

/// Reads the rows of the batch's UIDs and removed items, and the rows `extra_rows`
/// names, before the batch writes.
pub(super) async fn snapshot(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
    extra_rows: &[i64],
) -> Result<Snapshot, StoreError> {
    let rows = touched_rows(tx, batch, extra_rows).await?;
    Ok(Snapshot {
        rows: rows.into_iter().map(|row| (row.state.id, row)).collect(),
    })
}

/// Compares the rows with `before`, writes the audit trail, runs the rules, flags the
/// services they name and queues their issues. Returns the number of issues found.
pub(super) async fn record(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
    before: Snapshot,
    extra_rows: &[i64],
    routing: &IssueRouting,
) -> Result<u64, StoreError> {
    let origin = batch.origin.as_str();
    let mut after = touched_rows(tx, batch, extra_rows).await?;
    // Booking rows the initial sync never saw: looked at, not written.
    let mut never_seen: HashMap<i64, StoredRow> = HashMap::new();
    if batch.completes_initial_sync {
        for row in tx.query(&never_seen_sql(), &[&batch.room_id.0]).await? {
            let row = stored_row(&row)?;
            if !after.iter().any(|held| held.state.id == row.state.id) {
                never_seen.insert(row.state.id, row.clone());
                after.push(row);
            }
        }
    }
    let mut changes = Vec::new();
    let mut audit = AuditColumns::default();
    let exchange_copies = exchange_copies(batch);
    let removed: HashSet<&str> = batch.removed_items.iter().map(ItemId::as_str).collect();
    for row in after {
        let previous = before
            .rows
            .get(&row.state.id)
            .or_else(|| never_seen.get(&row.state.id));
        let exchange = if never_seen.contains_key(&row.state.id) {
            ExchangeCopy::NeverSeen
        } else {
            exchange_copy(&row, &exchange_copies, &removed)
        };
        let action = action_of(previous, &row);
        if let Some(action) = action {
            audit.push(previous, &row, action, origin);
        }
        if action.is_some() || exchange != ExchangeCopy::Unchanged {
            changes.push(MeetingChange {
                before: previous.map(|previous| previous.state.clone()),
                after: row.state,
                exchange,
                active_services: 0,
                other_rooms: Vec::new(),
            });
        }
    }
    audit.insert(tx).await?;
    if changes.is_empty() {
        return Ok(0);
    }
    add_services(tx, batch, &mut changes).await?;
    let issues: Vec<Issue> = changes.iter().flat_map(rules::evaluate).collect();
    if issues.is_empty() {
        return Ok(0);
    }
    let flagged: Vec<i64> = issues
        .iter()
        .filter(|issue| issue.flag_services)
        .map(|issue| issue.meeting.id)
        .collect();
    let details = describe(tx, &issues).await?;
    if !flagged.is_empty() {
        tx.execute(FLAG_SERVICES, &[&flagged]).await?;
    }
    queue_issues(tx, batch, &issues, details, routing).await?;
    Ok(issues.len() as u64)
}

async fn touched_rows(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
    extra_rows: &[i64],
) -> Result<Vec<StoredRow>, StoreError> {
    let uids: Vec<String> = batch
        .items
        .iter()
        .map(|item| strip_nul(&item.uid))
        .collect();
    let removed: Vec<&str> = batch.removed_items.iter().map(ItemId::as_str).collect();
    if uids.is_empty() && removed.is_empty() && extra_rows.is_empty() {
        return Ok(Vec::new());
    }
    tx.query(
        &touched_rows_sql(),
        &[&batch.room_id.0, &uids, &removed, &extra_rows],
    )
    .await?
    .iter()
    .map(stored_row)
    .collect()
}

fn stored_row(row: &Row) -> Result<StoredRow, StoreError> {
    Ok(StoredRow {
        state: meeting_state(row)?,
        is_all_day: row.try_get(ALL_DAY_COLUMN)?,
        item_id: row.try_get(ITEM_ID_COLUMN)?,
    })
}

fn meeting_state(row: &Row) -> Result<MeetingState, StoreError> {
    Ok(MeetingState {
        id: row.try_get(0)?,
        room_id: row.try_get(1)?,
        uid: row.try_get(2)?,
        occurrence_start: row.try_get(3)?,
        subject: row.try_get(4)?,
        starts_at: row.try_get(5)?,
        ends_at: row.try_get(6)?,
        organizer_email: row.try_get(8)?,
        organizer_known: row.try_get(9)?,
        cancelled: row.try_get(10)?,
        from_booking: row.try_get(11)?,
        change_key: row.try_get(12)?,
    })
}

/// Identifies a meeting row inside a room: UID and occurrence.
type RowKey = (String, Option<DateTime<Utc>>);

/// The Exchange meetings of the batch, by row key, with the change key of their item.
fn exchange_copies(batch: &MailboxBatch) -> HashMap<RowKey, (&ItemWrite, &MeetingWrite)> {
    let mut copies = HashMap::new();
    for item in &batch.items {
        for meeting in &item.meetings {
            copies.insert(
                (strip_nul(&item.uid), meeting.occurrence_start),
                (item, meeting),
            );
        }
    }
    copies
}

/// What Exchange holds of a booking-owned row, as far as this batch says.
fn exchange_copy(
    row: &StoredRow,
    copies: &HashMap<RowKey, (&ItemWrite, &MeetingWrite)>,
    removed: &HashSet<&str>,
) -> ExchangeCopy {
    if !row.state.from_booking {
        return ExchangeCopy::Unchanged;
    }
    let key = (row.state.uid.clone(), row.state.occurrence_start);
    match copies.get(&key) {
        // Only a version the write let in speaks: the row carries its change key.
        Some((item, meeting))
            if row.state.change_key.as_deref() == Some(item.change_key.as_str()) =>
        {
            ExchangeCopy::At {
                starts_at: meeting.starts_at,
                ends_at: meeting.ends_at,
            }
        }
        Some(_) => ExchangeCopy::Unchanged,
        None if row
            .item_id
            .as_deref()
            .is_some_and(|item| removed.contains(item)) =>
        {
            ExchangeCopy::Removed
        }
        None => ExchangeCopy::Unchanged,
    }
}

/// The audit action a row went through, if it changed.
fn action_of(before: Option<&StoredRow>, after: &StoredRow) -> Option<&'static str> {
    let Some(before) = before else {
        return Some("insert");
    };
    let (old, new) = (&before.state, &after.state);
    if !old.cancelled && new.cancelled {
        return Some("cancel");
    }
    let content_changed = old.subject != new.subject
        || old.starts_at != new.starts_at
        || old.ends_at != new.ends_at
        || before.is_all_day != after.is_all_day
        || old.organizer_email != new.organizer_email
        || old.organizer_known != new.organizer_known
        || old.cancelled != new.cancelled;
    if content_changed {
        Some("update")
    } else if new.from_booking
        && (old.change_key != new.change_key || before.item_id != after.item_id)
    {
        Some("link")
    } else {
        None
    }
}

fn audit_fields(row: &StoredRow) -> Value {
    let state = &row.state;
    json!({
        "subject": state.subject,
        "starts_at": state.starts_at,
        "ends_at": state.ends_at,
        "is_all_day": row.is_all_day,
        "organizer_email": state.organizer_email,
        "status": if state.cancelled { "cancelled" } else { "confirmed" },
        "source": if state.from_booking { "booking" } else { "exchange" },
        "exchange_item_id": row.item_id,
        "exchange_change_key": state.change_key,
    })
}

/// Column arrays of the audit rows of one batch.
#[derive(Default)]
struct AuditColumns {
    room_id: Vec<i64>,
    meeting_id: Vec<i64>,
    uid: Vec<String>,
    occurrence_start: Vec<Option<DateTime<Utc>>>,
    action: Vec<&'static str>,
    origin: Vec<String>,
    before: Vec<Option<Value>>,
    after: Vec<Option<Value>>,
}

impl AuditColumns {
    fn push(
        &mut self,
        before: Option<&StoredRow>,
        after: &StoredRow,
        action: &'static str,
        origin: &str,
    ) {
        self.room_id.push(after.state.room_id);
        self.meeting_id.push(after.state.id);
        self.uid.push(after.state.uid.clone());
        self.occurrence_start.push(after.state.occurrence_start);
        self.action.push(action);
        self.origin.push(origin.to_owned());
        self.before.push(before.map(audit_fields));
        self.after.push(Some(audit_fields(after)));
    }

    async fn insert(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.room_id.is_empty() {
            return Ok(());
        }
        tx.execute(
            INSERT_AUDIT,
            &[
                &self.room_id,
                &self.meeting_id,
                &self.uid,
                &self.occurrence_start,
                &self.action,
                &self.origin,
                &self.before,
                &self.after,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Fills in each change's active services and the copies of its meeting in other rooms
/// (only inserted and cancelled rows can be one side of a room change).
async fn add_services(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
    changes: &mut [MeetingChange],
) -> Result<(), StoreError> {
    let ids: Vec<i64> = changes.iter().map(|change| change.after.id).collect();
    let counts: HashMap<i64, i64> = tx
        .query(ACTIVE_SERVICES, &[&ids])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    let room_change_uids: Vec<String> = changes
        .iter()
        .filter(|change| change.before.is_none() || change.after.cancelled)
        .map(|change| change.after.uid.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut others: HashMap<RowKey, Vec<OtherRoomCopy>> = HashMap::new();
    if !room_change_uids.is_empty() {
        for row in tx
            .query(&other_rooms_sql(), &[&batch.room_id.0, &room_change_uids])
            .await?
        {
            let meeting = meeting_state(&row)?;
            let services: i64 = row.try_get(ITEM_ID_COLUMN + 1)?;
            others
                .entry((meeting.uid.clone(), meeting.occurrence_start))
                .or_default()
                .push(OtherRoomCopy {
                    meeting,
                    services: u32::try_from(services).unwrap_or(u32::MAX),
                });
        }
    }
    for change in changes {
        let services = counts.get(&change.after.id).copied().unwrap_or(0);
        change.active_services = u32::try_from(services).unwrap_or(u32::MAX);
        let key = (change.after.uid.clone(), change.after.occurrence_start);
        change.other_rooms = others.get(&key).cloned().unwrap_or_default();
    }
    Ok(())
}

/// The details of each issue as shown to a person: rooms by name, times, services.
async fn describe(tx: &Transaction<'_>, issues: &[Issue]) -> Result<Vec<Value>, StoreError> {
    let meeting_ids: Vec<i64> = issues.iter().map(|issue| issue.meeting.id).collect();
    let mut services: HashMap<i64, Vec<Value>> = HashMap::new();
    for row in tx.query(LISTED_SERVICES, &[&meeting_ids]).await? {
        let deadline: Option<DateTime<Utc>> = row.try_get(3)?;
        services.entry(row.try_get(0)?).or_default().push(json!({
            "kind": row.try_get::<_, String>(1)?,
            "description": row.try_get::<_, String>(2)?,
            "deadline": deadline,
        }));
    }
    let room_ids: Vec<i64> = issues
        .iter()
        .flat_map(|issue| {
            std::iter::once(issue.meeting.room_id).chain(issue.now.as_ref().map(|now| now.room_id))
        })
        .collect();
    let mut rooms: HashMap<i64, (String, String)> = HashMap::new();
    for row in tx.query(ROOM_NAMES, &[&room_ids]).await? {
        rooms.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    let room = |id: i64| {
        rooms.get(&id).map_or_else(
            || json!(null),
            |(name, email)| json!({"name": name, "email": email}),
        )
    };
    Ok(issues
        .iter()
        .map(|issue| {
            let meeting = &issue.meeting;
            json!({
                "rule": issue.rule.as_str(),
                "subject": meeting.subject,
                "uid": meeting.uid,
                "occurrence_start": meeting.occurrence_start,
                "starts_at": meeting.starts_at,
                "ends_at": meeting.ends_at,
                "organizer_email": meeting.organizer_email,
                "room": room(meeting.room_id),
                "now": issue.now.as_ref().map(|now| json!({
                    "starts_at": now.starts_at,
                    "ends_at": now.ends_at,
                    "room": room(now.room_id),
                })),
                "services": services.get(&meeting.id).cloned().unwrap_or_default(),
            })
        })
        .collect())
}

/// Queues the issues in the outbox, each to its recipient; an issue already queued
/// (same dedupe key) is left as it is.
async fn queue_issues(
    tx: &Transaction<'_>,
    batch: &MailboxBatch,
    issues: &[Issue],
    details: Vec<Value>,
    routing: &IssueRouting,
) -> Result<(), StoreError> {
    let initial_sync: String = tx
        .query_one(ROOM_INITIAL_SYNC, &[&batch.room_id.0])
        .await?
        .try_get(0)?;
    let to_admin = initial_sync != "complete" && !routing.initial_sync_to_users;
    let mut keys = Vec::with_capacity(issues.len());
    let mut rules = Vec::with_capacity(issues.len());
    let mut rooms = Vec::with_capacity(issues.len());
    let mut meetings = Vec::with_capacity(issues.len());
    let mut recipients = Vec::with_capacity(issues.len());
    let mut audiences = Vec::with_capacity(issues.len());
    for issue in issues {
        keys.push(issue.dedupe_key());
        rules.push(issue.rule.as_str());
        rooms.push(issue.meeting.room_id);
        meetings.push(issue.meeting.id);
        let (recipient, audience) = if to_admin {
            (routing.admin.clone(), "admin")
        } else {
            let person = match &issue.audience {
                Audience::Organizer(Some(email)) => Some(email.clone()),
                Audience::Organizer(None) | Audience::FallbackOwner => {
                    routing.fallback_owner.clone()
                }
            };
            (person, "user")
        };
        recipients.push(recipient.map(|address| address.trim().to_ascii_lowercase()));
        audiences.push(audience);
    }
    tx.execute(
        INSERT_ISSUES,
        &[
            &keys,
            &rules,
            &rooms,
            &meetings,
            &recipients,
            &audiences,
            &details,
        ],
    )
    .await?;
    Ok(())
}
