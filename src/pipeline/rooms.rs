//! The set of rooms being synced, shared by the listener and the workers.
//!
//! The room supervisor refreshes it from the `rooms` table; the listener subscribes
//! what it lists, and workers skip a mailbox that is no longer in it.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::domain::MailboxAddress;
use crate::store::{InitialSync, Room, RoomId};

/// Rooms enabled for sync, by mailbox address.
#[derive(Default)]
pub struct RoomDirectory {
    rooms: RwLock<HashMap<MailboxAddress, Room>>,
}

impl RoomDirectory {
    /// Replaces the set of rooms; returns the addresses added and removed.
    pub fn replace(&self, rooms: Vec<Room>) -> (Vec<MailboxAddress>, Vec<MailboxAddress>) {
        let mut current = self.write();
        let next: HashMap<MailboxAddress, Room> = rooms
            .into_iter()
            .map(|room| (room.email.clone(), room))
            .collect();
        let added = next
            .keys()
            .filter(|email| !current.contains_key(*email))
            .cloned()
            .collect();
        let removed = current
            .keys()
            .filter(|email| !next.contains_key(*email))
            .cloned()
            .collect();
        *current = next;
        (added, removed)
    }

    /// The room of a mailbox, when it is being synced.
    pub fn get(&self, mailbox: &MailboxAddress) -> Option<Room> {
        self.read().get(mailbox).cloned()
    }

    /// Records a room's initial-sync state as the workers move it along.
    pub fn set_initial_sync(&self, mailbox: &MailboxAddress, state: InitialSync) {
        if let Some(room) = self.write().get_mut(mailbox) {
            room.initial_sync = state;
        }
    }

    /// Every synced mailbox, sorted.
    pub fn mailboxes(&self) -> Vec<MailboxAddress> {
        let mut all: Vec<MailboxAddress> = self.read().keys().cloned().collect();
        all.sort();
        all
    }

    /// How many rooms are synced, and how many of them finished their initial sync.
    pub fn counts(&self) -> (usize, usize) {
        let rooms = self.read();
        let complete = rooms
            .values()
            .filter(|room| room.initial_sync == InitialSync::Complete)
            .count();
        (rooms.len(), complete)
    }

    /// The room id of a mailbox.
    pub fn room_id(&self, mailbox: &MailboxAddress) -> Option<RoomId> {
        self.read().get(mailbox).map(|room| room.id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<MailboxAddress, Room>> {
        self.rooms
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<MailboxAddress, Room>> {
        self.rooms
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
