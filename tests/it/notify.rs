//! Digests end to end: issues found by the sync -> one email per recipient per
//! interval, read back from the simulator's sent messages.

use booking_sync::app::{build_notifier, ews_config};
use booking_sync::ews::EwsClient;
use booking_sync::notify::Notifier;
use booking_sync::sim::AppointmentPatch;
use chrono::{Duration as Span, Utc};

use crate::rules::{add_service, app_with_routing, meeting, meeting_id, sql, wait_rows};
use crate::support::app::TestApp;

const ROOM: &str = "room-001@contoso.example";
const ORGANIZER: &str = "user-001@contoso.example";
const SENDER: &str = "user-005@contoso.example";

async fn enabled_app() -> TestApp {
    let mut app = app_with_routing().await;
    app.config.notifications.enabled = true;
    app.config.notifications.sender = Some(SENDER.to_owned());
    app
}

fn notifier(app: &TestApp) -> Notifier {
    let ews = EwsClient::new(ews_config(&app.config)).expect("client");
    build_notifier(&app.config, &app.store, &ews).expect("notifications are enabled")
}

/// Ten meetings of one organizer with catering, each then moved by an hour.
async fn ten_moved_meetings(app: &TestApp) {
    let client = sql(app).await;
    let mut uids = Vec::new();
    for hour in 8..18 {
        let appointment = meeting(&format!("Review {hour}"), hour, ORGANIZER);
        let created = app
            .control
            .create_appointment(ROOM, appointment.clone())
            .expect("created");
        add_service(&client, meeting_id(&client, ROOM, &created.uid).await).await;
        uids.push((created, appointment));
    }
    for (created, appointment) in &uids {
        app.control
            .update_appointment(
                ROOM,
                &created.uid,
                AppointmentPatch {
                    start: Some(appointment.start + Span::minutes(30)),
                    end: Some(appointment.end + Span::minutes(30)),
                    ..AppointmentPatch::default()
                },
            )
            .expect("moved");
    }
    wait_rows(
        &client,
        "SELECT 1 FROM sync_issues WHERE rule = 'time_changed_with_services' \
         HAVING count(*) = 10",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_issues_inside_the_interval_make_one_email_and_a_replay_sends_nothing() {
    let mut app = enabled_app().await;
    app.start().await;
    ten_moved_meetings(&app).await;
    let notifier = notifier(&app);
    let interval = Span::from_std(app.config.notifications.digest_interval).unwrap();

    let early = notifier.send_due(Utc::now()).await.expect("round runs");
    let sent = notifier
        .send_due(Utc::now() + interval)
        .await
        .expect("round runs");
    app.stop().await;
    for room in app.store.enabled_rooms().await.expect("rooms") {
        app.store.reset_sync_state(room.id).await.expect("reset");
    }
    app.start().await;
    app.wait_converged(std::time::Duration::from_secs(30)).await;
    let again = notifier
        .send_due(Utc::now() + interval * 3)
        .await
        .expect("round runs");

    let messages = app.control.sent();
    assert_eq!((early, sent, again), (0, 1, 0));
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].to, [ORGANIZER]);
    assert_eq!(messages[0].from.as_deref(), Some(SENDER));
    assert_eq!(messages[0].subject, "10 meetings need your attention");
    assert_eq!(messages[0].body.matches("<li>").count(), 10);
    assert!(messages[0].body.contains("What to do"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_cap_holds_back_digests_until_the_day_is_over() {
    let mut app = enabled_app().await;
    app.config.notifications.daily_cap = 1;
    app.start().await;
    let client = sql(&app).await;
    let notifier = notifier(&app);
    let interval = Span::from_std(app.config.notifications.digest_interval).unwrap();
    let first = app
        .control
        .create_appointment(ROOM, meeting("Visitor one", 9, "guest@partner.example"))
        .expect("created");
    wait_rows(&client, "SELECT 1 FROM sync_issues").await;
    let now = Utc::now();
    let sent_first = notifier.send_due(now + interval).await.expect("round");
    app.control
        .cancel_appointment(ROOM, &first.uid)
        .expect("cancelled");
    app.control
        .create_appointment(ROOM, meeting("Visitor two", 11, "guest2@partner.example"))
        .expect("created");
    wait_rows(&client, "SELECT 1 FROM sync_issues HAVING count(*) = 2").await;

    let capped = notifier.send_due(now + interval * 3).await.expect("round");
    let next_day = notifier
        .send_due(now + Span::days(1) + interval * 2)
        .await
        .expect("round");

    assert_eq!((sent_first, capped, next_day), (1, 0, 1));
    let messages = app.control.sent();
    assert!(messages
        .iter()
        .all(|message| message.to == ["facilities@contoso.example"]));
    assert_eq!(messages.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_on_sync_over_existing_meetings_emails_only_the_administrator_report() {
    let mut app = enabled_app().await;
    let client = sql(&app).await;
    let rooms: Vec<String> = app
        .store
        .enabled_rooms()
        .await
        .expect("rooms")
        .iter()
        .map(|room| room.email.as_str().to_owned())
        .collect();
    let mut out_of_sync = 0;
    for (index, room) in rooms.iter().enumerate() {
        for hour in 8..16 {
            let appointment = meeting(&format!("Standing {hour}"), hour, ORGANIZER);
            let created = app
                .control
                .create_appointment(room, appointment.clone())
                .expect("created");
            // What the booking system holds from before: every other meeting an hour off.
            let shift = Span::hours(i64::from((hour + index as u32) % 2));
            out_of_sync += usize::from(shift > Span::zero());
            let id: i64 = client
                .query_one(
                    "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                         organizer_email) \
                     SELECT id, $1, $2, $3, $4, $5 FROM rooms WHERE email = $6 RETURNING id",
                    &[
                        &created.uid,
                        &appointment.subject,
                        &(appointment.start + shift),
                        &(appointment.end + shift),
                        &ORGANIZER,
                        room,
                    ],
                )
                .await
                .expect("existing row")
                .get(0);
            add_service(&client, id).await;
        }
    }

    app.start().await;
    let notifier = notifier(&app);
    let sent = notifier
        .send_due(Utc::now() + Span::days(1))
        .await
        .expect("round runs");

    let messages = app.control.sent();
    assert_eq!(sent, 1);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].to, ["it-admin@contoso.example"]);
    assert_eq!(messages[0].body.matches("<li>").count(), out_of_sync);
    assert_eq!(
        messages[0]
            .body
            .matches("(organizer: user-001@contoso.example)")
            .count(),
        out_of_sync
    );
}
