//! Directory lookups: ResolveNames, GetRoomLists and GetRooms responses.

use super::calendar::person;
use super::names::*;
use super::tree::{Element, Ns};
use super::{check_message, malformed, operation_response, parse_envelope, single_message};
use crate::domain::Person;
use crate::ews::error::{codes, EwsError};

/// Reads a ResolveNames response: every match (none when nothing matched).
pub fn parse_resolve_names(body: &[u8]) -> Result<Vec<Person>, EwsError> {
    let message = single_message(body, RESOLVE_NAMES_RESPONSE, RESOLVE_NAMES_RESPONSE_MESSAGE)?;
    match check_message(&message) {
        Err(err) if err.code() == Some(codes::NAME_RESOLUTION_NO_RESULTS) => return Ok(Vec::new()),
        other => other?,
    }
    Ok(message
        .child(Ns::Messages, RESOLUTION_SET)
        .map(|set| {
            set.children_named(Ns::Types, RESOLUTION)
                .filter_map(|resolution| resolution.child(Ns::Types, MAILBOX))
                .map(person)
                .collect()
        })
        .unwrap_or_default())
}

/// Reads a CreateItem response of a sent message: `Ok` when Exchange accepted it.
pub fn parse_create_item(body: &[u8]) -> Result<(), EwsError> {
    let message = single_message(body, CREATE_ITEM_RESPONSE, CREATE_ITEM_RESPONSE_MESSAGE)?;
    check_message(&message)
}

/// Reads a GetRoomLists response: the room list addresses.
pub fn parse_get_room_lists(body: &[u8]) -> Result<Vec<Person>, EwsError> {
    let root = parse_envelope(body)?;
    let response = operation_response(&root, GET_ROOM_LISTS_RESPONSE)?;
    check_message(response)?;
    Ok(entries(response, ROOM_LISTS, ADDRESS, |address| {
        Some(person(address))
    }))
}

/// Reads a GetRooms response: the rooms of one room list.
pub fn parse_get_rooms(body: &[u8]) -> Result<Vec<Person>, EwsError> {
    let root = parse_envelope(body)?;
    let response = operation_response(&root, GET_ROOMS_RESPONSE)?;
    check_message(response)?;
    let rooms = entries(response, ROOMS, ROOM, |room| {
        room.child(Ns::Types, ID).map(person)
    });
    if rooms.iter().any(|room| room.email.is_none()) {
        return Err(malformed("room without an email address"));
    }
    Ok(rooms)
}

fn entries(
    response: &Element,
    list: &str,
    entry: &str,
    read: impl Fn(&Element) -> Option<Person>,
) -> Vec<Person> {
    response
        .child(Ns::Messages, list)
        .map(|list| {
            list.children_named(Ns::Types, entry)
                .filter_map(read)
                .collect()
        })
        .unwrap_or_default()
}
