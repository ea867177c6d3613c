//! Periodic resync: what makes the table right whatever the stream missed.
//!
//! Three passes, all per room:
//! - **incremental**: every room is queued for a catch-up from its stored sync state,
//!   so an unchanged mailbox costs one SyncFolderItems call;
//! - **roll**: the window moves forward as days pass, so each day every recurring
//!   series is fetched again and materialised up to the new window end;
//! - **full reconciliation**: a CalendarView over the window is compared with the
//!   table, and every difference the fast path failed to fix (missing, different or
//!   extra rows) is repaired and counted as drift. Nothing is written before the
//!   whole view is read, so an interrupted reconciliation cancels nothing.
//!
//! A difference found while changes keep arriving is only a candidate: the change
//! behind it may be on its way through the streaming path. It counts as drift, and
//! is repaired, only when it outlives a catch-up that started after the view was
//! read, its row was not written since the comparison began, and Exchange still
//! says what the view said. The rest are changes newer than the comparison (the
//! view, or the table): they are left to the normal path and counted as in flight.
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
use crate::logging::error_chain;
use crate::metrics as m;
use crate::pipeline::queue::Reason;
use crate::pipeline::source::{CalendarSource, SourceError, ViewEntry};
use crate::pipeline::worker::{item_write, PassError, PassReport, Workers};
use crate::store::{
    ApplyOutcome, ChangeOrigin, ItemWrite, MeetingRow, MeetingSource, MeetingStatus, MeetingWrite,
    Rewrite, Room, StoreError,
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
/// Catch-ups tried after the view before a busy room's candidates are left to the
/// next reconciliation (each attempt loses only to a worker's pass that committed).
const SETTLE_ATTEMPTS: usize = 3;

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
    /// Differences that came from changes newer than the comparison: settled by the
    /// catch-up after the view or by a worker, or made in Exchange after the view.
    /// Not drift: left to the normal path, nothing is written for them.
    pub in_flight: u64,
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
    /// repairs every difference the fast path failed to fix. The room is caught up
    /// first, so few changes are still on their way; a difference is then confirmed
    /// (see `confirm`) after a second catch-up, so those that were on their way do
    /// not count as drift either. Nor do occurrences that entered the window since
    /// the last roll (they are materialised here all the same).
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
        let candidates = compare(&view, &rows, window.1 - ROLL_SLACK);
        if candidates.is_empty() {
            store.record_resync(room.id, true, 0).await?;
            return Ok(report);
        }
        // Whatever Exchange changed before the view was read is applied once a
        // catch-up that started after it has committed.
        if !self.settle(room).await? {
            report.in_flight = candidates
                .iter()
                .filter(|candidate| candidate.kind != Kind::Rolled)
                .count() as u64;
            info!(
                room_id = room.id.0,
                candidates = report.in_flight,
                "Room kept changing during its full reconciliation; its differences are left to the next one"
            );
            store.record_resync(room.id, true, 0).await?;
            return Ok(report);
        }
        // Extra rows need no fetch: Exchange had no such meeting when the view was
        // read, and the catch-up after it would have written their rows had that
        // changed since.
        let uids: HashSet<String> = candidates
            .iter()
            .filter(|candidate| candidate.kind != Kind::Extra)
            .map(|candidate| candidate.key.0.clone())
            .collect();
        let ids = self.item_ids_for(&room.email, &uids, &view, &rows).await?;
        let items = self.current_writes(&room.email, &ids, window).await?;
        let rows_now = store
            .meetings_overlapping(room.id, window.0, window.1)
            .await?;
        let repair = confirm(&candidates, &items, &rows_now, started_at, &mut report);
        if repair.uids.is_empty() && repair.extra_rows.is_empty() {
            store.record_resync(room.id, true, 0).await?;
            self.log_in_flight(room, &report);
            return Ok(report);
        }
        let rewrite = Rewrite {
            items: items
                .into_iter()
                .filter(|item| repair.uids.contains(&item.uid))
                .collect(),
            forced: repair.forced,
            cancel_rows: repair.extra_rows,
            started_at,
        };
        report.outcome = store.rewrite(room.id, &rewrite).await?;
        store.record_resync(room.id, true, report.drift()).await?;
        self.log_in_flight(room, &report);
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

    /// Catches the room up until a pass commits (`true`), or until
    /// [`SETTLE_ATTEMPTS`] passes all lost to a worker's (`false`).
    async fn settle(&self, room: &Room) -> Result<bool, PassError> {
        for _ in 0..SETTLE_ATTEMPTS {
            match self
                .workers
                .sync_mailbox(room, &unwatched_heartbeat(), ChangeOrigin::Resync)
                .await
            {
                Ok(_) => return Ok(true),
                Err(PassError::Store(StoreError::CheckpointMoved { .. })) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }

    fn log_in_flight(&self, room: &Room, report: &Reconciliation) {
        if report.in_flight > 0 {
            debug!(
                room_id = room.id.0,
                in_flight = report.in_flight,
                "Differences from changes newer than the comparison, left to the normal path"
            );
        }
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

/// What a difference between the view and the table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// In the view, no row.
    Missing,
    /// A row whose content differs from the view.
    Stale,
    /// A confirmed row the view does not have.
    Extra,
    /// An occurrence near the window's end that a roll had not materialised yet.
    Rolled,
}

/// One difference between a view and the table: a candidate for drift.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    kind: Kind,
    key: RowKey,
    /// What the view said (`None` for an extra row: nothing).
    seen: Option<Content>,
}

/// The fields a view entry, a row and a fetched meeting share.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Content {
    subject: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    is_all_day: bool,
    status: MeetingStatus,
}

impl Content {
    fn of_entry(entry: &ViewEntry) -> Self {
        Self {
            subject: entry.subject.clone(),
            start: entry.start,
            end: entry.end,
            is_all_day: entry.is_all_day,
            status: if entry.is_cancelled {
                MeetingStatus::Cancelled
            } else {
                MeetingStatus::Confirmed
            },
        }
    }

    fn of_row(row: &MeetingRow) -> Self {
        Self {
            subject: row.subject.clone(),
            start: row.starts_at,
            end: row.ends_at,
            is_all_day: row.is_all_day,
            status: row.status,
        }
    }

    fn of_write(write: &MeetingWrite) -> Self {
        Self {
            subject: write.subject.clone(),
            start: write.starts_at,
            end: write.ends_at,
            is_all_day: write.is_all_day,
            status: write.status,
        }
    }
}

/// The confirmed differences, as a repair needs them.
#[derive(Default)]
struct Repair {
    /// UIDs whose fetched items are written.
    uids: HashSet<String>,
    /// Rows whose content differs at the same version.
    forced: Vec<(String, Option<DateTime<Utc>>)>,
    /// Confirmed rows Exchange does not have.
    extra_rows: Vec<i64>,
}

/// Every difference between the view and the rows read after it.
fn compare(view: &[ViewEntry], rows: &[MeetingRow], roll_edge: DateTime<Utc>) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    let by_key: HashMap<RowKey, &MeetingRow> = rows
        .iter()
        .map(|row| ((row.exchange_uid.clone(), row.occurrence_start), row))
        .collect();
    let mut viewed: HashSet<RowKey> = HashSet::with_capacity(view.len());
    for entry in view {
        let key = (entry.uid.clone(), entry.occurrence_start);
        let seen = Content::of_entry(entry);
        let kind = match by_key.get(&key) {
            None if entry.occurrence_start.is_some() && entry.start >= roll_edge => {
                Some(Kind::Rolled)
            }
            None => Some(Kind::Missing),
            Some(row) if row.source == MeetingSource::Exchange && Content::of_row(row) != seen => {
                Some(Kind::Stale)
            }
            Some(_) => None,
        };
        if let Some(kind) = kind {
            candidates.push(Candidate {
                kind,
                key: key.clone(),
                seen: Some(seen),
            });
        }
        viewed.insert(key);
    }
    for row in rows {
        let key = (row.exchange_uid.clone(), row.occurrence_start);
        if row.source == MeetingSource::Exchange
            && row.status == MeetingStatus::Confirmed
            && !viewed.contains(&key)
        {
            candidates.push(Candidate {
                kind: Kind::Extra,
                key,
                seen: None,
            });
        }
    }
    candidates
}

