//! Windows time zone ids (as Exchange sends them) mapped to IANA rules.
//!
//! Exchange names time zones by their Windows registry id (`StartTimeZone Id="W. Europe
//! Standard Time"`); chrono-tz knows the IANA database. This module owns the translation
//! in both directions and the human display names Windows shows, nothing else: it does no
//! parsing of `t:TimeZoneDefinition` transition rules and keeps no state.
//!
//! The table follows the CLDR `windowsZones` mapping for territory "001" (the zone each
//! Windows id stands for), using the canonical IANA name where CLDR keeps a legacy alias
//! (`Europe/Kyiv` rather than `Europe/Kiev`).

use chrono_tz::Tz;

/// One Windows time zone: its id, the IANA zone CLDR maps it to, and the display name
/// Windows shows for it (only for the commonly used zones).
struct WindowsZone {
    id: &'static str,
    iana: Tz,
    display: Option<&'static str>,
}

const fn zone(id: &'static str, iana: Tz) -> WindowsZone {
    WindowsZone {
        id,
        iana,
        display: None,
    }
}

const fn named(id: &'static str, iana: Tz, display: &'static str) -> WindowsZone {
    WindowsZone {
        id,
        iana,
        display: Some(display),
    }
}

/// The CLDR "001" mapping, west to east, as Windows lists the zones.
const WINDOWS_ZONES: &[WindowsZone] = &[
    named(
        "Dateline Standard Time",
        Tz::Etc__GMTPlus12,
        "(UTC-12:00) International Date Line West",
    ),
    named(
        "UTC-11",
        Tz::Etc__GMTPlus11,
        "(UTC-11:00) Coordinated Universal Time-11",
    ),
    zone("Aleutian Standard Time", Tz::America__Adak),
    named(
        "Hawaiian Standard Time",
        Tz::Pacific__Honolulu,
        "(UTC-10:00) Hawaii",
    ),
    zone("Marquesas Standard Time", Tz::Pacific__Marquesas),
    named(
        "Alaskan Standard Time",
        Tz::America__Anchorage,
        "(UTC-09:00) Alaska",
    ),
    zone("UTC-09", Tz::Etc__GMTPlus9),
    zone("Pacific Standard Time (Mexico)", Tz::America__Tijuana),
    zone("UTC-08", Tz::Etc__GMTPlus8),
    named(
        "Pacific Standard Time",
        Tz::America__Los_Angeles,
        "(UTC-08:00) Pacific Time (US & Canada)",
    ),
    named(
        "US Mountain Standard Time",
        Tz::America__Phoenix,
        "(UTC-07:00) Arizona",
    ),
    zone("Mountain Standard Time (Mexico)", Tz::America__Mazatlan),
    named(
        "Mountain Standard Time",
        Tz::America__Denver,
        "(UTC-07:00) Mountain Time (US & Canada)",
    ),
    zone("Yukon Standard Time", Tz::America__Whitehorse),
    zone("Central America Standard Time", Tz::America__Guatemala),
    named(
        "Central Standard Time",
        Tz::America__Chicago,
        "(UTC-06:00) Central Time (US & Canada)",
    ),
    zone("Easter Island Standard Time", Tz::Pacific__Easter),
    named(
        "Central Standard Time (Mexico)",
        Tz::America__Mexico_City,
        "(UTC-06:00) Guadalajara, Mexico City, Monterrey",
    ),
    named(
        "Canada Central Standard Time",
        Tz::America__Regina,
        "(UTC-06:00) Saskatchewan",
    ),
    named(
        "SA Pacific Standard Time",
        Tz::America__Bogota,
        "(UTC-05:00) Bogota, Lima, Quito, Rio Branco",
    ),
    zone("Eastern Standard Time (Mexico)", Tz::America__Cancun),
    named(
        "Eastern Standard Time",
        Tz::America__New_York,
        "(UTC-05:00) Eastern Time (US & Canada)",
    ),
    zone("Haiti Standard Time", Tz::America__PortauPrince),
    zone("Cuba Standard Time", Tz::America__Havana),
    named(
        "US Eastern Standard Time",
        Tz::America__Indiana__Indianapolis,
        "(UTC-05:00) Indiana (East)",
    ),
    zone("Turks And Caicos Standard Time", Tz::America__Grand_Turk),
    zone("Paraguay Standard Time", Tz::America__Asuncion),
    named(
        "Atlantic Standard Time",
        Tz::America__Halifax,
        "(UTC-04:00) Atlantic Time (Canada)",
    ),
    zone("Venezuela Standard Time", Tz::America__Caracas),
    zone("Central Brazilian Standard Time", Tz::America__Cuiaba),
    zone("SA Western Standard Time", Tz::America__La_Paz),
    named(
        "Pacific SA Standard Time",
        Tz::America__Santiago,
        "(UTC-04:00) Santiago",
    ),
    named(
        "Newfoundland Standard Time",
        Tz::America__St_Johns,
        "(UTC-03:30) Newfoundland",
    ),
    zone("Tocantins Standard Time", Tz::America__Araguaina),
    named(
        "E. South America Standard Time",
        Tz::America__Sao_Paulo,
        "(UTC-03:00) Brasilia",
    ),
    zone("SA Eastern Standard Time", Tz::America__Cayenne),
    named(
        "Argentina Standard Time",
        Tz::America__Argentina__Buenos_Aires,
        "(UTC-03:00) City of Buenos Aires",
    ),
    zone("Greenland Standard Time", Tz::America__Nuuk),
    zone("Montevideo Standard Time", Tz::America__Montevideo),
    zone("Magallanes Standard Time", Tz::America__Punta_Arenas),
    zone("Saint Pierre Standard Time", Tz::America__Miquelon),
    zone("Bahia Standard Time", Tz::America__Bahia),
    named(
        "UTC-02",
        Tz::Etc__GMTPlus2,
        "(UTC-02:00) Coordinated Universal Time-02",
    ),
    named(
        "Azores Standard Time",
        Tz::Atlantic__Azores,
        "(UTC-01:00) Azores",
    ),
    named(
        "Cape Verde Standard Time",
        Tz::Atlantic__Cape_Verde,
        "(UTC-01:00) Cabo Verde Is.",
    ),
    named("UTC", Tz::Etc__UTC, "(UTC) Coordinated Universal Time"),
    named(
        "GMT Standard Time",
        Tz::Europe__London,
        "(UTC+00:00) Dublin, Edinburgh, Lisbon, London",
    ),
    named(
        "Greenwich Standard Time",
        Tz::Atlantic__Reykjavik,
        "(UTC+00:00) Monrovia, Reykjavik",
    ),
    zone("Sao Tome Standard Time", Tz::Africa__Sao_Tome),
    named(
        "Morocco Standard Time",
        Tz::Africa__Casablanca,
        "(UTC+01:00) Casablanca",
    ),
    named(
        "W. Europe Standard Time",
        Tz::Europe__Berlin,
        "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
    ),
    named(
        "Central Europe Standard Time",
        Tz::Europe__Budapest,
        "(UTC+01:00) Belgrade, Bratislava, Budapest, Ljubljana, Prague",
    ),
    named(
        "Romance Standard Time",
        Tz::Europe__Paris,
        "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris",
    ),
    named(
        "Central European Standard Time",
        Tz::Europe__Warsaw,
        "(UTC+01:00) Sarajevo, Skopje, Warsaw, Zagreb",
    ),
    named(
        "W. Central Africa Standard Time",
        Tz::Africa__Lagos,
        "(UTC+01:00) West Central Africa",
    ),
    named("Jordan Standard Time", Tz::Asia__Amman, "(UTC+03:00) Amman"),
    named(
        "GTB Standard Time",
        Tz::Europe__Bucharest,
        "(UTC+02:00) Athens, Bucharest",
    ),
    named(
        "Middle East Standard Time",
        Tz::Asia__Beirut,
        "(UTC+02:00) Beirut",
    ),
    named(
        "Egypt Standard Time",
        Tz::Africa__Cairo,
        "(UTC+02:00) Cairo",
    ),
    named(
        "E. Europe Standard Time",
        Tz::Europe__Chisinau,
        "(UTC+02:00) Chisinau",
    ),
    zone("Syria Standard Time", Tz::Asia__Damascus),
    zone("West Bank Standard Time", Tz::Asia__Hebron),
    named(
        "South Africa Standard Time",
        Tz::Africa__Johannesburg,
        "(UTC+02:00) Harare, Pretoria",
    ),
    named(
        "FLE Standard Time",
        Tz::Europe__Kyiv,
        "(UTC+02:00) Helsinki, Kyiv, Riga, Sofia, Tallinn, Vilnius",
    ),
    named(
        "Israel Standard Time",
        Tz::Asia__Jerusalem,
        "(UTC+02:00) Jerusalem",
    ),
    zone("South Sudan Standard Time", Tz::Africa__Juba),
    named(
        "Kaliningrad Standard Time",
        Tz::Europe__Kaliningrad,
        "(UTC+02:00) Kaliningrad",
    ),
    zone("Sudan Standard Time", Tz::Africa__Khartoum),
    zone("Libya Standard Time", Tz::Africa__Tripoli),
    zone("Namibia Standard Time", Tz::Africa__Windhoek),
    named(
        "Arabic Standard Time",
        Tz::Asia__Baghdad,
        "(UTC+03:00) Baghdad",
    ),
    named(
        "Turkey Standard Time",
        Tz::Europe__Istanbul,
        "(UTC+03:00) Istanbul",
    ),
    named(
        "Arab Standard Time",
        Tz::Asia__Riyadh,
        "(UTC+03:00) Kuwait, Riyadh",
    ),
    named(
        "Belarus Standard Time",
        Tz::Europe__Minsk,
        "(UTC+03:00) Minsk",
    ),
    named(
        "Russian Standard Time",
        Tz::Europe__Moscow,
        "(UTC+03:00) Moscow, St. Petersburg",
    ),
    named(
        "E. Africa Standard Time",
        Tz::Africa__Nairobi,
        "(UTC+03:00) Nairobi",
    ),
    zone("Volgograd Standard Time", Tz::Europe__Volgograd),
    named("Iran Standard Time", Tz::Asia__Tehran, "(UTC+03:30) Tehran"),
    named(
        "Arabian Standard Time",
        Tz::Asia__Dubai,
        "(UTC+04:00) Abu Dhabi, Muscat",
    ),
    zone("Astrakhan Standard Time", Tz::Europe__Astrakhan),
    named(
        "Azerbaijan Standard Time",
        Tz::Asia__Baku,
        "(UTC+04:00) Baku",
    ),
    zone("Russia Time Zone 3", Tz::Europe__Samara),
    zone("Mauritius Standard Time", Tz::Indian__Mauritius),
    zone("Saratov Standard Time", Tz::Europe__Saratov),
    named(
        "Georgian Standard Time",
        Tz::Asia__Tbilisi,
        "(UTC+04:00) Tbilisi",
    ),
    named(
        "Caucasus Standard Time",
        Tz::Asia__Yerevan,
        "(UTC+04:00) Yerevan",
    ),
    named(
        "Afghanistan Standard Time",
        Tz::Asia__Kabul,
        "(UTC+04:30) Kabul",
    ),
    named(
        "West Asia Standard Time",
        Tz::Asia__Tashkent,
        "(UTC+05:00) Ashgabat, Tashkent",
    ),
    named(
        "Ekaterinburg Standard Time",
        Tz::Asia__Yekaterinburg,
        "(UTC+05:00) Ekaterinburg",
    ),
    named(
        "Pakistan Standard Time",
        Tz::Asia__Karachi,
        "(UTC+05:00) Islamabad, Karachi",
    ),
    zone("Qyzylorda Standard Time", Tz::Asia__Qyzylorda),
    named(
        "India Standard Time",
        Tz::Asia__Kolkata,
        "(UTC+05:30) Chennai, Kolkata, Mumbai, New Delhi",
    ),
    named(
        "Sri Lanka Standard Time",
        Tz::Asia__Colombo,
        "(UTC+05:30) Sri Jayawardenepura",
    ),
    named(
        "Nepal Standard Time",
        Tz::Asia__Kathmandu,
        "(UTC+05:45) Kathmandu",
    ),
    zone("Central Asia Standard Time", Tz::Asia__Bishkek),
    named(
        "Bangladesh Standard Time",
        Tz::Asia__Dhaka,
        "(UTC+06:00) Dhaka",
    ),
    zone("Omsk Standard Time", Tz::Asia__Omsk),
    named(
        "Myanmar Standard Time",
        Tz::Asia__Yangon,
        "(UTC+06:30) Yangon (Rangoon)",
    ),
    named(
        "SE Asia Standard Time",
        Tz::Asia__Bangkok,
        "(UTC+07:00) Bangkok, Hanoi, Jakarta",
    ),
    zone("Altai Standard Time", Tz::Asia__Barnaul),
    zone("W. Mongolia Standard Time", Tz::Asia__Hovd),
    zone("North Asia Standard Time", Tz::Asia__Krasnoyarsk),
    zone("N. Central Asia Standard Time", Tz::Asia__Novosibirsk),
    zone("Tomsk Standard Time", Tz::Asia__Tomsk),
    named(
        "China Standard Time",
        Tz::Asia__Shanghai,
        "(UTC+08:00) Beijing, Chongqing, Hong Kong, Urumqi",
    ),
    zone("North Asia East Standard Time", Tz::Asia__Irkutsk),
    named(
        "Singapore Standard Time",
        Tz::Asia__Singapore,
        "(UTC+08:00) Kuala Lumpur, Singapore",
    ),
    named(
        "W. Australia Standard Time",
        Tz::Australia__Perth,
        "(UTC+08:00) Perth",
    ),
    named(
        "Taipei Standard Time",
        Tz::Asia__Taipei,
        "(UTC+08:00) Taipei",
    ),
    zone("Ulaanbaatar Standard Time", Tz::Asia__Ulaanbaatar),
    zone("Aus Central W. Standard Time", Tz::Australia__Eucla),
    zone("Transbaikal Standard Time", Tz::Asia__Chita),
    named(
        "Tokyo Standard Time",
        Tz::Asia__Tokyo,
        "(UTC+09:00) Osaka, Sapporo, Tokyo",
    ),
    zone("North Korea Standard Time", Tz::Asia__Pyongyang),
    named("Korea Standard Time", Tz::Asia__Seoul, "(UTC+09:00) Seoul"),
    zone("Yakutsk Standard Time", Tz::Asia__Yakutsk),
    named(
        "Cen. Australia Standard Time",
        Tz::Australia__Adelaide,
        "(UTC+09:30) Adelaide",
    ),
    named(
        "AUS Central Standard Time",
        Tz::Australia__Darwin,
        "(UTC+09:30) Darwin",
    ),
    named(
        "E. Australia Standard Time",
        Tz::Australia__Brisbane,
        "(UTC+10:00) Brisbane",
    ),
    named(
        "AUS Eastern Standard Time",
        Tz::Australia__Sydney,
        "(UTC+10:00) Canberra, Melbourne, Sydney",
    ),
    named(
        "West Pacific Standard Time",
        Tz::Pacific__Port_Moresby,
        "(UTC+10:00) Guam, Port Moresby",
    ),
    named(
        "Tasmania Standard Time",
        Tz::Australia__Hobart,
        "(UTC+10:00) Hobart",
    ),
    named(
        "Vladivostok Standard Time",
        Tz::Asia__Vladivostok,
        "(UTC+10:00) Vladivostok",
    ),
    zone("Lord Howe Standard Time", Tz::Australia__Lord_Howe),
    zone("Bougainville Standard Time", Tz::Pacific__Bougainville),
    zone("Russia Time Zone 10", Tz::Asia__Srednekolymsk),
    zone("Magadan Standard Time", Tz::Asia__Magadan),
    zone("Norfolk Standard Time", Tz::Pacific__Norfolk),
    zone("Sakhalin Standard Time", Tz::Asia__Sakhalin),
    named(
        "Central Pacific Standard Time",
        Tz::Pacific__Guadalcanal,
        "(UTC+11:00) Solomon Is., New Caledonia",
    ),
    zone("Russia Time Zone 11", Tz::Asia__Kamchatka),
    named(
        "New Zealand Standard Time",
        Tz::Pacific__Auckland,
        "(UTC+12:00) Auckland, Wellington",
    ),
    named(
        "UTC+12",
        Tz::Etc__GMTMinus12,
        "(UTC+12:00) Coordinated Universal Time+12",
    ),
    named("Fiji Standard Time", Tz::Pacific__Fiji, "(UTC+12:00) Fiji"),
    zone("Chatham Islands Standard Time", Tz::Pacific__Chatham),
    zone("UTC+13", Tz::Etc__GMTMinus13),
    named(
        "Tonga Standard Time",
        Tz::Pacific__Tongatapu,
        "(UTC+13:00) Nuku'alofa",
    ),
    named(
        "Samoa Standard Time",
        Tz::Pacific__Apia,
        "(UTC+13:00) Samoa",
    ),
    named(
        "Line Islands Standard Time",
        Tz::Pacific__Kiritimati,
        "(UTC+14:00) Kiritimati Island",
    ),
];

