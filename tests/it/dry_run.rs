//! Dry run: everything is decided, nothing is written or sent, and the plan's counts
//! are what a live run then does.

use booking_sync::cli::resync::{self, ResyncOptions};
use booking_sync::config::Config;
use booking_sync::domain::MailboxAddress;
use booking_sync::sim::{DeleteMode, Workload, WorkloadMix};
use chrono::Duration as Span;
use tokio_postgres::Client;

use crate::rules::{add_service, app_with_routing, meeting, meeting_id, sql};
use crate::support::app::TestApp;

const ORGANIZER: &str = "user-001@contoso.example";
const ROOM: &str = "room-001@contoso.example";

/// A fingerprint of the booking tables.
async fn booking_tables(client: &Client) -> (String, String, String) {
    let row = client
        .query_one(
            "SELECT \
                 (SELECT md5(coalesce(string_agg(m::text, '|' ORDER BY id), '')) FROM meetings m), \
                 (SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY id), '')) \
                  FROM meeting_services s), \
                 (SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY id), '')) FROM rooms r)",
            &[],
        )
        .await
        .expect("fingerprint");
    (row.get(0), row.get(1), row.get(2))
}

/// Meetings the booking system already holds, with services; every other one an hour
/// off what Exchange has.
async fn existing_meetings(app: &TestApp, client: &Client) {
    for room in app.store.enabled_rooms().await.expect("rooms") {
        for hour in 8..14 {
            let appointment = meeting(&format!("Existing {hour}"), hour, ORGANIZER);
            let created = app
                .control
                .create_appointment(room.email.as_str(), appointment.clone())
                .expect("created");
            let shift = Span::hours(i64::from(hour % 2));
            let id: i64 = client
                .query_one(
                    "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                         organizer_email) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[
                        &room.id.0,
                        &created.uid,
                        &appointment.subject,
                        &(appointment.start + shift),
                        &(appointment.end + shift),
                        &ORGANIZER,
                    ],
                )
                .await
                .expect("existing row")
                .get(0);
            add_service(client, id).await;
        }
    }
}

/// Per meeting, what the live run did: inserted, cancelled or updated.
async fn live_counts(client: &Client) -> (u64, u64, u64) {
    let row = client
        .query_one(
            "WITH per AS (SELECT meeting_id, bool_or(action = 'insert') AS inserted, \
                 bool_or(action = 'cancel') AS cancelled FROM meeting_audit GROUP BY meeting_id) \
             SELECT count(*) FILTER (WHERE inserted), \
                 count(*) FILTER (WHERE NOT inserted AND cancelled), \
                 count(*) FILTER (WHERE NOT inserted AND NOT cancelled) FROM per",
            &[],
        )
        .await
        .expect("live counts");
    let count = |index: usize| u64::try_from(row.get::<_, i64>(index)).unwrap();
    (count(0), count(1), count(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_and_sends_nothing_and_plans_what_the_live_run_does() {
    let mut app = app_with_routing().await;
    app.config.notifications.enabled = true;
    app.config.notifications.sender = Some("user-005@contoso.example".to_owned());
    app.config.dry_run = true;
    let client = sql(&app).await;
    existing_meetings(&app, &client).await;
    let before = booking_tables(&client).await;

    app.start().await;
    app.control
        .run_workload(Workload {
            changes: 300,
            rate_per_sec: 0.0,
            seed: 5,
            mix: WorkloadMix::default(),
            wait: true,
        })
        .await
        .expect("workload runs");
    app.stop().await;
    // A restart catches up from the dry run's own checkpoint: the plan is complete.
    app.start().await;
    app.stop().await;
    let after = booking_tables(&client).await;
    let plan = app.store.plan_summary(None).await.expect("plan");

    assert_eq!(before, after);
    assert!(app.control.sent().is_empty());
    assert!(plan.inserts > 0 && plan.updates > 0, "{plan:?}");
    assert!(
        plan.issues.contains_key("time_changed_with_services"),
        "{plan:?}"
    );
    // Issues of the initial sync go to the administrator's report, later ones to users.
    assert_eq!(
        plan.emails[0].recipient, "it-admin@contoso.example",
        "{plan:?}"
    );
    assert_eq!(plan.emails[0].audience, "admin");

    app.config.dry_run = false;
    app.start().await;
    // Rows the booking system held for meetings the workload deleted stay: a live sync
    // from scratch has no removal to apply to them, so convergence is not asked here.
    app.stop().await;
    assert_eq!(
        live_counts(&client).await,
        (plan.inserts, plan.cancellations, plan.updates)
    );
}

/// Counts of the audit trail and the outbox: what a live write leaves behind.
async fn trail(client: &Client) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM meeting_audit), (SELECT count(*) FROM sync_issues)",
            &[],
        )
        .await
        .expect("trail counted");
    (row.get(0), row.get(1))
}

