//! Item shapes and the `t:CalendarItem` writer (children in types.xsd order).

use std::collections::HashSet;

use chrono::{DateTime, Utc, Weekday};

use crate::recurrence::{DaySelector, Pattern, RangeEnd, Recurrence, WeekIndex};
use crate::sim::model::{ItemSnapshot, OccurrenceInfo, PersonEntry, FOLDER_CHANGE_KEY};
use crate::sim::soap::{Element, Ns, XmlWriter, TIME_FORMAT};

/// The PSETID_Meeting property set GUID.
const PSETID_MEETING: &str = "6ED8DA90-450B-101B-98DA-00AA003F1305";
/// PidLidCleanGlobalObjectId's property id.
const CLEAN_GOID_ID: &str = "35";
/// PidLidGlobalObjectId's property id.
const GOID_ID: &str = "3";

/// What the request asked for: a base shape plus additional properties.
#[derive(Debug, Clone, Default)]
pub(super) struct Shape {
    all: bool,
    fields: HashSet<String>,
    clean_goid: bool,
    goid: bool,
}

/// Which operation writes the item (FindItem and SyncFolderItems cannot return lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// GetItem: everything.
    Get,
    /// FindItem/SyncFolderItems: no attendee lists, organizer name only, no recurrence blobs.
    List,
}

