//! Out-of-sync rules end to end: simulator change -> sync -> flagged services and a
//! queued issue for the right person.

use std::time::Duration;

use booking_sync::sim::{DeleteMode, NewAppointment};
use chrono::{DateTime, Duration as Span, Timelike, Utc};
use tokio_postgres::{Client, NoTls};

use crate::support::app::{TestApp, TestOptions};

const WAIT: Duration = Duration::from_secs(30);
const ROOM: &str = "room-001@contoso.example";
const OTHER_ROOM: &str = "room-002@contoso.example";
const ORGANIZER: &str = "user-001@contoso.example";
const FALLBACK: &str = "facilities@contoso.example";
const ADMIN: &str = "it-admin@contoso.example";

/// One queued issue, as the tests read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedIssue {
    /// Rule name.
    pub rule: String,
    /// Lower-case recipient.
    pub recipient: Option<String>,
    /// `user` or `admin`.
    pub audience: String,
    /// The meeting's UID.
    pub uid: String,
}

fn at(days: i64, hour: u32) -> DateTime<Utc> {
    (Utc::now() + Span::days(days))
        .with_hour(hour)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("a valid time")
}

/// A one-hour meeting in two days at `hour`.
pub fn meeting(subject: &str, hour: u32, organizer: &str) -> NewAppointment {
    let start = at(2, hour);
    NewAppointment {
        subject: subject.to_owned(),
        start,
        end: start + Span::hours(1),
        is_all_day: false,
        organizer: organizer.to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: None,
        recurrence: None,
        uid: None,
    }
}

/// The service with a fallback owner and an administrator configured.
pub async fn app_with_routing() -> TestApp {
    let mut app = TestApp::prepare(TestOptions::default()).await;
    app.config.notifications.fallback_owner = Some(FALLBACK.to_owned());
    app.config.notifications.admin = Some(ADMIN.to_owned());
    app
}

/// A plain SQL connection to the test database (the booking system's side).
pub async fn sql(app: &TestApp) -> Client {
    let (client, connection) = tokio_postgres::connect(&app.db.url, NoTls)
        .await
        .expect("test database answers");
    tokio::spawn(connection);
    client
}

