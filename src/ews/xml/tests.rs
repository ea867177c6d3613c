//! Parser tests over the fixtures in `tests/fixtures/ews/`.

use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc, Weekday};

use super::*;
use crate::domain::{
    Attendee, CalendarItemType, ChangeKey, ItemSummary, OccurrenceRef, Person, ResponseType,
};
use crate::ews::stream::StreamDecoder;
use crate::ews::types::{UserSettings, UserSettingsError, ViewItem};
use crate::recurrence::{DaySelector, Pattern, RangeEnd, Recurrence, WeekIndex};

/// Reads a fixture file.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/ews/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("fixture {path}: {err}"))
}

/// Parses `fixture` with `parser` and compares the result with `expected`.
///
/// Results are compared by their `Debug` form because `EwsError` wraps transport
/// errors that cannot be compared for equality.
fn check<T: Debug>(fixture_name: &str, parser: impl Fn(&[u8]) -> T, expected: T) {
    let actual = parser(&fixture(fixture_name));

    assert_eq!(
        format!("{actual:#?}"),
        format!("{expected:#?}"),
        "{fixture_name}"
    );
}

fn at(value: &str) -> DateTime<Utc> {
    value.parse().expect("test timestamp")
}

fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("test date")
}

fn person(name: &str, email: &str) -> Person {
    Person {
        name: Some(name.to_owned()),
        email: Some(email.to_owned()),
    }
}

#[test]
fn subscribe_returns_the_subscription_id() {
    check(
        "subscribe_success.xml",
        parse_subscribe,
        Ok(SubscriptionId::from(
            "KQBhbTZwcjA0bWIxMjM0LmV1cnByZDA0LnByb2Qub3V0bG9vay5jb20QAAAA",
        )),
    );
}

#[test]
fn an_impersonation_fault_becomes_access_denied() {
    check(
        "subscribe_impersonation_denied.xml",
        parse_subscribe,
        Err(EwsError::AccessDenied {
            code: "ErrorImpersonateUserDenied".to_owned(),
        }),
    );
}

#[test]
fn a_server_busy_fault_carries_its_backoff() {
    check(
        "fault_server_busy.xml",
        parse_fault,
        Some(EwsError::Throttled {
            backoff: Some(Duration::from_millis(61250)),
        }),
    );
    check(
        "fault_server_busy.xml",
        parse_get_item,
        Err(EwsError::Throttled {
            backoff: Some(Duration::from_millis(61250)),
        }),
    );
}

#[test]
fn a_fault_without_detail_is_classified_by_its_faultcode() {
    check(
        "fault_default_namespace_no_detail.xml",
        parse_fault,
        Some(EwsError::MailboxNotFound),
    );
}

#[test]
fn unsubscribing_a_missing_subscription_succeeds() {
    check("unsubscribe_not_found.xml", parse_unsubscribe, Ok(()));
}

#[test]
fn sync_page_lists_creates_updates_and_deletes_in_order() {
    let expected = SyncPage {
        sync_state: SyncState::from("H4sIAAAAAAAEAO29B3..."),
        includes_last_item_in_range: false,
        changes: vec![
            SyncChange::Create(ItemSummary {
                item_id: ItemId::from("AAMkAGI2...AAA="),
                change_key: ChangeKey::from("DwAAABYA...gQ=="),
                last_modified: Some(at("2026-03-02T09:14:05Z")),
                uid: Some("040000008200E00074C5B7101A82E00800000000AAAA".to_owned()),
                item_type: Some(CalendarItemType::Single),
            }),
            SyncChange::Update(ItemSummary {
                item_id: ItemId::from("AAMkAGI2...BBB="),
                change_key: ChangeKey::from("DwAAABYA...hQ=="),
                last_modified: Some(at("2026-03-02T09:15:40.123Z")),
                uid: Some("040000008200E00074C5B7101A82E00800000000BBBB".to_owned()),
                item_type: Some(CalendarItemType::RecurringMaster),
            }),
            SyncChange::Delete(ItemId::from("AAMkAGI2...CCC=")),
        ],
    };

    check(
        "sync_folder_items_page.xml",
        parse_sync_folder_items,
        Ok(expected),
    );
}

