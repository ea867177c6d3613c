//! The only part of booking-sync that reads or writes XML.
//!
//! Responses enter as bytes and leave as `crate::domain` values or `ews` result types:
//! each document is read into a bounded element tree (`tree`), then walked by
//! (namespace, local name) so prefixes, child order and unknown elements do not
//! matter. SOAP faults and `ResponseClass="Error"` messages become
//! [`EwsError`](super::EwsError)s here. Requests are written with `writer`; streams are
//! framed into envelopes by `splitter`. Nothing in this module does I/O.

mod autodiscover;
mod calendar;
mod directory;
pub(crate) mod names;
pub(crate) mod splitter;
mod tree;
pub(crate) mod writer;

use std::time::Duration;

pub use self::autodiscover::parse_get_user_settings;
use self::calendar::parse_datetime;
pub use self::directory::{
    parse_create_item, parse_get_room_lists, parse_get_rooms, parse_resolve_names,
};
use self::names::*;
use self::tree::{parse_document, Element, Ns};
use super::error::{classify, codes, EwsError, ItemError};
use super::types::{
    CalendarView, ConnectionStatus, FolderInfo, Notification, StreamError, StreamMessage,
};
use crate::domain::{
    CalendarItem, EventKind, ItemId, MailboxEvent, SubscriptionId, SyncChange, SyncPage, SyncState,
};

/// Reads a Subscribe response: the new subscription's id.
pub fn parse_subscribe(body: &[u8]) -> Result<SubscriptionId, EwsError> {
    let message = single_message(body, SUBSCRIBE_RESPONSE, SUBSCRIBE_RESPONSE_MESSAGE)?;
    check_message(&message)?;
    required_text(&message, Ns::Messages, SUBSCRIPTION_ID).map(SubscriptionId)
}

/// Reads an Unsubscribe response; a subscription that is already gone counts as done.
pub fn parse_unsubscribe(body: &[u8]) -> Result<(), EwsError> {
    let message = single_message(body, UNSUBSCRIBE_RESPONSE, UNSUBSCRIBE_RESPONSE_MESSAGE)?;
    match check_message(&message) {
        Err(EwsError::SubscriptionGone { code }) if code == codes::SUBSCRIPTION_NOT_FOUND => Ok(()),
        other => other,
    }
}

/// Reads a SyncFolderItems response page.
pub fn parse_sync_folder_items(body: &[u8]) -> Result<SyncPage, EwsError> {
    let message = single_message(
        body,
        SYNC_FOLDER_ITEMS_RESPONSE,
        SYNC_FOLDER_ITEMS_RESPONSE_MESSAGE,
    )?;
    check_message(&message)?;
    let sync_state = required_text(&message, Ns::Messages, SYNC_STATE)?;
    let includes_last_item_in_range = parse_bool(&required_text(
        &message,
        Ns::Messages,
        INCLUDES_LAST_ITEM_IN_RANGE,
    )?)?;
    let mut changes = Vec::new();
    if let Some(list) = message.child(Ns::Messages, CHANGES) {
        for change in &list.children {
            if change.ns != Ns::Types {
                continue;
            }
            match change.name.as_str() {
                CREATE => changes.push(SyncChange::Create(changed_item(change)?)),
                UPDATE => changes.push(SyncChange::Update(changed_item(change)?)),
                DELETE => {
                    let id = change
                        .child(Ns::Types, ITEM_ID)
                        .and_then(|id| id.attribute(ATTR_ID))
                        .ok_or_else(|| malformed("Delete change without ItemId"))?;
                    changes.push(SyncChange::Delete(ItemId::from(id)));
                }
                _ => {}
            }
        }
    }
    Ok(SyncPage {
        sync_state: SyncState(sync_state),
        includes_last_item_in_range,
        changes,
    })
}

/// Reads a GetItem response: one result per requested id, in request order.
pub fn parse_get_item(body: &[u8]) -> Result<Vec<Result<CalendarItem, ItemError>>, EwsError> {
    let root = parse_envelope(body)?;
    let response = operation_response(&root, GET_ITEM_RESPONSE)?;
    let mut results = Vec::new();
    for message in response_messages(response, GET_ITEM_RESPONSE_MESSAGE)? {
        let result = match check_message(message) {
            Ok(()) => message
                .child(Ns::Messages, ITEMS)
                .and_then(|items| items.children.iter().find(|item| item.ns == Ns::Types))
                .ok_or_else(|| ItemError::Malformed("response message without an item".into()))
                .and_then(|item| calendar::calendar_item(item).map_err(ItemError::Malformed)),
            Err(err) if concerns_whole_request(&err) => return Err(err),
            Err(_) => Err(item_error(message)),
        };
        results.push(result);
    }
    Ok(results)
}

