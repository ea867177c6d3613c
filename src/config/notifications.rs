//! `[notifications]`: whom out-of-sync issues go to, and how often.
//!
//! Parsed on its own from the whole file (so its errors keep their line numbers) and
//! merged into the one report of [`super::parse`].

use std::time::Duration;

use serde::Deserialize;

use super::ConfigProblem;

const SECTION: &str = "notifications";
const DEFAULT_DIGEST_INTERVAL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_DAILY_CAP: u32 = 10;

/// `[notifications]`: out-of-sync issues and the digests that report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationsConfig {
    /// Send digests (issues are recorded and flagged either way).
    pub enabled: bool,
    /// The mailbox digests are sent as (the service account acts as it); required
    /// when enabled.
    pub sender: Option<String>,
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
}

#[derive(Deserialize)]
struct OnlyNotifications {
    notifications: Option<RawNotifications>,
}

/// Parses and validates the `[notifications]` section of `text`.
///
/// # Errors
///
/// Every problem found.
pub fn parse(text: &str) -> Result<NotificationsConfig, Vec<ConfigProblem>> {
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
    if config.enabled && config.sender.is_none() {
        problems.push(problem(
            "sender",
            "is missing; set the mailbox digests are sent as".to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
