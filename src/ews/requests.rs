//! SOAP request bodies for every EWS operation the client uses.
//!
//! Each builder returns a complete envelope (XML declaration, `soap:Header` with the
//! server version and optional impersonation, `soap:Body` with the operation) as a
//! string. All values are escaped. The builders are public (but hidden from the docs)
//! so that the integration tests can validate each envelope against Exchange's schema.

use chrono::{DateTime, SecondsFormat, Utc};

use super::xml::names::{NS_AUTODISCOVER, NS_MESSAGES, NS_SOAP, NS_TYPES, NS_WS_ADDRESSING};
use super::xml::writer::XmlWriter;
use crate::domain::{ItemId, MailboxAddress, SubscriptionId, SyncState};

const SOAP_ENVELOPE: &str = "soap:Envelope";
const SOAP_HEADER: &str = "soap:Header";
const SOAP_BODY: &str = "soap:Body";
const T_REQUEST_SERVER_VERSION: &str = "t:RequestServerVersion";
const T_EXCHANGE_IMPERSONATION: &str = "t:ExchangeImpersonation";
const T_CONNECTING_SID: &str = "t:ConnectingSID";
const T_PRIMARY_SMTP_ADDRESS: &str = "t:PrimarySmtpAddress";

const M_SUBSCRIBE: &str = "m:Subscribe";
const M_STREAMING_SUBSCRIPTION_REQUEST: &str = "m:StreamingSubscriptionRequest";
const M_UNSUBSCRIBE: &str = "m:Unsubscribe";
const M_SUBSCRIPTION_ID: &str = "m:SubscriptionId";
const M_GET_STREAMING_EVENTS: &str = "m:GetStreamingEvents";
const M_SUBSCRIPTION_IDS: &str = "m:SubscriptionIds";
const M_CONNECTION_TIMEOUT: &str = "m:ConnectionTimeout";
const M_SYNC_FOLDER_ITEMS: &str = "m:SyncFolderItems";
const M_ITEM_SHAPE: &str = "m:ItemShape";
const M_SYNC_FOLDER_ID: &str = "m:SyncFolderId";
const M_SYNC_STATE: &str = "m:SyncState";
const M_MAX_CHANGES_RETURNED: &str = "m:MaxChangesReturned";
const M_SYNC_SCOPE: &str = "m:SyncScope";
const M_GET_ITEM: &str = "m:GetItem";
const M_ITEM_IDS: &str = "m:ItemIds";
const M_FIND_ITEM: &str = "m:FindItem";
const M_CALENDAR_VIEW: &str = "m:CalendarView";
const M_PARENT_FOLDER_IDS: &str = "m:ParentFolderIds";
const M_GET_FOLDER: &str = "m:GetFolder";
const M_FOLDER_SHAPE: &str = "m:FolderShape";
const M_FOLDER_IDS: &str = "m:FolderIds";

const M_RESOLVE_NAMES: &str = "m:ResolveNames";
const M_UNRESOLVED_ENTRY: &str = "m:UnresolvedEntry";
const M_GET_ROOM_LISTS: &str = "m:GetRoomLists";
const M_GET_ROOMS: &str = "m:GetRooms";
const M_ROOM_LIST: &str = "m:RoomList";

const M_CREATE_ITEM: &str = "m:CreateItem";
const M_ITEMS: &str = "m:Items";
const T_MESSAGE: &str = "t:Message";
const T_SUBJECT: &str = "t:Subject";
const T_BODY: &str = "t:Body";
const T_TO_RECIPIENTS: &str = "t:ToRecipients";
const T_FROM: &str = "t:From";
const M_SAVED_ITEM_FOLDER_ID: &str = "m:SavedItemFolderId";
const M_INDEXED_PAGE_ITEM_VIEW: &str = "m:IndexedPageItemView";
const M_RESTRICTION: &str = "m:Restriction";
const T_EXTENDED_PROPERTY: &str = "t:ExtendedProperty";
const T_VALUE: &str = "t:Value";
const T_IS_EQUAL_TO: &str = "t:IsEqualTo";
const T_FIELD_URI_OR_CONSTANT: &str = "t:FieldURIOrConstant";
const T_CONSTANT: &str = "t:Constant";

