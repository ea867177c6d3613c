//! Every response the simulator sends is valid against Exchange's own schema.
//!
//! Exercises every EWS operation in its success and error forms, a push notification,
//! the stream envelopes (events, heartbeat, Closed, errors) and the fault answers, and
//! validates each body with xmllint. Autodiscover uses another schema; it is checked for
//! well-formedness and its fields only.

use std::sync::Arc;
use std::time::Duration;

use booking_sync::domain::MailboxAddress;
use booking_sync::sim::faults::Fault;
use booking_sync::sim::limits::{LimitsConfig, RequestBudget};
use booking_sync::sim::{DeleteMode, SimConfig, SimControl, SimHandle};

use crate::sim_extras::client::{self, between, Ews};
use crate::sim_extras::{
    appointment, autodiscover, open_stream, push_subscribe, serve_callback, start, wait_until,
    Callback, OTHER_ROOM, ROOM,
};
use crate::support::xsd::{assert_valid_envelopes, split_envelopes};

/// Collects response bodies to validate in one xmllint run.
#[derive(Default)]
struct Bodies(Vec<String>);

impl Bodies {
    fn add(&mut self, body: String) -> String {
        assert!(!body.is_empty(), "empty response body");
        self.0.push(body.clone());
        body
    }
}

async fn call(ews: &Ews, bodies: &mut Bodies, mailbox: Option<&str>, request: &str) -> String {
    let answer = ews.call(mailbox, &[], request).await;
    bodies.add(answer.body)
}

const ITEM_SHAPE: &str = "<m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape>";

async fn exercise_calendar_operations(simulator: &SimHandle, ews: &Ews, bodies: &mut Bodies) {
    let control = simulator.control();
    let created = control
        .create_appointment(ROOM, appointment("Schema single", 9))
        .expect("created");
    let mut series = appointment("Schema series", 13);
    series.recurrence = Some(booking_sync::recurrence::Recurrence {
        pattern: booking_sync::recurrence::Pattern::Daily { interval: 1 },
        start_date: series.start.date_naive(),
        end: booking_sync::recurrence::RangeEnd::Numbered { count: 3 },
    });
    let master = control.create_appointment(ROOM, series).expect("series");

    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:GetFolder><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape>\
         <m:FolderIds><t:DistinguishedFolderId Id=\"calendar\"/></m:FolderIds></m:GetFolder>",
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>\
         <m:FolderIds><t:FolderId Id=\"bm9wZQ==\"/></m:FolderIds></m:GetFolder>",
    )
    .await;
    let first_sync = call(
        ews,
        bodies,
        Some(ROOM),
        &format!(
            "<m:SyncFolderItems>{ITEM_SHAPE}<m:SyncFolderId><t:DistinguishedFolderId Id=\"calendar\"/>\
             </m:SyncFolderId><m:MaxChangesReturned>1</m:MaxChangesReturned></m:SyncFolderItems>"
        ),
    )
    .await;
    let state = between(&first_sync, "SyncState>", "<").expect("a sync state");
    control
        .update_appointment(
            ROOM,
            &created.uid,
            booking_sync::sim::AppointmentPatch {
                subject: Some("Schema single (moved)".to_owned()),
                ..Default::default()
            },
        )
        .expect("updated");
    control
        .delete_appointment(ROOM, &master.uid, DeleteMode::Hard, None)
        .expect("deleted");
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!(
            "<m:SyncFolderItems>{ITEM_SHAPE}<m:SyncFolderId><t:DistinguishedFolderId Id=\"calendar\"/>\
             </m:SyncFolderId><m:SyncState>{state}</m:SyncState><m:MaxChangesReturned>100</m:MaxChangesReturned>\
             </m:SyncFolderItems>"
        ),
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!(
            "<m:SyncFolderItems>{ITEM_SHAPE}<m:SyncFolderId><t:DistinguishedFolderId Id=\"calendar\"/>\
             </m:SyncFolderId><m:SyncState>garbage</m:SyncState><m:MaxChangesReturned>100</m:MaxChangesReturned>\
             </m:SyncFolderItems>"
        ),
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!(
            "<m:GetItem>{ITEM_SHAPE}<m:ItemIds><t:ItemId Id=\"{}\"/><t:ItemId Id=\"{}\"/>\
             <t:ItemId Id=\"bm9wZQ==\"/></m:ItemIds></m:GetItem>",
            created.item_id, master.item_id
        ),
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape>\
         <m:CalendarView StartDate=\"2026-05-31T00:00:00Z\" EndDate=\"2026-06-10T00:00:00Z\"/>\
         <m:ParentFolderIds><t:DistinguishedFolderId Id=\"calendar\"/></m:ParentFolderIds></m:FindItem>",
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>\
         <m:CalendarView StartDate=\"2026-01-01T00:00:00Z\" EndDate=\"2030-01-01T00:00:00Z\"/>\
         <m:ParentFolderIds><t:DistinguishedFolderId Id=\"calendar\"/></m:ParentFolderIds></m:FindItem>",
    )
    .await;
    exercise_exception(&control, ews, bodies).await;
}

