//! The simulator's authoritative calendar model: mailboxes, calendar items, change logs.
//!
//! The model owns every mailbox's calendar (singles and recurring masters with their
//! exceptions and deleted occurrences), mints ids, change keys and UIDs, keeps the
//! per-mailbox change log that SyncFolderItems reads, and expands series for
//! CalendarView and for the truth the control API reports. Every mutation returns the
//! notification events it caused ([`SimEvent`]); the caller fans them out to
//! subscriptions, so the model knows nothing about streams, HTTP or XML.
//!
//! Everything is deterministic for a seed except the model clock, which follows the
//! real UTC time (bumped so it never goes backwards).

mod expand;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::{CalendarItemType, EventKind, MailboxAddress, ResponseType};
use crate::recurrence::{Pattern, RangeEnd, Recurrence};

use super::SimError;
use expand::{expand_series, overlaps, Instance, SeriesTiming};

/// The fixed class id that starts every Outlook global object id.
const GOID_CLASS: [u8; 16] = [
    0x04, 0x00, 0x00, 0x00, 0x82, 0x00, 0xE0, 0x00, 0x74, 0xC5, 0xB7, 0x10, 0x1A, 0x82, 0xE0, 0x08,
];
/// 2020-01-01 as seconds since 1601 (the FILETIME epoch), the base of UID creation times.
const UID_EPOCH_SECONDS: u64 = 13_222_310_400;
/// The prefix Exchange puts before a cancelled meeting's subject.
pub const CANCELED_PREFIX: &str = "Canceled: ";
/// AppointmentState bit: a meeting (has attendees).
pub const STATE_MEETING: u32 = 1;
/// AppointmentState bit: received (not organised in this mailbox).
pub const STATE_RECEIVED: u32 = 2;
/// AppointmentState bit: cancelled.
pub const STATE_CANCELLED: u32 = 4;

/// The change key of every folder (folders never change in the simulator).
pub const FOLDER_CHANGE_KEY: &str = "AQAAAA==";

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

/// Which folder an id or event refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    /// The mailbox root (`msgfolderroot`).
    Root,
    /// The calendar.
    Calendar,
    /// Deleted Items.
    DeletedItems,
}

impl FolderKind {
    fn code(self) -> u8 {
        match self {
            Self::Root => 0,
            Self::Calendar => 1,
            Self::DeletedItems => 2,
        }
    }
}

/// What an event refers to: an item (id, change key) or a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTarget {
    /// An item with its id and change key.
    Item(Arc<str>, Arc<str>),
    /// A folder by id.
    Folder(Arc<str>),
}

/// One notification event, shared by every subscription of the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// The item or folder concerned.
    pub target: EventTarget,
    /// The folder it is in now.
    pub parent_folder_id: Arc<str>,
    /// For moves: the id before.
    pub old_item: Option<(Arc<str>, Arc<str>)>,
    /// For moves: the folder before.
    pub old_parent_folder_id: Option<Arc<str>>,
    /// For folder ModifiedEvents: the unread count.
    pub unread_count: Option<u32>,
}

/// The events of one mutation, with the mailbox they belong to.
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    /// The mailbox whose subscriptions get the events.
    pub mailbox: Option<MailboxAddress>,
    /// The events in order.
    pub events: Vec<SimEvent>,
}

/// A time zone as the simulator stores it: the IANA rule and the Windows id Exchange shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneInfo {
    /// The IANA zone used for expansion.
    pub tz: Tz,
    /// The Windows id written to `StartTimeZone/@Id`.
    pub windows_id: &'static str,
    /// The display name written to `StartTimeZone/@Name`.
    pub display_name: &'static str,
}

/// IANA to Windows ids for the zones the simulator supports (`crate::tz` will take over).
const ZONES: &[(&str, &str, &str)] = &[
    ("UTC", "UTC", "(UTC) Coordinated Universal Time"),
    (
        "Europe/Berlin",
        "W. Europe Standard Time",
        "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
    ),
    (
        "Europe/Paris",
        "Romance Standard Time",
        "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris",
    ),
    (
        "Europe/London",
        "GMT Standard Time",
        "(UTC+00:00) Dublin, Edinburgh, Lisbon, London",
    ),
    (
        "America/New_York",
        "Eastern Standard Time",
        "(UTC-05:00) Eastern Time (US & Canada)",
    ),
    (
        "America/Chicago",
        "Central Standard Time",
        "(UTC-06:00) Central Time (US & Canada)",
    ),
    (
        "America/Los_Angeles",
        "Pacific Standard Time",
        "(UTC-08:00) Pacific Time (US & Canada)",
    ),
    (
        "Asia/Tokyo",
        "Tokyo Standard Time",
        "(UTC+09:00) Osaka, Sapporo, Tokyo",
    ),
    (
        "Australia/Sydney",
        "AUS Eastern Standard Time",
        "(UTC+10:00) Canberra, Melbourne, Sydney",
    ),
];

/// Looks up a supported IANA zone name.
///
/// # Errors
///
/// [`SimError::Invalid`] for a zone the simulator cannot map to a Windows id.
pub fn time_zone(name: &str) -> Result<TimeZoneInfo, SimError> {
    let (iana, windows_id, display_name) = ZONES
        .iter()
        .find(|(iana, _, _)| iana.eq_ignore_ascii_case(name))
        .ok_or_else(|| SimError::Invalid(format!("unsupported time zone {name}")))?;
    let tz: Tz = iana
        .parse()
        .map_err(|_| SimError::Invalid(format!("unsupported time zone {name}")))?;
    Ok(TimeZoneInfo {
        tz,
        windows_id,
        display_name,
    })
}

/// A person on a meeting: address, display name and answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonEntry {
    /// SMTP address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Response, for attendees.
    pub response: ResponseType,
}

/// A modified instance of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExceptionData {
    subject: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    location: Option<String>,
}

/// A calendar item: a single meeting or a recurring master.
#[derive(Debug, Clone)]
struct CalendarEntry {
    key: u64,
    version: u32,
    created_seq: u64,
    created: DateTime<Utc>,
    last_modified: DateTime<Utc>,
    uid: String,
    subject: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    is_all_day: bool,
    location: Option<String>,
    organizer: PersonEntry,
    attendees: Vec<PersonEntry>,
    resources: Vec<PersonEntry>,
    time_zone: TimeZoneInfo,
    is_cancelled: bool,
    received: bool,
    recurrence: Option<Recurrence>,
    exceptions: BTreeMap<DateTime<Utc>, ExceptionData>,
    deleted_occurrences: BTreeSet<DateTime<Utc>>,
}

/// What the change log remembers of a deleted item.
#[derive(Debug, Clone)]
struct Tombstone {
    created_seq: u64,
    item_id: String,
    change_key: String,
}

#[derive(Debug)]
struct Mailbox {
    index: u32,
    hash: u64,
    address: MailboxAddress,
    display_name: String,
    kind: MailboxKind,
    aliases: Vec<String>,
    items: BTreeMap<u64, CalendarEntry>,
    by_uid: HashMap<String, u64>,
    tombstones: HashMap<u64, Tombstone>,
    log: BTreeMap<u64, u64>,
    item_seq: HashMap<u64, u64>,
    seq: u64,
    deleted_items: usize,
}

/// The parts of a decoded simulator item id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemIdParts {
    /// Mailbox index.
    pub mailbox: u32,
    /// Item key inside the mailbox.
    pub key: u64,
    /// 0 calendar item, 1 occurrence or exception, 2 copy in Deleted Items.
    pub kind: u8,
    /// Original start (seconds) of an occurrence.
    pub original_start: i64,
}

