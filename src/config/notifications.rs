//! `[notifications]`: whom out-of-sync issues go to, and how often.
//!
//! Parsed on its own from the whole file (so its errors keep their line numbers) and
//! merged into the one report of [`super::parse`]. `[notifications.smtp]` sends the
//! digests through an SMTP relay instead of EWS; its password is read from a file like
//! every other secret.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigProblem, Problems};

const SECTION: &str = "notifications";
const DEFAULT_DIGEST_INTERVAL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_DAILY_CAP: u32 = 10;
const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the relay must offer (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on this host (port 25).
    None,
}

/// `[notifications.smtp]`: send digests through an SMTP relay.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Relay host name (checked against its certificate) or address.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// AUTH user name; none sends without authentication.
    pub username: Option<String>,
    /// AUTH password, read from `password_file`.
    pub password: Option<SecretString>,
    /// The From address of the digests (lower case).
    pub from: String,
    /// Longest wait for the relay on one command.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PartialEq for SmtpConfig {
    fn eq(&self, other: &Self) -> bool {
        let password = |config: &Self| {
            config
                .password
                .as_ref()
                .map(|secret| secret.expose_secret().to_owned())
        };
        self.host == other.host
            && self.port == other.port
            && self.tls == other.tls
            && self.username == other.username
            && password(self) == password(other)
            && self.from == other.from
            && self.timeout == other.timeout
    }
}

impl Eq for SmtpConfig {}