const T_FOLDER_IDS: &str = "t:FolderIds";
const T_DISTINGUISHED_FOLDER_ID: &str = "t:DistinguishedFolderId";
const T_MAILBOX: &str = "t:Mailbox";
const T_EMAIL_ADDRESS: &str = "t:EmailAddress";
const T_EVENT_TYPES: &str = "t:EventTypes";
const T_EVENT_TYPE: &str = "t:EventType";
const T_SUBSCRIPTION_ID: &str = "t:SubscriptionId";
const T_BASE_SHAPE: &str = "t:BaseShape";
const T_ADDITIONAL_PROPERTIES: &str = "t:AdditionalProperties";
const T_FIELD_URI: &str = "t:FieldURI";
const T_EXTENDED_FIELD_URI: &str = "t:ExtendedFieldURI";
const T_ITEM_ID: &str = "t:ItemId";

const ATTR_VERSION: &str = "Version";
const ATTR_ID: &str = "Id";
const ATTR_FIELD_URI: &str = "FieldURI";
const ATTR_TRAVERSAL: &str = "Traversal";

const A_REQUESTED_SERVER_VERSION: &str = "a:RequestedServerVersion";
const A_GET_USER_SETTINGS_REQUEST_MESSAGE: &str = "a:GetUserSettingsRequestMessage";
const A_REQUEST: &str = "a:Request";
const A_USERS: &str = "a:Users";
const A_USER: &str = "a:User";
const A_MAILBOX: &str = "a:Mailbox";
const A_REQUESTED_SETTINGS: &str = "a:RequestedSettings";
const A_SETTING: &str = "a:Setting";
const WSA_ACTION: &str = "wsa:Action";
const WSA_TO: &str = "wsa:To";

/// SOAP action of Autodiscover GetUserSettings (also its WS-Addressing action).
pub const GET_USER_SETTINGS_ACTION: &str =
    "http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings";
/// Autodiscover's RequestedServerVersion: the newest value every server knows.
const AUTODISCOVER_SERVER_VERSION: &str = "Exchange2013";
/// Settings asked of Autodiscover per mailbox.
const USER_SETTINGS: [&str; 3] = ["ExternalEwsUrl", "InternalEwsUrl", "GroupingInformation"];

const CALENDAR_FOLDER: &str = "calendar";
const SENT_ITEMS_FOLDER: &str = "sentitems";
const ID_ONLY: &str = "IdOnly";
const NORMAL_ITEMS: &str = "NormalItems";
const SHALLOW: &str = "Shallow";

/// Event types a calendar subscription asks for.
const SUBSCRIBED_EVENTS: [&str; 5] = [
    "CreatedEvent",
    "ModifiedEvent",
    "DeletedEvent",
    "MovedEvent",
    "CopiedEvent",
];

/// Properties SyncFolderItems returns per changed item.
const SYNC_FIELDS: [&str; 3] = [
    "item:LastModifiedTime",
    "calendar:UID",
    "calendar:CalendarItemType",
];

/// Properties a CalendarView returns per entry.
const VIEW_FIELDS: [&str; 9] = [
    "item:Subject",
    "item:LastModifiedTime",
    "calendar:Start",
    "calendar:End",
    "calendar:IsAllDayEvent",
    "calendar:CalendarItemType",
    "calendar:UID",
    "calendar:IsCancelled",
    "calendar:RecurrenceId",
];

/// Properties GetItem returns per calendar item.
const ITEM_FIELDS: [&str; 21] = [
    "item:Subject",
    "item:LastModifiedTime",
    "calendar:UID",
    "calendar:RecurrenceId",
    "calendar:Start",
    "calendar:End",
    "calendar:IsAllDayEvent",
    "calendar:Location",
    "calendar:IsCancelled",
    "calendar:IsRecurring",
    "calendar:CalendarItemType",
    "calendar:Organizer",
    "calendar:RequiredAttendees",
    "calendar:OptionalAttendees",
    "calendar:Resources",
    "calendar:AppointmentState",
    "calendar:StartTimeZone",
    "calendar:EndTimeZone",
    "calendar:Recurrence",
    "calendar:ModifiedOccurrences",
    "calendar:DeletedOccurrences",
];

/// PidLidCleanGlobalObjectId: PSETID_Meeting, id 0x23, binary.
const CLEAN_GLOBAL_OBJECT_ID_URI: [(&str, &str); 3] = [
    ("PropertySetId", "6ED8DA90-450B-101B-98DA-00AA003F1305"),
    ("PropertyId", "35"),
    ("PropertyType", "Binary"),
];

/// Properties of the calendar folder.
const FOLDER_FIELDS: [&str; 1] = ["folder:TotalCount"];

