//! Configuration file loading and validation.
//!
//! One TOML file holds every setting, grouped in sections (`[database]`, `[exchange]`,
//! `[subscriptions]`, `[pipeline]`, `[sync]`, `[http]`, `[logging]`) plus the top-level
//! `dry_run`.
//! Loading checks everything up front and reports every problem in one go, each naming
//! its key and what to do, so an operator fixes a file in one round. Secrets never sit in
//! the file: it names files whose content is read into [`SecretString`]s, which never
//! show in `Debug` output. A secret file path may start with `${CREDENTIALS_DIRECTORY}`
//! (the directory where systemd's `LoadCredential=` puts them); the caller says what
//! that directory is.
//!
//! This module does not touch the network or the database (so `check-config` stays
//! offline) and does not read environment variables: finding the file is the CLI's job.

mod audit;
mod notifications;

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::logging::{LoggingConfig, RawLogging};
pub use audit::AuditConfig;
pub use notifications::{NotificationsConfig, SmtpConfig, SmtpTls};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: fix the path or its permissions.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The file was read but has problems: every one of them is listed.
    #[error("{}", describe_problems(.problems))]
    Invalid {
        /// Every problem found, in file order of the sections.
        problems: Vec<ConfigProblem>,
    },
}

/// One invalid or missing setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key concerned, as `section.key` (or the section alone for syntax errors).
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The whole validated configuration of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[database]`: the PostgreSQL connection.
    pub database: DatabaseConfig,
    /// `[exchange]`: the EWS endpoint and how to authenticate.
    pub exchange: ExchangeConfig,
    /// `[subscriptions]`: streaming notification groups.
    pub subscriptions: SubscriptionsConfig,
    /// `[pipeline]`: queue and workers.
    pub pipeline: PipelineConfig,
    /// `[sync]`: what part of each calendar is kept in step.
    pub sync: SyncConfig,
    /// `[resync]`
    pub resync: ResyncConfig,
    /// `[http]`: the metrics and health listener.
    pub http: HttpConfig,
    /// `[notifications]`: out-of-sync issues and their digests.
    pub notifications: NotificationsConfig,
    /// `[audit]`: retention of the audit trail.
    pub audit: AuditConfig,
    /// `[logging]`: log format and optional file.
    pub logging: LoggingConfig,
    /// Read from Exchange and compute changes, but write nothing to the database.
    pub dry_run: bool,
}

/// `[database]`: where the booking database is and how hard to use it.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// Connection URL (`postgres://user@host:5432/db`) or key=value string.
    pub url: String,
    /// Password read from `password_file`; overrides any password in `url`.
    pub password: Option<SecretString>,
    /// Connections in the pool (at least 2, and at least the worker count).
    pub pool_size: usize,
    /// Server-side limit for one statement.
    pub statement_timeout: Duration,
    /// Limit for opening a connection (and for waiting for a pooled one).
    pub connect_timeout: Duration,
}

/// `[exchange]`: the EWS endpoint and the account the service acts as.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// EWS URL, e.g. `https://mail.example.com/EWS/Exchange.asmx`.
    pub url: String,
    /// How requests authenticate.
    pub auth: ExchangeAuth,
    /// Act on room mailboxes through `ExchangeImpersonation`.
    pub impersonation: bool,
    /// `RequestServerVersion` sent with every request.
    pub server_version: String,
    /// EWS requests in flight at once (streaming connections excepted).
    pub max_concurrent_requests: usize,
    /// Limit for one ordinary EWS request.
    pub request_timeout: Duration,
}

/// How EWS requests authenticate.
#[derive(Debug, Clone)]
pub enum ExchangeAuth {
    /// No credentials (the bundled simulator, or a trusted proxy).
    None,
    /// HTTP Basic over TLS with a service account.
    Basic {
        /// The account name.
        username: String,
        /// The password, read from `password_file`.
        password: SecretString,
    },
}

/// `[subscriptions]`: how streaming notifications are grouped and watched.
#[derive(Debug, Clone)]
pub struct SubscriptionsConfig {
    /// Mailboxes per streaming connection (1..=200).
    pub group_size: usize,
    /// Minutes a GetStreamingEvents connection stays open (1..=30).
    pub connection_timeout_minutes: u8,
    /// Silence after which a streaming connection counts as dead.
    pub heartbeat_timeout: Duration,
    /// Concurrent GetStreamingEvents connections the account may hold (Exchange's
    /// HangingConnectionLimit: 10 on 2016, 2019 and Online, 3 on 2013), 1..=100.
    pub max_streaming_connections: usize,
    /// How often mailboxes of groups beyond `max_streaming_connections` are caught up
    /// with SyncFolderItems while they wait for a connection slot.
    pub poll_interval: Duration,
}

/// `[pipeline]`: the bounded queue between notifications and workers.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Work items the queue holds before intake waits.
    pub queue_capacity: usize,
    /// Workers fetching and writing items.
    pub workers: usize,
    /// Item ids per GetItem call (1..=500).
    pub batch_size: usize,
    /// How long repeated events for one mailbox are gathered before work starts.
    pub coalesce_window: Duration,
    /// How long a core loop may go without progress before the service counts as
    /// stalled (not ready, no more watchdog pings).
    pub stall_timeout: Duration,
}

/// `[sync]`: which part of each calendar is kept in step.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Days before today that are kept in step.
    pub window_past_days: u32,
    /// Days after today that are kept in step.
    pub window_future_days: u32,
    /// How often the list of synced rooms is re-read from the database.
    pub room_refresh_interval: Duration,
}