/// (UID, action) of every plan entry, sorted.
async fn planned(client: &Client) -> Vec<(String, String)> {
    client
        .query(
            "SELECT exchange_uid, action FROM plan_entries ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("plan read")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// (UID, action) of the audit entries after `mark`, sorted.
async fn audited_since(client: &Client, mark: i64) -> Vec<(String, String)> {
    client
        .query(
            "SELECT exchange_uid, action FROM meeting_audit WHERE id > $1 ORDER BY 1, 2",
            &[&mark],
        )
        .await
        .expect("audit read")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// `booking-sync resync --full` over one room, as the command runs it.
async fn full_resync(app: &TestApp, config: &Config) {
    let store = booking_sync::app::syncing_store(config, app.store.clone());
    let summary = resync::run(
        config,
        &store,
        &ResyncOptions {
            room: Some(MailboxAddress::new(ROOM)),
            full: true,
        },
    )
    .await
    .expect("resync runs");
    assert_eq!(summary.failed, 0, "{summary:?}");
}

/// A room whose checkpoint is lost is enumerated again, and a full resync compares it
/// with the table: in a dry run the cancellations of the one and the repairs of the
/// other are planned, not written, and they are what the live run then does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_the_cancellations_of_a_full_sync_and_the_repairs_of_a_resync() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = sql(&app).await;
    let gone = app
        .control
        .create_appointment(ROOM, meeting("Deleted unseen", 9, ORGANIZER))
        .expect("created");
    let tampered = app
        .control
        .create_appointment(ROOM, meeting("Board", 11, ORGANIZER))
        .expect("created");
    add_service(&client, meeting_id(&client, ROOM, &gone.uid).await).await;
    meeting_id(&client, ROOM, &tampered.uid).await;
    app.stop().await;
    app.control
        .delete_appointment(ROOM, &gone.uid, DeleteMode::Hard, None)
        .expect("deleted");
    client
        .batch_execute(&format!(
            "UPDATE meetings SET subject = 'Tampered' WHERE exchange_uid = '{uid}'; \
             INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, status, \
                 source, exchange_item_id, fetched_at) \
             SELECT id, 'ghost', 'Ghost', now() + interval '2 days', \
                 now() + interval '2 days 1 hour', 'confirmed', 'exchange', 'ghost-item', \
                 now() - interval '1 hour' FROM rooms WHERE email = '{ROOM}'; \
             UPDATE mailbox_sync SET sync_state = NULL \
             WHERE room_id = (SELECT id FROM rooms WHERE email = '{ROOM}')",
            uid = tampered.uid
        ))
        .await
        .expect("drift planted");
    let tables = booking_tables(&client).await;
    let trail_before = trail(&client).await;
    let mut dry = app.config.clone();
    dry.dry_run = true;

    full_resync(&app, &dry).await;

    assert_eq!(booking_tables(&client).await, tables);
    assert_eq!(trail(&client).await, trail_before);
    let plan = app.store.plan_summary(None).await.expect("plan");
    let mut expected = vec![
        (gone.uid.clone(), "cancel".to_owned()),
        ("ghost".to_owned(), "cancel".to_owned()),
        (tampered.uid.clone(), "update".to_owned()),
    ];
    expected.sort();
    assert_eq!(planned(&client).await, expected);
    assert_eq!(
        plan.issues.get("cancelled_with_services").copied(),
        Some(1),
        "{plan:?}"
    );
    assert_eq!(
        plan.emails
            .iter()
            .map(|email| (email.recipient.as_str(), email.issues))
            .collect::<Vec<_>>(),
        [(ORGANIZER, 1)]
    );

    full_resync(&app, &app.config).await;
    assert_eq!(audited_since(&client, trail_before.0).await, expected);
    let rules: Vec<(String, Option<String>)> = client
        .query("SELECT rule, recipient FROM sync_issues ORDER BY id", &[])
        .await
        .expect("issues")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        rules,
        [(
            "cancelled_with_services".to_owned(),
            Some(ORGANIZER.to_owned())
        )]
    );
}