/// A series with an exception: the master lists it (with its change key), and the
/// exception itself is fetched.
async fn exercise_exception(control: &SimControl, ews: &Ews, bodies: &mut Bodies) {
    let mut series = appointment("Schema series with exception", 15);
    series.recurrence = Some(booking_sync::recurrence::Recurrence {
        pattern: booking_sync::recurrence::Pattern::Daily { interval: 1 },
        start_date: series.start.date_naive(),
        end: booking_sync::recurrence::RangeEnd::Numbered { count: 3 },
    });
    let second = series.start + chrono::Duration::days(1);
    let master = control.create_appointment(ROOM, series).expect("series");
    control
        .update_appointment(
            ROOM,
            &master.uid,
            booking_sync::sim::AppointmentPatch {
                subject: Some("Schema exception".to_owned()),
                occurrence_start: Some(second),
                ..Default::default()
            },
        )
        .expect("exception");
    let listed = call(
        ews,
        bodies,
        Some(ROOM),
        &format!(
            "<m:GetItem>{ITEM_SHAPE}<m:ItemIds><t:ItemId Id=\"{}\"/></m:ItemIds></m:GetItem>",
            master.item_id
        ),
    )
    .await;
    let occurrence = between(
        &listed,
        "<t:ModifiedOccurrences><t:Occurrence><t:ItemId Id=\"",
        "\"",
    )
    .expect("the master lists its exception");
    assert!(
        listed.contains(&format!("<t:ItemId Id=\"{occurrence}\" ChangeKey=\"")),
        "{listed}"
    );
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!(
            "<m:GetItem>{ITEM_SHAPE}<m:ItemIds><t:ItemId Id=\"{occurrence}\"/></m:ItemIds></m:GetItem>"
        ),
    )
    .await;
}

