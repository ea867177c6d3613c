//! Domain types shared by every part of booking-sync.
//!
//! Nothing here knows about XML, SOAP, SQL or HTTP: the EWS client (`ews`), the
//! simulator (`sim`), the store (`store`) and the pipeline (`pipeline`) all speak
//! these types, which is what lets a second calendar source (Microsoft Graph) plug in
//! beside EWS later.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recurrence::Recurrence;

/// A primary SMTP address, normalised to lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MailboxAddress(String);

impl MailboxAddress {
    /// Normalises an SMTP address (trims and lower-cases it).
    pub fn new(address: &str) -> Self {
        Self(address.trim().to_ascii_lowercase())
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailboxAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

opaque_id!(
    /// An Exchange item id: per mailbox and per folder, changes when the item moves.
    ItemId
);
opaque_id!(
    /// An Exchange change key: changes on every modification of an item.
    ChangeKey
);
opaque_id!(
    /// An opaque SyncFolderItems sync state: the durable checkpoint of one mailbox.
    SyncState
);
opaque_id!(
    /// An opaque notification subscription id.
    SubscriptionId
);

/// What kind of calendar item Exchange reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalendarItemType {
    /// A meeting without recurrence.
    Single,
    /// An unmodified instance of a series (only from CalendarView or by occurrence id).
    Occurrence,
    /// A modified instance of a series.
    Exception,
    /// The series itself: the only item a series has in the store.
    RecurringMaster,
}

impl CalendarItemType {
    /// The EWS spelling of the value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "Single",
            Self::Occurrence => "Occurrence",
            Self::Exception => "Exception",
            Self::RecurringMaster => "RecurringMaster",
        }
    }

    /// Parses the EWS spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Single" => Some(Self::Single),
            "Occurrence" => Some(Self::Occurrence),
            "Exception" => Some(Self::Exception),
            "RecurringMaster" => Some(Self::RecurringMaster),
            _ => None,
        }
    }
}

/// A person or resource as Exchange names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Display name, when Exchange gives one.
    pub name: Option<String>,
    /// SMTP address, when Exchange gives one (FindItem gives only names).
    pub email: Option<String>,
}

/// An attendee's answer to a meeting request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseType {
    /// Nothing known.
    Unknown,
    /// The attendee organises the meeting.
    Organizer,
    /// Tentatively accepted.
    Tentative,
    /// Accepted.
    Accept,
    /// Declined.
    Decline,
    /// No answer yet.
    NoResponseReceived,
}

impl ResponseType {
    /// The EWS spelling of the value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Organizer => "Organizer",
            Self::Tentative => "Tentative",
            Self::Accept => "Accept",
            Self::Decline => "Decline",
            Self::NoResponseReceived => "NoResponseReceived",
        }
    }

    /// Parses the EWS spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "Unknown" => Self::Unknown,
            "Organizer" => Self::Organizer,
            "Tentative" => Self::Tentative,
            "Accept" => Self::Accept,
            "Decline" => Self::Decline,
            "NoResponseReceived" => Self::NoResponseReceived,
            _ => return None,
        })
    }
}

/// One attendee (required, optional or resource) of a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    /// Who.
    pub person: Person,
    /// Their answer, when known.
    pub response: Option<ResponseType>,
}

/// A modified instance of a series, as the master lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccurrenceRef {
    /// The occurrence's own item id (fetch it for its subject and other fields).
    pub item_id: ItemId,
    /// The change key of the exception's current version, as the master lists it
    /// (`None` when Exchange sent none): a fetched exception with another change key
    /// is not the version this master refers to.
    #[serde(default)]
    pub change_key: Option<ChangeKey>,
    /// Its current start.
    pub start: DateTime<Utc>,
    /// Its current end.
    pub end: DateTime<Utc>,
    /// The start the series gave it: its identity inside the series.
    pub original_start: DateTime<Utc>,
}