/// `[resync]`: the periodic passes that make the table right whatever the stream missed.
#[derive(Debug, Clone)]
pub struct ResyncConfig {
    /// Whether the periodic passes run at all. Off, only `booking-sync resync` (by
    /// hand or from a timer) repairs what the stream missed, and the window does not
    /// roll forward by itself.
    pub enabled: bool,
    /// How often every room gets an incremental catch-up (SyncFolderItems from its
    /// stored state).
    pub interval: Duration,
    /// How often every room is fully reconciled (CalendarView over the window
    /// compared with the table).
    pub full_interval: Duration,
}

impl Default for ResyncConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: defaults::RESYNC_INTERVAL,
            full_interval: defaults::FULL_RESYNC_INTERVAL,
        }
    }
}

/// `[http]`: the listener for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address and port to bind.
    pub listen: SocketAddr,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    ///
    /// Relative secret file paths are resolved against the file's directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`]
    /// listing every problem otherwise.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with_credentials(path, None)
    }

    /// Like [`load`](Self::load); secret file paths starting with
    /// `${CREDENTIALS_DIRECTORY}` are resolved against `credentials` (systemd's
    /// `$CREDENTIALS_DIRECTORY`), and are a problem when it is `None`.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn load_with_credentials(
        path: impl AsRef<Path>,
        credentials: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        parse(&text, base, credentials)
    }

    /// Validates configuration text; relative secret file paths are resolved against
    /// the current directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] listing every problem.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        parse(text, Path::new(""), None)
    }

    /// Defaults everywhere, the given database and an EWS endpoint without
    /// authentication (the simulator).
    pub fn for_tests(database_url: &str, exchange_url: &str) -> Self {
        Self {
            database: DatabaseConfig {
                url: database_url.to_owned(),
                password: None,
                pool_size: defaults::POOL_SIZE,
                statement_timeout: defaults::STATEMENT_TIMEOUT,
                connect_timeout: defaults::CONNECT_TIMEOUT,
            },
            exchange: ExchangeConfig {
                url: exchange_url.to_owned(),
                auth: ExchangeAuth::None,
                impersonation: true,
                server_version: defaults::SERVER_VERSION.to_owned(),
                max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
                request_timeout: defaults::REQUEST_TIMEOUT,
            },
            subscriptions: SubscriptionsConfig {
                group_size: defaults::GROUP_SIZE,
                connection_timeout_minutes: defaults::CONNECTION_TIMEOUT_MINUTES,
                heartbeat_timeout: defaults::HEARTBEAT_TIMEOUT,
                max_streaming_connections: defaults::MAX_STREAMING_CONNECTIONS,
                poll_interval: defaults::POLL_INTERVAL,
            },
            pipeline: PipelineConfig {
                queue_capacity: defaults::QUEUE_CAPACITY,
                workers: defaults::WORKERS,
                batch_size: defaults::BATCH_SIZE,
                coalesce_window: defaults::COALESCE_WINDOW,
                stall_timeout: defaults::STALL_TIMEOUT,
            },
            sync: SyncConfig {
                window_past_days: defaults::WINDOW_PAST_DAYS,
                window_future_days: defaults::WINDOW_FUTURE_DAYS,
                room_refresh_interval: defaults::ROOM_REFRESH_INTERVAL,
            },
            resync: ResyncConfig::default(),
            http: HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], defaults::HTTP_PORT)),
            },
            notifications: NotificationsConfig::default(),
            audit: AuditConfig::default(),
            logging: LoggingConfig::default(),
            dry_run: false,
        }
    }

    /// Settings that work but deserve an operator's attention (for `check-config`).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if url_has_password(&self.database.url) {
            warnings.push(
                "database.url: contains a password; move it to a file named by \
                 database.password_file"
                    .to_owned(),
            );
        }
        if let Ok(url) = reqwest::Url::parse(&self.exchange.url) {
            if url.scheme() == "http" && matches!(self.exchange.auth, ExchangeAuth::Basic { .. }) {
                warnings.push(
                    "exchange.url: basic authentication over plain http sends the password \
                     in clear; use https"
                        .to_owned(),
                );
            }
        }
        warnings
    }
}

impl DatabaseConfig {
    /// The URL with any password replaced by `***`, safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.redacted_url())
            .field("password", &self.password)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Default values, shared by the parser, [`Config::for_tests`] and the tests.
mod defaults {
    use std::time::Duration;