/// Whether a per-item error code really says the whole request must wait or stop,
/// rather than something about that one item.
fn concerns_whole_request(err: &EwsError) -> bool {
    matches!(
        err,
        EwsError::Throttled { .. }
            | EwsError::ConnectionLimit
            | EwsError::MailboxUnavailable { .. }
            | EwsError::MailboxNotFound
            | EwsError::Timeout
    )
}

fn item_error(message: &Element) -> ItemError {
    let code = message
        .child_text(Ns::Messages, RESPONSE_CODE)
        .unwrap_or_default();
    if code == codes::ITEM_NOT_FOUND {
        return ItemError::NotFound;
    }
    ItemError::Other {
        code: code.to_owned(),
        message: message
            .child_text(Ns::Messages, MESSAGE_TEXT)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Reads a FindItem response with a CalendarView.
pub fn parse_find_calendar_view(body: &[u8]) -> Result<CalendarView, EwsError> {
    let message = single_message(body, FIND_ITEM_RESPONSE, FIND_ITEM_RESPONSE_MESSAGE)?;
    check_message(&message)?;
    let root_folder = message
        .child(Ns::Messages, ROOT_FOLDER)
        .ok_or_else(|| malformed("FindItem response without RootFolder"))?;
    let includes_last_item_in_range = root_folder
        .attribute(INCLUDES_LAST_ITEM_IN_RANGE)
        .map(parse_bool)
        .transpose()?
        .unwrap_or(true);
    let total_items_in_view = root_folder
        .attribute(TOTAL_ITEMS_IN_VIEW)
        .map(|value| parse_number(value, TOTAL_ITEMS_IN_VIEW))
        .transpose()?;
    let mut items = Vec::new();
    if let Some(list) = root_folder.child(Ns::Types, ITEMS) {
        for item in list.children.iter().filter(|item| item.ns == Ns::Types) {
            items.push(calendar::view_item(item).map_err(EwsError::Malformed)?);
        }
    }
    Ok(CalendarView {
        items,
        includes_last_item_in_range,
        total_items_in_view,
    })
}

/// Reads a FindItem response over Sent Items: whether any message matched.
pub fn parse_find_sent_message(body: &[u8]) -> Result<bool, EwsError> {
    let message = single_message(body, FIND_ITEM_RESPONSE, FIND_ITEM_RESPONSE_MESSAGE)?;
    check_message(&message)?;
    let root_folder = message
        .child(Ns::Messages, ROOT_FOLDER)
        .ok_or_else(|| malformed("FindItem response without RootFolder"))?;
    let listed = root_folder
        .child(Ns::Types, ITEMS)
        .is_some_and(|list| list.children.iter().any(|item| item.ns == Ns::Types));
    let total = root_folder
        .attribute(TOTAL_ITEMS_IN_VIEW)
        .map(|value| parse_number(value, TOTAL_ITEMS_IN_VIEW))
        .transpose()?
        .unwrap_or(0);
    Ok(listed || total > 0)
}

/// Reads a GetFolder response for one folder.
pub fn parse_get_folder(body: &[u8]) -> Result<FolderInfo, EwsError> {
    let message = single_message(body, GET_FOLDER_RESPONSE, GET_FOLDER_RESPONSE_MESSAGE)?;
    check_message(&message)?;
    let folder = message
        .child(Ns::Messages, FOLDERS)
        .and_then(|folders| folders.children.iter().find(|f| f.ns == Ns::Types))
        .ok_or_else(|| malformed("GetFolder response without a folder"))?;
    let id = folder
        .child(Ns::Types, FOLDER_ID)
        .ok_or_else(|| malformed("folder without FolderId"))?;
    Ok(FolderInfo {
        folder_id: id
            .attribute(ATTR_ID)
            .ok_or_else(|| malformed("FolderId without Id"))?
            .to_owned(),
        change_key: id.attribute(ATTR_CHANGE_KEY).map(str::to_owned),
        total_count: folder
            .child_text(Ns::Types, TOTAL_COUNT)
            .map(|value| parse_number(value, TOTAL_COUNT))
            .transpose()?,
    })
}

/// Reads the SOAP fault of an HTTP 500 answer, if the body is one.
pub fn parse_fault(body: &[u8]) -> Option<EwsError> {
    let root = parse_envelope(body).ok()?;
    let fault = root.path(Ns::Soap, &[BODY, FAULT])?;
    Some(fault_error(fault))
}

/// Reads one envelope of a GetStreamingEvents stream.
pub fn parse_stream_envelope(envelope: &[u8]) -> Result<StreamMessage, EwsError> {
    let root = parse_envelope(envelope)?;
    let response = operation_response(&root, GET_STREAMING_EVENTS_RESPONSE)?;
    let mut result = StreamMessage::default();
    for message in response_messages(response, GET_STREAMING_EVENTS_RESPONSE_MESSAGE)? {
        if message.attribute(RESPONSE_CLASS) == Some(CLASS_ERROR) {
            result.error.get_or_insert_with(|| stream_error(message));
        }
        if let Some(list) = message.child(Ns::Messages, NOTIFICATIONS) {
            // The schema puts Notification in the types namespace; Microsoft's own
            // samples show it in the messages namespace. Accept both.
            let notifications = list.children.iter().filter(|child| {
                child.is(Ns::Types, NOTIFICATION) || child.is(Ns::Messages, NOTIFICATION)
            });
            for notification in notifications {
                result.notifications.push(parse_notification(notification)?);
            }
        }
        if let Some(status) = message.child_text(Ns::Messages, CONNECTION_STATUS) {
            result.connection_status = Some(match status {
                CONNECTION_OK => ConnectionStatus::Ok,
                CONNECTION_CLOSED => ConnectionStatus::Closed,
                other => return Err(malformed(&format!("unknown ConnectionStatus {other}"))),
            });
        }
    }
    Ok(result)
}

fn parse_envelope(body: &[u8]) -> Result<Element, EwsError> {
    let root = parse_document(body).map_err(|err| EwsError::Malformed(err.to_string()))?;
    if !root.is(Ns::Soap, ENVELOPE) {
        return Err(malformed("root element is not a SOAP envelope"));
    }
    Ok(root)
}

/// The operation's response element inside the body, or the error of a fault.
fn operation_response<'a>(root: &'a Element, name: &str) -> Result<&'a Element, EwsError> {
    let body = root
        .child(Ns::Soap, BODY)
        .ok_or_else(|| malformed("envelope without Body"))?;
    if let Some(fault) = body.child(Ns::Soap, FAULT) {
        return Err(fault_error(fault));
    }
    body.child(Ns::Messages, name)
        .ok_or_else(|| malformed(&format!("body without {name}")))
}

