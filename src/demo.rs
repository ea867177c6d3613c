//! `booking-sync demo`: the whole system on one machine, with no Exchange.
//!
//! Starts the bundled simulator on loopback, gets a database (a fresh one on the
//! configured server, or a private throwaway PostgreSQL), seeds rooms and users, runs
//! the service against the simulator, drives a workload through the simulator and
//! reports whether the `meetings` table converged to the simulator's truth.
//!
//! `--resync off` runs the service without its periodic resync and `--resync on` with
//! catch-ups every ten seconds and a full reconciliation every twenty (then the demo
//! also waits for one full reconciliation after convergence); the fault matrix runs
//! its storm row both ways.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use tokio::time::Instant;

use crate::app::Service;
use crate::checker::{compare_room, Convergence};
use crate::config::Config;
use crate::domain::MailboxAddress;
use crate::pgtemp::TempPostgres;
use crate::sim::{MailboxKind, SimConfig, SimControl, SimStats, Simulator, Workload, WorkloadMix};

/// The simulator's operation name of GetItem in its request counters.
const GET_ITEM: &str = "GetItem";
use crate::store::PgStore;

/// How the demo's service runs its periodic resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoResync {
    /// The configured defaults (a catch-up every 15 minutes): effectively never
    /// during a demo.
    #[default]
    Default,
    /// `[resync] enabled = false`.
    Off,
    /// Catch-ups every [`ON_RESYNC_INTERVAL`], full reconciliations every
    /// [`ON_FULL_RESYNC_INTERVAL`].
    On,
}

/// Catch-up interval of `--resync on`.
pub const ON_RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Full reconciliation interval of `--resync on`.
pub const ON_FULL_RESYNC_INTERVAL: Duration = Duration::from_secs(20);

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Room mailboxes in the simulator.
    pub rooms: usize,
    /// User mailboxes in the simulator.
    pub users: usize,
    /// Changes the workload makes.
    pub changes: u64,
    /// Changes per second (0: as fast as possible).
    pub rate: u64,
    /// Seed of the simulator and the workload.
    pub seed: u64,
    /// Keep everything running after the report (until Ctrl-C).
    pub keep_running: bool,
    /// Print the report as one JSON object on the last line.
    pub json: bool,
    /// PostgreSQL server to create the demo database on; `None`: a private server.
    pub database_url: Option<String>,
    /// How long to wait for convergence after the workload.
    pub converge_timeout: Duration,
    /// Work queue capacity in mailboxes (`None`: the configured default).
    pub queue_capacity: Option<usize>,
    /// The periodic resync.
    pub resync: DemoResync,
}

/// The demo's outcome; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Rooms synced.
    pub rooms: usize,
    /// Changes the workload made.
    pub changes: u64,
    /// Occurrences the simulator has inside the sync window.
    pub meetings_expected: u64,
    /// Rows in the database describing them.
    pub meetings_in_db: u64,
    /// Occurrences without a row.
    pub missing: u64,
    /// Confirmed rows without an occurrence.
    pub unexpected: u64,
    /// Rows that differ from the simulator.
    pub stale: u64,
    /// Extra rows for a meeting that already has one.
    pub duplicate: u64,
    /// Whether the database matched the simulator.
    pub converged: bool,
    /// From the end of the workload to convergence.
    pub seconds_to_converge: f64,
    /// Seconds the workload took.
    pub workload_seconds: f64,
    /// Meeting rows written per second over the run.
    pub committed_per_second: f64,
    /// GetItem calls the service made per changed item.
    pub get_item_calls_per_change: f64,
    /// The periodic resync the service ran with.
    pub resync: DemoResync,
    /// Work queue capacity in mailboxes.
    pub queue_capacity: usize,
    /// Times the listener waited because the queue was full (back-pressure; the
    /// service never drops an event).
    pub queue_full_waits: u64,
    /// Events merged into an entry already queued for their mailbox.
    pub queue_coalesced: u64,
    /// Full reconciliations that completed.
    pub resync_runs: u64,
    /// Differences the full reconciliations repaired.
    pub drift: u64,
}

/// Runs the demo and returns its report.
///
/// # Errors
/// When no database can be had, the simulator or the service cannot start.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoReport> {
    let progress = Progress::new(options.json);
    let (database_url, demo_database) = database(&options, &progress).await?;
    let result = run_with(&options, &progress, &database_url).await;
    demo_database.remove().await;
    result
}

