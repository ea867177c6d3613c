//! The time zones the simulator supports, with the Windows ids Exchange shows.
//!
//! `crate::tz` will own the Windows-IANA mapping once it lands; this small table is
//! what the simulator needs meanwhile.

use chrono_tz::Tz;

use crate::sim::SimError;

/// A time zone as the simulator stores it: the IANA rule and the Windows id Exchange shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneInfo {
    /// The IANA zone used for expansion.
    pub tz: Tz,
    /// The Windows id written to `StartTimeZone/@Id`.
    pub windows_id: &'static str,
    /// The display name written to `StartTimeZone/@Name`.
    pub display_name: &'static str,
}

/// IANA to Windows ids for the zones the simulator supports (`crate::tz` will take over).
const ZONES: &[(&str, &str, &str)] = &[
    ("UTC", "UTC", "(UTC) Coordinated Universal Time"),
    (
        "Europe/Berlin",
        "W. Europe Standard Time",
        "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
    ),
    (
        "Europe/Paris",
        "Romance Standard Time",
        "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris",
    ),
    (
        "Europe/London",
        "GMT Standard Time",
        "(UTC+00:00) Dublin, Edinburgh, Lisbon, London",
    ),
    (
        "America/New_York",
        "Eastern Standard Time",
        "(UTC-05:00) Eastern Time (US & Canada)",
    ),
    (
        "America/Chicago",
        "Central Standard Time",
        "(UTC-06:00) Central Time (US & Canada)",
    ),
    (
        "America/Los_Angeles",
        "Pacific Standard Time",
        "(UTC-08:00) Pacific Time (US & Canada)",
    ),
    (
        "Asia/Tokyo",
        "Tokyo Standard Time",
        "(UTC+09:00) Osaka, Sapporo, Tokyo",
    ),
    (
        "Australia/Sydney",
        "AUS Eastern Standard Time",
        "(UTC+10:00) Canberra, Melbourne, Sydney",
    ),
];

/// Looks up a supported IANA zone name.
///
/// # Errors
///
/// [`SimError::Invalid`] for a zone the simulator cannot map to a Windows id.
pub fn time_zone(name: &str) -> Result<TimeZoneInfo, SimError> {
    let (iana, windows_id, display_name) = ZONES
        .iter()
        .find(|(iana, _, _)| iana.eq_ignore_ascii_case(name))
        .ok_or_else(|| SimError::Invalid(format!("unsupported time zone {name}")))?;
    let tz: Tz = iana
        .parse()
        .map_err(|_| SimError::Invalid(format!("unsupported time zone {name}")))?;
    Ok(TimeZoneInfo {
        tz,
        windows_id,
        display_name,
    })
}
