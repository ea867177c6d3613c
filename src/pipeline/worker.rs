//! Workers: turn a queued mailbox into one committed sync pass.
//!
//! A pass reads the mailbox's checkpoint, asks the source what changed since
//! (SyncFolderItems), fetches every changed item in batches (one GetItem per batch),
//! maps each item to meeting rows (one per occurrence inside the sync window), and
//! hands the rows, the removed items and the new checkpoint to the store in one
//! transaction. Nothing is acknowledged before that commit: a failed pass leaves the
//! checkpoint where it was, and the mailbox is queued again after a back-off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::domain::{CalendarItem, ItemId, MailboxAddress, OccurrenceRef, SyncChange, SyncState};
use crate::health::{self, Heartbeat, Heartbeats};
use crate::logging::error_chain;
use crate::metrics as m;
use crate::pipeline::queue::{Reason, WorkQueue};
use crate::pipeline::rooms::RoomDirectory;
use crate::pipeline::source::{CalendarSource, SourceError};
use crate::recurrence;
use crate::store::{
    ApplyOutcome, ChangeOrigin, ExceptionVersion, InitialSync, ItemWrite, MailboxBatch,
    MeetingStatus, MeetingWrite, PgStore, Room, StoreError,
};

/// SyncFolderItems page size (the protocol maximum).
const MAX_CHANGES_PER_PAGE: u16 = 512;
/// Back-off of a mailbox whose pass failed, doubling up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Longest back-off between two passes of a failing mailbox.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// AppointmentState bit of a cancelled meeting.
const APPOINTMENT_CANCELLED: u32 = 4;

/// The span of time materialised into meeting rows, relative to now.
#[derive(Debug, Clone, Copy)]
pub struct SyncWindow {
    /// How far back.
    pub past: chrono::Duration,
    /// How far ahead.
    pub future: chrono::Duration,
}

impl SyncWindow {
    /// The window's bounds at `now`.
    pub fn bounds(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        (now - self.past, now + self.future)
    }
}

/// What a worker needs, shared by every worker.
pub struct Workers<S> {
    /// Where changes come from.
    pub source: S,
    /// Where they go.
    pub store: PgStore,
    /// The queue the workers drain; the listener and the resync feed it.
    pub queue: Arc<WorkQueue>,
    /// The rooms being synced.
    pub rooms: Arc<RoomDirectory>,
    /// The rows materialised per series.
    pub window: SyncWindow,
    /// Item ids per GetItem call.
    pub batch_size: usize,
    /// Where each worker registers its heartbeat.
    pub heartbeats: Arc<Heartbeats>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassReport {
    /// SyncFolderItems pages read.
    pub pages: u32,
    /// Changes those pages listed.
    pub changes: u64,
    /// GetItem calls made.
    pub fetch_calls: u64,
    /// Row writes.
    pub outcome: ApplyOutcome,
}

impl<S: CalendarSource> Workers<S> {
    /// Runs one worker until the queue is closed and drained, or `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut failures: HashMap<MailboxAddress, u32> = HashMap::new();
        let heartbeat = self.heartbeats.register(health::LOOP_WORKERS);
        loop {
            heartbeat.beat();
            // `pop` is cancel-safe, so the idle tick may interrupt it.
            let work = tokio::select! {
                work = self.queue.pop() => work,
                _ = cancel.cancelled() => None,
                _ = tokio::time::sleep(health::IDLE_TICK) => continue,
            };
            let Some(work) = work else { break };
            let started = Instant::now();
            let Some(room) = self.rooms.get(&work.mailbox) else {
                // The room was disabled while queued: nothing to do.
                self.queue.done(&work.mailbox);
                continue;
            };
            let result = tokio::select! {
                result = self.sync_mailbox(&room, &heartbeat, Reason::origin(&work.reasons)) => Some(result),
                _ = cancel.cancelled() => None,
            };
            match result {
                Some(Ok(report)) => {
                    failures.remove(&work.mailbox);
                    record_success(&report, started);
                    self.queue.done(&work.mailbox);
                }
                Some(Err(err)) => {
                    let attempt = failures.entry(work.mailbox.clone()).or_insert(0);
                    *attempt += 1;
                    let delay = self.handle_failure(&room, &err, *attempt).await;
                    // Retry before `done`, so the new entry keeps the age of the
                    // changes this pass failed to commit.
                    if let Some(delay) = delay {
                        self.queue.retry(&work.mailbox, &work.reasons, delay);
                    }
                    self.queue.done(&work.mailbox);
                }
                None => {
                    // Shutting down mid-pass: nothing was committed, so the stored
                    // checkpoint still covers these changes for the next start.
                    self.queue.done(&work.mailbox);
                    break;
                }
            }
        }
    }