/// Who a request is for and how it identifies itself.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// `RequestServerVersion`, e.g. `Exchange2013_SP1`.
    pub server_version: &'a str,
    /// The mailbox the request acts on.
    pub mailbox: &'a MailboxAddress,
    /// Act as the mailbox (`ExchangeImpersonation`) instead of addressing it by
    /// delegate access (`DistinguishedFolderId/Mailbox`).
    pub impersonate: bool,
}

/// Subscribe: a streaming subscription on the calendar folder.
pub fn subscribe_streaming(context: &RequestContext<'_>) -> String {
    build(context, |writer| {
        writer
            .open(M_SUBSCRIBE, &[])
            .open(M_STREAMING_SUBSCRIPTION_REQUEST, &[])
            .open(T_FOLDER_IDS, &[]);
        calendar_folder(writer, context);
        writer.close(T_FOLDER_IDS).open(T_EVENT_TYPES, &[]);
        for event in SUBSCRIBED_EVENTS {
            writer.leaf(T_EVENT_TYPE, event);
        }
        writer
            .close(T_EVENT_TYPES)
            .close(M_STREAMING_SUBSCRIPTION_REQUEST)
            .close(M_SUBSCRIBE);
    })
}

/// Unsubscribe: ends one subscription.
pub fn unsubscribe(context: &RequestContext<'_>, id: &SubscriptionId) -> String {
    build(context, |writer| {
        writer
            .open(M_UNSUBSCRIBE, &[])
            .leaf(M_SUBSCRIPTION_ID, id.as_str())
            .close(M_UNSUBSCRIBE);
    })
}

/// GetStreamingEvents: one connection for up to 200 subscriptions.
pub fn get_streaming_events(
    context: &RequestContext<'_>,
    ids: &[SubscriptionId],
    connection_timeout_minutes: u8,
) -> String {
    build(context, |writer| {
        writer
            .open(M_GET_STREAMING_EVENTS, &[])
            .open(M_SUBSCRIPTION_IDS, &[]);
        for id in ids {
            writer.leaf(T_SUBSCRIPTION_ID, id.as_str());
        }
        writer
            .close(M_SUBSCRIPTION_IDS)
            .leaf(
                M_CONNECTION_TIMEOUT,
                &connection_timeout_minutes.to_string(),
            )
            .close(M_GET_STREAMING_EVENTS);
    })
}

/// SyncFolderItems: the next page of changes in the calendar since `state`.
pub fn sync_folder_items(
    context: &RequestContext<'_>,
    state: Option<&SyncState>,
    max_changes: u16,
) -> String {
    build(context, |writer| {
        writer.open(M_SYNC_FOLDER_ITEMS, &[]);
        item_shape(writer, &SYNC_FIELDS, false);
        writer.open(M_SYNC_FOLDER_ID, &[]);
        calendar_folder(writer, context);
        writer.close(M_SYNC_FOLDER_ID);
        if let Some(state) = state {
            writer.leaf(M_SYNC_STATE, state.as_str());
        }
        writer
            .leaf(M_MAX_CHANGES_RETURNED, &max_changes.to_string())
            .leaf(M_SYNC_SCOPE, NORMAL_ITEMS)
            .close(M_SYNC_FOLDER_ITEMS);
    })
}

/// GetItem: every field the sync uses, for a batch of items.
pub fn get_item(context: &RequestContext<'_>, ids: &[ItemId]) -> String {
    build(context, |writer| {
        writer.open(M_GET_ITEM, &[]);
        item_shape(writer, &ITEM_FIELDS, true);
        writer.open(M_ITEM_IDS, &[]);
        for id in ids {
            writer.empty(T_ITEM_ID, &[(ATTR_ID, id.as_str())]);
        }
        writer.close(M_ITEM_IDS).close(M_GET_ITEM);
    })
}

/// FindItem with a CalendarView: singles, occurrences and exceptions in a window.
pub fn find_calendar_view(
    context: &RequestContext<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max_entries: u32,
) -> String {
    let start = from.to_rfc3339_opts(SecondsFormat::Secs, true);
    let end = to.to_rfc3339_opts(SecondsFormat::Secs, true);
    let max_entries = max_entries.to_string();
    build(context, |writer| {
        writer.open(M_FIND_ITEM, &[(ATTR_TRAVERSAL, SHALLOW)]);
        item_shape(writer, &VIEW_FIELDS, false);
        writer
            .empty(
                M_CALENDAR_VIEW,
                &[
                    ("MaxEntriesReturned", &max_entries),
                    ("StartDate", &start),
                    ("EndDate", &end),
                ],
            )
            .open(M_PARENT_FOLDER_IDS, &[]);
        calendar_folder(writer, context);
        writer.close(M_PARENT_FOLDER_IDS).close(M_FIND_ITEM);
    })
}