/// A full view of one item (single, master, occurrence or exception) for GetItem/FindItem.
#[derive(Debug, Clone)]
pub struct ItemSnapshot {
    /// Item id.
    pub item_id: String,
    /// Change key.
    pub change_key: String,
    /// Parent folder id (the calendar).
    pub parent_folder_id: String,
    /// Subject.
    pub subject: String,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// LastModifiedTime.
    pub last_modified: DateTime<Utc>,
    /// iCalendar UID.
    pub uid: String,
    /// Original start of an occurrence or exception.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// All-day.
    pub is_all_day: bool,
    /// Location text.
    pub location: Option<String>,
    /// Cancelled.
    pub is_cancelled: bool,
    /// Part of a series.
    pub is_recurring: bool,
    /// Single, occurrence, exception or master.
    pub item_type: CalendarItemType,
    /// Organizer.
    pub organizer: PersonEntry,
    /// Required attendees.
    pub required_attendees: Vec<PersonEntry>,
    /// Resources (the room).
    pub resources: Vec<PersonEntry>,
    /// AppointmentState bit mask.
    pub appointment_state: u32,
    /// Time zone.
    pub time_zone: TimeZoneInfo,
    /// Recurrence rule (masters).
    pub recurrence: Option<Recurrence>,
    /// First instance (masters): id, start, end.
    pub first_occurrence: Option<OccurrenceInfo>,
    /// Last instance of a bounded series (masters).
    pub last_occurrence: Option<OccurrenceInfo>,
    /// Exceptions (masters).
    pub modified_occurrences: Vec<OccurrenceInfo>,
    /// Original starts of deleted instances (masters).
    pub deleted_occurrences: Vec<DateTime<Utc>>,
    /// PidLidCleanGlobalObjectId, base64.
    pub clean_global_object_id: String,
    /// PidLidGlobalObjectId, base64 (carries the instance date for occurrences).
    pub global_object_id: String,
}

/// An occurrence reference inside a master's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurrenceInfo {
    /// Occurrence item id.
    pub item_id: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Original start.
    pub original_start: DateTime<Utc>,
}

/// One SyncFolderItems change as the model computes it.
#[derive(Debug, Clone)]
pub enum SyncEntry {
    /// New since the state.
    Create(ItemSnapshot),
    /// Changed since the state.
    Update(ItemSnapshot),
    /// Gone since the state.
    Delete {
        /// The id the item had.
        item_id: String,
        /// Its last change key.
        change_key: String,
    },
}

/// One page of SyncFolderItems.
#[derive(Debug, Clone)]
pub struct SyncResult {
    /// The new opaque state.
    pub sync_state: String,
    /// No more changes after this page.
    pub includes_last_item_in_range: bool,
    /// The changes, oldest first.
    pub changes: Vec<SyncEntry>,
}

/// Why an item lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// The id is not one the simulator minted.
    Malformed,
    /// The id was valid once but the item (or occurrence) is gone.
    NotFound,
}

/// Counters for the stats endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCounts {
    /// Mailboxes.
    pub mailboxes: usize,
    /// Calendar items (singles and masters).
    pub items: usize,
    /// Changes recorded in all change logs.
    pub changes: u64,
}

/// The calendar model of every mailbox.
#[derive(Debug)]
pub struct Model {
    seed: u64,
    clock: DateTime<Utc>,
    next_key: u64,
    mailboxes: Vec<Mailbox>,
    by_address: HashMap<String, usize>,
    changes: u64,
}

/// Mixes two values into a well-distributed 64-bit hash (splitmix64 finaliser).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash_str(seed: u64, text: &str) -> u64 {
    text.bytes()
        .fold(mix(seed, 0x5157), |h, b| mix(h, b as u64))
}