    pub const POOL_SIZE: usize = 16;
    pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const SERVER_VERSION: &str = "Exchange2013_SP1";
    pub const MAX_CONCURRENT_REQUESTS: usize = 8;
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    pub const GROUP_SIZE: usize = 200;
    pub const CONNECTION_TIMEOUT_MINUTES: u8 = 30;
    pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(90);
    pub const MAX_STREAMING_CONNECTIONS: usize = 10;
    pub const POLL_INTERVAL: Duration = Duration::from_secs(30);
    pub const QUEUE_CAPACITY: usize = 1024;
    pub const WORKERS: usize = 4;
    pub const BATCH_SIZE: usize = 100;
    pub const COALESCE_WINDOW: Duration = Duration::from_millis(500);
    pub const STALL_TIMEOUT: Duration = Duration::from_secs(300);
    pub const WINDOW_PAST_DAYS: u32 = 1;
    pub const WINDOW_FUTURE_DAYS: u32 = 365;
    pub const ROOM_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
    pub const HTTP_PORT: u16 = 9464;
    pub const RESYNC_INTERVAL: Duration = Duration::from_secs(15 * 60);
    pub const FULL_RESYNC_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
}

const SECTION_DATABASE: &str = "database";
const SECTION_EXCHANGE: &str = "exchange";
const SECTION_SUBSCRIPTIONS: &str = "subscriptions";
const SECTION_PIPELINE: &str = "pipeline";
const SECTION_SYNC: &str = "sync";
const SECTION_HTTP: &str = "http";
const SECTION_RESYNC: &str = "resync";
const SECTION_LOGGING: &str = "logging";
/// The prefix of a secret path inside systemd's credentials directory.
const CREDENTIALS_DIRECTORY: &str = "${CREDENTIALS_DIRECTORY}";

// The raw section structs mirror the file. Bounded integers are read as i64 so that an
// out-of-range value gets a message of ours naming the bounds.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    password_file: Option<PathBuf>,
    pool_size: Option<i64>,
    #[serde(default, with = "humantime_serde::option")]
    statement_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    connect_timeout: Option<Duration>,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum AuthKind {
    #[default]
    None,
    Basic,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExchange {
    url: Option<String>,
    #[serde(default)]
    auth: AuthKind,
    username: Option<String>,
    password_file: Option<PathBuf>,
    impersonation: Option<bool>,
    server_version: Option<String>,
    max_concurrent_requests: Option<i64>,
    #[serde(default, with = "humantime_serde::option")]
    request_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSubscriptions {
    group_size: Option<i64>,
    connection_timeout_minutes: Option<i64>,
    #[serde(default, with = "humantime_serde::option")]
    heartbeat_timeout: Option<Duration>,
    max_streaming_connections: Option<i64>,
    #[serde(default, with = "humantime_serde::option")]
    poll_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    queue_capacity: Option<i64>,
    workers: Option<i64>,
    batch_size: Option<i64>,
    #[serde(default, with = "humantime_serde::option")]
    coalesce_window: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    stall_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    window_past_days: Option<i64>,
    window_future_days: Option<i64>,
    #[serde(default, with = "humantime_serde::option")]
    room_refresh_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResync {
    enabled: Option<bool>,
    #[serde(default, with = "humantime_serde::option")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    full_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<SocketAddr>,
}

/// The top level alone: catches unknown sections and keys, and reads `dry_run`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The section values are read by the per-section parses.
struct RawTop {
    database: Option<toml::Value>,
    exchange: Option<toml::Value>,
    subscriptions: Option<toml::Value>,
    pipeline: Option<toml::Value>,
    sync: Option<toml::Value>,
    resync: Option<toml::Value>,
    http: Option<toml::Value>,
    notifications: Option<toml::Value>,
    audit: Option<toml::Value>,
    logging: Option<toml::Value>,
    dry_run: Option<bool>,
}

/// Declares a document shape holding one section only, so that each section is parsed
/// from the whole file (errors keep their line numbers) independently of the others.
macro_rules! only_section {
    ($name:ident, $field:ident, $raw:ty) => {
        #[derive(Deserialize)]
        struct $name {
            $field: Option<$raw>,
        }
    };
}

only_section!(OnlyDatabase, database, RawDatabase);
only_section!(OnlyExchange, exchange, RawExchange);
only_section!(OnlySubscriptions, subscriptions, RawSubscriptions);
only_section!(OnlyPipeline, pipeline, RawPipeline);
only_section!(OnlySync, sync, RawSync);
only_section!(OnlyResync, resync, RawResync);
only_section!(OnlyHttp, http, RawHttp);
only_section!(OnlyLogging, logging, RawLogging);

/// Collects problems while building the validated configuration.
pub(crate) struct Problems {
    found: Vec<ConfigProblem>,
    /// systemd's credentials directory, when the service runs with one.
    credentials: Option<PathBuf>,
}

impl Problems {
    pub(crate) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.found.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Parses `text` as the document shape `T`, recording a failure under `key`.
    fn parse_section<T: DeserializeOwned>(&mut self, text: &str, key: &str) -> Option<T> {
        match toml::from_str::<T>(text) {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(key, err.to_string().trim_end().to_owned());
                None
            }
        }
    }

    /// Checks that an integer setting lies in `min..=max`, falling back to `default`.
    pub(crate) fn ranged<T: TryFrom<i64> + Copy>(
        &mut self,
        key: &str,
        value: Option<i64>,
        (min, max): (i64, i64),
        default: T,
    ) -> T {
        let Some(value) = value else {
            return default;
        };
        match T::try_from(value) {
            Ok(converted) if (min..=max).contains(&value) => converted,
            _ if max == i64::MAX => {
                self.add(key, format!("is {value}; set a value of at least {min}"));
                default
            }
            _ => {
                self.add(key, format!("is {value}; set a value from {min} to {max}"));
                default
            }
        }
    }

    /// Checks that a duration setting is not zero.
    pub(crate) fn positive(
        &mut self,
        key: &str,
        value: Option<Duration>,
        default: Duration,
    ) -> Duration {
        match value {
            Some(duration) if duration.is_zero() => {
                self.add(key, "is zero; set a positive duration such as \"30s\"");
                default
            }
            Some(duration) => duration,
            None => default,
        }
    }

    /// Reads a secret file (trailing line breaks removed). A file other users may
    /// read or write is refused: the secret would not be one.
    fn secret_file(&mut self, key: &str, base: &Path, path: &Path) -> Option<SecretString> {
        let full = match path
            .to_str()
            .and_then(|text| text.strip_prefix(CREDENTIALS_DIRECTORY))
        {
            Some(rest) => match &self.credentials {
                Some(directory) => directory.join(rest.trim_start_matches('/')),
                None => {
                    self.add(
                        key,
                        format!(
                            "names {CREDENTIALS_DIRECTORY} but no credentials directory is set; \
                             run under systemd with LoadCredential= or give a plain path"
                        ),
                    );
                    return None;
                }
            },
            None => base.join(path),
        };
        if world_accessible(&full) {
            self.add(
                key,
                format!(
                    "{} is accessible to every user; restrict it with chmod o-rwx",
                    full.display()
                ),
            );
            return None;
        }
        match fs::read_to_string(&full) {
            Ok(content) => {
                let secret = content.trim_end_matches(['\r', '\n']);
                if secret.is_empty() {
                    self.add(
                        key,
                        format!("{} is empty; write the secret into it", full.display()),
                    );
                    None
                } else {
                    Some(SecretString::from(secret))
                }
            }
            Err(err) => {
                self.add(
                    key,
                    format!(
                        "cannot read {} ({err}); create it or fix the path",
                        full.display()
                    ),
                );
                None
            }
        }
    }
}

fn parse(text: &str, base: &Path, credentials: Option<&Path>) -> Result<Config, ConfigError> {
    let mut problems = Problems {
        found: Vec::new(),
        credentials: credentials.map(Path::to_owned),
    };
    // A syntax error makes every section parse fail the same way: report it once.
    let top = match toml::from_str::<RawTop>(text) {
        Ok(top) => Some(top),
        Err(err) if toml::from_str::<toml::Table>(text).is_err() => {
            problems.add("file", err.to_string().trim_end().to_owned());
            return Err(ConfigError::Invalid {
                problems: problems.found,
            });
        }
        Err(err) => {
            problems.add("top level", err.to_string().trim_end().to_owned());
            None
        }
    };
    let database = problems
        .parse_section::<OnlyDatabase>(text, SECTION_DATABASE)
        .map(|doc| doc.database.unwrap_or_default());
    let exchange = problems
        .parse_section::<OnlyExchange>(text, SECTION_EXCHANGE)
        .map(|doc| doc.exchange.unwrap_or_default());
    let subscriptions = problems
        .parse_section::<OnlySubscriptions>(text, SECTION_SUBSCRIPTIONS)
        .map(|doc| doc.subscriptions.unwrap_or_default());
    let pipeline = problems
        .parse_section::<OnlyPipeline>(text, SECTION_PIPELINE)
        .map(|doc| doc.pipeline.unwrap_or_default());
    let sync = problems
        .parse_section::<OnlySync>(text, SECTION_SYNC)
        .map(|doc| doc.sync.unwrap_or_default());
    let resync = problems
        .parse_section::<OnlyResync>(text, SECTION_RESYNC)
        .map(|doc| validate_resync(&mut problems, doc.resync.unwrap_or_default()));
    let http = problems
        .parse_section::<OnlyHttp>(text, SECTION_HTTP)
        .map(|doc| doc.http.unwrap_or_default());
    let logging = problems
        .parse_section::<OnlyLogging>(text, SECTION_LOGGING)
        .map(|doc| doc.logging.unwrap_or_default());

    // A section that failed to parse is not validated further (its problem is already
    // reported), but every other section is, so one report lists everything.
    let pipeline = pipeline.map(|raw| validate_pipeline(&mut problems, raw));
    let database =
        database.and_then(|raw| validate_database(&mut problems, raw, base, pipeline.as_ref()));
    let exchange = exchange.and_then(|raw| validate_exchange(&mut problems, raw, base));
    let subscriptions = subscriptions.map(|raw| validate_subscriptions(&mut problems, raw));
    let sync = sync.map(|raw| validate_sync(&mut problems, raw));
    let http = http.map(|raw| HttpConfig {
        listen: raw
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], defaults::HTTP_PORT))),
    });
    let logging = logging.map(|raw| crate::logging::validate(&mut problems, raw, base));

    let notifications = notifications::parse(text, base, &mut problems)
        .map_err(|found| problems.found.extend(found))
        .ok();
    let audit = audit::parse(text)
        .map_err(|found| problems.found.extend(found))
        .ok();

    match (
        top,
        database,
        exchange,
        subscriptions,
        pipeline,
        sync,
        http,
        logging,
    ) {
        (
            Some(top),
            Some(database),
            Some(exchange),
            Some(subscriptions),
            Some(pipeline),
            Some(sync),
            Some(http),
            Some(logging),
        ) if problems.found.is_empty() => Ok(Config {
            database,
            exchange,
            subscriptions,
            pipeline,
            sync,
            resync: resync.unwrap_or_default(),
            http,
            notifications: notifications.unwrap_or_default(),
            audit: audit.unwrap_or_default(),
            logging,
            dry_run: top.dry_run.unwrap_or(false),
        }),
        _ => {
            let mut found = problems.found;
            found.sort_by_key(|problem| section_rank(&problem.key));
            Err(ConfigError::Invalid { problems: found })
        }
    }
}