/// GetFolder: the calendar folder's id and item count.
pub fn get_folder(context: &RequestContext<'_>) -> String {
    build(context, |writer| {
        writer
            .open(M_GET_FOLDER, &[])
            .open(M_FOLDER_SHAPE, &[])
            .leaf(T_BASE_SHAPE, ID_ONLY)
            .open(T_ADDITIONAL_PROPERTIES, &[]);
        for field in FOLDER_FIELDS {
            writer.empty(T_FIELD_URI, &[(ATTR_FIELD_URI, field)]);
        }
        writer
            .close(T_ADDITIONAL_PROPERTIES)
            .close(M_FOLDER_SHAPE)
            .open(M_FOLDER_IDS, &[]);
        calendar_folder(writer, context);
        writer.close(M_FOLDER_IDS).close(M_GET_FOLDER);
    })
}

/// ResolveNames: directory entries matching `entry` (an address, alias or name).
pub fn resolve_names(context: &RequestContext<'_>, entry: &str) -> String {
    build(context, |writer| {
        writer
            .open(
                M_RESOLVE_NAMES,
                &[
                    ("ReturnFullContactData", "false"),
                    ("SearchScope", "ActiveDirectory"),
                ],
            )
            .leaf(M_UNRESOLVED_ENTRY, entry)
            .close(M_RESOLVE_NAMES);
    })
}

/// The property set (a GUID of this service) of the named property that carries an
/// outgoing mail's [`OutgoingMail::tag`].
pub const TAG_PROPERTY_SET: &str = "5d3c8a4e-2f61-4b7a-9c0e-8b1f6d2a7e43";
/// The name of the property that carries an outgoing mail's [`OutgoingMail::tag`].
pub const TAG_PROPERTY_NAME: &str = "BookingSyncMessageId";

/// The `ExtendedFieldURI` attributes of the tag property.
const TAG_PROPERTY_URI: [(&str, &str); 3] = [
    ("PropertySetId", TAG_PROPERTY_SET),
    ("PropertyName", TAG_PROPERTY_NAME),
    ("PropertyType", "String"),
];

/// A mail to send: HTML body, one or more recipients, optionally a From address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The From address; none sends as the account the request acts as.
    pub from: Option<MailboxAddress>,
    /// The To recipients.
    pub to: Vec<MailboxAddress>,
    /// Subject line.
    pub subject: String,
    /// HTML body (Exchange derives the plain-text alternative for clients that want it).
    pub html_body: String,
    /// An identifying value for the mail. With one, the mail is sent with a copy kept
    /// in the sender's Sent Items that carries the value in a named property, so
    /// [`find_sent_message`] can later tell whether it went out; without one, no copy
    /// is kept.
    pub tag: Option<String>,
}

/// CreateItem: sends `mail`, with `MessageDisposition="SendAndSaveCopy"` into Sent
/// Items when it has a tag, `SendOnly` otherwise.
pub fn send_message(context: &RequestContext<'_>, mail: &OutgoingMail) -> String {
    build(context, |writer| {
        match &mail.tag {
            Some(_) => {
                writer
                    .open(M_CREATE_ITEM, &[("MessageDisposition", "SendAndSaveCopy")])
                    .open(M_SAVED_ITEM_FOLDER_ID, &[]);
                distinguished_folder(writer, context, SENT_ITEMS_FOLDER);
                writer.close(M_SAVED_ITEM_FOLDER_ID);
            }
            None => {
                writer.open(M_CREATE_ITEM, &[("MessageDisposition", "SendOnly")]);
            }
        }
        writer
            .open(M_ITEMS, &[])
            .open(T_MESSAGE, &[])
            .leaf(T_SUBJECT, &mail.subject)
            .open(T_BODY, &[("BodyType", "HTML")]);
        writer.text(&mail.html_body);
        writer.close(T_BODY);
        if let Some(tag) = &mail.tag {
            writer
                .open(T_EXTENDED_PROPERTY, &[])
                .empty(T_EXTENDED_FIELD_URI, &TAG_PROPERTY_URI)
                .leaf(T_VALUE, tag)
                .close(T_EXTENDED_PROPERTY);
        }
        writer.open(T_TO_RECIPIENTS, &[]);
        for recipient in &mail.to {
            writer
                .open(T_MAILBOX, &[])
                .leaf(T_EMAIL_ADDRESS, recipient.as_str())
                .close(T_MAILBOX);
        }
        writer.close(T_TO_RECIPIENTS);
        if let Some(from) = &mail.from {
            writer
                .open(T_FROM, &[])
                .open(T_MAILBOX, &[])
                .leaf(T_EMAIL_ADDRESS, from.as_str())
                .close(T_MAILBOX)
                .close(T_FROM);
        }
        writer.close(T_MESSAGE).close(M_ITEMS).close(M_CREATE_ITEM);
    })
}