impl Model {
    /// An empty model.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            clock: DateTime::<Utc>::MIN_UTC,
            next_key: 1,
            mailboxes: Vec::new(),
            by_address: HashMap::new(),
            changes: 0,
        }
    }

    /// The next model time: real UTC now, never earlier than the previous value.
    fn tick(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        self.clock = if now > self.clock {
            now
        } else {
            self.clock + Duration::milliseconds(1)
        };
        self.clock
    }

    /// Adds a mailbox.
    ///
    /// # Errors
    ///
    /// [`SimError::Invalid`] for an address without `@`, [`SimError::Conflict`] when the
    /// address or an alias is taken.
    pub fn add_mailbox(&mut self, new: NewMailbox) -> Result<(), SimError> {
        let address = MailboxAddress::new(&new.email);
        if !address.as_str().contains('@') {
            return Err(SimError::Invalid(format!(
                "email {} is not an SMTP address",
                new.email
            )));
        }
        let aliases: Vec<String> = new
            .aliases
            .iter()
            .map(|alias| MailboxAddress::new(alias).as_str().to_owned())
            .collect();
        for name in std::iter::once(address.as_str()).chain(aliases.iter().map(String::as_str)) {
            if self.by_address.contains_key(name) {
                return Err(SimError::Conflict(format!("address {name} is taken")));
            }
        }
        let index = self.mailboxes.len();
        self.by_address.insert(address.as_str().to_owned(), index);
        for alias in &aliases {
            self.by_address.insert(alias.clone(), index);
        }
        self.mailboxes.push(Mailbox {
            index: index as u32,
            hash: hash_str(self.seed, address.as_str()),
            address,
            display_name: new.display_name,
            kind: new.kind,
            aliases,
            items: BTreeMap::new(),
            by_uid: HashMap::new(),
            tombstones: HashMap::new(),
            log: BTreeMap::new(),
            item_seq: HashMap::new(),
            seq: 0,
            deleted_items: 0,
        });
        Ok(())
    }

    /// Resolves a primary address or alias to the primary address.
    pub fn resolve(&self, address: &str) -> Option<MailboxAddress> {
        let key = MailboxAddress::new(address);
        self.by_address
            .get(key.as_str())
            .map(|&index| self.mailboxes[index].address.clone())
    }

    /// The mailboxes with their item counts.
    pub fn mailboxes(&self) -> Vec<MailboxInfo> {
        self.mailboxes
            .iter()
            .map(|mailbox| MailboxInfo {
                email: mailbox.address.as_str().to_owned(),
                display_name: mailbox.display_name.clone(),
                kind: mailbox.kind,
                aliases: mailbox.aliases.clone(),
                items: mailbox.items.len(),
            })
            .collect()
    }

    /// Counts for the stats endpoint.
    pub fn counts(&self) -> ModelCounts {
        ModelCounts {
            mailboxes: self.mailboxes.len(),
            items: self.mailboxes.iter().map(|m| m.items.len()).sum(),
            changes: self.changes,
        }
    }

    /// The display name of a mailbox, if known.
    pub fn display_name(&self, address: &str) -> Option<String> {
        let key = MailboxAddress::new(address);
        self.by_address
            .get(key.as_str())
            .map(|&index| self.mailboxes[index].display_name.clone())
    }

    fn mailbox_index(&self, address: &str) -> Result<usize, SimError> {
        let key = MailboxAddress::new(address);
        self.by_address
            .get(key.as_str())
            .copied()
            .ok_or_else(|| SimError::NotFound(format!("mailbox {address}")))
    }

    fn person(&self, email: &str, response: ResponseType) -> PersonEntry {
        let address = MailboxAddress::new(email);
        let name = self.display_name(address.as_str()).unwrap_or_else(|| {
            address
                .as_str()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        PersonEntry {
            email: self
                .resolve(address.as_str())
                .unwrap_or(address)
                .as_str()
                .to_owned(),
            name,
            response,
        }
    }

    /// The opaque folder id of a mailbox's folder.
    pub fn folder_id(&self, mailbox: u32, kind: FolderKind) -> String {
        let mut bytes = vec![b'S', b'F', kind.code()];
        bytes.extend_from_slice(&mailbox.to_be_bytes());
        bytes.extend_from_slice(
            &(mix(self.seed, mailbox as u64 * 8 + kind.code() as u64) as u32).to_be_bytes(),
        );
        BASE64.encode(bytes)
    }

    /// Decodes a folder id minted by [`Model::folder_id`].
    pub fn decode_folder_id(&self, id: &str) -> Option<(u32, FolderKind)> {
        let bytes = BASE64.decode(id).ok()?;
        if bytes.len() != 11 || bytes[0] != b'S' || bytes[1] != b'F' {
            return None;
        }
        let kind = match bytes[2] {
            0 => FolderKind::Root,
            1 => FolderKind::Calendar,
            2 => FolderKind::DeletedItems,
            _ => return None,
        };
        let mailbox = u32::from_be_bytes(bytes[3..7].try_into().ok()?);
        (self.folder_id(mailbox, kind) == id).then_some((mailbox, kind))
    }

    /// The index of a mailbox by address.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown address.
    pub fn mailbox_number(&self, address: &str) -> Result<u32, SimError> {
        self.mailbox_index(address).map(|index| index as u32)
    }

    /// The calendar's item count of a mailbox.
    pub fn calendar_count(&self, mailbox: u32) -> usize {
        self.mailboxes
            .get(mailbox as usize)
            .map_or(0, |m| m.items.len())
    }

    /// The Deleted Items count of a mailbox.
    pub fn deleted_items_count(&self, mailbox: u32) -> usize {
        self.mailboxes
            .get(mailbox as usize)
            .map_or(0, |m| m.deleted_items)
    }

    fn item_id(&self, mailbox: u32, key: u64, kind: u8, original_start: i64) -> String {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(b"AAMkSIM");
        bytes.push(kind);
        bytes.extend_from_slice(&mailbox.to_be_bytes());
        bytes.extend_from_slice(&key.to_be_bytes());
        bytes.extend_from_slice(&original_start.to_be_bytes());
        let tag = mix(
            self.seed,
            mix(
                key,
                mix(mailbox as u64, original_start as u64 ^ kind as u64),
            ),
        );
        bytes.extend_from_slice(&tag.to_be_bytes()[..4]);
        BASE64.encode(bytes)
    }

    /// Decodes an item id minted by the model.
    pub fn decode_item_id(&self, id: &str) -> Option<ItemIdParts> {
        let bytes = BASE64.decode(id).ok()?;
        if bytes.len() != 32 || &bytes[..7] != b"AAMkSIM" {
            return None;
        }
        let parts = ItemIdParts {
            kind: bytes[7],
            mailbox: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
            key: u64::from_be_bytes(bytes[12..20].try_into().ok()?),
            original_start: i64::from_be_bytes(bytes[20..28].try_into().ok()?),
        };
        (self.item_id(parts.mailbox, parts.key, parts.kind, parts.original_start) == id)
            .then_some(parts)
    }

    fn change_key(&self, key: u64, version: u32) -> String {
        let mut bytes = Vec::with_capacity(20);
        bytes.extend_from_slice(b"DwAAABYA");
        bytes.extend_from_slice(&key.to_be_bytes());
        bytes.extend_from_slice(&version.to_be_bytes());
        BASE64.encode(bytes)
    }

    fn mint_uid(&mut self) -> String {
        let key = self.next_key;
        let mut data = Vec::with_capacity(56);
        data.extend_from_slice(&GOID_CLASS);
        data.extend_from_slice(&[0, 0, 0, 0]);
        // The creation time inside the id is derived from the key, not the clock, so a
        // seed always yields the same UIDs.
        let filetime = (UID_EPOCH_SECONDS + key) * 10_000_000;
        data.extend_from_slice(&filetime.to_le_bytes());
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&16u32.to_le_bytes());
        data.extend_from_slice(&mix(self.seed, key).to_be_bytes());
        data.extend_from_slice(&mix(key, self.seed ^ 0xA5A5).to_be_bytes());
        data.iter().map(|b| format!("{b:02X}")).collect()
    }

    fn sync_state(&self, mailbox: &Mailbox, seq: u64) -> String {
        let mut bytes = Vec::with_capacity(26);
        bytes.extend_from_slice(b"SS");
        bytes.extend_from_slice(&mailbox.hash.to_be_bytes());
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&mix(self.seed, mix(mailbox.hash, seq)).to_be_bytes());
        BASE64.encode(bytes)
    }

    fn decode_sync_state(&self, mailbox: &Mailbox, state: &str) -> Option<u64> {
        let bytes = BASE64.decode(state.trim()).ok()?;
        if bytes.len() != 26 || &bytes[..2] != b"SS" {
            return None;
        }
        let hash = u64::from_be_bytes(bytes[2..10].try_into().ok()?);
        let seq = u64::from_be_bytes(bytes[10..18].try_into().ok()?);
        let check = u64::from_be_bytes(bytes[18..26].try_into().ok()?);
        (hash == mailbox.hash && check == mix(self.seed, mix(hash, seq)) && seq <= mailbox.seq)
            .then_some(seq)
    }

    fn record(&mut self, index: usize, key: u64) {
        let mailbox = &mut self.mailboxes[index];
        mailbox.seq += 1;
        if let Some(old) = mailbox.item_seq.insert(key, mailbox.seq) {
            mailbox.log.remove(&old);
        }
        mailbox.log.insert(mailbox.seq, key);
        self.changes += 1;
    }

    fn folder_event(&self, index: usize, now: DateTime<Utc>) -> SimEvent {
        let mailbox = &self.mailboxes[index];
        SimEvent {
            kind: EventKind::Modified,
            timestamp: now,
            target: EventTarget::Folder(self.folder_id(mailbox.index, FolderKind::Calendar).into()),
            parent_folder_id: self.folder_id(mailbox.index, FolderKind::Root).into(),
            old_item: None,
            old_parent_folder_id: None,
            unread_count: Some(0),
        }
    }

    fn item_event(&self, index: usize, kind: EventKind, key: u64, now: DateTime<Utc>) -> SimEvent {
        let mailbox = &self.mailboxes[index];
        let version = mailbox.items.get(&key).map_or(0, |entry| entry.version);
        SimEvent {
            kind,
            timestamp: now,
            target: EventTarget::Item(
                self.item_id(mailbox.index, key, 0, 0).into(),
                self.change_key(key, version).into(),
            ),
            parent_folder_id: self.folder_id(mailbox.index, FolderKind::Calendar).into(),
            old_item: None,
            old_parent_folder_id: None,
            unread_count: None,
        }
    }

    /// Creates an appointment in a mailbox's calendar.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox, [`SimError::Invalid`] for an end
    /// before the start or an unsupported time zone, [`SimError::Conflict`] when the
    /// UID already exists in that calendar.
    pub fn create(
        &mut self,
        address: &str,
        new: NewAppointment,
    ) -> Result<(AppointmentRef, EventBatch), SimError> {
        let index = self.mailbox_index(address)?;
        if new.end < new.start {
            return Err(SimError::Invalid("end is before start".into()));
        }
        if new.subject.len() > 255 {
            return Err(SimError::Invalid(
                "subject is longer than 255 characters".into(),
            ));
        }
        let time_zone = time_zone(new.time_zone.as_deref().unwrap_or("UTC"))?;
        if let Some(recurrence) = &new.recurrence {
            validate_recurrence(recurrence)?;
        }
        let now = self.tick();
        let uid = match new.uid {
            Some(uid) if !uid.trim().is_empty() => uid,
            _ => self.mint_uid(),
        };
        if self.mailboxes[index].by_uid.contains_key(&uid) {
            return Err(SimError::Conflict(format!(
                "uid {uid} already exists in {address}"
            )));
        }
        let key = self.next_key;
        self.next_key += 1;
        let organizer = self.person(&new.organizer, ResponseType::Organizer);
        let attendees = new
            .attendees
            .iter()
            .map(|email| self.person(email, ResponseType::Accept))
            .collect();
        let mailbox = &self.mailboxes[index];
        let is_room = mailbox.kind == MailboxKind::Room;
        let resources = if is_room {
            vec![self.person(mailbox.address.as_str(), ResponseType::Accept)]
        } else {
            Vec::new()
        };
        let location = new
            .location
            .or_else(|| is_room.then(|| mailbox.display_name.clone()));
        let received = MailboxAddress::new(&organizer.email) != mailbox.address;
        let entry = CalendarEntry {
            key,
            version: 1,
            created_seq: mailbox.seq + 1,
            created: now,
            last_modified: now.with_nanosecond(0).unwrap_or(now),
            uid: uid.clone(),
            subject: new.subject,
            start: new.start,
            end: new.end,
            is_all_day: new.is_all_day,
            location,
            organizer,
            attendees,
            resources,
            time_zone,
            is_cancelled: false,
            received,
            recurrence: new.recurrence,
            exceptions: BTreeMap::new(),
            deleted_occurrences: BTreeSet::new(),
        };
        let mailbox = &mut self.mailboxes[index];
        mailbox.by_uid.insert(uid.clone(), key);
        mailbox.items.insert(key, entry);
        self.record(index, key);
        let events = vec![
            self.item_event(index, EventKind::Created, key, now),
            self.folder_event(index, now),
        ];
        let reference = self.reference(index, key);
        Ok((
            reference,
            EventBatch {
                mailbox: Some(self.mailboxes[index].address.clone()),
                events,
            },
        ))
    }

    fn reference(&self, index: usize, key: u64) -> AppointmentRef {
        let mailbox = &self.mailboxes[index];
        let entry = &mailbox.items[&key];
        AppointmentRef {
            item_id: self.item_id(mailbox.index, key, 0, 0),
            uid: entry.uid.clone(),
            change_key: self.change_key(key, entry.version),
        }
    }

    fn key_by_uid(&self, index: usize, uid: &str) -> Result<u64, SimError> {
        self.mailboxes[index]
            .by_uid
            .get(uid)
            .copied()
            .ok_or_else(|| SimError::NotFound(format!("appointment {uid}")))
    }

    /// Bumps version and LastModifiedTime of an item and records the change.
    fn touch(&mut self, index: usize, key: u64, now: DateTime<Utc>, duplicate: bool) -> EventBatch {
        let second = now.with_nanosecond(0).unwrap_or(now);
        if let Some(entry) = self.mailboxes[index].items.get_mut(&key) {
            entry.version += 1;
            entry.last_modified = if second > entry.last_modified {
                second
            } else {
                entry.last_modified + Duration::seconds(1)
            };
        }
        self.record(index, key);
        let mut events = vec![self.item_event(index, EventKind::Modified, key, now)];
        if duplicate {
            events.push(self.item_event(index, EventKind::Modified, key, now));
        }
        events.push(self.folder_event(index, now));
        EventBatch {
            mailbox: Some(self.mailboxes[index].address.clone()),
            events,
        }
    }

    /// Changes an appointment (or, with `occurrence_start`, one occurrence of a series).
    ///
    /// `duplicate` adds a second ModifiedEvent for the item, as Exchange sometimes does.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox, UID or occurrence,
    /// [`SimError::Invalid`] for inconsistent values.
    pub fn update(
        &mut self,
        address: &str,
        uid: &str,
        patch: AppointmentPatch,
        duplicate: bool,
    ) -> Result<(AppointmentRef, EventBatch), SimError> {
        let index = self.mailbox_index(address)?;
        let key = self.key_by_uid(index, uid)?;
        let organizer = patch
            .organizer
            .as_deref()
            .map(|email| self.person(email, ResponseType::Organizer));
        let attendees: Option<Vec<PersonEntry>> = patch.attendees.as_ref().map(|list| {
            list.iter()
                .map(|email| self.person(email, ResponseType::Accept))
                .collect()
        });
        let zone = patch.time_zone.as_deref().map(time_zone).transpose()?;
        if let Some(recurrence) = &patch.recurrence {
            validate_recurrence(recurrence)?;
        }
        let now = self.tick();
        if let Some(original) = patch.occurrence_start {
            self.update_occurrence(index, key, original, &patch)?;
        } else {
            let entry = self.mailboxes[index]
                .items
                .get_mut(&key)
                .ok_or_else(|| SimError::NotFound(format!("appointment {uid}")))?;
            let start = patch.start.unwrap_or(entry.start);
            let end = patch.end.unwrap_or(entry.end);
            if end < start {
                return Err(SimError::Invalid("end is before start".into()));
            }
            if patch.recurrence.is_some() || start != entry.start {
                // A new rule or a moved series invalidates the exceptions, as in Outlook.
                if entry.recurrence.is_some() {
                    entry.exceptions.clear();
                    entry.deleted_occurrences.clear();
                }
            }
            entry.start = start;
            entry.end = end;
            if let Some(subject) = patch.subject {
                entry.subject = subject;
            }
            if let Some(all_day) = patch.is_all_day {
                entry.is_all_day = all_day;
            }
            if let Some(organizer) = organizer {
                entry.organizer = organizer;
            }
            if let Some(attendees) = attendees {
                entry.attendees = attendees;
            }
            if let Some(zone) = zone {
                entry.time_zone = zone;
            }
            if let Some(recurrence) = patch.recurrence {
                entry.recurrence = Some(recurrence);
            }
            if let Some(location) = patch.location {
                entry.location = Some(location);
            }
        }
        let batch = self.touch(index, key, now, duplicate);
        Ok((self.reference(index, key), batch))
    }

    fn update_occurrence(
        &mut self,
        index: usize,
        key: u64,
        original: DateTime<Utc>,
        patch: &AppointmentPatch,
    ) -> Result<(), SimError> {
        let instance = self.instance_of(index, key, original)?;
        let entry = self.mailboxes[index]
            .items
            .get_mut(&key)
            .ok_or_else(|| SimError::NotFound("appointment".into()))?;
        let current = entry
            .exceptions
            .get(&original)
            .cloned()
            .unwrap_or(ExceptionData {
                subject: entry.subject.clone(),
                start: instance.start,
                end: instance.end,
                location: entry.location.clone(),
            });
        let exception = ExceptionData {
            subject: patch.subject.clone().unwrap_or(current.subject),
            start: patch.start.unwrap_or(current.start),
            end: patch.end.unwrap_or(current.end),
            location: patch.location.clone().or(current.location),
        };
        if exception.end < exception.start {
            return Err(SimError::Invalid("end is before start".into()));
        }
        entry.exceptions.insert(original, exception);
        Ok(())
    }

    /// The instance of a series with this original start (not deleted).
    fn instance_of(
        &self,
        index: usize,
        key: u64,
        original: DateTime<Utc>,
    ) -> Result<Instance, SimError> {
        let entry = &self.mailboxes[index].items[&key];
        let rule = entry
            .recurrence
            .as_ref()
            .ok_or_else(|| SimError::Invalid("appointment is not recurring".into()))?;
        if entry.deleted_occurrences.contains(&original) {
            return Err(SimError::NotFound(format!(
                "occurrence {original} is deleted"
            )));
        }
        let duration = entry.end - entry.start;
        expand_series(
            rule,
            &timing(entry),
            original,
            original + duration + Duration::seconds(1),
        )
        .into_iter()
        .find(|instance| instance.original_start == original)
        .ok_or_else(|| SimError::NotFound(format!("occurrence starting {original}")))
    }

    /// Cancels a meeting: IsCancelled, AppointmentState bit 4, "Canceled: " subject.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox or UID.
    pub fn cancel(
        &mut self,
        address: &str,
        uid: &str,
    ) -> Result<(AppointmentRef, EventBatch), SimError> {
        let index = self.mailbox_index(address)?;
        let key = self.key_by_uid(index, uid)?;
        let now = self.tick();
        if let Some(entry) = self.mailboxes[index].items.get_mut(&key) {
            if !entry.is_cancelled {
                entry.is_cancelled = true;
                entry.subject = format!("{CANCELED_PREFIX}{}", entry.subject);
            }
        }
        let batch = self.touch(index, key, now, false);
        Ok((self.reference(index, key), batch))
    }

    /// Deletes an appointment (soft: to Deleted Items; hard: purged), or one occurrence.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox, UID or occurrence.
    pub fn delete(
        &mut self,
        address: &str,
        uid: &str,
        mode: DeleteMode,
        occurrence_start: Option<DateTime<Utc>>,
    ) -> Result<EventBatch, SimError> {
        let index = self.mailbox_index(address)?;
        let key = self.key_by_uid(index, uid)?;
        let now = self.tick();
        if let Some(original) = occurrence_start {
            self.instance_of(index, key, original)?;
            if let Some(entry) = self.mailboxes[index].items.get_mut(&key) {
                entry.exceptions.remove(&original);
                entry.deleted_occurrences.insert(original);
            }
            return Ok(self.touch(index, key, now, false));
        }
        let mailbox_number = self.mailboxes[index].index;
        let old_id: Arc<str> = self.item_id(mailbox_number, key, 0, 0).into();
        let entry = self.mailboxes[index]
            .items
            .remove(&key)
            .ok_or_else(|| SimError::NotFound(format!("appointment {uid}")))?;
        let old_change_key: Arc<str> = self.change_key(key, entry.version).into();
        let mailbox = &mut self.mailboxes[index];
        mailbox.by_uid.remove(&entry.uid);
        mailbox.tombstones.insert(
            key,
            Tombstone {
                created_seq: entry.created_seq,
                item_id: old_id.to_string(),
                change_key: old_change_key.to_string(),
            },
        );
        self.record(index, key);
        let calendar: Arc<str> = self.folder_id(mailbox_number, FolderKind::Calendar).into();
        let first = match mode {
            DeleteMode::Hard => SimEvent {
                kind: EventKind::Deleted,
                timestamp: now,
                target: EventTarget::Item(old_id, old_change_key),
                parent_folder_id: calendar,
                old_item: None,
                old_parent_folder_id: None,
                unread_count: None,
            },
            DeleteMode::Soft => {
                self.mailboxes[index].deleted_items += 1;
                SimEvent {
                    kind: EventKind::Moved,
                    timestamp: now,
                    target: EventTarget::Item(
                        self.item_id(mailbox_number, key, 2, 0).into(),
                        self.change_key(key, entry.version + 1).into(),
                    ),
                    parent_folder_id: self
                        .folder_id(mailbox_number, FolderKind::DeletedItems)
                        .into(),
                    old_item: Some((old_id, old_change_key)),
                    old_parent_folder_id: Some(calendar),
                    unread_count: None,
                }
            }
        };
        Ok(EventBatch {
            mailbox: Some(self.mailboxes[index].address.clone()),
            events: vec![first, self.folder_event(index, now)],
        })
    }

    /// An appointment's fields as a [`NewAppointment`] (to recreate it elsewhere, keeping its UID).
    pub fn export(&self, address: &str, uid: &str) -> Option<NewAppointment> {
        let index = self.mailbox_index(address).ok()?;
        let key = self.key_by_uid(index, uid).ok()?;
        let entry = &self.mailboxes[index].items[&key];
        Some(NewAppointment {
            subject: entry.subject.clone(),
            start: entry.start,
            end: entry.end,
            is_all_day: entry.is_all_day,
            organizer: entry.organizer.email.clone(),
            attendees: entry.attendees.iter().map(|a| a.email.clone()).collect(),
            time_zone: Some(entry.time_zone.tz.name().to_owned()),
            recurrence: entry.recurrence.clone(),
            location: None,
            uid: Some(entry.uid.clone()),
        })
    }

    /// The UIDs of a mailbox's calendar items (for the workload).
    ///
    /// Each entry is (UID, is a series, is cancelled).
    pub fn uids(&self, address: &str) -> Vec<(String, bool, bool)> {
        self.mailbox_index(address)
            .map(|index| {
                self.mailboxes[index]
                    .items
                    .values()
                    .map(|entry| {
                        (
                            entry.uid.clone(),
                            entry.recurrence.is_some(),
                            entry.is_cancelled,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The original starts of a series' live instances in a window (for the workload).
    pub fn instance_starts(
        &self,
        address: &str,
        uid: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let Ok(index) = self.mailbox_index(address) else {
            return Vec::new();
        };
        let Ok(key) = self.key_by_uid(index, uid) else {
            return Vec::new();
        };
        let entry = &self.mailboxes[index].items[&key];
        match &entry.recurrence {
            Some(rule) => expand_series(rule, &timing(entry), from, to)
                .into_iter()
                .map(|instance| instance.original_start)
                .filter(|start| !entry.deleted_occurrences.contains(start))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The truth: every live instance overlapping `[from, to)`, one entry per occurrence.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox.
    pub fn truth(
        &self,
        address: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TruthEntry>, SimError> {
        let index = self.mailbox_index(address)?;
        let mut entries: Vec<TruthEntry> = self
            .view(index, from, to)
            .into_iter()
            .map(|snapshot| {
                let master =
                    &self.mailboxes[index].items[&self.mailboxes[index].by_uid[&snapshot.uid]];
                TruthEntry {
                    uid: snapshot.uid.clone(),
                    occurrence_start: snapshot.recurrence_id,
                    subject: snapshot.subject,
                    start: snapshot.start,
                    end: snapshot.end,
                    is_all_day: snapshot.is_all_day,
                    organizer: snapshot.organizer.email,
                    is_cancelled: snapshot.is_cancelled,
                    change_key: self.change_key(master.key, master.version),
                    last_modified: master.last_modified,
                }
            })
            .collect();
        entries.sort_by(|a, b| (a.start, &a.uid).cmp(&(b.start, &b.uid)));
        Ok(entries)
    }

    /// Every single item and master of a mailbox's calendar, oldest first.
    pub fn calendar_items(&self, mailbox: u32) -> Vec<ItemSnapshot> {
        self.mailboxes
            .get(mailbox as usize)
            .map_or_else(Vec::new, |mailbox| {
                mailbox
                    .items
                    .values()
                    .map(|entry| self.snapshot(mailbox, entry))
                    .collect()
            })
    }

    /// The primary address of a mailbox by index.
    pub fn address_of(&self, mailbox: u32) -> Option<MailboxAddress> {
        self.mailboxes
            .get(mailbox as usize)
            .map(|mailbox| mailbox.address.clone())
    }

    /// CalendarView: singles, occurrences and exceptions overlapping `[from, to)`, by start.
    ///
    /// # Errors
    ///
    /// [`SimError::NotFound`] for an unknown mailbox.
    pub fn calendar_view(
        &self,
        mailbox: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<ItemSnapshot> {
        let mut snapshots = self.view(mailbox as usize, from, to);
        snapshots.sort_by(|a, b| (a.start, &a.item_id).cmp(&(b.start, &b.item_id)));
        snapshots
    }

    fn view(&self, index: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<ItemSnapshot> {
        let Some(mailbox) = self.mailboxes.get(index) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in mailbox.items.values() {
            match &entry.recurrence {
                None => {
                    if overlaps(entry.start, entry.end, from, to) {
                        out.push(self.snapshot(mailbox, entry));
                    }
                }
                Some(rule) => {
                    let duration = entry.end - entry.start;
                    // Exceptions can move far from their original slot, so scan them apart.
                    let widen = Duration::days(1) + duration;
                    for instance in expand_series(rule, &timing(entry), from - widen, to + widen) {
                        if entry.deleted_occurrences.contains(&instance.original_start)
                            || entry.exceptions.contains_key(&instance.original_start)
                        {
                            continue;
                        }
                        if overlaps(instance.start, instance.end, from, to) {
                            out.push(self.occurrence_snapshot(mailbox, entry, &instance));
                        }
                    }
                    for (original, exception) in &entry.exceptions {
                        if overlaps(exception.start, exception.end, from, to) {
                            let instance = Instance {
                                original_start: *original,
                                start: exception.start,
                                end: exception.end,
                            };
                            out.push(self.occurrence_snapshot(mailbox, entry, &instance));
                        }
                    }
                }
            }
        }
        out
    }

    fn snapshot(&self, mailbox: &Mailbox, entry: &CalendarEntry) -> ItemSnapshot {
        let is_meeting = !entry.attendees.is_empty() || !entry.resources.is_empty();
        let mut state = 0;
        if is_meeting {
            state |= STATE_MEETING;
        }
        if entry.received {
            state |= STATE_RECEIVED;
        }
        if entry.is_cancelled {
            state |= STATE_CANCELLED;
        }
        let clean = goid_bytes(&entry.uid, None);
        let mut snapshot = ItemSnapshot {
            item_id: self.item_id(mailbox.index, entry.key, 0, 0),
            change_key: self.change_key(entry.key, entry.version),
            parent_folder_id: self.folder_id(mailbox.index, FolderKind::Calendar),
            subject: entry.subject.clone(),
            created: entry.created,
            last_modified: entry.last_modified,
            uid: entry.uid.clone(),
            recurrence_id: None,
            start: entry.start,
            end: entry.end,
            is_all_day: entry.is_all_day,
            location: entry.location.clone(),
            is_cancelled: entry.is_cancelled,
            is_recurring: false,
            item_type: CalendarItemType::Single,
            organizer: entry.organizer.clone(),
            required_attendees: entry.attendees.clone(),
            resources: entry.resources.clone(),
            appointment_state: state,
            time_zone: entry.time_zone.clone(),
            recurrence: None,
            first_occurrence: None,
            last_occurrence: None,
            modified_occurrences: Vec::new(),
            deleted_occurrences: Vec::new(),
            clean_global_object_id: BASE64.encode(&clean),
            global_object_id: BASE64.encode(&clean),
        };
        if let Some(rule) = &entry.recurrence {
            snapshot.item_type = CalendarItemType::RecurringMaster;
            snapshot.recurrence = Some(rule.clone());
        }
        snapshot
    }

    /// Adds what only GetItem of a master shows: first/last, modified and deleted occurrences.
    fn add_series_fields(
        &self,
        snapshot: &mut ItemSnapshot,
        mailbox: &Mailbox,
        entry: &CalendarEntry,
    ) {
        if let Some(rule) = &entry.recurrence {
            let series_timing = timing(entry);
            let horizon = entry.start + Duration::days(366 * 5);
            let instances = expand_series(rule, &series_timing, entry.start, horizon);
            let info = |instance: &Instance| OccurrenceInfo {
                item_id: self.item_id(
                    mailbox.index,
                    entry.key,
                    1,
                    instance.original_start.timestamp(),
                ),
                start: instance.start,
                end: instance.end,
                original_start: instance.original_start,
            };
            snapshot.first_occurrence = instances.first().map(info);
            if !matches!(rule.end, RangeEnd::NoEnd) {
                snapshot.last_occurrence = instances.last().map(info);
            }
            snapshot.modified_occurrences = entry
                .exceptions
                .iter()
                .map(|(original, exception)| OccurrenceInfo {
                    item_id: self.item_id(mailbox.index, entry.key, 1, original.timestamp()),
                    start: exception.start,
                    end: exception.end,
                    original_start: *original,
                })
                .collect();
            snapshot.deleted_occurrences = entry.deleted_occurrences.iter().copied().collect();
        }
    }

    fn occurrence_snapshot(
        &self,
        mailbox: &Mailbox,
        entry: &CalendarEntry,
        instance: &Instance,
    ) -> ItemSnapshot {
        let mut snapshot = self.snapshot(mailbox, entry);
        let original = instance.original_start;
        snapshot.item_id = self.item_id(mailbox.index, entry.key, 1, original.timestamp());
        snapshot.recurrence_id = Some(original);
        snapshot.start = instance.start;
        snapshot.end = instance.end;
        snapshot.is_recurring = true;
        snapshot.item_type = CalendarItemType::Occurrence;
        snapshot.recurrence = None;
        snapshot.global_object_id = BASE64.encode(goid_bytes(&entry.uid, Some(original)));
        if let Some(exception) = entry.exceptions.get(&original) {
            snapshot.item_type = CalendarItemType::Exception;
            snapshot.subject = exception.subject.clone();
            snapshot.location = exception.location.clone();
        }
        snapshot
    }

    /// Looks up any item id: single, master, occurrence or exception.
    ///
    /// # Errors
    ///
    /// [`LookupError::Malformed`] for ids the simulator did not mint,
    /// [`LookupError::NotFound`] for items or occurrences that are gone.
    pub fn lookup(&self, id: &str) -> Result<(u32, ItemSnapshot), LookupError> {
        let parts = self.decode_item_id(id).ok_or(LookupError::Malformed)?;
        let mailbox = self
            .mailboxes
            .get(parts.mailbox as usize)
            .ok_or(LookupError::NotFound)?;
        let entry = mailbox.items.get(&parts.key).ok_or(LookupError::NotFound)?;
        match parts.kind {
            0 => {
                let mut snapshot = self.snapshot(mailbox, entry);
                self.add_series_fields(&mut snapshot, mailbox, entry);
                Ok((mailbox.index, snapshot))
            }
            1 => {
                let original = Utc
                    .timestamp_opt(parts.original_start, 0)
                    .single()
                    .ok_or(LookupError::Malformed)?;
                let instance = self.live_instance(mailbox, entry, original)?;
                Ok((
                    mailbox.index,
                    self.occurrence_snapshot(mailbox, entry, &instance),
                ))
            }
            _ => Err(LookupError::NotFound),
        }
    }

    fn live_instance(
        &self,
        mailbox: &Mailbox,
        entry: &CalendarEntry,
        original: DateTime<Utc>,
    ) -> Result<Instance, LookupError> {
        if entry.deleted_occurrences.contains(&original) {
            return Err(LookupError::NotFound);
        }
        if let Some(exception) = entry.exceptions.get(&original) {
            return Ok(Instance {
                original_start: original,
                start: exception.start,
                end: exception.end,
            });
        }
        let rule = entry.recurrence.as_ref().ok_or(LookupError::NotFound)?;
        let _ = mailbox;
        expand_series(
            rule,
            &timing(entry),
            original,
            original + (entry.end - entry.start) + Duration::seconds(1),
        )
        .into_iter()
        .find(|instance| instance.original_start == original)
        .ok_or(LookupError::NotFound)
    }

    /// The id of the n-th (1-based) instance of a master, for `OccurrenceItemId`.
    ///
    /// # Errors
    ///
    /// As [`Model::lookup`]; an index past the series end is `NotFound`.
    pub fn occurrence_by_index(
        &self,
        master_id: &str,
        index: usize,
    ) -> Result<String, LookupError> {
        let parts = self
            .decode_item_id(master_id)
            .ok_or(LookupError::Malformed)?;
        let mailbox = self
            .mailboxes
            .get(parts.mailbox as usize)
            .ok_or(LookupError::NotFound)?;
        let entry = mailbox.items.get(&parts.key).ok_or(LookupError::NotFound)?;
        let rule = entry.recurrence.as_ref().ok_or(LookupError::NotFound)?;
        if index == 0 {
            return Err(LookupError::NotFound);
        }
        let instances = expand_series(
            rule,
            &timing(entry),
            entry.start,
            entry.start + Duration::days(366 * 10),
        );
        let instance = instances.get(index - 1).ok_or(LookupError::NotFound)?;
        Ok(self.item_id(
            mailbox.index,
            entry.key,
            1,
            instance.original_start.timestamp(),
        ))
    }

    /// The master's id for an occurrence or exception id, for `RecurringMasterItemId`.
    ///
    /// # Errors
    ///
    /// As [`Model::lookup`].
    pub fn master_of(&self, occurrence_id: &str) -> Result<String, LookupError> {
        let parts = self
            .decode_item_id(occurrence_id)
            .ok_or(LookupError::Malformed)?;
        let mailbox = self
            .mailboxes
            .get(parts.mailbox as usize)
            .ok_or(LookupError::NotFound)?;
        let entry = mailbox.items.get(&parts.key).ok_or(LookupError::NotFound)?;
        if entry.recurrence.is_none() {
            return Err(LookupError::NotFound);
        }
        Ok(self.item_id(mailbox.index, entry.key, 0, 0))
    }

    /// SyncFolderItems over a mailbox's calendar from a state (`None`: from the start).
    ///
    /// # Errors
    ///
    /// `Err(())` when the state does not decode or verify for this mailbox.
    #[allow(clippy::result_unit_err)]
    pub fn sync(
        &self,
        mailbox: u32,
        state: Option<&str>,
        max_changes: usize,
        ignore: &[String],
    ) -> Result<SyncResult, ()> {
        let mailbox = self.mailboxes.get(mailbox as usize).ok_or(())?;
        let from = match state {
            None => 0,
            Some(text) if text.trim().is_empty() => 0,
            Some(text) => self.decode_sync_state(mailbox, text).ok_or(())?,
        };
        let mut changes = Vec::new();
        let mut last_seq = from;
        let mut range = mailbox.log.range(from + 1..).peekable();
        while changes.len() < max_changes {
            let Some((&seq, &key)) = range.next() else {
                break;
            };
            last_seq = seq;
            if let Some(entry) = mailbox.items.get(&key) {
                let snapshot = self.snapshot(mailbox, entry);
                if ignore.contains(&snapshot.item_id) {
                    continue;
                }
                if entry.created_seq > from {
                    changes.push(SyncEntry::Create(snapshot));
                } else {
                    changes.push(SyncEntry::Update(snapshot));
                }
            } else if let Some(tombstone) = mailbox.tombstones.get(&key) {
                if tombstone.created_seq <= from && !ignore.contains(&tombstone.item_id) {
                    changes.push(SyncEntry::Delete {
                        item_id: tombstone.item_id.clone(),
                        change_key: tombstone.change_key.clone(),
                    });
                }
            }
        }
        let includes_last = range.peek().is_none();
        let last_seq = if includes_last {
            mailbox.seq.max(last_seq)
        } else {
            last_seq
        };
        Ok(SyncResult {
            sync_state: self.sync_state(mailbox, last_seq),
            includes_last_item_in_range: includes_last,
            changes,
        })
    }
}

/// The Outlook global object id of a meeting (with the instance date of an occurrence).
fn goid_bytes(uid: &str, instance: Option<DateTime<Utc>>) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..uid.len() / 2)
        .filter_map(|i| u8::from_str_radix(uid.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    if bytes.len() < 20 || bytes[..16] != GOID_CLASS {
        // A foreign UID (not an Outlook one) is wrapped the way Outlook wraps iCalendar UIDs.
        let mut wrapped = GOID_CLASS.to_vec();
        wrapped.extend_from_slice(&[0; 16]);
        wrapped.extend_from_slice(&(uid.len() as u32 + 12).to_le_bytes());
        wrapped.extend_from_slice(b"vCal-Uid\x01\x00\x00\x00");
        wrapped.extend_from_slice(uid.as_bytes());
        bytes = wrapped;
    }
    if let Some(date) = instance {
        let year = date.year() as u16;
        bytes[16] = (year >> 8) as u8;
        bytes[17] = (year & 0xFF) as u8;
        bytes[18] = date.month() as u8;
        bytes[19] = date.day() as u8;
    }
    bytes
}

fn validate_recurrence(rule: &Recurrence) -> Result<(), SimError> {
    let bad = |what: &str| Err(SimError::Invalid(format!("recurrence {what}")));
    match &rule.pattern {
        Pattern::Daily { interval }
        | Pattern::AbsoluteMonthly { interval, .. }
        | Pattern::RelativeMonthly { interval, .. }
            if *interval == 0 =>
        {
            return bad("interval must be at least 1");
        }
        Pattern::Weekly { interval, days, .. } if *interval == 0 || days.is_empty() => {
            return bad("weekly needs an interval >= 1 and at least one day");
        }
        _ => {}
    }
    if let RangeEnd::Numbered { count: 0 } = rule.end {
        return bad("count must be at least 1");
    }
    Ok(())
}

fn timing(entry: &CalendarEntry) -> SeriesTiming {
    SeriesTiming {
        start: entry.start,
        end: entry.end,
        is_all_day: entry.is_all_day,
        time_zone: entry.time_zone.tz,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, Weekday};

    use super::*;

    fn model() -> Model {
        let mut model = Model::new(42);
        for (email, kind) in [
            ("room-a@contoso.example", MailboxKind::Room),
            ("room-b@contoso.example", MailboxKind::Room),
            ("user-a@contoso.example", MailboxKind::User),
        ] {
            model
                .add_mailbox(NewMailbox {
                    email: email.into(),
                    display_name: email.into(),
                    kind,
                    aliases: Vec::new(),
                })
                .unwrap();
        }
        model
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn meeting(
        start: &str,
        end: &str,
        zone: &str,
        recurrence: Option<Recurrence>,
    ) -> NewAppointment {
        NewAppointment {
            subject: "Meeting".into(),
            start: at(start),
            end: at(end),
            is_all_day: false,
            organizer: "user-a@contoso.example".into(),
            attendees: Vec::new(),
            time_zone: Some(zone.into()),
            recurrence,
            location: None,
            uid: None,
        }
    }

    fn rule(pattern: Pattern, start: &str, end: RangeEnd) -> Recurrence {
        Recurrence {
            pattern,
            start_date: start.parse::<NaiveDate>().unwrap(),
            end,
        }
    }

    fn starts(model: &Model, from: &str, to: &str) -> Vec<String> {
        model
            .truth("room-a@contoso.example", at(from), at(to))
            .unwrap()
            .iter()
            .map(|entry| entry.start.format("%Y-%m-%dT%H:%MZ").to_string())
            .collect()
    }

    #[test]
    fn weekly_series_keeps_local_time_across_daylight_saving() {
        let mut model = model();
        let weekly = rule(
            Pattern::Weekly {
                interval: 2,
                days: vec![Weekday::Mon],
                first_day_of_week: Weekday::Mon,
            },
            "2030-03-18",
            RangeEnd::Numbered { count: 3 },
        );
        model
            .create(
                "room-a@contoso.example",
                meeting(
                    "2030-03-18T08:00:00Z",
                    "2030-03-18T09:00:00Z",
                    "Europe/Berlin",
                    Some(weekly),
                ),
            )
            .unwrap();

        let starts = starts(&model, "2030-03-01T00:00:00Z", "2030-06-01T00:00:00Z");

        assert_eq!(
            starts,
            [
                "2030-03-18T08:00Z",
                "2030-04-01T07:00Z",
                "2030-04-15T07:00Z"
            ]
        );
    }

    #[test]
    fn monthly_series_on_the_31st_falls_back_to_the_last_day_of_short_months() {
        let mut model = model();
        let monthly = rule(
            Pattern::AbsoluteMonthly {
                interval: 1,
                day_of_month: 31,
            },
            "2030-01-31",
            RangeEnd::EndDate {
                date: "2030-03-31".parse().unwrap(),
            },
        );
        model
            .create(
                "room-a@contoso.example",
                meeting(
                    "2030-01-31T10:00:00Z",
                    "2030-01-31T11:00:00Z",
                    "UTC",
                    Some(monthly),
                ),
            )
            .unwrap();

        let starts = starts(&model, "2030-01-01T00:00:00Z", "2030-12-31T00:00:00Z");

        assert_eq!(
            starts,
            [
                "2030-01-31T10:00Z",
                "2030-02-28T10:00Z",
                "2030-03-31T10:00Z"
            ]
        );
    }

    #[test]
    fn daily_series_with_deleted_occurrence_and_exception_shows_in_the_truth() {
        let mut model = model();
        let daily = rule(
            Pattern::Daily { interval: 1 },
            "2030-05-01",
            RangeEnd::Numbered { count: 3 },
        );
        let (series, _) = model
            .create(
                "room-a@contoso.example",
                meeting(
                    "2030-05-01T09:00:00Z",
                    "2030-05-01T10:00:00Z",
                    "UTC",
                    Some(daily),
                ),
            )
            .unwrap();
        model
            .delete(
                "room-a@contoso.example",
                &series.uid,
                DeleteMode::Soft,
                Some(at("2030-05-02T09:00:00Z")),
            )
            .unwrap();
        let patch = AppointmentPatch {
            start: Some(at("2030-05-03T15:00:00Z")),
            end: Some(at("2030-05-03T16:00:00Z")),
            occurrence_start: Some(at("2030-05-03T09:00:00Z")),
            ..AppointmentPatch::default()
        };
        model
            .update("room-a@contoso.example", &series.uid, patch, false)
            .unwrap();

        let truth = model
            .truth(
                "room-a@contoso.example",
                at("2030-05-01T00:00:00Z"),
                at("2030-05-05T00:00:00Z"),
            )
            .unwrap();

        assert_eq!(truth.len(), 2);
        assert_eq!(truth[1].occurrence_start, Some(at("2030-05-03T09:00:00Z")));
        assert_eq!(truth[1].start, at("2030-05-03T15:00:00Z"));
    }

    #[test]
    fn sync_state_of_another_mailbox_or_tampered_is_rejected() {
        let mut model = model();
        model
            .create(
                "room-a@contoso.example",
                meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
            )
            .unwrap();
        let state = model.sync(0, None, 10, &[]).unwrap().sync_state;
        let mut tampered = BASE64.decode(&state).unwrap();
        tampered[12] ^= 1;

        assert!(model.sync(0, Some(&state), 10, &[]).is_ok());
        assert!(model.sync(1, Some(&state), 10, &[]).is_err());
        assert!(model
            .sync(0, Some(&BASE64.encode(tampered)), 10, &[])
            .is_err());
        assert!(model.sync(0, Some("%%%"), 10, &[]).is_err());
    }

    #[test]
    fn an_item_created_and_deleted_since_the_state_is_not_reported() {
        let mut model = model();
        let state = model.sync(0, None, 10, &[]).unwrap().sync_state;
        let (created, _) = model
            .create(
                "room-a@contoso.example",
                meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
            )
            .unwrap();
        model
            .delete(
                "room-a@contoso.example",
                &created.uid,
                DeleteMode::Hard,
                None,
            )
            .unwrap();

        let page = model.sync(0, Some(&state), 10, &[]).unwrap();

        assert!(page.changes.is_empty());
        assert!(page.includes_last_item_in_range);
    }

    #[test]
    fn every_change_gives_a_new_change_key_and_a_later_last_modified_time() {
        let mut model = model();
        let (created, _) = model
            .create(
                "room-a@contoso.example",
                meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
            )
            .unwrap();
        let before = model.lookup(&created.item_id).unwrap().1;

        let (updated, events) = model
            .update(
                "room-a@contoso.example",
                &created.uid,
                AppointmentPatch::default(),
                true,
            )
            .unwrap();
        let after = model.lookup(&created.item_id).unwrap().1;

        assert_ne!(created.change_key, updated.change_key);
        assert!(after.last_modified > before.last_modified);
        let kinds: Vec<EventKind> = events.events.iter().map(|event| event.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Modified,
                EventKind::Modified,
                EventKind::Modified
            ]
        );
    }

    #[test]
    fn ids_decode_and_tampered_ids_are_malformed() {
        let mut model = model();
        let (created, _) = model
            .create(
                "room-b@contoso.example",
                meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None),
            )
            .unwrap();
        let mut bytes = BASE64.decode(&created.item_id).unwrap();
        bytes[15] ^= 0x10;

        let parts = model.decode_item_id(&created.item_id).unwrap();

        assert_eq!(parts.mailbox, 1);
        assert_eq!(
            model.lookup(&BASE64.encode(bytes)).unwrap_err(),
            LookupError::Malformed
        );
        assert_eq!(
            model.lookup("not an id").unwrap_err(),
            LookupError::Malformed
        );
    }

    #[test]
    fn the_same_seed_mints_the_same_uids() {
        let mut first = model();
        let mut second = model();
        let appointment = meeting("2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z", "UTC", None);

        let a = first
            .create("room-a@contoso.example", appointment.clone())
            .unwrap()
            .0;
        let b = second
            .create("room-a@contoso.example", appointment)
            .unwrap()
            .0;

        assert_eq!(a.uid, b.uid);
        assert_eq!(a.item_id, b.item_id);
        assert!(a.uid.starts_with("040000008200E00074C5B7101A82E008"));
    }

    #[test]
    fn all_day_series_ends_at_local_midnight_across_daylight_saving() {
        let mut model = model();
        let daily = rule(
            Pattern::Daily { interval: 1 },
            "2030-03-30",
            RangeEnd::Numbered { count: 2 },
        );
        let mut appointment = meeting(
            "2030-03-29T23:00:00Z",
            "2030-03-30T23:00:00Z",
            "Europe/Berlin",
            Some(daily),
        );
        appointment.is_all_day = true;
        model.create("room-a@contoso.example", appointment).unwrap();

        let truth = model
            .truth(
                "room-a@contoso.example",
                at("2030-03-29T00:00:00Z"),
                at("2030-04-02T00:00:00Z"),
            )
            .unwrap();

        let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            truth.iter().map(|entry| (entry.start, entry.end)).collect();
        assert_eq!(
            spans,
            [
                (at("2030-03-29T23:00:00Z"), at("2030-03-30T23:00:00Z")),
                // 31 March 2030 is the day clocks go forward: 23 hours long.
                (at("2030-03-30T23:00:00Z"), at("2030-03-31T22:00:00Z")),
            ]
        );
    }
}
