//! EWS as a [`CalendarSource`]: SyncFolderItems for changes, GetItem for items.

use crate::domain::{CalendarItem, ItemId, MailboxAddress, SyncPage, SyncState};
use crate::ews::{EwsClient, EwsError, ItemError};
use crate::pipeline::source::{CalendarSource, SourceError};

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