async fn run_with(
    options: &DemoOptions,
    progress: &Progress,
    database_url: &str,
) -> anyhow::Result<DemoReport> {
    progress.line("starting the Exchange simulator");
    let sim = Simulator::start(SimConfig {
        listen: "127.0.0.1:0".parse().expect("a valid socket address"),
        rooms: options.rooms,
        users: options.users,
        seed: options.seed,
        heartbeat_interval: Duration::from_secs(5),
        ..SimConfig::default()
    })
    .await
    .context("starting the simulator")?;
    let control = sim.control();

    let mut config = Config::for_tests(database_url, &sim.ews_url());
    config.http.listen = if options.keep_running {
        "127.0.0.1:9464".parse().expect("a valid socket address")
    } else {
        "127.0.0.1:0".parse().expect("a valid socket address")
    };
    config.subscriptions.heartbeat_timeout = Duration::from_secs(15);
    config.sync.room_refresh_interval = Duration::from_secs(2);
    if let Some(capacity) = options.queue_capacity {
        config.pipeline.queue_capacity = capacity;
    }
    match options.resync {
        DemoResync::Default => {}
        DemoResync::Off => config.resync.enabled = false,
        DemoResync::On => {
            config.resync.interval = ON_RESYNC_INTERVAL;
            config.resync.full_interval = ON_FULL_RESYNC_INTERVAL;
        }
    }
    let store = PgStore::connect(&config.database)
        .await
        .context("connecting to the demo database")?;
    store
        .migrate()
        .await
        .context("migrating the demo database")?;
    seed(&store, &control).await?;

    progress.line("starting the service");
    let service = Service::start(&config).await?;
    wait_for_initial_sync(&service, options.rooms, progress).await?;

    progress.line(&format!(
        "driving {} changes through the simulator{}",
        options.changes,
        if options.rate == 0 {
            String::new()
        } else {
            format!(" at {}/s", options.rate)
        }
    ));
    let stats_before = control.stats();
    let workload_started = Instant::now();
    let workload = {
        let control = control.clone();
        let workload = Workload {
            changes: options.changes as usize,
            rate_per_sec: options.rate as f64,
            seed: options.seed,
            mix: WorkloadMix::default(),
            wait: true,
        };
        tokio::spawn(async move { control.run_workload(workload).await })
    };
    while !workload.is_finished() {
        progress.status(&format!(
            "workload running {:>5.1}s, queue {:>4} mailboxes",
            workload_started.elapsed().as_secs_f64(),
            service.queue.len()
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    workload.await.context("the workload task failed")??;
    let workload_seconds = workload_started.elapsed().as_secs_f64();

    let converge_started = Instant::now();
    let mut result;
    loop {
        result = compare(&store, &control, &config).await?;
        let quiet = service.queue.is_idle();
        if (result.converged() && quiet) || converge_started.elapsed() > options.converge_timeout {
            break;
        }
        progress.status(&format!(
            "converging {:>5.1}s: missing {}, unexpected {}, stale {}, queue {}",
            converge_started.elapsed().as_secs_f64(),
            result.missing,
            result.unexpected,
            result.stale,
            service.queue.len()
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seconds_to_converge = converge_started.elapsed().as_secs_f64();
    if options.resync == DemoResync::On {
        // One full reconciliation after the fast path converged: it must find
        // nothing to undo.
        let runs = full_resyncs();
        let started = Instant::now();
        while full_resyncs() <= runs && started.elapsed() < options.converge_timeout {
            progress.status("waiting for a full reconciliation");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        result = compare(&store, &control, &config).await?;
    }
    let metrics = crate::app::metrics_handle().render();
    let stats_after = control.stats();
    let get_item_calls =
        requests_for(&stats_after, GET_ITEM).saturating_sub(requests_for(&stats_before, GET_ITEM));
    let report = DemoReport {
        rooms: options.rooms,
        changes: options.changes,
        meetings_expected: result.expected,
        meetings_in_db: result.in_db,
        missing: result.missing,
        unexpected: result.unexpected,
        stale: result.stale,
        duplicate: result.duplicate,
        converged: result.converged(),
        seconds_to_converge,
        workload_seconds,
        committed_per_second: options.changes as f64
            / (workload_seconds + seconds_to_converge).max(0.001),
        get_item_calls_per_change: get_item_calls as f64 / options.changes.max(1) as f64,
        resync: options.resync,
        queue_capacity: config.pipeline.queue_capacity,
        queue_full_waits: metric_total(&metrics, crate::metrics::QUEUE_FULL_WAITS),
        queue_coalesced: metric_total(&metrics, crate::metrics::QUEUE_COALESCED),
        resync_runs: full_resyncs(),
        drift: metric_total(&metrics, crate::metrics::RESYNC_DRIFT),
    };
    progress.done();

    if options.keep_running {
        eprintln!(
            "still running: metrics on http://{}/metrics, simulator on {}; press Ctrl-C to stop",
            service.http_addr,
            sim.base_url()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    service.shutdown(Duration::from_secs(5)).await;
    sim.shutdown().await;
    Ok(report)
}

/// Full reconciliations this process completed.
fn full_resyncs() -> u64 {
    let text = crate::app::metrics_handle().render();
    text.lines()
        .filter(|line| {
            line.starts_with(crate::metrics::RESYNC_RUNS) && line.contains("outcome=\"ok\"")
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The sum of every series of metric `name` in the exporter's `text`.
fn metric_total(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Compares every room of the simulator with the database.
///
/// # Errors
/// When the database cannot be read.
pub async fn compare(
    store: &PgStore,
    control: &SimControl,
    config: &Config,
) -> anyhow::Result<Convergence> {
    let now = Utc::now();
    let window = (
        now - chrono::Duration::days(i64::from(config.sync.window_past_days)),
        now + chrono::Duration::days(i64::from(config.sync.window_future_days)),
    );
    let mut total = Convergence::default();
    for room in store.enabled_rooms().await? {
        let truth = control
            .appointments(room.email.as_str(), window.0, window.1)
            .map_err(|err| anyhow::anyhow!("reading the simulator's truth: {err}"))?;
        let rows = store.meetings(room.id).await?;
        total.add(&compare_room(&truth, &rows, window));
    }
    Ok(total)
}

/// Requests the simulator answered for one operation, whatever the outcome.
pub fn requests_for(stats: &SimStats, operation: &str) -> u64 {
    stats
        .requests
        .iter()
        .filter(|(key, _)| key.split('/').next() == Some(operation))
        .map(|(_, count)| count)
        .sum()
}

/// Copies the simulator's room and user mailboxes into `rooms` and `users`.
///
/// # Errors
/// When the database cannot be written.
pub async fn seed(store: &PgStore, control: &SimControl) -> anyhow::Result<()> {
    for mailbox in control.mailboxes() {
        let email = MailboxAddress::new(&mailbox.email);
        match mailbox.kind {
            MailboxKind::Room => {
                store
                    .upsert_room(&email, &mailbox.display_name, true)
                    .await?;
            }
            MailboxKind::User => {
                store.upsert_user(&email, &mailbox.display_name).await?;
            }
        }
    }
    Ok(())
}

async fn wait_for_initial_sync(
    service: &Service,
    rooms: usize,
    progress: &Progress,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (enabled, complete) = service.rooms.counts();
        if enabled >= rooms && complete >= enabled {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!(
                "initial sync did not finish within two minutes ({complete} of {rooms} rooms)"
            );
        }
        progress.status(&format!("initial sync: {complete} of {rooms} rooms"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where the demo's database lives; dropped (or stopped) at the end.
enum DemoDatabase {
    /// A fresh database on a server the user named.
    Fresh {
        /// URL of the server's database the fresh one was created from.
        admin_url: String,
        /// The fresh database's name.
        name: String,
    },
    /// A private throwaway server.
    Private(TempPostgres),
}

impl DemoDatabase {
    async fn remove(self) {
        match self {
            Self::Fresh { admin_url, name } => {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            }
            Self::Private(server) => {
                let _ = server.stop().await;
            }
        }
    }
}

/// A database for the demo: a fresh one on the named server, else a private server.
async fn database(
    options: &DemoOptions,
    progress: &Progress,
) -> anyhow::Result<(String, DemoDatabase)> {
    if let Some(url) = &options.database_url {
        match fresh_database(url).await {
            Ok((fresh_url, name)) => {
                let guard = DemoDatabase::Fresh {
                    admin_url: url.clone(),
                    name,
                };
                return Ok((fresh_url, guard));
            }
            Err(err) => progress.line(&format!(
                "cannot use the configured database ({}), starting a private PostgreSQL",
                crate::logging::error_chain(err.as_ref())
            )),
        }
    }
    progress.line("starting a private PostgreSQL");
    let server = TempPostgres::start()
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok((server.url(), DemoDatabase::Private(server)))
}

/// Creates a database named `booking_sync_demo_<random>` on the server of `url`.
async fn fresh_database(url: &str) -> anyhow::Result<(String, String)> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let name = format!("booking_sync_demo_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok((with_dbname(url, &name), name))
}

fn with_dbname(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, rest)) if !base.ends_with('/') => {
            let query = rest
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            format!("{base}/{name}{query}")
        }
        _ => format!("{}/{name}", url.trim_end_matches('/')),
    }
}

/// Progress output: a rewritten status line on a terminal, plain lines otherwise.
struct Progress {
    quiet: bool,
    terminal: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, message: &str) {
        if !self.quiet || self.terminal {
            eprintln!("{}{message}", if self.terminal { "\r\x1b[2K" } else { "" });
        }
    }

    fn status(&self, message: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{message}");
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn the_demo_database_name_replaces_the_one_in_the_url() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5432/test", "demo"),
            "postgres://postgres@127.0.0.1:5432/demo"
        );
        assert_eq!(
            with_dbname("postgres://u@h/test?sslmode=disable", "demo"),
            "postgres://u@h/demo?sslmode=disable"
        );
    }
}
