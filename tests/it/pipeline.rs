//! End to end: Exchange simulator -> service -> PostgreSQL.

use std::time::Duration;

use booking_sync::domain::MailboxAddress;
use booking_sync::sim::limits::LimitsConfig;
use booking_sync::sim::{
    AppointmentPatch, DeleteMode, MailboxKind, NewAppointment, NewMailbox, Workload, WorkloadMix,
};
use booking_sync::store::{MeetingRow, MeetingStatus};
use chrono::{DateTime, Duration as Span, Timelike, Utc};

use crate::support::app::{TestApp, TestOptions};

const CONVERGE: Duration = Duration::from_secs(30);

fn at(days: i64, hour: u32) -> DateTime<Utc> {
    (Utc::now() + Span::days(days))
        .with_hour(hour)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("a valid time")
}

fn meeting(subject: &str, start: DateTime<Utc>, hours: i64) -> NewAppointment {
    NewAppointment {
        subject: subject.to_owned(),
        start,
        end: start + Span::hours(hours),
        is_all_day: false,
        organizer: "user-001@contoso.example".to_owned(),
        location: None,
        attendees: Vec::new(),
        time_zone: None,
        recurrence: None,
        uid: None,
    }
}

async fn rows_for(app: &TestApp, room: &str, uid: &str) -> Vec<MeetingRow> {
    let rooms = app.store.enabled_rooms().await.expect("rooms");
    let room = rooms
        .iter()
        .find(|r| r.email == MailboxAddress::new(room))
        .expect("room exists");
    app.store
        .meetings(room.id)
        .await
        .expect("meetings")
        .into_iter()
        .filter(|row| row.exchange_uid == uid)
        .collect()
}