/// Sorts the candidates, after a catch-up that started once the view was read,
/// into drift (counted in `report` and repaired) and changes in flight.
///
/// A candidate is drift only when all three hold:
/// - its row (`rows_now`, read after the catch-up) was not written since the
///   comparison began (`started_at`): a row written since is the normal path's
///   and newer than the comparison;
/// - Exchange now (`items`, fetched after the catch-up) says what the view said
///   (for an extra row: has no such meeting among the items fetched): otherwise the
///   item changed after the view and the normal path has that change to apply;
/// - the row still differs from it.
///
/// Then the difference existed when the view was read and outlived a catch-up
/// that saw every change made before: the fast path failed to fix it.
fn confirm(
    candidates: &[Candidate],
    items: &[ItemWrite],
    rows_now: &[MeetingRow],
    started_at: DateTime<Utc>,
    report: &mut Reconciliation,
) -> Repair {
    let truth: HashMap<RowKey, (Content, DateTime<Utc>)> = items
        .iter()
        .flat_map(|item| {
            item.meetings.iter().map(|meeting| {
                (
                    (item.uid.clone(), meeting.occurrence_start),
                    (Content::of_write(meeting), item.last_modified),
                )
            })
        })
        .collect();
    let by_key: HashMap<RowKey, &MeetingRow> = rows_now
        .iter()
        .map(|row| ((row.exchange_uid.clone(), row.occurrence_start), row))
        .collect();
    let mut repair = Repair::default();
    for candidate in candidates {
        let row = by_key.get(&candidate.key).copied();
        if candidate.kind == Kind::Rolled {
            if row.is_none() {
                report.rolled += 1;
                repair.uids.insert(candidate.key.0.clone());
            }
            continue;
        }
        let written_since = row.is_some_and(|row| {
            row.updated_at > started_at || row.fetched_at.is_some_and(|at| at > started_at)
        });
        let now = truth.get(&candidate.key);
        // A row of a later version than the one fetched is never overwritten.
        let row_newer = match (row.and_then(|row| row.exchange_last_modified), now) {
            (Some(row_version), Some((_, fetched))) => row_version > *fetched,
            _ => false,
        };
        if written_since || row_newer || now.map(|(content, _)| content) != candidate.seen.as_ref()
        {
            report.in_flight += 1;
            continue;
        }
        match (candidate.kind, row, now) {
            (Kind::Missing, None, Some(_)) => {
                report.missing += 1;
                repair.uids.insert(candidate.key.0.clone());
            }
            (Kind::Missing | Kind::Stale, Some(row), Some((now, _)))
                if row.source == MeetingSource::Exchange && Content::of_row(row) != *now =>
            {
                report.stale += 1;
                repair.uids.insert(candidate.key.0.clone());
                repair.forced.push(candidate.key.clone());
            }
            (Kind::Extra, Some(row), None)
                if row.source == MeetingSource::Exchange
                    && row.status == MeetingStatus::Confirmed =>
            {
                report.extra += 1;
                repair.extra_rows.push(row.id);
            }
            _ => report.in_flight += 1,
        }
    }
    repair
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChangeKey;
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

    /// The item behind view entry `entry`, as fetched now, at `version`.
    fn item(entry: &ViewEntry, version: DateTime<Utc>) -> ItemWrite {
        ItemWrite {
            item_id: entry.item_id.clone(),
            change_key: ChangeKey::from("ck"),
            last_modified: version,
            uid: entry.uid.clone(),
            window: (
                entry.start - chrono::Duration::days(1),
                entry.start + chrono::Duration::days(400),
            ),
            meetings: vec![MeetingWrite {
                occurrence_start: entry.occurrence_start,
                subject: entry.subject.clone(),
                starts_at: entry.start,
                ends_at: entry.end,
                is_all_day: entry.is_all_day,
                organizer_email: None,
                status: MeetingStatus::Confirmed,
                exception: None,
            }],
        }
    }

    fn kinds(candidates: &[Candidate]) -> Vec<(Kind, &str)> {
        let mut kinds: Vec<_> = candidates
            .iter()
            .map(|candidate| (candidate.kind, candidate.key.0.as_str()))
            .collect();
        kinds.sort_by_key(|(_, uid)| *uid);
        kinds
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

        let candidates = compare(&view, &rows, start + chrono::Duration::days(1));

        assert_eq!(
            kinds(&candidates),
            vec![
                (Kind::Missing, "absent"),
                (Kind::Stale, "changed"),
                (Kind::Extra, "extra"),
                (Kind::Rolled, "series"),
            ]
        );
    }

    #[test]
    fn differences_that_outlive_the_catch_up_are_drift_and_repaired() {
        let start = Utc::now() + chrono::Duration::days(1);
        let version = Utc::now() - chrono::Duration::hours(1);
        let view = vec![
            entry("lost", start, "Lost"),
            entry("tampered", start, "Real"),
        ];
        let mut tampered = row(2, "tampered", start, "Tampered");
        tampered.exchange_last_modified = Some(version);
        tampered.updated_at = version;
        let mut ghost = row(3, "ghost", start, "Ghost");
        ghost.updated_at = version;
        let rows = vec![tampered, ghost];
        let started_at = Utc::now();
        let candidates = compare(&view, &rows, start + chrono::Duration::days(30));
        let items: Vec<_> = view.iter().map(|entry| item(entry, version)).collect();
        let mut report = Reconciliation::default();

        let repair = confirm(&candidates, &items, &rows, started_at, &mut report);

        assert_eq!(
            (report.missing, report.stale, report.extra, report.in_flight),
            (1, 1, 1, 0)
        );
        let mut uids: Vec<_> = repair.uids.into_iter().collect();
        uids.sort();
        assert_eq!(uids, vec!["lost", "tampered"]);
        assert_eq!(repair.forced, vec![("tampered".to_owned(), None)]);
        assert_eq!(repair.extra_rows, vec![3]);
    }

    #[test]
    fn differences_from_changes_newer_than_the_comparison_are_left_alone() {
        let start = Utc::now() + chrono::Duration::days(1);
        let before = Utc::now() - chrono::Duration::hours(1);
        let view = vec![
            entry("created", start, "Created"),
            entry("edited", start, "Edited"),
            entry("edited-again", start, "Edited once"),
        ];
        let mut edited = row(2, "edited", start, "Before the edit");
        edited.exchange_last_modified = Some(before);
        edited.updated_at = before;
        let mut deleted = row(3, "deleted", start, "Deleted");
        deleted.updated_at = before;
        let rows = vec![edited, deleted];
        let candidates = compare(&view, &rows, start + chrono::Duration::days(30));
        let started_at = Utc::now();
        let after = started_at + chrono::Duration::seconds(1);
        // The catch-up after the view wrote "created" and "edited" and cancelled
        // "deleted"; "edited-again" changed in Exchange after the view.
        let mut created_now = row(4, "created", start, "Created");
        created_now.fetched_at = Some(after);
        created_now.updated_at = after;
        let mut edited_now = row(2, "edited", start, "Edited");
        edited_now.fetched_at = Some(after);
        edited_now.updated_at = after;
        let mut deleted_now = row(3, "deleted", start, "Deleted");
        deleted_now.status = MeetingStatus::Cancelled;
        deleted_now.updated_at = after;
        let rows_now = vec![created_now, edited_now, deleted_now];
        let mut items: Vec<_> = view[..2].iter().map(|entry| item(entry, after)).collect();
        items.push(item(&entry("edited-again", start, "Edited twice"), after));
        let mut report = Reconciliation::default();

        let repair = confirm(&candidates, &items, &rows_now, started_at, &mut report);

        assert_eq!(report.drift(), 0, "{report:?}");
        assert_eq!(report.in_flight, 4);
        assert!(repair.uids.is_empty() && repair.forced.is_empty() && repair.extra_rows.is_empty());
    }

    #[test]
    fn a_row_of_a_later_version_than_the_one_fetched_is_never_forced() {
        let start = Utc::now() + chrono::Duration::days(1);
        let fetched = Utc::now() - chrono::Duration::hours(2);
        let view = vec![entry("lagging", start, "Older version")];
        let mut newer = row(1, "lagging", start, "Newer version");
        newer.exchange_last_modified = Some(fetched + chrono::Duration::hours(1));
        newer.updated_at = fetched;
        let rows = vec![newer];
        let candidates = compare(&view, &rows, start + chrono::Duration::days(30));
        let items = vec![item(&view[0], fetched)];
        let mut report = Reconciliation::default();

        let repair = confirm(&candidates, &items, &rows, Utc::now(), &mut report);

        assert_eq!((report.drift(), report.in_flight), (0, 1));
        assert!(repair.forced.is_empty() && repair.uids.is_empty());
    }
}
