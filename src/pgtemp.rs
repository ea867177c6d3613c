//! A private, throwaway PostgreSQL server, so `booking-sync demo` runs on a machine that
//! only has the PostgreSQL binaries installed.
//!
//! [`TempPostgres::start`] finds `initdb` and `pg_ctl`, creates a cluster in a fresh
//! directory under the system temp dir (trust authentication, UTF8, no fsync), starts it
//! on 127.0.0.1 and a free port with its unix socket inside that directory, and creates
//! the database [`DATABASE_NAME`]. [`TempPostgres::stop`] (or dropping the value) stops
//! the server and removes the directory. When the process runs as root, which `initdb`
//! refuses, every PostgreSQL command runs as the `postgres` system user instead.
//!
//! The fault tests also restart it ([`TempPostgres::restart`], `pg_ctl restart -m
//! fast`) and crash it ([`TempPostgres::crash`], `pg_ctl stop -m immediate`, then
//! [`TempPostgres::start_again`]), keeping its data directory and port; a server from
//! [`TempPostgres::start_durable`] keeps every commit it acknowledged across a crash.
//!
//! The module never touches a system-wide cluster, never reads or writes configuration
//! outside its own directory, and is not meant for data that must survive the process.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;
use tokio_postgres::NoTls;

/// The database created in every temporary server.
pub const DATABASE_NAME: &str = "booking_sync";

/// The superuser `initdb` creates, whichever system user runs it.
const SUPERUSER: &str = "postgres";
/// The system user that runs PostgreSQL when the process is root.
const SYSTEM_USER: &str = "postgres";
/// What to tell someone whose machine lacks the server binaries.
const INSTALL_HINT: &str = "apt-get install postgresql";
/// Where Debian and Ubuntu install each major version's binaries.
const VERSIONED_BIN_ROOT: &str = "/usr/lib/postgresql";
const INITDB: &str = "initdb";
const PG_CTL: &str = "pg_ctl";
const DATA_DIR: &str = "data";
const LOG_FILE: &str = "postgres.log";
/// How often to pick a new port when another process takes the free one first.
const START_ATTEMPTS: u32 = 3;
/// How long `pg_ctl` and the first connection may take.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest run of a PostgreSQL command before it counts as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How much of a failed command's output or the server log goes into an error.
const OUTPUT_TAIL_CHARS: usize = 2_000;

/// A running private PostgreSQL server; dropping it stops the server and removes its
/// directory.
///
/// Dropping blocks the current thread while `pg_ctl stop` runs (about a second); call
/// [`TempPostgres::stop`] from async code to avoid that.
#[derive(Debug)]
pub struct TempPostgres {
    /// The temporary directory: cluster, socket and log. Removed on stop or drop.
    directory: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    run_as: RunAs,
    /// Commits wait for their WAL to be written (`synchronous_commit = on`), so a
    /// crash of the server keeps every commit it acknowledged.
    durable: bool,
    /// Set once `stop` has cleaned up, so that drop has nothing left to do.
    stopped: bool,
}