/// FindItem in the mailbox's Sent Items: the message whose tag property is `tag`
/// (at most one id is asked for).
pub fn find_sent_message(context: &RequestContext<'_>, tag: &str) -> String {
    build(context, |writer| {
        writer
            .open(M_FIND_ITEM, &[(ATTR_TRAVERSAL, SHALLOW)])
            .open(M_ITEM_SHAPE, &[])
            .leaf(T_BASE_SHAPE, ID_ONLY)
            .close(M_ITEM_SHAPE)
            .empty(
                M_INDEXED_PAGE_ITEM_VIEW,
                &[
                    ("MaxEntriesReturned", "1"),
                    ("Offset", "0"),
                    ("BasePoint", "Beginning"),
                ],
            )
            .open(M_RESTRICTION, &[])
            .open(T_IS_EQUAL_TO, &[])
            .empty(T_EXTENDED_FIELD_URI, &TAG_PROPERTY_URI)
            .open(T_FIELD_URI_OR_CONSTANT, &[])
            .empty(T_CONSTANT, &[("Value", tag)])
            .close(T_FIELD_URI_OR_CONSTANT)
            .close(T_IS_EQUAL_TO)
            .close(M_RESTRICTION)
            .open(M_PARENT_FOLDER_IDS, &[]);
        distinguished_folder(writer, context, SENT_ITEMS_FOLDER);
        writer.close(M_PARENT_FOLDER_IDS).close(M_FIND_ITEM);
    })
}

/// GetRoomLists: the organisation's room lists.
pub fn get_room_lists(context: &RequestContext<'_>) -> String {
    build(context, |writer| {
        writer.empty(M_GET_ROOM_LISTS, &[]);
    })
}

/// GetRooms: the rooms of one room list.
pub fn get_rooms(context: &RequestContext<'_>, room_list: &MailboxAddress) -> String {
    build(context, |writer| {
        writer
            .open(M_GET_ROOMS, &[])
            .open(M_ROOM_LIST, &[])
            .leaf(T_EMAIL_ADDRESS, room_list.as_str())
            .close(M_ROOM_LIST)
            .close(M_GET_ROOMS);
    })
}

/// Autodiscover GetUserSettings: EWS URLs and grouping information of `mailboxes`.
pub fn get_user_settings(autodiscover_url: &str, mailboxes: &[MailboxAddress]) -> String {
    let mut writer = XmlWriter::new();
    writer
        .open(
            SOAP_ENVELOPE,
            &[
                ("xmlns:soap", NS_SOAP),
                ("xmlns:a", NS_AUTODISCOVER),
                ("xmlns:wsa", NS_WS_ADDRESSING),
            ],
        )
        .open(SOAP_HEADER, &[])
        .leaf(A_REQUESTED_SERVER_VERSION, AUTODISCOVER_SERVER_VERSION)
        .leaf(WSA_ACTION, GET_USER_SETTINGS_ACTION)
        .leaf(WSA_TO, autodiscover_url)
        .close(SOAP_HEADER)
        .open(SOAP_BODY, &[])
        .open(A_GET_USER_SETTINGS_REQUEST_MESSAGE, &[])
        .open(A_REQUEST, &[])
        .open(A_USERS, &[]);
    for mailbox in mailboxes {
        writer
            .open(A_USER, &[])
            .leaf(A_MAILBOX, mailbox.as_str())
            .close(A_USER);
    }
    writer.close(A_USERS).open(A_REQUESTED_SETTINGS, &[]);
    for setting in USER_SETTINGS {
        writer.leaf(A_SETTING, setting);
    }
    writer
        .close(A_REQUESTED_SETTINGS)
        .close(A_REQUEST)
        .close(A_GET_USER_SETTINGS_REQUEST_MESSAGE)
        .close(SOAP_BODY)
        .close(SOAP_ENVELOPE);
    writer.finish()
}