async fn wait_for<F>(app: &TestApp, room: &str, uid: &str, condition: F) -> Vec<MeetingRow>
where
    F: Fn(&[MeetingRow]) -> bool,
{
    let started = tokio::time::Instant::now();
    loop {
        let rows = rows_for(app, room, uid).await;
        if condition(&rows) || started.elapsed() > CONVERGE {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_edited_moved_and_cancelled_meeting_reaches_the_meetings_table() {
    let app = TestApp::spawn(TestOptions::default()).await;
    let room_a = "room-001@contoso.example";
    let room_b = "room-002@contoso.example";
    let start = at(2, 9);

    // Created.
    let created = app
        .control
        .create_appointment(room_a, meeting("Quarterly planning", start, 1))
        .expect("created");
    let rows = wait_for(&app, room_a, &created.uid, |rows| rows.len() == 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].subject, "Quarterly planning");
    assert_eq!(rows[0].starts_at, start);
    assert_eq!(rows[0].ends_at, start + Span::hours(1));
    assert_eq!(rows[0].status, MeetingStatus::Confirmed);
    assert_eq!(rows[0].occurrence_start, None);
    assert_eq!(
        rows[0].organizer_email.as_deref(),
        Some("user-001@contoso.example")
    );
    assert!(
        rows[0].organizer_user_id.is_some(),
        "organizer is a known user"
    );

    // Edited.
    let later = start + Span::hours(3);
    app.control
        .update_appointment(
            room_a,
            &created.uid,
            AppointmentPatch {
                subject: Some("Quarterly planning (moved)".to_owned()),
                start: Some(later),
                end: Some(later + Span::minutes(30)),
                ..AppointmentPatch::default()
            },
        )
        .expect("updated");
    let rows = wait_for(&app, room_a, &created.uid, |rows| {
        rows.first().is_some_and(|r| r.starts_at == later)
    })
    .await;
    assert_eq!(rows[0].subject, "Quarterly planning (moved)");
    assert_eq!(rows[0].ends_at, later + Span::minutes(30));

    // Moved to another room: gone from A (soft delete there), created in B with the same UID.
    app.control
        .delete_appointment(room_a, &created.uid, DeleteMode::Soft, None)
        .expect("removed from room A");
    let mut in_b = meeting("Quarterly planning (moved)", later, 1);
    in_b.uid = Some(created.uid.clone());
    app.control
        .create_appointment(room_b, in_b)
        .expect("created in room B");
    let rows_a = wait_for(&app, room_a, &created.uid, |rows| {
        rows.first()
            .is_some_and(|r| r.status == MeetingStatus::Cancelled)
    })
    .await;
    assert_eq!(
        rows_a[0].status,
        MeetingStatus::Cancelled,
        "the row stays, cancelled"
    );
    let rows_b = wait_for(&app, room_b, &created.uid, |rows| rows.len() == 1).await;
    assert_eq!(rows_b[0].status, MeetingStatus::Confirmed);

    // Cancelled by the organizer.
    app.control
        .cancel_appointment(room_b, &created.uid)
        .expect("cancelled");
    let rows_b = wait_for(&app, room_b, &created.uid, |rows| {
        rows.first()
            .is_some_and(|r| r.status == MeetingStatus::Cancelled)
    })
    .await;
    assert_eq!(rows_b[0].status, MeetingStatus::Cancelled);

    let result = app.wait_converged(CONVERGE).await;
    assert!(result.converged(), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_series_becomes_one_row_per_occurrence() {
    let app = TestApp::spawn(TestOptions::default()).await;
    let room = "room-003@contoso.example";
    let start = at(1, 10);
    let mut series = meeting("Stand-up", start, 1);
    series.recurrence = Some(booking_sync::recurrence::Recurrence {
        pattern: booking_sync::recurrence::Pattern::Daily { interval: 7 },
        start_date: start.date_naive(),
        end: booking_sync::recurrence::RangeEnd::Numbered { count: 6 },
    });
    let created = app
        .control
        .create_appointment(room, series)
        .expect("series");

    let rows = wait_for(&app, room, &created.uid, |rows| rows.len() == 6).await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows.iter().all(|r| r.occurrence_start.is_some()));

    let result = app.wait_converged(CONVERGE).await;
    assert!(result.converged(), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_service_was_stopped_arrive_without_refetching_unchanged_items() {
    let mut app = TestApp::spawn(TestOptions::default()).await;
    let room = "room-001@contoso.example";
    for index in 0..20 {
        app.control
            .create_appointment(
                room,
                meeting(
                    &format!("Before {index}"),
                    at(3, 8) + Span::minutes(index * 30),
                    1,
                ),
            )
            .expect("created");
    }
    assert!(app.wait_converged(CONVERGE).await.converged());

    app.stop().await;
    let changed = app
        .control
        .create_appointment(room, meeting("While stopped", at(4, 9), 1))
        .expect("created while down");
    let get_items_before = app
        .control
        .stats()
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("GetItem/"))
        .map(|(_, v)| v)
        .sum::<u64>();

    app.start().await;
    let result = app.wait_converged(CONVERGE).await;

    assert!(result.converged(), "{result:?}");
    let rows = rows_for(&app, room, &changed.uid).await;
    assert_eq!(rows.len(), 1);
    let get_items = app
        .control
        .stats()
        .requests
        .iter()
        .filter(|(k, _)| k.starts_with("GetItem/"))
        .map(|(_, v)| v)
        .sum::<u64>()
        - get_items_before;
    assert!(
        get_items <= 1,
        "unchanged items were fetched again: {get_items} GetItem calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_queue_under_a_burst_over_many_rooms_stays_bounded_and_converges() {
    let app = TestApp::spawn(TestOptions {
        rooms: 100,
        users: 20,
        queue_capacity: 16,
        ..TestOptions::default()
    })
    .await;

    let report = app
        .control
        .run_workload(Workload {
            changes: 5_000,
            rate_per_sec: 0.0,
            seed: 11,
            mix: WorkloadMix::default(),
            wait: true,
        })
        .await
        .expect("workload runs");
    assert_eq!(report.changes, 5_000, "{report:?}");

    let service = app.service.as_ref().expect("running");
    assert!(service.queue.len() <= 16);
    let result = app.wait_converged(Duration::from_secs(120)).await;
    assert!(result.converged(), "{result:?}");
    assert!(result.expected > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_enabled_while_running_is_picked_up_and_a_disabled_one_is_unsubscribed() {
    let app = TestApp::spawn(TestOptions::default()).await;
    let new_room = "room-new@contoso.example";
    app.control
        .add_mailbox(NewMailbox {
            email: new_room.to_owned(),
            display_name: "New room".to_owned(),
            kind: MailboxKind::Room,
            aliases: Vec::new(),
        })
        .expect("mailbox added");
    assert_eq!(app.control.stats().subscriptions, 3);

    app.store
        .upsert_room(&MailboxAddress::new(new_room), "New room", true)
        .await
        .expect("room enabled");
    let created = app
        .control
        .create_appointment(new_room, meeting("First booking", at(5, 14), 1))
        .expect("created");
    let rows = wait_for(&app, new_room, &created.uid, |rows| rows.len() == 1).await;
    assert_eq!(rows.len(), 1, "the new room is synced without a restart");
    assert_eq!(app.control.stats().subscriptions, 4);

    let changed = app
        .store
        .set_room_sync_enabled(&MailboxAddress::new("room-001@contoso.example"), false)
        .await
        .expect("room disabled");
    assert!(changed);
    let started = tokio::time::Instant::now();
    while app.control.stats().subscriptions != 3 && started.elapsed() < CONVERGE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.control.stats().subscriptions,
        3,
        "the disabled room is unsubscribed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_renewed_at_connection_timeout_lose_no_event() {
    let mut app = TestApp::prepare(TestOptions {
        sim_minute: Duration::from_millis(300),
        ..TestOptions::default()
    })
    .await;
    app.config.subscriptions.connection_timeout_minutes = 1;
    app.start().await;
    let room = "room-002@contoso.example";
    let streams_before = app
        .control
        .stats()
        .requests
        .get("GetStreamingEvents/ok")
        .copied()
        .unwrap_or(0);

    let mut uids = Vec::new();
    for index in 0..40 {
        let created = app
            .control
            .create_appointment(
                room,
                meeting(
                    &format!("Renewal {index}"),
                    at(6, 8) + Span::minutes(index * 15),
                    1,
                ),
            )
            .expect("created");
        uids.push(created.uid);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = app.wait_converged(CONVERGE).await;

    assert!(result.converged(), "{result:?}");
    let streams = app
        .control
        .stats()
        .requests
        .get("GetStreamingEvents/ok")
        .copied()
        .unwrap_or(0)
        - streams_before;
    assert!(
        streams >= 3,
        "the stream was renewed several times while changes flowed ({streams})"
    );
    for uid in &uids {
        assert_eq!(rows_for(&app, room, uid).await.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_replayed_events_change_nothing() {
    let mut app = TestApp::spawn(TestOptions {
        duplicate_event_ratio: 1.0,
        ..TestOptions::default()
    })
    .await;
    let room = "room-001@contoso.example";
    let created = app
        .control
        .create_appointment(room, meeting("Duplicated", at(2, 11), 1))
        .expect("created");
    for minutes in [30, 60, 90] {
        app.control
            .update_appointment(
                room,
                &created.uid,
                AppointmentPatch {
                    start: Some(at(2, 11) + Span::minutes(minutes)),
                    end: Some(at(2, 12) + Span::minutes(minutes)),
                    ..AppointmentPatch::default()
                },
            )
            .expect("updated");
    }
    assert!(app.wait_converged(CONVERGE).await.converged());
    let before = rows_for(&app, room, &created.uid).await;

    // Replay everything: forget every checkpoint, so the next start receives every
    // item of every room again as if it were new.
    app.stop().await;
    for room in app.store.enabled_rooms().await.expect("rooms") {
        app.store.reset_sync_state(room.id).await.expect("reset");
    }
    app.start().await;
    let result = app.wait_converged(CONVERGE).await;

    assert!(result.converged(), "{result:?}");
    let after = rows_for(&app, room, &created.uid).await;
    assert_eq!(before, after, "a replay rewrote the row");
}

/// Rooms in groups of two, and the simulator counting streams per account.
fn capped_options(rooms: usize, sim_cap: usize) -> TestOptions {
    TestOptions {
        rooms,
        users: 10,
        sim_limits: LimitsConfig {
            hanging_connection_limit: sim_cap,
            connections_per_account: true,
            ..LimitsConfig::default()
        },
        ..TestOptions::default()
    }
}

async fn run_workload_over_every_room(app: &TestApp, seed: u64) {
    let report = app
        .control
        .run_workload(Workload {
            changes: 400,
            rate_per_sec: 0.0,
            seed,
            mix: WorkloadMix::default(),
            wait: true,
        })
        .await
        .expect("workload runs");
    assert_eq!(report.changes, 400, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_groups_over_two_connection_slots_hold_two_streams_and_poll_the_rest() {
    let mut app = TestApp::prepare(capped_options(10, 2)).await;
    app.config.subscriptions.group_size = 2;
    app.config.subscriptions.max_streaming_connections = 2;
    app.config.subscriptions.poll_interval = Duration::from_millis(500);
    app.start().await;

    run_workload_over_every_room(&app, 23).await;
    let result = app.wait_converged(Duration::from_secs(60)).await;

    assert!(result.converged(), "{result:?}");
    assert!(result.expected > 0);
    let stats = app.control.stats();
    let peak = stats
        .peak_streams_by_account
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    assert_eq!(peak, 2, "{:?}", stats.peak_streams_by_account);
    assert_eq!(
        stats.connection_refusals, 0,
        "the service never asked for a third connection"
    );
    let service = app.service.as_ref().expect("running");
    assert_eq!(service.rooms.polled_count(), 6, "three groups of two poll");
    let statuses = app.store.room_statuses().await.expect("statuses");
    let polled = statuses
        .iter()
        .filter(|status| status.polled_since.is_some())
        .count();
    let streamed = statuses
        .iter()
        .filter(|status| status.subscription_id.is_some())
        .count();
    assert_eq!((polled, streamed), (6, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_cap_below_the_configured_one_lowers_ours_and_still_converges() {
    let mut app = TestApp::prepare(capped_options(8, 1)).await;
    app.config.subscriptions.group_size = 2;
    app.config.subscriptions.max_streaming_connections = 4;
    app.config.subscriptions.poll_interval = Duration::from_millis(500);
    app.start().await;

    run_workload_over_every_room(&app, 29).await;
    let result = app.wait_converged(Duration::from_secs(60)).await;

    assert!(result.converged(), "{result:?}");
    assert!(result.expected > 0);
    let stats = app.control.stats();
    assert!(
        (1..=3).contains(&stats.connection_refusals),
        "Exchange refused the groups beyond its own cap once each, with no retry loop: {}",
        stats.connection_refusals
    );
    assert!(
        stats
            .peak_streams_by_account
            .values()
            .all(|peak| *peak <= 1),
        "{:?}",
        stats.peak_streams_by_account
    );
    let service = app.service.as_ref().expect("running");
    assert_eq!(
        service.rooms.polled_count(),
        6,
        "the groups Exchange refused poll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_connection_slot_goes_to_a_polled_group() {
    let mut app = TestApp::prepare(TestOptions {
        rooms: 6,
        ..TestOptions::default()
    })
    .await;
    app.config.subscriptions.group_size = 2;
    app.config.subscriptions.max_streaming_connections = 2;
    app.config.subscriptions.poll_interval = Duration::from_millis(300);
    app.start().await;
    let service = app.service.as_ref().expect("running");
    assert_eq!(service.rooms.polled_count(), 2, "one group of two polls");
    let statuses = app.store.room_statuses().await.expect("statuses");
    let streamed: Vec<MailboxAddress> = statuses
        .iter()
        .filter(|status| status.subscription_id.is_some())
        .map(|status| status.room.email.clone())
        .collect();
    assert_eq!(streamed.len(), 4);

    // Groups are filled in address order, so the first streamed room and its
    // neighbour share a group: disabling both frees that group's slot.
    let first = streamed[0].as_str();
    let number: usize = first["room-".len()..first.find('@').expect("an address")]
        .parse()
        .expect("a room number");
    let partner = if number % 2 == 1 {
        number + 1
    } else {
        number - 1
    };
    for room in [number, partner] {
        let email = MailboxAddress::new(&format!("room-{room:03}@contoso.example"));
        assert!(app
            .store
            .set_room_sync_enabled(&email, false)
            .await
            .expect("room disabled"));
    }
    let started = tokio::time::Instant::now();
    while (service.rooms.polled_count() > 0 || app.control.stats().subscriptions != 4)
        && started.elapsed() < CONVERGE
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(
        service.rooms.polled_count(),
        0,
        "the polled group streams now"
    );
    assert_eq!(app.control.stats().subscriptions, 4);
    let stats = app.control.stats();
    assert!(
        stats
            .peak_streams_by_account
            .values()
            .all(|peak| *peak <= 2),
        "{:?}",
        stats.peak_streams_by_account
    );
    let statuses = app.store.room_statuses().await.expect("statuses");
    assert!(statuses.iter().all(|status| status.polled_since.is_none()));
}