async fn exercise_directory_operations(ews: &Ews, bodies: &mut Bodies) {
    for entry in ["u001@contoso.example", "nobody@contoso.example", "User"] {
        call(
            ews,
            bodies,
            Some(ROOM),
            &format!(
                "<m:ResolveNames ReturnFullContactData=\"false\"><m:UnresolvedEntry>{entry}</m:UnresolvedEntry></m:ResolveNames>"
            ),
        )
        .await;
    }
    let lists = call(ews, bodies, Some(ROOM), "<m:GetRoomLists/>").await;
    let list = between(&lists, "<t:EmailAddress>", "<").expect("a room list");
    for address in [list.as_str(), "nolist@contoso.example"] {
        call(
            ews,
            bodies,
            Some(ROOM),
            &format!("<m:GetRooms><m:RoomList><t:EmailAddress>{address}</t:EmailAddress></m:RoomList></m:GetRooms>"),
        )
        .await;
    }
    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:CreateItem MessageDisposition=\"SendOnly\"><m:Items><t:Message><t:Subject>Hi</t:Subject>\
         <t:Body BodyType=\"Text\">Body</t:Body><t:ToRecipients><t:Mailbox><t:EmailAddress>user-001@contoso.example\
         </t:EmailAddress></t:Mailbox></t:ToRecipients></t:Message></m:Items></m:CreateItem>",
    )
    .await;
    let tagged = "<t:ExtendedProperty><t:ExtendedFieldURI PropertySetId=\"5d3c8a4e-2f61-4b7a-9c0e-8b1f6d2a7e43\" \
        PropertyName=\"BookingSyncMessageId\" PropertyType=\"String\"/><t:Value>digest-1</t:Value></t:ExtendedProperty>";
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!("<m:CreateItem MessageDisposition=\"SendAndSaveCopy\"><m:SavedItemFolderId>\
         <t:DistinguishedFolderId Id=\"sentitems\"/></m:SavedItemFolderId><m:Items><t:Message><t:Subject>Hi</t:Subject>\
         <t:Body BodyType=\"HTML\">&lt;p&gt;Body&lt;/p&gt;</t:Body>{tagged}<t:ToRecipients><t:Mailbox>\
         <t:EmailAddress>user-001@contoso.example</t:EmailAddress></t:Mailbox></t:ToRecipients></t:Message></m:Items></m:CreateItem>"),
    )
    .await;
    for value in ["digest-1", "digest-2"] {
        let found = call(
            ews,
            bodies,
            Some(ROOM),
            &format!("<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>\
             <m:IndexedPageItemView MaxEntriesReturned=\"1\" Offset=\"0\" BasePoint=\"Beginning\"/>\
             <m:Restriction><t:IsEqualTo><t:ExtendedFieldURI PropertySetId=\"5d3c8a4e-2f61-4b7a-9c0e-8b1f6d2a7e43\" \
             PropertyName=\"BookingSyncMessageId\" PropertyType=\"String\"/><t:FieldURIOrConstant>\
             <t:Constant Value=\"{value}\"/></t:FieldURIOrConstant></t:IsEqualTo></m:Restriction>\
             <m:ParentFolderIds><t:DistinguishedFolderId Id=\"sentitems\"/></m:ParentFolderIds></m:FindItem>"),
        )
        .await;
        assert_eq!(
            found.contains("<t:ItemId"),
            value == "digest-1",
            "{value}: {found}"
        );
    }
    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>\
         <m:ParentFolderIds><t:DistinguishedFolderId Id=\"sentitems\"/></m:ParentFolderIds></m:FindItem>",
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:CreateItem MessageDisposition=\"SaveOnly\"><m:Items><t:Message><t:Subject>Hi</t:Subject>\
         </t:Message></m:Items></m:CreateItem>",
    )
    .await;
}

async fn exercise_subscriptions_and_streams(simulator: &SimHandle, ews: &Ews, bodies: &mut Bodies) {
    let subscribed = call(ews, bodies, Some(ROOM), client::streaming_subscribe()).await;
    let id = client::subscription_id(&subscribed);
    call(ews, bodies, Some(ROOM), "<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds>\
        <t:DistinguishedFolderId Id=\"calendar\"><t:Mailbox><t:EmailAddress>ghost@contoso.example</t:EmailAddress>\
        </t:Mailbox></t:DistinguishedFolderId></t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType>\
        </t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>").await;

    // Events, a heartbeat and the final Closed message, in one stream of one minute.
    let stream = open_stream(simulator, std::slice::from_ref(&id)).await;
    simulator
        .control()
        .create_appointment(ROOM, appointment("Streamed", 15))
        .expect("created");
    let text = tokio::time::timeout(Duration::from_secs(10), stream.text())
        .await
        .expect("the stream closes after its ConnectionTimeout")
        .expect("stream body");
    assert!(text.contains("CreatedEvent"), "{text}");
    assert!(text.contains(">OK<"), "no heartbeat: {text}");
    assert!(text.contains(">Closed<"), "no Closed message: {text}");
    for envelope in split_envelopes(&text) {
        bodies.add(envelope);
    }

    // Missed events, then a dead id and an unknown id.
    simulator.control().inject_fault(Fault::MissedEvents {
        mailboxes: vec![MailboxAddress::new(ROOM)],
        count: None,
    });
    let missed_text = tokio::time::timeout(
        Duration::from_secs(10),
        open_stream(simulator, std::slice::from_ref(&id))
            .await
            .text(),
    )
    .await
    .expect("the stream closes after its ConnectionTimeout")
    .expect("stream body");
    assert!(
        missed_text.contains("ErrorMissedNotificationEvents"),
        "{missed_text}"
    );
    for envelope in split_envelopes(&missed_text) {
        bodies.add(envelope);
    }
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!("<m:Unsubscribe><m:SubscriptionId>{id}</m:SubscriptionId></m:Unsubscribe>"),
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!("<m:Unsubscribe><m:SubscriptionId>{id}</m:SubscriptionId></m:Unsubscribe>"),
    )
    .await;
    let unknown = open_stream(simulator, &[id])
        .await
        .text()
        .await
        .expect("stream body");
    for envelope in split_envelopes(&unknown) {
        bodies.add(envelope);
    }
    call(
        ews,
        bodies,
        Some(ROOM),
        &client::get_streaming_events(&["x".to_owned()], 31),
    )
    .await;
}