/// Orders problems as the sections appear in the example file (stable within one).
fn section_rank(key: &str) -> usize {
    let section = key.split('.').next().unwrap_or(key);
    [
        SECTION_DATABASE,
        SECTION_EXCHANGE,
        SECTION_SUBSCRIPTIONS,
        SECTION_PIPELINE,
        SECTION_SYNC,
        SECTION_RESYNC,
        SECTION_HTTP,
        SECTION_LOGGING,
    ]
    .iter()
    .position(|known| *known == section)
    .map_or(0, |position| position + 1)
}

fn validate_database(
    problems: &mut Problems,
    raw: RawDatabase,
    base: &Path,
    pipeline: Option<&PipelineConfig>,
) -> Option<DatabaseConfig> {
    let pool_size = problems.ranged(
        "database.pool_size",
        raw.pool_size,
        (2, 10_000),
        defaults::POOL_SIZE,
    );
    if let Some(pipeline) = pipeline.filter(|pipeline| pool_size < pipeline.workers) {
        problems.add(
            "database.pool_size",
            format!(
                "is {pool_size}, below pipeline.workers ({}); raise pool_size or lower workers",
                pipeline.workers
            ),
        );
    }
    let statement_timeout = problems.positive(
        "database.statement_timeout",
        raw.statement_timeout,
        defaults::STATEMENT_TIMEOUT,
    );
    let connect_timeout = problems.positive(
        "database.connect_timeout",
        raw.connect_timeout,
        defaults::CONNECT_TIMEOUT,
    );
    let password = raw
        .password_file
        .as_deref()
        .and_then(|path| problems.secret_file("database.password_file", base, path));
    let url = match raw.url {
        None => {
            problems.add(
                "database.url",
                "is required; set it to the PostgreSQL URL, e.g. \
                 \"postgres://booking_sync@localhost:5432/booking\"",
            );
            return None;
        }
        // The parser's message may quote the URL, password included: not shown.
        Some(url) if url.parse::<tokio_postgres::Config>().is_err() => {
            problems.add(
                "database.url",
                "is not a PostgreSQL connection URL; write it as \
                 \"postgres://user@host:5432/database\"",
            );
            return None;
        }
        Some(url) => url,
    };
    Some(DatabaseConfig {
        url,
        password,
        pool_size,
        statement_timeout,
        connect_timeout,
    })
}

