//! The fault-matrix harness: fifty rooms, the service (the `booking-sync run` binary,
//! one process per row) talking to the simulator and PostgreSQL through fault
//! proxies, a workload of at least a thousand changes while a fault is active, then
//! the convergence checker and the service's own `/metrics`.
//!
//! Every row runs with the periodic resync off or on, as `FAULT_RESYNC` says (`off`,
//! the default, proves the streaming path recovers by itself; `on` runs catch-ups
//! every second and a full reconciliation every few seconds, and the row waits for
//! one full reconciliation after the heal).
//!
//! Every row prints one `FAULT-ROW {json}` line (row, resync mode, changes, lost,
//! unexpected, stale, duplicate, seconds to converge, fetches per change, drift the
//! resync repaired) that `scripts/fault-matrix.sh` collects into its table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use booking_sync::checker::{Convergence, Verdict, MIN_CHANGES, MIN_ROOMS};
use booking_sync::demo;
use booking_sync::pgtemp::TempPostgres;
use booking_sync::sim::{SimStats, Workload, WorkloadMix, WorkloadReport};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::app::{TestApp, TestOptions};
use super::daemon::{Daemon, Metrics, GRACE_SECONDS};
use super::proxy::Proxy;

/// How long a row may take to converge after its fault healed.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a row with the resync on waits for a full reconciliation after the heal.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(90);
/// Incremental catch-up interval with the resync on.
const RESYNC_INTERVAL: &str = "1s";
/// Full reconciliation interval with the resync on.
const FULL_RESYNC_INTERVAL: &str = "4s";

/// Whether the service's periodic resync runs during a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncMode {
    /// `[resync] enabled = false`: only the streaming path repairs anything.
    Off,
    /// Catch-ups every second, full reconciliations every few seconds.
    On,
}

impl ResyncMode {
    /// `FAULT_RESYNC=off|on` (default off).
    pub fn from_env() -> Self {
        match std::env::var("FAULT_RESYNC").as_deref() {
            Err(_) | Ok("" | "off") => Self::Off,
            Ok("on") => Self::On,
            Ok(other) => panic!("FAULT_RESYNC must be off or on, not {other:?}"),
        }
    }

    /// `off` or `on`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
        }
    }
}

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
    /// Start the service (and wait for its initial sync) in [`FaultRow::start`].
    pub start_service: bool,
    /// Run on a private PostgreSQL server of the row's own, which the row may
    /// restart or crash, instead of the shared one.
    pub private_postgres: bool,
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
            start_service: true,
            private_postgres: false,
        }
    }
}

/// One row's world: the test app with the service process behind proxies.
pub struct FaultRow {
    /// The matrix row, e.g. "1".
    pub row: &'static str,
    /// The service process, when running (dropped, and so killed, first).
    service: Option<Daemon>,
    /// Database, simulator, the service's configuration (the service itself runs as
    /// a child process, never in `app`).
    pub app: TestApp,
    /// Between the service and the simulator.
    pub ews: Proxy,
    /// Between the service and PostgreSQL, when asked for.
    pub db: Option<Proxy>,
    /// The row's own PostgreSQL server, when asked for (stopped after `app` dropped
    /// its database).
    pub postgres: Option<TempPostgres>,
    /// Whether the periodic resync runs.
    pub resync: ResyncMode,
    /// The service's configuration file.
    pub config_path: PathBuf,
    options: RowOptions,
    stats_before: SimStats,
    dir: tempfile::TempDir,
}

/// What a row measured; printed as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct RowReport {
    /// The matrix row.
    pub row: &'static str,
    /// `off` or `on`: whether the periodic resync ran.
    pub resync: &'static str,
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
    /// Differences the periodic full resync found and repaired (0 with it off).
    pub drift: u64,
    /// Full resyncs that completed in the last service process.
    pub resync_runs: u64,
    /// Whether the row passed the checker with enough volume.
    pub passed: bool,
    /// The last service process's metrics after convergence.
    #[serde(skip)]
    pub metrics: Metrics,
}