impl Shape {
    /// Parses `m:ItemShape`.
    pub(super) fn parse(item_shape: Option<&Element>) -> Self {
        let mut shape = Self::default();
        let Some(item_shape) = item_shape else {
            return shape;
        };
        if let Some(base) = item_shape.child(Ns::Types, "BaseShape") {
            shape.all = matches!(base.text.as_str(), "Default" | "AllProperties");
        }
        if let Some(additional) = item_shape.child(Ns::Types, "AdditionalProperties") {
            for property in &additional.children {
                match property.name.as_str() {
                    "FieldURI" => {
                        if let Some(uri) = property.attr("FieldURI") {
                            shape.fields.insert(uri.to_owned());
                        }
                    }
                    "ExtendedFieldURI" => {
                        let meeting_set = property
                            .attr("PropertySetId")
                            .is_some_and(|set| set.eq_ignore_ascii_case(PSETID_MEETING))
                            || property.attr("DistinguishedPropertySetId") == Some("Meeting");
                        match property.attr("PropertyId") {
                            Some(CLEAN_GOID_ID) | Some("0x23") if meeting_set => {
                                shape.clean_goid = true;
                            }
                            Some(GOID_ID) | Some("0x3") if meeting_set => shape.goid = true,
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        shape
    }

    fn wants(&self, field: &str) -> bool {
        self.all || self.fields.contains(field)
    }
}

fn time(value: DateTime<Utc>) -> String {
    value.format(TIME_FORMAT).to_string()
}

fn boolean(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// Writes one `t:CalendarItem` for a snapshot in the requested shape.
pub(super) fn write_calendar_item(
    writer: &mut XmlWriter,
    item: &ItemSnapshot,
    shape: &Shape,
    purpose: Purpose,
) {
    writer.open_t("CalendarItem", &[]);
    writer.empty_t(
        "ItemId",
        &[("Id", &item.item_id), ("ChangeKey", &item.change_key)],
    );
    if shape.wants("item:ParentFolderId") {
        writer.empty_t(
            "ParentFolderId",
            &[
                ("Id", &item.parent_folder_id),
                ("ChangeKey", FOLDER_CHANGE_KEY),
            ],
        );
    }
    if shape.wants("item:ItemClass") {
        writer.text_t("ItemClass", "IPM.Appointment");
    }
    if shape.wants("item:Subject") {
        writer.text_t("Subject", &item.subject);
    }
    if shape.wants("item:DateTimeCreated") {
        writer.text_t("DateTimeCreated", &time(item.created));
    }
    if shape.clean_goid {
        write_extended(writer, CLEAN_GOID_ID, &item.clean_global_object_id);
    }
    if shape.goid {
        write_extended(writer, GOID_ID, &item.global_object_id);
    }
    if shape.wants("item:LastModifiedTime") {
        writer.text_t("LastModifiedTime", &time(item.last_modified));
    }
    write_calendar_fields(writer, item, shape, purpose);
    writer.close();
}

fn write_extended(writer: &mut XmlWriter, property_id: &str, value: &str) {
    writer.open_t("ExtendedProperty", &[]);
    writer.empty_t(
        "ExtendedFieldURI",
        &[
            ("PropertySetId", PSETID_MEETING),
            ("PropertyId", property_id),
            ("PropertyType", "Binary"),
        ],
    );
    writer.text_t("Value", value);
    writer.close();
}

fn write_calendar_fields(
    writer: &mut XmlWriter,
    item: &ItemSnapshot,
    shape: &Shape,
    purpose: Purpose,
) {
    if shape.wants("calendar:UID") {
        writer.text_t("UID", &item.uid);
    }
    if let Some(original) = item.recurrence_id {
        if shape.wants("calendar:RecurrenceId") {
            writer.text_t("RecurrenceId", &time(original));
        }
    }
    if shape.wants("calendar:DateTimeStamp") {
        writer.text_t("DateTimeStamp", &time(item.last_modified));
    }
    if shape.wants("calendar:Start") {
        writer.text_t("Start", &time(item.start));
    }
    if shape.wants("calendar:End") {
        writer.text_t("End", &time(item.end));
    }
    if let Some(original) = item.recurrence_id {
        if shape.wants("calendar:OriginalStart") {
            writer.text_t("OriginalStart", &time(original));
        }
    }
    if shape.wants("calendar:IsAllDayEvent") {
        writer.text_t("IsAllDayEvent", boolean(item.is_all_day));
    }
    if shape.wants("calendar:LegacyFreeBusyStatus") {
        writer.text_t(
            "LegacyFreeBusyStatus",
            if item.is_cancelled { "Free" } else { "Busy" },
        );
    }
    if let Some(location) = &item.location {
        if shape.wants("calendar:Location") {
            writer.text_t("Location", location);
        }
    }
    if shape.wants("calendar:IsMeeting") {
        writer.text_t("IsMeeting", boolean(item.appointment_state & 1 != 0));
    }
    if shape.wants("calendar:IsCancelled") {
        writer.text_t("IsCancelled", boolean(item.is_cancelled));
    }
    if shape.wants("calendar:IsRecurring") {
        writer.text_t("IsRecurring", boolean(item.is_recurring));
    }
    if shape.wants("calendar:CalendarItemType") {
        writer.text_t("CalendarItemType", item.item_type.as_str());
    }
    if shape.wants("calendar:MyResponseType") {
        let response = if item.appointment_state & 2 != 0 {
            "Accept"
        } else {
            "Organizer"
        };
        writer.text_t("MyResponseType", response);
    }
    if shape.wants("calendar:Organizer") {
        writer.open_t("Organizer", &[]);
        write_mailbox(writer, &item.organizer, purpose == Purpose::Get);
        writer.close();
    }
    if purpose == Purpose::Get {
        write_attendees(writer, shape, "RequiredAttendees", &item.required_attendees);
        write_attendees(writer, shape, "OptionalAttendees", &[]);
        write_attendees(writer, shape, "Resources", &item.resources);
    }
    if shape.wants("calendar:AppointmentState") {
        writer.text_t("AppointmentState", &item.appointment_state.to_string());
    }
    if purpose == Purpose::Get {
        write_series_fields(writer, item, shape);
    }
    if shape.wants("calendar:StartTimeZone") {
        write_zone(writer, "StartTimeZone", item);
    }
    if shape.wants("calendar:EndTimeZone") {
        write_zone(writer, "EndTimeZone", item);
    }
}

fn write_zone(writer: &mut XmlWriter, name: &str, item: &ItemSnapshot) {
    writer.empty_t(
        name,
        &[
            ("Id", item.time_zone.windows_id),
            ("Name", item.time_zone.display_name),
        ],
    );
}

fn write_series_fields(writer: &mut XmlWriter, item: &ItemSnapshot, shape: &Shape) {
    if let Some(recurrence) = &item.recurrence {
        if shape.wants("calendar:Recurrence") {
            write_recurrence(writer, recurrence);
        }
    }
    if let Some(first) = &item.first_occurrence {
        if shape.wants("calendar:FirstOccurrence") {
            write_occurrence(writer, "FirstOccurrence", first);
        }
    }
    if let Some(last) = &item.last_occurrence {
        if shape.wants("calendar:LastOccurrence") {
            write_occurrence(writer, "LastOccurrence", last);
        }
    }
    if !item.modified_occurrences.is_empty() && shape.wants("calendar:ModifiedOccurrences") {
        writer.open_t("ModifiedOccurrences", &[]);
        for occurrence in &item.modified_occurrences {
            write_occurrence(writer, "Occurrence", occurrence);
        }
        writer.close();
    }
    if !item.deleted_occurrences.is_empty() && shape.wants("calendar:DeletedOccurrences") {
        writer.open_t("DeletedOccurrences", &[]);
        for start in &item.deleted_occurrences {
            writer.open_t("DeletedOccurrence", &[]);
            writer.text_t("Start", &time(*start));
            writer.close();
        }
        writer.close();
    }
}

fn write_occurrence(writer: &mut XmlWriter, name: &str, occurrence: &OccurrenceInfo) {
    writer.open_t(name, &[]);
    match &occurrence.change_key {
        Some(change_key) => writer.empty_t(
            "ItemId",
            &[("Id", &occurrence.item_id), ("ChangeKey", change_key)],
        ),
        None => writer.empty_t("ItemId", &[("Id", &occurrence.item_id)]),
    }
    writer.text_t("Start", &time(occurrence.start));
    writer.text_t("End", &time(occurrence.end));
    writer.text_t("OriginalStart", &time(occurrence.original_start));
    writer.close();
}

fn write_mailbox(writer: &mut XmlWriter, person: &PersonEntry, with_address: bool) {
    writer.open_t("Mailbox", &[]);
    writer.text_t("Name", &person.name);
    if with_address {
        writer.text_t("EmailAddress", &person.email);
        writer.text_t("RoutingType", "SMTP");
        writer.text_t("MailboxType", "Mailbox");
    }
    writer.close();
}

fn write_attendees(writer: &mut XmlWriter, shape: &Shape, name: &str, people: &[PersonEntry]) {
    if people.is_empty() || !shape.wants(&format!("calendar:{name}")) {
        return;
    }
    writer.open_t(name, &[]);
    for person in people {
        writer.open_t("Attendee", &[]);
        write_mailbox(writer, person, true);
        writer.text_t("ResponseType", person.response.as_str());
        writer.close();
    }
    writer.close();
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn selector_name(selector: DaySelector) -> &'static str {
    match selector {
        DaySelector::Weekday(day) => weekday_name(day),
        DaySelector::Day => "Day",
        DaySelector::Weekdays => "Weekday",
        DaySelector::WeekendDay => "WeekendDay",
    }
}

fn index_name(index: WeekIndex) -> &'static str {
    match index {
        WeekIndex::First => "First",
        WeekIndex::Second => "Second",
        WeekIndex::Third => "Third",
        WeekIndex::Fourth => "Fourth",
        WeekIndex::Last => "Last",
    }
}

fn month_name(month: u32) -> &'static str {
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
    MONTHS[(month.clamp(1, 12) - 1) as usize]
}

/// Writes `t:Recurrence`: the pattern element, then the range element.
fn write_recurrence(writer: &mut XmlWriter, recurrence: &Recurrence) {
    writer.open_t("Recurrence", &[]);
    match &recurrence.pattern {
        Pattern::RelativeYearly {
            month,
            days_of_week,
            index,
        } => {
            writer.open_t("RelativeYearlyRecurrence", &[]);
            writer.text_t("DaysOfWeek", selector_name(*days_of_week));
            writer.text_t("DayOfWeekIndex", index_name(*index));
            writer.text_t("Month", month_name(*month));
        }
        Pattern::AbsoluteYearly {
            month,
            day_of_month,
        } => {
            writer.open_t("AbsoluteYearlyRecurrence", &[]);
            writer.text_t("DayOfMonth", &day_of_month.to_string());
            writer.text_t("Month", month_name(*month));
        }
        Pattern::RelativeMonthly {
            interval,
            days_of_week,
            index,
        } => {
            writer.open_t("RelativeMonthlyRecurrence", &[]);
            writer.text_t("Interval", &interval.to_string());
            writer.text_t("DaysOfWeek", selector_name(*days_of_week));
            writer.text_t("DayOfWeekIndex", index_name(*index));
        }
        Pattern::AbsoluteMonthly {
            interval,
            day_of_month,
        } => {
            writer.open_t("AbsoluteMonthlyRecurrence", &[]);
            writer.text_t("Interval", &interval.to_string());
            writer.text_t("DayOfMonth", &day_of_month.to_string());
        }
        Pattern::Weekly {
            interval,
            days,
            first_day_of_week,
        } => {
            writer.open_t("WeeklyRecurrence", &[]);
            writer.text_t("Interval", &interval.to_string());
            let names: Vec<&str> = days.iter().map(|day| weekday_name(*day)).collect();
            writer.text_t("DaysOfWeek", &names.join(" "));
            writer.text_t("FirstDayOfWeek", weekday_name(*first_day_of_week));
        }
        Pattern::Daily { interval } => {
            writer.open_t("DailyRecurrence", &[]);
            writer.text_t("Interval", &interval.to_string());
        }
    }
    writer.close();
    let start = recurrence.start_date.format("%Y-%m-%d").to_string();
    match &recurrence.end {
        RangeEnd::NoEnd => {
            writer.open_t("NoEndRecurrence", &[]);
            writer.text_t("StartDate", &start);
        }
        RangeEnd::EndDate { date } => {
            writer.open_t("EndDateRecurrence", &[]);
            writer.text_t("StartDate", &start);
            writer.text_t("EndDate", &date.format("%Y-%m-%d").to_string());
        }
        RangeEnd::Numbered { count } => {
            writer.open_t("NumberedRecurrence", &[]);
            writer.text_t("StartDate", &start);
            writer.text_t("NumberOfOccurrences", &count.to_string());
        }
    }
    writer.close();
    writer.close();
}
