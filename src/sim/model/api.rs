//! The values the control API (and `SimControl`) takes and returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recurrence::Recurrence;

/// Whether a mailbox is a room or a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    /// A meeting room (resource mailbox).
    Room,
    /// A person.
    User,
}

/// A mailbox to add to the simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMailbox {
    /// Primary SMTP address.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Room or user.
    pub kind: MailboxKind,
    /// Secondary SMTP addresses.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A mailbox as the simulator lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxInfo {
    /// Primary SMTP address.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Room or user.
    pub kind: MailboxKind,
    /// Secondary SMTP addresses.
    pub aliases: Vec<String>,
    /// Number of calendar items (singles and masters).
    pub items: usize,
}

/// An appointment to create in a mailbox's calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAppointment {
    /// Subject line.
    pub subject: String,
    /// Start (for a series: of the first occurrence).
    pub start: DateTime<Utc>,
    /// End (for a series: of the first occurrence).
    pub end: DateTime<Utc>,
    /// All-day meeting.
    #[serde(default)]
    pub is_all_day: bool,
    /// Organizer SMTP address.
    pub organizer: String,
    /// Required attendees' SMTP addresses.
    #[serde(default)]
    pub attendees: Vec<String>,
    /// IANA time zone name (default `UTC`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Recurrence rule, for a series.
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// Location text (default: the room's name when created in a room).
    #[serde(default)]
    pub location: Option<String>,
    /// Use this UID instead of minting one (the same meeting in another mailbox).
    #[serde(default)]
    pub uid: Option<String>,
}

/// Changes to an appointment; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentPatch {
    /// New subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// New start.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// New end.
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    /// New all-day flag (series and singles only).
    #[serde(default)]
    pub is_all_day: Option<bool>,
    /// New organizer (series and singles only).
    #[serde(default)]
    pub organizer: Option<String>,
    /// New required attendees (series and singles only).
    #[serde(default)]
    pub attendees: Option<Vec<String>>,
    /// New IANA time zone (series and singles only).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// New recurrence rule (series only).
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// New location.
    #[serde(default)]
    pub location: Option<String>,
    /// Change only this occurrence (by original start), making it an exception.
    #[serde(default)]
    pub occurrence_start: Option<DateTime<Utc>>,
}

/// Ids of an appointment after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentRef {
    /// Item id (of the single or the master).
    pub item_id: String,
    /// iCalendar UID.
    pub uid: String,
    /// Change key of the new version.
    pub change_key: String,
}

/// How an appointment is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Moved to Deleted Items (MovedEvent).
    Soft,
    /// Purged (DeletedEvent).
    Hard,
}

/// One occurrence of the truth: what a correct sync must show for a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthEntry {
    /// iCalendar UID.
    pub uid: String,
    /// Original start of an occurrence; `None` for a single meeting.
    pub occurrence_start: Option<DateTime<Utc>>,
    /// Subject.
    pub subject: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// All-day meeting.
    pub is_all_day: bool,
    /// Organizer SMTP address.
    pub organizer: String,
    /// Cancelled by the organizer.
    pub is_cancelled: bool,
    /// Change key of the item (the master for occurrences).
    pub change_key: String,
    /// LastModifiedTime of the item (the master for occurrences).
    pub last_modified: DateTime<Utc>,
}