fn response_messages<'a>(
    response: &'a Element,
    message_name: &'a str,
) -> Result<impl Iterator<Item = &'a Element> + 'a, EwsError> {
    let messages = response
        .child(Ns::Messages, RESPONSE_MESSAGES)
        .ok_or_else(|| malformed("response without ResponseMessages"))?;
    Ok(messages.children_named(Ns::Messages, message_name))
}

/// Parses `body` and returns its first (for these operations: only) response message.
fn single_message(
    body: &[u8],
    response_name: &str,
    message_name: &str,
) -> Result<Element, EwsError> {
    let root = parse_envelope(body)?;
    // Surfaces a fault or a missing response element before taking the tree apart.
    operation_response(&root, response_name)?;
    root.take_child(Ns::Soap, BODY)
        .and_then(|body| body.take_child(Ns::Messages, response_name))
        .and_then(|response| response.take_child(Ns::Messages, RESPONSE_MESSAGES))
        .and_then(|messages| messages.take_child(Ns::Messages, message_name))
        .ok_or_else(|| malformed(&format!("response without {message_name}")))
}

/// `Ok` for Success and Warning messages, the classified error for Error messages.
fn check_message(message: &Element) -> Result<(), EwsError> {
    if message.attribute(RESPONSE_CLASS) != Some(CLASS_ERROR) {
        return Ok(());
    }
    let code = message
        .child_text(Ns::Messages, RESPONSE_CODE)
        .unwrap_or_default();
    let text = message
        .child_text(Ns::Messages, MESSAGE_TEXT)
        .unwrap_or_default();
    Err(classify(code, text, message_backoff(message)))
}

fn fault_error(fault: &Element) -> EwsError {
    // The fault's own children are unqualified, but a default SOAP namespace declared
    // on an ancestor puts them in the SOAP namespace; accept both.
    let part = |name: &str| {
        fault
            .child(Ns::None, name)
            .or_else(|| fault.child(Ns::Soap, name))
    };
    let detail = part(DETAIL);
    let code = detail
        .and_then(|detail| detail.child_text(Ns::Errors, RESPONSE_CODE))
        .map(str::to_owned)
        .or_else(|| {
            // A faultcode is a QName such as `a:ErrorServerBusy`; its local part is the code.
            part(FAULT_CODE).map(|code| {
                let code = code.text.trim();
                code.rsplit(':').next().unwrap_or(code).to_owned()
            })
        })
        .unwrap_or_default();
    let message = detail
        .and_then(|detail| detail.child_text(Ns::Errors, MESSAGE))
        .or_else(|| part(FAULT_STRING).map(|text| text.text.trim()))
        .unwrap_or_default();
    let backoff = detail.and_then(message_backoff);
    classify(&code, message, backoff)
}

