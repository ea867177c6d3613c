//! The simulator core over real HTTP: SOAP operations, streaming, control API.
//!
//! Every SOAP response body is validated against Exchange's schema.

use std::time::Duration;

use booking_sync::recurrence::{Pattern, RangeEnd, Recurrence};
use booking_sync::sim::{
    AppointmentPatch, AppointmentRef, DeleteMode, NewAppointment, SimConfig, SimControl, SimHandle,
    Simulator, Workload, WorkloadMix,
};
use chrono::Weekday;

use crate::support::xsd::{assert_valid_envelopes, split_envelopes};

const ROOM: &str = "room-001@contoso.example";

async fn start_simulator() -> SimHandle {
    Simulator::start(SimConfig {
        rooms: 3,
        users: 3,
        heartbeat_interval: Duration::from_millis(400),
        minute: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn envelope(impersonate: Option<&str>, body: &str) -> String {
    let impersonation = impersonate
        .map(|mailbox| {
            format!(
                "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
            )
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
<soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/>{impersonation}</soap:Header>
<soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

async fn post_soap(sim: &SimHandle, impersonate: Option<&str>, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(sim.ews_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(impersonate, body))
        .send()
        .await
        .expect("request is sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body is read"))
}

#[tokio::test]
async fn unparseable_xml_gets_a_schema_validation_fault() {
    let sim = start_simulator().await;

    let response = reqwest::Client::new()
        .post(sim.ews_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><oops>")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 500);
    let text = response.text().await.unwrap();
    assert!(text.contains("ErrorSchemaValidation"), "{text}");
    assert_valid_envelopes(&[text]);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_operation_and_missing_version_are_faults() {
    let sim = start_simulator().await;

    let (status, unknown) = post_soap(&sim, None, "<m:FlyToTheMoon/>").await;
    let no_version = reqwest::Client::new()
        .post(sim.ews_url())
        .body("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><m:Unsubscribe xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\"><m:SubscriptionId>x</m:SubscriptionId></m:Unsubscribe></s:Body></s:Envelope>")
        .send()
        .await
        .unwrap();

    assert_eq!(status, 500);
    assert!(unknown.contains("ErrorInvalidRequest"), "{unknown}");
    assert_eq!(no_version.status().as_u16(), 500);
    let no_version = no_version.text().await.unwrap();
    assert!(
        no_version.contains("ErrorInvalidServerVersion"),
        "{no_version}"
    );
    assert_valid_envelopes(&[unknown, no_version]);
    sim.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_answers_no_error_then_subscription_not_found() {
    let sim = start_simulator().await;
    let subscribe = r#"<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id="calendar"/></t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>"#;
    let (_, subscribed) = post_soap(&sim, Some(ROOM), subscribe).await;
    let id = between(&subscribed, "SubscriptionId>", "<").to_owned();

    let unsubscribe =
        format!("<m:Unsubscribe><m:SubscriptionId>{id}</m:SubscriptionId></m:Unsubscribe>");
    let (_, first) = post_soap(&sim, Some(ROOM), &unsubscribe).await;
    let (_, second) = post_soap(&sim, Some(ROOM), &unsubscribe).await;

    assert!(first.contains("NoError"), "{first}");
    assert!(second.contains("ErrorSubscriptionNotFound"), "{second}");
    assert_valid_envelopes(&[subscribed, first, second]);
    sim.shutdown().await;
}

/// The text between the first `start` marker and the next `end` marker.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("{start} in {text}"));
    let to = text[from..]
        .find(end)
        .map(|i| from + i)
        .unwrap_or(text.len());
    &text[from..to]
}

const SUBSCRIBE_ALL: &str = r#"<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id="calendar"/></t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType><t:EventType>ModifiedEvent</t:EventType><t:EventType>DeletedEvent</t:EventType><t:EventType>MovedEvent</t:EventType></t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>"#;

fn appointment(subject: &str, start: &str, end: &str) -> NewAppointment {
    NewAppointment {
        subject: subject.into(),
        start: start.parse().unwrap(),
        end: end.parse().unwrap(),
        is_all_day: false,
        organizer: "user-001@contoso.example".into(),
        attendees: vec!["user-002@contoso.example".into()],
        time_zone: Some("Europe/Berlin".into()),
        recurrence: None,
        location: None,
        uid: None,
    }
}

async fn subscribe(sim: &SimHandle, mailbox: &str) -> (String, String) {
    let (status, body) = post_soap(sim, Some(mailbox), SUBSCRIBE_ALL).await;
    assert_eq!(status, 200, "{body}");
    (between(&body, "SubscriptionId>", "<").to_owned(), body)
}

fn streaming_request(ids: &[&str], minutes: u32) -> String {
    let ids: String = ids
        .iter()
        .map(|id| format!("<t:SubscriptionId>{id}</t:SubscriptionId>"))
        .collect();
    format!("<m:GetStreamingEvents><m:SubscriptionIds>{ids}</m:SubscriptionIds><m:ConnectionTimeout>{minutes}</m:ConnectionTimeout></m:GetStreamingEvents>")
}

/// Opens a stream and returns the response (headers received).
async fn open_stream(sim: &SimHandle, mailbox: &str, ids: &[&str]) -> reqwest::Response {
    reqwest::Client::new()
        .post(sim.ews_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(Some(mailbox), &streaming_request(ids, 1)))
        .send()
        .await
        .expect("stream opens")
}

/// Reads a stream to its end, returning the chunks as received.
async fn read_chunks(response: reqwest::Response) -> Vec<String> {
    use futures::StreamExt as _;
    let mut stream = response.bytes_stream();
    let mut chunks = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            chunks.push(String::from_utf8(chunk.expect("chunk").to_vec()).expect("utf-8"));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("stream ends within its connection timeout");
    chunks
}

#[tokio::test]
async fn streaming_delivers_created_modified_and_moved_events_then_closes() {
    let sim = start_simulator().await;
    let control = sim.control();
    let (id, subscribed) = subscribe(&sim, ROOM).await;
    let response = open_stream(&sim, ROOM, &[&id]).await;
    assert_eq!(response.status().as_u16(), 200);

    let created = control
        .create_appointment(
            ROOM,
            appointment("Planning", "2030-01-07T09:00:00Z", "2030-01-07T10:00:00Z"),
        )
        .unwrap();
    control
        .update_appointment(
            ROOM,
            &created.uid,
            AppointmentPatch {
                subject: Some("Planning v2".into()),
                ..AppointmentPatch::default()
            },
        )
        .unwrap();
    control
        .delete_appointment(ROOM, &created.uid, DeleteMode::Soft, None)
        .unwrap();
    let stream = read_chunks(response).await.concat();

    let documents = split_envelopes(&stream);
    assert_valid_envelopes(&documents);
    assert_valid_envelopes(&[subscribed]);
    assert!(stream.contains("CreatedEvent>"), "{stream}");
    assert!(stream.contains("ModifiedEvent>"), "{stream}");
    assert!(stream.contains("MovedEvent>"), "{stream}");
    assert!(
        stream.contains(&format!("OldItemId Id=\"{}\"", created.item_id)),
        "{stream}"
    );
    let last = documents.last().unwrap();
    assert!(last.contains(">Closed<"), "{last}");
    assert!(
        documents
            .iter()
            .any(|d| d.contains(">OK<") && !d.contains("Notifications")),
        "a heartbeat arrives while idle: {stream}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stream_envelopes_split_across_chunks_still_parse() {
    let sim = start_simulator().await;
    let control = sim.control();
    let (id, _) = subscribe(&sim, ROOM).await;
    let response = open_stream(&sim, ROOM, &[&id]).await;

    for day in 10..28 {
        control
            .create_appointment(
                ROOM,
                appointment(
                    "Chunky",
                    &format!("2030-01-{day}T09:00:00Z"),
                    &format!("2030-01-{day}T10:00:00Z"),
                ),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let chunks = read_chunks(response).await;

    let stream = chunks.concat();
    let documents = split_envelopes(&stream);
    assert_valid_envelopes(&documents);
    assert_eq!(
        stream.matches("CreatedEvent>").count(),
        2 * 18,
        "open and close tag per event"
    );
    let split = chunks
        .iter()
        .filter(|chunk| !chunk.trim_end().ends_with("Envelope>"))
        .count();
    assert!(split > 0, "some chunk ends inside an envelope: {chunks:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_second_stream_ends_the_first_and_unknown_ids_are_reported() {
    let sim = start_simulator().await;
    let (id, _) = subscribe(&sim, ROOM).await;
    let first = open_stream(&sim, ROOM, &[&id]).await;

    let second = open_stream(&sim, ROOM, &[&id]).await;
    let first_text = read_chunks(first).await.concat();
    let mixed = open_stream(&sim, ROOM, &[&id, "bm90LWEtc3Vic2NyaXB0aW9u"]).await;
    let mixed_text = read_chunks(mixed).await.concat();
    drop(second);

    assert!(
        first_text.contains("ErrorNewEventStreamConnectionOpened"),
        "{first_text}"
    );
    assert!(
        mixed_text.contains("ErrorSubscriptionNotFound"),
        "{mixed_text}"
    );
    assert!(
        mixed_text.contains("bm90LWEtc3Vic2NyaXB0aW9u"),
        "{mixed_text}"
    );
    assert!(!mixed_text.contains("Notification>"), "{mixed_text}");
    let mut documents = split_envelopes(&first_text);
    documents.extend(split_envelopes(&mixed_text));
    assert_valid_envelopes(&documents);
    sim.shutdown().await;
}

#[tokio::test]
async fn connection_timeout_outside_one_to_thirty_is_rejected() {
    let sim = start_simulator().await;
    let (id, _) = subscribe(&sim, ROOM).await;

    let (status, body) = post_soap(&sim, Some(ROOM), &streaming_request(&[&id], 31)).await;
    let t_namespace =
        streaming_request(&[&id], 1).replace("m:ConnectionTimeout", "t:ConnectionTimeout");
    let accepted = reqwest::Client::new()
        .post(sim.ews_url())
        .body(envelope(Some(ROOM), &t_namespace))
        .send()
        .await
        .unwrap();

    assert_eq!(status, 500);
    assert!(body.contains("ErrorSchemaValidation"), "{body}");
    assert_eq!(accepted.status().as_u16(), 200);
    drop(accepted);
    assert_valid_envelopes(&[body]);
    sim.shutdown().await;
}

fn sync_request(state: Option<&str>, max: u32) -> String {
    let state = state
        .map(|state| format!("<m:SyncState>{state}</m:SyncState>"))
        .unwrap_or_default();
    format!(
        r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:LastModifiedTime"/><t:FieldURI FieldURI="calendar:UID"/><t:FieldURI FieldURI="calendar:CalendarItemType"/></t:AdditionalProperties></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="calendar"/></m:SyncFolderId>{state}<m:MaxChangesReturned>{max}</m:MaxChangesReturned><m:SyncScope>NormalItems</m:SyncScope></m:SyncFolderItems>"#
    )
}

#[tokio::test]
async fn sync_folder_items_pages_then_returns_only_the_delta() {
    let sim = start_simulator().await;
    let control = sim.control();
    let mut uids = Vec::new();
    for day in 10..15 {
        let created = control
            .create_appointment(
                ROOM,
                appointment(
                    "Sync",
                    &format!("2030-02-{day}T09:00:00Z"),
                    &format!("2030-02-{day}T10:00:00Z"),
                ),
            )
            .unwrap();
        uids.push(created);
    }
    let mut bodies = Vec::new();

    let (_, page1) = post_soap(&sim, Some(ROOM), &sync_request(None, 2)).await;
    let state1 = between(&page1, "SyncState>", "<").to_owned();
    let (_, page2) = post_soap(&sim, Some(ROOM), &sync_request(Some(&state1), 2)).await;
    let state2 = between(&page2, "SyncState>", "<").to_owned();
    let (_, page3) = post_soap(&sim, Some(ROOM), &sync_request(Some(&state2), 2)).await;
    let state3 = between(&page3, "SyncState>", "<").to_owned();
    control
        .update_appointment(
            ROOM,
            &uids[0].uid,
            AppointmentPatch {
                subject: Some("Moved".into()),
                ..AppointmentPatch::default()
            },
        )
        .unwrap();
    control
        .delete_appointment(ROOM, &uids[1].uid, DeleteMode::Hard, None)
        .unwrap();
    let added = control
        .create_appointment(
            ROOM,
            appointment("New", "2030-02-20T09:00:00Z", "2030-02-20T10:00:00Z"),
        )
        .unwrap();
    let (_, delta) = post_soap(&sim, Some(ROOM), &sync_request(Some(&state3), 512)).await;
    let (_, bad) = post_soap(
        &sim,
        Some(ROOM),
        &sync_request(Some("bm90IGEgc3RhdGU="), 10),
    )
    .await;

    assert_eq!(page1.matches("Create>").count(), 4, "{page1}");
    assert!(page1.contains("IncludesLastItemInRange>false<"), "{page1}");
    assert_eq!(page2.matches("Create>").count(), 4, "{page2}");
    assert_eq!(page3.matches("Create>").count(), 2, "{page3}");
    assert!(page3.contains("IncludesLastItemInRange>true<"), "{page3}");
    assert_eq!(delta.matches("Update>").count(), 2, "{delta}");
    assert!(delta.contains(&uids[0].item_id), "{delta}");
    assert_eq!(delta.matches("Delete>").count(), 2, "{delta}");
    assert!(delta.contains(&uids[1].item_id), "{delta}");
    assert_eq!(delta.matches("Create>").count(), 2, "{delta}");
    assert!(delta.contains(&added.item_id), "{delta}");
    assert!(bad.contains("ErrorInvalidSyncStateData"), "{bad}");
    bodies.extend([page1, page2, page3, delta, bad]);
    assert_valid_envelopes(&bodies);
    sim.shutdown().await;
}

fn weekly_series() -> NewAppointment {
    let mut series = appointment("Weekly", "2030-03-04T09:00:00Z", "2030-03-04T10:00:00Z");
    series.time_zone = Some("UTC".into());
    series.recurrence = Some(Recurrence {
        pattern: Pattern::Weekly {
            interval: 1,
            days: vec![Weekday::Mon],
            first_day_of_week: Weekday::Mon,
        },
        start_date: "2030-03-04".parse().unwrap(),
        end: RangeEnd::Numbered { count: 6 },
    });
    series
}

/// A weekly series of six Mondays: the second moved to Tuesday, the third deleted.
fn series_with_exception(control: &SimControl) -> AppointmentRef {
    let series = control.create_appointment(ROOM, weekly_series()).unwrap();
    control
        .update_appointment(
            ROOM,
            &series.uid,
            AppointmentPatch {
                subject: Some("Moved to Tuesday".into()),
                start: Some("2030-03-12T13:00:00Z".parse().unwrap()),
                end: Some("2030-03-12T14:00:00Z".parse().unwrap()),
                occurrence_start: Some("2030-03-11T09:00:00Z".parse().unwrap()),
                ..AppointmentPatch::default()
            },
        )
        .unwrap();
    control
        .delete_appointment(
            ROOM,
            &series.uid,
            DeleteMode::Soft,
            Some("2030-03-18T09:00:00Z".parse().unwrap()),
        )
        .unwrap();
    series
}

const ALL_FIELDS: &str = r#"<m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/><t:FieldURI FieldURI="item:LastModifiedTime"/><t:FieldURI FieldURI="calendar:UID"/><t:FieldURI FieldURI="calendar:RecurrenceId"/><t:FieldURI FieldURI="calendar:Start"/><t:FieldURI FieldURI="calendar:End"/><t:FieldURI FieldURI="calendar:IsAllDayEvent"/><t:FieldURI FieldURI="calendar:Location"/><t:FieldURI FieldURI="calendar:IsCancelled"/><t:FieldURI FieldURI="calendar:IsRecurring"/><t:FieldURI FieldURI="calendar:CalendarItemType"/><t:FieldURI FieldURI="calendar:Organizer"/><t:FieldURI FieldURI="calendar:RequiredAttendees"/><t:FieldURI FieldURI="calendar:OptionalAttendees"/><t:FieldURI FieldURI="calendar:Resources"/><t:FieldURI FieldURI="calendar:AppointmentState"/><t:FieldURI FieldURI="calendar:Recurrence"/><t:FieldURI FieldURI="calendar:FirstOccurrence"/><t:FieldURI FieldURI="calendar:LastOccurrence"/><t:FieldURI FieldURI="calendar:ModifiedOccurrences"/><t:FieldURI FieldURI="calendar:DeletedOccurrences"/><t:FieldURI FieldURI="calendar:StartTimeZone"/><t:FieldURI FieldURI="calendar:EndTimeZone"/><t:ExtendedFieldURI PropertySetId="6ED8DA90-450B-101B-98DA-00AA003F1305" PropertyId="35" PropertyType="Binary"/><t:ExtendedFieldURI PropertySetId="6ed8da90-450b-101b-98da-00aa003f1305" PropertyId="3" PropertyType="Binary"/></t:AdditionalProperties></m:ItemShape>"#;

#[tokio::test]
async fn get_item_returns_fields_and_item_not_found_in_request_order() {
    let sim = start_simulator().await;
    let control = sim.control();
    let series = series_with_exception(&control);
    let single = control
        .create_appointment(
            ROOM,
            appointment("Gone soon", "2030-03-05T09:00:00Z", "2030-03-05T10:00:00Z"),
        )
        .unwrap();
    control
        .delete_appointment(ROOM, &single.uid, DeleteMode::Hard, None)
        .unwrap();

    let request = format!(
        r#"<m:GetItem>{ALL_FIELDS}<m:ItemIds><t:ItemId Id="{}"/><t:ItemId Id="{}"/><t:OccurrenceItemId RecurringMasterId="{}" InstanceIndex="2"/></m:ItemIds></m:GetItem>"#,
        series.item_id, single.item_id, series.item_id
    );
    let (status, body) = post_soap(&sim, Some(ROOM), &request).await;

    assert_eq!(status, 200);
    let master = body.find("RecurringMaster<").expect("master first");
    let missing = body.find("ErrorItemNotFound").expect("deleted id second");
    let exception = body.find(">Exception<").expect("occurrence by index third");
    assert!(master < missing && missing < exception, "{body}");
    for expected in [
        &series.uid,
        "WeeklyRecurrence",
        "NumberedRecurrence",
        "<t:NumberOfOccurrences>6<",
        "FirstOccurrence",
        "LastOccurrence",
        "ModifiedOccurrences",
        "<t:OriginalStart>2030-03-11T09:00:00Z<",
        "DeletedOccurrences",
        "<t:Start>2030-03-18T09:00:00Z<",
        "StartTimeZone Id=\"UTC\"",
        "PropertyId=\"35\"",
        "user-002@contoso.example",
        "room-001@contoso.example",
        "<t:AppointmentState>3<",
        "Moved to Tuesday",
    ] {
        assert!(body.contains(expected), "{expected} in {body}");
    }
    assert_valid_envelopes(&[body]);
    sim.shutdown().await;
}

fn calendar_view(start: &str, end: &str, max: Option<u32>) -> String {
    let max = max
        .map(|max| format!(" MaxEntriesReturned=\"{max}\""))
        .unwrap_or_default();
    format!(
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/><t:FieldURI FieldURI="calendar:Start"/><t:FieldURI FieldURI="calendar:End"/><t:FieldURI FieldURI="calendar:CalendarItemType"/><t:FieldURI FieldURI="calendar:UID"/><t:FieldURI FieldURI="calendar:Organizer"/><t:FieldURI FieldURI="calendar:RequiredAttendees"/></t:AdditionalProperties></m:ItemShape><m:CalendarView{max} StartDate="{start}" EndDate="{end}"/><m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds></m:FindItem>"#
    )
}

#[tokio::test]
async fn calendar_view_expands_a_weekly_series_with_an_exception_and_a_deleted_occurrence() {
    let sim = start_simulator().await;
    let control = sim.control();
    series_with_exception(&control);

    let (_, body) = post_soap(
        &sim,
        Some(ROOM),
        &calendar_view("2030-03-01T00:00:00Z", "2030-04-30T00:00:00Z", None),
    )
    .await;
    let (_, truncated) = post_soap(
        &sim,
        Some(ROOM),
        &calendar_view("2030-03-01T00:00:00Z", "2030-04-30T00:00:00Z", Some(2)),
    )
    .await;
    let (_, too_big) = post_soap(
        &sim,
        Some(ROOM),
        &calendar_view("2030-01-01T00:00:00Z", "2032-06-01T00:00:00Z", None),
    )
    .await;
    let (_, edge) = post_soap(
        &sim,
        Some(ROOM),
        &calendar_view("2030-03-04T10:00:00Z", "2030-03-11T09:00:00Z", None),
    )
    .await;

    assert_eq!(body.matches(">Occurrence<").count(), 4, "{body}");
    assert_eq!(body.matches(">Exception<").count(), 1, "{body}");
    assert!(body.contains("<t:Start>2030-03-12T13:00:00Z<"), "{body}");
    assert!(!body.contains("2030-03-18T09:00:00Z"), "{body}");
    assert!(!body.contains("RecurringMaster"), "{body}");
    assert!(
        !body.contains("EmailAddress"),
        "organizer name only: {body}"
    );
    assert!(!body.contains("RequiredAttendees"), "{body}");
    assert!(
        truncated.contains("IncludesLastItemInRange=\"false\""),
        "{truncated}"
    );
    assert!(truncated.contains("TotalItemsInView=\"5\""), "{truncated}");
    assert_eq!(
        truncated.matches("<t:CalendarItem>").count(),
        2,
        "{truncated}"
    );
    assert!(
        too_big.contains("ErrorCalendarViewRangeTooBig"),
        "{too_big}"
    );
    assert!(
        edge.contains("TotalItemsInView=\"0\""),
        "[start, end) excludes touching items: {edge}"
    );
    assert_valid_envelopes(&[body, truncated, too_big, edge]);
    sim.shutdown().await;
}

#[tokio::test]
async fn get_folder_reports_the_calendar_with_its_count() {
    let sim = start_simulator().await;
    sim.control()
        .create_appointment(
            ROOM,
            appointment("Count me", "2030-03-05T09:00:00Z", "2030-03-05T10:00:00Z"),
        )
        .unwrap();

    let (_, body) = post_soap(&sim, Some(ROOM), r#"<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="calendar"/><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>"#).await;
    let folder_id = between(&body, "FolderId Id=\"", "\"").to_owned();
    let by_id = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:FolderId Id="{folder_id}"/><t:FolderId Id="bm9wZQ=="/></m:FolderIds></m:GetFolder>"#
    );
    let (_, by_id) = post_soap(&sim, None, &by_id).await;

    assert!(body.contains("CalendarFolder"), "{body}");
    assert!(body.contains("<t:TotalCount>1<"), "{body}");
    assert!(body.contains("ErrorFolderNotFound"), "{body}");
    assert!(
        by_id.contains("CalendarFolder") && by_id.contains("<t:TotalCount>1<"),
        "{by_id}"
    );
    assert!(by_id.contains("ErrorInvalidIdMalformed"), "{by_id}");
    assert_valid_envelopes(&[body, by_id]);
    sim.shutdown().await;
}

/// Sends a control API request and returns the status and the JSON body (null if empty).
async fn call_json(
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("control request is sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body is read");
    let value = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).expect("body is JSON")
    };
    (status, value)
}

#[tokio::test]
async fn control_api_round_trip_over_http() {
    use reqwest::Method;
    let sim = start_simulator().await;
    let base = sim.base_url();
    let room = format!("{base}/_sim/mailboxes/room-x@contoso.example/appointments");

    let (added, _) = call_json(
        Method::POST,
        format!("{base}/_sim/mailboxes"),
        Some(serde_json::json!({"email": "room-x@contoso.example", "display_name": "Room X", "kind": "room", "aliases": []})),
    )
    .await;
    let (created_status, created) = call_json(
        Method::POST,
        room.clone(),
        Some(serde_json::json!({"subject": "Standup", "start": "2030-05-06T08:00:00Z", "end": "2030-05-06T08:15:00Z", "is_all_day": false, "organizer": "user-001@contoso.example", "attendees": [], "time_zone": "Europe/Berlin", "recurrence": {"pattern": {"type": "daily", "interval": 1}, "start_date": "2030-05-06", "end": {"type": "numbered", "count": 3}}})),
    )
    .await;
    let uid = created["uid"].as_str().expect("uid").to_owned();
    let (patched, _) = call_json(
        Method::PATCH,
        format!("{room}/{uid}"),
        Some(serde_json::json!({"subject": "Late standup", "start": "2030-05-07T09:00:00Z", "end": "2030-05-07T09:15:00Z", "occurrence_start": "2030-05-07T08:00:00Z"})),
    )
    .await;
    let (deleted, _) = call_json(
        Method::DELETE,
        format!("{room}/{uid}?mode=soft&occurrence_start=2030-05-08T08:00:00Z"),
        None,
    )
    .await;
    let (_, truth) = call_json(
        Method::GET,
        format!("{room}?from=2030-05-01T00:00:00Z&to=2030-06-01T00:00:00Z"),
        None,
    )
    .await;
    let (_, cancelled) = call_json(Method::POST, format!("{room}/{uid}/cancel"), None).await;
    let (missing_status, missing) = call_json(
        Method::POST,
        format!("{base}/_sim/mailboxes/nobody@contoso.example/appointments"),
        Some(serde_json::json!({"subject": "x", "start": "2030-05-06T08:00:00Z", "end": "2030-05-06T08:15:00Z", "organizer": "user-001@contoso.example"})),
    )
    .await;
    let (bad_status, bad) = call_json(
        Method::POST,
        room.clone(),
        Some(serde_json::json!({"subject": 5})),
    )
    .await;
    let (_, stats) = call_json(Method::GET, format!("{base}/_sim/stats"), None).await;

    assert_eq!(added, 201);
    assert_eq!(created_status, 201);
    assert_eq!(patched, 200);
    assert_eq!(deleted, 204);
    let truth = truth.as_array().expect("truth is a list");
    assert_eq!(truth.len(), 2, "{truth:?}");
    assert_eq!(truth[0]["occurrence_start"], "2030-05-06T08:00:00Z");
    assert_eq!(truth[1]["subject"], "Late standup");
    assert_eq!(truth[1]["start"], "2030-05-07T09:00:00Z");
    assert_ne!(cancelled["change_key"], created["change_key"]);
    assert_eq!(missing_status, 404);
    assert!(missing["error"]
        .as_str()
        .unwrap()
        .contains("nobody@contoso.example"));
    assert_eq!(bad_status, 400);
    assert!(bad["error"].as_str().unwrap().contains("invalid JSON body"));
    assert_eq!(stats["mailboxes"], 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn workload_applies_the_requested_number_of_changes() {
    let sim = start_simulator().await;
    let control = sim.control();

    let report = control
        .run_workload(Workload {
            changes: 300,
            rate_per_sec: 0.0,
            seed: 7,
            mix: WorkloadMix::default(),
            wait: true,
        })
        .await
        .unwrap();

    let kinds = report.created
        + report.updated
        + report.moved
        + report.cancelled
        + report.soft_deleted
        + report.hard_deleted
        + report.recurring
        + report.exceptions
        + report.occurrences_deleted;
    assert_eq!(report.changes, 300);
    assert_eq!(kinds, 300, "{report:?}");
    assert!(
        report.moved > 0 && report.recurring > 0 && report.exceptions > 0,
        "{report:?}"
    );
    assert!(control.stats().changes >= 300);
    sim.shutdown().await;
}

#[tokio::test]
async fn subscribe_rejects_delegate_and_multi_mailbox_requests() {
    let sim = start_simulator().await;
    let folder = |mailbox: &str| {
        format!(
            r#"<t:DistinguishedFolderId Id="calendar"><t:Mailbox><t:EmailAddress>{mailbox}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"#
        )
    };
    let request = |folders: String| {
        format!(
            r#"<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds>{folders}</t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>"#
        )
    };

    let (_, delegate) = post_soap(
        &sim,
        Some(ROOM),
        &request(folder("room-002@contoso.example")),
    )
    .await;
    let two = format!(
        "{}{}",
        folder("room-002@contoso.example"),
        folder("room-003@contoso.example")
    );
    let (_, multi) = post_soap(&sim, None, &request(two)).await;
    let (_, own) = post_soap(&sim, None, &request(folder("room-002@contoso.example"))).await;
    let (status, unknown) = post_soap(&sim, Some("nobody@contoso.example"), SUBSCRIBE_ALL).await;

    assert!(
        delegate.contains("ErrorSubscriptionDelegateAccessNotSupported"),
        "{delegate}"
    );
    assert!(multi.contains("ErrorInvalidSubscriptionRequest"), "{multi}");
    assert!(own.contains("NoError"), "{own}");
    assert_eq!(status, 500);
    assert!(unknown.contains("ErrorNonExistentMailbox"), "{unknown}");
    assert_valid_envelopes(&[delegate, multi, own, unknown]);
    sim.shutdown().await;
}

#[tokio::test]
async fn one_stream_carries_notifications_of_several_subscriptions() {
    let sim = start_simulator().await;
    let control = sim.control();
    let other = "room-002@contoso.example";
    let (first, _) = subscribe(&sim, ROOM).await;
    let (second, _) = subscribe(&sim, other).await;
    control
        .create_appointment(
            ROOM,
            appointment("A", "2030-01-07T09:00:00Z", "2030-01-07T10:00:00Z"),
        )
        .unwrap();
    control
        .create_appointment(
            other,
            appointment("B", "2030-01-07T09:00:00Z", "2030-01-07T10:00:00Z"),
        )
        .unwrap();

    let stream = read_chunks(open_stream(&sim, ROOM, &[&first, &second]).await)
        .await
        .concat();

    let documents = split_envelopes(&stream);
    assert_valid_envelopes(&documents);
    let with_both = documents
        .iter()
        .find(|document| document.contains(&first) && document.contains(&second))
        .expect("queued events of both subscriptions share the first envelope");
    assert_eq!(with_both.matches("Notification>").count(), 4, "{with_both}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_overflowing_queue_reports_missed_events_and_the_subscription_survives() {
    let sim = Simulator::start(SimConfig {
        rooms: 1,
        users: 1,
        max_queued_events: 8,
        minute: Duration::from_millis(800),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let control = sim.control();
    let (id, _) = subscribe(&sim, ROOM).await;
    for day in 10..15 {
        control
            .create_appointment(
                ROOM,
                appointment(
                    "Flood",
                    &format!("2030-01-{day}T09:00:00Z"),
                    &format!("2030-01-{day}T10:00:00Z"),
                ),
            )
            .unwrap();
    }

    let first = read_chunks(open_stream(&sim, ROOM, &[&id]).await)
        .await
        .concat();
    control
        .create_appointment(
            ROOM,
            appointment("After", "2030-01-20T09:00:00Z", "2030-01-20T10:00:00Z"),
        )
        .unwrap();
    let second = read_chunks(open_stream(&sim, ROOM, &[&id]).await)
        .await
        .concat();

    assert!(first.contains("ErrorMissedNotificationEvents"), "{first}");
    assert!(first.contains(&id), "{first}");
    assert!(second.contains("CreatedEvent>"), "{second}");
    let mut documents = split_envelopes(&first);
    documents.extend(split_envelopes(&second));
    assert_valid_envelopes(&documents);
    sim.shutdown().await;
}

#[tokio::test]
async fn occurrence_and_master_ids_lead_to_each_other() {
    let sim = start_simulator().await;
    let control = sim.control();
    let series = series_with_exception(&control);
    let (_, view) = post_soap(
        &sim,
        Some(ROOM),
        &calendar_view("2030-03-25T00:00:00Z", "2030-03-26T00:00:00Z", None),
    )
    .await;
    let occurrence = between(&view, "ItemId Id=\"", "\"").to_owned();

    let request = format!(
        r#"<m:GetItem>{ALL_FIELDS}<m:ItemIds><t:ItemId Id="{occurrence}"/><t:RecurringMasterItemId OccurrenceId="{occurrence}"/><t:OccurrenceItemId RecurringMasterId="{}" InstanceIndex="3"/><t:OccurrenceItemId RecurringMasterId="{}" InstanceIndex="9"/></m:ItemIds></m:GetItem>"#,
        series.item_id, series.item_id
    );
    let (_, body) = post_soap(&sim, Some(ROOM), &request).await;

    let messages: Vec<&str> = body
        .split("GetItemResponseMessage ResponseClass")
        .skip(1)
        .collect();
    assert_eq!(messages.len(), 4, "{body}");
    assert!(
        messages[0].contains(">Occurrence<") && messages[0].contains("2030-03-25T09:00:00Z"),
        "{body}"
    );
    assert!(
        messages[1].contains(">RecurringMaster<") && messages[1].contains(&series.item_id),
        "{body}"
    );
    assert!(
        messages[2].contains("ErrorItemNotFound"),
        "the third occurrence is deleted: {body}"
    );
    assert!(
        messages[3].contains("ErrorItemNotFound"),
        "past the series end: {body}"
    );
    assert_valid_envelopes(&[view, body]);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_modified_events_follow_the_configured_ratio() {
    let sim = Simulator::start(SimConfig {
        rooms: 1,
        users: 1,
        duplicate_event_ratio: 1.0,
        minute: Duration::from_millis(600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let control = sim.control();
    let created = control
        .create_appointment(
            ROOM,
            appointment("Twice", "2030-01-07T09:00:00Z", "2030-01-07T10:00:00Z"),
        )
        .unwrap();
    let (id, _) = subscribe(&sim, ROOM).await;
    let updated = control
        .update_appointment(
            ROOM,
            &created.uid,
            AppointmentPatch {
                subject: Some("Again".into()),
                ..AppointmentPatch::default()
            },
        )
        .unwrap();

    let stream = read_chunks(open_stream(&sim, ROOM, &[&id]).await)
        .await
        .concat();

    assert_eq!(
        stream
            .matches(&format!("ChangeKey=\"{}\"", updated.change_key))
            .count(),
        2,
        "{stream}"
    );
    assert_valid_envelopes(&split_envelopes(&stream));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_content() {
    let workload = Workload {
        changes: 200,
        rate_per_sec: 0.0,
        seed: 3,
        mix: WorkloadMix::default(),
        wait: true,
    };
    let mut contents = Vec::new();
    for _ in 0..2 {
        let sim = start_simulator().await;
        let control = sim.control();
        control.run_workload(workload.clone()).await.unwrap();
        let from = chrono::Utc::now() - chrono::Duration::days(1);
        let to = from + chrono::Duration::days(700);
        let mut content = Vec::new();
        for mailbox in control.mailboxes() {
            for mut entry in control.appointments(&mailbox.email, from, to).unwrap() {
                entry.last_modified = chrono::DateTime::UNIX_EPOCH;
                content.push((mailbox.email.clone(), entry));
            }
        }
        contents.push(content);
        sim.shutdown().await;
    }

    assert!(contents[0].len() > 50, "{}", contents[0].len());
    assert_eq!(contents[0], contents[1]);
}

#[tokio::test]
async fn get_item_writes_every_recurrence_pattern_and_range_valid_against_the_schema() {
    use booking_sync::recurrence::{DaySelector, WeekIndex};
    let sim = start_simulator().await;
    let control = sim.control();
    let start_date = "2030-06-03".parse().unwrap();
    let patterns = [
        (Pattern::Daily { interval: 2 }, RangeEnd::NoEnd),
        (
            Pattern::Weekly {
                interval: 1,
                days: vec![Weekday::Mon, Weekday::Thu],
                first_day_of_week: Weekday::Sun,
            },
            RangeEnd::EndDate {
                date: "2030-08-01".parse().unwrap(),
            },
        ),
        (
            Pattern::AbsoluteMonthly {
                interval: 1,
                day_of_month: 3,
            },
            RangeEnd::Numbered { count: 4 },
        ),
        (
            Pattern::RelativeMonthly {
                interval: 2,
                days_of_week: DaySelector::Weekday(Weekday::Tue),
                index: WeekIndex::Second,
            },
            RangeEnd::Numbered { count: 3 },
        ),
        (
            Pattern::AbsoluteYearly {
                month: 6,
                day_of_month: 3,
            },
            RangeEnd::NoEnd,
        ),
        (
            Pattern::RelativeYearly {
                month: 11,
                days_of_week: DaySelector::Weekdays,
                index: WeekIndex::Last,
            },
            RangeEnd::EndDate {
                date: "2035-12-31".parse().unwrap(),
            },
        ),
    ];
    let mut ids = String::new();
    for (pattern, end) in patterns {
        let mut series = appointment("Series", "2030-06-03T09:00:00Z", "2030-06-03T10:00:00Z");
        series.recurrence = Some(Recurrence {
            pattern,
            start_date,
            end,
        });
        let created = control.create_appointment(ROOM, series).unwrap();
        ids.push_str(&format!("<t:ItemId Id=\"{}\"/>", created.item_id));
    }

    let request = format!("<m:GetItem>{ALL_FIELDS}<m:ItemIds>{ids}</m:ItemIds></m:GetItem>");
    let (_, body) = post_soap(&sim, Some(ROOM), &request).await;

    for element in [
        "DailyRecurrence",
        "WeeklyRecurrence",
        "AbsoluteMonthlyRecurrence",
        "RelativeMonthlyRecurrence",
        "AbsoluteYearlyRecurrence",
        "RelativeYearlyRecurrence",
        "NoEndRecurrence",
        "EndDateRecurrence",
        "NumberedRecurrence",
        "<t:DaysOfWeek>Monday Thursday<",
        "<t:DayOfWeekIndex>Second<",
        "<t:Month>November<",
    ] {
        assert!(body.contains(element), "{element} in {body}");
    }
    assert_valid_envelopes(&[body]);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_streams_cleanly() {
    let sim = Simulator::start(SimConfig {
        rooms: 1,
        users: 1,
        minute: Duration::from_secs(60),
        heartbeat_interval: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (id, _) = subscribe(&sim, ROOM).await;
    let response = open_stream(&sim, ROOM, &[&id]).await;
    let reader = tokio::spawn(read_chunks(response));

    tokio::time::timeout(Duration::from_secs(10), sim.shutdown())
        .await
        .expect("shutdown does not wait for the stream's timeout");
    let stream = reader.await.unwrap().concat();

    let documents = split_envelopes(&stream);
    assert!(
        documents
            .last()
            .is_some_and(|last| last.contains(">Closed<")),
        "{stream}"
    );
    assert_valid_envelopes(&documents);
}

#[tokio::test]
async fn workload_over_http_runs_in_the_background_when_asked() {
    use reqwest::Method;
    let sim = start_simulator().await;
    let url = format!("{}/_sim/workload", sim.base_url());

    let (waited, report) = call_json(
        Method::POST,
        url.clone(),
        Some(
            serde_json::json!({"changes": 20, "rate_per_sec": 0, "seed": 1, "mix": {"create": 1}}),
        ),
    )
    .await;
    let (started, body) = call_json(
        Method::POST,
        url.clone(),
        Some(serde_json::json!({"changes": 5, "rate_per_sec": 100, "seed": 2, "wait": false})),
    )
    .await;
    let (refused, error) = call_json(
        Method::POST,
        url,
        Some(serde_json::json!({"changes": 5, "mix": {"create": 0, "update": 0, "move": 0, "cancel": 0, "delete": 0, "recurring": 0, "exception": 0}})),
    )
    .await;
    let mut changes = 0;
    for _ in 0..50 {
        changes = sim.control().stats().changes;
        if changes >= 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(waited, 200);
    assert_eq!(report["created"], 20);
    assert_eq!(started, 202, "{body}");
    assert_eq!(refused, 400);
    assert!(error["error"].as_str().unwrap().contains("mix"), "{error}");
    assert!(changes >= 25, "the background workload ran: {changes}");
    sim.shutdown().await;
}
