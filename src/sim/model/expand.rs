//! Expansion of a series into instances, in the series' own time zone.
//!
//! `expand_series` is the one place where the model expands a recurrence. It calls a
//! small local implementation of the six patterns until `crate::recurrence::expand`
//! lands; switching is a change to that one function.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::recurrence::{DaySelector, Pattern, RangeEnd, Recurrence, WeekIndex};

/// Most instances one series expansion produces.
const MAX_INSTANCES: usize = 100_000;

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

/// Expands a series into instances overlapping `[from, to)`.
///
/// This is the single switch point to `crate::recurrence::expand` once it lands:
/// replace the body with a call to it (mapping its `Instance`) and delete
/// `expand_locally`.
pub(super) fn expand_series(
    rule: &Recurrence,
    timing: &SeriesTiming,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Instance> {
    expand_locally(rule, timing, from, to)
}

/// A simple expansion (daily, weekly, absolute monthly, absolute yearly) in the series' zone.
fn expand_locally(
    rule: &Recurrence,
    timing: &SeriesTiming,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Instance> {
    let zone = timing.time_zone;
    let local_start = timing.start.with_timezone(&zone);
    let time_of_day = local_start.time();
    let duration = timing.end - timing.start;
    let all_day_days = ((duration.num_hours() + 12) / 24).max(1);
    let mut out = Vec::new();
    let mut produced = 0u32;
    let mut date = rule.start_date;
    let first_week = week_start(rule.start_date, &rule.pattern);
    for _ in 0..MAX_INSTANCES * 4 {
        if let RangeEnd::EndDate { date: last } = rule.end {
            if date > last {
                break;
            }
        }
        if let RangeEnd::Numbered { count } = rule.end {
            if produced >= count {
                break;
            }
        }
        if out.len() >= MAX_INSTANCES {
            break;
        }
        if matches_pattern(&rule.pattern, rule.start_date, first_week, date) {
            let naive = date.and_time(if timing.is_all_day {
                chrono::NaiveTime::MIN
            } else {
                time_of_day
            });
            let Some(start) = zone.from_local_datetime(&naive).earliest().or_else(|| {
                zone.from_local_datetime(&(naive + Duration::hours(1)))
                    .earliest()
            }) else {
                date = date.succ_opt().unwrap_or(date);
                continue;
            };
            let start = start.with_timezone(&Utc);
            produced += 1;
            let end = if timing.is_all_day {
                // All-day instances end at a local midnight, even across a DST change.
                local_midnight(zone, date + Duration::days(all_day_days))
                    .unwrap_or(start + duration)
            } else {
                start + duration
            };
            if start >= to {
                break;
            }
            if overlaps(start, end, from, to) {
                out.push(Instance {
                    original_start: start,
                    start,
                    end,
                });
            }
        }
        let Some(next) = date.succ_opt() else {
            break;
        };
        date = next;
    }
    out
}

fn week_start(date: NaiveDate, pattern: &Pattern) -> NaiveDate {
    let first = match pattern {
        Pattern::Weekly {
            first_day_of_week, ..
        } => *first_day_of_week,
        _ => chrono::Weekday::Sun,
    };
    let offset = (7 + date.weekday().num_days_from_monday() - first.num_days_from_monday()) % 7;
    date - Duration::days(offset as i64)
}

fn matches_pattern(
    pattern: &Pattern,
    range_start: NaiveDate,
    first_week: NaiveDate,
    date: NaiveDate,
) -> bool {
    match pattern {
        Pattern::Daily { interval } => {
            (date - range_start).num_days() % (*interval).max(1) as i64 == 0
        }
        Pattern::Weekly { interval, days, .. } => {
            let weeks = (date - first_week).num_days() / 7;
            days.contains(&date.weekday()) && weeks % (*interval).max(1) as i64 == 0
        }
        Pattern::AbsoluteMonthly {
            interval,
            day_of_month,
        } => {
            months_between(range_start, date) % (*interval).max(1) as i32 == 0
                && date.day() == clamp_day(date, *day_of_month)
        }
        Pattern::AbsoluteYearly {
            month,
            day_of_month,
        } => date.month() == *month && date.day() == clamp_day(date, *day_of_month),
        Pattern::RelativeMonthly {
            interval,
            days_of_week,
            index,
        } => {
            months_between(range_start, date) % (*interval).max(1) as i32 == 0
                && is_indexed_day(date, *days_of_week, *index)
        }
        Pattern::RelativeYearly {
            month,
            days_of_week,
            index,
        } => date.month() == *month && is_indexed_day(date, *days_of_week, *index),
    }
}

fn months_between(from: NaiveDate, to: NaiveDate) -> i32 {
    (to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32
}

/// Whether `date` is, say, the second Tuesday (or the last weekday) of its month.
fn is_indexed_day(date: NaiveDate, selector: DaySelector, index: WeekIndex) -> bool {
    let selected = |day: NaiveDate| match selector {
        DaySelector::Weekday(weekday) => day.weekday() == weekday,
        DaySelector::Day => true,
        DaySelector::Weekdays => !matches!(day.weekday(), Weekday::Sat | Weekday::Sun),
        DaySelector::WeekendDay => matches!(day.weekday(), Weekday::Sat | Weekday::Sun),
    };
    if !selected(date) {
        return false;
    }
    let last_day = clamp_day(date, 31);
    let month_days = (1..=last_day).filter_map(|day| date.with_day(day));
    let matching: Vec<NaiveDate> = month_days.filter(|day| selected(*day)).collect();
    let wanted = match index {
        WeekIndex::First => matching.first(),
        WeekIndex::Second => matching.get(1),
        WeekIndex::Third => matching.get(2),
        WeekIndex::Fourth => matching.get(3),
        WeekIndex::Last => matching.last(),
    };
    wanted == Some(&date)
}

fn clamp_day(date: NaiveDate, day: u32) -> u32 {
    let next_month = if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    };
    let days_in_month = next_month
        .and_then(|next| next.pred_opt())
        .map_or(31, |last| last.day());
    day.min(days_in_month)
}

/// The UTC instant of a local midnight (the first one, if the day starts twice).
fn local_midnight(zone: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|time| time.with_timezone(&Utc))
}
