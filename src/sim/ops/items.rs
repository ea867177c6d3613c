//! GetItem and FindItem (with CalendarView).

use std::sync::Arc;

use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use crate::domain::CalendarItemType;
use crate::sim::model::{FolderKind, ItemSnapshot, LookupError};
use crate::sim::soap::{self, Element, MessageOutcome, Ns, XmlWriter};
use crate::sim::{RequestContext, SimState};

use super::calendar_xml::{write_calendar_item, Purpose, Shape};
use super::{folder_refs, resolve_folder, schema_fault};

/// Longest CalendarView span Exchange accepts.
const MAX_VIEW_DAYS: i64 = 2 * 365 + 1;

fn lookup_outcome(error: LookupError) -> MessageOutcome {
    match error {
        LookupError::Malformed => {
            MessageOutcome::error("ErrorInvalidIdMalformed", "Id is malformed.")
        }
        LookupError::NotFound => MessageOutcome::error(
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        ),
    }
}

/// Turns a snapshot into the version a lagging replica would still hold.
fn age(snapshot: &mut ItemSnapshot) {
    snapshot.last_modified -= Duration::seconds(1);
    snapshot.change_key = format!("{}-stale", snapshot.change_key);
    snapshot.subject = format!("{} (stale replica)", snapshot.subject);
}

/// GetItem: one response message per requested id, in order.
pub(super) fn get_item(state: &Arc<SimState>, operation: &Element) -> Response {
    let shape = Shape::parse(operation.child(Ns::Messages, "ItemShape"));
    let Some(ids) = operation.child(Ns::Messages, "ItemIds") else {
        return schema_fault("GetItem needs ItemIds.");
    };
    if ids.children.is_empty() {
        return schema_fault("ItemIds needs at least one id.");
    }
    let mut writer = XmlWriter::envelope(false);
    writer.open_response("GetItemResponse");
    writer.open_m("ResponseMessages", &[]);
    let model = state.model();
    for id in &ids.children {
        let result = match id.name.as_str() {
            "ItemId" => model.lookup(id.attr("Id").unwrap_or_default()),
            "OccurrenceItemId" => {
                let master = id.attr("RecurringMasterId").unwrap_or_default();
                match id
                    .attr("InstanceIndex")
                    .and_then(|i| i.parse::<usize>().ok())
                {
                    Some(index) => model
                        .occurrence_by_index(master, index)
                        .and_then(|occurrence| model.lookup(&occurrence)),
                    None => Err(LookupError::Malformed),
                }
            }
            "RecurringMasterItemId" => model
                .master_of(id.attr("OccurrenceId").unwrap_or_default())
                .and_then(|master| model.lookup(&master)),
            _ => Err(LookupError::Malformed),
        };
        match result {
            Ok((_, mut snapshot)) => {
                // Items with a version of their own lag: singles, masters and
                // exceptions (whose master lists their change key). A plain
                // occurrence is its master's version, so it has nothing older to show.
                let exception = snapshot.item_type == CalendarItemType::Exception;
                let versioned = snapshot.recurrence_id.is_none() || exception;
                if versioned && state.faults.stale_read(exception) {
                    age(&mut snapshot);
                    state.stats.count_stale_read(exception);
                }
                writer.open_message("GetItemResponseMessage", &MessageOutcome::Success);
                writer.open_m("Items", &[]);
                write_calendar_item(&mut writer, &snapshot, &shape, Purpose::Get);
                writer.close();
            }
            Err(error) => {
                writer.open_message("GetItemResponseMessage", &lookup_outcome(error));
                writer.empty_m("Items", &[]);
            }
        }
        writer.close();
    }
    drop(model);
    soap::xml_response(writer.finish())
}

/// Parses an xs:dateTime with or without an offset (without: UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|naive| naive.and_utc())
        })
}

fn find_response(writer: &mut XmlWriter, outcome: &MessageOutcome) {
    writer.open_response("FindItemResponse");
    writer.open_m("ResponseMessages", &[]);
    writer.open_message("FindItemResponseMessage", outcome);
}