/// Waits until `query` returns at least one row (or the wait runs out).
pub async fn wait_rows(client: &Client, query: &str) -> Vec<tokio_postgres::Row> {
    let started = tokio::time::Instant::now();
    loop {
        let rows = client.query(query, &[]).await.expect("query runs");
        if !rows.is_empty() || started.elapsed() > WAIT {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The id of the meeting row of `uid` in `room`, once synced.
pub async fn meeting_id(client: &Client, room: &str, uid: &str) -> i64 {
    let rows = wait_rows(
        client,
        &format!(
            "SELECT m.id FROM meetings m JOIN rooms r ON r.id = m.room_id \
             WHERE r.email = '{room}' AND m.exchange_uid = '{uid}'"
        ),
    )
    .await;
    rows.first().expect("the meeting was synced").get(0)
}

/// Attaches an active catering service to a meeting row.
pub async fn add_service(client: &Client, meeting: i64) -> i64 {
    client
        .query_one(
            "INSERT INTO meeting_services (meeting_id, kind, description, deadline) \
             VALUES ($1, 'catering', 'Coffee for 8', now() + interval '1 day') RETURNING id",
            &[&meeting],
        )
        .await
        .expect("service inserted")
        .get(0)
}

/// The status of a service.
pub async fn service_status(client: &Client, service: i64) -> String {
    client
        .query_one(
            "SELECT status FROM meeting_services WHERE id = $1",
            &[&service],
        )
        .await
        .expect("service read")
        .get(0)
}

/// Waits for the issues of `rule` and returns every issue queued for `uid`.
pub async fn issues_after(client: &Client, rule: &str, uid: &str) -> Vec<QueuedIssue> {
    wait_rows(
        client,
        &format!("SELECT 1 FROM sync_issues WHERE rule = '{rule}' AND details->>'uid' = '{uid}'"),
    )
    .await;
    client
        .query(
            "SELECT rule, recipient, audience, details->>'uid' FROM sync_issues \
             WHERE details->>'uid' = $1 ORDER BY id",
            &[&uid],
        )
        .await
        .expect("issues read")
        .iter()
        .map(|row| QueuedIssue {
            rule: row.get(0),
            recipient: row.get(1),
            audience: row.get(2),
            uid: row.get(3),
        })
        .collect()
}

fn issue(rule: &str, recipient: &str, uid: &str) -> QueuedIssue {
    QueuedIssue {
        rule: rule.to_owned(),
        recipient: Some(recipient.to_owned()),
        audience: "user".to_owned(),
        uid: uid.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_moved_in_time_flags_its_services_and_tells_the_organizer() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = sql(&app).await;
    let created = app
        .control
        .create_appointment(ROOM, meeting("Board", 9, ORGANIZER))
        .expect("created");
    let service = add_service(&client, meeting_id(&client, ROOM, &created.uid).await).await;

    app.control
        .update_appointment(
            ROOM,
            &created.uid,
            booking_sync::sim::AppointmentPatch {
                start: Some(at(2, 14)),
                end: Some(at(2, 15)),
                ..Default::default()
            },
        )
        .expect("moved");
    let issues = issues_after(&client, "time_changed_with_services", &created.uid).await;

    assert_eq!(
        issues,
        [issue("time_changed_with_services", ORGANIZER, &created.uid)]
    );
    assert_eq!(service_status(&client, service).await, "needs_attention");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_moved_to_another_room_flags_the_services_left_behind() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = sql(&app).await;
    let created = app
        .control
        .create_appointment(ROOM, meeting("Offsite prep", 10, ORGANIZER))
        .expect("created");
    let service = add_service(&client, meeting_id(&client, ROOM, &created.uid).await).await;

    let mut moved = meeting("Offsite prep", 10, ORGANIZER);
    moved.uid = Some(created.uid.clone());
    app.control
        .create_appointment(OTHER_ROOM, moved)
        .expect("booked in the other room");
    meeting_id(&client, OTHER_ROOM, &created.uid).await;
    app.control
        .delete_appointment(ROOM, &created.uid, DeleteMode::Soft, None)
        .expect("left the first room");
    let issues = issues_after(&client, "room_changed_with_services", &created.uid).await;

    assert_eq!(
        issues,
        [issue("room_changed_with_services", ORGANIZER, &created.uid)]
    );
    assert_eq!(service_status(&client, service).await, "needs_attention");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_meeting_with_services_flags_them_and_tells_the_organizer() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = sql(&app).await;
    let created = app
        .control
        .create_appointment(ROOM, meeting("Customer visit", 11, ORGANIZER))
        .expect("created");
    let service = add_service(&client, meeting_id(&client, ROOM, &created.uid).await).await;

    app.control
        .cancel_appointment(ROOM, &created.uid)
        .expect("cancelled");
    let issues = issues_after(&client, "cancelled_with_services", &created.uid).await;

    assert_eq!(
        issues,
        [issue("cancelled_with_services", ORGANIZER, &created.uid)]
    );
    assert_eq!(service_status(&client, service).await, "needs_attention");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_whose_appointment_left_exchange_is_reported_and_kept() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = sql(&app).await;
    let mut booked = meeting("Booked at the desk", 13, ORGANIZER);
    booked.uid = Some("booking-42".to_owned());
    client
        .execute(
            "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                 organizer_email, source) \
             SELECT id, 'booking-42', 'Booked at the desk', $1, $2, $3, 'booking' \
             FROM rooms WHERE email = $4",
            &[&booked.start, &booked.end, &ORGANIZER, &ROOM],
        )
        .await
        .expect("booking row");
    app.control
        .create_appointment(ROOM, booked)
        .expect("created");
    wait_rows(
        &client,
        "SELECT 1 FROM meetings WHERE exchange_uid = 'booking-42' AND exchange_item_id IS NOT NULL",
    )
    .await;

    app.control
        .delete_appointment(ROOM, "booking-42", DeleteMode::Hard, None)
        .expect("deleted");
    let issues = issues_after(&client, "booking_missing_in_exchange", "booking-42").await;
    let status: String = client
        .query_one(
            "SELECT status FROM meetings WHERE exchange_uid = 'booking-42'",
            &[],
        )
        .await
        .expect("row read")
        .get(0);

    assert_eq!(
        issues,
        [issue(
            "booking_missing_in_exchange",
            ORGANIZER,
            "booking-42"
        )]
    );
    assert_eq!(status, "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizer_who_is_not_a_user_is_synced_and_the_fallback_owner_told() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = sql(&app).await;

    let created = app
        .control
        .create_appointment(ROOM, meeting("Visitor", 15, "guest@partner.example"))
        .expect("created");
    let issues = issues_after(&client, "unknown_organizer", &created.uid).await;
    meeting_id(&client, ROOM, &created.uid).await;

    assert_eq!(issues, [issue("unknown_organizer", FALLBACK, &created.uid)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_found_during_initial_sync_go_to_the_administrator() {
    let app = app_with_routing().await;
    let client = sql(&app).await;
    client
        .execute(
            "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                 organizer_email, source) \
             SELECT id, 'booking-never-in-exchange', 'Desk booking', now() + interval '1 day', \
                 now() + interval '25 hours', $1, 'booking' FROM rooms WHERE email = $2",
            &[&ORGANIZER, &ROOM],
        )
        .await
        .expect("booking row");
    let mut app = app;

    app.start().await;
    let issues = issues_after(
        &client,
        "booking_missing_in_exchange",
        "booking-never-in-exchange",
    )
    .await;

    assert_eq!(
        issues,
        [QueuedIssue {
            rule: "booking_missing_in_exchange".to_owned(),
            recipient: Some(ADMIN.to_owned()),
            audience: "admin".to_owned(),
            uid: "booking-never-in-exchange".to_owned(),
        }]
    );
}
