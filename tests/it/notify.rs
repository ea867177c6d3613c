//! Digests end to end: issues found by the sync -> one email per recipient per
//! interval, read back from the simulator's sent messages or from a real SMTP server
//! on loopback; a send cut off between claim and record goes out once.

use std::time::Duration;

use booking_sync::app::{build_notifier, ews_config};
use booking_sync::config::{SmtpConfig, SmtpTls};
use booking_sync::ews::EwsClient;
use booking_sync::notify::{Notifier, CLAIM_SETTLE};
use booking_sync::sim::AppointmentPatch;
use chrono::{DateTime, Duration as Span, Utc};
use mail_parser::MimeHeaders;

use crate::rules::{add_service, app_with_routing, meeting, meeting_id, sql, wait_rows};
use crate::support::app::TestApp;
use crate::support::proxy::{Mode, Proxy};
use crate::support::smtp_sink::SmtpSink;

const WAIT: Duration = Duration::from_secs(30);
const FALLBACK: &str = "facilities@contoso.example";
const ADMIN: &str = "it-admin@contoso.example";
const SMTP_FROM: &str = "booking-sync@contoso.example";

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

/// A notifier whose EWS requests go to `url` instead of the simulator itself.
fn notifier_via(app: &TestApp, url: String) -> Notifier {
    let mut config = app.config.clone();
    config.exchange.url = url;
    let ews = EwsClient::new(ews_config(&config)).expect("client");
    build_notifier(&config, &app.store, &ews).expect("notifications are enabled")
}

/// A round later than any claim made at `now` needs to settle.
fn after_settling(now: DateTime<Utc>) -> DateTime<Utc> {
    now + Span::from_std(CLAIM_SETTLE).unwrap() + Span::seconds(1)
}

/// `(state, send_attempts, message_id)` of every digest row, oldest first.
async fn digest_rows(app: &TestApp) -> Vec<(String, i32, String)> {
    sql(app)
        .await
        .query(
            "SELECT state, send_attempts, message_id FROM notification_digests ORDER BY id",
            &[],
        )
        .await
        .expect("digests read")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// One issue for the fallback owner: a meeting by an organizer who is no user.
async fn one_guest_meeting(app: &TestApp) {
    app.control
        .create_appointment(ROOM, meeting("Visitor", 9, "guest@partner.example"))
        .expect("created");
    wait_rows(&sql(app).await, "SELECT 1 FROM sync_issues").await;
}

async fn wait_sent(app: &TestApp, count: usize) {
    let started = tokio::time::Instant::now();
    while app.control.sent().len() < count && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sending_killed_after_exchange_took_the_mail_is_recorded_not_sent_again() {
    let mut app = enabled_app().await;
    app.start().await;
    one_guest_meeting(&app).await;
    let proxy = Proxy::start(app.sim.addr()).await;
    // The request reaches Exchange whole; the answer never comes back in time.
    proxy.set(Mode::Slice {
        bytes: 1,
        delay: Duration::from_secs(3600),
    });
    let doomed = notifier_via(&app, format!("http://{}/EWS/Exchange.asmx", proxy.addr()));
    let now = Utc::now() + Span::from_std(app.config.notifications.digest_interval).unwrap();

    let sending = tokio::spawn(async move { doomed.send_due(now).await });
    wait_sent(&app, 1).await;
    sending.abort();
    let _ = sending.await;
    let claimed = digest_rows(&app).await;
    let restarted = notifier(&app);
    let resolved = restarted
        .send_due(after_settling(now))
        .await
        .expect("round runs");
    let later = restarted
        .send_due(after_settling(now) + Span::days(2))
        .await
        .expect("round runs");

    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].0.as_str(), claimed[0].1), ("sending", 1));
    assert_eq!((resolved, later), (0, 0));
    let rows = digest_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "sent");
    let messages = app.control.sent();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].to, [FALLBACK]);
    assert_eq!(messages[0].saved_in.as_deref(), Some(SENDER));
    assert!(messages[0]
        .extended_properties
        .values()
        .any(|value| *value == rows[0].2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_digest_exchange_never_took_is_sent_once_after_a_restart() {
    let mut app = enabled_app().await;
    app.start().await;
    one_guest_meeting(&app).await;
    let proxy = Proxy::start(app.sim.addr()).await;
    proxy.set(Mode::Refuse);
    let failing = notifier_via(&app, format!("http://{}/EWS/Exchange.asmx", proxy.addr()));
    let now = Utc::now() + Span::from_std(app.config.notifications.digest_interval).unwrap();

    let refused = failing.send_due(now).await.expect("round runs");
    let claimed = digest_rows(&app).await;
    let too_early = notifier(&app).send_due(now).await.expect("round runs");
    let restarted = notifier(&app);
    let resolved = restarted
        .send_due(after_settling(now))
        .await
        .expect("round runs");
    let later = restarted
        .send_due(after_settling(now) + Span::days(2))
        .await
        .expect("round runs");

    assert_eq!((refused, too_early, resolved, later), (0, 0, 1, 0));
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].0.as_str(), claimed[0].1), ("sending", 1));
    let rows = digest_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("sent", 2));
    assert_eq!(rows[0].2, claimed[0].2, "the message id stays the same");
    let messages = app.control.sent();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].to, [FALLBACK]);
}

