//! EWS as a [`CalendarSource`]: SyncFolderItems for changes, GetItem for items.

use chrono::{DateTime, Utc};

use crate::domain::{CalendarItem, ItemId, MailboxAddress, SyncPage, SyncState};
use crate::ews::{EwsClient, EwsError, ItemError};
use crate::pipeline::source::{CalendarSource, SourceError, ViewEntry, ViewPage};

/// A calendar view entry without a UID cannot be compared with the table.
#[derive(Debug, thiserror::Error)]
#[error("a calendar view entry has no UID")]
struct EntryWithoutUid;

impl CalendarSource for EwsClient {
    async fn sync_changes(
        &self,
        mailbox: &MailboxAddress,
        checkpoint: Option<&SyncState>,
        max_changes: u16,
    ) -> Result<SyncPage, SourceError> {
        self.sync_folder_items(mailbox, checkpoint, max_changes)
            .await
            .map_err(classify)
    }

    async fn fetch_items(
        &self,
        mailbox: &MailboxAddress,
        ids: &[ItemId],
    ) -> Result<Vec<Option<CalendarItem>>, SourceError> {
        let results = self
            .get_calendar_items(mailbox, ids)
            .await
            .map_err(classify)?;
        let mut items = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(item) => items.push(Some(item)),
                Err(ItemError::NotFound) => items.push(None),
                Err(err) => {
                    return Err(SourceError::Transient {
                        source: Box::new(err),
                    })
                }
            }
        }
        Ok(items)
    }

    async fn calendar_view(
        &self,
        mailbox: &MailboxAddress,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_entries: u32,
    ) -> Result<ViewPage, SourceError> {
        let view = self
            .find_calendar_view(mailbox, from, to, max_entries)
            .await
            .map_err(classify)?;
        let mut entries = Vec::with_capacity(view.items.len());
        for item in view.items {
            let Some(uid) = item.summary.uid else {
                return Err(SourceError::Transient {
                    source: Box::new(EntryWithoutUid),
                });
            };
            entries.push(ViewEntry {
                uid,
                item_id: item.summary.item_id,
                occurrence_start: item.recurrence_id,
                subject: item.subject.unwrap_or_default(),
                start: item.start,
                end: item.end,
                is_all_day: item.is_all_day,
                is_cancelled: item.is_cancelled,
            });
        }
        Ok(ViewPage {
            entries,
            complete: view.includes_last_item_in_range,
        })
    }
}

/// Sorts an EWS failure by what the worker must do about it.
fn classify(err: EwsError) -> SourceError {
    match err {
        EwsError::Throttled { backoff } => SourceError::Throttled {
            backoff,
            source: Box::new(EwsError::Throttled { backoff }),
        },
        EwsError::InvalidSyncState => SourceError::InvalidCheckpoint,
        err @ (EwsError::MailboxNotFound | EwsError::AccessDenied { .. }) => SourceError::Mailbox {
            source: Box::new(err),
        },
        err => SourceError::Transient {
            source: Box::new(err),
        },
    }
}
