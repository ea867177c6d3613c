//! Directory operations of the simulator: ResolveNames, GetRoomLists, GetRooms,
//! CreateItem of a message with `MessageDisposition="SendOnly"` or `"SendAndSaveCopy"`
//! (sending a mail, optionally keeping a copy in Sent Items), and FindItem over Sent
//! Items by a named extended property.
//!
//! It reads the few request fields these operations need straight from the SOAP body
//! and writes the body element of each response (`m:<Op>Response`); the dispatcher
//! wraps it in an envelope. The directory itself (who exists, under which aliases, which
//! mailboxes are rooms) comes from the simulator's model through [`DirectoryEntry`];
//! sent mail is kept in a [`SentLog`] that the control API exposes; a copy saved to
//! Sent Items is a sent message marked with the mailbox that keeps it. It does not
//! deliver mail to anyone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::MailboxAddress;
use crate::sim::soap::{self, Element, Ns, SoapRequest, NS_MESSAGES, NS_SOAP, NS_TYPES};
use crate::sim::{MailboxKind, Operation, RequestContext, SimControl, SimState};
use crate::sync::lock;

/// The single room list the simulator publishes.
pub const ROOM_LIST_NAME: &str = "All Rooms";
/// The local part of the single room list's address (the domain is the simulator's).
pub const ROOM_LIST_LOCAL_PART: &str = "allrooms";

const SMTP_PREFIX: &str = "smtp:";

/// A mailbox as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The primary SMTP address.
    pub address: MailboxAddress,
    /// The display name.
    pub name: String,
    /// Secondary SMTP addresses (proxy addresses) of the same mailbox.
    pub aliases: Vec<MailboxAddress>,
    /// Whether the mailbox is a room.
    pub is_room: bool,
}

/// A mail the simulator accepted for sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    /// The mailbox that sent it (the impersonated one, or the From address).
    pub from: Option<String>,
    /// The To recipients.
    pub to: Vec<String>,
    /// The subject.
    pub subject: String,
    /// The body text as sent.
    pub body: String,
    /// When the simulator accepted it.
    pub sent_at: DateTime<Utc>,
    /// The mailbox whose Sent Items keep a copy (`SendAndSaveCopy`), if any.
    pub saved_in: Option<String>,
    /// String extended properties of the message, keyed by
    /// `{PropertySetId}/{PropertyName}` (the set id in lower case).
    pub extended_properties: BTreeMap<String, String>,
}

/// The key of a named property in [`SentMessage::extended_properties`].
fn property_key(uri: &Element) -> Option<String> {
    Some(format!(
        "{}/{}",
        uri.attr("PropertySetId")?.to_ascii_lowercase(),
        uri.attr("PropertyName")?
    ))
}

/// The log of sent mail, newest last.
#[derive(Debug, Default)]
pub struct SentLog {
    messages: Mutex<Vec<SentMessage>>,
}

impl SentLog {
    /// Appends a sent message.
    pub fn record(&self, message: SentMessage) {
        lock(&self.messages).push(message);
    }

    /// A copy of every sent message.
    pub fn all(&self) -> Vec<SentMessage> {
        lock(&self.messages).clone()
    }

    /// The copies in `mailbox`'s Sent Items whose property `key` is `value`.
    pub fn saved_matching(&self, mailbox: &str, key: &str, value: &str) -> Vec<usize> {
        lock(&self.messages)
            .iter()
            .enumerate()
            .filter(|(_, message)| {
                message
                    .saved_in
                    .as_deref()
                    .is_some_and(|saved| saved.eq_ignore_ascii_case(mailbox))
                    && message.extended_properties.get(key).map(String::as_str) == Some(value)
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// How many messages were sent.
    pub fn len(&self) -> usize {
        lock(&self.messages).len()
    }

    /// Whether nothing was sent yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a directory request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A required element is missing.
    #[error("request lacks element {0}")]
    Missing(&'static str),
    /// CreateItem with something other than a message sent with SendOnly or
    /// SendAndSaveCopy (into Sent Items).
    #[error(
        "only CreateItem of a message with MessageDisposition SendOnly, or SendAndSaveCopy \
         into sentitems, is supported"
    )]
    UnsupportedCreateItem,
    /// FindItem over Sent Items without an IsEqualTo restriction on a named property.
    #[error(
        "FindItem in sentitems supports only an IsEqualTo restriction on a named extended \
         property"
    )]
    UnsupportedFind,
}

