//! The fault-matrix harness: fifty rooms, the service talking to the simulator (and
//! optionally PostgreSQL) through fault proxies, a workload of at least a thousand
//! changes while a fault is active, then the convergence checker.
//!
//! Every row prints one `FAULT-ROW {json}` line (row, changes, lost, unexpected, stale,
//! duplicate, seconds to converge, fetches per change) that `scripts/fault-matrix.sh`
//! collects into its table.

use std::net::SocketAddr;
use std::time::Duration;

use booking_sync::checker::{Convergence, Verdict, MIN_CHANGES, MIN_ROOMS};
use booking_sync::demo;
use booking_sync::sim::{SimStats, Workload, WorkloadMix, WorkloadReport};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::app::{TestApp, TestOptions};
use super::proxy::Proxy;

/// How long a row may take to converge after its fault healed.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Knobs of one row.
#[derive(Debug, Clone)]
pub struct RowOptions {
    /// Rooms (at least [`MIN_ROOMS`] for a verdict).
    pub rooms: usize,
    /// Changes (at least [`MIN_CHANGES`] for a verdict).
    pub changes: u64,
    /// Changes per second of the workload.
    pub rate: f64,
    /// Put the database link behind a proxy too.
    pub db_proxy: bool,
    /// Share of updates the simulator notifies twice.
    pub duplicate_event_ratio: f64,
    /// Work queue capacity.
    pub queue_capacity: usize,
    /// Start the service in this process (rows on the binary start their own).
    pub in_process: bool,
}

impl Default for RowOptions {
    fn default() -> Self {
        Self {
            rooms: MIN_ROOMS,
            changes: MIN_CHANGES,
            rate: 400.0,
            db_proxy: false,
            duplicate_event_ratio: 0.1,
            queue_capacity: 64,
            in_process: true,
        }
    }
}

/// One row's world: the test app with the service behind proxies.
pub struct FaultRow {
    /// The matrix row, e.g. "1".
    pub row: &'static str,
    /// Database, simulator, service.
    pub app: TestApp,
    /// Between the service and the simulator.
    pub ews: Proxy,
    /// Between the service and PostgreSQL, when asked for.
    pub db: Option<Proxy>,
    options: RowOptions,
    stats_before: SimStats,
}

/// What a row measured; printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct RowReport {
    /// The matrix row.
    pub row: &'static str,
    /// Changes the workload made.
    pub changes: u64,
    /// Rooms.
    pub rooms: usize,
    /// Occurrences Exchange has that the database lacks.
    pub lost: u64,
    /// Confirmed rows Exchange does not have.
    pub unexpected: u64,
    /// Rows older than Exchange's version.
    pub stale: u64,
    /// Extra rows for one meeting.
    pub duplicate: u64,
    /// From the heal (and the end of the workload) to convergence.
    pub seconds_to_converge: f64,
    /// GetItem calls per change.
    pub fetches_per_change: f64,
    /// Whether the row passed the checker with enough volume.
    pub passed: bool,
}

impl FaultRow {
    /// Starts everything and waits for the initial sync of every room.
    pub async fn start(row: &'static str, options: RowOptions) -> Self {
        let mut app = TestApp::prepare(TestOptions {
            rooms: options.rooms,
            users: 10,
            queue_capacity: options.queue_capacity,
            duplicate_event_ratio: options.duplicate_event_ratio,
            ..TestOptions::default()
        })
        .await;
        let ews = Proxy::start(app.sim.addr()).await;
        app.config.exchange.url = app
            .sim
            .ews_url()
            .replace(&app.sim.addr().to_string(), &ews.addr().to_string());
        // Faults must cost seconds, not the production minute.
        app.config.exchange.request_timeout = Duration::from_secs(5);
        app.config.subscriptions.heartbeat_timeout = Duration::from_secs(4);
        let db = if options.db_proxy {
            let target = database_addr(&app.db.url);
            let proxy = Proxy::start(target).await;
            app.config.database.url = app
                .db
                .url
                .replace(&target.to_string(), &proxy.addr().to_string());
            // A black-holed transaction gives up after 2 × 2 s + 2 s.
            app.config.database.statement_timeout = Duration::from_secs(2);
            app.config.database.connect_timeout = Duration::from_secs(2);
            Some(proxy)
        } else {
            None
        };
        if options.in_process {
            app.start().await;
        }
        let stats_before = app.control.stats();
        Self {
            row,
            app,
            ews,
            db,
            options,
            stats_before,
        }
    }

    /// Starts the row's workload in the background.
    pub fn workload(&self) -> JoinHandle<WorkloadReport> {
        let control = self.app.control.clone();
        let workload = Workload {
            changes: usize::try_from(self.options.changes).expect("changes fit usize"),
            rate_per_sec: self.options.rate,
            seed: 11,
            mix: WorkloadMix::default(),
            wait: true,
        };
        tokio::spawn(async move { control.run_workload(workload).await.expect("workload runs") })
    }

    /// Waits for the workload, heals the simulator and the proxies, waits for
    /// convergence and reports. Asserts nothing: the caller asserts on the report.
    pub async fn finish(&self, workload: JoinHandle<WorkloadReport>) -> RowReport {
        let report = workload.await.expect("workload task");
        self.app.control.heal();
        self.ews.set(super::proxy::Mode::Pass);
        if let Some(db) = &self.db {
            db.set(super::proxy::Mode::Pass);
        }
        let healed = Instant::now();
        let convergence = self.app.wait_converged(CONVERGE_TIMEOUT).await;
        let seconds = healed.elapsed().as_secs_f64();
        let stats = self.app.control.stats();
        let fetches = demo::requests_for(&stats, "GetItem")
            .saturating_sub(demo::requests_for(&self.stats_before, "GetItem"));
        let verdict = Verdict {
            convergence,
            changes: report.changes as u64,
            rooms: self.options.rooms,
        };
        let row = row_report(self.row, &verdict, seconds, fetches);
        println!(
            "FAULT-ROW {}",
            serde_json::to_string(&row).expect("a row serialises")
        );
        row
    }

    /// Requests the simulator answered with a fault (or an error status) since start.
    pub fn faulted_requests(&self) -> u64 {
        let count = |stats: &SimStats| -> u64 {
            stats
                .requests
                .iter()
                .filter(|(key, _)| key.ends_with("/fault"))
                .map(|(_, count)| count)
                .sum()
        };
        count(&self.app.control.stats()).saturating_sub(count(&self.stats_before))
    }
}

impl RowReport {
    /// Panics with the whole report unless the row passed.
    pub fn assert_passed(&self) {
        assert!(self.passed, "fault row {} failed: {self:?}", self.row);
    }
}

fn row_report(row: &'static str, verdict: &Verdict, seconds: f64, fetches: u64) -> RowReport {
    let Convergence {
        missing,
        unexpected,
        stale,
        duplicate,
        ..
    } = verdict.convergence;
    RowReport {
        row,
        changes: verdict.changes,
        rooms: verdict.rooms,
        lost: missing,
        unexpected,
        stale,
        duplicate,
        seconds_to_converge: seconds,
        fetches_per_change: fetches as f64 / verdict.changes.max(1) as f64,
        passed: verdict.passed(),
    }
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
fn database_addr(url: &str) -> SocketAddr {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let authority = after_at.split('/').next().expect("an authority");
    authority
        .parse()
        .expect("the test database is on host:port")
}
