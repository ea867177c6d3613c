//! The calendar source a worker reads from: EWS today, Microsoft Graph later.
//!
//! A source answers two questions per mailbox: what changed since a checkpoint
//! (SyncFolderItems with a sync state; a Graph delta link would fit the same shape),
//! and what the changed items look like now (GetItem; Graph's event resource). Workers
//! depend only on this trait, so a second source plugs in beside EWS without touching
//! the queue, the workers or the store.

use std::future::Future;
use std::time::Duration;

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
}
