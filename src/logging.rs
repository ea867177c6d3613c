//! Log output: the `[logging]` section and the `tracing` subscriber it sets up.
//!
//! Logs go to stderr, human-readable text (coloured only on a terminal) or JSON, one
//! object per line, for journald or a log collector; optionally they are also
//! appended to a file that is rotated by size. What is logged is decided at the call
//! sites, which never log secrets or meeting contents; this module only decides where
//! and how lines are written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::Problems;

/// Default size at which the log file is rotated.
const DEFAULT_FILE_MAX_BYTES: u64 = 10 << 20;
/// Default number of rotated files kept.
const DEFAULT_FILE_KEEP: usize = 5;
/// Default filter when neither `RUST_LOG` nor `level` says otherwise.
const DEFAULT_LEVEL: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`: format, level and an optional rotating file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Line format on stderr and in the file.
    pub format: LogFormat,
    /// `tracing` filter directives (`RUST_LOG` overrides them).
    pub level: String,
    /// A file that also receives every line, rotated by size.
    pub file: Option<LogFileConfig>,
}

/// The optional log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// Where lines are appended.
    pub path: PathBuf,
    /// Size at which the file is renamed to `PATH.1` and a new one started.
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` is the newest).
    pub keep: usize,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: DEFAULT_LEVEL.to_owned(),
            file: None,
        }
    }
}

/// `[logging]` as written in the file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    #[serde(default)]
    format: LogFormat,
    level: Option<String>,
    file: Option<PathBuf>,
    file_max_bytes: Option<i64>,
    file_keep: Option<i64>,
}

/// Validates `[logging]`; a relative file path is resolved against `base`.
pub(crate) fn validate(problems: &mut Problems, raw: RawLogging, base: &Path) -> LoggingConfig {
    let level = raw.level.unwrap_or_else(|| DEFAULT_LEVEL.to_owned());
    if EnvFilter::try_new(&level).is_err() {
        problems.add(
            "logging.level",
            format!("\"{level}\" is not a log filter; use a level such as \"info\" or \"booking_sync=debug\""),
        );
    }
    let max_bytes = problems.ranged(
        "logging.file_max_bytes",
        raw.file_max_bytes,
        (4096, i64::MAX),
        DEFAULT_FILE_MAX_BYTES,
    );
    let keep = problems.ranged(
        "logging.file_keep",
        raw.file_keep,
        (1, 1_000),
        DEFAULT_FILE_KEEP,
    );
    LoggingConfig {
        format: raw.format,
        level,
        file: raw.file.map(|path| LogFileConfig {
            path: base.join(path),
            max_bytes,
            keep,
        }),
    }
}

/// An error and its chain of causes on one line (`outer: cause: root cause`), as log
/// lines and error messages show them.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Installs the global subscriber for `config`; `RUST_LOG` overrides the level.
/// Does nothing when a subscriber is installed already.
///
/// # Errors
///
/// When the log file cannot be opened.
pub fn init(config: &LoggingConfig) -> io::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![layer(config.format, std::io::stderr, ansi)];
    if let Some(file) = &config.file {
        let writer = Mutex::new(RotatingFile::open(file.clone())?);
        layers.push(layer(config.format, writer, false));
    }
    let _ = tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init();
    Ok(())
}

fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => base.with_ansi(ansi).boxed(),
        LogFormat::Json => base
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
    }
}

/// A file rotated by size: when a write would pass `max_bytes`, `PATH` becomes
/// `PATH.1` (older ones shift up, the oldest past `keep` is removed) and a new `PATH`
/// is started. Each write is one whole log line, so no line is split across files.
pub struct RotatingFile {
    config: LogFileConfig,
    file: File,
    written: u64,
}

impl RotatingFile {
    /// Opens (appends to) the file, creating it private to the service's user.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened.
    pub fn open(config: LogFileConfig) -> io::Result<Self> {
        let file = open_append(&config.path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            config,
            file,
            written,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = &self.config.path;
        let rotated = |index: usize| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{index}"));
            PathBuf::from(name)
        };
        let _ = fs::remove_file(rotated(self.config.keep));
        for index in (1..self.config.keep).rev() {
            let from = rotated(index);
            if from.exists() {
                fs::rename(&from, rotated(index + 1))?;
            }
        }
        fs::rename(path, rotated(1))?;
        self.file = open_append(path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.config.max_bytes {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.txt");
        let mut file = RotatingFile::open(LogFileConfig {
            path: path.clone(),
            max_bytes: 9,
            keep: 2,
        })
        .expect("opens");

        for line in ["one\n", "two\n", "three\n", "four\n", "five\n"] {
            file.write_all(line.as_bytes()).expect("written");
        }

        let read = |name: &str| fs::read_to_string(dir.path().join(name)).expect(name);
        assert_eq!(read("log.txt"), "five\n");
        assert_eq!(read("log.txt.1"), "four\n");
        assert_eq!(read("log.txt.2"), "three\n");
        assert!(!dir.path().join("log.txt.3").exists());
    }

    #[test]
    fn the_section_is_read_with_defaults_and_checked() {
        let config = crate::config::Config::from_toml_str(
            "[database]\nurl = \"postgres://x@y/z\"\n[exchange]\nurl = \"http://e/EWS/Exchange.asmx\"\n\
             [logging]\nformat = \"json\"\nfile = \"/var/log/booking-sync/log.txt\"\n",
        )
        .expect("valid");

        assert_eq!(config.logging.format, LogFormat::Json);
        assert_eq!(config.logging.level, "info");
        let file = config.logging.file.expect("a file");
        assert_eq!(file.max_bytes, DEFAULT_FILE_MAX_BYTES);
        assert_eq!(file.keep, DEFAULT_FILE_KEEP);

        let err = crate::config::Config::from_toml_str(
            "[database]\nurl = \"postgres://x@y/z\"\n[exchange]\nurl = \"http://e/EWS/Exchange.asmx\"\n\
             [logging]\nformat = \"xml\"\n",
        )
        .expect_err("xml is no format");
        assert!(err.to_string().contains("logging"), "{err}");
    }
}
