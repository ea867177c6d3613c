//! Periodic resync: incremental catch-ups, the window roll and full reconciliation.

use std::sync::Arc;
use std::time::Duration;

use booking_sync::app;
use booking_sync::checker::compare_room;
use booking_sync::config::Config;
use booking_sync::demo;
use booking_sync::domain::MailboxAddress;
use booking_sync::ews::EwsClient;
use booking_sync::pipeline::resync::Resync;
use booking_sync::recurrence::{Pattern, RangeEnd, Recurrence};
use booking_sync::sim::faults::Fault;
use booking_sync::sim::{AppointmentPatch, DeleteMode, NewAppointment, Workload, WorkloadMix};
use booking_sync::store::{AuditFilter, MeetingStatus, Room};
use chrono::{DateTime, Duration as Span, Timelike, Utc};

use crate::rules::{self, add_service, app_with_routing, issues_after, meeting_id, service_status};
use crate::support::app::{TestApp, TestOptions};

const CONVERGE: Duration = Duration::from_secs(30);
const ROOM: &str = "room-001@contoso.example";

fn options() -> TestOptions {
    TestOptions {
        rooms: 2,
        users: 2,
        queue_capacity: 16,
        ..TestOptions::default()
    }
}

fn hour(days: i64, hour: u32) -> DateTime<Utc> {
    (Utc::now() + Span::days(days))
        .with_hour(hour)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("a valid time")
}

fn meeting(subject: &str, start: DateTime<Utc>) -> NewAppointment {
    NewAppointment {
        subject: subject.to_owned(),
        start,
        end: start + Span::hours(1),
        is_all_day: false,
        organizer: "user-001@contoso.example".to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: None,
        recurrence: None,
        uid: None,
    }
}

fn daily(subject: &str, start: DateTime<Utc>, end: RangeEnd) -> NewAppointment {
    NewAppointment {
        recurrence: Some(Recurrence {
            pattern: Pattern::Daily { interval: 1 },
            start_date: start.date_naive(),
            end,
        }),
        ..meeting(subject, start)
    }
}

/// A resync over the running service's queue and rooms, with `config`'s window,
/// issue routing and dry-run setting.
fn resync(app: &TestApp, config: &Config) -> Resync<EwsClient> {
    let service = app.service.as_ref().expect("service running");
    let ews = EwsClient::new(app::ews_config(config)).expect("EWS client");
    Resync {
        workers: Arc::new(app::workers(
            config,
            ews,
            app::syncing_store(config, app.store.clone()),
            service.queue.clone(),
            service.rooms.clone(),
        )),
        settings: app::resync_settings(config),
    }
}

async fn room(app: &TestApp, email: &str) -> Room {
    app.store
        .enabled_rooms()
        .await
        .expect("rooms")
        .into_iter()
        .find(|room| room.email == MailboxAddress::new(email))
        .expect("room exists")
}

async fn sql(app: &TestApp, statement: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    let task = tokio::spawn(connection);
    let count = client
        .execute(statement, &[])
        .await
        .expect("statement runs");
    drop(client);
    let _ = task.await;
    count
}

