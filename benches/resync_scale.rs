//! Periodic resync at scale: 1,000 rooms with 200 meetings each, nothing changed.
//!
//! Targets: a full reconciliation of every room finishes in at most 60 s and writes
//! no meeting row; an incremental resync costs at most one EWS call per room. This is
//! a one-shot measurement (seconds per pass, calls per room), not a criterion loop:
//! one iteration already takes tens of seconds.
//!
//! `cargo bench --bench resync_scale` (uses the local PostgreSQL server; set
//! `BENCH_ROOMS` and `BENCH_MEETINGS` to scale it down). Prints one JSON line.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use tokio_postgres::NoTls;

use booking_sync::cli::resync::{self, ResyncOptions};
use booking_sync::config::Config;
use booking_sync::demo;
use booking_sync::sim::{NewAppointment, SimConfig, Simulator};
use booking_sync::store::PgStore;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

async fn admin(statement: &str) {
    let (client, connection) = tokio_postgres::connect(ADMIN_URL, NoTls)
        .await
        .expect("the local PostgreSQL server answers");
    let task = tokio::spawn(connection);
    client
        .batch_execute(statement)
        .await
        .expect("admin statement");
    drop(client);
    let _ = task.await;
}

async fn query_i64(url: &str, sql: &str, since: DateTime<Utc>) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connects");
    let task = tokio::spawn(connection);
    let count: i64 = client
        .query_one(sql, &[&since])
        .await
        .expect("query")
        .get(0);
    drop(client);
    let _ = task.await;
    count
}

fn total_requests(sim: &booking_sync::sim::SimHandle) -> u64 {
    sim.control().stats().requests.values().sum()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let rooms = setting("BENCH_ROOMS", 1000);
    let meetings = setting("BENCH_MEETINGS", 200);
    let sim = Simulator::start(SimConfig {
        rooms,
        users: 50,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let control = sim.control();
    let base = DateTime::from_timestamp(Utc::now().timestamp() / 3600 * 3600, 0).expect("time");
    for room in 1..=rooms {
        let email = format!("room-{room:03}@contoso.example");
        for index in 0..meetings {
            let start = base + Span::hours(2 + (index as i64) * 40);
            control
                .create_appointment(
                    &email,
                    NewAppointment {
                        subject: format!("Meeting {index}"),
                        start,
                        end: start + Span::hours(1),
                        is_all_day: false,
                        organizer: format!("user-{:03}@contoso.example", 1 + index % 50),
                        location: None,
                        attendees: Vec::new(),
                        time_zone: None,
                        recurrence: None,
                        uid: None,
                    },
                )
                .expect("meeting created");
        }
    }

    let name = format!("bench_resync_{}", std::process::id());
    admin(&format!("DROP DATABASE IF EXISTS {name}")).await;
    admin(&format!("CREATE DATABASE {name}")).await;
    let url = format!("{SERVER_URL}{name}");
    let mut config = Config::for_tests(&url, &sim.ews_url());
    config.pipeline.workers = 8;
    config.database.pool_size = 16;
    let store = PgStore::connect(&config.database).await.expect("store");
    store.migrate().await.expect("migrations");
    demo::seed(&store, &control).await.expect("seeded");

    let incremental = ResyncOptions::default();
    let initial = resync::run(&config, &store, &incremental)
        .await
        .expect("initial sync");
    let rows = store.meeting_count().await.expect("count");
    assert_eq!(initial.failed, 0, "initial sync failed for some rooms");

    let calls_before = total_requests(&sim);
    let caught_up = resync::run(&config, &store, &incremental)
        .await
        .expect("incremental resync");
    let calls = total_requests(&sim) - calls_before;

    let before_full = store.database_time().await.expect("clock");
    let full = resync::run(
        &config,
        &store,
        &ResyncOptions {
            full: true,
            ..ResyncOptions::default()
        },
    )
    .await
    .expect("full reconciliation");
    let written = query_i64(
        &url,
        "SELECT count(*) FROM meetings WHERE updated_at >= $1",
        before_full,
    )
    .await;

    println!(
        "{}",
        serde_json::json!({
            "rooms": rooms,
            "meetings_per_room": meetings,
            "meeting_rows": rows,
            "initial_sync_seconds": initial.seconds,
            "incremental_seconds": caught_up.seconds,
            "incremental_ews_calls_per_room": calls as f64 / rooms as f64,
            "incremental_changes": caught_up.changes,
            "full_seconds": full.seconds,
            "full_failed_rooms": full.failed,
            "full_drift": full.drift,
            "full_meeting_rows_written": written,
        })
    );
    store.close();
    sim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}