    /// Syncs one mailbox from its stored checkpoint until the source has nothing more.
    /// The audit trail records what it writes as coming from `origin`.
    ///
    /// # Errors
    /// A [`PassError`] when reading, fetching or committing failed; nothing from the
    /// failed page is committed.
    /// `heartbeat` is beaten once per page.
    pub async fn sync_mailbox(
        &self,
        room: &Room,
        heartbeat: &Heartbeat,
        origin: ChangeOrigin,
    ) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        if room.initial_sync != InitialSync::Complete && room.initial_sync != InitialSync::Running {
            self.store
                .set_initial_sync(room.id, InitialSync::Running, None)
                .await?;
            self.rooms
                .set_initial_sync(&room.email, InitialSync::Running);
        }
        let mut checkpoint = self.store.sync_state(room.id).await?;
        // A pass from no checkpoint enumerates the whole folder: afterwards, rows of
        // items it did not see are deletions no change list will ever report.
        let mut enumeration = match checkpoint {
            Some(_) => None,
            None => Some(FullEnumeration::start(&self.store).await?),
        };
        loop {
            heartbeat.beat();
            let page = match self
                .source
                .sync_changes(&room.email, checkpoint.as_ref(), MAX_CHANGES_PER_PAGE)
                .await
            {
                Ok(page) => page,
                Err(SourceError::InvalidCheckpoint) if checkpoint.is_some() => {
                    warn!(
                        room_id = room.id.0,
                        "Stored sync state rejected, syncing the mailbox from the start"
                    );
                    metrics::counter!(m::SYNC_STATE_RESETS).increment(1);
                    enumeration = Some(FullEnumeration::start(&self.store).await?);
                    self.store.reset_sync_state(room.id).await?;
                    checkpoint = None;
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            report.pages += 1;
            report.changes += page.changes.len() as u64;
            if let Some(enumeration) = enumeration.as_mut() {
                enumeration.saw(&page.changes);
            }
            let last_page = page.includes_last_item_in_range;
            // After a full enumeration the reconciliation ends the initial sync, so
            // what it finds is still found during it.
            let completes_initial_sync =
                last_page && enumeration.is_none() && room.initial_sync != InitialSync::Complete;
            let outcome = self
                .commit_page(
                    room,
                    Page {
                        expected: checkpoint.clone(),
                        next: page.sync_state.clone(),
                        changes: page.changes,
                        completes_initial_sync,
                        origin,
                    },
                    &mut report,
                )
                .await?;
            report.outcome.add(&outcome);
            checkpoint = Some(page.sync_state);
            if last_page {
                break;
            }
        }
        if let Some(enumeration) = enumeration {
            let outcome = self
                .store
                .reconcile_full_sync(
                    room.id,
                    &enumeration.seen,
                    enumeration.started_at,
                    origin,
                    room.initial_sync != InitialSync::Complete,
                )
                .await?;
            report.outcome.add(&outcome);
        }
        if room.initial_sync != InitialSync::Complete {
            self.rooms
                .set_initial_sync(&room.email, InitialSync::Complete);
        }
        Ok(report)
    }

    async fn commit_page(
        &self,
        room: &Room,
        page: Page,
        report: &mut PassReport,
    ) -> Result<ApplyOutcome, PassError> {
        let Page {
            expected,
            next,
            changes,
            completes_initial_sync,
            origin,
        } = page;
        let mut to_fetch: Vec<ItemId> = Vec::new();
        let mut removed: Vec<ItemId> = Vec::new();
        let mut listed: HashMap<ItemId, DateTime<Utc>> = HashMap::new();
        for change in changes {
            match change {
                SyncChange::Create(summary) | SyncChange::Update(summary) => {
                    if let Some(at) = summary.last_modified {
                        let newest = listed.entry(summary.item_id.clone()).or_insert(at);
                        *newest = (*newest).max(at);
                    }
                    if !to_fetch.contains(&summary.item_id) {
                        to_fetch.push(summary.item_id);
                    }
                }
                SyncChange::Delete(item_id) => removed.push(item_id),
            }
        }
        let fetched = self.fetch(&room.email, &to_fetch, report).await?;
        let mut items = Vec::with_capacity(fetched.len());
        for (item_id, item) in to_fetch.into_iter().zip(fetched) {
            match item {
                Some(item) => {
                    // A lagging replica answered with a version older than the change
                    // list promised: committing would advance the checkpoint past
                    // the newer version for good, so the page is tried again later.
                    if listed
                        .get(&item_id)
                        .is_some_and(|at| item.last_modified < *at)
                    {
                        return Err(PassError::StaleRead { item_id });
                    }
                    items.push(item);
                }
                // Gone between the change list and the fetch: a removal.
                None => removed.push(item_id),
            }
        }
        let exceptions = self.fetch_exceptions(&room.email, &items, report).await?;
        let window = self.window.bounds(Utc::now());
        let mut writes = Vec::with_capacity(items.len());
        for item in &items {
            match item_write(item, &exceptions, window) {
                Ok(write) => writes.push(write),
                Err(err) => {
                    warn!(room_id = room.id.0, error = %err, "Calendar item has a recurrence that cannot be expanded, keeping its first occurrence only");
                    writes.push(first_occurrence_write(item, window));
                }
            }
        }
        let batch = MailboxBatch {
            room_id: room.id,
            expected_sync_state: expected,
            new_sync_state: Some(next),
            items: writes,
            removed_items: removed,
            completes_initial_sync,
            origin,
        };
        Ok(self.store.apply(&batch).await?)
    }

    pub(crate) async fn fetch(
        &self,
        mailbox: &MailboxAddress,
        ids: &[ItemId],
        report: &mut PassReport,
    ) -> Result<Vec<Option<CalendarItem>>, PassError> {
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.batch_size.max(1)) {
            let items = self.source.fetch_items(mailbox, chunk).await?;
            report.fetch_calls += 1;
            metrics::counter!(m::ITEMS_FETCHED).increment(chunk.len() as u64);
            all.extend(items);
        }
        Ok(all)
    }