async fn exercise_push(simulator: &SimHandle, ews: &Ews, bodies: &mut Bodies) {
    let callback = Callback::default();
    let url = serve_callback(callback.clone()).await;
    let subscribed = call(ews, bodies, Some(ROOM), &push_subscribe(&url, 1)).await;
    let id = client::subscription_id(&subscribed);
    call(
        ews,
        bodies,
        Some(ROOM),
        &format!("<m:Unsubscribe><m:SubscriptionId>{id}</m:SubscriptionId></m:Unsubscribe>"),
    )
    .await;
    call(
        ews,
        bodies,
        Some(ROOM),
        &push_subscribe("ftp://nowhere.example/", 1),
    )
    .await;
    simulator
        .control()
        .create_appointment(ROOM, appointment("Pushed", 16))
        .expect("created");
    let received = Arc::clone(&callback.bodies);
    wait_until("a notification and a status ping arrived", || {
        let received = received.lock().expect("bodies");
        received.iter().any(|body| body.contains("CreatedEvent"))
            && received.iter().any(|body| body.contains("StatusEvent"))
    })
    .await;
    let pushed: Vec<String> = callback.bodies.lock().expect("bodies").clone();
    assert!(pushed.iter().any(|body| body.contains("StatusEvent")));
    for body in pushed {
        bodies.add(body);
    }
}

