//! Calendar items, item summaries and recurrence rules read from `t:` elements.
//!
//! Errors are plain strings naming what was missing or unreadable; the caller decides
//! whether that fails one item of a batch or the whole response.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc, Weekday};

use super::names::*;
use super::tree::{Element, Ns};
use crate::domain::{
    Attendee, CalendarItem, CalendarItemType, ChangeKey, ItemId, ItemSummary, OccurrenceRef,
    Person, ResponseType,
};
use crate::ews::types::ViewItem;
use crate::recurrence::{DaySelector, Pattern, RangeEnd, Recurrence, WeekIndex};

/// Reads a full `t:CalendarItem` as GetItem returns it.
pub(crate) fn calendar_item(item: &Element) -> Result<CalendarItem, String> {
    let (item_id, change_key) = item_id(item)?;
    Ok(CalendarItem {
        item_id,
        change_key,
        subject: text(item, SUBJECT).unwrap_or_default().to_owned(),
        last_modified: required_datetime(item, LAST_MODIFIED_TIME)?,
        uid: required(item, UID)?.to_owned(),
        recurrence_id: optional_datetime(item, RECURRENCE_ID)?,
        start: required_datetime(item, START)?,
        end: required_datetime(item, END)?,
        is_all_day: optional_bool(item, IS_ALL_DAY_EVENT)?.unwrap_or(false),
        location: text(item, LOCATION)
            .filter(|location| !location.is_empty())
            .map(str::to_owned),
        is_cancelled: optional_bool(item, IS_CANCELLED)?.unwrap_or(false),
        is_recurring: optional_bool(item, IS_RECURRING)?.unwrap_or(false),
        item_type: item_type(item)?.unwrap_or(CalendarItemType::Single),
        organizer: item
            .child(Ns::Types, ORGANIZER)
            .and_then(|organizer| organizer.child(Ns::Types, MAILBOX))
            .map(person),
        required_attendees: attendees(item, REQUIRED_ATTENDEES),
        optional_attendees: attendees(item, OPTIONAL_ATTENDEES),
        resources: attendees(item, RESOURCES),
        appointment_state: text(item, APPOINTMENT_STATE)
            .map(|state| {
                state
                    .parse()
                    .map_err(|_| "AppointmentState is not a number")
            })
            .transpose()?
            .unwrap_or(0),
        start_time_zone: time_zone(item, START_TIME_ZONE),
        end_time_zone: time_zone(item, END_TIME_ZONE),
        recurrence: item
            .child(Ns::Types, RECURRENCE)
            .map(recurrence)
            .transpose()?,
        modified_occurrences: modified_occurrences(item)?,
        deleted_occurrences: deleted_occurrences(item)?,
        clean_global_object_id: clean_global_object_id(item),
    })
}

/// Reads the id, version and type of an item listed by SyncFolderItems.
pub(crate) fn item_summary(item: &Element) -> Result<ItemSummary, String> {
    let (item_id, change_key) = item_id(item)?;
    Ok(ItemSummary {
        item_id,
        change_key,
        last_modified: optional_datetime(item, LAST_MODIFIED_TIME)?,
        uid: text(item, UID).map(str::to_owned),
        item_type: item_type(item)?,
    })
}

/// Reads one entry of a CalendarView.
pub(crate) fn view_item(item: &Element) -> Result<ViewItem, String> {
    Ok(ViewItem {
        summary: item_summary(item)?,
        subject: text(item, SUBJECT).map(str::to_owned),
        start: required_datetime(item, START)?,
        end: required_datetime(item, END)?,
        is_all_day: optional_bool(item, IS_ALL_DAY_EVENT)?.unwrap_or(false),
        is_cancelled: optional_bool(item, IS_CANCELLED)?.unwrap_or(false),
        recurrence_id: optional_datetime(item, RECURRENCE_ID)?,
    })
}

/// Parses an `xs:dateTime`; values without an offset are taken as UTC.
pub(crate) fn parse_datetime(value: &str) -> Result<DateTime<Utc>, String> {
    let value = value.trim();
    DateTime::parse_from_rfc3339(value)
        .map(|instant| instant.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|naive| naive.and_utc())
        })
        .map_err(|_| format!("invalid date-time {value:?}"))
}

/// Parses an `xs:date`, which may carry an offset (`2026-03-02Z`, `2026-03-02+01:00`)
/// that does not change the date.
pub(crate) fn parse_date(value: &str) -> Result<NaiveDate, String> {
    let value = value.trim();
    let invalid = || format!("invalid date {value:?}");
    let (date, zone) = value.split_at_checked(10).ok_or_else(invalid)?;
    let zone_ok = zone.is_empty()
        || zone == "Z"
        || format!("2000-01-01T00:00:00{zone}")
            .parse::<DateTime<FixedOffset>>()
            .is_ok();
    if !zone_ok {
        return Err(invalid());
    }
    NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| invalid())
}

/// Parses an `xs:boolean`.
pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