#[test]
fn server_busy_in_a_response_message_carries_its_backoff() {
    check(
        "sync_folder_items_server_busy.xml",
        parse_sync_folder_items,
        Err(EwsError::Throttled {
            backoff: Some(Duration::from_millis(5000)),
        }),
    );
}

#[test]
fn a_rejected_sync_state_is_reported_as_such() {
    check(
        "sync_folder_items_invalid_state.xml",
        parse_sync_folder_items,
        Err(EwsError::InvalidSyncState),
    );
}

#[test]
fn get_item_returns_one_result_per_message_in_order() {
    let item = CalendarItem {
        item_id: ItemId::from("AAMkAGI2...AAA="),
        change_key: ChangeKey::from("DwAAABYA...gQ=="),
        subject: "Quarterly planning & review".to_owned(),
        last_modified: at("2026-03-02T09:14:05Z"),
        uid: "040000008200E00074C5B7101A82E00800000000D0B8".to_owned(),
        recurrence_id: None,
        start: at("2026-03-10T13:00:00Z"),
        end: at("2026-03-10T14:30:00Z"),
        is_all_day: false,
        location: Some("Room 4B (Building 2)".to_owned()),
        is_cancelled: false,
        is_recurring: false,
        item_type: CalendarItemType::Single,
        organizer: Some(person("Dana Ito", "dana.ito@contoso.example")),
        required_attendees: vec![Attendee {
            person: person("Lee Park", "lee.park@contoso.example"),
            response: Some(ResponseType::Accept),
        }],
        optional_attendees: vec![],
        resources: vec![Attendee {
            person: person("Room 4B", "room-4b@contoso.example"),
            response: Some(ResponseType::Accept),
        }],
        appointment_state: 3,
        start_time_zone: Some("W. Europe Standard Time".to_owned()),
        end_time_zone: Some("W. Europe Standard Time".to_owned()),
        recurrence: None,
        modified_occurrences: vec![],
        deleted_occurrences: vec![],
        clean_global_object_id: Some(
            "BAAAAIIA4AB0xbcQGoLgCAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAEx9".to_owned(),
        ),
    };

    check(
        "get_item_single_and_missing.xml",
        parse_get_item,
        Ok(vec![
            Ok(item),
            Err(ItemError::NotFound),
            Err(ItemError::Other {
                code: "ErrorInvalidIdMalformed".to_owned(),
                message: "Id is malformed.".to_owned(),
            }),
        ]),
    );
}

#[test]
fn access_denied_for_one_item_fails_only_that_item() {
    check(
        "get_item_access_denied.xml",
        parse_get_item,
        Ok(vec![Err(ItemError::Other {
            code: "ErrorAccessDenied".to_owned(),
            message: "Access is denied. Check credentials and try again.".to_owned(),
        })]),
    );
}

#[test]
fn server_busy_for_any_item_fails_the_whole_batch() {
    check(
        "get_item_server_busy.xml",
        parse_get_item,
        Err(EwsError::Throttled {
            backoff: Some(Duration::from_millis(2500)),
        }),
    );
}

