//! The `booking-sync run` binary as a child process, with its own `/metrics`.
//!
//! Fault rows run the service this way so that every row reads its own counters: the
//! Prometheus recorder is global to a process, and the tests of the `it` binary run
//! side by side in one.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The binary cargo built for this test run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_booking-sync");
/// The grace period the binary gets on SIGTERM.
pub const GRACE_SECONDS: u64 = 5;
/// How long the binary may take to bind its HTTP listener.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The log line that names the HTTP address (`http=127.0.0.1:PORT`).
const STARTED: &str = "Service started";

/// A service process, killed when dropped so a failing test leaves nothing running.
/// Its log goes to `log` (beside the config file), one file per process.
pub struct Daemon {
    child: Child,
    http: Arc<Mutex<Option<SocketAddr>>>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `booking-sync --config CONFIG run`.
    pub fn spawn(config: &Path) -> Self {
        let log = unique_log_path(config);
        let mut child = Command::new(BINARY)
            .arg("--config")
            .arg(config)
            .arg("run")
            .arg("--grace-seconds")
            .arg(GRACE_SECONDS.to_string())
            .env("RUST_LOG", "warn,booking_sync::app=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let http = Arc::new(Mutex::new(None));
        {
            let http = http.clone();
            let mut file = std::fs::File::create(&log).expect("log file");
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains(STARTED) {
                        if let Some(addr) = http_field(&line) {
                            *http.lock().expect("lock") = Some(addr);
                        }
                    }
                    let _ = writeln!(file, "{line}");
                }
            });
        }
        Self { child, http, log }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `name` (KILL, TERM, STOP, CONT).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} works");
    }

    /// Waits up to `timeout` for the process to end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILL, and waits for the end.
    pub async fn kill(mut self) {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(10))
            .await
            .expect("a killed process ends");
    }

    /// The address of its `/metrics`, once it has bound it.
    pub async fn http_addr(&mut self) -> SocketAddr {
        let started = Instant::now();
        loop {
            if let Some(addr) = *self.http.lock().expect("lock") {
                return addr;
            }
            if let Some(status) = self.child.try_wait().expect("wait works") {
                panic!(
                    "the service ended ({status}) before it started; see {}",
                    self.log.display()
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the service did not start within {START_TIMEOUT:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One scrape of its `/metrics`.
    pub async fn metrics(&mut self) -> Metrics {
        let addr = self.http_addr().await;
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics has a body");
        Metrics::parse(&text)
    }

    /// Waits until every one of `rooms` has finished its initial sync.
    pub async fn wait_initial_sync(&mut self, rooms: usize) {
        let started = Instant::now();
        loop {
            let complete = self
                .metrics()
                .await
                .get("booking_sync_rooms_initial_sync", &[("state", "complete")]);
            if complete >= rooms as f64 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "initial sync incomplete: {complete} of {rooms}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One scrape: every series with its labels and value.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Reads the Prometheus text format (the lines the service's exporter writes).
    pub fn parse(text: &str) -> Self {
        let mut series = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (key, BTreeMap::new()),
            };
            series.push((name.to_owned(), labels, value));
        }
        Self { series }
    }

    /// The sum of every series of `name` whose labels include `labels` (0 when none).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(series, have, _)| {
                series == name
                    && labels
                        .iter()
                        .all(|(key, value)| have.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// The sum of every series of `name`.
    pub fn total(&self, name: &str) -> f64 {
        self.get(name, &[])
    }
}

/// `a="b",c="d"` (values the service emits never hold quotes or commas).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| {
            (
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            )
        })
        .collect()
}

/// The address in `... http=127.0.0.1:PORT ...`.
fn http_field(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("http=")? + "http=".len()..];
    let value = rest.split_whitespace().next()?.trim_matches('"');
    value.parse().ok()
}

fn unique_log_path(config: &Path) -> PathBuf {
    let dir = config.parent().unwrap_or(Path::new("."));
    (1..)
        .map(|n| dir.join(format!("service-{n}.log")))
        .find(|path| !path.exists())
        .expect("a free log name")
}
