//! Every request the EWS client builds is valid against Exchange's own schema.

use booking_sync::domain::{ItemId, MailboxAddress, SubscriptionId, SyncState};
use booking_sync::ews::requests::{self, RequestContext};
use chrono::{TimeZone, Utc};

use crate::support::xsd::assert_valid_envelopes;

fn every_request(context: &RequestContext<'_>) -> Vec<String> {
    let ids = [
        SubscriptionId::from("KQBhbTZwcjA0...AAA="),
        SubscriptionId::from("KQBhbTZwcjA0...BBB="),
    ];
    let from = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    vec![
        requests::subscribe_streaming(context),
        requests::unsubscribe(context, &ids[0]),
        requests::get_streaming_events(context, &ids, 30),
        requests::sync_folder_items(context, None, 512),
        requests::sync_folder_items(context, Some(&SyncState::from("H4sIAAAA<&>")), 1),
        requests::get_item(
            context,
            &[
                ItemId::from("AAMkAGI2...AAA="),
                ItemId::from("AAMkAGI2...CCC="),
            ],
        ),
        requests::find_calendar_view(context, from, to, 500),
        requests::get_folder(context),
        requests::resolve_names(context, "u001@contoso.example"),
        requests::get_room_lists(context),
        requests::get_rooms(context, &MailboxAddress::new("all-rooms@contoso.example")),
        requests::send_message(
            context,
            &requests::OutgoingMail {
                from: Some(MailboxAddress::new("booking-sync@contoso.example")),
                to: vec![MailboxAddress::new("user-001@contoso.example")],
                subject: "2 meetings need your attention".to_owned(),
                html_body: "<p>Catering & <b>equipment</b></p>".to_owned(),
                tag: None,
            },
        ),
        requests::send_message(
            context,
            &requests::OutgoingMail {
                from: None,
                to: vec![MailboxAddress::new("user-001@contoso.example")],
                subject: "A meeting needs your attention".to_owned(),
                html_body: "<p>Room 1 &amp; Room 2</p>".to_owned(),
                tag: Some("<digest.0a1b2c@contoso.example>".to_owned()),
            },
        ),
        requests::find_sent_message(context, "<digest.0a1b2c@contoso.example>"),
    ]
}

#[test]
fn every_impersonating_request_validates_against_the_ews_schema() {
    let mailbox = MailboxAddress::new("room-4b@contoso.example");
    let context = RequestContext {
        server_version: "Exchange2013_SP1",
        mailbox: &mailbox,
        impersonate: true,
    };

    assert_valid_envelopes(&every_request(&context));
}

#[test]
fn every_delegate_request_validates_against_the_ews_schema() {
    let mailbox = MailboxAddress::new("room-4b@contoso.example");
    let context = RequestContext {
        server_version: "Exchange2013_SP1",
        mailbox: &mailbox,
        impersonate: false,
    };

    assert_valid_envelopes(&every_request(&context));
}