/// Why a temporary server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TempPostgresError {
    /// `initdb` or `pg_ctl` is nowhere to be found.
    #[error("postgresql server binaries (initdb, pg_ctl) not found; install them with `{hint}`")]
    NotInstalled {
        /// How to install them.
        hint: String,
    },
    /// A file system operation failed.
    #[error("could not {action}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL command exited with an error or hung.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command, for the operator to retry by hand.
        command: String,
        /// Exit status, or "timed out".
        status: String,
        /// The end of its output (and of the server log, when starting).
        output: String,
    },
    /// The server started but did not accept connections in time.
    #[error("postgresql on port {port} did not accept connections within {waited:?}")]
    NotReady {
        /// The server's port.
        port: u16,
        /// How long was waited.
        waited: Duration,
        /// The last connection error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Creating the database failed.
    #[error("could not create database {DATABASE_NAME}")]
    CreateDatabase(#[source] tokio_postgres::Error),
}

impl TempPostgres {
    /// Starts a private server and creates database [`DATABASE_NAME`] in it.
    ///
    /// Finds `initdb` and `pg_ctl` on `PATH`, then in `/usr/lib/postgresql/*/bin`
    /// (highest version first); runs `initdb` (trust auth, UTF8, no fsync) in a fresh
    /// temp directory; starts the server with `pg_ctl` on 127.0.0.1 and a free port (unix
    /// socket inside the directory); waits until it accepts connections. Runs the
    /// commands as the `postgres` system user when the process is root.
    ///
    /// # Errors
    ///
    /// [`TempPostgresError::NotInstalled`] without the binaries; otherwise whatever step
    /// failed. The directory is removed on failure.
    pub async fn start() -> Result<Self, TempPostgresError> {
        Self::start_with(false).await
    }

    /// Like [`TempPostgres::start`], but a commit is acknowledged only once its WAL is
    /// written (`synchronous_commit = on`), so [`TempPostgres::crash`] loses nothing
    /// the server acknowledged. `fsync` stays off: the server may crash, the machine
    /// may not.
    ///
    /// # Errors
    ///
    /// As [`TempPostgres::start`].
    pub async fn start_durable() -> Result<Self, TempPostgresError> {
        Self::start_with(true).await
    }

    async fn start_with(durable: bool) -> Result<Self, TempPostgresError> {
        let binaries = Binaries::find()?;
        let run_as = RunAs::detect().await?;
        let directory = create_private_dir(&run_as).await?;
        let mut server = Self {
            directory,
            port: 0,
            pg_ctl: binaries.pg_ctl.clone(),
            run_as,
            durable,
            stopped: false,
        };
        server.init_cluster(&binaries.initdb).await?;
        server.start_server().await?;
        server.create_database().await?;
        tracing::debug!(port = server.port, directory = %server.directory.display(), "Temporary PostgreSQL started");
        Ok(server)
    }

    /// The connection URL of database [`DATABASE_NAME`]:
    /// `postgres://postgres@127.0.0.1:<port>/booking_sync`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@{}:{}/{DATABASE_NAME}",
            Ipv4Addr::LOCALHOST,
            self.port
        )
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the cluster, its socket and its log.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Stops the server (fast shutdown) and removes its directory.
    ///
    /// # Errors
    ///
    /// `pg_ctl stop` failing (dropping the value then retries with an immediate
    /// shutdown), or the directory not being removable.
    pub async fn stop(mut self) -> Result<(), TempPostgresError> {
        let data_dir = self.data_dir();
        let mut stop = self.run_as.command(&self.pg_ctl);
        stop.arg("stop")
            .arg("-D")
            .arg(&data_dir)
            .args(["-m", "fast", "-w", "-s"]);
        run(stop, describe(&self.pg_ctl, "stop")).await?;
        self.stopped = true;
        tokio::fs::remove_dir_all(&self.directory)
            .await
            .map_err(|source| TempPostgresError::Io {
                action: format!("remove {}", self.directory.display()),
                source,
            })
    }

    /// Restarts the server as an operator does (`pg_ctl restart -m fast`): sessions
    /// are ended, the data directory and the port stay, and it returns once the
    /// server accepts connections again.
    ///
    /// # Errors
    ///
    /// `pg_ctl restart` failing (with the end of the server log), or the server not
    /// accepting connections in time.
    pub async fn restart(&self) -> Result<(), TempPostgresError> {
        let mut command = self.run_as.command(&self.pg_ctl);
        command
            .arg("restart")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-m", "fast", "-w", "-s", "-t"])
            .arg(READY_TIMEOUT.as_secs().to_string());
        if let Err(err) = run(command, describe(&self.pg_ctl, "restart -m fast")).await {
            return Err(self.with_log(err).await);
        }
        self.wait_until_ready().await
    }

    /// Crashes the server (`pg_ctl stop -m immediate`: every process quits at once,
    /// without a checkpoint). It stays down until [`TempPostgres::start_again`], which
    /// replays the WAL.
    ///
    /// # Errors
    ///
    /// `pg_ctl stop` failing.
    pub async fn crash(&self) -> Result<(), TempPostgresError> {
        let mut command = self.run_as.command(&self.pg_ctl);
        command
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-s"]);
        run(command, describe(&self.pg_ctl, "stop -m immediate"))
            .await
            .map(drop)
    }

    /// Starts the server again after [`TempPostgres::crash`], on the same data
    /// directory and port, and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// `pg_ctl start` failing (with the end of the server log), or the server not
    /// accepting connections in time.
    pub async fn start_again(&self) -> Result<(), TempPostgresError> {
        if let Err(err) = run(self.start_command(), describe(&self.pg_ctl, "start")).await {
            return Err(self.with_log(err).await);
        }
        self.wait_until_ready().await
    }

    /// `pg_ctl start` on this directory, waiting until the server accepts connections.
    fn start_command(&self) -> Command {
        let mut command = self.run_as.command(&self.pg_ctl);
        command
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-s", "-t"])
            .arg(READY_TIMEOUT.as_secs().to_string());
        command
    }

    fn data_dir(&self) -> PathBuf {
        self.directory.join(DATA_DIR)
    }

    fn log_file(&self) -> PathBuf {
        self.directory.join(LOG_FILE)
    }

    async fn init_cluster(&self, initdb: &Path) -> Result<(), TempPostgresError> {
        let mut command = self.run_as.command(initdb);
        command.arg("-D").arg(self.data_dir()).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]);
        run(command, describe(initdb, "-D <data>")).await.map(drop)
    }

    /// Starts the server, picking another port when the free one was taken meanwhile.
    async fn start_server(&mut self) -> Result<(), TempPostgresError> {
        let mut attempt = 1;
        loop {
            self.port = free_port()?;
            self.write_settings().await?;
            match run(self.start_command(), describe(&self.pg_ctl, "start")).await {
                Ok(_) => return self.wait_until_ready().await,
                Err(err) if attempt >= START_ATTEMPTS => return Err(self.with_log(err).await),
                Err(err) => {
                    tracing::debug!(error = %err, attempt, "Temporary PostgreSQL failed to start, retrying");
                    attempt += 1;
                }
            }
        }
    }

    /// Appends this run's settings to `postgresql.conf`; later lines win, so a retry
    /// with another port simply appends again.
    async fn write_settings(&self) -> Result<(), TempPostgresError> {
        let mut settings = String::from("\n# booking-sync temporary server\n");
        let socket_dir = self.directory.display().to_string().replace('\'', "''");
        // Writing to a String cannot fail.
        let _ = write!(
            settings,
            "listen_addresses = '{}'\nport = {}\nunix_socket_directories = '{socket_dir}'\n\
             fsync = off\nsynchronous_commit = {}\nfull_page_writes = off\n",
            Ipv4Addr::LOCALHOST,
            self.port,
            if self.durable { "on" } else { "off" },
        );
        let path = self.data_dir().join("postgresql.conf");
        let io_error = |source| TempPostgresError::Io {
            action: format!("write {}", path.display()),
            source,
        };
        let mut conf = tokio::fs::read_to_string(&path).await.map_err(io_error)?;
        conf.push_str(&settings);
        tokio::fs::write(&path, conf).await.map_err(io_error)
    }

    async fn wait_until_ready(&self) -> Result<(), TempPostgresError> {
        let url = self.admin_url();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            match tokio_postgres::connect(&url, NoTls).await {
                Ok(_) => return Ok(()),
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(TempPostgresError::NotReady {
                        port: self.port,
                        waited: READY_TIMEOUT,
                        source,
                    })
                }
                Err(_) => tokio::time::sleep(RETRY_DELAY).await,
            }
        }
    }

    async fn create_database(&self) -> Result<(), TempPostgresError> {
        let (client, connection) = tokio_postgres::connect(&self.admin_url(), NoTls)
            .await
            .map_err(TempPostgresError::CreateDatabase)?;
        let connection = tokio::spawn(connection);
        let created = client
            .batch_execute(&format!("CREATE DATABASE {DATABASE_NAME}"))
            .await
            .map_err(TempPostgresError::CreateDatabase);
        drop(client);
        // The connection ends once the client is gone; its own error adds nothing.
        let _ = connection.await;
        created
    }

    /// The URL of the maintenance database, which exists before ours does.
    fn admin_url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@{}:{}/postgres",
            Ipv4Addr::LOCALHOST,
            self.port
        )
    }

    /// Adds the end of the server log to a failed start, where the reason usually is.
    async fn with_log(&self, err: TempPostgresError) -> TempPostgresError {
        match err {
            TempPostgresError::CommandFailed {
                command,
                status,
                output,
            } => {
                let log = tokio::fs::read_to_string(self.log_file())
                    .await
                    .unwrap_or_default();
                TempPostgresError::CommandFailed {
                    command,
                    status,
                    output: tail(&format!("{output}\n{log}")),
                }
            }
            other => other,
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let data_dir = self.data_dir();
        if data_dir.join("postmaster.pid").exists() {
            let mut stop = self.run_as.blocking_command(&self.pg_ctl);
            stop.arg("stop")
                .arg("-D")
                .arg(&data_dir)
                .args(["-m", "immediate", "-w", "-s"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Err(err) = stop.status() {
                tracing::warn!(error = %err, directory = %self.directory.display(), "Could not stop temporary PostgreSQL");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.directory) {
            tracing::warn!(error = %err, directory = %self.directory.display(), "Could not remove temporary PostgreSQL directory");
        }
    }
}

/// The two server binaries, from the same installation.
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

impl Binaries {
    fn find() -> Result<Self, TempPostgresError> {
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default();
        Self::find_in(&on_path, Path::new(VERSIONED_BIN_ROOT))
    }

    /// Looks in `path_dirs` in order, then in the versioned directories under
    /// `versioned_root`, highest version first.
    fn find_in(path_dirs: &[PathBuf], versioned_root: &Path) -> Result<Self, TempPostgresError> {
        path_dirs
            .iter()
            .find_map(|dir| Self::in_dir(dir))
            .or_else(|| {
                versioned_bin_dirs(versioned_root)
                    .iter()
                    .find_map(|dir| Self::in_dir(dir))
            })
            .ok_or_else(|| TempPostgresError::NotInstalled {
                hint: INSTALL_HINT.to_owned(),
            })
    }

    fn in_dir(dir: &Path) -> Option<Self> {
        let initdb = dir.join(INITDB);
        let pg_ctl = dir.join(PG_CTL);
        (initdb.is_file() && pg_ctl.is_file()).then_some(Self { initdb, pg_ctl })
    }
}

/// `<root>/<version>/bin` for every installed version, highest version first.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|left, right| right.0.cmp(&left.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Who runs the PostgreSQL commands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RunAs {
    /// The current user (not root).
    CurrentUser,
    /// Root: the system user, through `runuser`.
    Runuser { runuser: PathBuf },
    /// Root without `runuser`: the system user, through `su`.
    Su,
}

impl RunAs {
    async fn detect() -> Result<Self, TempPostgresError> {
        let mut id = Command::new("id");
        id.arg("-u");
        let output = run(id, "id -u".to_owned()).await?;
        if String::from_utf8_lossy(&output.stdout).trim() != "0" {
            return Ok(Self::CurrentUser);
        }
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file());
        Ok(runuser.map_or(Self::Su, |runuser| Self::Runuser { runuser }))
    }

    fn command(&self, program: &Path) -> Command {
        Command::from(self.blocking_command(program))
    }

    /// A command running `program` as the right user; its arguments are added after.
    fn blocking_command(&self, program: &Path) -> std::process::Command {
        match self {
            Self::CurrentUser => std::process::Command::new(program),
            Self::Runuser { runuser } => {
                let mut command = std::process::Command::new(runuser);
                command.args(["-u", SYSTEM_USER, "--"]).arg(program);
                command
            }
            Self::Su => {
                // `su -c` takes one shell string; "$0" and "$@" carry the program and
                // its arguments through without quoting, and `--` keeps su from reading
                // the program's options as its own.
                let mut command = std::process::Command::new("su");
                command
                    .args([
                        "-s",
                        "/bin/sh",
                        "-c",
                        "exec \"$0\" \"$@\"",
                        SYSTEM_USER,
                        "--",
                    ])
                    .arg(program);
                command
            }
        }
    }
}

/// Creates the private directory, owned by whoever runs PostgreSQL.
async fn create_private_dir(run_as: &RunAs) -> Result<PathBuf, TempPostgresError> {
    let directory =
        std::env::temp_dir().join(format!("booking-sync-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&directory)
        .map_err(|source| TempPostgresError::Io {
            action: format!("create {}", directory.display()),
            source,
        })?;
    if *run_as != RunAs::CurrentUser {
        let mut chown = Command::new("chown");
        chown.arg(format!("{SYSTEM_USER}:")).arg(&directory);
        if let Err(err) = run(chown, format!("chown {SYSTEM_USER}:")).await {
            // Nothing else owns the directory yet; leave no trace.
            let _ = std::fs::remove_dir_all(&directory);
            return Err(err);
        }
    }
    Ok(directory)
}

/// A port nobody listens on right now (the server may still lose a race for it, which
/// `start_server` retries).
fn free_port() -> Result<u16, TempPostgresError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| TempPostgresError::Io {
            action: "find a free port on 127.0.0.1".to_owned(),
            source,
        })
}

/// Runs a command to completion, turning a failure or a hang into `CommandFailed`.
async fn run(mut command: Command, description: String) -> Result<Output, TempPostgresError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // The caller's working directory may be closed to the postgres user.
        .current_dir(std::env::temp_dir());
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => {
            return Err(TempPostgresError::Io {
                action: format!("run `{description}`"),
                source,
            })
        }
        Err(_) => {
            return Err(TempPostgresError::CommandFailed {
                command: description,
                status: "timed out".to_owned(),
                output: String::new(),
            })
        }
    };
    if output.status.success() {
        return Ok(output);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Err(TempPostgresError::CommandFailed {
        command: description,
        status: output.status.to_string(),
        output: tail(&text),
    })
}

