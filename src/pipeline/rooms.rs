//! The set of rooms being synced, shared by the listener and the workers.
//!
//! The room supervisor refreshes it from the `rooms` table; the listener subscribes
//! what it lists and records which mailboxes hold a live subscription or are polled
//! for want of a streaming connection (the coverage that readiness and the status
//! line report), and workers skip a mailbox that is no longer in it.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use crate::domain::MailboxAddress;
use crate::metrics as m;
use crate::store::{InitialSync, Room, RoomId};

/// Rooms enabled for sync, by mailbox address.
#[derive(Default)]
pub struct RoomDirectory {
    rooms: RwLock<HashMap<MailboxAddress, Room>>,
    subscriptions: Mutex<Subscriptions>,
}

/// What the listener reported about subscriptions.
#[derive(Default)]
struct Subscriptions {
    /// Mailboxes with a live subscription.
    live: HashSet<MailboxAddress>,
    /// Mailboxes kept in step by polling because no streaming connection was free.
    polled: HashSet<MailboxAddress>,
    /// Mailboxes whose subscription was tried at least once (with either result).
    attempted: HashSet<MailboxAddress>,
    /// Whether the room list was read at least once.
    loaded: bool,
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
        drop(current);
        self.subscriptions().loaded = true;
        (added, removed)
    }

    /// Records whether `mailbox` holds a live subscription now; `false` after a
    /// failed attempt too.
    pub fn set_subscribed(&self, mailbox: &MailboxAddress, live: bool) {
        let mut subscriptions = self.subscriptions();
        subscriptions.attempted.insert(mailbox.clone());
        if live {
            subscriptions.live.insert(mailbox.clone());
            subscriptions.polled.remove(mailbox);
            metrics::gauge!(m::MAILBOXES_POLLED).set(subscriptions.polled.len() as f64);
        } else {
            subscriptions.live.remove(mailbox);
        }
        metrics::gauge!(m::SUBSCRIPTIONS_ACTIVE).set(subscriptions.live.len() as f64);
    }

    /// Records whether `mailbox` is kept in step by polling (no streaming connection
    /// was free for its group); returns how many mailboxes are polled now.
    pub fn set_polled(&self, mailbox: &MailboxAddress, polled: bool) -> usize {
        let mut subscriptions = self.subscriptions();
        subscriptions.attempted.insert(mailbox.clone());
        if polled {
            subscriptions.live.remove(mailbox);
            subscriptions.polled.insert(mailbox.clone());
        } else {
            subscriptions.polled.remove(mailbox);
        }
        metrics::gauge!(m::SUBSCRIPTIONS_ACTIVE).set(subscriptions.live.len() as f64);
        metrics::gauge!(m::MAILBOXES_POLLED).set(subscriptions.polled.len() as f64);
        subscriptions.polled.len()
    }

    /// Mailboxes kept in step by polling now.
    pub fn polled_count(&self) -> usize {
        self.subscriptions().polled.len()
    }

    /// Enabled rooms covered by a live subscription or by polling, and enabled rooms.
    pub fn coverage(&self) -> (usize, usize) {
        let rooms = self.read();
        let subscriptions = self.subscriptions();
        let covered = rooms
            .keys()
            .filter(|mailbox| {
                subscriptions.live.contains(*mailbox) || subscriptions.polled.contains(*mailbox)
            })
            .count();
        (covered, rooms.len())
    }

    /// Whether the room list was read and every enabled room's subscription was tried
    /// at least once: the first subscriptions are up (or known to fail).
    pub fn first_subscriptions_done(&self) -> bool {
        let rooms = self.read();
        let subscriptions = self.subscriptions();
        subscriptions.loaded
            && rooms
                .keys()
                .all(|mailbox| subscriptions.attempted.contains(mailbox))
    }

    /// Enabled rooms per initial-sync state: pending, running, complete, failed.
    pub fn initial_sync_counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for room in self.read().values() {
            let index = match room.initial_sync {
                InitialSync::Pending => 0,
                InitialSync::Running => 1,
                InitialSync::Complete => 2,
                InitialSync::Failed => 3,
            };
            counts[index] += 1;
        }
        counts
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

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