/// Retired Windows ids that older Exchange servers and clients still send, mapped to the
/// IANA zone of the Windows id that replaced them. They are accepted on input but never
/// produced by [`iana_to_windows`].
const LEGACY_WINDOWS_IDS: &[(&str, Tz)] = &[
    ("Mid-Atlantic Standard Time", Tz::Etc__GMTPlus2),
    ("Kamchatka Standard Time", Tz::Asia__Kamchatka),
];

/// IANA zones that CLDR maps to a Windows id for a territory other than "001" and that
/// meeting rooms commonly use; the reverse mapping consults them after the main table.
const TERRITORY_ZONES: &[(Tz, &str)] = &[
    (Tz::UTC, "UTC"),
    (Tz::Etc__GMT, "UTC"),
    (Tz::Etc__UCT, "UTC"),
    (Tz::Etc__Universal, "UTC"),
    (Tz::Etc__Zulu, "UTC"),
    (Tz::Europe__Amsterdam, "W. Europe Standard Time"),
    (Tz::Europe__Zurich, "W. Europe Standard Time"),
    (Tz::Europe__Rome, "W. Europe Standard Time"),
    (Tz::Europe__Stockholm, "W. Europe Standard Time"),
    (Tz::Europe__Vienna, "W. Europe Standard Time"),
    (Tz::Europe__Oslo, "W. Europe Standard Time"),
    (Tz::Europe__Luxembourg, "W. Europe Standard Time"),
    (Tz::Europe__Prague, "Central Europe Standard Time"),
    (Tz::Europe__Bratislava, "Central Europe Standard Time"),
    (Tz::Europe__Belgrade, "Central Europe Standard Time"),
    (Tz::Europe__Ljubljana, "Central Europe Standard Time"),
    (Tz::Europe__Brussels, "Romance Standard Time"),
    (Tz::Europe__Copenhagen, "Romance Standard Time"),
    (Tz::Europe__Madrid, "Romance Standard Time"),
    (Tz::Europe__Zagreb, "Central European Standard Time"),
    (Tz::Europe__Sarajevo, "Central European Standard Time"),
    (Tz::Europe__Skopje, "Central European Standard Time"),
    (Tz::Europe__Dublin, "GMT Standard Time"),
    (Tz::Europe__Lisbon, "GMT Standard Time"),
    (Tz::Atlantic__Canary, "GMT Standard Time"),
    (Tz::Europe__Athens, "GTB Standard Time"),
    (Tz::Europe__Helsinki, "FLE Standard Time"),
    (Tz::Europe__Kiev, "FLE Standard Time"),
    (Tz::Europe__Riga, "FLE Standard Time"),
    (Tz::Europe__Sofia, "FLE Standard Time"),
    (Tz::Europe__Tallinn, "FLE Standard Time"),
    (Tz::Europe__Vilnius, "FLE Standard Time"),
    (Tz::America__Toronto, "Eastern Standard Time"),
    (Tz::America__Detroit, "Eastern Standard Time"),
    (Tz::America__Vancouver, "Pacific Standard Time"),
    (Tz::America__Winnipeg, "Central Standard Time"),
    (Tz::America__Edmonton, "Mountain Standard Time"),
    (Tz::America__Lima, "SA Pacific Standard Time"),
    (Tz::Asia__Hong_Kong, "China Standard Time"),
    (Tz::Asia__Calcutta, "India Standard Time"),
    (Tz::Asia__Kuala_Lumpur, "Singapore Standard Time"),
    (Tz::Asia__Jakarta, "SE Asia Standard Time"),
    (Tz::Asia__Ho_Chi_Minh, "SE Asia Standard Time"),
    (Tz::Australia__Melbourne, "AUS Eastern Standard Time"),
    (Tz::Australia__Canberra, "AUS Eastern Standard Time"),
];