    /// Fetches the modified occurrences of every series (for their own subjects).
    ///
    /// # Errors
    ///
    /// [`PassError::StaleRead`] when an exception came in another version than its
    /// master lists (a lagging replica): writing it would keep an older exception
    /// while the checkpoint moves past the newer one, so the pass is tried again.
    pub(crate) async fn fetch_exceptions(
        &self,
        mailbox: &MailboxAddress,
        items: &[CalendarItem],
        report: &mut PassReport,
    ) -> Result<HashMap<ItemId, CalendarItem>, PassError> {
        let listed: Vec<&OccurrenceRef> = items
            .iter()
            .flat_map(|item| item.modified_occurrences.iter())
            .collect();
        if listed.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<ItemId> = listed.iter().map(|o| o.item_id.clone()).collect();
        let fetched = self.fetch(mailbox, &ids, report).await?;
        let mut exceptions = HashMap::with_capacity(ids.len());
        for (reference, item) in listed.into_iter().zip(fetched) {
            let Some(item) = item else {
                continue;
            };
            if reference
                .change_key
                .as_ref()
                .is_some_and(|listed| *listed != item.change_key)
            {
                return Err(PassError::StaleRead {
                    item_id: reference.item_id.clone(),
                });
            }
            exceptions.insert(reference.item_id.clone(), item);
        }
        Ok(exceptions)
    }

    /// Decides what to do after a failed pass; returns when to try the mailbox again.
    async fn handle_failure(&self, room: &Room, err: &PassError, attempt: u32) -> Option<Duration> {
        metrics::counter!(m::MAILBOX_SYNCS, "outcome" => err.outcome()).increment(1);
        let backoff = retry_delay(attempt);
        let message = error_chain(err);
        if let Err(store_err) = self.store.record_error(room.id, Some(&message)).await {
            debug!(room_id = room.id.0, error = %store_err, "Could not record the mailbox error");
        }
        match err {
            PassError::Source(SourceError::Throttled { backoff: hint, .. }) => {
                info!(
                    room_id = room.id.0,
                    attempt, "Calendar source throttled the mailbox sync"
                );
                Some(hint.unwrap_or(backoff).max(backoff))
            }
            PassError::Source(SourceError::Mailbox { .. }) => {
                warn!(room_id = room.id.0, error = %message, "Mailbox cannot be read, its sync stops until it is fixed");
                if room.initial_sync != InitialSync::Complete {
                    if let Err(store_err) = self
                        .store
                        .set_initial_sync(room.id, InitialSync::Failed, Some(&message))
                        .await
                    {
                        debug!(room_id = room.id.0, error = %store_err, "Could not record the failed initial sync");
                    }
                    self.rooms
                        .set_initial_sync(&room.email, InitialSync::Failed);
                }
                Some(MAX_RETRY_DELAY)
            }
            PassError::Store(StoreError::CheckpointMoved { .. }) => Some(Duration::ZERO),
            _ => {
                warn!(room_id = room.id.0, attempt, error = %message, "Mailbox sync failed, retrying later");
                Some(backoff)
            }
        }
    }
}

/// One SyncFolderItems page to commit.
struct Page {
    /// The checkpoint it was read from.
    expected: Option<SyncState>,
    /// The checkpoint after it.
    next: SyncState,
    /// What changed.
    changes: Vec<SyncChange>,
    /// Whether its commit ends the room's initial sync.
    completes_initial_sync: bool,
    /// What started the pass.
    origin: ChangeOrigin,
}