/// What FindItem found: the items to write, the count in view, and whether all fit.
struct Found {
    items: Vec<ItemSnapshot>,
    total: usize,
    complete: bool,
}

/// FindItem over the calendar, with CalendarView expansion or as a plain item list.
pub(super) fn find_item(
    state: &Arc<SimState>,
    context: &RequestContext,
    operation: &Element,
) -> Response {
    let shape = Shape::parse(operation.child(Ns::Messages, "ItemShape"));
    let folders = operation
        .child(Ns::Messages, "ParentFolderIds")
        .map(folder_refs)
        .unwrap_or_default();
    let Some(folder) = folders.first() else {
        return schema_fault("FindItem needs ParentFolderIds.");
    };
    let mut writer = XmlWriter::envelope(false);
    let found = resolve_folder(state, context, folder)
        .map_err(|err| FindError::Message(err.outcome()))
        .and_then(|resolved| {
            let calendar = (resolved.kind == FolderKind::Calendar).then_some(resolved.mailbox);
            match operation.child(Ns::Messages, "CalendarView") {
                Some(view) => calendar_view(state, calendar, view),
                None => Ok(item_list(state, calendar)),
            }
        });
    let found = match found {
        Ok(found) => found,
        Err(FindError::Fault(response)) => return *response,
        Err(FindError::Message(outcome)) => {
            find_response(&mut writer, &outcome);
            return soap::xml_response(writer.finish());
        }
    };
    find_response(&mut writer, &MessageOutcome::Success);
    let total_text = found.total.to_string();
    let complete = if found.complete { "true" } else { "false" };
    writer.open_m(
        "RootFolder",
        &[
            ("IncludesLastItemInRange", complete),
            ("TotalItemsInView", &total_text),
        ],
    );
    writer.open_t("Items", &[]);
    for item in &found.items {
        write_calendar_item(&mut writer, item, &shape, Purpose::List);
    }
    soap::xml_response(writer.finish())
}

/// Why FindItem fails: a whole-request fault or an Error message.
enum FindError {
    Fault(Box<Response>),
    Message(MessageOutcome),
}

impl FindError {
    fn schema(reason: &str) -> Self {
        Self::Fault(Box::new(schema_fault(reason)))
    }
}

/// Singles and masters of a calendar (`None`: not a calendar, so nothing).
fn item_list(state: &SimState, calendar: Option<u32>) -> Found {
    let items = calendar.map_or_else(Vec::new, |mailbox| state.model().calendar_items(mailbox));
    Found {
        total: items.len(),
        items,
        complete: true,
    }
}

/// A CalendarView: validated window, expanded instances, truncation.
fn calendar_view(
    state: &SimState,
    calendar: Option<u32>,
    view: &Element,
) -> Result<Found, FindError> {
    let (Some(from), Some(to)) = (
        view.attr("StartDate").and_then(parse_time),
        view.attr("EndDate").and_then(parse_time),
    ) else {
        return Err(FindError::schema(
            "CalendarView needs StartDate and EndDate.",
        ));
    };
    let max = match view.attr("MaxEntriesReturned") {
        Some(text) => match text.parse::<usize>() {
            Ok(max) if max > 0 => Some(max),
            _ => {
                return Err(FindError::schema(
                    "MaxEntriesReturned must be a positive integer.",
                ))
            }
        },
        None => None,
    };
    if to < from {
        return Err(FindError::Message(MessageOutcome::error(
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "EndDate is earlier than StartDate",
        )));
    }
    if to - from > Duration::days(MAX_VIEW_DAYS) {
        return Err(FindError::Message(MessageOutcome::error(
            "ErrorCalendarViewRangeTooBig",
            "The time window specified is larger than the maximum allowed, which is two years.",
        )));
    }
    let mut items = calendar.map_or_else(Vec::new, |mailbox| {
        state.model().calendar_view(mailbox, from, to)
    });
    let total = items.len();
    let complete = match max {
        Some(max) => total <= max,
        None => true,
    };
    if let Some(max) = max {
        items.truncate(max);
    }
    Ok(Found {
        items,
        total,
        complete,
    })
}