fn validate_exchange(
    problems: &mut Problems,
    raw: RawExchange,
    base: &Path,
) -> Option<ExchangeConfig> {
    let max_concurrent_requests = problems.ranged(
        "exchange.max_concurrent_requests",
        raw.max_concurrent_requests,
        (1, 1_000),
        defaults::MAX_CONCURRENT_REQUESTS,
    );
    let request_timeout = problems.positive(
        "exchange.request_timeout",
        raw.request_timeout,
        defaults::REQUEST_TIMEOUT,
    );
    let auth = validate_auth(problems, &raw, base);
    let server_version = raw
        .server_version
        .unwrap_or_else(|| defaults::SERVER_VERSION.to_owned());
    if !server_version.starts_with("Exchange") {
        problems.add(
            "exchange.server_version",
            format!(
                "is \"{server_version}\"; use an EWS version name such as \"Exchange2013_SP1\""
            ),
        );
    }
    let url = match raw.url {
        None => {
            problems.add(
                "exchange.url",
                "is required; set it to the EWS URL, e.g. \
                 \"https://mail.example.com/EWS/Exchange.asmx\"",
            );
            None
        }
        Some(url) => match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
                Some(url)
            }
            _ => {
                problems.add(
                    "exchange.url",
                    format!("\"{url}\" is not an http or https URL; write it as \"https://host/EWS/Exchange.asmx\""),
                );
                None
            }
        },
    };
    Some(ExchangeConfig {
        url: url?,
        auth: auth?,
        impersonation: raw.impersonation.unwrap_or(true),
        server_version,
        max_concurrent_requests,
        request_timeout,
    })
}

fn validate_auth(problems: &mut Problems, raw: &RawExchange, base: &Path) -> Option<ExchangeAuth> {
    match raw.auth {
        AuthKind::None => {
            for (key, set) in [
                ("exchange.username", raw.username.is_some()),
                ("exchange.password_file", raw.password_file.is_some()),
            ] {
                if set {
                    problems.add(
                        key,
                        "is set but auth is \"none\"; remove it or set auth = \"basic\"",
                    );
                }
            }
            Some(ExchangeAuth::None)
        }
        AuthKind::Basic => {
            let username = raw.username.clone().filter(|name| !name.trim().is_empty());
            if username.is_none() {
                problems.add(
                    "exchange.username",
                    "is required with auth = \"basic\"; set the service account name",
                );
            }
            let password = match &raw.password_file {
                Some(path) => problems.secret_file("exchange.password_file", base, path),
                None => {
                    problems.add(
                        "exchange.password_file",
                        "is required with auth = \"basic\"; name a file holding the password",
                    );
                    None
                }
            };
            Some(ExchangeAuth::Basic {
                username: username?,
                password: password?,
            })
        }
    }
}

fn validate_subscriptions(problems: &mut Problems, raw: RawSubscriptions) -> SubscriptionsConfig {
    SubscriptionsConfig {
        group_size: problems.ranged(
            "subscriptions.group_size",
            raw.group_size,
            (1, 200),
            defaults::GROUP_SIZE,
        ),
        connection_timeout_minutes: problems.ranged(
            "subscriptions.connection_timeout_minutes",
            raw.connection_timeout_minutes,
            (1, 30),
            defaults::CONNECTION_TIMEOUT_MINUTES,
        ),
        heartbeat_timeout: problems.positive(
            "subscriptions.heartbeat_timeout",
            raw.heartbeat_timeout,
            defaults::HEARTBEAT_TIMEOUT,
        ),
        max_streaming_connections: problems.ranged(
            "subscriptions.max_streaming_connections",
            raw.max_streaming_connections,
            (1, 100),
            defaults::MAX_STREAMING_CONNECTIONS,
        ),
        poll_interval: problems.positive(
            "subscriptions.poll_interval",
            raw.poll_interval,
            defaults::POLL_INTERVAL,
        ),
    }
}