/// BackOffMilliseconds from a `MessageXml` child (messages or types namespace).
fn message_backoff(parent: &Element) -> Option<Duration> {
    let xml = parent
        .child(Ns::Messages, MESSAGE_XML)
        .or_else(|| parent.child(Ns::Types, MESSAGE_XML))?;
    xml.children_named(Ns::Types, VALUE)
        .find(|value| value.attribute(NAME) == Some(BACK_OFF_MILLISECONDS))
        .and_then(|value| value.text.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

fn stream_error(message: &Element) -> StreamError {
    let subscription_ids = message
        .child(Ns::Messages, ERROR_SUBSCRIPTION_IDS)
        .map(|ids| {
            ids.children
                .iter()
                .filter(|id| id.name == SUBSCRIPTION_ID)
                .map(|id| SubscriptionId::from(id.text.trim()))
                .collect()
        })
        .unwrap_or_default();
    StreamError {
        code: message
            .child_text(Ns::Messages, RESPONSE_CODE)
            .unwrap_or_default()
            .to_owned(),
        message: message
            .child_text(Ns::Messages, MESSAGE_TEXT)
            .map(str::to_owned),
        subscription_ids,
        backoff: message_backoff(message),
    }
}

fn parse_notification(notification: &Element) -> Result<Notification, EwsError> {
    let subscription_id = required_text(notification, Ns::Types, SUBSCRIPTION_ID)?;
    let mut events = Vec::new();
    for event in notification.children.iter().filter(|e| e.ns == Ns::Types) {
        let kind = match event.name.as_str() {
            CREATED_EVENT => EventKind::Created,
            MODIFIED_EVENT => EventKind::Modified,
            DELETED_EVENT => EventKind::Deleted,
            MOVED_EVENT => EventKind::Moved,
            COPIED_EVENT => EventKind::Copied,
            NEW_MAIL_EVENT => EventKind::NewMail,
            FREE_BUSY_CHANGED_EVENT => EventKind::FreeBusyChanged,
            STATUS_EVENT => EventKind::Status,
            _ => continue,
        };
        events.push(parse_event(kind, event)?);
    }
    Ok(Notification {
        subscription_id: SubscriptionId(subscription_id),
        events,
    })
}

fn parse_event(kind: EventKind, event: &Element) -> Result<MailboxEvent, EwsError> {
    let id_of = |name: &str| {
        event
            .child(Ns::Types, name)
            .and_then(|id| id.attribute(ATTR_ID))
            .map(str::to_owned)
    };
    let timestamp = event
        .child_text(Ns::Types, TIME_STAMP)
        .map(parse_datetime)
        .transpose()
        .map_err(EwsError::Malformed)?;
    Ok(MailboxEvent {
        kind,
        timestamp,
        item_id: id_of(ITEM_ID).map(ItemId),
        folder_id: id_of(FOLDER_ID),
        parent_folder_id: id_of(PARENT_FOLDER_ID),
        old_item_id: id_of(OLD_ITEM_ID).map(ItemId),
        old_parent_folder_id: id_of(OLD_PARENT_FOLDER_ID),
        watermark: event.child_text(Ns::Types, WATERMARK).map(str::to_owned),
    })
}

fn changed_item(change: &Element) -> Result<crate::domain::ItemSummary, EwsError> {
    let item = change
        .children
        .iter()
        .find(|item| item.ns == Ns::Types)
        .ok_or_else(|| malformed("change without an item"))?;
    calendar::item_summary(item).map_err(EwsError::Malformed)
}

fn required_text(element: &Element, ns: Ns, name: &str) -> Result<String, EwsError> {
    element
        .child_text(ns, name)
        .map(str::to_owned)
        .ok_or_else(|| malformed(&format!("{} without {name}", element.name)))
}

fn parse_bool(value: &str) -> Result<bool, EwsError> {
    calendar::parse_bool(value).map_err(EwsError::Malformed)
}

fn parse_number(value: &str, what: &str) -> Result<u32, EwsError> {
    value
        .trim()
        .parse()
        .map_err(|_| malformed(&format!("{what} is not a number")))
}

fn malformed(reason: &str) -> EwsError {
    EwsError::Malformed(reason.to_owned())
}

#[cfg(test)]
mod tests;