/// Answers a ResolveNames request: the primary address for a primary or secondary
/// address, or a unique display-name prefix.
///
/// # Errors
///
/// [`DirectoryError`] when the request has no `UnresolvedEntry`.
pub fn resolve_names(
    operation: &Element,
    directory: &[DirectoryEntry],
) -> Result<String, DirectoryError> {
    let entry = operation
        .child_mt("UnresolvedEntry")
        .map(|entry| entry.text.clone())
        .ok_or(DirectoryError::Missing("UnresolvedEntry"))?;
    let matches = find_matches(&entry, directory);
    let message = match matches.as_slice() {
        [] => error_message(
            "ResolveNamesResponseMessage",
            "ErrorNameResolutionNoResults",
            "No results were found.",
        ),
        [single] => format!(
            "<m:ResolveNamesResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>{}</m:ResolveNamesResponseMessage>",
            resolution_set(&[single])
        ),
        several => format!(
            "<m:ResolveNamesResponseMessage ResponseClass=\"Warning\"><m:MessageText>Multiple results were found.</m:MessageText>\
             <m:ResponseCode>ErrorNameResolutionMultipleResults</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{}</m:ResolveNamesResponseMessage>",
            resolution_set(several)
        ),
    };
    Ok(format!(
        "<m:ResolveNamesResponse xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:ResponseMessages>{message}</m:ResponseMessages></m:ResolveNamesResponse>"
    ))
}

/// Answers GetRoomLists: the one list "All Rooms" with address `list_address`.
pub fn get_room_lists(list_address: &str) -> String {
    let list_address = escape(list_address);
    format!(
        "<m:GetRoomListsResponse ResponseClass=\"Success\" xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\">\
         <m:ResponseCode>NoError</m:ResponseCode><m:RoomLists><t:Address><t:Name>{ROOM_LIST_NAME}</t:Name>\
         <t:EmailAddress>{list_address}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType>\
         <t:MailboxType>PublicDL</t:MailboxType></t:Address></m:RoomLists></m:GetRoomListsResponse>"
    )
}

/// Answers GetRooms: every room for the "All Rooms" list, ErrorNameResolutionNoResults
/// for any other list.
///
/// # Errors
///
/// [`DirectoryError`] when the request names no room list.
pub fn get_rooms(
    operation: &Element,
    directory: &[DirectoryEntry],
    list_address: &str,
) -> Result<String, DirectoryError> {
    let list = operation
        .child_mt("RoomList")
        .and_then(|list| list.child(Ns::Types, "EmailAddress"))
        .map(|address| address.text.clone())
        .ok_or(DirectoryError::Missing("RoomList"))?;
    if !list.eq_ignore_ascii_case(list_address) {
        let message = error_message(
            "GetRoomsResponse",
            "ErrorNameResolutionNoResults",
            "No results were found.",
        );
        return Ok(message.replacen(
            "<m:GetRoomsResponse ",
            &format!("<m:GetRoomsResponse xmlns:m=\"{NS_MESSAGES}\" "),
            1,
        ));
    }
    let rooms: String = directory
        .iter()
        .filter(|entry| entry.is_room)
        .map(|entry| format!("<t:Room><t:Id>{}</t:Id></t:Room>", mailbox_xml(entry)))
        .collect();
    Ok(format!(
        "<m:GetRoomsResponse ResponseClass=\"Success\" xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\">\
         <m:ResponseCode>NoError</m:ResponseCode><m:Rooms>{rooms}</m:Rooms></m:GetRoomsResponse>"
    ))
}

