//! A real SMTP server on a loopback port: aiosmtpd (from the project's Python virtual
//! environment, see [`super::python`]) run by `tests/smtp/sink.py` as a child process,
//! filing every message it receives in a Maildir that the test reads back, and
//! requiring AUTH when started with credentials. Stopping it and starting it again on
//! the same port takes the relay down and up.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

const START_WAIT: Duration = Duration::from_secs(30);

/// A message as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// MAIL FROM (aiosmtpd's `X-MailFrom` header).
    pub envelope_from: String,
    /// RCPT TO (aiosmtpd's `X-RcptTo` header, comma-separated).
    pub envelope_to: Vec<String>,
    /// The raw message as filed.
    pub raw: Vec<u8>,
}

impl Received {
    /// The parsed message.
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("the sink holds a parseable message")
    }
}

/// A sink on a fixed loopback port, running or stopped.
pub struct SmtpSink {
    addr: SocketAddr,
    maildir: tempfile::TempDir,
    credentials: Option<(String, String)>,
    child: Option<Child>,
}

impl SmtpSink {
    /// Starts aiosmtpd on a free loopback port and waits until it accepts connections.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Like [`Self::start`], requiring AUTH as `username` with `password`.
    pub async fn start_with_auth(username: &str, password: &str) -> Self {
        Self::start_with(Some((username.to_owned(), password.to_owned()))).await
    }

    async fn start_with(credentials: Option<(String, String)>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut sink = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            maildir: tempfile::tempdir().expect("maildir"),
            credentials,
            child: None,
        };
        sink.resume().await;
        sink
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server: connections are refused until [`Self::resume`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("sink stops");
        }
        let started = tokio::time::Instant::now();
        while tokio::net::TcpStream::connect(self.addr).await.is_ok() {
            assert!(started.elapsed() < START_WAIT, "the sink would not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again on the same port and Maildir.
    pub async fn resume(&mut self) {
        let python = super::python();
        assert!(
            python.exists(),
            "no Python interpreter at {}: run scripts/setup-python-venv.sh (or set BOOKING_SYNC_PYTHON)",
            python.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut command = Command::new(&python);
        command
            .arg(script)
            .arg(self.addr.ip().to_string())
            .arg(self.addr.port().to_string())
            .arg(self.mail_path())
            .env_remove("SINK_USERNAME")
            .env_remove("SINK_PASSWORD")
            .kill_on_drop(true);
        if let Some((username, password)) = &self.credentials {
            command
                .env("SINK_USERNAME", username)
                .env("SINK_PASSWORD", password);
        }
        let child = command.spawn().expect("aiosmtpd starts");
        self.child = Some(child);
        let started = tokio::time::Instant::now();
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            assert!(
                started.elapsed() < START_WAIT,
                "aiosmtpd did not listen on {}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Maildir (aiosmtpd creates it when it does not exist yet).
    fn mail_path(&self) -> PathBuf {
        self.maildir.path().join("Maildir")
    }

    /// Every message received so far, in the order filed.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for folder in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.mail_path().join(folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let modified = entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                files.push((modified, entry.path()));
            }
        }
        files.sort();
        files.iter().map(|(_, path)| read_message(path)).collect()
    }

    /// Waits until at least `count` messages arrived (or the wait runs out).
    pub async fn wait_for(&self, count: usize, wait: Duration) -> Vec<Received> {
        let started = tokio::time::Instant::now();
        loop {
            let received = self.received();
            if received.len() >= count || started.elapsed() > wait {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn read_message(path: &Path) -> Received {
    let raw = std::fs::read(path).expect("a filed message");
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a parseable message");
    let header = |name: &str| {
        parsed
            .header_raw(name)
            .map(|value| value.trim().to_owned())
            .unwrap_or_default()
    };
    let envelope_from = header("X-MailFrom");
    let envelope_to = header("X-RcptTo")
        .split(',')
        .map(|address| address.trim().to_owned())
        .filter(|address| !address.is_empty())
        .collect();
    Received {
        envelope_from,
        envelope_to,
        raw,
    }
}