#[test]
fn recurring_masters_carry_every_pattern_and_range_kind() {
    let items = parse_get_item(&fixture("get_item_recurring_masters.xml"))
        .expect("valid response")
        .into_iter()
        .map(|item| item.expect("item parsed"))
        .collect::<Vec<_>>();
    let rules: Vec<Recurrence> = items
        .iter()
        .map(|item| item.recurrence.clone().expect("master has a rule"))
        .collect();

    let expected = vec![
        Recurrence {
            pattern: Pattern::Weekly {
                interval: 2,
                days: vec![Weekday::Mon, Weekday::Wed],
                first_day_of_week: Weekday::Mon,
            },
            start_date: date(2026, 3, 2),
            end: RangeEnd::EndDate {
                date: date(2026, 6, 29),
            },
        },
        Recurrence {
            pattern: Pattern::RelativeMonthly {
                interval: 1,
                days_of_week: DaySelector::Weekday(Weekday::Tue),
                index: WeekIndex::Second,
            },
            start_date: date(2026, 3, 10),
            end: RangeEnd::Numbered { count: 10 },
        },
        Recurrence {
            pattern: Pattern::AbsoluteYearly {
                month: 3,
                day_of_month: 2,
            },
            start_date: date(2026, 3, 2),
            end: RangeEnd::NoEnd,
        },
        Recurrence {
            pattern: Pattern::Daily { interval: 1 },
            start_date: date(2026, 3, 2),
            end: RangeEnd::Numbered { count: 5 },
        },
        Recurrence {
            pattern: Pattern::AbsoluteMonthly {
                interval: 3,
                day_of_month: 31,
            },
            start_date: date(2026, 3, 31),
            end: RangeEnd::NoEnd,
        },
        Recurrence {
            pattern: Pattern::RelativeYearly {
                month: 11,
                days_of_week: DaySelector::Weekdays,
                index: WeekIndex::Last,
            },
            start_date: date(2026, 11, 30),
            end: RangeEnd::EndDate {
                date: date(2030, 12, 31),
            },
        },
    ];
    assert_eq!(rules, expected);
    assert_eq!(
        items[0].modified_occurrences,
        vec![OccurrenceRef {
            item_id: ItemId::from("OCC1"),
            change_key: Some(ChangeKey::from("CK1")),
            start: at("2026-03-04T10:00:00Z"),
            end: at("2026-03-04T11:00:00Z"),
            original_start: at("2026-03-04T09:00:00Z"),
        }]
    );
    assert_eq!(
        items[0].deleted_occurrences,
        vec![at("2026-03-16T09:00:00Z"), at("2026-03-18T09:00:00Z")]
    );
    assert_eq!(
        items[0].clean_global_object_id.as_deref(),
        Some("CLEAN-WWW")
    );
    assert!(items
        .iter()
        .all(|item| item.item_type == CalendarItemType::RecurringMaster));
}

#[test]
fn calendar_view_lists_entries_and_the_truncation_flag() {
    let expected = CalendarView {
        items: vec![
            ViewItem {
                summary: ItemSummary {
                    item_id: ItemId::from("SINGLE1"),
                    change_key: ChangeKey::from("CKS1"),
                    last_modified: Some(at("2026-02-20T10:00:00Z")),
                    uid: Some("UID-SINGLE1".to_owned()),
                    item_type: Some(CalendarItemType::Single),
                },
                subject: Some("Board meeting".to_owned()),
                start: at("2026-03-03T08:00:00Z"),
                end: at("2026-03-03T09:00:00Z"),
                is_all_day: false,
                is_cancelled: true,
                recurrence_id: None,
            },
            ViewItem {
                summary: ItemSummary {
                    item_id: ItemId::from("OCC-WWW-2"),
                    change_key: ChangeKey::from("CKO2"),
                    last_modified: None,
                    uid: Some("UID-WWW".to_owned()),
                    item_type: Some(CalendarItemType::Exception),
                },
                subject: Some("Weekly sync".to_owned()),
                start: at("2026-03-04T10:00:00Z"),
                end: at("2026-03-04T11:00:00Z"),
                is_all_day: false,
                is_cancelled: false,
                recurrence_id: Some(at("2026-03-04T09:00:00Z")),
            },
            ViewItem {
                summary: ItemSummary {
                    item_id: ItemId::from("ALLDAY"),
                    change_key: ChangeKey::from("CKA"),
                    last_modified: None,
                    uid: Some("UID-ALLDAY".to_owned()),
                    item_type: Some(CalendarItemType::Single),
                },
                subject: Some("Offsite".to_owned()),
                start: at("2026-03-05T23:00:00Z"),
                end: at("2026-03-06T23:00:00Z"),
                is_all_day: true,
                is_cancelled: false,
                recurrence_id: None,
            },
        ],
        includes_last_item_in_range: false,
        total_items_in_view: Some(33),
    };

    check(
        "find_item_calendar_view.xml",
        parse_find_calendar_view,
        Ok(expected),
    );
}

#[test]
fn calendar_folder_reports_its_id_and_count() {
    check(
        "get_folder_calendar.xml",
        parse_get_folder,
        Ok(FolderInfo {
            folder_id: "AQMkAGI2...AAAEOAAAA".to_owned(),
            change_key: Some("AgAAABYA".to_owned()),
            total_count: Some(42),
        }),
    );
}

