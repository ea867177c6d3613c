//! Fault matrix rows on the Exchange side (reliability.md section 2): each injects its
//! fault while a thousand changes go through fifty rooms, heals it, and passes only
//! when the checker counts no lost, unexpected, stale or duplicate row.

use std::time::Duration;

use booking_sync::sim::faults::Fault;
use booking_sync::sim::DeleteMode;
use chrono::Utc;

use crate::support::faults::{FaultRow, RowOptions};
use crate::support::proxy::Mode;

/// Waits `total`, calling `action` every `every`.
async fn every(total: Duration, every: Duration, mut action: impl FnMut()) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < total {
        tokio::time::sleep(every).await;
        action();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row01_streams_reset_mid_stream_reconnect_and_lose_nothing() {
    let mut row = FaultRow::start("1", RowOptions::default()).await;
    let before = row.ews.accepted();

    let workload = row.workload();
    every(Duration::from_secs(3), Duration::from_millis(700), || {
        row.ews.reset_all();
    })
    .await;
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(row.ews.accepted() > before, "the service reconnected");
    assert!(
        report.metric("booking_sync_reconnects_total", &[]) > 0.0,
        "reconnects are counted"
    );
    let stats = row.app.control.stats();
    assert!(
        stats.subscriptions <= 50,
        "no duplicate subscriptions: {}",
        stats.subscriptions
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row02_a_black_holed_link_is_detected_by_the_watchdog_and_reconnected() {
    let mut row = FaultRow::start("2", RowOptions::default()).await;

    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(500)).await;
    row.ews.set(Mode::BlackHole);
    let held = row.ews.accepted();
    // Longer than the heartbeat timeout (4 s) and the request timeout (5 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let reconnected_while_held = row.ews.accepted() > held;
    row.ews.set(Mode::Pass);
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(
        reconnected_while_held,
        "the silent stream was torn down and reopened"
    );
    assert!(
        report.metric("booking_sync_reconnects_total", &[("reason", "silence")]) > 0.0,
        "the silence was detected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row03_high_latency_slows_the_sync_without_a_reconnect_storm() {
    let mut row = FaultRow::start("3", RowOptions::default()).await;
    let before = row.ews.accepted();

    row.app.control.inject_fault(Fault::Latency {
        ms: 1500,
        operations: Vec::new(),
    });
    let workload = row.workload();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let connections = row.ews.accepted() - before;
    let report = row.finish(workload).await;

    report.assert_passed();
    // New connections only for requests in parallel (the cap) and the stream,
    // with room for the pool replacing some; a reconnect storm makes hundreds.
    let cap = row.app.config.exchange.max_concurrent_requests as u64;
    assert!(
        connections <= 2 * cap + 4,
        "{connections} connections: no reconnect storm"
    );
    let reconnects = report.metric("booking_sync_reconnects_total", &[]);
    assert!(
        reconnects <= 1.0,
        "{reconnects} reconnects under latency alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row04_a_stream_sliced_into_five_byte_pieces_is_framed_correctly() {
    let mut row = FaultRow::start("4", RowOptions::default()).await;

    row.ews.set(Mode::Slice {
        bytes: 5,
        delay: Duration::ZERO,
    });
    let workload = row.workload();
    let report = row.finish(workload).await;

    report.assert_passed();
    assert_eq!(
        report.metric(
            "booking_sync_ews_requests_total",
            &[("outcome", "malformed")]
        ),
        0.0,
        "no parse error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row05_responses_cut_inside_the_xml_are_retried_and_never_half_applied() {
    let mut row = FaultRow::start("5", RowOptions::default()).await;

    row.app
        .control
        .inject_fault(Fault::TruncateResponses { rate: 0.3 });
    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(500)).await;
    row.ews.set(Mode::CutShort { bytes: 700 });
    tokio::time::sleep(Duration::from_secs(2)).await;
    row.ews.set(Mode::Pass);
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(row.ews.cuts() > 0, "connections were cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row06_a_full_resync_over_a_slow_link_keeps_making_progress() {
    let mut row = FaultRow::start(
        "6",
        RowOptions {
            start_service: false,
            ..RowOptions::default()
        },
    )
    .await;
    // Calendars filled before the service runs: its first passes are full syncs.
    row.workload().await.expect("a first workload");

    row.ews.set(Mode::Slice {
        bytes: 256,
        delay: Duration::from_millis(1),
    });
    row.start_service().await;
    row.ews.set(Mode::Pass);
    let workload = row.workload();
    let report = row.finish(workload).await;

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row07_subscriptions_dropped_by_an_exchange_restart_are_recreated() {
    let mut row = FaultRow::start("7", RowOptions::default()).await;

    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(800)).await;
    row.app.control.inject_fault(Fault::ExpireSubscriptions);
    row.app.control.inject_fault(Fault::DropStreams);
    tokio::time::sleep(Duration::from_millis(800)).await;
    row.app.control.inject_fault(Fault::ExpireSubscriptions);
    row.app.control.inject_fault(Fault::DropStreams);
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(row.app.control.stats().subscriptions >= 50, "resubscribed");
    assert!(
        report.metric("booking_sync_resubscriptions_total", &[]) > 0.0,
        "resubscriptions are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row08_missed_events_lead_to_a_catch_up() {
    let mut row = FaultRow::start("8", RowOptions::default()).await;

    let workload = row.workload();
    every(Duration::from_secs(2), Duration::from_millis(400), || {
        row.app.control.inject_fault(Fault::MissedEvents {
            mailboxes: Vec::new(),
            count: Some(10),
        });
    })
    .await;
    let report = row.finish(workload).await;

    report.assert_passed();
    let reported = row.app.control.stats().missed_reported;
    assert!(reported > 0, "missed events were reported");
    assert_eq!(
        report.metric(
            "booking_sync_resubscriptions_total",
            &[("reason", "missed")]
        ),
        reported as f64,
        "one catch-up per subscription Exchange reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row09_server_busy_pauses_the_account_for_its_backoff_and_drops_nothing() {
    let mut row = FaultRow::start("9", RowOptions::default()).await;
    let backoff = Duration::from_secs(2);
    let busy = Duration::from_secs(6);

    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(300)).await;
    row.app.control.inject_fault(Fault::ServerBusy {
        backoff_ms: 2000,
        duration_s: busy.as_secs(),
    });
    tokio::time::sleep(busy + Duration::from_millis(500)).await;
    let refused = row.faulted_requests();
    let report = row.finish(workload).await;

    report.assert_passed();
    // Each back-off lets at most one wave through: the requests in flight (the cap)
    // plus the group's stream and subscription calls.
    let waves = (busy.as_millis() / backoff.as_millis()) as u64 + 2;
    let per_wave = row.app.config.exchange.max_concurrent_requests as u64 + 4;
    assert!(refused > 0, "the fault was hit");
    assert!(
        report.metric("booking_sync_ews_throttled_total", &[]) > 0.0,
        "the back-offs are counted"
    );
    assert!(
        refused <= waves * per_wave,
        "{refused} refused requests: no request may start before the back-off expires"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_transient_503s_are_retried_with_backoff_until_they_pass() {
    let mut row = FaultRow::start("10", RowOptions::default()).await;

    row.app.control.inject_fault(Fault::HttpStatus {
        status: 503,
        rate: 0.3,
        operations: vec!["GetItem".to_owned(), "SyncFolderItems".to_owned()],
    });
    let workload = row.workload();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(row.faulted_requests() > 0, "the fault was hit");
    let failed = report.metric("booking_sync_ews_requests_total", &[])
        - report.metric("booking_sync_ews_requests_total", &[("outcome", "ok")]);
    assert!(failed > 0.0, "the failed requests are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_an_item_deleted_between_notification_and_fetch_leaves_no_ghost() {
    let mut row = FaultRow::start("11", RowOptions::default()).await;
    row.app.control.inject_fault(Fault::Latency {
        ms: 300,
        operations: vec!["GetItem".to_owned()],
    });

    let workload = row.workload();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = Utc::now();
    let mut deleted = 0;
    let rooms = row
        .app
        .control
        .mailboxes()
        .into_iter()
        .filter(|mailbox| mailbox.kind == booking_sync::sim::MailboxKind::Room);
    for room in rooms.take(20) {
        let truth = row
            .app
            .control
            .appointments(
                &room.email,
                now - chrono::Duration::days(30),
                now + chrono::Duration::days(90),
            )
            .expect("truth");
        let Some(entry) = truth.iter().find(|entry| entry.occurrence_start.is_none()) else {
            continue;
        };
        let patch = booking_sync::sim::AppointmentPatch {
            subject: Some("About to vanish".to_owned()),
            ..Default::default()
        };
        if row
            .app
            .control
            .update_appointment(&room.email, &entry.uid, patch)
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if row
                .app
                .control
                .delete_appointment(&room.email, &entry.uid, DeleteMode::Hard, None)
                .is_ok()
            {
                deleted += 1;
            }
        }
    }
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(deleted > 0, "items were deleted behind the events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row12_a_rejected_sync_state_resyncs_the_room_and_reconciles_deletes() {
    let mut row = FaultRow::start("12", RowOptions::default()).await;
    let workload = row.workload();
    let first = row.finish(workload).await;
    first.assert_passed();

    // While the service is down, meetings of one room vanish and its stored sync
    // state turns into one Exchange rejects.
    row.stop_service().await.expect("the service stops");
    let room = booking_sync::domain::MailboxAddress::new("room-003@contoso.example");
    let now = Utc::now();
    let truth = row
        .app
        .control
        .appointments(
            room.as_str(),
            now - chrono::Duration::days(30),
            now + chrono::Duration::days(90),
        )
        .expect("truth");
    let mut gone = 0;
    for entry in truth
        .iter()
        .filter(|entry| entry.occurrence_start.is_none())
        .take(5)
    {
        if row
            .app
            .control
            .delete_appointment(room.as_str(), &entry.uid, DeleteMode::Hard, None)
            .is_ok()
        {
            gone += 1;
        }
    }
    row.app
        .db
        .execute(&format!(
            "UPDATE mailbox_sync SET sync_state = 'bm90IGEgc3luYyBzdGF0ZQ==' \
             WHERE room_id = (SELECT id FROM rooms WHERE lower(email) = '{}')",
            room.as_str()
        ))
        .await;
    row.start_service().await;
    let workload = row.workload();
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(gone > 0, "meetings were deleted while the service was down");
    assert_eq!(
        report.metric("booking_sync_sync_state_resets_total", &[]),
        1.0,
        "one room was synced from scratch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row14_every_notification_twice_still_gives_one_row_per_meeting() {
    let mut row = FaultRow::start(
        "14",
        RowOptions {
            duplicate_event_ratio: 1.0,
            ..RowOptions::default()
        },
    )
    .await;

    let workload = row.workload();
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(
        report.fetches_per_change < 2.0,
        "coalescing keeps fetches down: {report:?}"
    );
    assert!(
        report.metric("booking_sync_events_duplicate_total", &[]) > 0.0,
        "the duplicates were seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row20_an_endpoint_refusing_connections_is_backed_off_and_recovered_from() {
    let mut row = FaultRow::start("20", RowOptions::default()).await;

    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(500)).await;
    row.ews.set(Mode::Refuse);
    let before = row.ews.accepted();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = row.ews.accepted() - before;
    row.ews.set(Mode::Pass);
    let report = row.finish(workload).await;

    report.assert_passed();
    // Back-off keeps the attempts well below one per worker per 100 ms.
    let workers = row.app.config.pipeline.workers as u64;
    assert!(
        attempts < workers * 50,
        "{attempts} connection attempts in 5 s: no hot retry loop"
    );
    assert!(
        report.metric("booking_sync_reconnects_total", &[]) > 0.0,
        "the lost streams are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_move_in_progress_is_waited_out_and_the_room_resubscribed() {
    let mut row = FaultRow::start("move", RowOptions::default()).await;
    let room = booking_sync::domain::MailboxAddress::new("room-005@contoso.example");

    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(300)).await;
    row.app.control.inject_fault(Fault::MailboxMove {
        email: room.clone(),
        duration_s: Some(3),
    });
    // Past the move and the listener's resubscribe delay.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let report = row.finish(workload).await;

    report.assert_passed();
    let stats = row.app.control.stats();
    assert_eq!(
        stats.subscriptions, 50,
        "every room, the moved one too, is subscribed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row15_an_older_version_from_a_lagging_replica_is_never_kept() {
    let mut row = FaultRow::start("15", RowOptions::default()).await;

    row.app
        .control
        .inject_fault(Fault::StaleReads { rate: 0.3 });
    let workload = row.workload();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = row.finish(workload).await;

    report.assert_passed();
    // An answer older than the change list is refused before any write (the pass
    // ends as `stale_read` and runs again); the write guard (`stale_skipped`) is the
    // second line, for versions that race between two passes (row 28).
    assert!(
        report.metric(
            "booking_sync_mailbox_syncs_total",
            &[("outcome", "stale_read")]
        ) > 0.0,
        "older versions were refused"
    );
    let stats = row.app.control.stats();
    assert!(stats.stale_reads_served > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row15e_an_older_exception_from_a_lagging_replica_is_never_kept() {
    let mut row = FaultRow::start("15e", RowOptions::default()).await;

    // Masters and singles are current; half of the exceptions come in an older
    // version than their master's ModifiedOccurrences lists.
    row.app
        .control
        .inject_fault(Fault::StaleExceptions { rate: 0.5 });
    let workload = row.workload();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = row.finish(workload).await;

    report.assert_passed();
    let stats = row.app.control.stats();
    assert!(
        stats.stale_exceptions_served > 0,
        "the replica served stale exceptions: {stats:?}"
    );
}
