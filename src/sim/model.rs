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

mod api;
mod expand;
mod ids;
mod views;
mod zones;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{CalendarItemType, EventKind, MailboxAddress, ResponseType};
use crate::recurrence::{Pattern, RangeEnd, Recurrence};

use super::SimError;
pub use api::{
    AppointmentPatch, AppointmentRef, DeleteMode, MailboxInfo, MailboxKind, NewAppointment,
    NewMailbox, TruthEntry,
};
use expand::{expand_series, Instance, SeriesTiming};
pub use ids::mix;
use ids::IdMint;
pub use zones::{time_zone, TimeZoneInfo};

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

/// A modified instance of a series. It is an item of its own with its own version:
/// the master's version when the exception was last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExceptionData {
    subject: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    location: Option<String>,
    version: u32,
    last_modified: DateTime<Utc>,
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
    /// The exception's change key, for modified occurrences.
    pub change_key: Option<String>,
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

/// A sync state that does not decode, does not verify, or belongs to another mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sync state is invalid for this mailbox")]
pub struct InvalidSyncState;

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
    ids: IdMint,
    clock: DateTime<Utc>,
    next_key: u64,
    mailboxes: Vec<Mailbox>,
    by_address: HashMap<String, usize>,
    changes: u64,
}

impl Model {
    /// An empty model.
    pub fn new(seed: u64) -> Self {
        Self {
            ids: IdMint::new(seed),
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
            hash: self.ids.hash(address.as_str()),
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

    /// The opaque folder id of a mailbox's folder.
    pub fn folder_id(&self, mailbox: u32, kind: FolderKind) -> String {
        self.ids.folder_id(mailbox, kind)
    }

    /// Decodes a folder id minted by [`Model::folder_id`].
    pub fn decode_folder_id(&self, id: &str) -> Option<(u32, FolderKind)> {
        self.ids.decode_folder_id(id)
    }

    /// Decodes an item id minted by the model.
    pub fn decode_item_id(&self, id: &str) -> Option<ItemIdParts> {
        self.ids.decode_item_id(id)
    }

    fn item_id(&self, mailbox: u32, key: u64, kind: u8, original_start: i64) -> String {
        self.ids.item_id(mailbox, key, kind, original_start)
    }

    fn change_key(&self, key: u64, version: u32) -> String {
        self.ids.change_key(key, version)
    }

    fn sync_state(&self, mailbox: &Mailbox, seq: u64) -> String {
        self.ids.sync_state(mailbox.hash, seq)
    }

    fn decode_sync_state(&self, mailbox: &Mailbox, state: &str) -> Option<u64> {
        self.ids
            .decode_sync_state(mailbox.hash, state)
            .filter(|seq| *seq <= mailbox.seq)
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
            _ => self.ids.uid(self.next_key),
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
        if let Some(original) = patch.occurrence_start {
            if let Some(entry) = self.mailboxes[index].items.get_mut(&key) {
                let (version, last_modified) = (entry.version, entry.last_modified);
                if let Some(exception) = entry.exceptions.get_mut(&original) {
                    exception.version = version;
                    exception.last_modified = last_modified;
                }
            }
        }
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
                version: entry.version,
                last_modified: entry.last_modified,
            });
        // `touch` stamps the exception with the master's new version afterwards.
        let exception = ExceptionData {
            subject: patch.subject.clone().unwrap_or(current.subject),
            start: patch.start.unwrap_or(current.start),
            end: patch.end.unwrap_or(current.end),
            location: patch.location.clone().or(current.location),
            version: current.version,
            last_modified: current.last_modified,
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
mod tests;
