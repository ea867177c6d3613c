//! `booking-sync rooms`: bring rooms in from Exchange's directory, list them, switch
//! their sync and their coexistence with the booking system.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::domain::MailboxAddress;
use crate::ews::EwsClient;
use crate::store::{CoexistenceChange, InitialSync, PgStore, RoomStatus};

/// What `rooms import` found and added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Room lists in the directory.
    pub room_lists: usize,
    /// Rooms in those lists (each counted once).
    pub rooms: usize,
    /// Rooms that were not known before (added with sync off).
    pub added: usize,
}

/// Reads every room list and its rooms (GetRoomLists, GetRooms) and records the rooms;
/// new ones start with sync off, known ones keep their switches and get their name.
///
/// # Errors
/// When Exchange or the database fails.
pub async fn import(
    store: &PgStore,
    ews: &EwsClient,
    acting_as: &MailboxAddress,
) -> anyhow::Result<ImportReport> {
    let lists = ews
        .get_room_lists(acting_as)
        .await
        .context("reading the room lists (GetRoomLists)")?;
    let mut seen = std::collections::HashSet::new();
    let mut added = 0;
    for list in &lists {
        let Some(address) = list.email.as_deref() else {
            continue;
        };
        let rooms = ews
            .get_rooms(acting_as, &MailboxAddress::new(address))
            .await
            .with_context(|| format!("reading the rooms of the list {address} (GetRooms)"))?;
        for room in rooms {
            let Some(email) = room.email.as_deref() else {
                continue;
            };
            let email = MailboxAddress::new(email);
            if !seen.insert(email.clone()) {
                continue;
            }
            let name = room.name.as_deref().unwrap_or(email.as_str());
            if store
                .import_room(&email, name)
                .await
                .context("recording a room")?
            {
                added += 1;
            }
        }
    }
    Ok(ImportReport {
        room_lists: lists.len(),
        rooms: seen.len(),
        added,
    })
}

/// The mailbox `rooms import` acts as when none is given: the first known room.
///
/// # Errors
/// When the database fails or knows no room.
pub async fn default_acting_as(store: &PgStore) -> anyhow::Result<MailboxAddress> {
    let statuses = store.room_statuses().await.context("reading the rooms")?;
    match statuses.into_iter().next() {
        Some(status) => Ok(status.room.email),
        None => bail!(
            "no room is known yet to act as: pass --acting-as with a mailbox the service account may impersonate"
        ),
    }
}

/// Turns a room's sync on or off.
///
/// # Errors
/// When no room has the address, or the database fails.
pub async fn set_enabled(store: &PgStore, email: &str, enabled: bool) -> anyhow::Result<()> {
    let email = MailboxAddress::new(email);
    if !store
        .set_room_sync_enabled(&email, enabled)
        .await
        .context("switching the room's sync")?
    {
        bail!("no room has the address {email}: run `booking-sync rooms import` or check the spelling");
    }
    Ok(())
}

/// Turns a room's coexistence with the booking system on or off; on is refused,
/// with the reason, until the room's initial sync is complete.
///
/// # Errors
/// When refused, when no room has the address, or when the database fails.
pub async fn set_coexistence(store: &PgStore, email: &str, on: bool) -> anyhow::Result<()> {
    let email = MailboxAddress::new(email);
    match store
        .set_coexistence(&email, on)
        .await
        .context("switching the room's coexistence")?
    {
        CoexistenceChange::Done => Ok(()),
        CoexistenceChange::UnknownRoom => bail!(
            "no room has the address {email}: run `booking-sync rooms import` or check the spelling"
        ),
        CoexistenceChange::InitialSyncNotComplete(state) => {
            let reason = store
                .room_statuses()
                .await
                .ok()
                .and_then(|all| {
                    all.into_iter()
                        .find(|status| status.room.email == email)
                        .and_then(|status| status.initial_sync_error)
                })
                .map(|reason| format!(" (it failed: {reason})"))
                .unwrap_or_default();
            bail!(
                "coexistence for {email} stays off: its initial sync is {}{reason}, and a room may only coexist with Exchange once its initial sync is complete",
                state.as_str()
            )
        }
    }
}

/// The rooms as a table: address, name, switches, initial sync and meetings.
pub fn render_list(statuses: &[RoomStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<24} {:<5} {:<11} {:<12} {:>8}",
        "EMAIL", "NAME", "SYNC", "COEXISTENCE", "INITIAL SYNC", "MEETINGS"
    );
    for status in statuses {
        let initial = match (&status.room.initial_sync, &status.initial_sync_error) {
            (InitialSync::Failed, Some(reason)) => format!("failed: {reason}"),
            (state, _) => state.as_str().to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<40} {:<24} {:<5} {:<11} {:<12} {:>8}",
            status.room.email.as_str(),
            status.room.name,
            on_off(status.sync_enabled),
            on_off(status.coexistence_enabled),
            initial,
            status.confirmed_meetings
        );
    }
    out
}

fn on_off(value: bool) -> &'static str {
    if value {
        "on"
    } else {
        "off"
    }
}