/// A calendar item as fetched from Exchange (GetItem) with every field the sync uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarItem {
    /// Item id in the mailbox it was fetched from.
    pub item_id: ItemId,
    /// Change key of this version.
    pub change_key: ChangeKey,
    /// Subject line.
    pub subject: String,
    /// When this version was saved.
    pub last_modified: DateTime<Utc>,
    /// iCalendar UID shared by every copy of the meeting.
    pub uid: String,
    /// Original start of an occurrence or exception; `None` for singles and masters.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// Start instant (for a master: of the first occurrence).
    pub start: DateTime<Utc>,
    /// End instant (for a master: of the first occurrence).
    pub end: DateTime<Utc>,
    /// All-day meeting: start and end are local midnights in `start_time_zone`.
    pub is_all_day: bool,
    /// Free-text location.
    pub location: Option<String>,
    /// The organizer cancelled the meeting.
    pub is_cancelled: bool,
    /// Part of a series.
    pub is_recurring: bool,
    /// Single, master, occurrence or exception.
    pub item_type: CalendarItemType,
    /// Organizer.
    pub organizer: Option<Person>,
    /// Required attendees.
    pub required_attendees: Vec<Attendee>,
    /// Optional attendees.
    pub optional_attendees: Vec<Attendee>,
    /// Resources (rooms, equipment).
    pub resources: Vec<Attendee>,
    /// AppointmentState bit mask: 1 meeting, 2 received, 4 cancelled.
    pub appointment_state: u32,
    /// Windows time zone id of the start.
    pub start_time_zone: Option<String>,
    /// Windows time zone id of the end.
    pub end_time_zone: Option<String>,
    /// The recurrence rule of a master.
    pub recurrence: Option<Recurrence>,
    /// Modified instances of a master.
    pub modified_occurrences: Vec<OccurrenceRef>,
    /// Original starts of deleted instances of a master.
    pub deleted_occurrences: Vec<DateTime<Utc>>,
    /// PidLidCleanGlobalObjectId, base64, when Exchange returns it.
    pub clean_global_object_id: Option<String>,
}

/// What a change notification says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// An item was created in the folder.
    Created,
    /// An item (or the folder) was modified.
    Modified,
    /// An item was hard-deleted.
    Deleted,
    /// An item was moved (out of the calendar: a delete for booking purposes).
    Moved,
    /// An item was copied.
    Copied,
    /// Free/busy changed (tentative acceptance).
    FreeBusyChanged,
    /// Nothing happened: a keep-alive carrying a watermark.
    Status,
    /// Mail arrived (irrelevant for calendars).
    NewMail,
}

impl EventKind {
    /// The metric label for the event kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Moved => "moved",
            Self::Copied => "copied",
            Self::FreeBusyChanged => "free_busy_changed",
            Self::Status => "status",
            Self::NewMail => "new_mail",
        }
    }
}

/// One notification event of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailboxEvent {
    /// What happened.
    pub kind: EventKind,
    /// When Exchange says it happened.
    pub timestamp: Option<DateTime<Utc>>,
    /// The item concerned (absent for folder events).
    pub item_id: Option<ItemId>,
    /// The folder concerned, for folder events.
    pub folder_id: Option<String>,
    /// The folder the item (or folder) is in now.
    pub parent_folder_id: Option<String>,
    /// For moves and copies: the id before.
    pub old_item_id: Option<ItemId>,
    /// For moves and copies: the folder before.
    pub old_parent_folder_id: Option<String>,
    /// Push and pull only: the watermark after this event.
    pub watermark: Option<String>,
}

/// A change to one item as SyncFolderItems reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncChange {
    /// The item is new since the sync state.
    Create(ItemSummary),
    /// The item changed since the sync state.
    Update(ItemSummary),
    /// The item left the folder since the sync state.
    Delete(ItemId),
}

/// The id and version of an item that SyncFolderItems (or FindItem) lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSummary {
    /// Item id.
    pub item_id: ItemId,
    /// Change key of the current version.
    pub change_key: ChangeKey,
    /// When the current version was saved.
    pub last_modified: Option<DateTime<Utc>>,
    /// iCalendar UID.
    pub uid: Option<String>,
    /// Single or master.
    pub item_type: Option<CalendarItemType>,
}

/// One page of SyncFolderItems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPage {
    /// The state to store once the page's changes are committed.
    pub sync_state: SyncState,
    /// `false`: more changes wait; call again with the new state.
    pub includes_last_item_in_range: bool,
    /// The changes, oldest first.
    pub changes: Vec<SyncChange>,
}