/// Reads a CreateItem request that sends a message (`MessageDisposition="SendOnly"`,
/// or `"SendAndSaveCopy"` with a copy kept in Sent Items).
///
/// `sender` is the mailbox the request acts as; a `t:From` in the message wins. The
/// copy is kept by the mailbox named in `SavedItemFolderId` (the sender when none is).
///
/// # Errors
///
/// [`DirectoryError::UnsupportedCreateItem`] for anything else.
pub fn parse_send_only(
    operation: &Element,
    sender: Option<&MailboxAddress>,
    now: DateTime<Utc>,
) -> Result<SentMessage, DirectoryError> {
    let message = operation
        .child_mt("Items")
        .and_then(|items| items.child(Ns::Types, "Message"));
    let Some(message) = message else {
        return Err(DirectoryError::UnsupportedCreateItem);
    };
    let saved_in = match operation.attr("MessageDisposition") {
        Some("SendOnly") => None,
        Some("SendAndSaveCopy") => {
            let folder = operation
                .child_mt("SavedItemFolderId")
                .and_then(|folder| folder.child(Ns::Types, "DistinguishedFolderId"));
            match folder {
                None => sender.map(ToString::to_string),
                Some(folder) if folder.attr("Id") == Some("sentitems") => folder
                    .child(Ns::Types, "Mailbox")
                    .and_then(|mailbox| mailbox.child(Ns::Types, "EmailAddress"))
                    .map(|address| address.text.clone())
                    .or_else(|| sender.map(ToString::to_string)),
                Some(_) => return Err(DirectoryError::UnsupportedCreateItem),
            }
        }
        _ => return Err(DirectoryError::UnsupportedCreateItem),
    };
    let addresses = |name: &str| -> Vec<String> {
        message
            .child(Ns::Types, name)
            .map(|list| {
                list.children_named(Ns::Types, "Mailbox")
                    .filter_map(|mailbox| mailbox.child(Ns::Types, "EmailAddress"))
                    .map(|address| address.text.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |name: &str| {
        message
            .child(Ns::Types, name)
            .map(|element| element.text.clone())
            .unwrap_or_default()
    };
    let extended_properties = message
        .children_named(Ns::Types, "ExtendedProperty")
        .filter_map(|property| {
            let key = property_key(property.child(Ns::Types, "ExtendedFieldURI")?)?;
            Some((key, property.child(Ns::Types, "Value")?.text.clone()))
        })
        .collect();
    let from = addresses("From").into_iter().next();
    Ok(SentMessage {
        from: from.or_else(|| sender.map(ToString::to_string)),
        to: addresses("ToRecipients"),
        subject: text("Subject"),
        body: text("Body"),
        sent_at: now,
        saved_in,
        extended_properties,
    })
}

/// Whether a FindItem request looks in Sent Items (which this module answers).
pub fn is_sent_items_search(operation: &Element) -> bool {
    operation
        .child_mt("ParentFolderIds")
        .and_then(|folders| folders.child(Ns::Types, "DistinguishedFolderId"))
        .is_some_and(|folder| folder.attr("Id") == Some("sentitems"))
}

/// Answers FindItem over a mailbox's Sent Items with an `IsEqualTo` restriction on a
/// named extended property: the ids of the matching copies (as many as the indexed
/// view allows). `sender` is the mailbox the request acts as; a mailbox in the folder
/// id wins.
///
/// # Errors
///
/// [`DirectoryError::UnsupportedFind`] for any other restriction.
pub fn find_sent(
    operation: &Element,
    sender: Option<&MailboxAddress>,
    sent: &SentLog,
) -> Result<String, DirectoryError> {
    let mailbox = operation
        .child_mt("ParentFolderIds")
        .and_then(|folders| folders.child(Ns::Types, "DistinguishedFolderId"))
        .and_then(|folder| folder.child(Ns::Types, "Mailbox"))
        .and_then(|mailbox| mailbox.child(Ns::Types, "EmailAddress"))
        .map(|address| address.text.clone())
        .or_else(|| sender.map(ToString::to_string))
        .unwrap_or_default();
    let equal = operation
        .child_mt("Restriction")
        .and_then(|restriction| restriction.child(Ns::Types, "IsEqualTo"))
        .ok_or(DirectoryError::UnsupportedFind)?;
    let key = equal
        .child(Ns::Types, "ExtendedFieldURI")
        .and_then(property_key)
        .ok_or(DirectoryError::UnsupportedFind)?;
    let value = equal
        .child(Ns::Types, "FieldURIOrConstant")
        .and_then(|constant| constant.child(Ns::Types, "Constant"))
        .and_then(|constant| constant.attr("Value"))
        .ok_or(DirectoryError::UnsupportedFind)?;
    let limit = operation
        .child_mt("IndexedPageItemView")
        .and_then(|view| view.attr("MaxEntriesReturned"))
        .and_then(|max| max.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let found = sent.saved_matching(&mailbox, &key, value);
    let shown = found.len().min(limit);
    let items: String = found
        .iter()
        .take(shown)
        .map(|index| {
            format!("<t:Message><t:ItemId Id=\"sent-{index}\" ChangeKey=\"CQAAAA==\"/></t:Message>")
        })
        .collect();
    let last = if shown == found.len() {
        "true"
    } else {
        "false"
    };
    Ok(format!(
        "<m:FindItemResponse xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:ResponseMessages>\
         <m:FindItemResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>\
         <m:RootFolder IndexedPagingOffset=\"{shown}\" TotalItemsInView=\"{}\" IncludesLastItemInRange=\"{last}\">\
         <t:Items>{items}</t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>",
        found.len()
    ))
}

/// Answers a FindItem over Sent Items ([`find_sent`]), wrapped in an envelope.
pub(crate) fn answer_find_sent(
    state: &SimState,
    context: &RequestContext,
    operation: &Element,
) -> Response {
    match find_sent(operation, context.mailbox.as_ref(), &state.sent) {
        Ok(body) => soap::xml_response(wrap(&body)),
        Err(err) => soap::fault_response("ErrorSchemaValidation", &err.to_string(), None),
    }
}

/// Answers ConvertId: the simulator's ids have no other formats, so every id gets
/// ErrorInvalidIdMalformed. Clients (exchangelib) use ConvertId to learn the server
/// version from the response header.
pub fn convert_id(operation: &Element) -> String {
    let count = operation
        .child_mt("SourceIds")
        .map_or(0, |ids| ids.children.len())
        .max(1);
    let messages: String = (0..count)
        .map(|_| {
            error_message(
                "ConvertIdResponseMessage",
                "ErrorInvalidIdMalformed",
                "Id is malformed.",
            )
        })
        .collect();
    format!(
        "<m:ConvertIdResponse xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:ResponseMessages>{messages}</m:ResponseMessages></m:ConvertIdResponse>"
    )
}

/// The CreateItem response for a sent message (no item is saved, so `m:Items` is empty).
pub fn send_only_response() -> String {
    format!(
        "<m:CreateItemResponse xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:ResponseMessages>\
         <m:CreateItemResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode><m:Items/>\
         </m:CreateItemResponseMessage></m:ResponseMessages></m:CreateItemResponse>"
    )
}

/// The CreateItem error response for anything the simulator does not create.
pub fn create_item_error() -> String {
    format!(
        "<m:CreateItemResponse xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:ResponseMessages>{}</m:ResponseMessages></m:CreateItemResponse>",
        error_message(
            "CreateItemResponseMessage",
            "ErrorInvalidOperation",
            "Only sending a message with MessageDisposition SendOnly or SendAndSaveCopy is supported.",
        )
        .replace("</m:CreateItemResponseMessage>", "<m:Items/></m:CreateItemResponseMessage>")
    )
}

/// Registers ResolveNames, GetRoomLists, GetRooms and CreateItem (sending mail).
pub fn register(operations: &mut BTreeMap<&'static str, Operation>) {
    operations.insert(
        "ConvertId",
        Arc::new(|_state, _context, request| {
            Box::pin(async move { soap::xml_response(wrap(&convert_id(&request.operation))) })
        }),
    );
    operations.insert(
        "ResolveNames",
        Arc::new(|state, context, request| {
            Box::pin(async move { answer_resolve_names(&state, &context, &request) })
        }),
    );
    operations.insert(
        "GetRoomLists",
        Arc::new(|state, _context, _request| {
            Box::pin(async move {
                soap::xml_response(wrap(&get_room_lists(&room_list_address(&state))))
            })
        }),
    );
    operations.insert(
        "GetRooms",
        Arc::new(|state, _context, request| {
            Box::pin(async move {
                let entries = directory_entries(&state);
                match get_rooms(&request.operation, &entries, &room_list_address(&state)) {
                    Ok(body) => soap::xml_response(wrap(&body)),
                    Err(err) => {
                        soap::fault_response("ErrorSchemaValidation", &err.to_string(), None)
                    }
                }
            })
        }),
    );
    operations.insert(
        "CreateItem",
        Arc::new(|state, context, request| {
            Box::pin(async move { answer_create_item(&state, &context, &request) })
        }),
    );
}

/// The control routes of this module: `GET /_sim/sent`.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route("/_sim/sent", get(list_sent))
}

impl SimControl {
    /// Every message sent through CreateItem, oldest first.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.state.sent.all()
    }
}

async fn list_sent(State(state): State<Arc<SimState>>) -> Json<Vec<SentMessage>> {
    Json(state.sent.all())
}

fn answer_resolve_names(
    state: &SimState,
    _context: &RequestContext,
    request: &SoapRequest,
) -> Response {
    match resolve_names(&request.operation, &directory_entries(state)) {
        Ok(body) => soap::xml_response(wrap(&body)),
        Err(err) => soap::fault_response("ErrorSchemaValidation", &err.to_string(), None),
    }
}

fn answer_create_item(
    state: &SimState,
    context: &RequestContext,
    request: &SoapRequest,
) -> Response {
    match parse_send_only(&request.operation, context.mailbox.as_ref(), Utc::now()) {
        Ok(message) => {
            state.sent.record(message);
            soap::xml_response(wrap(&send_only_response()))
        }
        Err(_) => soap::xml_response(wrap(&create_item_error())),
    }
}

fn room_list_address(state: &SimState) -> String {
    format!("{ROOM_LIST_LOCAL_PART}@{}", state.config.domain)
}

fn directory_entries(state: &SimState) -> Vec<DirectoryEntry> {
    state
        .model()
        .mailboxes()
        .into_iter()
        .map(|mailbox| DirectoryEntry {
            address: MailboxAddress::new(&mailbox.email),
            name: mailbox.display_name,
            aliases: mailbox
                .aliases
                .iter()
                .map(|alias| MailboxAddress::new(alias))
                .collect(),
            is_room: mailbox.kind == MailboxKind::Room,
        })
        .collect()
}

/// Wraps a response body element in an envelope with ServerVersionInfo.
pub(crate) fn wrap(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{NS_SOAP}\"><s:Header>\
         <h:ServerVersionInfo xmlns:h=\"{NS_TYPES}\" MajorVersion=\"15\" MinorVersion=\"20\" \
         MajorBuildNumber=\"8000\" MinorBuildNumber=\"12\" Version=\"V2018_01_08\"/></s:Header>\
         <s:Body>{body}</s:Body></s:Envelope>"
    )
}

fn find_matches<'a>(entry: &str, directory: &'a [DirectoryEntry]) -> Vec<&'a DirectoryEntry> {
    let wanted = entry.trim();
    let wanted = if wanted.len() > SMTP_PREFIX.len()
        && wanted[..SMTP_PREFIX.len()].eq_ignore_ascii_case(SMTP_PREFIX)
    {
        &wanted[SMTP_PREFIX.len()..]
    } else {
        wanted
    };
    let address = MailboxAddress::new(wanted);
    let exact: Vec<&DirectoryEntry> = directory
        .iter()
        .filter(|candidate| candidate.address == address || candidate.aliases.contains(&address))
        .collect();
    if !exact.is_empty() || wanted.contains('@') {
        return exact;
    }
    let lowered = wanted.to_lowercase();
    directory
        .iter()
        .filter(|candidate| {
            candidate.name.to_lowercase().starts_with(&lowered)
                || candidate
                    .address
                    .as_str()
                    .split('@')
                    .next()
                    .is_some_and(|local| local == lowered)
        })
        .collect()
}