fn describe(program: &Path, arguments: &str) -> String {
    format!("{} {arguments}", program.display())
}

/// The last `OUTPUT_TAIL_CHARS` characters of a text, trimmed.
fn tail(text: &str) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(OUTPUT_TAIL_CHARS);
    text.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn select_one(url: &str) -> i32 {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let row = client.query_one("select 1", &[]).await.unwrap();
        drop(client);
        connection.await.unwrap().unwrap();
        row.get(0)
    }

    #[tokio::test]
    async fn started_server_answers_queries_and_stop_removes_its_directory() {
        let server = TempPostgres::start().await.unwrap();
        let directory = server.directory().to_path_buf();
        assert!(directory.join(DATA_DIR).join("PG_VERSION").exists());
        assert_eq!(
            server.url(),
            format!(
                "postgres://postgres@127.0.0.1:{}/booking_sync",
                server.port()
            )
        );

        let answer = select_one(&server.url()).await;
        server.stop().await.unwrap();

        assert_eq!(answer, 1);
        assert!(!directory.exists(), "{} left behind", directory.display());
    }

    #[tokio::test]
    async fn dropping_a_server_stops_it_and_removes_its_directory() {
        let server = TempPostgres::start().await.unwrap();
        let directory = server.directory().to_path_buf();
        let url = server.url();

        drop(server);

        assert!(!directory.exists(), "{} left behind", directory.display());
        assert!(tokio_postgres::connect(&url, NoTls).await.is_err());
    }

    async fn user_name(run_as: &RunAs) -> String {
        let mut command = run_as.command(Path::new("/usr/bin/id"));
        command.arg("-un");
        let output = run(command, "id -un".to_owned()).await.unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    #[tokio::test]
    async fn commands_run_as_the_postgres_system_user_only_when_root() {
        let detected = RunAs::detect().await.unwrap();
        let mut id = Command::new("id");
        id.arg("-un");
        let current = run(id, "id -un".to_owned()).await.unwrap();
        let current = String::from_utf8_lossy(&current.stdout).trim().to_owned();

        if detected == RunAs::CurrentUser {
            assert_ne!(current, "root");
            assert_eq!(user_name(&detected).await, current);
        } else {
            assert_eq!(current, "root");
            assert_eq!(user_name(&detected).await, SYSTEM_USER);
            assert_eq!(user_name(&RunAs::Su).await, SYSTEM_USER);
        }
    }

    #[test]
    fn versioned_binaries_are_searched_highest_version_first() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "13", "not-a-version"] {
            std::fs::create_dir_all(root.path().join(version).join("bin")).unwrap();
        }

        let dirs = versioned_bin_dirs(root.path());

        let expected: Vec<PathBuf> = ["15", "13", "9.6"]
            .iter()
            .map(|version| root.path().join(version).join("bin"))
            .collect();
        assert_eq!(dirs, expected);
    }

    #[test]
    fn binaries_come_from_the_highest_installed_version_when_not_on_the_path() {
        let root = tempfile::tempdir().unwrap();
        for version in ["13", "16"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join(INITDB), "").unwrap();
            std::fs::write(bin.join(PG_CTL), "").unwrap();
        }
        let empty_path_dir = tempfile::tempdir().unwrap();

        let found = Binaries::find_in(&[empty_path_dir.path().to_path_buf()], root.path()).unwrap();

        assert_eq!(found.initdb, root.path().join("16/bin").join(INITDB));
        assert_eq!(found.pg_ctl, root.path().join("16/bin").join(PG_CTL));
    }

    #[test]
    fn missing_binaries_give_an_install_hint() {
        let empty = tempfile::tempdir().unwrap();

        let result = Binaries::find_in(&[empty.path().to_path_buf()], empty.path());

        match result {
            Err(TempPostgresError::NotInstalled { hint }) => {
                assert_eq!(hint, "apt-get install postgresql");
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("found binaries in an empty directory"),
        }
    }

    #[test]
    fn error_output_keeps_only_its_end() {
        let long = format!("{}END", "x".repeat(5_000));

        let kept = tail(&long);

        assert_eq!(kept.chars().count(), OUTPUT_TAIL_CHARS);
        assert!(kept.ends_with("END"));
    }
}