/// FindItem requests the simulator answered, whatever their outcome.
fn find_item_requests(app: &TestApp) -> u64 {
    app.control
        .stats()
        .requests
        .iter()
        .filter(|(key, _)| key.starts_with("FindItem/"))
        .map(|(_, count)| count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_claimed_by_a_process_that_died_before_sending_is_sent_without_a_lookup() {
    let mut app = enabled_app().await;
    app.start().await;
    one_guest_meeting(&app).await;
    let now = Utc::now() + Span::from_std(app.config.notifications.digest_interval).unwrap();
    // What the previous process committed before it died: the claim, no attempt.
    let due = app
        .store
        .due_digests(
            now,
            app.config.notifications.digest_interval,
            app.config.notifications.daily_cap,
        )
        .await
        .expect("due digests");
    assert_eq!(due.len(), 1);
    app.store
        .claim_digest(
            &due[0],
            "A meeting needs your attention",
            "<digest.died@contoso.example>",
            now,
        )
        .await
        .expect("claimed");
    let lookups_before = find_item_requests(&app);

    let restarted = notifier(&app);
    let resolved = restarted
        .send_due(after_settling(now))
        .await
        .expect("round runs");
    let later = restarted
        .send_due(after_settling(now) + Span::days(2))
        .await
        .expect("round runs");

    assert_eq!((resolved, later), (1, 0));
    assert_eq!(
        find_item_requests(&app),
        lookups_before,
        "no Sent Items lookup"
    );
    assert_eq!(
        digest_rows(&app).await,
        [(
            "sent".to_owned(),
            1,
            "<digest.died@contoso.example>".to_owned()
        )]
    );
    let messages = app.control.sent();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].to, [FALLBACK]);
    assert!(messages[0]
        .extended_properties
        .values()
        .any(|value| value == "<digest.died@contoso.example>"));
}

const SMTP_USER: &str = "booking-sync";
const SMTP_PASSWORD: &str = "relay-Secret-7f3a";