/// Maps a time zone id as Exchange sends it to its IANA zone.
///
/// Accepts every Windows id of the CLDR mapping (compared ignoring ASCII case, as the
/// Windows registry does), a few retired Windows ids, and IANA names such as
/// `"Europe/Berlin"` (case-sensitive). Surrounding whitespace is ignored. Returns `None`
/// for anything else.
pub fn windows_to_iana(id: &str) -> Option<Tz> {
    let id = id.trim();
    if let Some(zone) = WINDOWS_ZONES
        .iter()
        .find(|zone| zone.id.eq_ignore_ascii_case(id))
    {
        return Some(zone.iana);
    }
    if let Some((_, tz)) = LEGACY_WINDOWS_IDS
        .iter()
        .find(|(legacy, _)| legacy.eq_ignore_ascii_case(id))
    {
        return Some(*tz);
    }
    id.parse::<Tz>().ok()
}

/// Maps an IANA zone to the Windows id Exchange would use for it.
///
/// Every zone that is the "001" target of a Windows id maps back to that id; a set of
/// commonly used territory zones (`Europe/Amsterdam`, `America/Toronto`, ...) maps to
/// their region's id. Returns `None` for other zones.
pub fn iana_to_windows(tz: Tz) -> Option<&'static str> {
    WINDOWS_ZONES
        .iter()
        .find(|zone| zone.iana == tz)
        .map(|zone| zone.id)
        .or_else(|| {
            TERRITORY_ZONES
                .iter()
                .find(|(zone, _)| *zone == tz)
                .map(|(_, id)| *id)
        })
}