#[test]
fn autodiscover_answers_each_mailbox_with_settings_or_its_error() {
    check(
        "autodiscover_user_settings.xml",
        parse_get_user_settings,
        Ok(vec![
            Ok(UserSettings {
                external_ews_url: Some(
                    "https://outlook.office365.com/EWS/Exchange.asmx".to_owned(),
                ),
                internal_ews_url: None,
                grouping_information: Some("AM6PR04".to_owned()),
            }),
            Err(UserSettingsError {
                code: "InvalidUser".to_owned(),
                message: Some("Invalid user: 'nobody@contoso.example'".to_owned()),
                redirect_target: None,
            }),
            Err(UserSettingsError {
                code: "RedirectAddress".to_owned(),
                message: Some("Redirection address.".to_owned()),
                redirect_target: Some("room-9@fabrikam.example".to_owned()),
            }),
        ]),
    );
}

#[test]
fn resolving_an_alias_returns_the_primary_address() {
    check(
        "resolve_names_alias.xml",
        parse_resolve_names,
        Ok(vec![person("Lee Park", "user-001@contoso.example")]),
    );
}

#[test]
fn resolving_an_unknown_name_returns_nothing() {
    check(
        "resolve_names_no_results.xml",
        parse_resolve_names,
        Ok(vec![]),
    );
}

#[test]
fn room_lists_and_rooms_are_listed_with_names_and_addresses() {
    check(
        "get_room_lists.xml",
        parse_get_room_lists,
        Ok(vec![person("All Rooms", "all-rooms@contoso.example")]),
    );
    check(
        "get_rooms.xml",
        parse_get_rooms,
        Ok(vec![
            person("Room 001", "room-001@contoso.example"),
            person("Room 002", "room-002@contoso.example"),
        ]),
    );
}

fn event(kind: EventKind, at_time: &str) -> MailboxEvent {
    MailboxEvent {
        kind,
        timestamp: Some(at(at_time)),
        item_id: None,
        folder_id: None,
        parent_folder_id: None,
        old_item_id: None,
        old_parent_folder_id: None,
        watermark: None,
    }
}

/// The messages of `streaming_events.xml`, in order.
pub(crate) fn expected_stream_messages() -> Vec<StreamMessage> {
    let created = MailboxEvent {
        item_id: Some(ItemId::from("AAMkAGI2...AAA=")),
        parent_folder_id: Some("CALENDAR-A".to_owned()),
        ..event(EventKind::Created, "2026-03-02T09:14:05Z")
    };
    let folder_modified = MailboxEvent {
        folder_id: Some("CALENDAR-A".to_owned()),
        parent_folder_id: Some("ROOT-A".to_owned()),
        ..event(EventKind::Modified, "2026-03-02T09:14:05Z")
    };
    let moved = MailboxEvent {
        item_id: Some(ItemId::from("AAMkAGQx...NEW=")),
        parent_folder_id: Some("DELETEDITEMS-B".to_owned()),
        old_item_id: Some(ItemId::from("AAMkAGQx...OLD=")),
        old_parent_folder_id: Some("CALENDAR-B".to_owned()),
        ..event(EventKind::Moved, "2026-03-02T09:14:07Z")
    };
    let deleted = MailboxEvent {
        item_id: Some(ItemId::from("AAMkAGI2...AAA=")),
        parent_folder_id: Some("CALENDAR-A".to_owned()),
        ..event(EventKind::Deleted, "2026-03-02T09:20:00Z")
    };
    let free_busy = MailboxEvent {
        item_id: Some(ItemId::from("AAMkAGI2...FFF=")),
        parent_folder_id: Some("CALENDAR-A".to_owned()),
        ..event(EventKind::FreeBusyChanged, "2026-03-02T09:20:01Z")
    };
    let notification = |id: &str, events: Vec<MailboxEvent>| Notification {
        subscription_id: SubscriptionId::from(id),
        events,
    };
    vec![
        StreamMessage {
            notifications: vec![
                notification("SUB-AAA=", vec![created, folder_modified]),
                notification("SUB-BBB=", vec![moved]),
            ],
            error: None,
            connection_status: Some(ConnectionStatus::Ok),
        },
        StreamMessage {
            notifications: vec![],
            error: None,
            connection_status: Some(ConnectionStatus::Ok),
        },
        StreamMessage {
            notifications: vec![notification("SUB-AAA=", vec![deleted, free_busy])],
            error: None,
            connection_status: None,
        },
        StreamMessage {
            notifications: vec![],
            error: Some(StreamError {
                code: "ErrorSubscriptionNotFound".to_owned(),
                message: Some("The specified subscription was not found.".to_owned()),
                subscription_ids: vec![SubscriptionId::from("SUB-BBB=")],
                backoff: None,
            }),
            connection_status: Some(ConnectionStatus::Closed),
        },
    ]
}

fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Vec<StreamMessage>, EwsError> {
    let mut decoder = StreamDecoder::new();
    let mut messages = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        decoder.push(&bytes[from..cut]);
        from = cut;
        while let Some(message) = decoder.next_message()? {
            messages.push(message);
        }
    }
    decoder.finish()?;
    Ok(messages)
}

#[test]
fn stream_messages_are_decoded_from_one_piece() {
    check(
        "streaming_events.xml",
        |bytes| decode_in_pieces(bytes, &[]),
        Ok(expected_stream_messages()),
    );
}

#[test]
fn stream_messages_survive_every_single_split_point() {
    let bytes = fixture("streaming_events.xml");
    let expected = expected_stream_messages();

    for cut in 0..=bytes.len() {
        let messages = decode_in_pieces(&bytes, &[cut]).expect("stream decodes");
        assert_eq!(messages, expected, "split at byte {cut}");
    }
}

#[test]
fn stream_messages_survive_every_pair_of_split_points_on_a_stride() {
    let bytes = fixture("streaming_events.xml");
    let expected = expected_stream_messages();

    for first in (0..bytes.len()).step_by(31) {
        for second in (first..bytes.len()).step_by(37) {
            let messages = decode_in_pieces(&bytes, &[first, second]).expect("stream decodes");
            assert_eq!(messages, expected, "split at bytes {first} and {second}");
        }
    }
}

#[test]
fn stream_messages_survive_byte_by_byte_delivery() {
    let bytes = fixture("streaming_events.xml");
    let cuts: Vec<usize> = (1..bytes.len()).collect();

    let messages = decode_in_pieces(&bytes, &cuts).expect("stream decodes");

    assert_eq!(messages, expected_stream_messages());
}

#[test]
fn a_stream_cut_inside_an_envelope_is_malformed() {
    let bytes = fixture("streaming_events.xml");
    let cut = bytes.len() - 20;

    let result = decode_in_pieces(&bytes[..cut], &[]);

    assert!(matches!(result, Err(EwsError::Malformed(_))), "{result:?}");
}

#[test]
fn a_stream_document_that_is_not_an_envelope_is_malformed() {
    let result = decode_in_pieces(b"<html><body>proxy error</body></html>", &[]);

    assert!(matches!(result, Err(EwsError::Malformed(_))), "{result:?}");
}

#[test]
fn a_doctype_in_a_response_is_malformed() {
    let body = br#"<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x "y">]><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#;

    let result = parse_subscribe(body);

    assert!(matches!(result, Err(EwsError::Malformed(_))), "{result:?}");
}

#[test]
fn a_truncated_response_is_malformed() {
    let bytes = fixture("get_item_single_and_missing.xml");

    let result = parse_get_item(&bytes[..bytes.len() / 2]);

    assert!(matches!(result, Err(EwsError::Malformed(_))), "{result:?}");
}

#[test]
fn a_response_cut_at_any_byte_is_an_error_not_a_panic() {
    let bytes = fixture("get_item_single_and_missing.xml");
    let document_end = bytes
        .iter()
        .rposition(|&byte| byte == b'>')
        .expect("a document");

    for cut in 0..document_end {
        let result = parse_get_item(&bytes[..cut]);

        assert!(
            matches!(result, Err(EwsError::Malformed(_))),
            "cut at {cut}"
        );
    }
}

#[test]
fn dates_with_offsets_keep_their_calendar_date() {
    assert_eq!(calendar::parse_date("2026-03-02Z"), Ok(date(2026, 3, 2)));
    assert_eq!(
        calendar::parse_date("2026-03-02+01:00"),
        Ok(date(2026, 3, 2))
    );
    assert_eq!(calendar::parse_date("2026-03-02"), Ok(date(2026, 3, 2)));
    assert!(calendar::parse_date("2026-03-02junk").is_err());
}