/// Sends through SMTP to `sink`, authenticating as `SMTP_USER`.
fn smtp_app_config(app: &mut TestApp, sink: &SmtpSink) {
    app.config.notifications.sender = None;
    app.config.notifications.smtp = Some(SmtpConfig {
        host: sink.addr().ip().to_string(),
        port: sink.addr().port(),
        tls: SmtpTls::None,
        username: Some(SMTP_USER.to_owned()),
        password: Some(SMTP_PASSWORD.into()),
        from: SMTP_FROM.to_owned(),
        timeout: Duration::from_secs(10),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_delivers_the_digest_and_the_administrator_report_once_after_the_relay_was_down() {
    let mut sink = SmtpSink::start_with_auth(SMTP_USER, SMTP_PASSWORD).await;
    let mut app = enabled_app().await;
    smtp_app_config(&mut app, &sink);
    let client = sql(&app).await;
    // Before the first sync: the booking system holds a meeting an hour off, which the
    // initial sync reports to the administrator.
    let standing = meeting("Standing <weekly> & co", 10, ORGANIZER);
    let created = app
        .control
        .create_appointment(ROOM, standing.clone())
        .expect("created");
    let existing: i64 = client
        .query_one(
            "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                 organizer_email) \
             SELECT id, $1, $2, $3, $4, $5 FROM rooms WHERE email = $6 RETURNING id",
            &[
                &created.uid,
                &standing.subject,
                &(standing.start + Span::hours(1)),
                &(standing.end + Span::hours(1)),
                &ORGANIZER,
                &ROOM,
            ],
        )
        .await
        .expect("existing row")
        .get(0);
    add_service(&client, existing).await;
    app.start().await;
    // After it: a meeting of the organizer moves, which the organizer is told about.
    let review = meeting("Review", 14, ORGANIZER);
    let moved = app
        .control
        .create_appointment(ROOM, review.clone())
        .expect("created");
    add_service(&client, meeting_id(&client, ROOM, &moved.uid).await).await;
    app.control
        .update_appointment(
            ROOM,
            &moved.uid,
            AppointmentPatch {
                start: Some(review.start + Span::minutes(30)),
                end: Some(review.end + Span::minutes(30)),
                ..AppointmentPatch::default()
            },
        )
        .expect("moved");
    wait_rows(
        &client,
        "SELECT 1 FROM sync_issues WHERE recipient IS NOT NULL HAVING count(DISTINCT recipient) = 2",
    )
    .await;
    let notifier = notifier(&app);
    let now = Utc::now() + Span::days(1);

    sink.stop().await;
    let while_down = notifier.send_due(now).await.expect("round runs");
    let claimed = digest_rows(&app).await;
    sink.resume().await;
    let once_up = notifier
        .send_due(after_settling(now))
        .await
        .expect("round runs");
    let later = notifier
        .send_due(after_settling(now) + Span::days(2))
        .await
        .expect("round runs");
    let received = sink.wait_for(2, WAIT).await;

    assert_eq!((while_down, once_up, later), (0, 2, 0));
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|row| row.0 == "sending" && row.1 == 1));
    assert!(digest_rows(&app).await.iter().all(|row| row.0 == "sent"));
    assert_eq!(received.len(), 2, "{received:#?}");
    assert!(app.control.sent().is_empty(), "nothing went through EWS");
    let mut seen = Vec::new();
    for message in &received {
        let parsed = message.parsed();
        let to = parsed
            .to()
            .and_then(|to| to.first())
            .and_then(|to| to.address())
            .expect("a To address")
            .to_owned();
        assert_eq!(message.envelope_to, std::slice::from_ref(&to));
        assert_eq!(message.envelope_from, SMTP_FROM);
        assert_eq!(
            parsed
                .from()
                .and_then(|from| from.first())
                .and_then(|from| from.address()),
            Some(SMTP_FROM)
        );
        let message_id = format!("<{}>", parsed.message_id().expect("a Message-ID"));
        assert!(
            claimed.iter().any(|row| row.2 == message_id),
            "{message_id}"
        );
        assert_eq!(
            parsed.content_type().map(|kind| kind.subtype()),
            Some(Some("alternative"))
        );
        let text = parsed.body_text(0).expect("a plain-text body").into_owned();
        let html = parsed.body_html(0).expect("an HTML body").into_owned();
        assert!(text.contains("What to do:"), "{text}");
        assert!(html.contains("<b>What to do:</b>"), "{html}");
        seen.push((
            to,
            parsed.subject().unwrap_or_default().to_owned(),
            text,
            html,
        ));
    }
    seen.sort();
    let (admin, organizer) = (&seen[0], &seen[1]);
    assert_eq!(admin.0, ADMIN);
    assert_eq!(admin.1, "Initial sync report: 1 meeting(s) need attention");
    assert!(admin.2.contains("\u{201c}Standing <weekly> & co\u{201d}"));
    assert!(admin
        .3
        .contains("\u{201c}Standing &lt;weekly&gt; &amp; co\u{201d}"));
    assert!(admin.2.contains("(organizer: user-001@contoso.example)"));
    assert_eq!(organizer.0, ORGANIZER);
    assert_eq!(organizer.1, "A meeting needs your attention");
    assert!(organizer.2.contains("\u{201c}Review\u{201d}"));
    assert!(organizer.3.contains("\u{201c}Review\u{201d}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_the_relay_refused_for_a_wrong_password_waits_and_goes_once_it_is_fixed() {
    let sink = SmtpSink::start_with_auth(SMTP_USER, SMTP_PASSWORD).await;
    let mut app = enabled_app().await;
    smtp_app_config(&mut app, &sink);
    app.start().await;
    one_guest_meeting(&app).await;
    let mut wrong = app.config.clone();
    if let Some(smtp) = &mut wrong.notifications.smtp {
        smtp.password = Some("not-the-password".into());
    }
    let ews = EwsClient::new(ews_config(&wrong)).expect("client");
    let refused_notifier = build_notifier(&wrong, &app.store, &ews).expect("enabled");
    let now = Utc::now() + Span::from_std(app.config.notifications.digest_interval).unwrap();

    let refused = refused_notifier.send_due(now).await.expect("round runs");
    let claimed = digest_rows(&app).await;
    let fixed = notifier(&app);
    let resolved = fixed
        .send_due(after_settling(now))
        .await
        .expect("round runs");
    let later = fixed
        .send_due(after_settling(now) + Span::days(2))
        .await
        .expect("round runs");
    let received = sink.wait_for(1, WAIT).await;

    assert_eq!((refused, resolved, later), (0, 1, 0));
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].0.as_str(), claimed[0].1), ("sending", 1));
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0].envelope_to, [FALLBACK]);
    let parsed = received[0].parsed();
    assert_eq!(
        parsed.message_id().map(|id| format!("<{id}>")),
        Some(claimed[0].2.clone())
    );
    assert_eq!(digest_rows(&app).await[0].0, "sent");
}
