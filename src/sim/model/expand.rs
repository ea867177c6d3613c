//! Expansion of a series into instances, in the series' own time zone.
//!
//! `expand_series` is the one place where the model expands a recurrence; it uses the
//! crate's shared expansion (`crate::recurrence::expand`), so the simulator's truth
//! follows the same, separately unit-tested rules as the service.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::recurrence::{self, Recurrence};

/// Whether `[start, end)` overlaps `[from, to)`; a zero-length item counts at its start.
pub(super) fn overlaps(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> bool {
    if start == end {
        start >= from && start < to
    } else {
        start < to && end > from
    }
}

/// The timing of a series: first occurrence and zone.
#[derive(Debug, Clone)]
pub(super) struct SeriesTiming {
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) is_all_day: bool,
    pub(super) time_zone: Tz,
}

/// One instance of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Instance {
    pub(super) original_start: DateTime<Utc>,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
}

/// Expands a series into instances overlapping `[from, to)`; an invalid rule (which
/// the control API refuses up front) expands to nothing.
pub(super) fn expand_series(
    rule: &Recurrence,
    timing: &SeriesTiming,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Instance> {
    let shared = recurrence::SeriesTiming {
        start: timing.start,
        end: timing.end,
        is_all_day: timing.is_all_day,
        time_zone: timing.time_zone,
    };
    recurrence::expand(rule, &shared, from, to)
        .unwrap_or_default()
        .into_iter()
        .map(|instance| Instance {
            original_start: instance.original_start,
            start: instance.start,
            end: instance.end,
        })
        .collect()
}