fn item_id(item: &Element) -> Result<(ItemId, ChangeKey), String> {
    let id = item
        .child(Ns::Types, ITEM_ID)
        .ok_or_else(|| format!("{} without ItemId", item.name))?;
    Ok((
        ItemId::from(id.attribute(ATTR_ID).ok_or("ItemId without Id")?),
        ChangeKey::from(id.attribute(ATTR_CHANGE_KEY).unwrap_or_default()),
    ))
}

fn text<'a>(item: &'a Element, name: &str) -> Option<&'a str> {
    item.child_text(Ns::Types, name)
}

fn required<'a>(item: &'a Element, name: &str) -> Result<&'a str, String> {
    text(item, name).ok_or_else(|| format!("{} without {name}", item.name))
}

fn required_datetime(item: &Element, name: &str) -> Result<DateTime<Utc>, String> {
    parse_datetime(required(item, name)?)
}

fn optional_datetime(item: &Element, name: &str) -> Result<Option<DateTime<Utc>>, String> {
    text(item, name).map(parse_datetime).transpose()
}

fn optional_bool(item: &Element, name: &str) -> Result<Option<bool>, String> {
    text(item, name).map(parse_bool).transpose()
}

fn item_type(item: &Element) -> Result<Option<CalendarItemType>, String> {
    text(item, CALENDAR_ITEM_TYPE)
        .map(|value| {
            CalendarItemType::parse(value)
                .ok_or_else(|| format!("unknown CalendarItemType {value:?}"))
        })
        .transpose()
}

/// A `t:Mailbox`-shaped element (Name, EmailAddress) as a person.
pub(crate) fn person(mailbox: &Element) -> Person {
    Person {
        name: text(mailbox, NAME).map(str::to_owned),
        email: text(mailbox, EMAIL_ADDRESS)
            .filter(|email| !email.is_empty())
            .map(str::to_owned),
    }
}