/// The items a sync from no checkpoint has listed so far, and when it began (by the
/// database's clock, so it compares with the rows' `fetched_at`).
struct FullEnumeration {
    started_at: DateTime<Utc>,
    seen: Vec<ItemId>,
}

impl FullEnumeration {
    async fn start(store: &PgStore) -> Result<Self, StoreError> {
        Ok(Self {
            started_at: store.database_time().await?,
            seen: Vec::new(),
        })
    }

    fn saw(&mut self, changes: &[SyncChange]) {
        for change in changes {
            if let SyncChange::Create(summary) | SyncChange::Update(summary) = change {
                self.seen.push(summary.item_id.clone());
            }
        }
    }
}

/// A failed sync pass.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Reading from the calendar source failed.
    #[error("reading the calendar failed")]
    Source(#[from] SourceError),
    /// Reading or writing the database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
    /// The source returned an item older than its change list said it was.
    #[error("an item was fetched in an older version than listed")]
    StaleRead {
        /// The item.
        item_id: ItemId,
    },
}

impl PassError {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Source(SourceError::Throttled { .. }) => "throttled",
            Self::Source(_) => "source_error",
            Self::Store(StoreError::CheckpointMoved { .. }) => "checkpoint_moved",
            Self::Store(_) => "store_error",
            Self::StaleRead { .. } => "stale_read",
        }
    }
}

/// Maps one fetched item to the rows it stands for inside `window`.
///
/// # Errors
/// When the item's recurrence cannot be expanded.
pub fn item_write(
    item: &CalendarItem,
    exceptions: &HashMap<ItemId, CalendarItem>,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<ItemWrite, recurrence::RecurrenceError> {
    let status = status_of(item);
    let organizer = organizer_email(item);
    let meetings = recurrence::occurrences(item, window.0, window.1)?
        .into_iter()
        .map(|occurrence| {
            let exception = occurrence
                .exception_item_id
                .as_ref()
                .and_then(|id| exceptions.get(id));
            MeetingWrite {
                occurrence_start: occurrence.original_start,
                subject: exception.map_or_else(|| item.subject.clone(), |e| e.subject.clone()),
                starts_at: occurrence.start,
                ends_at: occurrence.end,
                is_all_day: item.is_all_day,
                organizer_email: organizer.clone(),
                status: exception.map_or(status, status_of),
                exception: exception.map(|e| ExceptionVersion {
                    change_key: e.change_key.clone(),
                    last_modified: e.last_modified,
                }),
            }
        })
        .collect();
    Ok(ItemWrite {
        item_id: item.item_id.clone(),
        change_key: item.change_key.clone(),
        last_modified: item.last_modified,
        uid: item.uid.clone(),
        window,
        meetings,
    })
}

fn first_occurrence_write(
    item: &CalendarItem,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> ItemWrite {
    ItemWrite {
        item_id: item.item_id.clone(),
        change_key: item.change_key.clone(),
        last_modified: item.last_modified,
        uid: item.uid.clone(),
        window,
        meetings: vec![MeetingWrite {
            occurrence_start: item.recurrence.as_ref().map(|_| item.start),
            subject: item.subject.clone(),
            starts_at: item.start,
            ends_at: item.end,
            is_all_day: item.is_all_day,
            organizer_email: organizer_email(item),
            status: status_of(item),
            exception: None,
        }],
    }
}

fn status_of(item: &CalendarItem) -> MeetingStatus {
    if item.is_cancelled || item.appointment_state & APPOINTMENT_CANCELLED != 0 {
        MeetingStatus::Cancelled
    } else {
        MeetingStatus::Confirmed
    }
}

fn organizer_email(item: &CalendarItem) -> Option<String> {
    item.organizer
        .as_ref()
        .and_then(|person| person.email.as_deref())
        .map(|email| email.trim().to_ascii_lowercase())
}

fn record_success(report: &PassReport, started: Instant) {
    metrics::counter!(m::MAILBOX_SYNCS, "outcome" => "ok").increment(1);
    metrics::histogram!(m::MAILBOX_SYNC_DURATION).record(started.elapsed().as_secs_f64());
    let outcome = &report.outcome;
    for (result, count) in [
        ("inserted", outcome.inserted),
        ("updated", outcome.updated),
        ("unchanged", outcome.unchanged),
        ("stale_skipped", outcome.stale_skipped),
        ("cancelled", outcome.cancelled),
    ] {
        if count > 0 {
            metrics::counter!(m::MEETING_WRITES, "result" => result).increment(count);
        }
    }
}

fn retry_delay(attempt: u32) -> Duration {
    Backoff {
        first: FIRST_RETRY_DELAY,
        max: MAX_RETRY_DELAY,
        jitter: 0.25,
    }
    .delay(attempt)
}
