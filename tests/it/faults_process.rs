//! Fault matrix rows on the service process (reliability.md section 2, rows 32-36):
//! the `booking-sync` binary is killed or stopped while a thousand changes go through
//! fifty rooms, started again, and the checker must find nothing lost.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::support::faults::{FaultRow, RowOptions};
use crate::support::proxy::Mode;

const BINARY: &str = env!("CARGO_BIN_EXE_booking-sync");
/// The grace period the binary gets on SIGTERM.
const GRACE_SECONDS: u64 = 5;

/// A service process, killed when dropped so a failing test leaves nothing running.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    fn spawn(config: &Path) -> Self {
        Self(
            Command::new(BINARY)
                .arg("--config")
                .arg(config)
                .arg("run")
                .arg("--grace-seconds")
                .arg(GRACE_SECONDS.to_string())
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the binary starts"),
        )
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} works");
    }

    async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.0.try_wait().expect("wait works") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn kill(mut self) {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(10))
            .await
            .expect("a killed process ends");
    }
}

fn write_config(row: &FaultRow, dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("booking-sync.toml");
    let config = &row.app.config;
    let text = format!(
        r#"[database]
url = "{db}"
pool_size = 4
statement_timeout = "{statement}ms"
connect_timeout = "{connect}ms"

[exchange]
url = "{ews}"
auth = "none"
request_timeout = "5s"

[subscriptions]
heartbeat_timeout = "4s"

[pipeline]
coalesce_window = "100ms"

[sync]
room_refresh_interval = "500ms"

[http]
listen = "127.0.0.1:0"
"#,
        db = config.database.url,
        statement = config.database.statement_timeout.as_millis(),
        connect = config.database.connect_timeout.as_millis(),
        ews = config.exchange.url,
    );
    std::fs::write(&path, text).expect("config written");
    path
}

fn out_of_process() -> RowOptions {
    RowOptions {
        in_process: false,
        rate: 200.0,
        ..RowOptions::default()
    }
}

fn random_pause(from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(from_ms..=to_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row32_sigkill_at_random_moments_loses_nothing() {
    let row = FaultRow::start("32", out_of_process()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&row, &dir);

    let workload = row.workload();
    let mut daemon = Daemon::spawn(&config);
    for _ in 0..5 {
        tokio::time::sleep(random_pause(300, 1200)).await;
        daemon.kill().await;
        daemon = Daemon::spawn(&config);
    }
    let report = row.finish(workload).await;
    daemon.signal("TERM");

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row33_sigkill_during_the_initial_full_sync_tombstones_nothing_early() {
    let row = FaultRow::start("33", out_of_process()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&row, &dir);
    // Calendars full before the service ever ran: its first passes enumerate them.
    row.workload().await.expect("a first workload");

    let daemon = Daemon::spawn(&config);
    tokio::time::sleep(Duration::from_millis(700)).await;
    daemon.kill().await;
    let daemon = Daemon::spawn(&config);
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.kill().await;
    let daemon = Daemon::spawn(&config);
    let workload = row.workload();
    let report = row.finish(workload).await;
    daemon.signal("TERM");

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row34_a_crash_right_after_a_commit_redoes_the_work_harmlessly() {
    let row = FaultRow::start("34", out_of_process()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&row, &dir);

    let workload = row.workload();
    let mut daemon = Daemon::spawn(&config);
    for _ in 0..5 {
        // Killed the moment a new commit shows, before the worker can go on.
        let committed = row.app.store.meeting_count().await.expect("count");
        let started = Instant::now();
        while row.app.store.meeting_count().await.expect("count") == committed
            && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        daemon.kill().await;
        daemon = Daemon::spawn(&config);
    }
    let report = row.finish(workload).await;
    daemon.signal("TERM");

    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row35_sigterm_drains_within_the_grace_period_and_exits_zero() {
    let row = FaultRow::start("35", out_of_process()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&row, &dir);

    let workload = row.workload();
    let mut daemon = Daemon::spawn(&config);
    let mut exits = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(random_pause(800, 1500)).await;
        daemon.signal("TERM");
        exits.push(
            daemon
                .wait_exit(Duration::from_secs(GRACE_SECONDS + 10))
                .await,
        );
        daemon = Daemon::spawn(&config);
    }
    let report = row.finish(workload).await;
    daemon.signal("TERM");
    let last = daemon
        .wait_exit(Duration::from_secs(GRACE_SECONDS + 10))
        .await;

    report.assert_passed();
    for status in exits.iter().chain([&last]) {
        let status = status.expect("stopped within the grace period");
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row36_sigterm_while_the_database_is_black_holed_exits_and_the_next_start_converges() {
    let row = FaultRow::start(
        "36",
        RowOptions {
            db_proxy: true,
            ..out_of_process()
        },
    )
    .await;
    let db = row.db.as_ref().expect("database proxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&row, &dir);

    let workload = row.workload();
    let mut daemon = Daemon::spawn(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.set(Mode::BlackHole);
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.signal("TERM");
    // The grace period plus one transaction attempt (2 × 2 s + 2 s) at most.
    let status = daemon
        .wait_exit(Duration::from_secs(GRACE_SECONDS + 10))
        .await;
    db.set(Mode::Pass);
    db.reset_all();
    let daemon = Daemon::spawn(&config);
    let report = row.finish(workload).await;
    daemon.signal("TERM");

    assert!(status.is_some(), "the process ended despite the database");
    report.assert_passed();
}