/// `[notifications]`: out-of-sync issues and the digests that report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationsConfig {
    /// Send digests (issues are recorded and flagged either way).
    pub enabled: bool,
    /// The mailbox digests are sent as through EWS (the service account acts as it);
    /// required when enabled without `smtp`.
    pub sender: Option<String>,
    /// Send through this SMTP relay instead of EWS.
    pub smtp: Option<SmtpConfig>,
    /// Told about unknown organizers and meetings without an organizer.
    pub fallback_owner: Option<String>,
    /// Receives the report of issues found while a room's initial sync runs.
    pub admin: Option<String>,
    /// Issues found during a room's initial sync go to the users themselves.
    pub initial_sync_to_users: bool,
    /// One digest per recipient per interval.
    pub digest_interval: Duration,
    /// Digests one recipient gets per day at most (the administrator's report aside).
    pub daily_cap: u32,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sender: None,
            smtp: None,
            fallback_owner: None,
            admin: None,
            initial_sync_to_users: false,
            digest_interval: DEFAULT_DIGEST_INTERVAL,
            daily_cap: DEFAULT_DAILY_CAP,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotifications {
    enabled: Option<bool>,
    sender: Option<String>,
    fallback_owner: Option<String>,
    admin: Option<String>,
    during_initial_sync: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    digest_interval: Option<Duration>,
    daily_cap: Option<i64>,
    smtp: Option<RawSmtp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Option<String>,
    port: Option<i64>,
    tls: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
struct OnlyNotifications {
    notifications: Option<RawNotifications>,
}

/// Parses and validates the `[notifications]` section of `text`; a relative
/// `smtp.password_file` is resolved against `base`, and secret-file problems are
/// added to `secrets`.
///
/// # Errors
///
/// Every problem found.
pub(super) fn parse(
    text: &str,
    base: &Path,
    secrets: &mut Problems,
) -> Result<NotificationsConfig, Vec<ConfigProblem>> {
    let problem = |key: &str, message: String| ConfigProblem {
        key: format!("{SECTION}.{key}"),
        message,
    };
    let raw = match toml::from_str::<OnlyNotifications>(text) {
        Ok(doc) => doc.notifications.unwrap_or_default(),
        Err(err) => {
            return Err(vec![ConfigProblem {
                key: SECTION.to_owned(),
                message: err.to_string().trim_end().to_owned(),
            }])
        }
    };
    let mut problems = Vec::new();
    let mut config = NotificationsConfig {
        enabled: raw.enabled.unwrap_or(false),
        ..NotificationsConfig::default()
    };
    for (key, value, slot) in [
        ("sender", raw.sender, &mut config.sender),
        (
            "fallback_owner",
            raw.fallback_owner,
            &mut config.fallback_owner,
        ),
        ("admin", raw.admin, &mut config.admin),
    ] {
        match value.map(|address| address.trim().to_ascii_lowercase()) {
            Some(address) if !address.contains('@') => problems.push(problem(
                key,
                format!("{address:?} is not an email address; write name@domain"),
            )),
            address => *slot = address,
        }
    }
    match raw.during_initial_sync.as_deref() {
        None | Some("admin") => {}
        Some("users") => config.initial_sync_to_users = true,
        Some(other) => problems.push(problem(
            "during_initial_sync",
            format!("is {other:?}; write \"admin\" or \"users\""),
        )),
    }
    match raw.digest_interval {
        Some(interval) if interval.is_zero() => problems.push(problem(
            "digest_interval",
            "is zero; set a positive duration such as \"15m\"".to_owned(),
        )),
        Some(interval) => config.digest_interval = interval,
        None => {}
    }
    match raw.daily_cap.map(u32::try_from) {
        Some(Ok(cap)) if cap > 0 => config.daily_cap = cap,
        Some(_) => problems.push(problem(
            "daily_cap",
            "must be a positive number of digests".to_owned(),
        )),
        None => {}
    }
    if let Some(raw) = raw.smtp {
        config.smtp = validate_smtp(raw, base, secrets, &mut problems);
    }
    if config.enabled && config.sender.is_none() && raw_has_no_smtp(&config, &problems) {
        problems.push(problem(
            "sender",
            "is missing; set the mailbox digests are sent as, or configure \
             [notifications.smtp]"
                .to_owned(),
        ));
    }
    if config.enabled && !config.initial_sync_to_users && config.admin.is_none() {
        problems.push(problem(
            "admin",
            "is missing; set the administrator's address, or during_initial_sync = \"users\""
                .to_owned(),
        ));
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Whether no `[notifications.smtp]` was given (a given but invalid one has its own
/// problems already).
fn raw_has_no_smtp(config: &NotificationsConfig, problems: &[ConfigProblem]) -> bool {
    config.smtp.is_none()
        && !problems
            .iter()
            .any(|problem| problem.key.starts_with("notifications.smtp"))
}

fn validate_smtp(
    raw: RawSmtp,
    base: &Path,
    secrets: &mut Problems,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SmtpConfig> {
    let before = problems.len() + secrets.found.len();
    let problem = |key: &str, message: String| ConfigProblem {
        key: format!("{SECTION}.smtp.{key}"),
        message,
    };
    let host = raw
        .host
        .map(|host| host.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        problems.push(problem(
            "host",
            "is missing; set the SMTP relay's host name".to_owned(),
        ));
    }
    let tls = match raw.tls.as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            problems.push(problem(
                "tls",
                format!("is {other:?}; write \"starttls\", \"tls\" or \"none\""),
            ));
            SmtpTls::StartTls
        }
    };
    let default_port = match tls {
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    };
    let port = match raw.port.map(u16::try_from) {
        None => default_port,
        Some(Ok(port)) if port > 0 => port,
        Some(_) => {
            problems.push(problem(
                "port",
                format!("is {}; set a port from 1 to 65535", raw.port.unwrap_or(0)),
            ));
            default_port
        }
    };
    if !host.is_empty() && !is_host(&host) {
        problems.push(problem(
            "host",
            format!(
                "{host:?} is neither a host name nor an IP address; write the relay's DNS name"
            ),
        ));
    }
    if tls == SmtpTls::None && !host.is_empty() && !is_loopback(&host) {
        problems.push(problem(
            "tls",
            format!(
                "is \"none\" for {host:?}, which is not this host; mail and passwords \
                 would cross the network in clear: use \"starttls\" or \"tls\""
            ),
        ));
    }
    let username = raw.username.map(|name| name.trim().to_owned());
    let password = match (&username, &raw.password_file) {
        (Some(name), _) if name.is_empty() => {
            problems.push(problem(
                "username",
                "is empty; set the AUTH user name or leave username out".to_owned(),
            ));
            None
        }
        (Some(_), Some(path)) => {
            secrets.secret_file(&format!("{SECTION}.smtp.password_file"), base, path)
        }
        (Some(_), None) => {
            problems.push(problem(
                "password_file",
                "is missing; name the file holding the AUTH password (username is set)".to_owned(),
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(problem(
                "username",
                "is missing; set the AUTH user name for password_file, or remove \
                 password_file"
                    .to_owned(),
            ));
            None
        }
        (None, None) => None,
    };
    let from = match raw.from.map(|address| address.trim().to_ascii_lowercase()) {
        Some(address) if address.contains('@') && address.parse::<lettre::Address>().is_ok() => {
            address
        }
        Some(address) => {
            problems.push(problem(
                "from",
                format!("{address:?} is not an email address; write name@domain"),
            ));
            String::new()
        }
        None => {
            problems.push(problem(
                "from",
                "is missing; set the address digests are sent from".to_owned(),
            ));
            String::new()
        }
    };
    let timeout = match raw.timeout {
        Some(timeout) if timeout.is_zero() => {
            problems.push(problem(
                "timeout",
                "is zero; set a positive duration such as \"30s\"".to_owned(),
            ));
            DEFAULT_SMTP_TIMEOUT
        }
        Some(timeout) => timeout,
        None => DEFAULT_SMTP_TIMEOUT,
    };
    (problems.len() + secrets.found.len() == before).then_some(SmtpConfig {
        host,
        port,
        tls,
        username,
        password,
        from,
        timeout,
    })
}

/// Whether `host` is an IP address or a DNS name (dot-separated labels of letters,
/// digits and inner hyphens).
fn is_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok()
        || (host.len() <= 253
            && host.trim_end_matches('.').split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }))
}

/// Whether `host` names this machine (`localhost` or a loopback address).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn parse(text: &str) -> Result<NotificationsConfig, Vec<ConfigProblem>> {
        let mut secrets = Problems {
            found: Vec::new(),
            credentials: None,
        };
        let parsed = super::parse(text, Path::new(""), &mut secrets);
        match parsed {
            Ok(_) if !secrets.found.is_empty() => Err(secrets.found),
            Err(mut found) => {
                found.extend(secrets.found);
                Err(found)
            }
            ok => ok,
        }
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect()
    }

    #[test]
    fn an_absent_section_takes_the_defaults() {
        assert_eq!(
            parse("dry_run = false\n"),
            Ok(NotificationsConfig::default())
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "[notifications]\nenabled = true\nfallback_owner = \"nobody\"\n\
                    during_initial_sync = \"everyone\"\ndaily_cap = 0\n";

        let problems = parse(text).unwrap_err();

        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "notifications.fallback_owner",
                "notifications.during_initial_sync",
                "notifications.daily_cap",
                "notifications.sender",
                "notifications.admin"
            ]
        );
    }

    #[test]
    fn a_full_section_is_read() {
        let text = "[notifications]\nenabled = true\nsender = \"Sync@Contoso.example\"\n\
                    admin = \"it@contoso.example\"\ndigest_interval = \"5m\"\ndaily_cap = 3\n";

        let config = parse(text).unwrap();

        assert!(config.enabled);
        assert_eq!(config.sender.as_deref(), Some("sync@contoso.example"));
        assert_eq!(config.digest_interval, Duration::from_secs(300));
        assert_eq!(config.daily_cap, 3);
    }

    #[test]
    fn an_smtp_relay_replaces_the_ews_sender_and_reads_its_password_from_a_file() {
        let mut secret = tempfile::NamedTempFile::new().expect("temporary file");
        secret.write_all(b"relay-secret\n").expect("secret written");
        std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let text = format!(
            "[notifications]\nenabled = true\nadmin = \"it@contoso.example\"\n\
             [notifications.smtp]\nhost = \"smtp.contoso.example\"\nusername = \"sync\"\n\
             password_file = {:?}\nfrom = \"Booking-Sync@Contoso.example\"\n",
            secret.path()
        );

        let config = parse(&text).unwrap();

        let smtp = config.smtp.expect("smtp is configured");
        assert_eq!(config.sender, None);
        assert_eq!((smtp.tls, smtp.port), (SmtpTls::StartTls, 587));
        assert_eq!(smtp.from, "booking-sync@contoso.example");
        assert_eq!(
            smtp.password.as_ref().map(|secret| secret.expose_secret()),
            Some("relay-secret")
        );
        assert!(!format!("{smtp:?}").contains("relay-secret"));
    }

    #[test]
    fn every_smtp_problem_is_reported() {
        let text = "[notifications]\nenabled = true\nadmin = \"it@contoso.example\"\n\
                    [notifications.smtp]\nhost = \"smtp.contoso.example\"\ntls = \"none\"\n\
                    port = 70000\nusername = \"sync\"\nfrom = \"nobody\"\n";
        let bad_host = "[notifications.smtp]\nhost = \"smtp relay\"\nfrom = \"a@b.example\"\n";

        let problems = parse(text).unwrap_err();

        assert_eq!(
            keys(&problems),
            [
                "notifications.smtp.port",
                "notifications.smtp.tls",
                "notifications.smtp.password_file",
                "notifications.smtp.from"
            ],
            "{problems:?}"
        );
        assert_eq!(
            keys(&parse(bad_host).unwrap_err()),
            ["notifications.smtp.host"]
        );
    }

    #[test]
    fn a_plain_relay_on_this_host_needs_no_tls() {
        let text = "[notifications.smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n\
                    from = \"sync@contoso.example\"\n";

        let smtp = parse(text).unwrap().smtp.expect("smtp is configured");

        assert_eq!((smtp.tls, smtp.port), (SmtpTls::None, 25));
    }
}
