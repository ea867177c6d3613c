//! The calendar source a worker reads from: EWS today, Microsoft Graph later.
//!
//! A source answers two questions per mailbox: what changed since a checkpoint
//! (SyncFolderItems with a sync state; a Graph delta link would fit the same shape),
//! and what the changed items look like now (GetItem; Graph's event resource). Workers
//! depend only on this trait, so a second source plugs in beside EWS without touching
//! the queue, the workers or the store.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{CalendarItem, ItemId, MailboxAddress, SyncPage, SyncState};

/// Any error a source wraps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A source failure, classified by what the worker has to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server is throttling: wait (at least `backoff` when it says) and try again.
    #[error("the calendar source asked to back off")]
    Throttled {
        /// How long the server asked to wait, when it said.
        backoff: Option<Duration>,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The stored checkpoint is unusable: start over from no checkpoint.
    #[error("the stored checkpoint is no longer valid")]
    InvalidCheckpoint,
    /// This mailbox cannot be read (missing, no permission): stop syncing it and alert.
    #[error("the mailbox cannot be read")]
    Mailbox {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Anything else that may pass: retry with back-off.
    #[error("the calendar source failed")]
    Transient {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// One meeting as a calendar view shows it: a single meeting, an occurrence or an
/// exception, with the fields the table is compared on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEntry {
    /// iCalendar UID.
    pub uid: String,
    /// The entry's item id (an occurrence's own id for occurrences).
    pub item_id: ItemId,
    /// Original start of an occurrence or exception; `None` for a single meeting.
    pub occurrence_start: Option<DateTime<Utc>>,
    /// Subject line.
    pub subject: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// All-day meeting.
    pub is_all_day: bool,
    /// Cancelled by the organizer.
    pub is_cancelled: bool,
}

/// The entries of a calendar view over a time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewPage {
    /// The entries returned.
    pub entries: Vec<ViewEntry>,
    /// `false` when the view was cut at the maximum: split the range and ask again.
    pub complete: bool,
}

/// Reads changes and items of one mailbox's calendar.
pub trait CalendarSource: Send + Sync + 'static {
    /// The changes since `checkpoint` (all items when `None`), at most `max_changes`.
    fn sync_changes(
        &self,
        mailbox: &MailboxAddress,
        checkpoint: Option<&SyncState>,
        max_changes: u16,
    ) -> impl Future<Output = Result<SyncPage, SourceError>> + Send;

    /// The current version of each item, in order; `None` for an item that is gone.
    fn fetch_items(
        &self,
        mailbox: &MailboxAddress,
        ids: &[ItemId],
    ) -> impl Future<Output = Result<Vec<Option<CalendarItem>>, SourceError>> + Send;

    /// Every meeting overlapping `[from, to)`, expanded (at most `max_entries`).
    fn calendar_view(
        &self,
        mailbox: &MailboxAddress,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_entries: u32,
    ) -> impl Future<Output = Result<ViewPage, SourceError>> + Send;
}
