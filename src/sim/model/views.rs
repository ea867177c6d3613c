//! The read side of the model: snapshots for GetItem, CalendarView and SyncFolderItems,
//! and the truth the control API reports.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::domain::{CalendarItemType, MailboxAddress};
use crate::recurrence::RangeEnd;

use super::expand::{expand_series, overlaps, Instance};
use super::ids::goid_bytes;
use super::{
    timing, CalendarEntry, FolderKind, InvalidSyncState, ItemSnapshot, LookupError, Mailbox, Model,
    OccurrenceInfo, SimError, SyncEntry, SyncResult, TruthEntry, STATE_CANCELLED, STATE_MEETING,
    STATE_RECEIVED,
};

impl Model {
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
                change_key: None,
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
                    change_key: Some(self.ids.exception_change_key(
                        entry.key,
                        original.timestamp(),
                        exception.version,
                    )),
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
            snapshot.change_key =
                self.ids
                    .exception_change_key(entry.key, original.timestamp(), exception.version);
            snapshot.last_modified = exception.last_modified;
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
    /// [`InvalidSyncState`] when the state does not decode or verify for this mailbox.
    pub fn sync(
        &self,
        mailbox: u32,
        state: Option<&str>,
        max_changes: usize,
        ignore: &[String],
    ) -> Result<SyncResult, InvalidSyncState> {
        let mailbox = self
            .mailboxes
            .get(mailbox as usize)
            .ok_or(InvalidSyncState)?;
        let from = match state {
            None => 0,
            Some(text) if text.trim().is_empty() => 0,
            Some(text) => self
                .decode_sync_state(mailbox, text)
                .ok_or(InvalidSyncState)?,
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
