//! Fault matrix rows on the service process (reliability.md section 2, rows 32-36):
//! the `booking-sync` binary is killed or stopped while a thousand changes go through
//! fifty rooms, started again, and the checker must find nothing lost.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::support::faults::{FaultRow, RowOptions};
use crate::support::proxy::Mode;

fn out_of_process() -> RowOptions {
    RowOptions {
        start_service: false,
        rate: 200.0,
        ..RowOptions::default()
    }
}

fn random_pause(from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(from_ms..=to_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row32_sigkill_at_random_moments_loses_nothing() {
    let mut row = FaultRow::start("32", out_of_process()).await;

    let workload = row.workload();
    row.spawn_service();
    for _ in 0..5 {
        tokio::time::sleep(random_pause(300, 1200)).await;
        row.kill_service().await;
        row.spawn_service();
    }
    let report = row.finish(workload).await;
    row.service().signal("TERM");

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row33_sigkill_during_the_initial_full_sync_tombstones_nothing_early() {
    let mut row = FaultRow::start("33", out_of_process()).await;
    // Calendars full before the service ever ran: its first passes enumerate them.
    row.workload().await.expect("a first workload");

    row.spawn_service();
    tokio::time::sleep(Duration::from_millis(700)).await;
    row.kill_service().await;
    row.spawn_service();
    tokio::time::sleep(Duration::from_millis(500)).await;
    row.kill_service().await;
    row.spawn_service();
    let workload = row.workload();
    let report = row.finish(workload).await;
    row.service().signal("TERM");

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row34_a_crash_right_after_a_commit_redoes_the_work_harmlessly() {
    let mut row = FaultRow::start("34", out_of_process()).await;

    let workload = row.workload();
    row.spawn_service();
    for _ in 0..5 {
        // Killed the moment a new commit shows, before the worker can go on.
        let committed = row.app.store.meeting_count().await.expect("count");
        let started = Instant::now();
        while row.app.store.meeting_count().await.expect("count") == committed
            && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        row.kill_service().await;
        row.spawn_service();
    }
    let report = row.finish(workload).await;
    row.service().signal("TERM");

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row35_sigterm_drains_within_the_grace_period_and_exits_zero() {
    let mut row = FaultRow::start("35", out_of_process()).await;

    let workload = row.workload();
    row.spawn_service();
    let mut exits = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(random_pause(800, 1500)).await;
        exits.push(row.stop_service().await);
        row.spawn_service();
    }
    let report = row.finish(workload).await;
    let last = row.stop_service().await;

    report.assert_passed();
    for status in exits.iter().chain([&last]) {
        let status = status.expect("stopped within the grace period");
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row36_sigterm_while_the_database_is_black_holed_exits_and_the_next_start_converges() {
    let mut row = FaultRow::start(
        "36",
        RowOptions {
            db_proxy: true,
            ..out_of_process()
        },
    )
    .await;
    let workload = row.workload();
    row.spawn_service();
    tokio::time::sleep(Duration::from_secs(2)).await;
    row.db
        .as_ref()
        .expect("database proxy")
        .set(Mode::BlackHole);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The grace period plus one transaction attempt (2 × 2 s + 2 s) at most.
    let status = row.stop_service().await;
    let db = row.db.as_ref().expect("database proxy");
    db.set(Mode::Pass);
    db.reset_all();
    row.spawn_service();
    let report = row.finish(workload).await;
    row.service().signal("TERM");

    assert!(status.is_some(), "the process ended despite the database");
    report.assert_passed();
}