fn resolution_set(entries: &[&DirectoryEntry]) -> String {
    let resolutions: String = entries
        .iter()
        .map(|entry| {
            format!(
                "<t:Resolution><t:Mailbox>{}</t:Mailbox></t:Resolution>",
                mailbox_xml(entry)
            )
        })
        .collect();
    format!(
        "<m:ResolutionSet TotalItemsInView=\"{}\" IncludesLastItemInRange=\"true\">{resolutions}</m:ResolutionSet>",
        entries.len()
    )
}

fn mailbox_xml(entry: &DirectoryEntry) -> String {
    format!(
        "<t:Name>{}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType>",
        escape(&entry.name),
        escape(entry.address.as_str())
    )
}

fn error_message(element: &str, code: &str, text: &str) -> String {
    format!(
        "<m:{element} ResponseClass=\"Error\"><m:MessageText>{text}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>\
         <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{element}>"
    )
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Vec<DirectoryEntry> {
        vec![
            DirectoryEntry {
                address: MailboxAddress::new("room-1@sim.example"),
                name: "Room 1".to_owned(),
                aliases: vec![MailboxAddress::new("boardroom@sim.example")],
                is_room: true,
            },
            DirectoryEntry {
                address: MailboxAddress::new("alice@sim.example"),
                name: "Alice".to_owned(),
                aliases: Vec::new(),
                is_room: false,
            },
        ]
    }

    const LIST: &str = "allrooms@sim.example";

    fn element(xml: &str) -> Element {
        crate::sim::soap::parse_tree(xml.as_bytes()).expect("well-formed test request")
    }

    fn resolve(entry: &str) -> String {
        let body = format!(
            "<m:ResolveNames xmlns:m=\"{NS_MESSAGES}\" ReturnFullContactData=\"false\"><m:UnresolvedEntry>{entry}</m:UnresolvedEntry></m:ResolveNames>"
        );
        resolve_names(&element(&body), &directory()).expect("valid request")
    }

    #[test]
    fn resolving_an_alias_returns_the_primary_address() {
        let response = resolve("SMTP:BoardRoom@sim.example");

        assert!(response.contains("<t:EmailAddress>room-1@sim.example</t:EmailAddress>"));
        assert!(response.contains("ResponseClass=\"Success\""));
    }

    #[test]
    fn resolving_an_unknown_name_is_an_error() {
        assert!(resolve("nobody@sim.example").contains("ErrorNameResolutionNoResults"));
    }

    #[test]
    fn get_rooms_lists_only_rooms() {
        let body = format!("<m:GetRooms xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:RoomList><t:EmailAddress>{LIST}</t:EmailAddress></m:RoomList></m:GetRooms>");

        let response = get_rooms(&element(&body), &directory(), LIST).expect("valid request");

        assert!(response.contains("room-1@sim.example"));
        assert!(!response.contains("alice@sim.example"));
    }

    #[test]
    fn send_only_message_is_read_with_recipients() {
        let body = format!(
            "<m:CreateItem xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\" MessageDisposition=\"SendOnly\"><m:Items><t:Message>\
             <t:Subject>Booking declined</t:Subject><t:Body BodyType=\"Text\">Sorry &amp; bye</t:Body>\
             <t:ToRecipients><t:Mailbox><t:EmailAddress>alice@sim.example</t:EmailAddress></t:Mailbox></t:ToRecipients>\
             </t:Message></m:Items></m:CreateItem>"
        );
        let sender = MailboxAddress::new("room-1@sim.example");

        let message =
            parse_send_only(&element(&body), Some(&sender), Utc::now()).expect("send-only message");

        assert_eq!(message.subject, "Booking declined");
        assert_eq!(message.body, "Sorry & bye");
        assert_eq!(message.to, ["alice@sim.example"]);
        assert_eq!(message.from.as_deref(), Some("room-1@sim.example"));
    }

    #[test]
    fn a_copy_saved_to_sent_items_is_found_by_its_extended_property() {
        let uri = "<t:ExtendedFieldURI PropertySetId=\"5D3C8A4E-2F61-4B7A-9C0E-8B1F6D2A7E43\" \
                   PropertyName=\"BookingSyncMessageId\" PropertyType=\"String\"/>";
        let create = format!(
            "<m:CreateItem xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\" MessageDisposition=\"SendAndSaveCopy\">\
             <m:SavedItemFolderId><t:DistinguishedFolderId Id=\"sentitems\"/></m:SavedItemFolderId><m:Items><t:Message>\
             <t:Subject>Digest</t:Subject><t:ExtendedProperty>{uri}<t:Value>&lt;d.1@sim.example&gt;</t:Value></t:ExtendedProperty>\
             <t:ToRecipients><t:Mailbox><t:EmailAddress>alice@sim.example</t:EmailAddress></t:Mailbox></t:ToRecipients>\
             </t:Message></m:Items></m:CreateItem>"
        );
        let find = |value: &str| {
            let body = format!(
                "<m:FindItem xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\" Traversal=\"Shallow\">\
                 <m:Restriction><t:IsEqualTo>{uri}<t:FieldURIOrConstant><t:Constant Value=\"{value}\"/>\
                 </t:FieldURIOrConstant></t:IsEqualTo></m:Restriction><m:ParentFolderIds>\
                 <t:DistinguishedFolderId Id=\"sentitems\"/></m:ParentFolderIds></m:FindItem>"
            );
            element(&body)
        };
        let sender = MailboxAddress::new("room-1@sim.example");
        let other = MailboxAddress::new("alice@sim.example");
        let log = SentLog::default();

        let message =
            parse_send_only(&element(&create), Some(&sender), Utc::now()).expect("message");
        log.record(message);
        let found =
            find_sent(&find("&lt;d.1@sim.example&gt;"), Some(&sender), &log).expect("found");
        let missing =
            find_sent(&find("&lt;d.2@sim.example&gt;"), Some(&sender), &log).expect("none");
        let elsewhere =
            find_sent(&find("&lt;d.1@sim.example&gt;"), Some(&other), &log).expect("none");

        assert!(is_sent_items_search(&find("x")));
        assert!(found.contains("TotalItemsInView=\"1\"") && found.contains("<t:ItemId"));
        assert!(missing.contains("TotalItemsInView=\"0\"") && !missing.contains("<t:ItemId"));
        assert!(!elsewhere.contains("<t:ItemId"));
        assert_eq!(log.all()[0].saved_in.as_deref(), Some("room-1@sim.example"));
    }

    #[test]
    fn create_item_without_send_only_is_refused() {
        let body = format!("<m:CreateItem xmlns:m=\"{NS_MESSAGES}\"><m:Items/></m:CreateItem>");

        assert!(matches!(
            parse_send_only(&element(&body), None, Utc::now()),
            Err(DirectoryError::UnsupportedCreateItem)
        ));
    }
}