/// Wraps the operation written by `body` in a SOAP envelope with the EWS header.
fn build(context: &RequestContext<'_>, body: impl FnOnce(&mut XmlWriter)) -> String {
    let mut writer = XmlWriter::new();
    writer
        .open(
            SOAP_ENVELOPE,
            &[
                ("xmlns:soap", NS_SOAP),
                ("xmlns:m", NS_MESSAGES),
                ("xmlns:t", NS_TYPES),
            ],
        )
        .open(SOAP_HEADER, &[])
        .empty(
            T_REQUEST_SERVER_VERSION,
            &[(ATTR_VERSION, context.server_version)],
        );
    if context.impersonate {
        writer
            .open(T_EXCHANGE_IMPERSONATION, &[])
            .open(T_CONNECTING_SID, &[])
            .leaf(T_PRIMARY_SMTP_ADDRESS, context.mailbox.as_str())
            .close(T_CONNECTING_SID)
            .close(T_EXCHANGE_IMPERSONATION);
    }
    writer.close(SOAP_HEADER).open(SOAP_BODY, &[]);
    body(&mut writer);
    writer.close(SOAP_BODY).close(SOAP_ENVELOPE);
    writer.finish()
}

/// The calendar of the context's mailbox: implicit when impersonating, named otherwise.
fn calendar_folder(writer: &mut XmlWriter, context: &RequestContext<'_>) {
    distinguished_folder(writer, context, CALENDAR_FOLDER);
}

/// A distinguished folder of the context's mailbox: named by impersonation, or by
/// delegate access with the mailbox inside.
fn distinguished_folder(writer: &mut XmlWriter, context: &RequestContext<'_>, folder: &str) {
    if context.impersonate {
        writer.empty(T_DISTINGUISHED_FOLDER_ID, &[(ATTR_ID, folder)]);
    } else {
        writer
            .open(T_DISTINGUISHED_FOLDER_ID, &[(ATTR_ID, folder)])
            .open(T_MAILBOX, &[])
            .leaf(T_EMAIL_ADDRESS, context.mailbox.as_str())
            .close(T_MAILBOX)
            .close(T_DISTINGUISHED_FOLDER_ID);
    }
}

fn item_shape(writer: &mut XmlWriter, fields: &[&str], with_global_object_id: bool) {
    writer
        .open(M_ITEM_SHAPE, &[])
        .leaf(T_BASE_SHAPE, ID_ONLY)
        .open(T_ADDITIONAL_PROPERTIES, &[]);
    for field in fields {
        writer.empty(T_FIELD_URI, &[(ATTR_FIELD_URI, field)]);
    }
    if with_global_object_id {
        writer.empty(T_EXTENDED_FIELD_URI, &CLEAN_GLOBAL_OBJECT_ID_URI);
    }
    writer.close(T_ADDITIONAL_PROPERTIES).close(M_ITEM_SHAPE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(mailbox: &MailboxAddress) -> RequestContext<'_> {
        RequestContext {
            server_version: "Exchange2013_SP1",
            mailbox,
            impersonate: true,
        }
    }

    #[test]
    fn impersonation_names_the_mailbox_in_the_header() {
        let mailbox = MailboxAddress::new("room-4b@contoso.example");

        let request = get_folder(&context(&mailbox));

        assert!(request.contains(
            "<t:ConnectingSID><t:PrimarySmtpAddress>room-4b@contoso.example</t:PrimarySmtpAddress></t:ConnectingSID>"
        ));
        assert!(request.contains("<t:DistinguishedFolderId Id=\"calendar\"/>"));
    }

    #[test]
    fn sync_state_is_escaped_and_omitted_when_absent() {
        let mailbox = MailboxAddress::new("room@contoso.example");
        let state = SyncState::from("a<b&c");

        let with_state = sync_folder_items(&context(&mailbox), Some(&state), 512);
        let without_state = sync_folder_items(&context(&mailbox), None, 512);

        assert!(with_state.contains("<m:SyncState>a&lt;b&amp;c</m:SyncState>"));
        assert!(!without_state.contains("SyncState"));
    }

    #[test]
    fn change_keys_are_not_sent_so_the_latest_version_is_returned() {
        let mailbox = MailboxAddress::new("room@contoso.example");

        let request = get_item(&context(&mailbox), &[ItemId::from("AAA=")]);

        assert!(request.contains("<t:ItemId Id=\"AAA=\"/>"));
        assert!(!request.contains("ChangeKey"));
    }
}
