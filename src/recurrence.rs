//! Recurrence rules of calendar series and their expansion into occurrences.
//!
//! The rule types mirror EWS's `t:Recurrence` (a pattern plus a range). Expansion
//! happens in the series' own time zone so that occurrences keep their local wall-clock
//! time across daylight-saving changes; results are UTC instants.
//!
//! Data enters as a rule plus the timing of the first instance ([`expand`]) or as a
//! fetched [`CalendarItem`] ([`occurrences`]), and leaves as instances overlapping a
//! half-open UTC window `[from, to)`. This module does no I/O and knows nothing of XML or
//! SQL; Windows time zone ids are resolved through [`crate::tz`].
//!
//! Semantics follow Outlook and EWS: every instance keeps the first instance's local
//! start time and local duration; a local time that falls into a daylight-saving gap is
//! read with the offset in force before the gap (so it moves forward), and one that
//! occurs twice takes the earlier instant. All-day instances run from local midnight to
//! local midnight. Day 31 of a 30-day month (or 29 February in other years) means the
//! last day of that month.

use std::collections::HashSet;

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::{CalendarItem, CalendarItemType, ItemId};

/// Most periods (days, weeks, months or years of a pattern) one expansion may visit.
///
/// A window of a few years needs at most a few thousand; the cap only stops absurd
/// windows or numbered series reaching back centuries from looping for long.
pub const MAX_EXPANSION_PERIODS: u64 = 200_000;

/// A day selector as EWS spells it in `t:DaysOfWeek`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DaySelector {
    /// One named weekday.
    Weekday(Weekday),
    /// Any day (`Day`).
    Day,
    /// Monday to Friday (`Weekday`).
    Weekdays,
    /// Saturday or Sunday (`WeekendDay`).
    WeekendDay,
}

/// Which week of the month a relative pattern means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WeekIndex {
    /// First.
    First,
    /// Second.
    Second,
    /// Third.
    Third,
    /// Fourth.
    Fourth,
    /// Last.
    Last,
}

/// How often a series repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pattern {
    /// Every `interval` days.
    Daily {
        /// Days between occurrences (>= 1).
        interval: u32,
    },
    /// Every `interval` weeks on the given weekdays.
    Weekly {
        /// Weeks between occurrences (>= 1).
        interval: u32,
        /// The weekdays (at least one).
        days: Vec<Weekday>,
        /// The first day of the week, for counting intervals.
        first_day_of_week: Weekday,
    },
    /// Every `interval` months on a day of the month (clamped to the month's length).
    AbsoluteMonthly {
        /// Months between occurrences (>= 1).
        interval: u32,
        /// Day of the month, 1..=31.
        day_of_month: u32,
    },
    /// Every `interval` months on, say, the second Tuesday.
    RelativeMonthly {
        /// Months between occurrences (>= 1).
        interval: u32,
        /// The day selector.
        days_of_week: DaySelector,
        /// Which one of the month.
        index: WeekIndex,
    },
    /// Every year on a date.
    AbsoluteYearly {
        /// Month, 1..=12.
        month: u32,
        /// Day of the month, 1..=31.
        day_of_month: u32,
    },
    /// Every year on, say, the last Friday of November.
    RelativeYearly {
        /// Month, 1..=12.
        month: u32,
        /// The day selector.
        days_of_week: DaySelector,
        /// Which one of the month.
        index: WeekIndex,
    },
}

/// When a series ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RangeEnd {
    /// Never.
    NoEnd,
    /// On this local date (inclusive).
    EndDate {
        /// Last possible date.
        date: NaiveDate,
    },
    /// After this many occurrences.
    Numbered {
        /// Number of occurrences (>= 1).
        count: u32,
    },
}

/// A recurrence rule: pattern plus range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// How often.
    pub pattern: Pattern,
    /// Local date of the range start.
    pub start_date: NaiveDate,
    /// When it ends.
    pub end: RangeEnd,
}

impl Recurrence {
    /// Checks that the rule describes a series Exchange could hold.
    ///
    /// # Errors
    ///
    /// A zero interval, a weekly rule without weekdays, a day of the month outside
    /// 1..=31, a month outside 1..=12, a numbered range of zero instances, or an end date
    /// before the start date.
    pub fn validate(&self) -> Result<(), RecurrenceError> {
        match &self.pattern {
            Pattern::Daily { interval } => check_interval(*interval)?,
            Pattern::Weekly { interval, days, .. } => {
                check_interval(*interval)?;
                if days.is_empty() {
                    return Err(RecurrenceError::NoWeekdays);
                }
            }
            Pattern::AbsoluteMonthly {
                interval,
                day_of_month,
            } => {
                check_interval(*interval)?;
                check_day_of_month(*day_of_month)?;
            }
            Pattern::RelativeMonthly { interval, .. } => check_interval(*interval)?,
            Pattern::AbsoluteYearly {
                month,
                day_of_month,
            } => {
                check_month(*month)?;
                check_day_of_month(*day_of_month)?;
            }
            Pattern::RelativeYearly { month, .. } => check_month(*month)?,
        }
        match self.end {
            RangeEnd::NoEnd => Ok(()),
            RangeEnd::Numbered { count: 0 } => Err(RecurrenceError::ZeroCount),
            RangeEnd::Numbered { .. } => Ok(()),
            RangeEnd::EndDate { date } if date < self.start_date => {
                Err(RecurrenceError::EndDateBeforeStart {
                    start: self.start_date,
                    end: date,
                })
            }
            RangeEnd::EndDate { .. } => Ok(()),
        }
    }
}

/// When the first instance of a series happens, and in which zone the series lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesTiming {
    /// Start of the first instance.
    pub start: DateTime<Utc>,
    /// End of the first instance.
    pub end: DateTime<Utc>,
    /// Instances span whole local days.
    pub is_all_day: bool,
    /// The zone whose wall clock every instance keeps.
    pub time_zone: Tz,
}

/// One instance of a series as the rule gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Instance {
    /// The start the series gives the instance: its identity (EWS `RecurrenceId`).
    pub original_start: DateTime<Utc>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
}

/// One occurrence of a calendar item inside a window, exceptions applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Occurrence {
    /// The start the series gave it; `None` for a single meeting.
    pub original_start: Option<DateTime<Utc>>,
    /// Current start.
    pub start: DateTime<Utc>,
    /// Current end.
    pub end: DateTime<Utc>,
    /// The item id of a modified occurrence (fetch it for its own subject and fields).
    pub exception_item_id: Option<ItemId>,
}

