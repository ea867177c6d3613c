//! Recurrence rules of calendar series and their expansion into occurrences.
//!
//! The rule types mirror EWS's `t:Recurrence` (a pattern plus a range). Expansion
//! happens in the series' own time zone so that occurrences keep their local wall-clock
//! time across daylight-saving changes; results are UTC instants.

use chrono::{NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

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
