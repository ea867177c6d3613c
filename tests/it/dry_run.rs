//! Dry run: everything is decided, nothing is written or sent, and the plan's counts
//! are what a live run then does.

use booking_sync::sim::{Workload, WorkloadMix};
use chrono::Duration as Span;
use tokio_postgres::Client;

use crate::rules::{add_service, app_with_routing, meeting, sql};
use crate::support::app::TestApp;

const ORGANIZER: &str = "user-001@contoso.example";

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