/// Why a series cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    /// The interval of a daily, weekly or monthly pattern is zero.
    #[error("recurrence interval must be at least 1")]
    ZeroInterval,
    /// A weekly pattern names no weekday.
    #[error("weekly recurrence names no weekday")]
    NoWeekdays,
    /// A day of the month outside 1..=31.
    #[error("day of month {0} is outside 1..=31")]
    InvalidDayOfMonth(u32),
    /// A month outside 1..=12.
    #[error("month {0} is outside 1..=12")]
    InvalidMonth(u32),
    /// A numbered range of zero instances.
    #[error("numbered recurrence must have at least one occurrence")]
    ZeroCount,
    /// The range ends before it starts.
    #[error("recurrence ends on {end} before it starts on {start}")]
    EndDateBeforeStart {
        /// Range start.
        start: NaiveDate,
        /// Range end.
        end: NaiveDate,
    },
    /// The first instance ends before it starts.
    #[error("first instance ends at {end} before it starts at {start}")]
    EndBeforeStart {
        /// Start of the first instance.
        start: DateTime<Utc>,
        /// End of the first instance.
        end: DateTime<Utc>,
    },
    /// A recurring master without a recurrence rule.
    #[error("recurring master has no recurrence rule")]
    MissingRule,
    /// The window is too wide for the pattern (see [`MAX_EXPANSION_PERIODS`]).
    #[error("expansion would visit more than {limit} periods of the pattern")]
    TooManyPeriods {
        /// The cap that was reached.
        limit: u64,
    },
}