fn requests(app: &TestApp, operation: &str) -> u64 {
    demo::requests_for(&app.control.stats(), operation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_stream_was_cut_arrive_with_the_incremental_resync() {
    let mut app = TestApp::prepare(options()).await;
    app.config.subscriptions.heartbeat_timeout = Duration::from_secs(600);
    app.config.resync.interval = Duration::from_millis(500);
    app.start().await;
    app.control.inject_fault(Fault::StallStreams);

    let created = app
        .control
        .create_appointment(ROOM, meeting("While the stream was silent", hour(2, 9)))
        .expect("created");

    let result = app.wait_converged(CONVERGE).await;
    assert!(result.converged(), "{result:?}");
    let rows = app
        .store
        .meetings(room(&app, ROOM).await.id)
        .await
        .expect("rows");
    assert!(rows.iter().any(|row| row.exchange_uid == created.uid));
    app.control.heal();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_resync_of_an_unchanged_room_costs_one_call() {
    let app = TestApp::spawn(options()).await;
    for index in 0..5 {
        app.control
            .create_appointment(
                ROOM,
                meeting(&format!("Booked {index}"), hour(1 + index, 10)),
            )
            .expect("created");
    }
    assert!(app.wait_converged(CONVERGE).await.converged());
    let resync = resync(&app, &app.config);
    let target = room(&app, ROOM).await;
    let calls_before = app.control.stats().requests.values().sum::<u64>();

    let report = resync.catch_up_room(&target).await.expect("caught up");

    let calls = app.control.stats().requests.values().sum::<u64>() - calls_before;
    assert_eq!(report.changes, 0);
    assert_eq!(calls, 1, "one SyncFolderItems call and nothing else");
    let status = app.store.room_statuses().await.expect("statuses");
    assert!(status
        .iter()
        .any(|s| s.room.id == target.id && s.last_resync_at.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_corrupted_in_the_database_are_repaired_and_counted_as_drift() {
    let app = TestApp::spawn(options()).await;
    let single = app
        .control
        .create_appointment(ROOM, meeting("Board meeting", hour(3, 14)))
        .expect("single");
    let series = app
        .control
        .create_appointment(
            ROOM,
            daily(
                "Daily check-in",
                hour(1, 8),
                RangeEnd::Numbered { count: 5 },
            ),
        )
        .expect("series");
    let removed = app
        .control
        .create_appointment(ROOM, meeting("Will vanish", hour(4, 11)))
        .expect("third");
    assert!(app.wait_converged(CONVERGE).await.converged());
    let target = room(&app, ROOM).await;
    let resync = resync(&app, &app.config);
    let clean = resync
        .reconcile_room(&target, Utc::now())
        .await
        .expect("reconciled");
    assert_eq!(clean.drift(), 0, "a healthy room has no drift: {clean:?}");

    let room_id = target.id.0;
    sql(
        &app,
        &format!(
            "UPDATE meetings SET subject = 'Tampered' WHERE exchange_uid = '{}'",
            single.uid
        ),
    )
    .await;
    sql(&app, &format!("DELETE FROM meetings WHERE exchange_uid = '{}' AND occurrence_start = (SELECT min(occurrence_start) FROM meetings WHERE exchange_uid = '{}')", series.uid, series.uid)).await;
    sql(
        &app,
        &format!(
            "UPDATE meetings SET status = 'cancelled' WHERE exchange_uid = '{}'",
            removed.uid
        ),
    )
    .await;
    sql(&app, &format!("INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, status, source, exchange_item_id, fetched_at) VALUES ({room_id}, 'ghost', 'Ghost', now() + interval '2 days', now() + interval '2 days 1 hour', 'confirmed', 'exchange', 'ghost-item', now() - interval '1 hour')")).await;
    assert!(!app.wait_converged(Duration::ZERO).await.converged());

    let repaired = resync
        .reconcile_room(&target, Utc::now())
        .await
        .expect("reconciled");

    assert_eq!(
        (repaired.missing, repaired.stale, repaired.extra),
        (1, 2, 1),
        "{repaired:?}"
    );
    assert_eq!(repaired.drift(), 4);
    let result = app.wait_converged(CONVERGE).await;
    assert!(result.converged(), "{result:?}");
    let again = resync
        .reconcile_room(&target, Utc::now())
        .await
        .expect("reconciled");
    assert_eq!(again.drift(), 0, "{again:?}");
    let status = app.store.room_statuses().await.expect("statuses");
    let noted = status
        .iter()
        .find(|s| s.room.id == target.id)
        .expect("room");
    assert_eq!(noted.drift_repaired, 4);
    assert!(noted.last_full_resync_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_interrupted_half_way_cancels_nothing() {
    let app = TestApp::spawn(options()).await;
    app.control
        .create_appointment(ROOM, meeting("Real", hour(2, 9)))
        .expect("created");
    assert!(app.wait_converged(CONVERGE).await.converged());
    let target = room(&app, ROOM).await;
    sql(&app, &format!("INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, status, source, exchange_item_id, fetched_at) VALUES ({}, 'ghost', 'Ghost', now() + interval '2 days', now() + interval '2 days 1 hour', 'confirmed', 'exchange', 'ghost-item', now() - interval '1 hour')", target.id.0)).await;
    // A window of three CalendarView spans, the second one slow: cut off half way.
    let mut wide = app.config.clone();
    wide.sync.window_future_days = 1000;
    let resync = resync(&app, &wide);
    app.control.inject_fault(Fault::Latency {
        ms: 3_000,
        operations: vec!["FindItem".to_owned()],
    });
    let views_before = requests(&app, "FindItem");

    let interrupted = tokio::time::timeout(
        Duration::from_secs(4),
        resync.reconcile_room(&target, Utc::now()),
    )
    .await;
    app.control.heal();
    app.control.inject_fault(Fault::HttpStatus {
        status: 503,
        rate: 1.0,
        operations: vec!["FindItem".to_owned()],
    });
    let failed = resync.reconcile_room(&target, Utc::now()).await;
    app.control.heal();

    assert!(interrupted.is_err(), "the reconciliation was cut off");
    assert!(
        requests(&app, "FindItem") > views_before,
        "the view had started"
    );
    assert!(failed.is_err());
    let ghost = app
        .store
        .meetings(target.id)
        .await
        .expect("rows")
        .into_iter()
        .find(|row| row.exchange_uid == "ghost")
        .expect("ghost row");
    assert_eq!(
        ghost.status,
        MeetingStatus::Confirmed,
        "nothing was cancelled"
    );

    let finished = resync
        .reconcile_room(&target, Utc::now())
        .await
        .expect("reconciled");
    assert_eq!(finished.extra, 1, "{finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_ending_series_rolls_forward_with_the_window() {
    let mut app = TestApp::prepare(options()).await;
    app.config.sync.window_future_days = 20;
    app.start().await;
    let created = app
        .control
        .create_appointment(ROOM, daily("Forever", hour(0, 23), RangeEnd::NoEnd))
        .expect("series");
    assert!(app.wait_converged(CONVERGE).await.converged());
    let target = room(&app, ROOM).await;
    let confirmed = |rows: &[booking_sync::store::MeetingRow]| {
        rows.iter()
            .filter(|row| row.exchange_uid == created.uid && row.status == MeetingStatus::Confirmed)
            .count()
    };
    let before = confirmed(&app.store.meetings(target.id).await.expect("rows"));
    let resync = resync(&app, &app.config);

    let later = Utc::now() + Span::days(5);
    let outcome = resync.roll_room(&target, later).await.expect("rolled");

    let rows = app.store.meetings(target.id).await.expect("rows");
    assert_eq!(outcome.inserted, 5, "{outcome:?}");
    assert_eq!(confirmed(&rows), before + 5);
    let window = (later - Span::days(1), later + Span::days(20));
    let truth = app
        .control
        .appointments(ROOM, window.0, window.1)
        .expect("truth");
    let result = compare_room(&truth, &rows, window);
    assert!(result.converged(), "{result:?}");
    let again = resync.roll_room(&target, later).await.expect("rolled");
    assert_eq!((again.inserted, again.updated), (0, 0), "{again:?}");

    let next_day = later + Span::days(1);
    let reconciled = resync
        .reconcile_room(&target, next_day)
        .await
        .expect("reconciled");
    assert_eq!(reconciled.drift(), 0, "{reconciled:?}");
    assert_eq!(reconciled.rolled, 1, "{reconciled:?}");
    assert_eq!(reconciled.outcome.inserted, 1, "{reconciled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_service_reconciles_on_its_full_interval() {
    let mut app = TestApp::prepare(options()).await;
    app.config.resync.interval = Duration::from_millis(300);
    app.config.resync.full_interval = Duration::from_millis(600);
    app.start().await;
    let created = app
        .control
        .create_appointment(ROOM, meeting("Kept right", hour(2, 15)))
        .expect("created");
    assert!(app.wait_converged(CONVERGE).await.converged());

    sql(
        &app,
        &format!(
            "UPDATE meetings SET subject = 'Tampered' WHERE exchange_uid = '{}'",
            created.uid
        ),
    )
    .await;

    let started = tokio::time::Instant::now();
    let target = room(&app, ROOM).await;
    let drift = loop {
        let statuses = app.store.room_statuses().await.expect("statuses");
        let drift = statuses
            .iter()
            .find(|s| s.room.id == target.id)
            .map_or(0, |s| s.drift_repaired);
        if drift > 0 || started.elapsed() > CONVERGE {
            break drift;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(drift, 1);
    let result = app.wait_converged(CONVERGE).await;
    assert!(result.converged(), "{result:?}");
}

/// (action, origin) of every audit entry of `uid`, oldest first.
async fn audit_of(app: &TestApp, uid: &str) -> Vec<(String, String)> {
    let mut entries = app
        .store
        .audit_entries(&AuditFilter {
            uid: Some(uid.to_owned()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .expect("audit read");
    entries.reverse();
    entries
        .into_iter()
        .map(|entry| (entry.action, entry.origin))
        .collect()
}

fn entry(action: &str, origin: &str) -> (String, String) {
    (action.to_owned(), origin.to_owned())
}

/// A room whose checkpoint is lost (a restore, or a state Exchange rejected) is
/// enumerated again; what that finds gone is cancelled through the same write path as
/// any change: audited, services flagged, the organizer told (and told when a
/// booking's appointment is among what is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_of_a_full_sync_are_audited_and_run_the_rules() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = rules::sql(&app).await;
    let gone = app
        .control
        .create_appointment(ROOM, meeting("Deleted unseen", hour(2, 9)))
        .expect("created");
    let service = add_service(&client, meeting_id(&client, ROOM, &gone.uid).await).await;
    // A meeting the booking system created, linked to its appointment by the sync.
    let mut booked = meeting("Booked at the desk", hour(2, 13));
    booked.uid = Some("booking-77".to_owned());
    client
        .execute(
            "INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, \
                 organizer_email, source) \
             SELECT id, 'booking-77', $1, $2, $3, 'user-001@contoso.example', 'booking' \
             FROM rooms WHERE email = $4",
            &[&booked.subject, &booked.start, &booked.end, &ROOM],
        )
        .await
        .expect("booking row");
    app.control
        .create_appointment(ROOM, booked)
        .expect("created");
    rules::wait_rows(
        &client,
        "SELECT 1 FROM meetings WHERE exchange_uid = 'booking-77' AND exchange_item_id IS NOT NULL",
    )
    .await;
    app.stop().await;

    for uid in [gone.uid.as_str(), "booking-77"] {
        app.control
            .delete_appointment(ROOM, uid, DeleteMode::Hard, None)
            .expect("deleted");
    }
    sql(&app, "UPDATE mailbox_sync SET sync_state = NULL").await;
    app.start().await;
    let issues = issues_after(&client, "cancelled_with_services", &gone.uid).await;
    let missing = issues_after(&client, "booking_missing_in_exchange", "booking-77").await;

    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        issues[0].recipient.as_deref(),
        Some("user-001@contoso.example")
    );
    assert_eq!(service_status(&client, service).await, "needs_attention");
    // The booking system's meeting stays; its organizer is told it left Exchange.
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(
        missing[0].recipient.as_deref(),
        Some("user-001@contoso.example")
    );
    // Created and cancelled by passes the subscription's catch-up started.
    assert_eq!(
        audit_of(&app, &gone.uid).await,
        [entry("insert", "stream"), entry("cancel", "stream")]
    );
}

/// The rows a full reconciliation repairs or cancels are audited as `resync`, and a
/// cancelled row's services are flagged as for any cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_of_a_reconciliation_are_audited_as_resync_and_run_the_rules() {
    let mut app = app_with_routing().await;
    app.start().await;
    let client = rules::sql(&app).await;
    let tampered = app
        .control
        .create_appointment(ROOM, meeting("Board meeting", hour(3, 14)))
        .expect("created");
    meeting_id(&client, ROOM, &tampered.uid).await;
    let target = room(&app, ROOM).await;
    sql(
        &app,
        &format!(
            "UPDATE meetings SET subject = 'Tampered' WHERE exchange_uid = '{}'",
            tampered.uid
        ),
    )
    .await;
    sql(&app, &format!("INSERT INTO meetings (room_id, exchange_uid, subject, starts_at, ends_at, status, source, exchange_item_id, fetched_at) VALUES ({}, 'ghost', 'Ghost', now() + interval '2 days', now() + interval '2 days 1 hour', 'confirmed', 'exchange', 'ghost-item', now() - interval '1 hour')", target.id.0)).await;
    let ghost_service = add_service(&client, meeting_id(&client, ROOM, "ghost").await).await;

    let repaired = resync(&app, &app.config)
        .reconcile_room(&target, Utc::now())
        .await
        .expect("reconciled");

    assert_eq!((repaired.stale, repaired.extra), (1, 1), "{repaired:?}");
    assert_eq!(
        audit_of(&app, &tampered.uid).await,
        [entry("insert", "stream"), entry("update", "resync")]
    );
    assert_eq!(audit_of(&app, "ghost").await, [entry("cancel", "resync")]);
    assert_eq!(
        service_status(&client, ghost_service).await,
        "needs_attention"
    );
    // The ghost has no organizer: the fallback owner is told.
    let issues = issues_after(&client, "cancelled_with_services", "ghost").await;
    assert_eq!(
        issues
            .iter()
            .map(|issue| issue.recipient.as_deref())
            .collect::<Vec<_>>(),
        [Some("facilities@contoso.example")]
    );
}

/// A catch-up the periodic resync queued is audited as `resync`; a change a streaming
/// event announced is audited as `stream`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_names_the_stream_or_the_resync_as_the_source_of_a_change() {
    let mut app = TestApp::prepare(options()).await;
    app.config.subscriptions.heartbeat_timeout = Duration::from_secs(600);
    app.start().await;
    let streamed = app
        .control
        .create_appointment(ROOM, meeting("Announced by the stream", hour(2, 9)))
        .expect("created");
    assert!(app.wait_converged(CONVERGE).await.converged());
    app.stop().await;

    app.config.resync.interval = Duration::from_millis(500);
    let restarted = app.store.database_time().await.expect("time");
    app.start().await;
    // Wait for the catch-ups after subscribing, then let only the resync find changes.
    let started = tokio::time::Instant::now();
    while app
        .store
        .room_statuses()
        .await
        .expect("statuses")
        .iter()
        .any(|status| status.last_sync_at.is_none_or(|at| at < restarted))
    {
        assert!(started.elapsed() < CONVERGE, "catch-ups after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.control.inject_fault(Fault::StallStreams);
    let resynced = app
        .control
        .create_appointment(ROOM, meeting("Found by the resync", hour(2, 11)))
        .expect("created");
    let result = app.wait_converged(CONVERGE).await;
    app.control.heal();

    assert!(result.converged(), "{result:?}");
    assert_eq!(
        audit_of(&app, &streamed.uid).await,
        [entry("insert", "stream")]
    );
    assert_eq!(
        audit_of(&app, &resynced.uid).await,
        [entry("insert", "resync")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_reconciliations_during_a_workload_count_no_drift() {
    let mut app = TestApp::prepare(TestOptions {
        rooms: 10,
        ..options()
    })
    .await;
    // The service reconciles every room every second too, beside the rounds below.
    app.config.resync.interval = Duration::from_millis(500);
    app.config.resync.full_interval = Duration::from_secs(1);
    app.start().await;
    let resync = resync(&app, &app.config);
    let control = app.control.clone();
    let workload = tokio::spawn(async move {
        control
            .run_workload(Workload {
                changes: 600,
                rate_per_sec: 100.0,
                seed: 23,
                mix: WorkloadMix::default(),
                wait: true,
            })
            .await
            .expect("workload runs")
    });

    let mut rounds = 0;
    let mut drift = 0;
    let mut in_flight = 0;
    let mut failures = Vec::new();
    while !workload.is_finished() {
        resync
            .reconcile_all(Utc::now(), |room, result| match result {
                Ok(report) => {
                    drift += report.drift();
                    in_flight += report.in_flight;
                }
                Err(err) => failures.push(format!("{}: {err}", room.email)),
            })
            .await;
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let changes = workload.await.expect("workload task").changes;
    let converged = app.wait_converged(CONVERGE * 2).await;

    assert!(changes >= 600, "{changes} changes");
    assert!(
        rounds >= 2,
        "only {rounds} reconciliation rounds ran during the workload"
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        in_flight > 0,
        "the reconciliations met no change in flight: the race was not exercised"
    );
    assert_eq!(
        drift, 0,
        "drift counted while the fast path coped ({in_flight} in flight)"
    );
    assert!(converged.converged(), "{converged:?}");
    assert_eq!(
        (
            converged.missing,
            converged.unexpected,
            converged.stale,
            converged.duplicate
        ),
        (0, 0, 0, 0)
    );
    let mut after = 0;
    resync
        .reconcile_all(Utc::now(), |_, result| {
            after += result.as_ref().expect("reconciled").drift();
        })
        .await;
    assert_eq!(after, 0, "drift after convergence");
    let repaired: i64 = app
        .store
        .room_statuses()
        .await
        .expect("statuses")
        .iter()
        .map(|status| status.drift_repaired)
        .sum();
    assert_eq!(
        repaired, 0,
        "drift noted by the service's own reconciliations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_fast_path_never_applied_is_repaired_and_counted() {
    let app = TestApp::spawn(options()).await;
    let created = app
        .control
        .create_appointment(ROOM, meeting("First title", hour(2, 10)))
        .expect("created");
    assert!(app.wait_converged(CONVERGE).await.converged());
    let target = room(&app, ROOM).await;
    let before = app
        .store
        .meetings(target.id)
        .await
        .expect("rows")
        .into_iter()
        .find(|row| row.exchange_uid == created.uid)
        .expect("row");
    app.control
        .update_appointment(
            ROOM,
            &created.uid,
            AppointmentPatch {
                subject: Some("Second title".to_owned()),
                ..AppointmentPatch::default()
            },
        )
        .expect("updated");
    assert!(app.wait_converged(CONVERGE).await.converged());
    // The row as if the update had never reached it, while the stored sync state
    // is past it: only the full reconciliation can see it.
    sql(
        &app,
        &format!(
            "UPDATE meetings SET subject = 'First title', exchange_change_key = '{}', \
                 exchange_last_modified = '{}', updated_at = now() - interval '1 hour' \
             WHERE exchange_uid = '{}'",
            before.exchange_change_key.expect("change key"),
            before
                .exchange_last_modified
                .expect("last modified")
                .to_rfc3339(),
            created.uid
        ),
    )
    .await;
    let resync = resync(&app, &app.config);
    let caught_up = resync.catch_up_room(&target).await.expect("caught up");
    assert_eq!(
        caught_up.outcome.updated, 0,
        "no change list reports it again"
    );

    let repaired = resync
        .reconcile_room(&target, Utc::now())
        .await
        .expect("reconciled");

    assert_eq!(
        (
            repaired.missing,
            repaired.stale,
            repaired.extra,
            repaired.in_flight
        ),
        (0, 1, 0, 0),
        "{repaired:?}"
    );
    let row = app
        .store
        .meetings(target.id)
        .await
        .expect("rows")
        .into_iter()
        .find(|row| row.exchange_uid == created.uid)
        .expect("row");
    assert_eq!(row.subject, "Second title");
    let again = resync
        .reconcile_room(&target, Utc::now())
        .await
        .expect("reconciled");
    assert_eq!(again.drift(), 0, "{again:?}");
}
