//! Periodic resync: what makes the table right whatever the stream missed.
//!
//! Three passes, all per room:
//! - **incremental**: every room is queued for a catch-up from its stored sync state,
//!   so an unchanged mailbox costs one SyncFolderItems call;
//! - **roll**: the window moves forward as days pass, so each day every recurring
//!   series is fetched again and materialised up to the new window end;
//! - **full reconciliation**: a CalendarView over the window is compared with the
//!   table and every difference (missing, different or extra rows) is repaired and
//!   counted as drift. Nothing is written before the whole view is read, so an
//!   interrupted reconciliation cancels nothing.
//!
//! The periodic task only queues catch-ups and calls the other two; `booking-sync
//! resync` calls the same functions once. Writes go through [`PgStore::rewrite`], at
//! the stored checkpoint and under the same lock as a worker's pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::domain::{ItemId, MailboxAddress, SyncChange};
use crate::health::{Heartbeat, Heartbeats};
use crate::metrics as m;
use crate::pipeline::queue::Reason;
use crate::pipeline::source::{CalendarSource, SourceError, ViewEntry};
use crate::pipeline::worker::{error_chain, item_write, PassError, PassReport, Workers};
use crate::store::{
    ApplyOutcome, ChangeOrigin, ItemWrite, MeetingRow, MeetingSource, MeetingStatus, Rewrite, Room,
    StoreError,
};

/// Entries asked for per CalendarView call; a fuller range is split in two.
const VIEW_PAGE: u32 = 1000;
/// The longest range one CalendarView call covers (Exchange refuses two years).
const VIEW_SPAN: chrono::Duration = chrono::Duration::days(366);
/// A range this short that still does not fit one page cannot be read.
const SHORTEST_SPLIT: chrono::Duration = chrono::Duration::minutes(1);
/// Occurrences of a series this close to the window's end may be missing only
/// because the window moved since the last roll (daily): not drift.
const ROLL_SLACK: chrono::Duration = chrono::Duration::days(2);
/// SyncFolderItems page size when listing every item to find a series by UID.
const LIST_PAGE: u16 = 512;

/// How often the periodic passes run.
#[derive(Debug, Clone, Copy)]
pub struct ResyncSettings {
    /// Incremental catch-up of every room.
    pub interval: Duration,
    /// Full reconciliation of every room.
    pub full_interval: Duration,
    /// Rooms reconciled at the same time.
    pub concurrency: usize,
}

/// What a full reconciliation of one room found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciliation {
    /// Entries in the calendar view.
    pub viewed: u64,
    /// Meetings with no row.
    pub missing: u64,
    /// Rows that differed from Exchange.
    pub stale: u64,
    /// Confirmed rows Exchange does not have.
    pub extra: u64,
    /// Occurrences near the window's end that a roll had not materialised yet (not
    /// drift; written with the repair).
    pub rolled: u64,
    /// Rows written by the repair.
    pub outcome: ApplyOutcome,
}

impl Reconciliation {
    /// Every difference found (and repaired): the drift.
    pub fn drift(&self) -> u64 {
        self.missing + self.stale + self.extra
    }
}

/// The periodic resync of every synced room.
pub struct Resync<S> {
    /// The workers whose source, store, rooms and window the resync shares.
    pub workers: Arc<Workers<S>>,
    /// Intervals and concurrency.
    pub settings: ResyncSettings,
}

type RowKey = (String, Option<DateTime<Utc>>);