/// Every instance of the series that overlaps `[from, to)`, in order.
///
/// An instance overlaps when `start < to && end > from`; a zero-length instance counts
/// when `from <= start < to`. Numbered ranges count instances from the series start,
/// whatever the window.
///
/// # Errors
///
/// An invalid rule (see [`Recurrence::validate`]), a first instance that ends before it
/// starts, or a window needing more than [`MAX_EXPANSION_PERIODS`] periods.
pub fn expand(
    rule: &Recurrence,
    timing: &SeriesTiming,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Instance>, RecurrenceError> {
    rule.validate()?;
    if timing.end < timing.start {
        return Err(RecurrenceError::EndBeforeStart {
            start: timing.start,
            end: timing.end,
        });
    }
    if to <= from {
        return Ok(Vec::new());
    }
    let shape = InstanceShape::of(timing);
    let calendar = PeriodCalendar::new(rule);
    let first_period = match rule.end {
        // Counting needs every instance from the start.
        RangeEnd::Numbered { .. } => 0,
        RangeEnd::NoEnd | RangeEnd::EndDate { .. } => {
            let from_date = from.with_timezone(&timing.time_zone).date_naive();
            let earliest = from_date
                .checked_sub_days(Days::new(shape.span_days()))
                .unwrap_or(NaiveDate::MIN);
            calendar.period_before(earliest)
        }
    };
    let mut instances = Vec::new();
    let mut counted: u64 = 0;
    let mut dates = Vec::new();
    for period in first_period.. {
        if period - first_period >= MAX_EXPANSION_PERIODS {
            return Err(RecurrenceError::TooManyPeriods {
                limit: MAX_EXPANSION_PERIODS,
            });
        }
        dates.clear();
        if calendar.dates_of(period, &mut dates).is_none() {
            // The calendar itself ends (year 262143): so does the series.
            break;
        }
        for &date in dates.iter().filter(|date| **date >= rule.start_date) {
            match rule.end {
                RangeEnd::EndDate { date: last } if date > last => return Ok(instances),
                RangeEnd::Numbered { count } if counted >= u64::from(count) => {
                    return Ok(instances)
                }
                _ => {}
            }
            counted += 1;
            let Some((start, end)) = shape.on(date) else {
                return Ok(instances);
            };
            if start >= to {
                return Ok(instances);
            }
            if overlaps(start, end, from, to) {
                instances.push(Instance {
                    original_start: start,
                    start,
                    end,
                });
            }
        }
    }
    Ok(instances)
}

/// The occurrences of a fetched item inside `[from, to)`, in order of start.
///
/// A single meeting (or a lone occurrence or exception) gives itself, with its
/// `recurrence_id` as original start. A recurring master expands `item.recurrence` in
/// the zone of `item.start_time_zone` (UTC when absent or unknown), drops
/// `deleted_occurrences`, and replaces the instances listed in `modified_occurrences`
/// (matched by original start) with their own start, end and item id; a modified
/// occurrence moved into the window counts, one moved out of it does not.
///
/// # Errors
///
/// A master without a rule, or any error of [`expand`].
pub fn occurrences(
    item: &CalendarItem,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Occurrence>, RecurrenceError> {
    if item.item_type != CalendarItemType::RecurringMaster {
        let exception_item_id =
            (item.item_type == CalendarItemType::Exception).then(|| item.item_id.clone());
        let own = Occurrence {
            original_start: item.recurrence_id,
            start: item.start,
            end: item.end,
            exception_item_id,
        };
        return Ok(overlaps(own.start, own.end, from, to)
            .then_some(own)
            .into_iter()
            .collect());
    }
    let rule = item
        .recurrence
        .as_ref()
        .ok_or(RecurrenceError::MissingRule)?;
    let timing = SeriesTiming {
        start: item.start,
        end: item.end,
        is_all_day: item.is_all_day,
        time_zone: series_zone(item),
    };
    let deleted: HashSet<DateTime<Utc>> = item.deleted_occurrences.iter().copied().collect();
    let modified: HashSet<DateTime<Utc>> = item
        .modified_occurrences
        .iter()
        .map(|modified| modified.original_start)
        .collect();
    let mut result: Vec<Occurrence> = expand(rule, &timing, from, to)?
        .into_iter()
        .filter(|instance| {
            !deleted.contains(&instance.original_start)
                && !modified.contains(&instance.original_start)
        })
        .map(|instance| Occurrence {
            original_start: Some(instance.original_start),
            start: instance.start,
            end: instance.end,
            exception_item_id: None,
        })
        .collect();
    let mut seen = HashSet::new();
    for moved in &item.modified_occurrences {
        if deleted.contains(&moved.original_start)
            || !seen.insert(moved.original_start)
            || !overlaps(moved.start, moved.end, from, to)
        {
            continue;
        }
        result.push(Occurrence {
            original_start: Some(moved.original_start),
            start: moved.start,
            end: moved.end,
            exception_item_id: Some(moved.item_id.clone()),
        });
    }
    result.sort_by_key(|occurrence| (occurrence.start, occurrence.original_start));
    Ok(result)
}

/// The zone a master's series lives in: its start zone, UTC when absent or unknown.
fn series_zone(item: &CalendarItem) -> Tz {
    item.start_time_zone
        .as_deref()
        .and_then(crate::tz::windows_to_iana)
        .unwrap_or(Tz::UTC)
}

/// Whether `[start, end)` overlaps `[from, to)`; a zero-length span counts when it lies
/// inside the window, as CalendarView counts it.
fn overlaps(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> bool {
    start < to && (end > from || (start == end && start >= from))
}

fn check_interval(interval: u32) -> Result<(), RecurrenceError> {
    if interval == 0 {
        return Err(RecurrenceError::ZeroInterval);
    }
    Ok(())
}

fn check_day_of_month(day: u32) -> Result<(), RecurrenceError> {
    if !(1..=31).contains(&day) {
        return Err(RecurrenceError::InvalidDayOfMonth(day));
    }
    Ok(())
}

fn check_month(month: u32) -> Result<(), RecurrenceError> {
    if !(1..=12).contains(&month) {
        return Err(RecurrenceError::InvalidMonth(month));
    }
    Ok(())
}

/// The local shape every instance repeats: a wall-clock start and duration, or a number
/// of whole days.
struct InstanceShape {
    time_zone: Tz,
    kind: ShapeKind,
}

enum ShapeKind {
    Timed {
        start: NaiveTime,
        duration: Duration,
    },
    AllDay {
        days: u64,
    },
}

impl InstanceShape {
    fn of(timing: &SeriesTiming) -> Self {
        let local_start = timing.start.with_timezone(&timing.time_zone).naive_local();
        let local_end = timing.end.with_timezone(&timing.time_zone).naive_local();
        let kind = if timing.is_all_day {
            let midnight = local_start.date().and_time(NaiveTime::MIN);
            let seconds = (local_end - midnight).num_seconds().max(1);
            let days =
                u64::try_from((seconds + SECONDS_PER_DAY - 1) / SECONDS_PER_DAY).unwrap_or(1);
            ShapeKind::AllDay { days }
        } else {
            ShapeKind::Timed {
                start: local_start.time(),
                // A short meeting across the autumn change can end "earlier" on the
                // wall clock than it starts; its real length is the better guess then.
                duration: if local_end < local_start {
                    timing.end - timing.start
                } else {
                    local_end - local_start
                },
            }
        };
        Self {
            time_zone: timing.time_zone,
            kind,
        }
    }

    /// How many local days before its date an instance can still reach forward.
    fn span_days(&self) -> u64 {
        let days = match self.kind {
            ShapeKind::Timed { duration, .. } => u64::try_from(duration.num_days()).unwrap_or(0),
            ShapeKind::AllDay { days } => days,
        };
        days.saturating_add(2)
    }

    /// The instance on a local date, or `None` past the end of the calendar.
    fn on(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let (local_start, local_end) = match self.kind {
            ShapeKind::Timed { start, duration } => {
                let local_start = date.and_time(start);
                (local_start, local_start.checked_add_signed(duration)?)
            }
            ShapeKind::AllDay { days } => (
                date.and_time(NaiveTime::MIN),
                date.checked_add_days(Days::new(days))?
                    .and_time(NaiveTime::MIN),
            ),
        };
        let start = resolve_local(self.time_zone, local_start);
        let end = resolve_local(self.time_zone, local_end).max(start);
        Some((start, end))
    }
}

const SECONDS_PER_DAY: i64 = 86_400;

/// A local wall-clock time as a UTC instant: the earlier one when the time occurs twice,
/// and the time read with the offset before the change when it falls into a gap.
fn resolve_local(time_zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match time_zone.from_local_datetime(&local) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => {
            first.with_timezone(&Utc).min(second.with_timezone(&Utc))
        }
        LocalResult::None => {
            // A day before the gap (in UTC terms) the old offset is still in force; no
            // zone changes its clocks twice within a day.
            let before = local
                .checked_sub_days(Days::new(1))
                .unwrap_or(NaiveDateTime::MIN);
            let offset = time_zone.offset_from_utc_datetime(&before).fix();
            let utc = local
                .checked_sub_signed(Duration::seconds(i64::from(offset.local_minus_utc())))
                .unwrap_or(local);
            Utc.from_utc_datetime(&utc)
        }
    }
}

/// Splits a pattern into numbered periods (day runs, weeks, months or years) counted
/// from the one containing the range start, and lists the dates in each.
struct PeriodCalendar<'rule> {
    pattern: &'rule Pattern,
    start_date: NaiveDate,
    /// First day of the week containing the start date (weekly patterns).
    week_start: NaiveDate,
    /// Months since year 0 of the start date's month.
    start_month: i64,
    /// Offsets of the pattern's weekdays from the week start, sorted (weekly patterns).
    week_offsets: Vec<u64>,
}

impl<'rule> PeriodCalendar<'rule> {
    fn new(rule: &'rule Recurrence) -> Self {
        let first_day = match &rule.pattern {
            Pattern::Weekly {
                first_day_of_week, ..
            } => *first_day_of_week,
            _ => Weekday::Sun,
        };
        let back = days_since(rule.start_date.weekday(), first_day);
        let mut week_offsets: Vec<u64> = match &rule.pattern {
            Pattern::Weekly { days, .. } => {
                days.iter().map(|day| days_since(*day, first_day)).collect()
            }
            _ => Vec::new(),
        };
        week_offsets.sort_unstable();
        week_offsets.dedup();
        Self {
            pattern: &rule.pattern,
            start_date: rule.start_date,
            week_start: rule
                .start_date
                .checked_sub_days(Days::new(back))
                .unwrap_or(rule.start_date),
            start_month: month_index(rule.start_date),
            week_offsets,
        }
    }

    /// A period whose dates all lie before `date` (or period 0), so that expansion can
    /// skip everything earlier.
    fn period_before(&self, date: NaiveDate) -> u64 {
        if date <= self.start_date {
            return 0;
        }
        let periods = match self.pattern {
            Pattern::Daily { interval } => {
                (date - self.start_date).num_days() / i64::from(*interval)
            }
            Pattern::Weekly { interval, .. } => {
                (date - self.week_start).num_days() / (7 * i64::from(*interval))
            }
            Pattern::AbsoluteMonthly { interval, .. }
            | Pattern::RelativeMonthly { interval, .. } => {
                (month_index(date) - self.start_month) / i64::from(*interval)
            }
            Pattern::AbsoluteYearly { .. } | Pattern::RelativeYearly { .. } => {
                i64::from(date.year() - self.start_date.year())
            }
        };
        u64::try_from(periods).unwrap_or(0).saturating_sub(1)
    }

    /// Appends the dates of one period in order; `None` past the end of the calendar.
    fn dates_of(&self, period: u64, dates: &mut Vec<NaiveDate>) -> Option<()> {
        match self.pattern {
            Pattern::Daily { interval } => {
                let offset = period.checked_mul(u64::from(*interval))?;
                dates.push(self.start_date.checked_add_days(Days::new(offset))?);
            }
            Pattern::Weekly { interval, .. } => {
                let offset = period.checked_mul(7 * u64::from(*interval))?;
                let week = self.week_start.checked_add_days(Days::new(offset))?;
                for day in &self.week_offsets {
                    dates.push(week.checked_add_days(Days::new(*day))?);
                }
            }
            Pattern::AbsoluteMonthly {
                interval,
                day_of_month,
            } => {
                let (year, month) = self.month_of(period, *interval)?;
                dates.push(clamped_date(year, month, *day_of_month)?);
            }
            Pattern::RelativeMonthly {
                interval,
                days_of_week,
                index,
            } => {
                let (year, month) = self.month_of(period, *interval)?;
                dates.push(relative_date(year, month, *days_of_week, *index)?);
            }
            Pattern::AbsoluteYearly {
                month,
                day_of_month,
            } => {
                let year = self.year_of(period)?;
                dates.push(clamped_date(year, *month, *day_of_month)?);
            }
            Pattern::RelativeYearly {
                month,
                days_of_week,
                index,
            } => {
                let year = self.year_of(period)?;
                dates.push(relative_date(year, *month, *days_of_week, *index)?);
            }
        }
        Some(())
    }

    fn month_of(&self, period: u64, interval: u32) -> Option<(i32, u32)> {
        let offset = i64::try_from(period.checked_mul(u64::from(interval))?).ok()?;
        let index = self.start_month.checked_add(offset)?;
        let year = i32::try_from(index.div_euclid(12)).ok()?;
        let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
        Some((year, month))
    }

    fn year_of(&self, period: u64) -> Option<i32> {
        self.start_date
            .year()
            .checked_add(i32::try_from(period).ok()?)
    }
}

/// Days from `first` forward to `day` within a week (0..=6).
fn days_since(day: Weekday, first: Weekday) -> u64 {
    u64::from((day.num_days_from_monday() + 7 - first.num_days_from_monday()) % 7)
}

fn month_index(date: NaiveDate) -> i64 {
    i64::from(date.year()) * 12 + i64::from(date.month0())
}

/// `day` of the month, or the month's last day when the month is shorter.
fn clamped_date(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    let last = last_day_of_month(year, month)?;
    NaiveDate::from_ymd_opt(year, month, day.min(last))
}

fn last_day_of_month(year: i32, month: u32) -> Option<u32> {
    let (next_year, next_month) = if month == 12 {
        (year.checked_add(1)?, 1)
    } else {
        (year, month + 1)
    };
    Some(
        NaiveDate::from_ymd_opt(next_year, next_month, 1)?
            .pred_opt()?
            .day(),
    )
}

/// The `index`-th day of the month matching `selector` (the last one for `Last`).
fn relative_date(
    year: i32,
    month: u32,
    selector: DaySelector,
    index: WeekIndex,
) -> Option<NaiveDate> {
    let last = last_day_of_month(year, month)?;
    let mut matching = (1..=last)
        .filter_map(|day| NaiveDate::from_ymd_opt(year, month, day))
        .filter(|date| selector_matches(selector, date.weekday()));
    match index {
        WeekIndex::First => matching.next(),
        WeekIndex::Second => matching.nth(1),
        WeekIndex::Third => matching.nth(2),
        WeekIndex::Fourth => matching.nth(3),
        WeekIndex::Last => matching.next_back(),
    }
}

fn selector_matches(selector: DaySelector, weekday: Weekday) -> bool {
    match selector {
        DaySelector::Weekday(wanted) => weekday == wanted,
        DaySelector::Day => true,
        DaySelector::Weekdays => !matches!(weekday, Weekday::Sat | Weekday::Sun),
        DaySelector::WeekendDay => matches!(weekday, Weekday::Sat | Weekday::Sun),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};

    use super::*;
    use crate::domain::{ChangeKey, OccurrenceRef};

    fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, minute, 0)
            .unwrap()
    }

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn rule(pattern: Pattern, start_date: NaiveDate, end: RangeEnd) -> Recurrence {
        Recurrence {
            pattern,
            start_date,
            end,
        }
    }

    /// A one-hour series in UTC whose first instance starts at `start`.
    fn hour_in_utc(start: DateTime<Utc>) -> SeriesTiming {
        SeriesTiming {
            start,
            end: start + Duration::hours(1),
            is_all_day: false,
            time_zone: Tz::UTC,
        }
    }

    fn start_dates(instances: &[Instance]) -> Vec<NaiveDate> {
        instances
            .iter()
            .map(|instance| instance.start.date_naive())
            .collect()
    }

    fn dates(list: &[(i32, u32, u32)]) -> Vec<NaiveDate> {
        list.iter()
            .map(|(year, month, day)| date(*year, *month, *day))
            .collect()
    }

    /// Expands a one-hour 09:00 UTC series starting on `start_date` over `[from, to)` dates.
    fn expand_dates(
        pattern: Pattern,
        start_date: NaiveDate,
        end: RangeEnd,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<NaiveDate> {
        let rule = rule(pattern, start_date, end);
        let timing = hour_in_utc(Utc.from_utc_datetime(&start_date.and_hms_opt(9, 0, 0).unwrap()));
        let from = Utc.from_utc_datetime(&from.and_time(NaiveTime::MIN));
        let to = Utc.from_utc_datetime(&to.and_time(NaiveTime::MIN));
        start_dates(&expand(&rule, &timing, from, to).unwrap())
    }

    fn master(
        recurrence: Recurrence,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        zone: Option<&str>,
    ) -> CalendarItem {
        CalendarItem {
            item_id: ItemId::from("master"),
            change_key: ChangeKey::from("ck"),
            subject: "Stand-up".to_owned(),
            last_modified: start,
            uid: "uid-1".to_owned(),
            recurrence_id: None,
            start,
            end,
            is_all_day: false,
            location: None,
            is_cancelled: false,
            is_recurring: true,
            item_type: CalendarItemType::RecurringMaster,
            organizer: None,
            required_attendees: Vec::new(),
            optional_attendees: Vec::new(),
            resources: Vec::new(),
            appointment_state: 1,
            start_time_zone: zone.map(str::to_owned),
            end_time_zone: zone.map(str::to_owned),
            recurrence: Some(recurrence),
            modified_occurrences: Vec::new(),
            deleted_occurrences: Vec::new(),
            clean_global_object_id: None,
        }
    }

    /// A daily 09:00-10:00 UTC master from 2026-01-05, never ending.
    fn daily_master() -> CalendarItem {
        let recurrence = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 5),
            RangeEnd::NoEnd,
        );
        master(
            recurrence,
            utc(2026, 1, 5, 9, 0),
            utc(2026, 1, 5, 10, 0),
            Some("UTC"),
        )
    }

    #[test]
    fn daily_series_gives_one_instance_per_day_at_the_same_time() {
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 5),
            RangeEnd::NoEnd,
        );
        let timing = hour_in_utc(utc(2026, 1, 5, 9, 0));

        let instances =
            expand(&rule, &timing, utc(2026, 1, 5, 0, 0), utc(2026, 1, 8, 0, 0)).unwrap();

        let expected: Vec<Instance> = (5..8)
            .map(|day| Instance {
                original_start: utc(2026, 1, day, 9, 0),
                start: utc(2026, 1, day, 9, 0),
                end: utc(2026, 1, day, 10, 0),
            })
            .collect();
        assert_eq!(instances, expected);
    }

    #[test]
    fn daily_series_every_three_days_skips_two_days_between_instances() {
        let found = expand_dates(
            Pattern::Daily { interval: 3 },
            date(2026, 1, 5),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 1, 20),
        );

        assert_eq!(
            found,
            dates(&[
                (2026, 1, 5),
                (2026, 1, 8),
                (2026, 1, 11),
                (2026, 1, 14),
                (2026, 1, 17)
            ])
        );
    }

    #[test]
    fn weekly_series_on_several_days_gives_each_named_day() {
        let pattern = Pattern::Weekly {
            interval: 1,
            days: vec![Weekday::Fri, Weekday::Mon, Weekday::Wed],
            first_day_of_week: Weekday::Sun,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 5),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 1, 17),
        );

        assert_eq!(
            found,
            dates(&[
                (2026, 1, 5),
                (2026, 1, 7),
                (2026, 1, 9),
                (2026, 1, 12),
                (2026, 1, 14),
                (2026, 1, 16)
            ])
        );
    }

    #[test]
    fn weekly_series_every_two_weeks_counts_from_the_week_of_the_start_date() {
        // Wednesday 7 January; the Monday of that week precedes the start and is skipped.
        let pattern = Pattern::Weekly {
            interval: 2,
            days: vec![Weekday::Mon, Weekday::Wed],
            first_day_of_week: Weekday::Sun,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 7),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 2, 8),
        );

        assert_eq!(
            found,
            dates(&[
                (2026, 1, 7),
                (2026, 1, 19),
                (2026, 1, 21),
                (2026, 2, 2),
                (2026, 2, 4)
            ])
        );
    }

    #[test]
    fn weekly_interval_weeks_begin_on_the_first_day_of_the_week() {
        let biweekly = |first_day_of_week| Pattern::Weekly {
            interval: 2,
            days: vec![Weekday::Sun, Weekday::Mon],
            first_day_of_week,
        };
        // Sunday 11 January 2026.
        let start = date(2026, 1, 11);
        let (from, to) = (date(2026, 1, 1), date(2026, 1, 31));

        let monday_weeks = expand_dates(biweekly(Weekday::Mon), start, RangeEnd::NoEnd, from, to);
        let sunday_weeks = expand_dates(biweekly(Weekday::Sun), start, RangeEnd::NoEnd, from, to);

        assert_eq!(
            monday_weeks,
            dates(&[(2026, 1, 11), (2026, 1, 19), (2026, 1, 25)])
        );
        assert_eq!(
            sunday_weeks,
            dates(&[(2026, 1, 11), (2026, 1, 12), (2026, 1, 25), (2026, 1, 26)])
        );
    }

    #[test]
    fn monthly_series_by_date_repeats_on_that_day_every_interval_months() {
        let pattern = Pattern::AbsoluteMonthly {
            interval: 2,
            day_of_month: 15,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 15),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 8, 1),
        );

        assert_eq!(
            found,
            dates(&[(2026, 1, 15), (2026, 3, 15), (2026, 5, 15), (2026, 7, 15)])
        );
    }

    #[test]
    fn monthly_series_on_the_31st_falls_on_the_last_day_of_shorter_months() {
        let pattern = Pattern::AbsoluteMonthly {
            interval: 1,
            day_of_month: 31,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 31),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 5, 1),
        );

        assert_eq!(
            found,
            dates(&[(2026, 1, 31), (2026, 2, 28), (2026, 3, 31), (2026, 4, 30)])
        );
    }

    #[test]
    fn monthly_series_by_date_skips_the_start_month_when_the_day_has_passed() {
        let pattern = Pattern::AbsoluteMonthly {
            interval: 1,
            day_of_month: 3,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 20),
            RangeEnd::Numbered { count: 2 },
            date(2026, 1, 1),
            date(2027, 1, 1),
        );

        assert_eq!(found, dates(&[(2026, 2, 3), (2026, 3, 3)]));
    }

    #[test]
    fn monthly_series_on_the_second_tuesday_follows_the_weekday() {
        let pattern = Pattern::RelativeMonthly {
            interval: 1,
            days_of_week: DaySelector::Weekday(Weekday::Tue),
            index: WeekIndex::Second,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 1),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 4, 1),
        );

        assert_eq!(found, dates(&[(2026, 1, 13), (2026, 2, 10), (2026, 3, 10)]));
    }

    #[test]
    fn monthly_series_on_the_last_friday_takes_the_final_friday_of_each_month() {
        let pattern = Pattern::RelativeMonthly {
            interval: 1,
            days_of_week: DaySelector::Weekday(Weekday::Fri),
            index: WeekIndex::Last,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 1),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 6, 1),
        );

        assert_eq!(
            found,
            dates(&[
                (2026, 1, 30),
                (2026, 2, 27),
                (2026, 3, 27),
                (2026, 4, 24),
                (2026, 5, 29)
            ])
        );
    }

    #[test]
    fn monthly_series_on_the_last_weekday_skips_weekends_at_month_end() {
        let pattern = Pattern::RelativeMonthly {
            interval: 1,
            days_of_week: DaySelector::Weekdays,
            index: WeekIndex::Last,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 1),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2026, 6, 1),
        );

        // 31 January and 31 May 2026 are a Saturday and a Sunday.
        assert_eq!(
            found,
            dates(&[
                (2026, 1, 30),
                (2026, 2, 27),
                (2026, 3, 31),
                (2026, 4, 30),
                (2026, 5, 29)
            ])
        );
    }

    #[test]
    fn monthly_series_by_day_and_weekend_day_selectors_count_matching_days() {
        let third_day = Pattern::RelativeMonthly {
            interval: 1,
            days_of_week: DaySelector::Day,
            index: WeekIndex::Third,
        };
        let second_weekend_day = Pattern::RelativeMonthly {
            interval: 1,
            days_of_week: DaySelector::WeekendDay,
            index: WeekIndex::Second,
        };
        let (from, to) = (date(2026, 1, 1), date(2026, 3, 1));

        let days = expand_dates(third_day, date(2026, 1, 1), RangeEnd::NoEnd, from, to);
        let weekend_days = expand_dates(
            second_weekend_day,
            date(2026, 1, 1),
            RangeEnd::NoEnd,
            from,
            to,
        );

        assert_eq!(days, dates(&[(2026, 1, 3), (2026, 2, 3)]));
        // January 2026 starts on a Thursday, February on a Sunday.
        assert_eq!(weekend_days, dates(&[(2026, 1, 4), (2026, 2, 7)]));
    }

    #[test]
    fn yearly_series_by_date_falls_back_to_28_february_outside_leap_years() {
        let pattern = Pattern::AbsoluteYearly {
            month: 2,
            day_of_month: 29,
        };

        let found = expand_dates(
            pattern,
            date(2028, 2, 29),
            RangeEnd::NoEnd,
            date(2028, 1, 1),
            date(2033, 1, 1),
        );

        assert_eq!(
            found,
            dates(&[
                (2028, 2, 29),
                (2029, 2, 28),
                (2030, 2, 28),
                (2031, 2, 28),
                (2032, 2, 29)
            ])
        );
    }

    #[test]
    fn yearly_series_by_weekday_gives_the_fourth_thursday_of_november() {
        let pattern = Pattern::RelativeYearly {
            month: 11,
            days_of_week: DaySelector::Weekday(Weekday::Thu),
            index: WeekIndex::Fourth,
        };

        let found = expand_dates(
            pattern,
            date(2026, 1, 1),
            RangeEnd::NoEnd,
            date(2026, 1, 1),
            date(2029, 1, 1),
        );

        assert_eq!(
            found,
            dates(&[(2026, 11, 26), (2027, 11, 25), (2028, 11, 23)])
        );
    }

    #[test]
    fn numbered_range_counts_instances_from_the_series_start_not_the_window() {
        let found = expand_dates(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 1),
            RangeEnd::Numbered { count: 5 },
            date(2026, 1, 3),
            date(2026, 2, 1),
        );

        assert_eq!(found, dates(&[(2026, 1, 3), (2026, 1, 4), (2026, 1, 5)]));
    }

    #[test]
    fn end_date_range_includes_the_end_date() {
        let found = expand_dates(
            Pattern::Weekly {
                interval: 1,
                days: vec![Weekday::Wed],
                first_day_of_week: Weekday::Mon,
            },
            date(2026, 1, 7),
            RangeEnd::EndDate {
                date: date(2026, 1, 21),
            },
            date(2026, 1, 1),
            date(2026, 3, 1),
        );

        assert_eq!(found, dates(&[(2026, 1, 7), (2026, 1, 14), (2026, 1, 21)]));
    }

    #[test]
    fn never_ending_series_is_clipped_to_the_window() {
        let found = expand_dates(
            Pattern::Daily { interval: 1 },
            date(1990, 1, 1),
            RangeEnd::NoEnd,
            date(2026, 3, 1),
            date(2026, 3, 4),
        );

        assert_eq!(found, dates(&[(2026, 3, 1), (2026, 3, 2), (2026, 3, 3)]));
    }

    #[test]
    fn series_starting_after_the_window_gives_nothing() {
        let found = expand_dates(
            Pattern::Daily { interval: 1 },
            date(2026, 6, 1),
            RangeEnd::NoEnd,
            date(2026, 3, 1),
            date(2026, 3, 4),
        );

        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn instances_overlapping_either_window_edge_count_and_touching_ones_do_not() {
        // 22:00-02:00 every day.
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 1),
            RangeEnd::NoEnd,
        );
        let timing = SeriesTiming {
            start: utc(2026, 1, 1, 22, 0),
            end: utc(2026, 1, 2, 2, 0),
            is_all_day: false,
            time_zone: Tz::UTC,
        };

        let overlapping = expand(
            &rule,
            &timing,
            utc(2026, 1, 5, 1, 0),
            utc(2026, 1, 5, 23, 0),
        )
        .unwrap();
        let touching = expand(
            &rule,
            &timing,
            utc(2026, 1, 5, 2, 0),
            utc(2026, 1, 5, 22, 0),
        )
        .unwrap();

        let starts: Vec<_> = overlapping.iter().map(|instance| instance.start).collect();
        assert_eq!(starts, vec![utc(2026, 1, 4, 22, 0), utc(2026, 1, 5, 22, 0)]);
        assert!(touching.is_empty(), "{touching:?}");
    }

    #[test]
    fn zero_length_instance_at_the_window_start_is_included() {
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 1),
            RangeEnd::NoEnd,
        );
        let timing = SeriesTiming {
            start: utc(2026, 1, 1, 9, 0),
            end: utc(2026, 1, 1, 9, 0),
            is_all_day: false,
            time_zone: Tz::UTC,
        };

        let at_start = expand(
            &rule,
            &timing,
            utc(2026, 1, 3, 9, 0),
            utc(2026, 1, 3, 12, 0),
        )
        .unwrap();
        let at_end = expand(&rule, &timing, utc(2026, 1, 3, 6, 0), utc(2026, 1, 3, 9, 0)).unwrap();

        assert_eq!(start_dates(&at_start), dates(&[(2026, 1, 3)]));
        assert!(at_end.is_empty(), "{at_end:?}");
    }

    #[test]
    fn weekly_berlin_series_keeps_nine_o_clock_local_across_both_dst_changes() {
        // Mondays 09:00-09:30 Europe/Berlin from 16 March 2026 (CET, UTC+1).
        let recurrence = rule(
            Pattern::Weekly {
                interval: 1,
                days: vec![Weekday::Mon],
                first_day_of_week: Weekday::Mon,
            },
            date(2026, 3, 16),
            RangeEnd::NoEnd,
        );
        let item = master(
            recurrence,
            utc(2026, 3, 16, 8, 0),
            utc(2026, 3, 16, 8, 30),
            Some("W. Europe Standard Time"),
        );

        let spring = occurrences(&item, utc(2026, 3, 16, 0, 0), utc(2026, 4, 1, 0, 0)).unwrap();
        let autumn = occurrences(&item, utc(2026, 10, 19, 0, 0), utc(2026, 10, 27, 0, 0)).unwrap();

        let spring_starts: Vec<_> = spring.iter().map(|occurrence| occurrence.start).collect();
        let autumn_starts: Vec<_> = autumn.iter().map(|occurrence| occurrence.start).collect();
        // Summer time starts on 29 March and ends on 25 October 2026.
        assert_eq!(
            spring_starts,
            vec![
                utc(2026, 3, 16, 8, 0),
                utc(2026, 3, 23, 8, 0),
                utc(2026, 3, 30, 7, 0)
            ]
        );
        assert_eq!(
            autumn_starts,
            vec![utc(2026, 10, 19, 7, 0), utc(2026, 10, 26, 8, 0)]
        );
        for occurrence in spring.iter().chain(&autumn) {
            let local = occurrence.start.with_timezone(&Tz::Europe__Berlin);
            assert_eq!((local.hour(), local.minute()), (9, 0), "{occurrence:?}");
            assert_eq!(occurrence.end - occurrence.start, Duration::minutes(30));
            assert_eq!(occurrence.original_start, Some(occurrence.start));
        }
    }

    #[test]
    fn all_day_series_in_los_angeles_runs_from_local_midnight_to_local_midnight() {
        // Daily all-day from Friday 6 March 2026; summer time starts on Sunday 8 March.
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 3, 6),
            RangeEnd::Numbered { count: 4 },
        );
        let timing = SeriesTiming {
            start: utc(2026, 3, 6, 8, 0),
            end: utc(2026, 3, 7, 8, 0),
            is_all_day: true,
            time_zone: Tz::America__Los_Angeles,
        };

        let instances =
            expand(&rule, &timing, utc(2026, 3, 1, 0, 0), utc(2026, 4, 1, 0, 0)).unwrap();

        let spans: Vec<_> = instances
            .iter()
            .map(|instance| (instance.start, instance.end))
            .collect();
        assert_eq!(
            spans,
            vec![
                (utc(2026, 3, 6, 8, 0), utc(2026, 3, 7, 8, 0)),
                (utc(2026, 3, 7, 8, 0), utc(2026, 3, 8, 8, 0)),
                (utc(2026, 3, 8, 8, 0), utc(2026, 3, 9, 7, 0)),
                (utc(2026, 3, 9, 7, 0), utc(2026, 3, 10, 7, 0)),
            ]
        );
    }

    #[test]
    fn multi_day_all_day_series_keeps_its_number_of_days() {
        let rule = rule(
            Pattern::AbsoluteMonthly {
                interval: 1,
                day_of_month: 10,
            },
            date(2026, 1, 10),
            RangeEnd::Numbered { count: 2 },
        );
        let timing = SeriesTiming {
            start: utc(2026, 1, 9, 23, 0),
            end: utc(2026, 1, 11, 23, 0),
            is_all_day: true,
            time_zone: Tz::Europe__Berlin,
        };

        let instances =
            expand(&rule, &timing, utc(2026, 1, 1, 0, 0), utc(2026, 3, 1, 0, 0)).unwrap();

        let spans: Vec<_> = instances
            .iter()
            .map(|instance| (instance.start, instance.end))
            .collect();
        assert_eq!(
            spans,
            vec![
                (utc(2026, 1, 9, 23, 0), utc(2026, 1, 11, 23, 0)),
                (utc(2026, 2, 9, 23, 0), utc(2026, 2, 11, 23, 0)),
            ]
        );
    }

    #[test]
    fn local_times_in_a_dst_gap_move_forward_and_repeated_ones_take_the_earlier_instant() {
        // Daily 02:30-03:00 Europe/Berlin: 02:30 does not exist on 29 March 2026 and
        // happens twice on 25 October 2026.
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 3, 1),
            RangeEnd::NoEnd,
        );
        let timing = SeriesTiming {
            start: utc(2026, 3, 1, 1, 30),
            end: utc(2026, 3, 1, 2, 0),
            is_all_day: false,
            time_zone: Tz::Europe__Berlin,
        };

        let gap = expand(
            &rule,
            &timing,
            utc(2026, 3, 29, 0, 0),
            utc(2026, 3, 29, 12, 0),
        )
        .unwrap();
        let overlap = expand(
            &rule,
            &timing,
            utc(2026, 10, 25, 0, 0),
            utc(2026, 10, 25, 12, 0),
        )
        .unwrap();

        // 02:30 read as CET is 01:30 UTC, which is 03:30 CEST.
        assert_eq!(gap.len(), 1);
        assert_eq!(gap[0].start, utc(2026, 3, 29, 1, 30));
        // The earlier 02:30 is still CEST: 00:30 UTC.
        assert_eq!(overlap.len(), 1);
        assert_eq!(overlap[0].start, utc(2026, 10, 25, 0, 30));
        assert!(gap[0].end >= gap[0].start && overlap[0].end > overlap[0].start);
    }

    #[test]
    fn first_instance_across_the_autumn_change_keeps_its_real_length() {
        // 02:45 CEST to 02:15 CET on 25 October 2026: half an hour that ends "earlier".
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 10, 25),
            RangeEnd::NoEnd,
        );
        let timing = SeriesTiming {
            start: utc(2026, 10, 25, 0, 45),
            end: utc(2026, 10, 25, 1, 15),
            is_all_day: false,
            time_zone: Tz::Europe__Berlin,
        };

        let instances = expand(
            &rule,
            &timing,
            utc(2026, 10, 26, 0, 0),
            utc(2026, 10, 27, 0, 0),
        )
        .unwrap();

        assert_eq!(instances.len(), 1);
        assert_eq!(instances[0].start, utc(2026, 10, 26, 1, 45));
        assert_eq!(instances[0].end, utc(2026, 10, 26, 2, 15));
    }

    #[test]
    fn single_meeting_gives_itself_without_an_original_start() {
        let mut item = daily_master();
        item.item_type = CalendarItemType::Single;
        item.recurrence = None;
        item.is_recurring = false;

        let inside = occurrences(&item, utc(2026, 1, 5, 0, 0), utc(2026, 1, 6, 0, 0)).unwrap();
        let outside = occurrences(&item, utc(2026, 1, 6, 0, 0), utc(2026, 1, 7, 0, 0)).unwrap();

        assert_eq!(
            inside,
            vec![Occurrence {
                original_start: None,
                start: utc(2026, 1, 5, 9, 0),
                end: utc(2026, 1, 5, 10, 0),
                exception_item_id: None,
            }]
        );
        assert!(outside.is_empty(), "{outside:?}");
    }

    #[test]
    fn modified_occurrence_replaces_its_instance_with_its_own_times_and_item_id() {
        let mut item = daily_master();
        item.modified_occurrences.push(OccurrenceRef {
            item_id: ItemId::from("exception-7"),
            change_key: None,
            start: utc(2026, 1, 7, 14, 0),
            end: utc(2026, 1, 7, 15, 30),
            original_start: utc(2026, 1, 7, 9, 0),
        });

        let found = occurrences(&item, utc(2026, 1, 6, 0, 0), utc(2026, 1, 9, 0, 0)).unwrap();

        assert_eq!(
            found,
            vec![
                Occurrence {
                    original_start: Some(utc(2026, 1, 6, 9, 0)),
                    start: utc(2026, 1, 6, 9, 0),
                    end: utc(2026, 1, 6, 10, 0),
                    exception_item_id: None,
                },
                Occurrence {
                    original_start: Some(utc(2026, 1, 7, 9, 0)),
                    start: utc(2026, 1, 7, 14, 0),
                    end: utc(2026, 1, 7, 15, 30),
                    exception_item_id: Some(ItemId::from("exception-7")),
                },
                Occurrence {
                    original_start: Some(utc(2026, 1, 8, 9, 0)),
                    start: utc(2026, 1, 8, 9, 0),
                    end: utc(2026, 1, 8, 10, 0),
                    exception_item_id: None,
                },
            ]
        );
    }

    #[test]
    fn occurrence_moved_into_the_window_counts_and_one_moved_out_does_not() {
        let mut item = daily_master();
        // 1 February moved into the window; 10 January moved out of it.
        item.modified_occurrences.push(OccurrenceRef {
            item_id: ItemId::from("moved-in"),
            change_key: None,
            start: utc(2026, 1, 11, 13, 0),
            end: utc(2026, 1, 11, 14, 0),
            original_start: utc(2026, 2, 1, 9, 0),
        });
        item.modified_occurrences.push(OccurrenceRef {
            item_id: ItemId::from("moved-out"),
            change_key: None,
            start: utc(2026, 1, 20, 9, 0),
            end: utc(2026, 1, 20, 10, 0),
            original_start: utc(2026, 1, 10, 9, 0),
        });

        let found = occurrences(&item, utc(2026, 1, 10, 0, 0), utc(2026, 1, 12, 0, 0)).unwrap();

        let seen: Vec<_> = found
            .iter()
            .map(|occurrence| (occurrence.original_start, occurrence.start))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some(utc(2026, 1, 11, 9, 0)), utc(2026, 1, 11, 9, 0)),
                (Some(utc(2026, 2, 1, 9, 0)), utc(2026, 1, 11, 13, 0)),
            ]
        );
        assert_eq!(found[1].exception_item_id, Some(ItemId::from("moved-in")));
    }

    #[test]
    fn deleted_occurrences_are_left_out() {
        let mut item = daily_master();
        item.deleted_occurrences.push(utc(2026, 1, 6, 9, 0));

        let found = occurrences(&item, utc(2026, 1, 5, 0, 0), utc(2026, 1, 8, 0, 0)).unwrap();

        let starts: Vec<_> = found.iter().map(|occurrence| occurrence.start).collect();
        assert_eq!(starts, vec![utc(2026, 1, 5, 9, 0), utc(2026, 1, 7, 9, 0)]);
    }

    #[test]
    fn master_with_an_unknown_zone_expands_in_utc() {
        let mut item = daily_master();
        item.start_time_zone = Some("Atlantis Standard Time".to_owned());

        let found = occurrences(&item, utc(2026, 7, 1, 0, 0), utc(2026, 7, 2, 0, 0)).unwrap();

        let starts: Vec<_> = found.iter().map(|occurrence| occurrence.start).collect();
        assert_eq!(starts, vec![utc(2026, 7, 1, 9, 0)]);
    }

    #[test]
    fn master_without_a_rule_is_an_error() {
        let mut item = daily_master();
        item.recurrence = None;

        let result = occurrences(&item, utc(2026, 1, 5, 0, 0), utc(2026, 1, 8, 0, 0));

        assert_eq!(result, Err(RecurrenceError::MissingRule));
    }

    #[test]
    fn invalid_rules_give_errors() {
        let start = date(2026, 1, 5);
        let weekly_without_days = Pattern::Weekly {
            interval: 1,
            days: Vec::new(),
            first_day_of_week: Weekday::Sun,
        };
        let cases = [
            (
                Pattern::Daily { interval: 0 },
                RangeEnd::NoEnd,
                RecurrenceError::ZeroInterval,
            ),
            (
                weekly_without_days,
                RangeEnd::NoEnd,
                RecurrenceError::NoWeekdays,
            ),
            (
                Pattern::AbsoluteMonthly {
                    interval: 1,
                    day_of_month: 32,
                },
                RangeEnd::NoEnd,
                RecurrenceError::InvalidDayOfMonth(32),
            ),
            (
                Pattern::AbsoluteYearly {
                    month: 2,
                    day_of_month: 0,
                },
                RangeEnd::NoEnd,
                RecurrenceError::InvalidDayOfMonth(0),
            ),
            (
                Pattern::RelativeYearly {
                    month: 13,
                    days_of_week: DaySelector::Day,
                    index: WeekIndex::First,
                },
                RangeEnd::NoEnd,
                RecurrenceError::InvalidMonth(13),
            ),
            (
                Pattern::RelativeMonthly {
                    interval: 0,
                    days_of_week: DaySelector::Day,
                    index: WeekIndex::First,
                },
                RangeEnd::NoEnd,
                RecurrenceError::ZeroInterval,
            ),
            (
                Pattern::Daily { interval: 1 },
                RangeEnd::Numbered { count: 0 },
                RecurrenceError::ZeroCount,
            ),
            (
                Pattern::Daily { interval: 1 },
                RangeEnd::EndDate {
                    date: date(2026, 1, 4),
                },
                RecurrenceError::EndDateBeforeStart {
                    start,
                    end: date(2026, 1, 4),
                },
            ),
        ];
        let timing = hour_in_utc(utc(2026, 1, 5, 9, 0));

        for (pattern, end, expected) in cases {
            let result = expand(
                &rule(pattern, start, end),
                &timing,
                utc(2026, 1, 1, 0, 0),
                utc(2026, 2, 1, 0, 0),
            );
            assert_eq!(result, Err(expected));
        }
    }

    #[test]
    fn first_instance_ending_before_it_starts_is_an_error() {
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 5),
            RangeEnd::NoEnd,
        );
        let timing = SeriesTiming {
            start: utc(2026, 1, 5, 10, 0),
            end: utc(2026, 1, 5, 9, 0),
            is_all_day: false,
            time_zone: Tz::UTC,
        };

        let result = expand(&rule, &timing, utc(2026, 1, 1, 0, 0), utc(2026, 2, 1, 0, 0));

        assert!(
            matches!(result, Err(RecurrenceError::EndBeforeStart { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn absurdly_wide_window_stops_at_the_period_cap() {
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 5),
            RangeEnd::NoEnd,
        );
        let timing = hour_in_utc(utc(2026, 1, 5, 9, 0));

        let result = expand(&rule, &timing, utc(2026, 1, 1, 0, 0), utc(3026, 1, 1, 0, 0));

        assert_eq!(
            result,
            Err(RecurrenceError::TooManyPeriods {
                limit: MAX_EXPANSION_PERIODS
            })
        );
    }

    #[test]
    fn empty_or_reversed_window_gives_nothing() {
        let rule = rule(
            Pattern::Daily { interval: 1 },
            date(2026, 1, 1),
            RangeEnd::NoEnd,
        );
        let timing = hour_in_utc(utc(2026, 1, 1, 9, 0));

        let empty = expand(
            &rule,
            &timing,
            utc(2026, 1, 3, 9, 30),
            utc(2026, 1, 3, 9, 30),
        )
        .unwrap();
        let reversed =
            expand(&rule, &timing, utc(2026, 1, 4, 0, 0), utc(2026, 1, 3, 0, 0)).unwrap();

        assert!(empty.is_empty(), "{empty:?}");
        assert!(reversed.is_empty(), "{reversed:?}");
    }

    #[test]
    fn extreme_window_bounds_neither_panic_nor_loop() {
        let numbered = rule(
            Pattern::Weekly {
                interval: 1,
                days: vec![Weekday::Tue],
                first_day_of_week: Weekday::Sun,
            },
            date(2026, 1, 6),
            RangeEnd::Numbered { count: 3 },
        );
        let timing = SeriesTiming {
            time_zone: Tz::Pacific__Kiritimati,
            ..hour_in_utc(utc(2026, 1, 5, 19, 0))
        };

        let instances = expand(
            &numbered,
            &timing,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        )
        .unwrap();

        assert_eq!(
            start_dates(&instances),
            dates(&[(2026, 1, 5), (2026, 1, 12), (2026, 1, 19)])
        );
    }

    #[test]
    fn rules_survive_a_json_round_trip() {
        let original = rule(
            Pattern::RelativeYearly {
                month: 11,
                days_of_week: DaySelector::Weekday(Weekday::Thu),
                index: WeekIndex::Fourth,
            },
            date(2026, 1, 1),
            RangeEnd::Numbered { count: 3 },
        );

        let json = serde_json::to_string(&original).unwrap();

        assert_eq!(serde_json::from_str::<Recurrence>(&json).unwrap(), original);
    }
}
