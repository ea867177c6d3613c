//! `[audit]`: how long the audit trail of applied changes is kept.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigProblem;

const SECTION: &str = "audit";
const DEFAULT_RETENTION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `[audit]`: the audit trail of applied changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Entries older than this are deleted (checked hourly).
    pub retention: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: DEFAULT_RETENTION,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default, with = "humantime_serde::option")]
    retention: Option<Duration>,
}

#[derive(Deserialize)]
struct OnlyAudit {
    audit: Option<RawAudit>,
}

/// Parses and validates the `[audit]` section of `text`.
///
/// # Errors
///
/// Every problem found.
pub fn parse(text: &str) -> Result<AuditConfig, Vec<ConfigProblem>> {
    let raw = toml::from_str::<OnlyAudit>(text)
        .map_err(|err| {
            vec![ConfigProblem {
                key: SECTION.to_owned(),
                message: err.to_string().trim_end().to_owned(),
            }]
        })?
        .audit
        .unwrap_or_default();
    match raw.retention {
        Some(retention) if retention.is_zero() => Err(vec![ConfigProblem {
            key: format!("{SECTION}.retention"),
            message: "is zero; set a positive duration such as \"365d\"".to_owned(),
        }]),
        Some(retention) => Ok(AuditConfig { retention }),
        None => Ok(AuditConfig::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_defaults_to_a_year_and_refuses_zero() {
        assert_eq!(parse(""), Ok(AuditConfig::default()));
        assert_eq!(
            parse("[audit]\nretention = \"30days\"\n").map(|config| config.retention),
            Ok(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse("[audit]\nretention = \"0s\"\n").unwrap_err().len(), 1);
    }
}
