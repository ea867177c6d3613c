//! Fault matrix rows on the database side (reliability.md section 2, rows 22-28):
//! the service's PostgreSQL link runs through the fault proxy, the test database
//! misbehaves on purpose, or (rows 24 and 25) the row's own PostgreSQL server is
//! restarted or crashed, while a thousand changes go through fifty rooms.

use std::time::Duration;

use booking_sync::pgtemp::TempPostgres;
use booking_sync::sim::faults::Fault;

use crate::support::faults::{FaultRow, RowOptions};
use crate::support::proxy::Mode;

fn through_db_proxy() -> RowOptions {
    RowOptions {
        db_proxy: true,
        ..RowOptions::default()
    }
}

fn db_proxy(row: &FaultRow) -> &crate::support::proxy::Proxy {
    row.db
        .as_ref()
        .expect("the database link runs through a proxy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row22_database_connections_reset_mid_transaction_are_retried() {
    let mut row = FaultRow::start("22", through_db_proxy()).await;
    let before = db_proxy(&row).accepted();

    let workload = row.workload();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        db_proxy(&row).reset_all();
    }
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(
        db_proxy(&row).accepted() > before,
        "the pool opened fresh connections"
    );
    assert!(
        report.metric("booking_sync_db_retries_total", &[]) > 0.0,
        "the broken transactions were retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row23_a_black_holed_database_times_out_and_recovers_without_a_restart() {
    let mut row = FaultRow::start("23", through_db_proxy()).await;

    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(500)).await;
    db_proxy(&row).set(Mode::BlackHole);
    // Longer than one transaction attempt may take (2 × 2 s + 2 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let queue_during = row.metrics().await.total("booking_sync_queue_depth");
    db_proxy(&row).set(Mode::Pass);
    // Connections held through the black hole are dropped, as a real peer would.
    db_proxy(&row).reset_all();
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(
        queue_during > 0.0,
        "work waited while the database was gone"
    );
    assert!(
        report.metric("booking_sync_db_retries_total", &[]) > 0.0,
        "the timed-out transactions were retried"
    );
}

fn on_a_private_server() -> RowOptions {
    RowOptions {
        private_postgres: true,
        ..RowOptions::default()
    }
}

fn private_server(row: &FaultRow) -> &TempPostgres {
    row.postgres
        .as_ref()
        .expect("the row runs its own PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row24_a_database_restarted_during_writes_is_reconnected_to() {
    let mut row = FaultRow::start("24", on_a_private_server()).await;
    let pid = row.service().id();

    let workload = row.workload();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        private_server(&row)
            .restart()
            .await
            .expect("pg_ctl restart -m fast");
    }
    let report = row.finish(workload).await;

    report.assert_passed();
    assert_still_running(&mut row, pid).await;
    assert!(
        report.metric("booking_sync_db_retries_total", &[("class", "connection")]) > 0.0,
        "transactions cut by the restarts were retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row25_a_database_crash_during_writes_keeps_every_commit_and_redoes_the_rest() {
    let mut row = FaultRow::start("25", on_a_private_server()).await;
    let pid = row.service().id();

    let workload = row.workload();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        private_server(&row)
            .crash()
            .await
            .expect("pg_ctl stop -m immediate");
        tokio::time::sleep(Duration::from_millis(500)).await;
        private_server(&row)
            .start_again()
            .await
            .expect("the crashed server recovers");
    }
    let report = row.finish(workload).await;

    report.assert_passed();
    assert_eq!(report.duplicate, 0, "no meeting twice");
    assert_still_running(&mut row, pid).await;
    assert!(
        report.metric("booking_sync_db_retries_total", &[("class", "connection")]) > 0.0,
        "transactions cut by the crashes were retried"
    );
}

/// The service that started the row is the one still running: it recovered by itself.
async fn assert_still_running(row: &mut FaultRow, pid: u32) {
    let service = row.service();
    assert_eq!(service.id(), pid, "the same process");
    assert!(
        service.wait_exit(Duration::ZERO).await.is_none(),
        "the service is still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row26_serialization_failures_and_deadlocks_retry_the_whole_transaction() {
    let mut row = FaultRow::start("26", RowOptions::default()).await;
    row.app
        .db
        .execute(
            "CREATE SEQUENCE fault_writes; \
             CREATE FUNCTION fault_fail() RETURNS trigger LANGUAGE plpgsql AS $$ \
             DECLARE n bigint := nextval('fault_writes'); \
             BEGIN \
               IF n % 10 = 0 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; \
               ELSIF n % 10 = 5 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'; \
               END IF; \
               RETURN NULL; \
             END $$; \
             CREATE TRIGGER fault_fail BEFORE INSERT OR UPDATE ON meetings \
             FOR EACH STATEMENT EXECUTE FUNCTION fault_fail();",
        )
        .await;

    let workload = row.workload();
    let report = row.finish(workload).await;
    let writes = row
        .app
        .db
        .query_i64("SELECT last_value FROM fault_writes")
        .await;

    report.assert_passed();
    assert!(writes >= 10, "failures were injected ({writes} writes)");
    // Every 10th write raised 40001 and every 10th (offset 5) 40P01. Each failure
    // was retried, or it was the last of a transaction's attempts and failed its
    // mailbox pass (which the queue runs again) or its room's resync pass (which the
    // next resync runs again).
    let injected = writes / 10 + (writes + 5) / 10;
    let retried = report.metric(
        "booking_sync_db_retries_total",
        &[("class", "serialization")],
    );
    let given_up = report.metric(
        "booking_sync_mailbox_syncs_total",
        &[("outcome", "store_error")],
    ) + report.metric("booking_sync_resync_room_failures_total", &[]);
    assert!(retried > 0.0, "failed transactions were retried");
    assert_eq!(
        retried + given_up,
        injected as f64,
        "every injected failure was retried or failed its pass ({retried} retried, {given_up} given up)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row27_two_instances_inserting_the_same_new_meetings_make_one_row_each() {
    let mut row = FaultRow::start("27", RowOptions::default()).await;
    let mut second = row.spawn_another();
    second.wait_initial_sync(50).await;

    let workload = row.workload();
    let report = row.finish(workload).await;
    second.signal("TERM");

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row28_a_late_write_of_an_older_version_never_overwrites_a_newer_one() {
    let mut row = FaultRow::start("28", RowOptions::default()).await;
    let mut second = row.spawn_another();
    second.wait_initial_sync(50).await;
    // Slow fetches widen the window between one instance's fetch and its commit.
    row.app.control.inject_fault(Fault::Latency {
        ms: 150,
        operations: vec!["GetItem".to_owned()],
    });

    let workload = row.workload();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = row.finish(workload).await;
    second.signal("TERM");

    report.assert_passed();
}
