//! Results of EWS calls that have no home in `crate::domain` because they describe
//! the protocol's own structure (stream messages, views, folder counters).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::{classify, EwsError};
use crate::domain::{ItemSummary, MailboxEvent, SubscriptionId};

/// One envelope of a GetStreamingEvents stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamMessage {
    /// Events, grouped by subscription; empty for a heartbeat.
    pub notifications: Vec<Notification>,
    /// Set when Exchange reports a failed subscription or connection.
    pub error: Option<StreamError>,
    /// `Closed` ends the connection: reopen it with the same ids.
    pub connection_status: Option<ConnectionStatus>,
}

/// Events of one subscription (one mailbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The subscription the events belong to.
    pub subscription_id: SubscriptionId,
    /// The events in the order they happened.
    pub events: Vec<MailboxEvent>,
}

/// An error message inside the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// The EWS response code, e.g. `ErrorSubscriptionNotFound`.
    pub code: String,
    /// Exchange's message text.
    pub message: Option<String>,
    /// The subscriptions that died; empty when the whole connection failed.
    pub subscription_ids: Vec<SubscriptionId>,
    /// Exchange's BackOffMilliseconds, when given.
    pub backoff: Option<Duration>,
}

impl StreamError {
    /// The same decision-oriented classification as a failed call.
    pub fn to_error(&self) -> EwsError {
        classify(
            &self.code,
            self.message.as_deref().unwrap_or_default(),
            self.backoff,
        )
    }
}

/// The state of a streaming connection as Exchange reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// The connection stays open.
    Ok,
    /// Exchange is ending the connection.
    Closed,
}

/// One entry of a calendar view: a single meeting, an occurrence or an exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewItem {
    /// Id, change key, UID and type of the entry.
    pub summary: ItemSummary,
    /// Subject line (FindItem may truncate it).
    pub subject: Option<String>,
    /// Start instant.
    pub start: DateTime<Utc>,
    /// End instant.
    pub end: DateTime<Utc>,
    /// All-day meeting.
    pub is_all_day: bool,
    /// Cancelled by the organizer.
    pub is_cancelled: bool,
    /// Original start of an occurrence or exception; `None` for single meetings.
    pub recurrence_id: Option<DateTime<Utc>>,
}

/// The answer of a FindItem with a CalendarView.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarView {
    /// The entries returned, at most the requested maximum.
    pub items: Vec<ViewItem>,
    /// `false`: the view was cut at the maximum; split the window and ask again.
    pub includes_last_item_in_range: bool,
    /// How many entries the whole window holds.
    pub total_items_in_view: Option<u32>,
}

/// The calendar folder of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// The folder's id.
    pub folder_id: String,
    /// The folder's change key.
    pub change_key: Option<String>,
    /// Number of items in the folder.
    pub total_count: Option<u32>,
}

/// What Autodiscover says about one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettings {
    /// The EWS URL to use from outside the organisation's network.
    pub external_ews_url: Option<String>,
    /// The EWS URL to use from inside it.
    pub internal_ews_url: Option<String>,
    /// The backend group of the mailbox: mailboxes with the same EWS URL and grouping
    /// information can share one streaming connection.
    pub grouping_information: Option<String>,
}

/// Why Autodiscover gave no settings for one mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("autodiscover answered {code} for the mailbox")]
pub struct UserSettingsError {
    /// Autodiscover's error code, e.g. `InvalidUser`, `RedirectAddress`, `RedirectUrl`.
    pub code: String,
    /// Autodiscover's message text.
    pub message: Option<String>,
    /// For redirects: the address or URL to ask instead.
    pub redirect_target: Option<String>,
}