async fn exercise_faults(simulator: &SimHandle, ews: &Ews, bodies: &mut Bodies) {
    let control = simulator.control();
    control.inject_fault(Fault::ServerBusy {
        backoff_ms: 2500,
        duration_s: 60,
    });
    call(ews, bodies, Some(ROOM), "<m:GetRoomLists/>").await;
    control.heal();
    control.inject_fault(Fault::MailboxMove {
        email: MailboxAddress::new(OTHER_ROOM),
        duration_s: Some(30),
    });
    call(ews, bodies, Some(OTHER_ROOM), "<m:GetRoomLists/>").await;
    control.heal();
    let subscribed = call(ews, bodies, Some(ROOM), client::streaming_subscribe()).await;
    let id = client::subscription_id(&subscribed);
    let stream = open_stream(simulator, &[id]).await;
    control.inject_fault(Fault::MailboxMove {
        email: MailboxAddress::new(ROOM),
        duration_s: Some(0),
    });
    let moved = stream.text().await.expect("stream body");
    assert!(moved.contains("MailboxMoveStarted"), "{moved}");
    for envelope in split_envelopes(&moved) {
        bodies.add(envelope);
    }
    control.heal();
    call(
        ews,
        bodies,
        Some(ROOM),
        "<m:ConvertId DestinationFormat=\"EntryId\"><m:SourceIds><t:AlternateId Format=\"EwsId\" \
         Id=\"DUMMY\" Mailbox=\"DUMMY\"/></m:SourceIds></m:ConvertId>",
    )
    .await;
    call(
        ews,
        bodies,
        Some("ghost@contoso.example"),
        "<m:GetRoomLists/>",
    )
    .await;
    call(ews, bodies, Some(ROOM), "<m:NoSuchOperation/>").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulator_response_is_valid_against_the_exchange_schema() {
    let simulator = start(SimConfig {
        minute: Duration::from_millis(1500),
        heartbeat_interval: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await;
    let ews = Ews::new(simulator.ews_url());
    let mut bodies = Bodies::default();

    exercise_calendar_operations(&simulator, &ews, &mut bodies).await;
    exercise_directory_operations(&ews, &mut bodies).await;
    exercise_subscriptions_and_streams(&simulator, &ews, &mut bodies).await;
    exercise_push(&simulator, &ews, &mut bodies).await;
    exercise_faults(&simulator, &ews, &mut bodies).await;
    simulator.shutdown().await;

    assert!(
        bodies.0.len() >= 35,
        "only {} bodies collected",
        bodies.0.len()
    );
    assert_valid_envelopes(&bodies.0);
}

#[tokio::test]
async fn budget_and_limit_answers_are_valid_against_the_exchange_schema() {
    let simulator = start(SimConfig {
        limits: LimitsConfig {
            hanging_connection_limit: 0,
            max_subscriptions_per_mailbox: 1,
            connections_per_account: false,
            request_budget: Some(RequestBudget {
                requests: 4,
                window: Duration::from_secs(60),
                backoff: Duration::from_secs(2),
                in_message_operations: vec!["SyncFolderItems".to_owned()],
            }),
        },
        ..SimConfig::default()
    })
    .await;
    let ews = Ews::new(simulator.ews_url());
    let mut bodies = Bodies::default();

    let subscribed = call(&ews, &mut bodies, Some(ROOM), client::streaming_subscribe()).await;
    let id = client::subscription_id(&subscribed);
    call(&ews, &mut bodies, Some(ROOM), client::streaming_subscribe()).await;
    call(
        &ews,
        &mut bodies,
        Some(ROOM),
        &client::get_streaming_events(&[id], 1),
    )
    .await;
    call(&ews, &mut bodies, Some(ROOM), "<m:GetRoomLists/>").await;
    call(&ews, &mut bodies, Some(ROOM), "<m:GetRoomLists/>").await;
    call(
        &ews,
        &mut bodies,
        Some(ROOM),
        &format!(
            "<m:SyncFolderItems>{ITEM_SHAPE}<m:SyncFolderId><t:DistinguishedFolderId Id=\"calendar\"/>\
             </m:SyncFolderId><m:MaxChangesReturned>10</m:MaxChangesReturned></m:SyncFolderItems>"
        ),
    )
    .await;
    simulator.shutdown().await;

    assert!(bodies
        .0
        .iter()
        .any(|body| body.contains("ErrorExceededSubscriptionCount")));
    assert!(bodies
        .0
        .iter()
        .any(|body| body.contains("ErrorExceededConnectionCount")));
    assert!(bodies
        .0
        .iter()
        .any(|body| body.contains("ResponseClass=\"Error\"") && body.contains("ErrorServerBusy")));
    assert_valid_envelopes(&bodies.0);
}

#[tokio::test]
async fn autodiscover_answers_are_well_formed_and_complete() {
    let simulator = start(SimConfig::default()).await;

    let body = autodiscover(&simulator, &[ROOM, "ghost@contoso.example"]).await;
    simulator.shutdown().await;

    let tree = booking_sync::sim::soap::parse_tree(body.as_bytes());
    assert!(tree.is_ok(), "not well-formed: {body}");
    for field in [
        "<Name>ExternalEwsUrl</Name>",
        "<Name>InternalEwsUrl</Name>",
        "<Name>GroupingInformation</Name>",
        "<Name>EwsSupportedSchemas</Name>",
        "<ErrorCode>InvalidUser</ErrorCode>",
    ] {
        assert!(body.contains(field), "missing {field}: {body}");
    }
}