impl<S: CalendarSource> Resync<S> {
    /// Runs until `cancel` fires: catch-ups every `interval`, a window roll when the
    /// day changes, a full reconciliation every `full_interval`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut rolled_on: Option<NaiveDate> = None;
        let mut next_full = tokio::time::Instant::now() + self.settings.full_interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.interval) => {}
                () = cancel.cancelled() => return,
            }
            self.queue_catch_ups().await;
            self.report_unknown_organizers().await;
            let now = Utc::now();
            if rolled_on != Some(now.date_naive()) {
                let finished = tokio::select! {
                    () = self.roll_all(now, |_, _| {}) => true,
                    () = cancel.cancelled() => false,
                };
                if !finished {
                    return;
                }
                rolled_on = Some(now.date_naive());
            }
            if tokio::time::Instant::now() >= next_full {
                // A room whose reconciliation is cut short by shutdown has had nothing
                // written: its writes all happen after its whole view is read.
                tokio::select! {
                    () = self.reconcile_all(now, |_, _| {}) => {}
                    () = cancel.cancelled() => return,
                }
                next_full = tokio::time::Instant::now() + self.settings.full_interval;
            }
        }
    }

    /// Queues every synced room for a catch-up from its stored state; returns how
    /// many were queued.
    pub async fn queue_catch_ups(&self) -> usize {
        let mut queued = 0;
        for mailbox in self.workers.rooms.mailboxes() {
            if self
                .workers
                .queue
                .push(&mailbox, None, Reason::Resync)
                .await
                .is_err()
            {
                break;
            }
            queued += 1;
        }
        debug!(queued, "Queued the periodic catch-up of every room");
        queued
    }

    /// Re-materialises every room's series over the window at `now`, calling
    /// `done` after each room.
    pub async fn roll_all<F>(&self, now: DateTime<Utc>, mut done: F)
    where
        F: FnMut(&Room, &Result<ApplyOutcome, PassError>),
    {
        let rooms = self.rooms();
        let count = rooms.len();
        let mut results = futures::stream::iter(rooms)
            .map(|room| async move {
                let result = self.roll_room(&room, now).await;
                (room, result)
            })
            .buffer_unordered(self.settings.concurrency.max(1));
        let mut inserted = 0;
        while let Some((room, result)) = results.next().await {
            match &result {
                Ok(outcome) => inserted += outcome.inserted,
                Err(err) => {
                    metrics::counter!(m::RESYNC_ROOM_FAILURES, "pass" => "roll").increment(1);
                    warn!(room_id = room.id.0, error = %error_chain(err), "Window roll of a room failed");
                }
            }
            done(&room, &result);
        }
        info!(rooms = count, inserted, "Rolled the sync window forward");
    }

    /// Fully reconciles every room at `now`, calling `done` after each room.
    pub async fn reconcile_all<F>(&self, now: DateTime<Utc>, mut done: F)
    where
        F: FnMut(&Room, &Result<Reconciliation, PassError>),
    {
        let rooms = self.rooms();
        let count = rooms.len();
        let mut results = futures::stream::iter(rooms)
            .map(|room| async move {
                let result = self.reconcile_room(&room, now).await;
                (room, result)
            })
            .buffer_unordered(self.settings.concurrency.max(1));
        let mut drift = 0;
        let mut failed = 0;
        while let Some((room, result)) = results.next().await {
            match &result {
                Ok(report) => drift += report.drift(),
                Err(err) => {
                    failed += 1;
                    metrics::counter!(m::RESYNC_ROOM_FAILURES, "pass" => "full").increment(1);
                    warn!(room_id = room.id.0, error = %error_chain(err), "Full reconciliation of a room failed");
                }
            }
            done(&room, &result);
        }
        info!(rooms = count, drift, failed, "Full reconciliation finished");
        let outcome = if failed == 0 { "ok" } else { "failed" };
        metrics::counter!(m::RESYNC_RUNS, "outcome" => outcome).increment(1);
        if failed == 0 {
            metrics::gauge!(m::RESYNC_LAST_SUCCESS).set(Utc::now().timestamp() as f64);
        }
    }

    /// Catches every room up from its stored state, calling `done` after each room.
    pub async fn catch_up_all<F>(&self, mut done: F)
    where
        F: FnMut(&Room, &Result<PassReport, PassError>),
    {
        let rooms = self.rooms();
        let count = rooms.len();
        let mut results = futures::stream::iter(rooms)
            .map(|room| async move {
                let result = self.catch_up_room(&room).await;
                (room, result)
            })
            .buffer_unordered(self.settings.concurrency.max(1));
        while let Some((room, result)) = results.next().await {
            done(&room, &result);
        }
        info!(rooms = count, "Incremental resync finished");
    }

    /// Catches one room up from its stored state and notes the resync.
    ///
    /// # Errors
    /// A [`PassError`] when reading or writing failed.
    pub async fn catch_up_room(&self, room: &Room) -> Result<PassReport, PassError> {
        let report = match self
            .workers
            .sync_mailbox(room, &unwatched_heartbeat(), ChangeOrigin::Resync)
            .await
        {
            // A worker committed a pass meanwhile: the room is caught up anyway.
            Err(PassError::Store(StoreError::CheckpointMoved { .. })) => PassReport::default(),
            other => other?,
        };
        self.workers.store.record_resync(room.id, false, 0).await?;
        Ok(report)
    }

    /// Fetches the room's series again and materialises them over the window at
    /// `now`: occurrences that entered the window get rows, the others stay as they
    /// are (same version: nothing is written).
    ///
    /// # Errors
    /// A [`PassError`] when reading or writing failed.
    pub async fn roll_room(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, PassError> {
        let ids = self.workers.store.series_item_ids(room.id).await?;
        if ids.is_empty() {
            return Ok(ApplyOutcome::default());
        }
        let window = self.workers.window.bounds(now);
        let items = self.current_writes(&room.email, &ids, window).await?;
        let rewrite = Rewrite {
            items,
            started_at: self.workers.store.database_time().await?,
            ..Rewrite::default()
        };
        Ok(self.workers.store.rewrite(room.id, &rewrite).await?)
    }

    /// Compares the room's calendar view over the window at `now` with its rows and
    /// repairs every difference. The room is caught up first, so changes still on
    /// their way do not count as drift; nor do occurrences that entered the window
    /// since the last roll (they are materialised here all the same).
    ///
    /// # Errors
    /// A [`PassError`] when reading or writing failed; nothing is written then.
    pub async fn reconcile_room(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<Reconciliation, PassError> {
        let store = &self.workers.store;
        match self
            .workers
            .sync_mailbox(room, &unwatched_heartbeat(), ChangeOrigin::Resync)
            .await
        {
            Ok(_) | Err(PassError::Store(StoreError::CheckpointMoved { .. })) => {}
            Err(err) => return Err(err),
        }
        let started_at = store.database_time().await?;
        let window = self.workers.window.bounds(now);
        let view = self.view(&room.email, window).await?;
        let rows = store
            .meetings_overlapping(room.id, window.0, window.1)
            .await?;
        let mut report = Reconciliation {
            viewed: view.len() as u64,
            ..Reconciliation::default()
        };
        let diff = compare(&view, &rows, window.1 - ROLL_SLACK, &mut report);
        if diff.uids.is_empty() && diff.extra_rows.is_empty() {
            store.record_resync(room.id, true, 0).await?;
            return Ok(report);
        }
        let ids = self
            .item_ids_for(&room.email, &diff.uids, &view, &rows)
            .await?;
        let items = self.current_writes(&room.email, &ids, window).await?;
        let rewrite = Rewrite {
            items,
            forced: diff.forced,
            cancel_rows: diff.extra_rows,
            started_at,
        };
        report.outcome = store.rewrite(room.id, &rewrite).await?;
        store.record_resync(room.id, true, report.drift()).await?;
        if report.drift() > 0 {
            for (kind, count) in [
                ("missing", report.missing),
                ("stale", report.stale),
                ("extra", report.extra),
            ] {
                if count > 0 {
                    metrics::counter!(m::RESYNC_DRIFT, "kind" => kind).increment(count);
                }
            }
            warn!(
                room_id = room.id.0,
                missing = report.missing,
                stale = report.stale,
                extra = report.extra,
                "Full reconciliation repaired drift"
            );
        }
        Ok(report)
    }

    fn rooms(&self) -> Vec<Room> {
        self.workers
            .rooms
            .mailboxes()
            .iter()
            .filter_map(|mailbox| self.workers.rooms.get(mailbox))
            .collect()
    }

    async fn report_unknown_organizers(&self) {
        match self.workers.store.room_statuses().await {
            Ok(statuses) => {
                let unknown: i64 = statuses
                    .iter()
                    .map(|status| status.unknown_organizers)
                    .sum();
                metrics::gauge!(m::UNKNOWN_ORGANIZER_MEETINGS).set(unknown as f64);
            }
            Err(err) => {
                debug!(error = %error_chain(&err), "Could not count meetings of unknown organizers");
            }
        }
    }

    /// The whole calendar view of `window`, splitting ranges the server cut short.
    async fn view(
        &self,
        mailbox: &MailboxAddress,
        window: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<ViewEntry>, PassError> {
        let mut ranges = Vec::new();
        let mut from = window.0;
        while from < window.1 {
            let to = (from + VIEW_SPAN).min(window.1);
            ranges.push((from, to));
            from = to;
        }
        let mut entries: HashMap<RowKey, ViewEntry> = HashMap::new();
        while let Some((from, to)) = ranges.pop() {
            let page = self
                .workers
                .source
                .calendar_view(mailbox, from, to, VIEW_PAGE)
                .await?;
            if page.complete {
                for entry in page.entries {
                    entries.insert((entry.uid.clone(), entry.occurrence_start), entry);
                }
                continue;
            }
            if to - from < SHORTEST_SPLIT {
                return Err(PassError::Source(SourceError::Transient {
                    source: "a calendar view range of under a minute does not fit one page".into(),
                }));
            }
            let middle = from + (to - from) / 2;
            ranges.push((from, middle));
            ranges.push((middle, to));
        }
        Ok(entries.into_values().collect())
    }

    /// The ids of the items (singles and series masters) behind `uids`.
    async fn item_ids_for(
        &self,
        mailbox: &MailboxAddress,
        uids: &HashSet<String>,
        view: &[ViewEntry],
        rows: &[MeetingRow],
    ) -> Result<Vec<ItemId>, PassError> {
        let mut ids: HashMap<&str, ItemId> = HashMap::new();
        for entry in view {
            if entry.occurrence_start.is_none() && uids.contains(&entry.uid) {
                ids.insert(&entry.uid, entry.item_id.clone());
            }
        }
        for row in rows {
            if let (true, Some(item_id)) = (uids.contains(&row.exchange_uid), &row.exchange_item_id)
            {
                ids.entry(&row.exchange_uid)
                    .or_insert_with(|| item_id.clone());
            }
        }
        let mut found: Vec<ItemId> = ids.into_values().collect();
        if found.len() < uids.len() {
            found.extend(self.list_items_with_uid(mailbox, uids).await?);
            found.sort();
            found.dedup();
        }
        Ok(found)
    }

    /// Lists the whole calendar (SyncFolderItems from nothing, leaving the stored
    /// state alone) to find the items of some UIDs; only when no row names them.
    async fn list_items_with_uid(
        &self,
        mailbox: &MailboxAddress,
        uids: &HashSet<String>,
    ) -> Result<Vec<ItemId>, PassError> {
        let mut found = Vec::new();
        let mut state = None;
        loop {
            let page = self
                .workers
                .source
                .sync_changes(mailbox, state.as_ref(), LIST_PAGE)
                .await?;
            for change in page.changes {
                if let SyncChange::Create(summary) | SyncChange::Update(summary) = change {
                    if summary.uid.as_ref().is_some_and(|uid| uids.contains(uid)) {
                        found.push(summary.item_id);
                    }
                }
            }
            if page.includes_last_item_in_range {
                return Ok(found);
            }
            state = Some(page.sync_state);
        }
    }

    /// Fetches items and their exceptions and maps them to rows over `window`.
    async fn current_writes(
        &self,
        mailbox: &MailboxAddress,
        ids: &[ItemId],
        window: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<ItemWrite>, PassError> {
        let mut report = PassReport::default();
        let items: Vec<_> = self
            .workers
            .fetch(mailbox, ids, &mut report)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let exceptions = self
            .workers
            .fetch_exceptions(mailbox, &items, &mut report)
            .await?;
        let mut writes = Vec::with_capacity(items.len());
        for item in &items {
            match item_write(item, &exceptions, window) {
                Ok(write) => writes.push(write),
                Err(err) => {
                    warn!(error = %err, "Calendar item has a recurrence that cannot be expanded, leaving its rows");
                }
            }
        }
        Ok(writes)
    }
}

/// A heartbeat for passes the resync runs itself: the resync task sleeps between
/// rounds, so it is not one of the core loops the readiness check watches.
fn unwatched_heartbeat() -> Heartbeat {
    Heartbeats::default().register("resync")
}

/// The differences between a view and the table, as a repair needs them.
#[derive(Default)]
struct Diff {
    /// UIDs whose items must be fetched again.
    uids: HashSet<String>,
    /// Rows whose content differs at the same version.
    forced: Vec<(String, Option<DateTime<Utc>>)>,
    /// Confirmed rows Exchange does not have.
    extra_rows: Vec<i64>,
}

fn compare(
    view: &[ViewEntry],
    rows: &[MeetingRow],
    roll_edge: DateTime<Utc>,
    report: &mut Reconciliation,
) -> Diff {
    let mut diff = Diff::default();
    let by_key: HashMap<RowKey, &MeetingRow> = rows
        .iter()
        .map(|row| ((row.exchange_uid.clone(), row.occurrence_start), row))
        .collect();
    let mut viewed: HashSet<RowKey> = HashSet::with_capacity(view.len());
    for entry in view {
        let key = (entry.uid.clone(), entry.occurrence_start);
        match by_key.get(&key) {
            None if entry.occurrence_start.is_some() && entry.start >= roll_edge => {
                report.rolled += 1;
                diff.uids.insert(entry.uid.clone());
            }
            None => {
                report.missing += 1;
                diff.uids.insert(entry.uid.clone());
            }
            Some(row) if row.source == MeetingSource::Exchange && differs(entry, row) => {
                report.stale += 1;
                diff.uids.insert(entry.uid.clone());
                diff.forced.push(key.clone());
            }
            Some(_) => {}
        }
        viewed.insert(key);
    }
    for row in rows {
        let key = (row.exchange_uid.clone(), row.occurrence_start);
        if row.source == MeetingSource::Exchange
            && row.status == MeetingStatus::Confirmed
            && !viewed.contains(&key)
        {
            report.extra += 1;
            diff.extra_rows.push(row.id);
        }
    }
    diff
}

fn differs(entry: &ViewEntry, row: &MeetingRow) -> bool {
    let status = if entry.is_cancelled {
        MeetingStatus::Cancelled
    } else {
        MeetingStatus::Confirmed
    };
    row.subject != entry.subject
        || row.starts_at != entry.start
        || row.ends_at != entry.end
        || row.is_all_day != entry.is_all_day
        || row.status != status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RoomId;

    fn entry(uid: &str, start: DateTime<Utc>, subject: &str) -> ViewEntry {
        ViewEntry {
            uid: uid.to_owned(),
            item_id: ItemId::from(uid),
            occurrence_start: None,
            subject: subject.to_owned(),
            start,
            end: start + chrono::Duration::hours(1),
            is_all_day: false,
            is_cancelled: false,
        }
    }

    fn row(id: i64, uid: &str, start: DateTime<Utc>, subject: &str) -> MeetingRow {
        MeetingRow {
            id,
            room_id: RoomId(1),
            exchange_uid: uid.to_owned(),
            occurrence_start: None,
            subject: subject.to_owned(),
            starts_at: start,
            ends_at: start + chrono::Duration::hours(1),
            is_all_day: false,
            organizer_email: None,
            organizer_user_id: None,
            status: MeetingStatus::Confirmed,
            source: MeetingSource::Exchange,
            exchange_item_id: Some(ItemId::from(uid)),
            exchange_change_key: None,
            exchange_last_modified: None,
            fetched_at: None,
            updated_at: start,
        }
    }

    #[test]
    fn the_comparison_finds_missing_different_and_extra_rows_and_nothing_else() {
        let start = Utc::now();
        let mut entering = entry("series", start + chrono::Duration::days(2), "Series");
        entering.occurrence_start = Some(entering.start);
        let view = vec![
            entry("same", start, "Same"),
            entry("changed", start, "New subject"),
            entry("absent", start, "Absent"),
            entering,
        ];
        let mut cancelled = row(4, "cancelled-extra", start, "Gone");
        cancelled.status = MeetingStatus::Cancelled;
        let mut booked = row(5, "booked", start, "Booking system");
        booked.source = MeetingSource::Booking;
        let rows = vec![
            row(1, "same", start, "Same"),
            row(2, "changed", start, "Old subject"),
            row(3, "extra", start, "Extra"),
            cancelled,
            booked,
        ];
        let mut report = Reconciliation::default();

        let diff = compare(&view, &rows, start + chrono::Duration::days(1), &mut report);

        assert_eq!((report.missing, report.stale, report.extra), (1, 1, 1));
        assert_eq!(diff.extra_rows, vec![3]);
        assert_eq!(diff.forced, vec![("changed".to_owned(), None)]);
        let mut uids: Vec<_> = diff.uids.into_iter().collect();
        uids.sort();
        assert_eq!(report.rolled, 1, "entered the window: not drift");
        assert_eq!(uids, vec!["absent", "changed", "series"]);
    }
}