fn validate_pipeline(problems: &mut Problems, raw: RawPipeline) -> PipelineConfig {
    PipelineConfig {
        queue_capacity: problems.ranged(
            "pipeline.queue_capacity",
            raw.queue_capacity,
            (1, i64::MAX),
            defaults::QUEUE_CAPACITY,
        ),
        workers: problems.ranged(
            "pipeline.workers",
            raw.workers,
            (1, 1_000),
            defaults::WORKERS,
        ),
        batch_size: problems.ranged(
            "pipeline.batch_size",
            raw.batch_size,
            (1, 500),
            defaults::BATCH_SIZE,
        ),
        // Zero is allowed here: it means "start work at once".
        coalesce_window: raw.coalesce_window.unwrap_or(defaults::COALESCE_WINDOW),
        stall_timeout: problems.positive(
            "pipeline.stall_timeout",
            raw.stall_timeout,
            defaults::STALL_TIMEOUT,
        ),
    }
}

fn validate_sync(problems: &mut Problems, raw: RawSync) -> SyncConfig {
    SyncConfig {
        window_past_days: problems.ranged(
            "sync.window_past_days",
            raw.window_past_days,
            (0, 3_650),
            defaults::WINDOW_PAST_DAYS,
        ),
        window_future_days: problems.ranged(
            "sync.window_future_days",
            raw.window_future_days,
            (1, 3_650),
            defaults::WINDOW_FUTURE_DAYS,
        ),
        room_refresh_interval: problems.positive(
            "sync.room_refresh_interval",
            raw.room_refresh_interval,
            defaults::ROOM_REFRESH_INTERVAL,
        ),
    }
}

fn validate_resync(problems: &mut Problems, raw: RawResync) -> ResyncConfig {
    let interval = problems.positive("resync.interval", raw.interval, defaults::RESYNC_INTERVAL);
    let full_interval = problems.positive(
        "resync.full_interval",
        raw.full_interval,
        defaults::FULL_RESYNC_INTERVAL,
    );
    if full_interval < interval {
        problems.add(
            "resync.full_interval",
            "must not be shorter than resync.interval",
        );
    }
    ResyncConfig {
        enabled: raw.enabled.unwrap_or(true),
        interval,
        full_interval,
    }
}

/// Whether a file's permissions let any user of the machine read or write it.
#[cfg(unix)]
fn world_accessible(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;

    /// Read, write and execute bits for "others".
    const OTHERS: u32 = 0o007;
    fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & OTHERS != 0)
}

#[cfg(not(unix))]
fn world_accessible(_path: &Path) -> bool {
    false
}

fn describe_problems(problems: &[ConfigProblem]) -> String {
    let mut text = format!(
        "the configuration has {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        text.push_str("\n  - ");
        text.push_str(&problem.to_string().replace('\n', "\n    "));
    }
    text
}

/// Whether a URL or key=value connection string carries a password.
fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

