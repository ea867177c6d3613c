//! Convergence checker: compares Exchange's truth with the `meetings` table.
//!
//! Used by `demo`, the integration tests and the fault tests. A meeting is keyed by
//! (room, UID, occurrence start). Every occurrence Exchange has inside the window must
//! have a row with the same subject, times and status (`missing` when there is no row,
//! `stale` when the row differs); every confirmed row must have an occurrence
//! (`unexpected` otherwise). Cancelled rows of meetings Exchange no longer has are
//! what a deletion leaves behind, so they count as neither.

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
}

impl Convergence {
    /// `true` when the table matches Exchange exactly.
    pub fn converged(&self) -> bool {
        self.missing == 0 && self.unexpected == 0 && self.stale == 0
    }

    /// Adds another room's result.
    pub fn add(&mut self, other: &Convergence) {
        self.expected += other.expected;
        self.in_db += other.in_db;
        self.missing += other.missing;
        self.unexpected += other.unexpected;
        self.stale += other.stale;
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
        seen.insert((row.exchange_uid.clone(), row.occurrence_start), row);
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
