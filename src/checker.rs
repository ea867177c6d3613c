//! Convergence checker: compares Exchange's truth with the `meetings` table.
//!
//! Used by `demo`, the integration tests and the fault tests. A meeting is keyed by
//! (room, UID, occurrence start). Every occurrence Exchange has inside the window must
//! have a row with the same subject, times and status (`missing` when there is no row,
//! `stale` when the row differs); every confirmed row must have an occurrence
//! (`unexpected` otherwise). Cancelled rows of meetings Exchange no longer has are
//! what a deletion leaves behind, so they count as neither. Two rows for one key
//! count as `duplicate`.
//!
//! A fault test passes only through [`Verdict`], which also demands a minimum volume
//! of changes over a minimum number of rooms, so a service that did nothing cannot pass.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sim::TruthEntry;
use crate::store::{MeetingRow, MeetingStatus};

/// The result of one comparison.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Convergence {
    /// Occurrences Exchange has inside the window.
    pub expected: u64,
    /// Rows that describe a meeting Exchange has, or a confirmed one.
    pub in_db: u64,
    /// Occurrences without a row.
    pub missing: u64,
    /// Confirmed rows without an occurrence.
    pub unexpected: u64,
    /// Rows whose subject, times or status differ from Exchange.
    pub stale: u64,
    /// Extra rows for a key that already has one.
    #[serde(default)]
    pub duplicate: u64,
}

impl Convergence {
    /// `true` when the table matches Exchange exactly.
    pub fn converged(&self) -> bool {
        self.missing == 0 && self.unexpected == 0 && self.stale == 0 && self.duplicate == 0
    }

    /// Adds another room's result.
    pub fn add(&mut self, other: &Convergence) {
        self.expected += other.expected;
        self.in_db += other.in_db;
        self.missing += other.missing;
        self.unexpected += other.unexpected;
        self.stale += other.stale;
        self.duplicate += other.duplicate;
    }
}

/// Changes at least this many make a fault run count.
pub const MIN_CHANGES: u64 = 1_000;
/// Over at least this many rooms.
pub const MIN_ROOMS: usize = 50;

/// The outcome of a fault run: the comparison plus the volume that went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The comparison after the fault healed and the service went quiet.
    pub convergence: Convergence,
    /// Changes the workload made during the run.
    pub changes: u64,
    /// Rooms the changes were spread over.
    pub rooms: usize,
}

impl Verdict {
    /// Pass: all four counts are 0 and the run carried enough volume
    /// ([`MIN_CHANGES`] changes over [`MIN_ROOMS`] rooms).
    pub fn passed(&self) -> bool {
        self.convergence.converged() && self.enough_volume()
    }

    /// Whether enough changes over enough rooms went through.
    pub fn enough_volume(&self) -> bool {
        self.changes >= MIN_CHANGES && self.rooms >= MIN_ROOMS
    }
}

type Key = (String, Option<DateTime<Utc>>);

/// Compares one room's truth (already limited to the window) with its rows.
pub fn compare_room(
    truth: &[TruthEntry],
    rows: &[MeetingRow],
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Convergence {
    let mut result = Convergence::default();
    let expected: HashMap<Key, &TruthEntry> = truth
        .iter()
        .filter(|entry| entry.start < window.1 && entry.end > window.0)
        .map(|entry| ((entry.uid.clone(), entry.occurrence_start), entry))
        .collect();
    result.expected = expected.len() as u64;
    let mut seen: HashMap<Key, &MeetingRow> = HashMap::new();
    for row in rows {
        if seen
            .insert((row.exchange_uid.clone(), row.occurrence_start), row)
            .is_some()
        {
            result.duplicate += 1;
        }
    }
    for (key, entry) in &expected {
        match seen.get(key) {
            None => result.missing += 1,
            Some(row) => {
                let status = if entry.is_cancelled {
                    MeetingStatus::Cancelled
                } else {
                    MeetingStatus::Confirmed
                };
                if row.subject != entry.subject
                    || row.starts_at != entry.start
                    || row.ends_at != entry.end
                    || row.status != status
                {
                    result.stale += 1;
                }
            }
        }
    }
    for (key, row) in &seen {
        let in_window = row.starts_at < window.1 && row.ends_at > window.0;
        if !in_window {
            continue;
        }
        if expected.contains_key(key) {
            result.in_db += 1;
        } else if row.status == MeetingStatus::Confirmed {
            result.in_db += 1;
            result.unexpected += 1;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MeetingSource, RoomId};

    fn entry(uid: &str, start: DateTime<Utc>) -> TruthEntry {
        serde_json::from_value(serde_json::json!({
            "uid": uid,
            "occurrence_start": null,
            "subject": "Standup",
            "start": start,
            "end": start + chrono::Duration::hours(1),
            "is_all_day": false,
            "organizer": "user-001@contoso.example",
            "is_cancelled": false,
            "change_key": "ck",
            "last_modified": start,
        }))
        .expect("a truth entry")
    }

    fn row(uid: &str, start: DateTime<Utc>) -> MeetingRow {
        MeetingRow {
            id: 1,
            room_id: RoomId(1),
            exchange_uid: uid.to_owned(),
            occurrence_start: None,
            subject: "Standup".to_owned(),
            starts_at: start,
            ends_at: start + chrono::Duration::hours(1),
            is_all_day: false,
            organizer_email: None,
            organizer_user_id: None,
            status: MeetingStatus::Confirmed,
            source: MeetingSource::Exchange,
            exchange_item_id: None,
            exchange_change_key: None,
            exchange_last_modified: None,
            fetched_at: None,
            updated_at: start,
        }
    }

    #[test]
    fn two_rows_for_one_meeting_count_as_a_duplicate() {
        let start = Utc::now();
        let window = (
            start - chrono::Duration::days(1),
            start + chrono::Duration::days(1),
        );

        let result = compare_room(
            &[entry("a", start)],
            &[row("a", start), row("a", start)],
            window,
        );

        assert_eq!(result.duplicate, 1);
        assert_eq!(result.missing, 0);
        assert!(!result.converged());
    }

    #[test]
    fn a_quiet_run_does_not_pass_however_clean_it_is() {
        let clean = Convergence::default();
        let small = Verdict {
            convergence: clean,
            changes: 999,
            rooms: 50,
        };
        let enough = Verdict {
            convergence: clean,
            changes: 1_000,
            rooms: 50,
        };

        assert!(!small.passed());
        assert!(enough.passed());
    }
}