/// Replaces the password of a `postgres://user:password@host` URL or of a
/// `password=...` pair with `***`.
fn redact_url(url: &str) -> String {
    const MASK: &str = "***";
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let mut redacted = url[..scheme_end + 3].to_owned();
                redacted.push_str(&rest[..=colon]);
                redacted.push_str(MASK);
                redacted.push_str(&rest[at..]);
                return redacted;
            }
        }
        return url.to_owned();
    }
    let is_password = |pair: &str| {
        pair.split_once('=')
            .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("password"))
    };
    if !url.split_whitespace().any(is_password) {
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_password(pair) => format!("{key}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use secrecy::ExposeSecret;

    use super::*;

    const MINIMAL: &str = r#"
[database]
url = "postgres://booking_sync@localhost:5432/booking"

[exchange]
url = "https://mail.example.com/EWS/Exchange.asmx"
"#;

    fn problems(text: &str) -> Vec<ConfigProblem> {
        match Config::from_toml_str(text) {
            Err(ConfigError::Invalid { problems }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect()
    }

    fn secret_file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content.as_bytes()).expect("secret written");
        file
    }

    #[test]
    fn a_minimal_file_gets_every_default() {
        let config = Config::from_toml_str(MINIMAL).expect("valid");

        assert_eq!(config.database.pool_size, 16);
        assert_eq!(config.database.statement_timeout, Duration::from_secs(30));
        assert_eq!(config.database.connect_timeout, Duration::from_secs(10));
        assert!(config.database.password.is_none());
        assert!(matches!(config.exchange.auth, ExchangeAuth::None));
        assert!(config.exchange.impersonation);
        assert_eq!(config.exchange.server_version, "Exchange2013_SP1");
        assert_eq!(config.exchange.max_concurrent_requests, 8);
        assert_eq!(config.exchange.request_timeout, Duration::from_secs(60));
        assert_eq!(config.subscriptions.group_size, 200);
        assert_eq!(config.subscriptions.connection_timeout_minutes, 30);
        assert_eq!(
            config.subscriptions.heartbeat_timeout,
            Duration::from_secs(90)
        );
        assert_eq!(config.subscriptions.max_streaming_connections, 10);
        assert_eq!(config.subscriptions.poll_interval, Duration::from_secs(30));
        assert_eq!(config.pipeline.queue_capacity, 1024);
        assert_eq!(config.pipeline.workers, 4);
        assert_eq!(config.pipeline.batch_size, 100);
        assert_eq!(config.pipeline.coalesce_window, Duration::from_millis(500));
        assert_eq!(config.sync.window_past_days, 1);
        assert_eq!(config.sync.window_future_days, 365);
        assert_eq!(config.sync.room_refresh_interval, Duration::from_secs(30));
        assert_eq!(
            config.http.listen,
            "127.0.0.1:9464".parse().expect("address")
        );
        assert!(!config.dry_run);
        assert!(config.warnings().is_empty());
    }

    #[test]
    fn the_example_file_is_valid_and_states_the_defaults() {
        let example = include_str!("../deploy/booking-sync.example.toml");

        let config = Config::from_toml_str(example).expect("valid example");

        let defaults = Config::for_tests(&config.database.url, &config.exchange.url);
        assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn the_test_configuration_matches_the_file_defaults() {
        let from_file = Config::from_toml_str(MINIMAL).expect("valid");

        let built = Config::for_tests(
            "postgres://booking_sync@localhost:5432/booking",
            "https://mail.example.com/EWS/Exchange.asmx",
        );

        assert_eq!(format!("{built:?}"), format!("{from_file:?}"));
    }

    #[test]
    fn every_setting_can_be_changed() {
        let text = r#"
dry_run = true

[database]
url = "postgres://sync@db:5432/booking"
pool_size = 8
statement_timeout = "5s"
connect_timeout = "2s"

[exchange]
url = "http://127.0.0.1:8080/EWS/Exchange.asmx"
impersonation = false
server_version = "Exchange2016"
max_concurrent_requests = 2
request_timeout = "2m"

[subscriptions]
group_size = 50
connection_timeout_minutes = 10
heartbeat_timeout = "45s"
max_streaming_connections = 3
poll_interval = "10s"

[pipeline]
queue_capacity = 10
workers = 8
batch_size = 500
coalesce_window = "0s"

[sync]
window_past_days = 0
window_future_days = 30
room_refresh_interval = "5m"

[http]
listen = "0.0.0.0:9000"
"#;

        let config = Config::from_toml_str(text).expect("valid");

        assert!(config.dry_run);
        assert_eq!(config.database.pool_size, 8);
        assert_eq!(config.database.statement_timeout, Duration::from_secs(5));
        assert!(!config.exchange.impersonation);
        assert_eq!(config.exchange.request_timeout, Duration::from_secs(120));
        assert_eq!(config.subscriptions.connection_timeout_minutes, 10);
        assert_eq!(config.subscriptions.max_streaming_connections, 3);
        assert_eq!(config.subscriptions.poll_interval, Duration::from_secs(10));
        assert_eq!(config.pipeline.coalesce_window, Duration::ZERO);
        assert_eq!(config.pipeline.batch_size, 500);
        assert_eq!(config.sync.window_past_days, 0);
        assert_eq!(config.http.listen.port(), 9000);
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let text = format!("{MINIMAL}\n[pipeline]\nworkerz = 3\n");

        let found = problems(&text);

        assert_eq!(keys(&found), vec!["pipeline"]);
        assert!(found[0].message.contains("workerz"), "{}", found[0].message);
    }

    #[test]
    fn unknown_keys_and_sections_are_all_reported() {
        let text = format!("colour = true\n{MINIMAL}pol_size = 3\n[metrics]\nport = 1\n");

        let found = problems(&text);
        let report = ConfigError::Invalid {
            problems: found.clone(),
        }
        .to_string();

        assert_eq!(keys(&found), vec!["top level", "exchange"]);
        assert!(report.contains("colour"), "{report}");
        assert!(report.contains("pol_size"), "{report}");
    }

    #[test]
    fn several_invalid_fields_are_reported_together() {
        let text = r#"
[database]
pool_size = 1

[exchange]
url = "ftp://mail.example.com/"

[subscriptions]
group_size = 500
max_streaming_connections = 0
poll_interval = "0s"

[pipeline]
batch_size = 0

[sync]
room_refresh_interval = "soon"
"#;

        let found = problems(text);

        assert_eq!(
            keys(&found),
            vec![
                "database.pool_size",
                "database.url",
                "exchange.url",
                "subscriptions.group_size",
                "subscriptions.max_streaming_connections",
                "subscriptions.poll_interval",
                "pipeline.batch_size",
                "sync",
            ]
        );
        assert!(
            found[7].message.contains("room_refresh_interval"),
            "{}",
            found[7].message
        );
        assert!(
            found[0].message.contains("from 2 to"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn basic_auth_without_a_password_file_is_rejected() {
        let text = MINIMAL.replace(
            "[exchange]",
            "[exchange]\nauth = \"basic\"\nusername = \"svc\"",
        );

        let found = problems(&text);

        assert_eq!(keys(&found), vec!["exchange.password_file"]);
        assert!(found[0].message.contains("basic"), "{}", found[0].message);
    }

    #[test]
    fn secrets_are_read_from_files_and_never_shown() {
        let exchange_secret = secret_file("hunter2-exchange\n");
        let database_secret = secret_file("hunter2-database\r\n");
        let text = format!(
            "[database]\nurl = \"postgres://sync@db/booking\"\npassword_file = {:?}\n\
             [exchange]\nurl = \"https://mail.example.com/EWS/Exchange.asmx\"\n\
             auth = \"basic\"\nusername = \"svc\"\npassword_file = {:?}\n",
            database_secret.path(),
            exchange_secret.path()
        );

        let config = Config::from_toml_str(&text).expect("valid");
        let shown = format!("{config:?}");

        let ExchangeAuth::Basic { username, password } = &config.exchange.auth else {
            panic!("basic auth expected");
        };
        assert_eq!(username, "svc");
        assert_eq!(password.expose_secret(), "hunter2-exchange");
        let database_password = config.database.password.as_ref().expect("password");
        assert_eq!(database_password.expose_secret(), "hunter2-database");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_secret_file_every_user_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let secret = secret_file("pw\n");
        fs::set_permissions(secret.path(), fs::Permissions::from_mode(0o644)).expect("chmod");
        let text = format!(
            "{MINIMAL}auth = \"basic\"\nusername = \"svc\"\npassword_file = {:?}\n",
            secret.path()
        );

        let found = problems(&text);

        assert_eq!(keys(&found), vec!["exchange.password_file"]);
        assert!(found[0].message.contains("chmod"), "{}", found[0].message);
    }

    #[test]
    fn a_missing_secret_file_names_the_key_and_path() {
        let text = format!(
            "{MINIMAL}auth = \"basic\"\nusername = \"svc\"\npassword_file = \"/nonexistent/pw\"\n"
        );

        let found = problems(&text);

        assert_eq!(keys(&found), vec!["exchange.password_file"]);
        assert!(
            found[0].message.contains("/nonexistent/pw"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_password_in_the_database_url_is_allowed_but_hidden_and_warned_about() {
        let text = MINIMAL.replace("booking_sync@", "booking_sync:hunter2@");

        let config = Config::from_toml_str(&text).expect("valid");

        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.database.redacted_url(),
            "postgres://booking_sync:***@localhost:5432/booking"
        );
        assert_eq!(config.warnings().len(), 1, "{:?}", config.warnings());
    }

    #[test]
    fn key_value_connection_strings_are_redacted_too() {
        assert_eq!(
            redact_url("host=db user=sync password=hunter2 dbname=booking"),
            "host=db user=sync password=*** dbname=booking"
        );
        assert_eq!(redact_url("host=db  user=sync"), "host=db  user=sync");
        assert_eq!(
            redact_url("postgres://db/booking?user=a"),
            "postgres://db/booking?user=a"
        );
    }

    #[test]
    fn a_pool_smaller_than_the_worker_count_is_rejected() {
        let text = format!("{MINIMAL}\n[pipeline]\nworkers = 20\n");

        let found = problems(&text);

        assert_eq!(keys(&found), vec!["database.pool_size"]);
        assert!(found[0].message.contains("workers"), "{}", found[0].message);
    }

    #[test]
    fn a_syntax_error_is_reported_once() {
        let found = problems("[database\nurl = 1");

        assert_eq!(keys(&found), vec!["file"]);
    }

    #[test]
    fn relative_secret_paths_resolve_against_the_configuration_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("ews.secret");
        fs::write(&secret, "pw\n").expect("secret written");
        fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let path = dir.path().join("booking-sync.toml");
        let text = format!(
            "{MINIMAL}auth = \"basic\"\nusername = \"svc\"\npassword_file = \"ews.secret\"\n"
        );
        fs::write(&path, text).expect("config written");

        let config = Config::load(&path).expect("valid");

        assert!(matches!(config.exchange.auth, ExchangeAuth::Basic { .. }));
        let missing = Config::load(dir.path().join("absent.toml"));
        assert!(
            matches!(missing, Err(ConfigError::Read { .. })),
            "{missing:?}"
        );
    }

    #[test]
    fn a_secret_path_under_the_credentials_directory_is_read_from_there() {
        let dir = tempfile::tempdir().expect("temp dir");
        let credentials = dir.path().join("credentials");
        fs::create_dir(&credentials).expect("credentials directory");
        let secret = credentials.join("db-password");
        fs::write(&secret, "from-systemd\n").expect("secret written");
        fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .expect("chmod");
        let path = dir.path().join("main.toml");
        fs::write(
            &path,
            "[database]\nurl = \"postgres://sync@db/booking\"\n\
             password_file = \"${CREDENTIALS_DIRECTORY}/db-password\"\n\
             [exchange]\nurl = \"https://mail.example.com/EWS/Exchange.asmx\"\n",
        )
        .expect("config written");

        let config = Config::load_with_credentials(&path, Some(&credentials)).expect("valid");
        let outside = Config::load(&path);

        let password = config.database.password.expect("a password");
        assert_eq!(password.expose_secret(), "from-systemd");
        let Err(ConfigError::Invalid { problems }) = outside else {
            panic!("expected a problem without a credentials directory: {outside:?}");
        };
        assert_eq!(keys(&problems), vec!["database.password_file"]);
        assert!(
            problems[0].message.contains("LoadCredential"),
            "{problems:?}"
        );
    }
    #[test]
    fn the_periodic_resync_can_be_switched_off() {
        let on = Config::from_toml_str(MINIMAL).expect("valid");
        let off = Config::from_toml_str(&format!("{MINIMAL}\n[resync]\nenabled = false\n"))
            .expect("valid");

        assert!(on.resync.enabled);
        assert!(!off.resync.enabled);
    }

    #[test]
    fn a_resync_switch_that_is_not_a_boolean_is_pointed_at() {
        let problems = problems(&format!("{MINIMAL}\n[resync]\nenabled = \"no\"\n"));

        assert_eq!(keys(&problems), vec!["resync"], "{problems:?}");
        assert!(
            problems[0].message.contains("enabled") && problems[0].message.contains("boolean"),
            "{problems:?}"
        );
    }
}