impl FaultRow {
    /// Starts everything and, unless told otherwise, the service, and waits for the
    /// initial sync of every room.
    pub async fn start(row: &'static str, options: RowOptions) -> Self {
        let postgres = if options.private_postgres {
            Some(
                TempPostgres::start_durable()
                    .await
                    .expect("a private PostgreSQL starts (initdb and pg_ctl installed)"),
            )
        } else {
            None
        };
        let mut app = TestApp::prepare(TestOptions {
            rooms: options.rooms,
            users: 10,
            queue_capacity: options.queue_capacity,
            duplicate_event_ratio: options.duplicate_event_ratio,
            admin_url: postgres.as_ref().map(TempPostgres::url),
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
        if options.db_proxy || options.private_postgres {
            // A black-holed or restarting database costs seconds too.
            app.config.database.statement_timeout = Duration::from_secs(2);
            app.config.database.connect_timeout = Duration::from_secs(2);
        }
        let db = if options.db_proxy {
            let target = database_addr(&app.db.url);
            let proxy = Proxy::start(target).await;
            // A black-holed transaction gives up after 2 × 2 s + 2 s.
            app.config.database.url = app
                .db
                .url
                .replace(&target.to_string(), &proxy.addr().to_string());
            Some(proxy)
        } else {
            None
        };
        let resync = ResyncMode::from_env();
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("booking-sync.toml");
        std::fs::write(&config_path, config_file(&app, resync)).expect("config written");
        let stats_before = app.control.stats();
        let mut this = Self {
            row,
            service: None,
            app,
            ews,
            db,
            postgres,
            resync,
            config_path,
            options,
            stats_before,
            dir,
        };
        if this.options.start_service {
            this.start_service().await;
        }
        this
    }

    /// Starts the service process and waits for every room's initial sync.
    pub async fn start_service(&mut self) {
        let rooms = self.options.rooms;
        self.spawn_service().wait_initial_sync(rooms).await;
    }

    /// Starts the service process without waiting for anything (a running one is
    /// killed first).
    pub fn spawn_service(&mut self) -> &mut Daemon {
        self.service.insert(Daemon::spawn(&self.config_path))
    }

    /// Another service process on the same configuration, e.g. a second instance.
    pub fn spawn_another(&self) -> Daemon {
        Daemon::spawn(&self.config_path)
    }

    /// The running service process.
    pub fn service(&mut self) -> &mut Daemon {
        self.service.as_mut().expect("the service runs")
    }

    /// SIGKILL to the service, waiting for its end.
    pub async fn kill_service(&mut self) {
        if let Some(daemon) = self.service.take() {
            daemon.kill().await;
        }
    }

    /// SIGTERM to the service; its exit status, unless it outlived the grace period
    /// by ten seconds.
    pub async fn stop_service(&mut self) -> Option<ExitStatus> {
        let mut daemon = self.service.take()?;
        daemon.signal("TERM");
        daemon
            .wait_exit(Duration::from_secs(GRACE_SECONDS + 10))
            .await
    }

    /// One scrape of the running service's `/metrics`.
    pub async fn metrics(&mut self) -> Metrics {
        self.service().metrics().await
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
    /// convergence (and, with the resync on, for a full reconciliation after the
    /// heal) and reports. Asserts nothing: the caller asserts on the report.
    pub async fn finish(&mut self, workload: JoinHandle<WorkloadReport>) -> RowReport {
        let report = workload.await.expect("workload task");
        self.app.control.heal();
        self.ews.set(super::proxy::Mode::Pass);
        if let Some(db) = &self.db {
            db.set(super::proxy::Mode::Pass);
        }
        let healed = Instant::now();
        let runs_at_heal = self.full_resyncs().await;
        let mut convergence = self.wait_converged(CONVERGE_TIMEOUT).await;
        let seconds = healed.elapsed().as_secs_f64();
        if self.resync == ResyncMode::On {
            // The resync must not undo what the fast path did, nor be needed by it.
            let started = Instant::now();
            while self.full_resyncs().await <= runs_at_heal && started.elapsed() < RESYNC_TIMEOUT {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            convergence = self.wait_converged(CONVERGE_TIMEOUT).await;
        }
        let stats = self.app.control.stats();
        let fetches = demo::requests_for(&stats, "GetItem")
            .saturating_sub(demo::requests_for(&self.stats_before, "GetItem"));
        let verdict = Verdict {
            convergence,
            changes: report.changes as u64,
            rooms: self.options.rooms,
        };
        let metrics = match self.service.as_mut() {
            Some(daemon) => daemon.metrics().await,
            None => Metrics::default(),
        };
        let row = RowReport {
            resync: self.resync.as_str(),
            drift: metrics.total("booking_sync_resync_drift_repaired_total") as u64,
            resync_runs: metrics.get("booking_sync_resync_runs_total", &[("outcome", "ok")]) as u64,
            metrics,
            ..row_report(self.row, &verdict, seconds, fetches)
        };
        println!(
            "FAULT-ROW {}",
            serde_json::to_string(&row).expect("a row serialises")
        );
        if self.resync == ResyncMode::On {
            assert!(
                row.resync_runs > runs_at_heal,
                "row {}: no full resync completed within {RESYNC_TIMEOUT:?} of the heal",
                self.row
            );
        }
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

    /// The temporary directory of the row (config file, service logs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Full resyncs the running service completed (0 without one).
    async fn full_resyncs(&mut self) -> u64 {
        match self.service.as_mut() {
            Some(daemon) => daemon
                .metrics()
                .await
                .get("booking_sync_resync_runs_total", &[("outcome", "ok")])
                as u64,
            None => 0,
        }
    }

    /// Waits until the database matches the simulator and the service's queue is
    /// empty (or `timeout` passes) and returns the last comparison.
    async fn wait_converged(&mut self, timeout: Duration) -> Convergence {
        let started = Instant::now();
        loop {
            let result = demo::compare(&self.app.store, &self.app.control, &self.app.config)
                .await
                .expect("comparison runs");
            let idle = match self.service.as_mut() {
                Some(daemon) => daemon.metrics().await.total("booking_sync_queue_depth") == 0.0,
                None => true,
            };
            if (result.converged() && idle) || started.elapsed() > timeout {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl RowReport {
    /// Panics with the whole report unless the row passed.
    pub fn assert_passed(&self) {
        assert!(self.passed, "fault row {} failed: {self:?}", self.row);
    }

    /// The value of a counter or gauge (summed over the series matching `labels`).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics.get(name, labels)
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
        resync: "off",
        changes: verdict.changes,
        rooms: verdict.rooms,
        lost: missing,
        unexpected,
        stale,
        duplicate,
        seconds_to_converge: seconds,
        fetches_per_change: fetches as f64 / verdict.changes.max(1) as f64,
        drift: 0,
        resync_runs: 0,
        passed: verdict.passed(),
        metrics: Metrics::default(),
    }
}

/// The service's configuration file for `app.config` in resync mode `resync`.
fn config_file(app: &TestApp, resync: ResyncMode) -> String {
    let config = &app.config;
    let resync = match resync {
        ResyncMode::Off => "enabled = false".to_owned(),
        ResyncMode::On => format!(
            "enabled = true\ninterval = \"{RESYNC_INTERVAL}\"\nfull_interval = \"{FULL_RESYNC_INTERVAL}\""
        ),
    };
    format!(
        r#"[database]
url = "{db}"
pool_size = {pool}
statement_timeout = "{statement}ms"
connect_timeout = "{connect}ms"

[exchange]
url = "{ews}"
auth = "none"
request_timeout = "{request}ms"

[subscriptions]
heartbeat_timeout = "{heartbeat}ms"

[pipeline]
queue_capacity = {queue}
coalesce_window = "{coalesce}ms"

[sync]
room_refresh_interval = "{refresh}ms"

[resync]
{resync}

[http]
listen = "127.0.0.1:0"
"#,
        db = config.database.url,
        pool = config.database.pool_size,
        statement = config.database.statement_timeout.as_millis(),
        connect = config.database.connect_timeout.as_millis(),
        ews = config.exchange.url,
        request = config.exchange.request_timeout.as_millis(),
        heartbeat = config.subscriptions.heartbeat_timeout.as_millis(),
        queue = config.pipeline.queue_capacity,
        coalesce = config.pipeline.coalesce_window.as_millis(),
        refresh = config.sync.room_refresh_interval.as_millis(),
    )
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
fn database_addr(url: &str) -> SocketAddr {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let authority = after_at.split('/').next().expect("an authority");
    authority
        .parse()
        .expect("the test database is on host:port")
}