fn attendees(item: &Element, list: &str) -> Vec<Attendee> {
    item.child(Ns::Types, list)
        .map(|list| {
            list.children_named(Ns::Types, ATTENDEE)
                .filter_map(|attendee| {
                    let mailbox = attendee.child(Ns::Types, MAILBOX)?;
                    Some(Attendee {
                        person: person(mailbox),
                        response: text(attendee, RESPONSE_TYPE).and_then(ResponseType::parse),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn time_zone(item: &Element, name: &str) -> Option<String> {
    item.child(Ns::Types, name)
        .and_then(|zone| zone.attribute(ATTR_ID))
        .map(str::to_owned)
}

fn modified_occurrences(item: &Element) -> Result<Vec<OccurrenceRef>, String> {
    let Some(list) = item.child(Ns::Types, MODIFIED_OCCURRENCES) else {
        return Ok(Vec::new());
    };
    list.children_named(Ns::Types, OCCURRENCE)
        .map(|occurrence| {
            let (id, change_key) = item_id(occurrence)?;
            Ok(OccurrenceRef {
                item_id: id,
                change_key: (!change_key.as_str().is_empty()).then_some(change_key),
                start: required_datetime(occurrence, START)?,
                end: required_datetime(occurrence, END)?,
                original_start: required_datetime(occurrence, ORIGINAL_START)?,
            })
        })
        .collect()
}

fn deleted_occurrences(item: &Element) -> Result<Vec<DateTime<Utc>>, String> {
    let Some(list) = item.child(Ns::Types, DELETED_OCCURRENCES) else {
        return Ok(Vec::new());
    };
    list.children_named(Ns::Types, DELETED_OCCURRENCE)
        .map(|occurrence| required_datetime(occurrence, START))
        .collect()
}

/// PidLidCleanGlobalObjectId, matched on (property set, id) whatever spelling
/// Exchange chose for them.
fn clean_global_object_id(item: &Element) -> Option<String> {
    item.children_named(Ns::Types, EXTENDED_PROPERTY)
        .find(|property| {
            property
                .child(Ns::Types, EXTENDED_FIELD_URI)
                .is_some_and(is_clean_global_object_id)
        })
        .and_then(|property| text(property, VALUE))
        .map(str::to_owned)
}

fn is_clean_global_object_id(uri: &Element) -> bool {
    let in_meeting_set = uri.attribute(ATTR_PROPERTY_SET_ID).is_some_and(|set| {
        set.trim_matches(['{', '}'])
            .eq_ignore_ascii_case(PSETID_MEETING)
    }) || uri.attribute(ATTR_DISTINGUISHED_PROPERTY_SET_ID)
        == Some(DISTINGUISHED_SET_MEETING);
    let id = uri.attribute(ATTR_PROPERTY_ID).and_then(|id| {
        let id = id.trim();
        match id.strip_prefix("0x").or_else(|| id.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => id.parse().ok(),
        }
    });
    in_meeting_set && id == Some(CLEAN_GLOBAL_OBJECT_ID)
}

fn recurrence(element: &Element) -> Result<Recurrence, String> {
    let mut pattern = None;
    let mut range = None;
    for child in element
        .children
        .iter()
        .filter(|child| child.ns == Ns::Types)
    {
        match child.name.as_str() {
            NO_END_RECURRENCE | END_DATE_RECURRENCE | NUMBERED_RECURRENCE => {
                range = Some(recurrence_range(child)?);
            }
            _ => {
                if let Some(parsed) = recurrence_pattern(child)? {
                    pattern = Some(parsed);
                }
            }
        }
    }
    let pattern = pattern.ok_or("Recurrence without a known pattern")?;
    let (start_date, end) = range.ok_or("Recurrence without a known range")?;
    Ok(Recurrence {
        pattern,
        start_date,
        end,
    })
}

fn recurrence_pattern(element: &Element) -> Result<Option<Pattern>, String> {
    let interval = || -> Result<u32, String> { number(element, INTERVAL) };
    let pattern = match element.name.as_str() {
        DAILY_RECURRENCE => Pattern::Daily {
            interval: interval()?,
        },
        WEEKLY_RECURRENCE => Pattern::Weekly {
            interval: interval()?,
            days: required(element, DAYS_OF_WEEK)?
                .split_whitespace()
                .map(|day| weekday(day).ok_or_else(|| format!("invalid weekday {day:?}")))
                .collect::<Result<_, _>>()?,
            first_day_of_week: text(element, FIRST_DAY_OF_WEEK)
                .map(|day| weekday(day).ok_or_else(|| format!("invalid weekday {day:?}")))
                .transpose()?
                .unwrap_or(Weekday::Sun),
        },
        ABSOLUTE_MONTHLY_RECURRENCE => Pattern::AbsoluteMonthly {
            interval: interval()?,
            day_of_month: number(element, DAY_OF_MONTH)?,
        },
        RELATIVE_MONTHLY_RECURRENCE => Pattern::RelativeMonthly {
            interval: interval()?,
            days_of_week: day_selector(required(element, DAYS_OF_WEEK)?)?,
            index: week_index(required(element, DAY_OF_WEEK_INDEX)?)?,
        },
        ABSOLUTE_YEARLY_RECURRENCE => Pattern::AbsoluteYearly {
            month: month(required(element, MONTH)?)?,
            day_of_month: number(element, DAY_OF_MONTH)?,
        },
        RELATIVE_YEARLY_RECURRENCE => Pattern::RelativeYearly {
            month: month(required(element, MONTH)?)?,
            days_of_week: day_selector(required(element, DAYS_OF_WEEK)?)?,
            index: week_index(required(element, DAY_OF_WEEK_INDEX)?)?,
        },
        _ => return Ok(None),
    };
    Ok(Some(pattern))
}

fn recurrence_range(element: &Element) -> Result<(NaiveDate, RangeEnd), String> {
    let start = parse_date(required(element, START_DATE)?)?;
    let end = match element.name.as_str() {
        END_DATE_RECURRENCE => RangeEnd::EndDate {
            date: parse_date(required(element, END_DATE)?)?,
        },
        NUMBERED_RECURRENCE => RangeEnd::Numbered {
            count: number(element, NUMBER_OF_OCCURRENCES)?,
        },
        _ => RangeEnd::NoEnd,
    };
    Ok((start, end))
}

fn number(element: &Element, name: &str) -> Result<u32, String> {
    required(element, name)?
        .parse()
        .map_err(|_| format!("{name} is not a positive number"))
}

fn weekday(value: &str) -> Option<Weekday> {
    Some(match value {
        "Monday" => Weekday::Mon,
        "Tuesday" => Weekday::Tue,
        "Wednesday" => Weekday::Wed,
        "Thursday" => Weekday::Thu,
        "Friday" => Weekday::Fri,
        "Saturday" => Weekday::Sat,
        "Sunday" => Weekday::Sun,
        _ => return None,
    })
}

fn day_selector(value: &str) -> Result<DaySelector, String> {
    match value {
        "Day" => Ok(DaySelector::Day),
        "Weekday" => Ok(DaySelector::Weekdays),
        "WeekendDay" => Ok(DaySelector::WeekendDay),
        other => weekday(other)
            .map(DaySelector::Weekday)
            .ok_or_else(|| format!("invalid day selector {other:?}")),
    }
}

fn week_index(value: &str) -> Result<WeekIndex, String> {
    Ok(match value {
        "First" => WeekIndex::First,
        "Second" => WeekIndex::Second,
        "Third" => WeekIndex::Third,
        "Fourth" => WeekIndex::Fourth,
        "Last" => WeekIndex::Last,
        other => return Err(format!("invalid DayOfWeekIndex {other:?}")),
    })
}

fn month(value: &str) -> Result<u32, String> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    MONTHS
        .iter()
        .position(|name| *name == value)
        .map(|index| index as u32 + 1)
        .ok_or_else(|| format!("invalid month {value:?}"))
}