/// The display name Windows shows for a Windows time zone id, such as
/// `"(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna"`.
///
/// Known for the commonly used zones only; `None` for the others and for unknown ids.
/// Exchange sends it as the `Name` attribute next to the id; nothing relies on its text.
pub fn display_name(windows_id: &str) -> Option<&'static str> {
    WINDOWS_ZONES
        .iter()
        .find(|zone| zone.id == windows_id)
        .and_then(|zone| zone.display)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn common_windows_ids_map_to_their_cldr_zones() {
        let cases = [
            ("W. Europe Standard Time", Tz::Europe__Berlin),
            ("Pacific Standard Time", Tz::America__Los_Angeles),
            ("UTC", Tz::Etc__UTC),
            ("GMT Standard Time", Tz::Europe__London),
            ("Tokyo Standard Time", Tz::Asia__Tokyo),
            ("Eastern Standard Time", Tz::America__New_York),
            ("Romance Standard Time", Tz::Europe__Paris),
            ("India Standard Time", Tz::Asia__Kolkata),
            ("AUS Eastern Standard Time", Tz::Australia__Sydney),
            ("Dateline Standard Time", Tz::Etc__GMTPlus12),
            ("UTC+12", Tz::Etc__GMTMinus12),
        ];
        for (id, expected) in cases {
            assert_eq!(windows_to_iana(id), Some(expected), "{id}");
        }
    }

    #[test]
    fn the_table_covers_every_windows_id_exchange_uses() {
        assert!(WINDOWS_ZONES.len() >= 135, "{} zones", WINDOWS_ZONES.len());
    }

    #[test]
    fn every_windows_id_appears_once_and_maps_to_a_distinct_zone() {
        let ids: HashSet<_> = WINDOWS_ZONES.iter().map(|zone| zone.id).collect();
        let zones: HashSet<_> = WINDOWS_ZONES.iter().map(|zone| zone.iana).collect();
        assert_eq!(ids.len(), WINDOWS_ZONES.len());
        assert_eq!(zones.len(), WINDOWS_ZONES.len());
    }

    #[test]
    fn every_windows_id_round_trips_through_its_iana_zone() {
        for zone in WINDOWS_ZONES {
            let tz = windows_to_iana(zone.id);
            assert_eq!(tz, Some(zone.iana), "{}", zone.id);
            assert_eq!(tz.and_then(iana_to_windows), Some(zone.id), "{}", zone.id);
        }
    }

    #[test]
    fn display_names_agree_with_the_zone_offset_in_january() {
        let january = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
        for zone in WINDOWS_ZONES {
            let Some(display) = zone.display else {
                continue;
            };
            let offset = january.with_timezone(&zone.iana).format("%:z").to_string();
            let expected = if offset == "+00:00" && zone.id == "UTC" {
                "(UTC)".to_owned()
            } else {
                format!("(UTC{offset})")
            };
            let in_southern_summer = matches!(
                zone.id,
                "Cen. Australia Standard Time"
                    | "AUS Eastern Standard Time"
                    | "Tasmania Standard Time"
                    | "New Zealand Standard Time"
                    | "Pacific SA Standard Time"
            );
            if !in_southern_summer {
                assert!(display.starts_with(&expected), "{}: {display}", zone.id);
            }
        }
    }

    #[test]
    fn iana_names_are_accepted_directly_and_case_sensitively() {
        assert_eq!(windows_to_iana("Europe/Berlin"), Some(Tz::Europe__Berlin));
        assert_eq!(
            windows_to_iana("America/Sao_Paulo"),
            Some(Tz::America__Sao_Paulo)
        );
        assert_eq!(windows_to_iana("europe/berlin"), None);
    }

    #[test]
    fn windows_ids_ignore_case_and_surrounding_whitespace() {
        assert_eq!(
            windows_to_iana(" w. europe standard time "),
            Some(Tz::Europe__Berlin)
        );
    }

    #[test]
    fn unknown_ids_map_to_nothing() {
        assert_eq!(windows_to_iana("Mars Standard Time"), None);
        assert_eq!(windows_to_iana(""), None);
    }

    #[test]
    fn retired_windows_ids_are_accepted_but_never_produced() {
        assert_eq!(
            windows_to_iana("Mid-Atlantic Standard Time"),
            Some(Tz::Etc__GMTPlus2)
        );
        assert_eq!(iana_to_windows(Tz::Etc__GMTPlus2), Some("UTC-02"));
    }

    #[test]
    fn territory_zones_map_back_to_their_region_id() {
        assert_eq!(
            iana_to_windows(Tz::Europe__Amsterdam),
            Some("W. Europe Standard Time")
        );
        assert_eq!(iana_to_windows(Tz::UTC), Some("UTC"));
        assert_eq!(
            iana_to_windows(Tz::America__Toronto),
            Some("Eastern Standard Time")
        );
        assert_eq!(iana_to_windows(Tz::Antarctica__Troll), None);
    }

    #[test]
    fn territory_zones_share_the_offsets_of_their_region_zone() {
        let instants = [
            Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 7, 15, 12, 0, 0).unwrap(),
        ];
        for (tz, id) in TERRITORY_ZONES {
            let region = windows_to_iana(id).unwrap();
            for instant in instants {
                let own = instant.with_timezone(tz).format("%:z").to_string();
                let theirs = instant.with_timezone(&region).format("%:z").to_string();
                assert_eq!(own, theirs, "{tz} vs {id}");
            }
        }
    }

    #[test]
    fn display_names_are_known_for_common_zones_only() {
        assert_eq!(
            display_name("W. Europe Standard Time"),
            Some("(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna")
        );
        assert_eq!(
            display_name("Pacific Standard Time"),
            Some("(UTC-08:00) Pacific Time (US & Canada)")
        );
        assert_eq!(display_name("Marquesas Standard Time"), None);
        assert_eq!(display_name("Nowhere Standard Time"), None);
    }
}
