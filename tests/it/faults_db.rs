//! Fault matrix rows on the database side (reliability.md section 2, rows 22-28):
//! the service's PostgreSQL link runs through the fault proxy, or the test database
//! misbehaves on purpose, while a thousand changes go through fifty rooms.

use std::time::Duration;

use booking_sync::app::Service;
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
    let row = FaultRow::start("22", through_db_proxy()).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row23_a_black_holed_database_times_out_and_recovers_without_a_restart() {
    let row = FaultRow::start("23", through_db_proxy()).await;

    let workload = row.workload();
    tokio::time::sleep(Duration::from_millis(500)).await;
    db_proxy(&row).set(Mode::BlackHole);
    // Longer than one transaction attempt may take (2 × 2 s + 2 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let queue_during = row
        .app
        .service
        .as_ref()
        .map_or(0, |service| service.queue.len());
    db_proxy(&row).set(Mode::Pass);
    // Connections held through the black hole are dropped, as a real peer would.
    db_proxy(&row).reset_all();
    let report = row.finish(workload).await;

    report.assert_passed();
    assert!(queue_during > 0, "work waited while the database was gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row24_database_backends_terminated_as_in_a_restart_are_reconnected() {
    let row = FaultRow::start("24", RowOptions::default()).await;
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        row.app.db.name
    );

    let workload = row.workload();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        row.app.db.execute(&terminate).await;
    }
    let report = row.finish(workload).await;

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row25_commits_whose_answer_is_lost_are_redone_harmlessly() {
    // A crash of PostgreSQL as the service sees it: every connection dies at once,
    // often between COMMIT and its answer. The shared test server is not crashed.
    let row = FaultRow::start("25", through_db_proxy()).await;

    let workload = row.workload();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        db_proxy(&row).reset_all();
    }
    let report = row.finish(workload).await;

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row26_serialization_failures_and_deadlocks_retry_the_whole_transaction() {
    let row = FaultRow::start("26", RowOptions::default()).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row27_two_instances_inserting_the_same_new_meetings_make_one_row_each() {
    let row = FaultRow::start("27", RowOptions::default()).await;
    let second = Service::start(&row.app.config)
        .await
        .expect("a second instance starts");

    let workload = row.workload();
    let report = row.finish(workload).await;
    second.shutdown(Duration::from_secs(5)).await;

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row28_a_late_write_of_an_older_version_never_overwrites_a_newer_one() {
    let row = FaultRow::start("28", RowOptions::default()).await;
    let second = Service::start(&row.app.config)
        .await
        .expect("a second instance starts");
    // Slow fetches widen the window between one instance's fetch and its commit.
    row.app.control.inject_fault(Fault::Latency {
        ms: 150,
        operations: vec!["GetItem".to_owned()],
    });

    let workload = row.workload();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = row.finish(workload).await;
    second.shutdown(Duration::from_secs(5)).await;

    report.assert_passed();
}
