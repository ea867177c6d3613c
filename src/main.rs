//! The `booking-sync` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use booking_sync::app::{self, Service};
use booking_sync::cli::resync::ResyncOptions;
use booking_sync::cli::{resync, rooms, status};
use booking_sync::config::Config;
use booking_sync::demo::{self, DemoOptions};
use booking_sync::domain::MailboxAddress;
use booking_sync::ews::EwsClient;
use booking_sync::logging::{self, LoggingConfig};
use booking_sync::sim::{SimConfig, Simulator};
use booking_sync::store::{AuditFilter, PgStore};
use booking_sync::systemd;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Exit status for a configuration error (systemd does not restart on it).
const EXIT_CONFIG: u8 = 78;

/// Keeps a meeting-room booking database in step with Microsoft Exchange.
#[derive(Parser)]
#[command(name = "booking-sync", version, about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "BOOKING_SYNC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service in the foreground.
    Run {
        /// Seconds to drain in-flight work after SIGTERM or SIGINT.
        #[arg(long, default_value_t = 20)]
        grace_seconds: u64,
    },
    /// Apply the database migrations in schema/.
    Migrate,
    /// Show the changes applied to meetings, newest first, with their source (stream,
    /// resync, push).
    Audit {
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        /// Only this meeting (its iCalendar UID).
        #[arg(long)]
        meeting: Option<String>,
        /// Only entries since this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show what a dry run (dry_run = true) planned: row changes, issues, emails.
    Plan {
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration file offline (no network, no database).
    CheckConfig,
    /// Run the whole system on this machine against the bundled Exchange simulator.
    Demo {
        /// Room mailboxes.
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        /// User mailboxes (meeting organizers).
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Changes the workload makes.
        #[arg(long, default_value_t = 2000)]
        changes: u64,
        /// Changes per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seed for the simulator's content and the workload.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Keep the service and simulator running after the report (metrics on :9464).
        #[arg(long)]
        keep_running: bool,
        /// Print the report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// PostgreSQL server for the demo database (default: the configured one, then
        /// DATABASE_URL; with neither, a private throwaway server).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// Seconds to wait for convergence after the workload.
        #[arg(long, default_value_t = 120)]
        converge_timeout: u64,
        /// Work queue capacity in mailboxes (default: the configured default, 1024).
        #[arg(long)]
        queue_capacity: Option<usize>,
        /// Periodic resync: `default` (every 15 minutes, so not during a demo), `off`,
        /// or `on` (a catch-up every 10 s, a full reconciliation every 20 s).
        #[arg(long, value_enum, default_value_t = ResyncArg::Default)]
        resync: ResyncArg,
    },
    /// Bring rooms in from Exchange and switch their sync and coexistence.
    Rooms {
        #[command(subcommand)]
        command: RoomsCommand,
    },
    /// Show every room's sync health and a summary line.
    Status {
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Resync now: an incremental catch-up, or a full reconciliation with --full.
    Resync {
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        /// Compare a CalendarView of the whole window with the table and repair drift.
        #[arg(long)]
        full: bool,
    },
    /// Run the bundled Exchange simulator alone (for staging and benchmarks).
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Room mailboxes to create.
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        /// User mailboxes to create.
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Seed for deterministic content.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum RoomsCommand {
    /// Read the room lists and their rooms from Exchange into `rooms` (new ones off).
    Import {
        /// Mailbox the requests act as (default: the first known room).
        #[arg(long)]
        acting_as: Option<String>,
    },
    /// List the rooms with their switches and initial-sync state.
    List,
    /// Start syncing a room.
    Enable {
        /// The room's address.
        email: String,
    },
    /// Stop syncing a room.
    Disable {
        /// The room's address.
        email: String,
    },
    /// Let the booking system treat a room as coexisting with Exchange, or stop it.
    Coexistence {
        /// The room's address.
        email: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` sets up logging from its configuration once it is loaded.
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(matches!(
            cli.command,
            Command::Demo { .. }
                | Command::Rooms { .. }
                | Command::Status { .. }
                | Command::Resync { .. }
        ));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { grace_seconds } => {
            // Installed first: a signal during start-up must stop cleanly, not kill.
            let signals = StopSignals::install()?;
            let Some(config) = load_config(cli.config.as_deref())? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            if let Err(err) = logging::init(&config.logging) {
                eprintln!("error: logging.file: cannot open the log file ({err})");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            match run(&config, Duration::from_secs(grace_seconds), signals).await {
                Ok(code) => Ok(code),
                Err(err) => {
                    // Through the configured log output, so a JSON collector sees it.
                    tracing::error!(
                        error = format!("{err:#}"),
                        "The service stopped on an error"
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Migrate => {
            let Some(config) = load_config(cli.config.as_deref())? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let store = PgStore::connect(&config.database)
                .await
                .context("connecting to the database")?;
            let applied = store.migrate().await.context("applying migrations")?;
            if applied.is_empty() {
                println!("schema is up to date");
            } else {
                for name in applied {
                    println!("applied {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            room,
            meeting,
            since,
            limit,
            json,
        } => {
            let Some(config) = load_config(cli.config.as_deref())? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let store = PgStore::connect(&config.database)
                .await
                .context("connecting to the database")?;
            let filter = AuditFilter {
                room,
                uid: meeting,
                since,
                limit,
            };
            let entries = store
                .audit_entries(&filter)
                .await
                .context("reading the audit trail")?;
            for entry in entries {
                if json {
                    println!("{}", serde_json::to_string(&entry)?);
                } else {
                    println!(
                        "{} {} {} {} {} before={} after={}",
                        entry.at.to_rfc3339(),
                        entry.room,
                        entry.action,
                        entry.origin,
                        entry.exchange_uid,
                        entry.before.unwrap_or_default(),
                        entry.after.unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { room, json } => {
            let Some(config) = load_config(cli.config.as_deref())? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let store = PgStore::connect(&config.database)
                .await
                .context("connecting to the database")?;
            let summary = store
                .plan_summary(room.as_deref())
                .await
                .context("reading the plan")?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                print!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => match load_config(cli.config.as_deref())? {
            Some(_) => {
                println!("configuration is valid");
                Ok(ExitCode::SUCCESS)
            }
            None => Ok(ExitCode::from(EXIT_CONFIG)),
        },
        Command::Demo {
            rooms,
            users,
            changes,
            rate,
            seed,
            keep_running,
            json,
            database_url,
            converge_timeout,
            queue_capacity,
            resync,
        } => {
            let configured = match cli.config.as_deref() {
                Some(path) => match Config::load(path) {
                    Ok(config) => Some(config.database.url.clone()),
                    Err(err) => {
                        eprintln!("error: {err}");
                        return Ok(ExitCode::from(EXIT_CONFIG));
                    }
                },
                None => None,
            };
            let report = demo::run(DemoOptions {
                rooms,
                users,
                changes,
                rate,
                seed,
                keep_running,
                json,
                database_url: configured.or(database_url),
                converge_timeout: Duration::from_secs(converge_timeout),
                queue_capacity,
                resync: match resync {
                    ResyncArg::Default => demo::DemoResync::Default,
                    ResyncArg::Off => demo::DemoResync::Off,
                    ResyncArg::On => demo::DemoResync::On,
                },
            })
            .await?;
            print_report(&report, json)?;
            Ok(if report.converged {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Rooms { command } => {
            let Some(config) = load_config(cli.config.as_deref())? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let store = connect(&config).await?;
            rooms_command(&config, &store, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let Some(config) = load_config(cli.config.as_deref())? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let store = connect(&config).await?;
            let statuses = store.room_statuses().await.context("reading the rooms")?;
            let report = status::report(&statuses, chrono::Utc::now());
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", status::render(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resync { room, full } => {
            let Some(config) = load_config(cli.config.as_deref())? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            // Writes as the service would: routed issues, or a plan in a dry run.
            let store = app::syncing_store(&config, connect(&config).await?);
            let options = ResyncOptions {
                room: room.as_deref().map(MailboxAddress::new),
                full,
            };
            let summary = resync::run(&config, &store, &options).await?;
            println!(
                "{} rooms resynced in {:.1} s: {} failed, {} changes, drift {}",
                summary.rooms, summary.seconds, summary.failed, summary.changes, summary.drift
            );
            Ok(if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Simulate {
            listen,
            rooms,
            users,
            seed,
        } => {
            let sim = Simulator::start(SimConfig {
                listen,
                rooms,
                users,
                seed,
                ..SimConfig::default()
            })
            .await
            .context("starting the simulator")?;
            eprintln!(
                "simulator listening: EWS at {}, control API at {}/_sim/",
                sim.ews_url(),
                sim.base_url()
            );
            wait_for_signal().await?;
            sim.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn connect(config: &Config) -> anyhow::Result<PgStore> {
    let store = PgStore::connect(&config.database)
        .await
        .context("connecting to the database")?;
    store
        .require_current_schema()
        .await
        .context("checking the database schema (run `booking-sync migrate`)")?;
    Ok(store)
}

async fn rooms_command(
    config: &Config,
    store: &PgStore,
    command: RoomsCommand,
) -> anyhow::Result<()> {
    match command {
        RoomsCommand::Import { acting_as } => {
            let acting_as = match acting_as {
                Some(address) => MailboxAddress::new(&address),
                None => rooms::default_acting_as(store).await?,
            };
            let ews =
                EwsClient::new(app::ews_config(config)).context("setting up the EWS client")?;
            let report = rooms::import(store, &ews, &acting_as).await?;
            println!(
                "{} room lists, {} rooms, {} new (sync off until `rooms enable`)",
                report.room_lists, report.rooms, report.added
            );
        }
        RoomsCommand::List => {
            let statuses = store.room_statuses().await.context("reading the rooms")?;
            print!("{}", rooms::render_list(&statuses));
        }
        RoomsCommand::Enable { email } => {
            rooms::set_enabled(store, &email, true).await?;
            println!("sync of {email} is on; its initial sync starts with the service's next room refresh");
        }
        RoomsCommand::Disable { email } => {
            rooms::set_enabled(store, &email, false).await?;
            println!("sync of {email} is off");
        }
        RoomsCommand::Coexistence { email, state } => {
            let on = state == "on";
            rooms::set_coexistence(store, &email, on).await?;
            println!("coexistence of {email} is {state}");
        }
    }
    Ok(())
}

/// Loads the configuration; prints every problem and returns `None` when invalid.
/// systemd's `LoadCredential=` puts credential files here.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Option<Config>> {
    let Some(path) = path else {
        eprintln!("error: no configuration file: pass --config PATH or set BOOKING_SYNC_CONFIG (see deploy/booking-sync.example.toml)");
        return Ok(None);
    };
    let credentials = std::env::var_os(CREDENTIALS_DIRECTORY).map(PathBuf::from);
    match Config::load_with_credentials(path, credentials.as_deref()) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            Ok(Some(config))
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(None)
        }
    }
}

fn print_report(report: &demo::DemoReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "{} rooms, {} changes: {} meetings expected, {} in the database; missing {}, unexpected {}, stale {}, duplicate {}",
        report.rooms, report.changes, report.meetings_expected, report.meetings_in_db, report.missing, report.unexpected, report.stale, report.duplicate
    );
    println!(
        "{} in {:.1} s after the workload ({:.1} s); {:.0} changes/s end to end; {:.3} GetItem calls per change",
        if report.converged { "converged" } else { "NOT converged" },
        report.seconds_to_converge,
        report.workload_seconds,
        report.committed_per_second,
        report.get_item_calls_per_change
    );
    println!(
        "queue of {} mailboxes: {} waits while full, {} events coalesced; {} full resyncs repaired {} differences",
        report.queue_capacity,
        report.queue_full_waits,
        report.queue_coalesced,
        report.resync_runs,
        report.drift
    );
    Ok(())
}

/// Runs the service until SIGTERM or SIGINT: `READY=1` once the first subscriptions
/// are up, `STOPPING=1` when the signal comes, then a drain within `grace`.
async fn run(
    config: &Config,
    grace: Duration,
    mut signals: StopSignals,
) -> anyhow::Result<ExitCode> {
    let service = tokio::select! {
        service = Service::start(config) => service?,
        _ = signals.recv() => {
            // Nothing was taken in yet, so there is nothing to drain.
            tracing::info!("Stopped while starting");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let stopped_early = tokio::select! {
        _ = service.first_subscriptions() => false,
        _ = signals.recv() => true,
    };
    if !stopped_early {
        let (subscribed, enabled) = service.rooms.coverage();
        tracing::info!(subscribed, enabled, "Ready");
        systemd::ready();
        signals.recv().await;
    }
    systemd::stopping();
    let report = service.shutdown(grace).await;
    tracing::info!(
        drained = report.drained,
        left_in_queue = report.left_in_queue,
        "Stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// `demo --resync`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ResyncArg {
    Default,
    Off,
    On,
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
    }
    Ok(())
}

fn init_logging(quiet: bool) {
    let config = LoggingConfig {
        level: if quiet { "warn" } else { "info" }.to_owned(),
        ..LoggingConfig::default()
    };
    // Without a file, setting up stderr logging cannot fail.
    let _ = logging::init(&config);
}
